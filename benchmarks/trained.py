"""A run directory's trained weights, rebuilt for measuring: the diagnostics' common input.

``python -m benchmarks.diagnose`` and ``python -m benchmarks.sharpness`` take a run
directory. From it they need the cell (config.json), its data as training saw it
(the same noisy labels, the same batches of each epoch) and the model's weights at
one or more points of training:

- ``snapshots/epoch-NNNN.pt``, kept every k epochs when the run was trained with
  ``--snapshot-every k``;
- ``checkpoint.pt``, the weights after the last finished epoch (after the last
  epoch of a done run: the final model); the engine keeps it anyway.

Everything here only reads: the run directory is never written or moved aside (a
damaged checkpoint is reported, not set aside as a resuming engine would). Bad
input, a folder that is no run directory or one without any weights, raises
:class:`NoWeights` with one line that names the problem and the fix.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from .config import ConfigError, TrainConfig, cell_id
from .data import epoch_permutation
from .rundir import CHECKPOINT, CONFIG, SNAPSHOTS, try_read_json
from .tasks import get_task
from .tasks.base import Task

Batch = tuple[Tensor, Tensor]


class NoWeights(ValueError):
    """The folder is not a run directory, or it holds no weights to measure."""


@dataclass(frozen=True)
class Weights:
    """The model's weights after ``epoch`` epochs (``step`` optimizer steps)."""

    epoch: int
    step: int
    state: dict[str, Tensor]
    source: pathlib.Path


def read_config(path: pathlib.Path) -> TrainConfig:
    if not path.is_dir():
        raise NoWeights(f"{path}: no such run directory (pass <runs>/<experiment>/<cell id>)")
    fields, problem = try_read_json(path / CONFIG)
    if problem is not None:
        raise NoWeights(f"{path / CONFIG} {problem}: not a run directory the engine wrote")
    try:
        return TrainConfig(**{**fields, "runs_dir": str(path.parent.parent)})
    except (TypeError, ConfigError) as err:
        raise NoWeights(f"{path / CONFIG} is not a config of this version of the suite ({err})") from None


def _load(path: pathlib.Path, cell: str) -> dict[str, Any] | None:
    """A checkpoint or snapshot of this cell, or None (unreadable, or another cell's)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any damage means: not usable here
        return None
    return saved if isinstance(saved, dict) and saved.get("cell_id") == cell else None


def find_weights(path: pathlib.Path, cfg: TrainConfig) -> tuple[list[Weights], list[str]]:
    """The snapshots in epoch order, then checkpoint.pt when it is past the last of them;
    and one line per file that could not be used."""
    cell, found, skipped = cell_id(cfg), [], []
    for file in sorted((path / SNAPSHOTS).glob("epoch-*.pt")):
        saved = _load(file, cell)
        if saved is None:
            skipped.append(f"{file}: unreadable or not this cell's; skipped")
        else:
            found.append(Weights(saved["epoch"], saved["step"], saved["model"], file))
    if (path / CHECKPOINT).is_file():
        saved = _load(path / CHECKPOINT, cell)
        if saved is None:
            skipped.append(f"{path / CHECKPOINT}: unreadable or not this cell's; skipped")
        elif not found or saved["position"]["epoch"] > found[-1].epoch:
            position = saved["position"]
            found.append(Weights(position["epoch"], position["step"], saved["model"], path / CHECKPOINT))
    return found, skipped


@dataclass
class TrainedRun:
    """A run directory's cell, data and weights (see the module docstring)."""

    path: pathlib.Path
    cfg: TrainConfig
    weights: list[Weights]
    skipped: list[str]
    device: torch.device

    def __post_init__(self) -> None:
        self.task = get_task(self.cfg.task)
        if type(self.task).loss is not Task.loss:
            raise NoWeights(f"{self.path}: the {self.cfg.task} task trains with its own loss; the "
                            "diagnostics measure classification tasks trained with cross-entropy")
        self.data = self.task.load_data(self.cfg)

    def loss_fn(self, output: Tensor, target: Tensor) -> Tensor:
        """The training loss of a batch's output (the task's: cross-entropy, the cell's
        label smoothing), as the loss_fn of benchmarks.diagnose and benchmarks.sharpness."""
        return nn.functional.cross_entropy(output, target, label_smoothing=self.cfg.label_smoothing)

    def model(self, weights: Weights) -> nn.Module:
        model = self.task.build_model(self.cfg, self.data)
        model.load_state_dict(weights.state)
        return model.to(self.device)

    def _fetch(self, keys: list[tuple[int, int]]) -> Batch:
        x, y = (self.data.collate or default_collate)([self.data.train[key] for key in keys])
        return x.to(self.device), y.to(self.device)

    def epoch_batches(self, epoch: int, count: int | None = None) -> list[Batch]:
        """The first ``count`` (default: all) batches of ``epoch`` (0-based) as training
        drew them: the task's plan, noisy labels and augmentation."""
        keys = self.task.plan_batches(self.cfg, self.data, epoch)
        return [self._fetch(batch) for batch in keys[:count]]

    def following_batches(self, epoch: int, count: int) -> list[Batch]:
        """The ``count`` batches training drew from the start of ``epoch`` on, into the
        next epochs when one has fewer."""
        batches = []
        while len(batches) < count:
            batches += self.epoch_batches(epoch, count - len(batches))
            epoch += 1
        return batches

    def fixed_subset(self, samples: int, batch_size: int) -> list[Batch]:
        """``samples`` training samples drawn once with seed 0 (the same for every cell
        of a dataset), as the data serves them in epoch 0, in batches of ``batch_size``."""
        order = epoch_permutation(len(self.data.train), 0, 0)[:samples].tolist()
        return [self._fetch([(i, 0) for i in order[s:s + batch_size]]) for s in range(0, len(order), batch_size)]


def run_parser(prog: str, description: str) -> Any:
    """The command line both diagnostics share: RUN_DIR, --device, --json."""
    from .config import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir", help="a run directory, <runs>/<experiment>/<cell id>")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write what is printed here, as JSON")
    return parser


def open_run(path: str | pathlib.Path, device: str = "cpu") -> TrainedRun:
    """The run at ``path`` with every usable set of weights; NoWeights when there is none."""
    path = pathlib.Path(path)
    cfg = read_config(path)
    weights, skipped = find_weights(path, cfg)
    if not weights:
        why = "; ".join(skipped) if skipped else f"no {CHECKPOINT} and no {SNAPSHOTS}/"
        raise NoWeights(f"{path}: no weights to measure ({why}); train the cell first (python -m "
                        "benchmarks ...), with --snapshot-every K for points along training")
    from .engine import resolve_device  # the engine's rule: auto is cuda where there is one

    return TrainedRun(path, cfg, weights, skipped, resolve_device(device))
