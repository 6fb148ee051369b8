"""The training loss and the dev-set evaluation of a GLUE classifier.

The loss is computed here from the logits, in float32 whatever the autocast
precision: cross-entropy for the classification tasks, mean squared error for
STS-B's regression (the objective of the RoBERTa and BERT recipes). Its sums for
the training metrics stay on the device (no host read per step).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.nn import functional as F

from .metrics import task_metrics
from .spec import GlueTask


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "split")}
    return model(**inputs).logits.float()


def batch_loss(task: GlueTask, logits: torch.Tensor, labels: torch.Tensor,
               reduction: str = "mean") -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


def training_loss(task: GlueTask, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """``(loss, sums, weight)``: the batch's mean loss (what both passes of a
    sharpness-aware step differentiate), device sums of the training metrics (the
    summed loss, and the number of correct predictions for a classification task) and
    the number of rows, for the engine to average over an epoch."""
    logits = _forward(model, batch)
    labels = batch["labels"]
    loss = batch_loss(task, logits, labels)
    sums = {"loss": loss.detach() * len(labels)}
    if not task.is_regression:
        sums["correct"] = (logits.detach().argmax(-1) == labels).sum()
    return loss, sums, len(labels)


@torch.no_grad()
def evaluate(task: GlueTask, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]
             ) -> dict[str, float]:
    """The task's dev-set metrics (``metrics.task_metrics``) and ``loss``, the mean loss
    over every dev row, from batches of :attr:`GlueData.dev` (each row marked with its
    dev set, ``split``). Outputs stay on the device until all batches are through (one
    host read); the metrics do not depend on the order of the rows."""
    logits, labels, splits = [], [], []
    for batch in batches:
        logits.append(_forward(model, batch))
        labels.append(batch["labels"])
        splits.append(batch["split"])
    outputs, targets = torch.cat(logits), torch.cat(labels)
    loss = float(batch_loss(task, outputs, targets, reduction="mean"))
    outputs, targets, split = outputs.cpu().numpy(), targets.cpu().numpy(), torch.cat(splits).cpu().numpy()
    per_split = {name: (targets[split == i], outputs[split == i])
                 for i, name in enumerate(task.dev_splits)}
    return {**task_metrics(task, per_split), "loss": loss}
