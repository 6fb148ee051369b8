"""What a task gives the engine, and the classification defaults most tasks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..data import corrupt_labels, derive_seed, label_digest
from ..models import create_model


@dataclass
class TaskData:
    """A task's loaded data.

    ``train`` is addressed by ``(index, epoch)`` keys (see ``benchmarks.data``), ``test``
    likewise with epoch 0. ``in_memory`` datasets are fetched in the main process.
    ``record`` is written to the run directory (e.g. which labels were corrupted);
    ``meta`` joins meta.json (e.g. whether the data files were verified).
    """

    train: Dataset
    test: Dataset
    num_classes: int
    in_memory: bool = False
    record: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def data_seed(cfg: TrainConfig, purpose: str) -> int:
    """The seed for one purpose ("init", "batches", "augment", ...) of a cell.

    Derived from (task, dataset, model, seed index) only: never from the optimizer
    or its hyperparameters, so optimizers compared at one seed index share it.
    """
    return derive_seed(purpose, cfg.task, cfg.dataset, cfg.model, cfg.seed)


def noisy_labels(cfg: TrainConfig, labels: torch.Tensor, num_classes: int
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Apply ``cfg.label_noise`` to training labels; returns them and a record for the run dir.

    The corrupted set depends only on (dataset, rate, seed index): not on the model,
    so every model of a noise table trains on the same noisy labels.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if cfg.label_noise == 0:
        return labels, {}
    seed = derive_seed("label-noise", cfg.dataset, cfg.label_noise, cfg.seed)
    noisy, indices = corrupt_labels(labels, num_classes, cfg.label_noise, seed)
    return noisy, {"noisy_labels": {
        "rate": cfg.label_noise, "count": len(indices), "num_train": len(labels),
        "indices": indices.tolist(), "noisy_labels_sha256": label_digest(noisy),
        "clean_labels_sha256": label_digest(labels)}}


class Task:
    """A classification task: cross-entropy, top-1 accuracy. Subclasses load data."""

    name: str = ""

    def load_data(self, cfg: TrainConfig) -> TaskData:
        """Load (never download unless ``cfg.download``); missing data raises ConfigError."""
        raise NotImplementedError

    def missing_data(self, cfg: TrainConfig) -> str | None:
        """What of the cell's dataset is not on disk, where it was looked for and how to
        get it; None when it is all there (or the task needs no files). Cheap: a sweep
        asks it of every cell before starting any."""
        return None

    def build_model(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        kwargs = {"alpha": cfg.pyramidnet_alpha} if cfg.model.startswith("pyramidnet") else {}
        return create_model(cfg.model, num_classes, **kwargs)

    def criterion(self, cfg: TrainConfig) -> nn.Module:
        """The training loss."""
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def eval_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed test loss of a batch (plain cross-entropy, whatever the training loss)."""
        return nn.functional.cross_entropy(output.float(), target, reduction="sum")

    def count_correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Number of top-1 hits in a batch, as a device tensor (no host sync)."""
        return (output.argmax(dim=1) == target).sum()
