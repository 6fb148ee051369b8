"""fairseq's label-smoothed cross-entropy (``--criterion label_smoothed_cross_entropy``).

Per target token, with log-probabilities ``lp`` over a vocabulary of V types and
eps_i = eps / (V - 1)::

    loss = (1 - eps - eps_i) * (-lp[target]) + eps_i * sum_v(-lp[v])

(fairseq's formula: the true class keeps 1 - eps of the mass; it differs slightly from
``F.cross_entropy(label_smoothing=eps)``, which spreads eps / V over all V classes.)
Padding tokens count for nothing. The sums come back as device tensors, with the token
count; the training loss is their ratio, the mean per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .dictionary import PAD_INDEX


def label_smoothed_loss(logits: Tensor, target: Tensor, epsilon: float
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """Summed smoothed loss, summed plain NLL, and the number of (non-pad) target tokens."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    uniform = -lprobs.sum(dim=-1)
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll + eps_i * uniform
    real = target != PAD_INDEX
    zero = torch.zeros((), device=loss.device)
    return torch.where(real, loss, zero).sum(), torch.where(real, nll, zero).sum(), real.sum()


def training_loss(model: torch.nn.Module, batch: dict[str, Tensor], epsilon: float
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss both passes of a sharpness-aware step differentiate, the mean per target
    token (fairseq divides by the batch's token count too), and the batch's sums for the
    training metrics: smoothed loss, NLL and tokens, all on the device."""
    loss, nll, tokens = label_smoothed_loss(model(batch["src"], batch["prev"]), batch["target"], epsilon)
    return loss / tokens, {"loss": loss.detach(), "nll": nll.detach(), "tokens": tokens}
