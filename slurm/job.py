"""The callable that one Slurm job runs: one cell, as a child process.

Why a child process: the engine owns its signals (SIGTERM / SIGUSR2 -> finish
the step, write checkpoint.pt, exit 75), its memory and its CUDA context; the
submitit side stays a thin supervisor that only decides what happens to the
*job* (requeue or not). Nothing about the cell's progress lives in the pickled
submission: on every start the child resumes from its own run directory,
which the engine derives from the cell's config.

Preemption and timeout, step by step:

1. Slurm sends SIGUSR2 ``signal_delay_s`` before the time limit (or on
   preemption); submitit's handler calls :meth:`CellJob.checkpoint`.
2. ``checkpoint`` sends SIGTERM to the child and waits for it to exit (the
   engine checkpoints at a step boundary and exits 75), then returns a
   ``DelayedSubmission`` of this same job; submitit requeues the job.
3. On restart the same ``CellJob`` launches the same command; the engine finds
   checkpoint.pt and resumes.

``scontrol requeue`` is different: Slurm sends SIGTERM to every process of the
job, submitit's parent ignores it, the child checkpoints and exits 75, and
:meth:`CellJob.__call__` simply returns; Slurm itself relaunches the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit

from benchmarks import rundir
from benchmarks.__main__ import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_DONE, EXIT_FAILED, EXIT_PREEMPTED

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def engine_command(argv: list[str], python: str | None = None) -> list[str]:
    """The command line that trains one cell: ``python -m benchmarks <argv>``."""
    return [python or sys.executable, "-m", "benchmarks", *argv]


def distributed_env() -> dict[str, str]:
    """torchrun's variables for the engine, from Slurm's, in a job of several tasks (one
    per GPU, or several CPU processes): the engine then trains data-parallel. Empty in a
    job of one task, or outside a job."""
    try:
        job = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return {}
    if job.num_tasks <= 1:
        return {}
    dist = submitit.helpers.TorchDistributedEnvironment()
    return {"MASTER_ADDR": dist.master_addr, "MASTER_PORT": str(dist.master_port),
            "RANK": str(dist.rank), "WORLD_SIZE": str(dist.world_size),
            "LOCAL_RANK": str(dist.local_rank), "LOCAL_WORLD_SIZE": str(dist.local_world_size)}


def engine_env(threads: int | None = None) -> dict[str, str]:
    """The child's environment: the project importable, and its thread budget."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    if threads is not None:
        # The engine pins torch's threads to its --threads itself; OpenMP users other
        # than torch get the same number, whatever the executor or Slurm set.
        env["OMP_NUM_THREADS"] = str(threads)
    return env


# How the engine (and its argparse) begins the one line that explains an exit 2.
BAD_INPUT_PREFIX = "python -m benchmarks: error: "


def bad_input_message(log: Path, offset: int = 0) -> str | None:
    """The engine's bad-input line (what it printed before exiting 2), from ``log``
    after byte ``offset`` (where this start's output begins); None if absent."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if line.startswith(BAD_INPUT_PREFIX):
            return line[len(BAD_INPUT_PREFIX):].strip()
    return None


def record_crash(run_dir: str | Path, rc: int, where: str, log: Path | None = None, offset: int = 0) -> Path:
    """Write error.json for an engine that exited without writing one, so the cell
    shows as failed and ``retry`` finds it: bad input (exit 2, which by design
    writes nothing; its message is taken from ``log`` after ``offset``), or a crash
    before its error handling, a kill. The engine moves error.json aside when it
    restarts."""
    rejected = bad_input_message(log, offset) if rc == EXIT_BAD_INPUT and log is not None else None
    if rejected is not None:
        info = {"type": "BadInput", "exit_code": rc, "written_by": "slurm",
                "message": f"{rejected} (the engine's output: {where})"}
    else:
        info = {"type": "EngineDied", "exit_code": rc, "written_by": "slurm",
                "message": f"`python -m benchmarks` exited with code {rc} without writing "
                           f"{rundir.ERROR}; its output is in {where}"}
    return rundir.write_crash(Path(run_dir), info)


def _submitit_stderr() -> Path | None:
    """The stderr file of the submitit job this process runs (None outside one)."""
    try:
        return Path(submitit.JobEnvironment().paths.stderr)
    except Exception:  # not inside a submitit job (tests, a direct call)
        return None


class CellFailed(RuntimeError):
    """The engine exited with a failure; the message names the run's error.json."""


class CellJob(submitit.helpers.Checkpointable):
    """Train one cell in a child process; requeue on preemption or timeout.

    Args:
        argv: the engine's arguments (``benchmarks.config.to_argv(cfg)``).
        run_dir: where the engine writes this cell (for messages only; the
            engine derives it from ``argv`` itself).
        grace_s: how long :meth:`checkpoint` waits for the child to checkpoint
            and exit before it kills it (the last epoch checkpoint then serves).
        poll_s: how often the supervisor looks at the child.
        threads: the cell's ``--threads``, given to the child as OMP_NUM_THREADS too
            (Slurm would set it to the job's CPU count).
    """

    def __init__(self, argv: list[str], run_dir: str, grace_s: float = 60.0, poll_s: float = 0.5,
                 threads: int | None = None):
        self.argv = list(argv)
        self.run_dir = str(run_dir)
        self.threads = threads
        self.grace_s = grace_s
        self.poll_s = poll_s
        self._proc: subprocess.Popen | None = None
        self._returncode: int | None = None
        self._log: Path | None = None  # the job's stderr file, which the child writes to
        self._log_offset = 0

    def __getstate__(self) -> dict:
        # A live process handle is not part of the submission: a restart
        # launches a fresh child.
        state = dict(self.__dict__)
        state["_proc"], state["_returncode"], state["_log"], state["_log_offset"] = None, None, None, 0
        return state

    def __call__(self) -> dict | None:
        """Run the cell; its result.json content when it finished, else None."""
        self._returncode = None
        self._log = _submitit_stderr()
        # The child appends to the job's log: its own output starts here.
        self._log_offset = self._log.stat().st_size if self._log is not None and self._log.exists() else 0
        self._proc = subprocess.Popen(engine_command(self.argv),
                                      env={**engine_env(getattr(self, "threads", None)),
                                           **distributed_env()})
        # Poll rather than Popen.wait(): submitit's signal handler runs in this
        # thread and calls checkpoint(), which must be able to reap the child
        # while this frame is suspended (Popen.wait would hold its lock).
        while (rc := self._reap(block=False)) is None:
            time.sleep(self.poll_s)
        return self._outcome(rc)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Stop the child at a step boundary, then ask submitit to requeue this job."""
        proc = self._proc
        if proc is not None and self._returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.grace_s
            while self._reap(block=False) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._returncode is None:
                # The engine did not stop in time: the last checkpoint on disk
                # still makes the restart resume, only with more work to redo.
                proc.kill()
                self._reap(block=True)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def _reap(self, block: bool) -> int | None:
        """The child's exit code once it has exited (waitpid, lock-free)."""
        if self._returncode is not None or self._proc is None:
            return self._returncode
        try:
            pid, status = os.waitpid(self._proc.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            # Already reaped by the other frame (the signal handler or the loop
            # it interrupted); the code is set there or is lost with the process.
            return self._returncode if self._returncode is not None else -signal.SIGTERM
        if pid == 0:
            return None
        self._returncode = os.waitstatus_to_exitcode(status)
        self._proc.returncode = self._returncode  # so Popen does not reap it again
        return self._returncode

    def _outcome(self, rc: int) -> dict | None:
        run_dir = Path(self.run_dir)
        if distributed_env().get("RANK", "0") != "0":
            # Rank 0's task reports the cell (result.json, error.json); the others
            # only say how their engine ended.
            if rc in (EXIT_DONE, EXIT_PREEMPTED):
                return None
            raise CellFailed(f"rank {distributed_env()['RANK']}'s engine exited with code {rc} "
                             f"(run dir {run_dir}; rank 0's task reports the cell)")
        if rc == EXIT_DONE:
            try:
                result = rundir.RunDir(run_dir).finished_result()
            except ValueError as exc:  # a damaged result.json (ConfigError)
                raise CellFailed(str(exc)) from None
            if result is None:
                raise CellFailed(f"the engine exited 0 but wrote no {run_dir / rundir.RESULT}")
            return result
        if rc == EXIT_PREEMPTED:
            # Stopped by a signal that did not reach this supervisor (scontrol
            # requeue): the checkpoint is on disk and Slurm relaunches the job.
            return None
        if rc == EXIT_BUSY:  # the cell is another engine's: nothing was written, nothing to record
            raise CellFailed(f"another engine holds {run_dir}; this job did nothing")
        log = self._log
        # A no-op when the engine wrote error.json itself.
        record_crash(run_dir, rc, str(log or "this job's submitit log"), log, self._log_offset)
        if rc == EXIT_FAILED:
            error = run_dir / rundir.ERROR
            info, _ = rundir.try_read_json(error)
            detail = f": {info.get('type', '')}: {info.get('message', '')}" if isinstance(info, dict) else ""
            raise CellFailed(f"cell failed (see {error}){detail}")
        if rc == EXIT_BAD_INPUT:
            reason = bad_input_message(log, self._log_offset) if log else None
            raise CellFailed(f"the engine rejected the cell (exit 2): {reason or ' '.join(self.argv)}")
        raise CellFailed(f"the engine died with exit code {rc} (run dir {run_dir})")
