"""The RoBERTa fine-tuning recipe (fairseq's examples/roberta/README.md, roberta.base
and roberta.large alike), the suite's GLUE default.

AdamW with betas (0.9, 0.98), eps 1e-6, weight decay 0.1; linear warm-up over the first
6% of the updates, then linear decay to 0; 10 epochs; dropout 0.1 (the models' own);
no gradient clipping; the learning rate and batch size per task below. The sequence
length is 128 here (fairseq allows 512): GLUE's sentences rarely exceed it, and it is
what most SAM-on-GLUE studies use.

fairseq's own QQP line warms up for 28,318 of 113,272 updates (25%); the suite keeps 6%
for every task, as the README's text says.

The sharpness-aware methods' radius and VaSSO's theta for GLUE are *unverified*: the
journal's values could not be read. The defaults below are common choices for
Transformer fine-tuning with SAM (rho 0.05; ASAM's about ten times SAM's), not the
paper's.
"""

from __future__ import annotations

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-6
WEIGHT_DECAY = 0.1
WARMUP_FRACTION = 0.06
EPOCHS = 10
MAX_LENGTH = 128

# task -> (peak learning rate, batch size): fairseq's table for GLUE.
LR_AND_BATCH: dict[str, tuple[float, int]] = {
    "mnli": (1e-5, 32), "qnli": (1e-5, 32), "qqp": (1e-5, 32), "rte": (2e-5, 16),
    "sst2": (1e-5, 32), "mrpc": (1e-5, 16), "cola": (1e-5, 16), "stsb": (2e-5, 16),
}

# *unverified* (see the module docstring).
RHO = {"sam": 0.05, "vasso": 0.05, "gsam": 0.05, "asam": 0.5}
THETA = 0.9
