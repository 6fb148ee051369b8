"""``make bench``'s GLUE figure: one fine-tuning step of AdamW, SAM and VaSSO.

The model is RoBERTa-shaped and randomly initialised (a step's time does not depend
on the weights, so no download is needed): roberta-base's shape (12 layers, hidden
768, vocabulary 50,265) at batch 32 and sequence length 128 on a GPU or with
``--full``, a 2-layer, hidden-64 model at batch 8 and length 64 on a CPU. The base
is the recipe's AdamW (``benchmarks.glue.recipe``), fused on CUDA; SAM and VaSSO
wrap it (``vasso``), each step as the engine takes it: ``opt.step(closure)``, the
closure a forward and backward of the cross-entropy, under bf16 autocast where the
precision says so. Reported: the median step time of each and the ratios VaSSO /
AdamW and VaSSO / SAM.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import vasso

from .recipe import ADAM_BETAS, ADAM_EPS, WEIGHT_DECAY

METHODS = ("adamw", "sam", "vasso")
RHO, THETA, LR = 0.05, 0.9, 2e-5
# (layers, hidden, heads, intermediate, vocabulary, batch, length)
FULL_SHAPE = (12, 768, 12, 3072, 50265, 32, 128)   # roberta-base, GLUE's batch and length
SMALL_SHAPE = (2, 64, 4, 256, 1000, 8, 64)


def build(method: str, shape: tuple[int, ...], device: torch.device
          ) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict[str, torch.Tensor]]:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    layers, hidden, heads, inner, vocab, batch, length = shape
    torch.manual_seed(0)
    config = RobertaConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                           intermediate_size=inner, vocab_size=vocab, num_labels=2,
                           max_position_embeddings=length + 2)
    model = RobertaForSequenceClassification(config).to(device).train()
    base = torch.optim.AdamW(model.parameters(), lr=LR, betas=ADAM_BETAS, eps=ADAM_EPS,
                             weight_decay=WEIGHT_DECAY, fused=device.type == "cuda")
    optimizer = {"adamw": lambda: base, "sam": lambda: vasso.SAM(base, rho=RHO, model=model),
                 "vasso": lambda: vasso.VaSSO(base, rho=RHO, theta=THETA, model=model)}[method]()
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(3, vocab, (batch, length), generator=g).to(device),
             "attention_mask": torch.ones(batch, length, dtype=torch.int64, device=device),
             "labels": torch.randint(0, 2, (batch,), generator=g).to(device)}
    return model, optimizer, batch


def time_glue_step(method: str, precision: str, shape: tuple[int, ...], iters: int, warmup: int,
                   device: torch.device) -> dict[str, Any]:
    from ..perf import Timer, summarize, sync

    model, optimizer, batch = build(method, shape, device)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    dtype = torch.bfloat16 if precision == "bf16" else None

    def closure() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(**inputs).logits
        loss = F.cross_entropy(logits.float(), batch["labels"])
        loss.backward()
        return loss

    def step() -> torch.Tensor:
        if method == "adamw":
            optimizer.zero_grad(set_to_none=True)
            loss = closure()
            optimizer.step()
            return loss
        return optimizer.step(closure)

    for _ in range(warmup):
        step()
    sync(device)
    timer = Timer(device)
    for _ in range(iters):
        started = timer.start()
        loss = step()
        timer.stop(started)
    if not torch.isfinite(loss.detach()).item():
        raise RuntimeError(f"GLUE step {method}: the loss became {float(loss.detach())}")
    return {"method": method, "precision": precision, **summarize(timer.millis())}


def time_glue(full: bool, precisions: list[str], iters: int, warmup: int,
              device: torch.device) -> dict[str, Any]:
    """Every method's step in every precision, and the ratios of the medians."""
    shape = FULL_SHAPE if full else SMALL_SHAPE
    steps = [time_glue_step(m, p, shape, iters, warmup, device) for p in precisions for m in METHODS]
    median = {(r["precision"], r["method"]): r["median_ms"] for r in steps}
    ratios = [{"precision": p,
               "vasso_over_adamw": median[p, "vasso"] / median[p, "adamw"],
               "vasso_over_sam": median[p, "vasso"] / median[p, "sam"]} for p in precisions]
    layers, hidden, _, _, _, batch, length = shape
    return {"model": f"RoBERTa-shaped, {layers} layers, hidden {hidden} (random weights)",
            "batch_size": batch, "length": length, "steps": steps, "ratios": ratios}


def print_table(glue: dict[str, Any]) -> None:
    from tabulate import tabulate

    print(f"\nGLUE step: {glue['model']}, batch {glue['batch_size']} x {glue['length']} tokens, "
          "AdamW (0.9, 0.98) base")
    print(tabulate([[r["precision"], r["method"], f"{r['median_ms']:.2f}", f"{r['iqr_ms']:.2f}"]
                    for r in glue["steps"]], ["precision", "step", "median ms", "IQR ms"]))
    print(tabulate([[r["precision"], f"{r['vasso_over_adamw']:.3f}", f"{r['vasso_over_sam']:.3f}"]
                    for r in glue["ratios"]], ["precision", "VaSSO/AdamW", "VaSSO/SAM"]))
