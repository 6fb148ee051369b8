"""What a task gives the engine (its contract, docs/CONTRACTS.md), and the
classification defaults most tasks share.

A task declares its metrics (:class:`Metric`: name, higher is better, how a table
prints it) and its primary one, which picks the best evaluation. It loads its data
(:class:`TaskData`), builds its model, and says

* how to train: :meth:`Task.loss` ``(model, batch, cfg) -> TrainLoss``: the scalar
  every pass differentiates, device-side sums for the training metrics and the
  batch's weight (samples, or tokens);
* how to evaluate: :meth:`Task.evaluate` ``(model, batches, cfg) -> {name: value}``;
  by default a forward pass per batch summing :meth:`Task.eval_sums`, read once and
  turned into metrics by :meth:`Task.summarize`. A task may override it entirely
  (generation and BLEU, or a correlation over gathered predictions);
* optionally, which samples make each batch: :meth:`Task.plan_batches`, a pure
  function of (seed, epoch), so that a resumed run sees the batches it would have.

A batch is a tuple or a dict of tensors (what the data's ``collate`` returns); the
engine moves it to the device and never looks inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..config import ConfigError, TrainConfig
from ..data import corrupt_labels, derive_seed, epoch_batches, label_digest
from ..models import create_model

Batch = Union[tuple[Tensor, ...], dict[str, Tensor]]
Keys = list[list[Any]]  # the dataset keys of each batch of an epoch


@dataclass(frozen=True)
class Metric:
    """A named metric: ``format`` is how a table prints it (``format(value, spec)``),
    ``title`` what a caption calls it ("accuracy (%)"), ``bounds`` the values it can
    take, if bounded (a figure's band is clipped to them)."""

    name: str
    higher_is_better: bool = True
    format: str = ".2f"
    title: str = ""
    bounds: tuple[float, float] | None = None

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet)."""
        if than is None:
            return True
        return value > than if self.higher_is_better else value < than


class TrainLoss(NamedTuple):
    """What :meth:`Task.loss` returns for one batch.

    ``loss``: the scalar both passes of a sharpness-aware method differentiate.
    ``sums``: detached device scalars, summed over an epoch's batches by the engine
    (never read per step) and turned into the training metrics by
    :meth:`Task.summarize`. ``weight``: the batch's weight in that sum, a number
    (samples) or a device tensor (tokens).
    """

    loss: Tensor
    sums: dict[str, Tensor]
    weight: int | float | Tensor


class Sums:
    """Named device scalars summed over batches, read with one host sync; the weight
    adds up as a number or, once a batch brings a tensor, on the device."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.values: Tensor | None = None
        self.weight: int | float | Tensor = 0

    def add(self, sums: Mapping[str, Tensor], weight: int | float | Tensor) -> None:
        if self.values is None:
            self.names = tuple(sums)
            first = next(iter(sums.values()))
            self.values = torch.zeros(len(sums), dtype=torch.float64, device=first.device)
        self.values += torch.stack([v.double() for v in sums.values()])
        self.weight = self.weight + weight

    def read(self) -> tuple[dict[str, float], float]:
        """``({name: sum}, weight)`` on the host."""
        values = [] if self.values is None else self.values.tolist()
        return dict(zip(self.names, values)), float(self.weight)

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "values": None if self.values is None else self.values.cpu(),
                "weight": self.weight.cpu() if isinstance(self.weight, Tensor) else self.weight}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.names = tuple(state["names"])
        values, weight = state["values"], state["weight"]
        self.values = None if values is None else values.to(device)
        self.weight = weight.to(device) if isinstance(weight, Tensor) else weight


@dataclass
class TaskData:
    """A task's loaded data.

    ``train`` is addressed by ``(index, epoch)`` keys (see ``benchmarks.data``), ``test``
    likewise with epoch 0 (or by whatever keys the task's batch plans use).
    ``num_classes``: for a classification task (the collapse check's ln C; None
    otherwise). ``collate``: makes a batch of samples (default: torch's
    ``default_collate``). ``in_memory`` datasets are fetched in the main process.
    ``record`` is written to the run directory (e.g. which labels were corrupted);
    ``meta`` joins meta.json (e.g. whether the data files were verified).
    """

    train: Dataset
    test: Dataset
    num_classes: int | None = None
    collate: Callable[[list[Any]], Batch] | None = None
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


ACCURACY = Metric("acc", higher_is_better=True, format=".2f", title="accuracy (%)", bounds=(0.0, 100.0))
LOSS = Metric("loss", higher_is_better=False, format=".4f", title="loss")


class Task:
    """A task; the defaults are a classification task's: cross-entropy, top-1
    accuracy in percent as the primary metric, batches of ``cfg.batch_size``
    samples. Subclasses load data; see the module docstring for what else they
    may override."""

    name: str = ""
    metrics: tuple[Metric, ...] = (ACCURACY, LOSS)
    primary: str = "acc"

    def metric(self, name: str) -> Metric:
        """The declared metric ``name``; a ConfigError naming the valid ones otherwise."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise ConfigError(f"the {self.name} task has no metric {name!r}; its metrics: "
                          f"{', '.join(m.name for m in self.metrics)}")

    # -- data and model -----------------------------------------------------------
    def load_data(self, cfg: TrainConfig) -> TaskData:
        """Load (never download unless ``cfg.download``); missing data raises ConfigError."""
        raise NotImplementedError

    def missing_data(self, cfg: TrainConfig) -> str | None:
        """What of the cell's dataset is not on disk, where it was looked for and how to
        get it; None when it is all there (or the task needs no files). Cheap: a sweep
        asks it of every cell before starting any."""
        return None

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        kwargs = {"alpha": cfg.pyramidnet_alpha} if cfg.model.startswith("pyramidnet") else {}
        return create_model(cfg.model, data.num_classes, **kwargs)

    def plan_batches(self, cfg: TrainConfig, data: TaskData, epoch: int) -> Keys:
        """The keys of every training batch of ``epoch``, a pure function of the cell's
        seed and ``epoch``; every epoch has as many batches. Default: a per-epoch
        permutation cut into full batches of ``cfg.batch_size`` (``benchmarks.data``)."""
        n, size = len(data.train), cfg.batch_size
        return epoch_batches(n, size, data_seed(cfg, "batches"), epoch, 0, n // size)

    def plan_eval(self, cfg: TrainConfig, data: TaskData) -> Keys:
        """The keys of every test batch, in order: the whole split."""
        n, size = len(data.test), max(256, cfg.batch_size)
        return [[(i, 0) for i in range(s, min(s + size, n))] for s in range(0, n, size)]

    # -- training -------------------------------------------------------------------
    def loss(self, model: Callable[..., Any], batch: Batch, cfg: TrainConfig) -> TrainLoss:
        """Cross-entropy (with ``cfg.label_smoothing``); sums of the loss and the hits."""
        x, y = batch
        output = model(x)
        loss = nn.functional.cross_entropy(output, y, label_smoothing=cfg.label_smoothing)
        hits = (output.detach().argmax(dim=1) == y).sum()
        return TrainLoss(loss, {"loss": loss.detach().double() * y.shape[0],
                                "correct": hits}, y.shape[0])

    def summarize(self, sums: Mapping[str, float], weight: float) -> dict[str, float]:
        """Metrics from sums (of :meth:`loss` or :meth:`eval_sums`) and their weight."""
        return {"loss": sums["loss"] / weight, "acc": 100.0 * sums["correct"] / weight}

    # -- evaluation -----------------------------------------------------------------
    def eval_sums(self, model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], int | Tensor]:
        """One test batch's sums and weight: plain cross-entropy (whatever the training
        loss) and top-1 hits."""
        x, y = batch
        output = model(x)
        return ({"loss": nn.functional.cross_entropy(output.float(), y, reduction="sum"),
                 "correct": (output.argmax(dim=1) == y).sum()}, y.shape[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch], cfg: TrainConfig) -> dict[str, float]:
        """The test metrics, by name: :meth:`eval_sums` summed over ``batches`` (on the
        device, one host read), then :meth:`summarize`. The model is in eval mode."""
        total = Sums()
        for batch in batches:
            total.add(*self.eval_sums(model, batch))
        return self.summarize(*total.read())
