"""The run directory's format: its files, how they are written and read, and its locks.

This module is the only place that names a file of a run directory; ``slurm/`` and
``results/`` read run directories through it and through :mod:`benchmarks.runstate`
(the one classifier of a cell's state). ``<runs_dir>/<experiment>/<cell_id>/`` holds:

- ``config.json``: the resolved cell config, written first;
- ``meta.json``: versions, host, device, threads, every start (host, pid, Slurm job id
  and restart count) and what happened to damaged checkpoints;
- ``metrics.jsonl``: one line per evaluation per split, appended;
- ``checkpoint.pt`` and ``checkpoint.prev.pt``: the latest checkpoint and the one
  before it; a new checkpoint is verified before the previous one is dropped;
- ``snapshots/epoch-NNNN.pt``: the model's weights every k epochs (``--snapshot-every``,
  for the diagnostics), never rotated;
- ``result.json``: written last; its presence means done;
- ``error.json`` (the run failed) and ``previous_errors.jsonl`` (earlier failures);
- ``tensorboard/``: TensorBoard event files of the live monitor, when it is on
  (:mod:`benchmarks.monitor`; one file per start);
- ``.lock``: the engine working in the cell (host, pid, process start, Slurm job id),
  created exclusively;
- ``.claim``: the local runner that will start the cell (it is then pending);
- ``damaged/<time>/``: files moved aside (unreadable checkpoints, or what
  ``python -m slurm repair`` moves out of an invalid cell). Nothing is deleted.

Every whole-file write goes to a temporary file ``.<name>.tmp<pid>`` in the same
directory, is flushed to disk and moved into place with ``os.replace``, so a reader
(or a process killed mid-write) never sees half a file; the engine removes temporary
files a killed run left behind when it next takes the cell. A write that fails (a full
disk, a read-only file system, a permission) raises :class:`WriteFailed`, one line
naming the file and the errno.

Locks are files created with ``os.link`` from a complete temporary file: the link is
atomic, fails when the lock exists, and is safe on NFS (unlike ``flock``). A lock is
*stale* when its owner is gone: on this host, its pid is dead or now names another
process (the process start time differs); on another host, its Slurm job is no longer
in the queue. A lock from another host without a Slurm job cannot be checked and
counts as held.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import io
import json
import math
import os
import pathlib
import platform
import shutil
import socket
import subprocess
import sys
import traceback
import uuid
from typing import Any, Callable, Iterator

import torch

from .config import ConfigError, TrainConfig, cell_fields

CONFIG, META, METRICS = "config.json", "meta.json", "metrics.jsonl"
CHECKPOINT, PREVIOUS_CHECKPOINT = "checkpoint.pt", "checkpoint.prev.pt"
SNAPSHOTS = "snapshots"  # epoch-NNNN.pt, with --snapshot-every
RESULT, ERROR, PREVIOUS_ERRORS = "result.json", "error.json", "previous_errors.jsonl"
LOCK, CLAIM, DAMAGED = ".lock", ".claim", "damaged"
TENSORBOARD = "tensorboard"  # the live monitor's event files (benchmarks.monitor)
# The sweep's own files, beside the run directories: <runs_dir>/<experiment>/.sweep/
SWEEP, LEDGER, LAUNCH_LOCK = ".sweep", "jobs.jsonl", "launch.lock"
# The files whose presence says that a cell was started.
STARTED = (CONFIG, META, METRICS, CHECKPOINT, PREVIOUS_CHECKPOINT)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- writing ----------------------------------------------------------------------------

class WriteFailed(Exception):
    """Writing ``path`` failed (a full disk, a read-only file system, a permission)."""

    def __init__(self, path: pathlib.Path, err: OSError) -> None:
        self.path, self.errno, self.strerror = path, err.errno, err.strerror or str(err)
        code = errno.errorcode.get(err.errno, err.errno) if err.errno else "?"
        super().__init__(f"cannot write {path}: {self.strerror} ({code})")


@contextlib.contextmanager
def writing(path: pathlib.Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into :class:`WriteFailed`."""
    try:
        yield
    except OSError as err:
        raise WriteFailed(path, err) from None


def temporary(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name


def _write_synced(path: pathlib.Path, data: bytes | memoryview) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: pathlib.Path, data: bytes | memoryview) -> None:
    tmp = temporary(path)
    with writing(path):
        try:
            _write_synced(tmp, data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not stay full of our half file
            raise


def atomic_write_json(path: pathlib.Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def check_writable(folder: pathlib.Path, what: str) -> None:
    """Create ``folder`` and write (and remove) a probe in it; ConfigError (exit 2) if that
    fails, so an unwritable runs or output folder stops a command before anything starts."""
    folder = pathlib.Path(folder)
    probe = folder / f".probe.tmp{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{what} {folder} is not writable ({err.strerror or err}); "
                          "pass a writable folder or fix its permissions") from None


# -- reading ----------------------------------------------------------------------------

def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


def try_read_json(path: pathlib.Path) -> tuple[Any, str | None]:
    """``(content, None)``, or ``(None, why)`` when ``path`` is absent, unreadable or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "absent"
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at line {err.lineno})"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def result_problem(result: Any) -> str | None:
    """What makes parsed result.json content unusable, or None: it names its primary
    metric, and ``final`` and ``best`` hold a finite value of it under ``test``."""
    if not isinstance(result, dict):
        return "holds no JSON object"
    primary = result.get("primary")
    if not isinstance(primary, str):
        return 'names no primary metric (["primary"])'
    for section in ("final", "best"):
        part = result.get(section)
        test = part.get("test") if isinstance(part, dict) else None
        if not isinstance(test, dict) or not _finite(test.get(primary)):
            return f'has no finite number at ["{section}"]["test"]["{primary}"]'
    return None


def _json_form(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def config_mismatch(expected: dict[str, Any], found: Any) -> list[str]:
    """The cell fields on which config.json content ``found`` differs from ``expected``
    (compared in JSON form: a tuple equals the list config.json holds)."""
    if not isinstance(found, dict):
        return ["<config.json is not a JSON object>"]
    expected, absent = _json_form(expected), object()
    return [f"{key}: expected {value!r}, found {found.get(key, '<absent>')!r}"
            for key, value in expected.items() if found.get(key, absent) != value]


# -- locks --------------------------------------------------------------------------------

def slurm_job_id() -> str | None:
    """``$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID``, else ``$SLURM_JOB_ID``, else None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` names a live process on this host (a zombie is not live)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # os.kill(-1 or 0, ...) would address whole process groups
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def owner(**extra: Any) -> dict[str, Any]:
    """This process as a lock's owner."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_start": process_start(pid),
            "slurm_job_id": slurm_job_id(), "time": now(), "token": uuid.uuid4().hex, **extra}


def read_lock(path: pathlib.Path) -> dict[str, Any] | None:
    """The lock file ``path`` as a dict, or None when absent or unreadable."""
    lock, _ = try_read_json(path)
    return lock if isinstance(lock, dict) else None


def lock_alive(lock: dict[str, Any], queue: dict[str, str] | None = None) -> bool:
    """Whether the owner of ``lock`` is still there (``queue``: ``squeue``'s jobs, to
    check a lock written on another host; None when no scheduler answers)."""
    if lock.get("host") == socket.gethostname():
        pid = lock.get("pid")
        if not pid_alive(pid):
            return False
        recorded = lock.get("process_start")
        return recorded is None or process_start(pid) in (None, recorded)
    job = lock.get("slurm_job_id")
    if job and queue is not None:
        return str(job) in queue
    return True  # another host, no job to ask about: cannot tell


class LockHeld(Exception):
    """Another live process holds the lock; ``holder`` is its content."""

    def __init__(self, path: pathlib.Path, holder: dict[str, Any]) -> None:
        self.path, self.holder = path, holder
        job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
        super().__init__(f"{path} is held by pid {holder.get('pid')} on {holder.get('host')}"
                         f"{job} since {holder.get('time', '?')}")


def acquire_lock(path: pathlib.Path, content: dict[str, Any],
                 alive: Callable[[dict[str, Any]], bool] = lock_alive) -> None:
    """Create the lock file ``path`` holding ``content``, or raise :class:`LockHeld`.

    A stale lock (``alive`` says its owner is gone, or it is unreadable) is removed
    and the creation retried; a live one is never touched.
    """
    tmp = temporary(path)
    with writing(path):
        _write_synced(tmp, json.dumps(content).encode())
    try:
        for _ in range(5):
            try:
                with writing(path):
                    os.link(tmp, path)  # atomic; fails if the lock exists
                return
            except WriteFailed as err:
                if err.errno != errno.EEXIST:
                    raise
            held = read_lock(path)
            if held is not None and alive(held):
                raise LockHeld(path, held)
            _break_stale(path, held)
        raise LockHeld(path, read_lock(path) or {})
    finally:
        tmp.unlink(missing_ok=True)


def _break_stale(path: pathlib.Path, judged: dict[str, Any] | None) -> None:
    """Remove the stale lock ``path``, unless another process replaced it meanwhile."""
    aside = path.with_name(f"{path.name}.stale.tmp{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if read_lock(aside) != judged:  # a fresh lock taken since we looked: put it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def release_lock(path: pathlib.Path, content: dict[str, Any]) -> None:
    """Remove the lock ``path`` if it still holds ``content`` (ours)."""
    held = read_lock(path)
    if held is not None and held.get("token") == content.get("token"):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: pathlib.Path, alive: Callable[[dict[str, Any]], bool] = lock_alive,
           **extra: Any) -> Iterator[dict[str, Any]]:
    """Hold the lock file ``path`` for the ``with`` block (:class:`LockHeld` if taken)."""
    content = owner(**extra)
    acquire_lock(path, content, alive)
    try:
        yield content
    finally:
        release_lock(path, content)


# -- moving damaged files aside -----------------------------------------------------------

def move_aside(directory: pathlib.Path, names: list[str], why: str) -> pathlib.Path:
    """Move ``directory/name`` for each name into ``directory/damaged/<time>/`` with a
    ``why.txt``; returns that folder. Nothing is deleted."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = directory / DAMAGED / stamp
    with writing(target):
        target.mkdir(parents=True)
        for name in names:
            if (directory / name).exists():
                shutil.move(str(directory / name), str(target / name))
        (target / "why.txt").write_text(why.rstrip() + "\n")
    return target


# -- the run directory, as the engine writes it ------------------------------------------------

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

    # -- before training: is it done, is it this cell, may we write ----------------------
    def existing_ancestor(self) -> pathlib.Path:
        """The nearest folder of the run directory's path that exists (maybe itself)."""
        folder = self.path
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return folder

    def check_writable(self) -> None:
        """ConfigError (exit 2) when the run directory cannot be written, found by a
        probe in its nearest existing folder (nothing is created)."""
        folder = self.existing_ancestor()
        probe = folder / f".probe.tmp{os.getpid()}"
        try:
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ConfigError(f"the run directory {self.path} is not writable ({folder}: "
                              f"{err.strerror or err}); pass a writable --runs-dir") from None

    def remove_empty(self, upto: pathlib.Path) -> None:
        """Remove the run directory and its parents below ``upto`` while they are empty
        (what a run that stopped on bad input created); never anything with content."""
        folder = self.path
        while folder != upto and upto in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def finished_result(self) -> dict[str, Any] | None:
        """result.json's content when the cell is done, else None; ConfigError when
        result.json is damaged (the cell is invalid: nothing is trained over it)."""
        if not self.file(RESULT).exists():
            return None
        result, problem = try_read_json(self.file(RESULT))
        problem = problem or result_problem(result)
        if problem is not None:
            raise ConfigError(f"{self.file(RESULT)} {problem}: the cell is invalid. "
                              "`python -m slurm repair EXPERIMENT` moves the damaged file aside "
                              "(or move it away yourself), then relaunch")
        return result

    def check_config(self, cfg: TrainConfig) -> None:
        """Refuse (ConfigError) a directory whose config.json is another cell's or damaged."""
        stored, problem = try_read_json(self.file(CONFIG))
        if problem == "absent":
            return
        if problem is not None:
            raise ConfigError(f"{self.file(CONFIG)} is {problem}; nothing was overwritten. "
                              "`python -m slurm repair EXPERIMENT` moves it aside")
        differ = config_mismatch(cell_fields(cfg), stored)
        if differ:
            raise ConfigError(
                f"{self.path} holds another cell (config.json differs in: "
                f"{', '.join(d.split(':')[0] for d in differ)}); nothing was overwritten. "
                "Use another --runs-dir or --experiment, or move that directory away if it is stale.")

    def lock(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """The engine's exclusive hold on the cell (:class:`LockHeld` when another has it)."""
        from .runstate import scheduler_queue  # asked only to judge another host's lock

        def alive(lock: dict[str, Any]) -> bool:
            job = lock.get("slurm_job_id")
            if job and job == slurm_job_id():
                # Our own Slurm job, an earlier start of it (requeued, maybe on another
                # node): a job runs one engine at a time, so that one is gone.
                return False
            mine = lock.get("host") == socket.gethostname()
            return lock_alive(lock, None if mine else scheduler_queue())

        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        return locked(self.file(LOCK), alive)

    def remove_temporaries(self) -> list[str]:
        """Delete the temporary files of writes a killed run left behind (hold the lock)."""
        removed = []
        for entry in self.path.iterdir():
            # Not a lock's or a claim's: another process may be taking it right now.
            held = LOCK in entry.name or CLAIM in entry.name
            if entry.is_file() and is_temporary(entry.name) and not held:
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
        return removed

    # -- starting ---------------------------------------------------------------
    def begin(self, cfg: TrainConfig, device: torch.device, records: dict[str, Any],
              **meta: Any) -> None:
        """Write config.json (once), meta.json and the task's records.

        A previous failure's error.json is moved into previous_errors.jsonl: while this
        process runs the cell is not "failed", and if it fails again a fresh error.json
        tells the new story. ``meta``: more of this start to record in meta.json.
        """
        if not self.file(CONFIG).is_file():
            atomic_write_json(self.file(CONFIG), dataclasses.asdict(cfg))
        self._archive_error()
        for name, record in records.items():
            atomic_write_json(self.file(f"{name}.json"), record)
        self._start_meta(device, meta)

    def _read_meta(self) -> dict[str, Any]:
        meta, problem = try_read_json(self.file(META))
        if problem is None and isinstance(meta, dict):
            return meta
        fresh: dict[str, Any] = {"started": now(), "slurm_job_ids": [], "starts": []}
        if problem != "absent":  # damaged: keep its bytes, start a new one
            fresh["damaged_meta"] = str(move_aside(self.path, [META], f"meta.json {problem}"))
        return fresh

    def _start_meta(self, device: torch.device, extra: dict[str, Any]) -> None:
        meta = self._read_meta()
        job = slurm_job_id()
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if job is not None:
            meta.setdefault("slurm_job_ids", []).append(job)
        meta.update(versions=versions(), git_commit=git_commit(), host=socket.gethostname(),
                    device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    argv=sys.argv, **extra)
        meta.setdefault("starts", []).append({  # per start: a resumed run may be another commit's
            "time": now(), "host": meta["host"], "device": meta["device"], "git_commit": meta["git_commit"],
            "pid": os.getpid(), "slurm_job_id": job,
            "slurm_restart_count": int(restarts) if restarts and restarts.isdigit() else None})
        atomic_write_json(self.file(META), meta)

    def note(self, key: str, entry: dict[str, Any]) -> None:
        """Append ``entry`` (stamped with the time) to the list ``key`` of meta.json."""
        meta = self._read_meta()
        meta.setdefault(key, []).append({"time": now(), **entry})
        atomic_write_json(self.file(META), meta)

    def note_stop(self, reason: str, step: int) -> None:
        """Record in meta.json why and where the run stopped early (preemption)."""
        self.note("stops", {"reason": reason, "step": step})

    def note_collapse(self, found: dict[str, Any], epoch: int) -> None:
        """Record in meta.json that the run collapsed (``benchmarks.collapse``), found at ``epoch``."""
        self.note("collapses", {"found_at_epoch": epoch, **found})

    # -- metrics, checkpoint, result, error ---------------------------------------
    def append_metrics(self, lines: list[dict[str, Any]]) -> None:
        path = self.file(METRICS)
        with writing(path), open(path, "a") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, num_lines: int) -> None:
        """Keep the first ``num_lines`` lines: drop what a killed run wrote after its checkpoint."""
        path = self.file(METRICS)
        if not path.is_file():
            return
        lines = path.read_bytes().splitlines(keepends=True)
        if len(lines) != num_lines:
            atomic_write_bytes(path, b"".join(lines[:num_lines]))

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file() or self.file(PREVIOUS_CHECKPOINT).is_file()

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write checkpoint.pt, keeping the one it replaces as checkpoint.prev.pt.

        The new file is written beside, flushed, and read back (size, and the archive
        loads) before the previous checkpoint is given up, so that at every instant at
        least one verified checkpoint is on disk.
        """
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        path, tmp = self.file(CHECKPOINT), temporary(self.file(CHECKPOINT))
        with writing(path):
            try:
                _write_synced(tmp, buffer.getbuffer())
                if tmp.stat().st_size != buffer.getbuffer().nbytes:
                    raise OSError(errno.EIO, "the file on disk is shorter than what was written")
                try:
                    torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
                except Exception as err:  # noqa: BLE001 - any failure to read back
                    raise OSError(errno.EIO, f"the written checkpoint does not load back ({err})")
                if path.is_file():
                    os.replace(path, self.file(PREVIOUS_CHECKPOINT))
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise

    def load_checkpoint(self, problem_of: Callable[[dict[str, Any]], str | None]
                        ) -> dict[str, Any] | None:
        """The newest usable checkpoint (checkpoint.pt, else checkpoint.prev.pt), or None.

        ``problem_of(checkpoint)`` says why a checkpoint that loads is still not usable
        (another cell's, an old format). Every unusable file is moved aside at once (the
        next save would otherwise rotate it into checkpoint.prev.pt), and meta.json
        records what was skipped and what the run resumed from; with none usable the
        run restarts from scratch.
        """
        skipped: list[dict[str, str]] = []
        for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
            path = self.file(name)
            if not path.is_file():
                continue
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
                problem = problem_of(checkpoint)
            except Exception as err:  # noqa: BLE001 - 0 bytes: EOFError; cut: RuntimeError; ...
                checkpoint, problem = None, f"{type(err).__name__}: {err}".strip().rstrip(":")
            if problem is None:
                if skipped:
                    self._set_aside_checkpoints(skipped, f"resumed from {name}")
                return checkpoint
            skipped.append({"file": name, "error": problem[:500]})
        if skipped:
            self._set_aside_checkpoints(skipped, "no usable checkpoint: restarted from scratch")
        return None

    def _set_aside_checkpoints(self, skipped: list[dict[str, str]], action: str) -> None:
        why = "\n".join(f"{s['file']}: {s['error']}" for s in skipped)
        moved = move_aside(self.path, [s["file"] for s in skipped], why)
        self.note("checkpoint_recoveries", {"unusable": skipped, "moved_to": str(moved),
                                            "action": action})
        print(f"{self.path}: unusable checkpoint(s) moved to {moved} ({why.splitlines()[0]}); "
              f"{action}", file=sys.stderr, flush=True)

    def save_snapshot(self, epoch: int, step: int, cell: str, model: dict[str, Any]) -> None:
        """snapshots/epoch-NNNN.pt: the model's weights after ``epoch``, kept for the
        diagnostics (``--snapshot-every``); checkpoints keep only the last two."""
        buffer = io.BytesIO()
        torch.save({"epoch": epoch, "step": step, "cell_id": cell, "model": model}, buffer)
        folder = self.file(SNAPSHOTS)
        with writing(folder):
            folder.mkdir(exist_ok=True)
        atomic_write_bytes(folder / f"epoch-{epoch:04d}.pt", buffer.getbuffer())

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.file(RESULT), result)

    def write_error(self, err: BaseException, **extra: Any) -> None:
        """error.json; the directory is created if the run failed before it began, and
        an error.json already there (a failure before begin, twice) is archived."""
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        self._archive_error()
        tail = "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]
        atomic_write_json(self.file(ERROR), {"type": type(err).__name__, "message": str(err),
                                             "traceback": tail, "time": now(), **extra})

    def _archive_error(self) -> None:
        """Move error.json into previous_errors.jsonl (one line per earlier failure)."""
        error = self.file(ERROR)
        if not error.is_file():
            return
        content, problem = try_read_json(error)
        if problem is not None:  # keep the damaged bytes as they are
            move_aside(self.path, [ERROR], f"error.json {problem}")
            return
        archive = self.file(PREVIOUS_ERRORS)
        with writing(archive), open(archive, "a") as f:
            f.write(json.dumps(content, sort_keys=True) + "\n")
        error.unlink()


def write_crash(directory: pathlib.Path, info: dict[str, Any]) -> pathlib.Path:
    """error.json for an engine that died without writing one (written by a launcher);
    an error.json already there is kept."""
    error = pathlib.Path(directory) / ERROR
    if not error.exists():
        with writing(error):
            error.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(error, {"time": now(), **info})
    return error
