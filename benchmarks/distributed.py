"""Data parallel: which process this is, the process group, and each rank's share of a batch.

A cell trains in ``WORLD_SIZE`` processes, one per GPU (or several CPU processes
over gloo), started either by ``torchrun`` or by a Slurm job with one task per GPU,
whose tasks export the same variables from Slurm's (``slurm/job.py``, through
submitit's ``TorchDistributedEnvironment``): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``. Without them a run is one process, as always.

The batch order stays one global, seeded order: ``--batch-size`` is the global
batch, and rank ``r`` of ``W`` takes the ``r``-th of its ``W`` equal contiguous parts
(:func:`share`). The global batch therefore does not depend on the number of
processes; with a mean loss and DistributedDataParallel's averaged gradients, a step
is the one-process step on the same global batch, up to the order of the sums
(under ``--sync global``; ``--sync local`` perturbs with each rank's share alone).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the cell's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory."""
        return self.rank == 0


def world_from_environment(env: Mapping[str, str] = os.environ) -> World:
    """torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without them."""
    if "WORLD_SIZE" not in env:
        return World()
    try:
        world = World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise ConfigError(f"WORLD_SIZE={env['WORLD_SIZE']!r} is set but RANK={env.get('RANK')!r} "
                          "and LOCAL_RANK are not integers: start the processes with torchrun or "
                          "through python -m slurm") from None
    if not 0 <= world.rank < world.size:
        raise ConfigError(f"RANK={world.rank} is not in [0, WORLD_SIZE={world.size})")
    return world


def check_global_batch(batch_size: int, world: World) -> None:
    """The global batch must split into equal shares (a ConfigError naming the fix)."""
    if batch_size % world.size:
        lower = batch_size // world.size * world.size
        raise ConfigError(f"--batch-size={batch_size} is the global batch over {world.size} "
                          f"processes and must be a multiple of {world.size}; use "
                          f"{lower or world.size} or {lower + world.size}")


def share(batch: Sequence[T], world: World) -> list[T]:
    """Rank ``world.rank``'s contiguous part of a global batch (of keys)."""
    if len(batch) % world.size:
        raise ValueError(f"a batch of {len(batch)} does not split into {world.size} equal shares")
    part = len(batch) // world.size
    return list(batch[world.rank * part:(world.rank + 1) * part])


def device_of(world: World, device: torch.device) -> torch.device:
    """This rank's device: its local GPU (the only one it sees when its task was given
    one GPU), or the CPU."""
    if device.type != "cuda":
        return device
    return torch.device("cuda", world.local_rank % torch.cuda.device_count())


def data_parallel(model: nn.Module, world: World, device: torch.device, sync_batchnorm: bool = False
                  ) -> tuple[nn.Module, nn.Module]:
    """``(model, trained)``: the module checkpoints hold, and the one that trains.

    One process: both are ``model``. Several: ``trained`` is ``model`` in
    DistributedDataParallel, which averages the gradients over the ranks (of both
    passes under the library's ``sync="global"``, of the second under ``"local"``) and
    gives every rank rank 0's weights when built. BatchNorm normalises by each rank's
    share of the batch unless ``sync_batchnorm``: its layers then become SyncBatchNorm
    (GPUs only; the same parameters and buffers, so a checkpoint does not change form).
    """
    if world.size == 1:
        return model, model
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def init_process_group(world: World, device: torch.device) -> None:
    """Join the cell's process group (``env://``): NCCL on GPUs, gloo on CPUs."""
    if world.size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, rank=world.rank, world_size=world.size,
                                             device_id=device if device.type == "cuda" else None)


class Collective:
    """The few collective operations the engine needs, over a gloo group of host
    tensors (no device synchronisation; on GPUs the gradients still go over NCCL, in
    DistributedDataParallel). For one process every operation is the identity."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.group = torch.distributed.new_group(backend="gloo") if world.size > 1 else None

    def _reduce(self, values: list[float], op) -> list[float]:
        if self.group is None:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(tensor, op=op, group=self.group)
        return tensor.tolist()

    def sum(self, values: list[float]) -> list[float]:
        return self._reduce(values, torch.distributed.ReduceOp.SUM)

    def max(self, value: float) -> float:
        return self._reduce([value], torch.distributed.ReduceOp.MAX)[0]

    def any(self, flag: bool) -> bool:
        """Whether any rank's ``flag`` is set: every rank gets the same answer."""
        return bool(self.max(float(flag)))

    def close(self) -> None:
        """Wait for every rank, then leave the group: a rank that exits while another
        still reads from it would reset the connection under that read."""
        if self.group is not None:
            torch.distributed.barrier(group=self.group)
            torch.distributed.destroy_process_group()
            self.group = None

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (a checkpoint: tensors included) on every rank, sent as the
        bytes of ``torch.save`` (``broadcast_object_list`` cannot rebuild tensors)."""
        if self.group is None:
            return obj
        size = torch.zeros(1, dtype=torch.int64)
        if self.world.main:
            data = _to_bytes(obj)
            size[0] = len(data)
        torch.distributed.broadcast(size, src=0, group=self.group)
        if not self.world.main:
            data = torch.empty(int(size), dtype=torch.uint8)
        torch.distributed.broadcast(data, src=0, group=self.group)
        return _from_bytes(data)

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj`` on rank 0, in rank order, its tensors on the CPU; None on
        the other ranks. Sent like :meth:`broadcast`, padded to the longest; only rank 0
        receives the others' (an optimizer state per rank: no rank holds all but it)."""
        if self.group is None:
            return [obj]
        data = _to_bytes(obj)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world.size)]
        torch.distributed.all_gather(sizes, torch.tensor([len(data)]), group=self.group)
        longest = max(int(size) for size in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[:len(data)] = data
        chunks = [torch.empty(longest, dtype=torch.uint8) for _ in sizes] if self.world.main else None
        torch.distributed.gather(padded, chunks, dst=0, group=self.group)
        if chunks is None:
            return None
        return [_from_bytes(chunk[:int(size)], "cpu") for chunk, size in zip(chunks, sizes)]


def _to_bytes(obj: object) -> torch.Tensor:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8)


def _from_bytes(data: torch.Tensor, map_location: str | None = None) -> object:
    return torch.load(io.BytesIO(data.numpy().tobytes()), map_location=map_location, weights_only=False)
