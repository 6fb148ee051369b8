"""The training loss and the dev-set evaluation of a GLUE classifier.

The loss is computed here from the logits, in float32 whatever the autocast
precision: cross-entropy for the classification tasks, mean squared error for
STS-B's regression (the objective of the RoBERTa and BERT recipes). Its sums for
the training metrics stay on the device (no host read per step).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from . import features
from .metrics import task_metrics
from .prepare import GlueData
from .spec import GlueTask


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()


def batch_loss(task: GlueTask, logits: torch.Tensor, labels: torch.Tensor,
               reduction: str = "mean") -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


def training_loss(task: GlueTask, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """``(loss, sums, weight)``: the batch's mean loss (what both passes of a
    sharpness-aware step differentiate), device sums of the training metrics (the
    summed loss, and the number of correct predictions for a classification task) and
    the number of rows, for the engine to average over an epoch."""
    logits = _forward(model, batch)
    labels = batch["labels"]
    loss = batch_loss(task, logits, labels)
    weight = torch.tensor(float(len(labels)), device=logits.device)
    sums = {"loss": loss.detach() * weight}
    if not task.is_regression:
        sums["acc"] = (logits.detach().argmax(-1) == labels).sum().float() * 100.0
    return loss, sums, weight


@torch.no_grad()
def evaluate(glue: GlueData, model: torch.nn.Module, batch_size: int, device: torch.device,
             autocast: Any = None) -> dict[str, float]:
    """The task's dev-set metrics (``metrics.task_metrics``) and ``loss``, the mean loss
    over every dev row. Batches are length-sorted; outputs go back to row order. The
    model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    per_split: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loss_sum, rows = 0.0, 0
    try:
        for name, split in glue.dev.items():
            outputs = torch.empty((len(split), glue.task.num_labels), dtype=torch.float32)
            losses = []
            for indices in features.evaluation_batches(split.lengths, batch_size):
                batch = {k: v.to(device, non_blocking=True)
                         for k, v in glue.collate(split, indices).items()}
                with autocast or contextlib.nullcontext():
                    logits = _forward(model, batch)
                losses.append(batch_loss(glue.task, logits, batch["labels"], reduction="sum"))
                outputs[torch.as_tensor(indices)] = logits.cpu()
            loss_sum += float(torch.stack(losses).sum())
            rows += len(split)
            per_split[name] = (split.labels.numpy(), outputs.numpy())
    finally:
        model.train(was_training)
    return {**task_metrics(glue.task, per_split), "loss": loss_sum / rows}
