"""``python -m slurm plan|launch|status|retry|collect|repair EXPERIMENT``.

- ``plan``: every cell (id, the fields that vary, its resources, state) and the
  counts per state; submits nothing.
- ``launch``: submits the cells that are neither done, running, failed nor
  invalid (``retry`` reruns failed ones), grouped per resource class, one job
  array each; returns without waiting unless ``--wait``. It holds the sweep's
  launch lock while it decides and submits.
- ``status``: like plan, with the scheduler's job ids.
- ``retry``: relaunches the failed cells only (error.json; the engine clears it
  when the cell restarts); stopped cells are named with the ``launch`` that
  resumes them.
- ``collect``: the done cells' final metrics as a compact table
  (``python -m results`` renders the paper's tables).
- ``repair``: moves the damaged files of invalid cells aside (into the run
  directory's ``damaged/<time>/``; nothing is deleted), so a launch reruns them.

Every command names the invalid cells and why they are invalid. A runs dir that
does not exist is an error for every command but ``launch`` (which creates it) and
its dry run ``plan``. ``launch`` and ``retry`` check that every chosen cell's
dataset is on disk before starting any.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from benchmarks.config import ArgumentParser, ConfigError, to_argv
from benchmarks.rundir import WriteFailed
from benchmarks.runstate import repair

from . import sweep
from .job import PROJECT_ROOT, CellJob
from .local import CLAIMED, LocalCell, run_cells, write_spec
from .resources import (
    Resources,
    check_fits,
    parse_mem_gb,
    parse_minutes,
    query_partition,
    resources_for,
)
from .sweep import ACTIVE, DONE, FAILED, INVALID, STOPPED, CellStatus, SweepError

EXECUTORS = ("slurm", "local", "debug")
COMMANDS = ("plan", "launch", "status", "retry", "collect", "repair")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m slurm",
        description="Run an experiment of benchmarks.experiments as a sweep of cells.",
    )
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("experiment", help="experiment name (see benchmarks/experiments.py)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="slurm (default where sbatch is on PATH), local (child processes on this "
                   "machine, the default elsewhere), or debug (in-process, one after another, for pdb)")
    p.add_argument("--only", action="append", default=[], metavar="FIELD=VALUE",
                   help="keep the cells whose config field equals VALUE (repeatable: the same field "
                   "given twice matches either value; different fields must all match)")
    p.add_argument("--runs-dir", default=None, help="runs root (default: env VASSO_RUNS, else ./runs)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: env VASSO_DATA, else ./data)")
    p.add_argument("--experiments-module", default=os.environ.get("VASSO_EXPERIMENTS_MODULE"),
                   help="module (dotted name or .py path) whose EXPERIMENTS dict to use instead of "
                   "benchmarks.experiments (env VASSO_EXPERIMENTS_MODULE)")
    res = p.add_argument_group("resources (override every cell's default class)")
    res.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default)")
    res.add_argument("--gpus", type=int, default=None, help="GPUs per cell")
    res.add_argument("--cpus", type=int, default=None, help="CPU cores per cell")
    res.add_argument("--mem", default=None, help="memory per cell, e.g. 16G")
    res.add_argument("--time", default=None, help="time limit per job: minutes, HH:MM:SS or D-HH:MM:SS")
    res.add_argument("--array-parallelism", type=int, default=256,
                     help="Slurm: at most this many tasks of one array at once")
    res.add_argument("--signal-delay", type=int, default=90, metavar="SECONDS",
                     help="Slurm: checkpoint this long before the time limit")
    res.add_argument("--max-requeues", type=int, default=30,
                     help="Slurm: how many times a job may time out and be requeued")
    res.add_argument("--parallel", type=int, default=None,
                     help="local: cells at once (default: CPU cores / --cpus per cell)")
    p.add_argument("--wait", action="store_true",
                   help="launch/retry: block until the launched cells stop, printing progress")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMAND_FUNCS[args.command](args)
    except (SweepError, ConfigError, WriteFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- helpers


def _select(args, runs_must_exist: bool = True) -> tuple[object, list]:
    """The experiment and its (filtered, relocated) cells.

    ``runs_must_exist``: a runs dir that does not exist is an error (a typo
    would otherwise show every cell as not launched); only launch creates it.
    """
    experiment = sweep.get_experiment(args.experiment, args.experiments_module)
    filters = sweep.parse_filters(args.only)
    cells = sweep.relocate(sweep.apply_filters(list(experiment.cells), filters), args.runs_dir, args.data_dir)
    absent = _absent_runs_dirs(cells)
    if runs_must_exist and absent:
        given = "--runs-dir" if args.runs_dir else ("$VASSO_RUNS" if os.environ.get("VASSO_RUNS") else "the default")
        raise SweepError(f"runs dir {absent[0]} ({given}) does not exist: nothing was launched there; "
                         f"check the path, or `python -m slurm launch {experiment.name}` first")
    return experiment, cells


def _absent_runs_dirs(cells) -> list[Path]:
    return sorted({Path(c.runs_dir) for c in cells if not Path(c.runs_dir).is_dir()})


def _same_options(args) -> str:
    """The options of this command that select the same cells, for a command we suggest."""
    given = [("--executor", args.executor), ("--runs-dir", args.runs_dir), ("--data-dir", args.data_dir),
             ("--experiments-module", args.experiments_module
              if args.experiments_module != os.environ.get("VASSO_EXPERIMENTS_MODULE") else None)]
    given += [("--only", only) for only in args.only]
    return "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in given if value)


def _check_data(statuses: list[CellStatus]) -> None:
    """A SweepError before anything starts when a cell's dataset is not on disk."""
    from benchmarks.tasks import get_task  # imports torch: only launch and retry need it

    asked: set[tuple] = set()
    for s in statuses:
        key = (s.cfg.task, s.cfg.dataset, s.cfg.data_dir)
        if s.cfg.download or key in asked:
            continue
        asked.add(key)
        missing = get_task(s.cfg.task).missing_data(s.cfg)
        if missing:
            raise SweepError(f"{missing}, or pass --data-dir where it is; nothing was started")


def _executor(args) -> str:
    if args.executor is None:
        return "slurm" if shutil.which("sbatch") else "local"
    if args.executor == "slurm" and shutil.which("sbatch") is None:
        raise SweepError("--executor slurm: `sbatch` is not on PATH; start a cluster "
                         "(`make slurm-up`) or use --executor local")
    return args.executor


def _resources(args, cfg) -> Resources:
    return resources_for(
        cfg,
        gpus=args.gpus,
        cpus=args.cpus,
        mem_gb=parse_mem_gb(args.mem) if args.mem else None,
        time_min=parse_minutes(args.time) if args.time else None,
    )


def _check_resource_args(args) -> None:
    # Parsed here, before the launch takes its lock: bad input writes nothing.
    if args.time:
        parse_minutes(args.time)
    if args.mem:
        parse_mem_gb(args.mem)
    for name in ("gpus", "cpus", "array_parallelism", "signal_delay", "parallel", "max_requeues"):
        value = getattr(args, name)
        least = 0 if name in ("gpus", "signal_delay", "max_requeues") else 1
        if value is not None and value < least:
            raise SweepError(f"--{name.replace('_', '-')} {value}: must be at least {least}")


def _label(status: CellStatus, fields: list[str]) -> str:
    return " ".join(f"{f}={getattr(status.cfg, f)}" for f in fields)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _print_states(experiment, statuses: list[CellStatus], with_jobs: bool, resources=None) -> None:
    """The cells as a table; ``resources``: cell config -> Resources, for a column of them."""
    fields = sweep.varying_fields(list(experiment.cells))
    headers = ["cell", *fields] + (["resources"] if resources else []) + ["state"] + (["job"] if with_jobs else [])
    rows = []
    for s in statuses:
        row = [s.cell, *(getattr(s.cfg, f) for f in fields)]
        row += [resources(s.cfg).describe()] if resources else []
        rows.append(row + [s.state] + ([s.job or ""] if with_jobs else []))
    print(f"{experiment.name}: {experiment.title}")
    print(_table(headers, rows))
    counts = sweep.count_states(statuses)
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    print(f"\n{len(statuses)} cells: {summary}")
    # The recipe every cell shares (docs/recipe.md for the paper's), which the table omits.
    shared = sweep.shared_settings(list(experiment.cells))
    print("every cell: " + " ".join(f"{k}={v}" for k, v in shared.items()))
    _report_invalid(experiment, statuses)


def _report_invalid(experiment, statuses: list[CellStatus]) -> None:
    """Name every invalid cell and its reason (on stderr), and the command that repairs them."""
    invalid = [s for s in statuses if s.state == INVALID]
    for s in invalid:
        print(f"invalid: {s.path}: {s.reason}", file=sys.stderr)
    if invalid:
        print(f"{len(invalid)} invalid cell(s) are left alone: `python -m slurm repair "
              f"{experiment.name}` moves their damaged files aside so that a launch reruns them",
              file=sys.stderr)


# --------------------------------------------------------------------------- commands


def cmd_plan(args) -> int:
    # The dry run of launch: like launch, it accepts a runs dir that launch would create.
    _check_resource_args(args)
    experiment, cells = _select(args, runs_must_exist=False)
    queue = sweep.scheduler_queue()
    statuses = sweep.cell_states(cells, experiment.name, queue)
    _print_states(experiment, statuses, with_jobs=False, resources=lambda cfg: _resources(args, cfg))
    for absent in _absent_runs_dirs(cells):
        print(f"(runs dir {absent} does not exist yet: `python -m slurm launch {experiment.name}` creates it)")
    return 0


def cmd_status(args) -> int:
    experiment, cells = _select(args)
    queue = sweep.scheduler_queue()
    statuses = sweep.cell_states(cells, experiment.name, queue)
    _print_states(experiment, statuses, with_jobs=True)
    if queue is None:
        print("(no scheduler answered: states come from the run directories and local locks)")
    return 0


def cmd_launch(args) -> int:
    return _launch(args, want=lambda s: s.state not in (DONE, FAILED, INVALID, *ACTIVE))


def cmd_retry(args) -> int:
    return _launch(args, want=lambda s: s.state == FAILED)


def cmd_collect(args) -> int:
    from benchmarks.tasks import get_task  # imports torch: only here
    experiment, cells = _select(args)
    statuses = sweep.cell_states(cells, experiment.name, queue=None)
    fields = sweep.varying_fields(list(experiment.cells))
    rows = []
    for s in statuses:
        if s.state != DONE:
            continue
        # Validated by the classifier: a finite primary test metric in final and best.
        result = s.detail.result
        primary = result["primary"]
        spec = get_task(s.cfg.task).metric(primary).format
        final, best = result["final"], result["best"]
        rows.append([
            s.cell, *(getattr(s.cfg, f) for f in fields), primary,
            format(final["test"][primary], spec), format(best["test"][primary], spec),
            str(best.get("epoch", "")), _number(result.get("time_s"), ".0f"),
        ])
    headers = ["cell", *fields, "metric", "final", "best", "best_epoch", "time_s"]
    print(f"{experiment.name}: {len(rows)} of {len(statuses)} cells done (the task's primary test metric "
          f"at the final and the best evaluation; `python -m results {experiment.name}` renders the table)")
    if rows:
        print(_table(headers, rows))
    _report_invalid(experiment, statuses)
    return 0


def _number(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def cmd_repair(args) -> int:
    experiment, cells = _select(args)
    statuses = sweep.cell_states(cells, experiment.name, sweep.scheduler_queue())
    repaired = 0
    for s in statuses:
        if s.state != INVALID:
            continue
        moved = repair(s.path, s.detail)
        if moved is not None:
            repaired += 1
            print(f"{s.cell}: {s.reason}; moved {', '.join(s.detail.damaged)} to {moved}")
    print(f"{experiment.name}: {repaired} invalid cell(s) repaired"
          + (f"; `python -m slurm launch {experiment.name}` reruns them" if repaired else ""))
    return 0


def _launch(args, want) -> int:
    _check_resource_args(args)
    executor = _executor(args)
    experiment, cells = _select(args, runs_must_exist=args.command != "launch")
    # Ask the scheduler whatever the executor: a cell that a Slurm job holds
    # must not be started a second time by a local or debug launch.
    statuses = sweep.cell_states(cells, experiment.name, sweep.scheduler_queue())
    chosen = [s for s in statuses if want(s)]
    counts = sweep.count_states(statuses)
    if args.command == "launch" and counts[FAILED]:
        print(f"{counts[FAILED]} failed cell(s) left alone: "
              f"`python -m slurm retry {experiment.name}{_same_options(args)}` reruns them")
    _report_invalid(experiment, statuses)
    fields = sweep.varying_fields(list(experiment.cells))
    stopped = [s for s in statuses if s.state == STOPPED]
    if args.command == "retry" and stopped:
        # retry reruns failed cells; a stopped one (started, nothing runs it) resumes with launch.
        print(f"{len(stopped)} stopped cell(s), not retried: "
              f"`python -m slurm launch {experiment.name}{_same_options(args)}` resumes them from their checkpoints")
        for s in stopped:
            print(f"  {s.cell}  {_label(s, fields)}  stopped")
    if not chosen:
        return _nothing_to(args, experiment, counts)
    _check_data(chosen)
    # One launch at a time decides and submits: the states are read again under the
    # sweep's lock, so a concurrent launch that took these cells meanwhile is seen.
    with sweep.launch_lock(sweep.sweep_dir(cells, experiment.name)) as release:
        statuses = sweep.cell_states(cells, experiment.name, sweep.scheduler_queue())
        chosen = [s for s in statuses if want(s)]
        if not chosen:
            return _nothing_to(args, experiment, sweep.count_states(statuses))
        classes: dict[Resources, list[CellStatus]] = defaultdict(list)
        for s in chosen:
            classes[_resources(args, s.cfg)].append(s)
        launchers = {"slurm": _submit_slurm, "local": _run_local, "debug": _run_debug}
        code = launchers[executor](args, experiment, classes, fields, release)
    if args.wait and executor == "slurm":
        code = _wait_for(experiment, [s.cfg for s in chosen])
    return code


def _nothing_to(args, experiment, counts: dict[str, int]) -> int:
    left = (DONE, FAILED, INVALID, *ACTIVE)
    shown = counts if args.command == "retry" else {k: n for k, n in counts.items() if k in left}
    summary = ", ".join(f"{n} {state}" for state, n in shown.items() if n)
    print(f"{experiment.name}: nothing to {args.command} ({summary or 'no cells'})")
    return 0


def _submit_slurm(args, experiment, classes, fields, release) -> int:
    import submitit  # imported here: plan/status/collect do not need it

    # Every check happens before the first submission: all or nothing.
    check_fits(query_partition(args.partition), list(classes))
    shortest = min(res.time_min for res in classes)
    if shortest * 60 - args.signal_delay < 90:
        # Slurm may send the signal up to a minute early: it must not arrive
        # before the job has started and installed its handlers.
        raise SweepError(
            f"--time {shortest} min with --signal-delay {args.signal_delay} s: Slurm may signal the job "
            f"before it has started; leave at least 90 s between them (e.g. --time "
            f"{-(-(args.signal_delay + 90) // 60)})"
        )
    folder = sweep.sweep_dir([s.cfg for group in classes.values() for s in group], experiment.name)
    submitted: dict[str, str] = {}
    for res, group in sorted(classes.items()):
        executor = submitit.SlurmExecutor(folder=folder / "submitit" / "%j",
                                          max_num_timeout=args.max_requeues)
        params = dict(
            job_name=f"vasso-{experiment.name}",
            time=res.time_min,
            cpus_per_task=res.cpus,
            mem=f"{res.mem_gb}G",
            signal_delay_s=args.signal_delay,
            array_parallelism=args.array_parallelism,
            # The job's Python must import this project wherever sbatch starts it.
            setup=[f"export PYTHONPATH={PROJECT_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
            additional_parameters={"requeue": True},
        )
        if args.partition:
            params["partition"] = args.partition
        if res.gpus:
            params["gpus_per_node"] = res.gpus
        executor.update_parameters(**params)
        with executor.batch():
            jobs = [executor.submit(CellJob(to_argv(s.cfg), str(s.path), threads=s.cfg.threads))
                    for s in group]
        ids = {s.cell: job.job_id for s, job in zip(group, jobs)}
        sweep.record_jobs(folder, "slurm", ids)
        submitted.update(ids)
        array = jobs[0].job_id.split("_")[0]
        print(f"submitted job array {array}: {len(group)} cell(s), {res.describe()}")
        for s in group:
            print(f"  {ids[s.cell]}  {s.cell}  {_label(s, fields)}")
    print(f"{len(submitted)} cell(s) submitted; `python -m slurm status {experiment.name}` follows them")
    return 0


def _local_cells(classes, fields) -> tuple[list[LocalCell], int]:
    """The local runner's cells, and the most CPUs any of them asks for
    (which sizes the default parallelism)."""
    cells = [
        LocalCell(s.cell, _label(s, fields), to_argv(s.cfg), str(s.path), threads=s.cfg.threads)
        for res, group in classes.items() for s in group
    ]
    return cells, max(res.cpus for res in classes)


def _run_local(args, experiment, classes, fields, release) -> int:
    cells, most_cpus = _local_cells(classes, fields)
    parallel = args.parallel or max(1, (os.cpu_count() or 1) // most_cpus)
    folder = sweep.sweep_dir([s.cfg for group in classes.values() for s in group], experiment.name)
    log_dir = folder / "logs"
    if args.wait:
        print(f"running {len(cells)} cell(s), {parallel} at a time; logs in {log_dir}")
        codes = run_cells(cells, parallel, log_dir, on_claimed=release)
        failed = [c for c, rc in codes.items() if rc != 0]
        print(f"{len(codes) - len(failed)} of {len(cells)} cell(s) finished"
              + (f"; not done: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec = folder / f"local-{stamp}-{os.getpid()}.json"
    write_spec(spec, cells, parallel, log_dir)
    log = folder / f"local-{stamp}-{os.getpid()}.log"
    # The runner claims the cells itself and says so on this pipe; returning
    # only then means a launch right after this one sees them as pending.
    claimed_r, claimed_w = os.pipe()
    try:
        with open(log, "ab") as out:
            runner = subprocess.Popen(
                [sys.executable, "-m", "slurm.local", str(spec), "--claimed-fd", str(claimed_w)],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                pass_fds=(claimed_w,),
                start_new_session=True,  # outlives this command and its terminal
            )
    finally:
        os.close(claimed_w)  # the runner holds the only write end now: EOF if it dies
    with os.fdopen(claimed_r, "rb") as pipe:
        said = pipe.readline()
    if said != CLAIMED:
        raise SweepError(f"the local runner (pid {runner.pid}) stopped before it claimed its cells; "
                         f"its log: {log}")
    print(f"started local runner (pid {runner.pid}): {len(cells)} cell(s), {parallel} at a time; "
          f"log: {log}")
    return 0


def _run_debug(args, experiment, classes, fields, release) -> int:
    from benchmarks.engine import train  # in-process: breakpoints and pdb work

    release()  # each cell takes its own lock as it trains
    for group in classes.values():
        for s in group:
            print(f"debug: training {s.cell} ({_label(s, fields)}) in-process")
            train(s.cfg)
    return 0


def _wait_for(experiment, cells, poll_s: float = 5.0) -> int:
    """Poll until none of ``cells`` is pending or running; 0 when all are done."""
    while True:
        statuses = sweep.cell_states(cells, experiment.name, sweep.scheduler_queue())
        counts = sweep.count_states(statuses)
        if not any(counts[s] for s in ACTIVE):
            print(", ".join(f"{n} {state}" for state, n in counts.items() if n))
            return 0 if counts[DONE] == len(cells) else 1
        time.sleep(poll_s)


COMMAND_FUNCS = {
    "plan": cmd_plan,
    "status": cmd_status,
    "launch": cmd_launch,
    "retry": cmd_retry,
    "collect": cmd_collect,
    "repair": cmd_repair,
}
