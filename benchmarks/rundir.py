"""The run directory: the one interface between running and reporting.

``<runs_dir>/<experiment>/<cell_id>/`` holds ``config.json`` (written first),
``meta.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``result.json`` (written last; its
presence means done), ``error.json`` (the run failed). The ``.running`` lock
belongs to the launcher (``slurm``), not to the engine. Every whole-file write goes to a temporary
file in the same directory and is moved into place with ``os.replace``, so a reader
(or a process killed mid-write) never sees half a file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import traceback
from typing import Any

import torch

from .config import LOCATION_FIELDS, ConfigError, TrainConfig, cell_fields

CONFIG, META, METRICS = "config.json", "meta.json", "metrics.jsonl"
CHECKPOINT, RESULT, ERROR = "checkpoint.pt", "result.json", "error.json"
PREVIOUS_ERRORS = "previous_errors.jsonl"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: pathlib.Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


def slurm_job_id() -> str | None:
    """``$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID``, else ``$SLURM_JOB_ID``, else None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def git_commit() -> str | None:
    """The commit of the repository this package runs from, if it is a git checkout."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    import numpy
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda,
            "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None}


class RunDir:
    """Reads and writes one run directory; see the module docstring for its files."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = pathlib.Path(path)

    def file(self, name: str) -> pathlib.Path:
        return self.path / name

    # -- states ---------------------------------------------------------------
    def is_done(self) -> bool:
        return self.file(RESULT).is_file()

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file()

    def read_result(self) -> dict[str, Any]:
        return read_json(self.file(RESULT))

    def check_config(self, cfg: TrainConfig) -> None:
        """Refuse (ConfigError) a directory whose config.json is another cell's."""
        path = self.file(CONFIG)
        if not path.is_file():
            return
        stored = {k: v for k, v in read_json(path).items() if k not in LOCATION_FIELDS}
        wanted = cell_fields(cfg)
        if stored != wanted:
            differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ConfigError(
                f"{self.path} holds another cell (config.json differs in: {', '.join(differ)}); "
                "nothing was overwritten. Use another --runs-dir or --experiment, or remove "
                "that directory if it is stale.")

    # -- starting ---------------------------------------------------------------
    def begin(self, cfg: TrainConfig, device: torch.device, records: dict[str, Any]) -> None:
        """Create the directory and write config.json (once), meta.json and the task's records.

        A previous failure's error.json is moved into previous_errors.jsonl: while this
        process runs the cell is not "failed", and if it fails again a fresh error.json
        tells the new story.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.file(CONFIG).is_file():
            atomic_write_json(self.file(CONFIG), dataclasses.asdict(cfg))
        self._archive_error()
        for name, record in records.items():
            atomic_write_json(self.file(f"{name}.json"), record)
        self._start_meta(device)

    def _start_meta(self, device: torch.device) -> None:
        path = self.file(META)
        meta = read_json(path) if path.is_file() else {"started": now(), "slurm_job_ids": [],
                                                       "starts": []}
        job = slurm_job_id()
        if job is not None:
            meta["slurm_job_ids"].append(job)
        meta.update(versions=versions(), git_commit=git_commit(), host=socket.gethostname(),
                    device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    argv=sys.argv)
        meta["starts"].append({"time": now(), "host": meta["host"], "pid": os.getpid(),
                               "slurm_job_id": job})
        atomic_write_json(path, meta)

    def note_stop(self, reason: str, step: int) -> None:
        """Record in meta.json why and where the run stopped early (preemption)."""
        meta = read_json(self.file(META))
        meta.setdefault("stops", []).append({"time": now(), "reason": reason, "step": step})
        atomic_write_json(self.file(META), meta)

    def note_collapse(self, found: dict[str, Any], epoch: int) -> None:
        """Record in meta.json that the run collapsed (``benchmarks.collapse``), found at ``epoch``."""
        meta = read_json(self.file(META))
        meta.setdefault("collapses", []).append({"time": now(), "found_at_epoch": epoch, **found})
        atomic_write_json(self.file(META), meta)

    # -- metrics, checkpoint, result, error ---------------------------------------
    def append_metrics(self, lines: list[dict[str, Any]]) -> None:
        with open(self.file(METRICS), "a") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, num_lines: int) -> None:
        """Keep the first ``num_lines`` lines: drop what a killed run wrote after its checkpoint."""
        path = self.file(METRICS)
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) != num_lines:
            atomic_write_bytes(path, "".join(lines[:num_lines]).encode())

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        tmp = self.file(f".{CHECKPOINT}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file(CHECKPOINT))

    def load_checkpoint(self) -> dict[str, Any]:
        return torch.load(self.file(CHECKPOINT), map_location="cpu", weights_only=True)

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.file(RESULT), result)

    def write_error(self, err: BaseException, **extra: Any) -> None:
        """error.json; the directory is created if the run failed before it began, and
        an error.json already there (a failure before begin, twice) is archived."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._archive_error()
        tail = "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]
        atomic_write_json(self.file(ERROR), {"type": type(err).__name__, "message": str(err),
                                             "traceback": tail, "time": now(), **extra})

    def _archive_error(self) -> None:
        """Move error.json into previous_errors.jsonl (one line per earlier failure)."""
        error = self.file(ERROR)
        if error.is_file():
            with open(self.file(PREVIOUS_ERRORS), "a") as f:
                f.write(json.dumps(read_json(error), sort_keys=True) + "\n")
            error.unlink()
