"""Where the batches come from, decided once per run: :func:`data_path`.

* :class:`LoaderPath` (the default): the task's datasets through a DataLoader, in
  the batches the task plans (``Task.plan_batches``, a pure function of (seed,
  epoch)), collated by the data's ``collate``, moved to the device.
* :class:`DevicePath` (``--fast``; ``auto`` picks it for CIFAR on CUDA): the splits
  held on the device (``benchmarks.fast.DeviceCIFAR``), augmented there with the very
  draws the DataLoader path applies, so both paths train on the same images up to
  floating-point rounding (tested on CPU).

Both serve ``train_batches(epoch, start, stop)``, batches ``start..stop-1`` of an
epoch (a resumed run starts mid-epoch), and ``test_batches()``, the whole test split.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader

from ..config import FAST_TASKS, ConfigError, TrainConfig, default_num_workers
from ..fast import DeviceCIFAR
from ..tasks.base import Batch, Task, TaskData, data_seed
from .signals import ignore_stop_signals


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Every tensor of a (tuple, list or dict) batch on ``device``."""
    return tree_map(lambda t: t.to(device, non_blocking=True), batch)


def use_fast_path(cfg: TrainConfig, device: torch.device) -> bool:
    """``--fast``: ``auto`` is on for the tasks that have a fast path, on CUDA only."""
    if cfg.fast == "auto":
        return cfg.task in FAST_TASKS and device.type == "cuda"
    return cfg.fast == "on"


class LoaderPath:
    fast = False
    channels_last = False

    def __init__(self, cfg: TrainConfig, task: Task, data: TaskData, device: torch.device) -> None:
        self.cfg, self.task, self.data, self.device = cfg, task, data, device
        planned = len(task.plan_batches(cfg, data, 0))
        if planned == 0:
            raise ConfigError(f"--batch-size={cfg.batch_size} exceeds the {len(data.train)} "
                              "training samples")
        self.steps_per_epoch = min(planned, cfg.steps_per_epoch or planned)

    def _load(self, dataset: Any, keys: list[list[Any]], seed: int, workers: int = 0
              ) -> Iterator[Batch]:
        loader = DataLoader(dataset, batch_sampler=keys, num_workers=workers,
                            collate_fn=self.data.collate, pin_memory=self.device.type == "cuda",
                            worker_init_fn=ignore_stop_signals if workers else None,
                            generator=torch.Generator().manual_seed(seed))
        for batch in loader:
            yield to_device(batch, self.device)

    def train_batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        cfg = self.cfg
        plan = self.task.plan_batches(cfg, self.data, epoch)
        if len(plan) < self.steps_per_epoch:
            raise ValueError(f"the {self.task.name} task planned {len(plan)} batches for epoch "
                             f"{epoch}, {self.steps_per_epoch} for epoch 0: every epoch needs as many")
        if self.data.in_memory:
            workers = 0
        else:  # resolved here, where the cell runs: a launch host's CPU count means nothing
            workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
        yield from self._load(self.data.train, plan[start:stop],
                              data_seed(cfg, "loader") + epoch, workers)

    def test_batches(self) -> Iterator[Batch]:
        # A generator of its own: a DataLoader otherwise draws its base seed from the global
        # RNG, which the model's dropout (VGG) also draws from, and the fast path does not.
        yield from self._load(self.data.test, self.task.plan_eval(self.cfg, self.data), seed=0)


class DevicePath:
    fast = True

    def __init__(self, cfg: TrainConfig, task: Task, data: TaskData, device: torch.device) -> None:
        # Channels-last feeds tensor-core convolutions on CUDA; on a CPU it would only
        # change the kernels' rounding, so the CPU form keeps the DataLoader path's layout.
        self.channels_last = device.type == "cuda"
        if len(data.train) < cfg.batch_size:
            raise ConfigError(f"--batch-size={cfg.batch_size} exceeds the {len(data.train)} "
                              "training samples")
        self.train = DeviceCIFAR.from_dataset(
            data.train, batch_size=cfg.batch_size, seed=data_seed(cfg, "batches"),
            device=device, channels_last=self.channels_last)
        self.test = DeviceCIFAR.from_dataset(
            data.test, batch_size=max(256, cfg.batch_size), device=device,
            channels_last=self.channels_last)
        self.steps_per_epoch = min(len(self.train), cfg.steps_per_epoch or len(self.train))

    def train_batches(self, epoch: int, start: int, stop: int) -> Iterator[Batch]:
        yield from self.train.batches(epoch, start, stop=stop)

    def test_batches(self) -> Iterator[Batch]:
        yield from self.test.batches()


def data_path(cfg: TrainConfig, task: Task, data: TaskData, device: torch.device
              ) -> LoaderPath | DevicePath:
    return (DevicePath if use_fast_path(cfg, device) else LoaderPath)(cfg, task, data, device)
