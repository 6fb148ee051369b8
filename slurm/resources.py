"""What one cell asks of the scheduler, and whether a partition can give it.

Cells are grouped into resource classes; each class becomes one job array.
The defaults below are the suite's choices (the paper trained on V100s and
states no budgets); every value can be overridden on the command line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace

from .sweep import SweepError


@dataclass(frozen=True, order=True)
class Resources:
    gpus: int  # GPUs per node
    cpus: int  # CPU cores per task (data loading, or the model itself on CPU)
    mem_gb: int  # per node
    time_min: int  # per job; longer cells checkpoint and are requeued
    nodes: int = 1
    tasks: int = 1  # per node: one training process each (data parallel beyond one)

    def describe(self) -> str:
        shape = f"nodes={self.nodes} tasks/node={self.tasks} " if self.nodes * self.tasks > 1 else ""
        return (f"{shape}gpus={self.gpus} cpus={self.cpus} mem={self.mem_gb}G "
                f"time={format_minutes(self.time_min)}")


# Per task. CIFAR: one GPU with 8 loader cores. 12 h jobs: short enough for
# most partitions' limits; the 200-epoch WRN-28-10 and PyramidNet-110 cells
# then run as a few requeued jobs, resuming from their checkpoints.
TASK_RESOURCES = {
    "digits": Resources(gpus=0, cpus=1, mem_gb=2, time_min=30),
    # A CPU task too (one thread, a 10k-parameter CNN): without its own line it took
    # the fallback's GPU and 8 cores, and the local executor ran its cells one at a time.
    "mnist1d": Resources(gpus=0, cpus=1, mem_gb=2, time_min=30),
    "cifar": Resources(gpus=1, cpus=8, mem_gb=32, time_min=12 * 60),
    # ImageNet: one node of 8 GPUs, one process per GPU with 12 loader cores each.
    "imagenet": Resources(gpus=8, cpus=12, mem_gb=480, time_min=24 * 60, nodes=1, tasks=8),
    # GLUE: one GPU; the batches are padded in the main process (4 threads), MNLI's and
    # QQP's token ids (about 400k rows each) fit in a few GB.
    "glue": Resources(gpus=1, cpus=4, mem_gb=32, time_min=12 * 60),
}
FALLBACK = Resources(gpus=1, cpus=8, mem_gb=64, time_min=24 * 60)


def resources_for(cfg, gpus=None, cpus=None, mem_gb=None, time_min=None, nodes=None,
                  tasks=None) -> Resources:
    """The cell's default class, with any command-line overrides applied. A cell on
    several GPUs runs one task per GPU unless ``tasks`` says otherwise."""
    base = TASK_RESOURCES.get(cfg.task, FALLBACK)
    overrides = dict(gpus=gpus, cpus=cpus, mem_gb=mem_gb, time_min=time_min, nodes=nodes,
                     tasks=tasks if tasks is not None else (gpus or None))
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def parse_minutes(text: str) -> int:
    """Slurm-style time: ``90`` (minutes), ``H:MM:SS``, ``D-HH:MM[:SS]``."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise SweepError(f"--time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is None and b is None:
        minutes = a  # plain minutes
    elif c is None and b is not None and days is None:
        minutes = a + (1 if b else 0)  # MM:SS, rounded up
    else:
        hours, mins = a, b or 0
        minutes = (days or 0) * 1440 + hours * 60 + mins + (1 if c else 0)
    if minutes < 1:
        raise SweepError(f"--time {text!r}: a job needs at least one minute")
    return minutes


def parse_mem_gb(text: str) -> int:
    """``16``, ``16G``, ``16GB`` -> 16; ``512M`` -> 1 (rounded up)."""
    m = re.fullmatch(r"(\d+)\s*([MmGgTt]?)[Bb]?", text.strip())
    if not m:
        raise SweepError(f"--mem {text!r}: expected gigabytes, e.g. 16 or 16G or 512M")
    value, unit = int(m.group(1)), m.group(2).upper()
    gb = {"": value, "G": value, "T": value * 1024, "M": -(-value // 1024)}[unit]
    if gb < 1:
        raise SweepError(f"--mem {text!r}: ask for at least 1G")
    return gb


def format_minutes(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


# --------------------------------------------------------------------------- partitions


@dataclass(frozen=True)
class Partition:
    name: str
    max_cpus: int  # per node
    max_mem_mb: int  # per node
    max_gpus: int  # per node
    max_time_min: int | None  # None: unlimited
    nodes: int = 1


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SweepError(f"`{' '.join(cmd)}` did not answer ({exc}): is the cluster up?") from exc
    if out.returncode != 0:
        raise SweepError(f"`{' '.join(cmd)}` failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def default_partition() -> str:
    for name in _run(["sinfo", "-h", "-o", "%P"]).split():
        if name.endswith("*"):
            return name.rstrip("*")
    raise SweepError("the cluster has no default partition: pass --partition NAME")


def query_partition(name: str | None) -> Partition:
    """The largest node of partition ``name`` (the default one when None)."""
    if shutil.which("sinfo") is None:
        raise SweepError("`sinfo` is not on PATH: the Slurm executor needs a cluster (or use --executor local)")
    name = name or default_partition()
    out = _run(["sinfo", "-h", "-N", "-p", name, "-o", "%c|%m|%G|%l"])
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    if not rows:
        known = " ".join(p.rstrip("*") for p in _run(["sinfo", "-h", "-o", "%P"]).split())
        raise SweepError(f"--partition {name}: no such partition (or no nodes in it); partitions: {known}")
    cpus = max(int(r[0].rstrip("+")) for r in rows)
    mem = max(int(r[1].rstrip("+")) for r in rows)
    gpus = max(_gpus_in_gres(r[2]) for r in rows)
    return Partition(name, cpus, mem, gpus, _limit_minutes(rows[0][3]), nodes=len(rows))


def _gpus_in_gres(gres: str) -> int:
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if parts[-1].isdigit() else 1
    return total


def _limit_minutes(text: str) -> int | None:
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    try:
        return parse_minutes(text)
    except SweepError:
        return None


def check_fits(partition: Partition, classes: list[Resources]) -> None:
    """Raise a SweepError naming the first request the partition cannot satisfy."""
    p = partition
    for r in classes:
        where = f"partition {p.name!r}"
        if r.nodes > p.nodes:
            raise SweepError(f"--nodes {r.nodes}: {where} has {p.nodes} node(s); pass --nodes "
                             f"{p.nodes} or fewer, or another --partition")
        if r.tasks * r.cpus > p.max_cpus:
            raise SweepError(
                f"--tasks-per-node {r.tasks} x --cpus {r.cpus}: the nodes of {where} have at most "
                f"{p.max_cpus} CPUs; pass fewer"
            )
        if r.cpus > p.max_cpus:
            raise SweepError(
                f"--cpus {r.cpus}: the nodes of {where} have at most {p.max_cpus} CPUs; "
                f"pass --cpus {p.max_cpus} or fewer, or another --partition"
            )
        if r.gpus > p.max_gpus:
            have = f"at most {p.max_gpus} GPUs" if p.max_gpus else "no GPUs"
            raise SweepError(
                f"--gpus {r.gpus}: the nodes of {where} have {have}; "
                f"pass --gpus {p.max_gpus} or a --partition with GPUs"
            )
        if r.mem_gb * 1024 > p.max_mem_mb:
            raise SweepError(
                f"--mem {r.mem_gb}G: the nodes of {where} have {p.max_mem_mb} MB; "
                f"pass --mem {max(1, p.max_mem_mb // 1024)}G or less"
            )
        if p.max_time_min is not None and r.time_min > p.max_time_min:
            raise SweepError(
                f"--time {format_minutes(r.time_min)}: {where} allows at most "
                f"{format_minutes(p.max_time_min)}; pass a shorter --time (cells resume when requeued)"
            )
