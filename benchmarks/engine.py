"""The one training loop behind every task: ``train(cfg) -> result``.

For each cell: load the task's data and model, wrap the base optimizer in the
sharpness-aware method, and train for ``--epochs`` or ``--max-steps`` with a
learning-rate schedule set per step (``benchmarks.training.schedule``), evaluating
after every epoch (``--eval-every``) and every ``--eval-every-steps`` steps, and
checkpointing after every epoch and every ``--checkpoint-every-steps`` steps.
Everything the run produces goes to its run directory (``benchmarks.rundir``).

What is trained and how it is scored is the task's (``benchmarks.tasks.base``): the
loss of a batch with its device-side training sums, the evaluation, the metrics and
the primary one, which picks the best evaluation. Where the batches come from (a
DataLoader, or CIFAR held on the device: ``--fast``) is decided once
(``benchmarks.training.data_path``). Every optimizer is driven by one step object
(``benchmarks.training.step.TrainStep``): a closure runs forward and backward; a
sharpness-aware method calls it at w and at w + e, the base optimizer once. The
training sums come from the first (clean) pass and stay on the device: the loop
never calls ``.item()`` per step.

Restarts. A directory with result.json is done: ``train`` returns it at once. A
directory with checkpoint.pt resumes from it, always, bit-exactly on CPU: the
checkpoint holds the model, the optimizer (with the method's own state), the
scheduler, the gradient scaler, the position in the epoch, the partial training
sums and the RNG states, and the batches are pure functions of (seed, epoch). An
unreadable checkpoint is moved aside and the previous one (checkpoint.prev.pt)
serves; with none readable the cell starts over (``RunDir.load_checkpoint``).
SIGTERM or SIGUSR2 ends the current step, writes a (possibly mid-epoch) checkpoint
and raises :class:`Preempted` (exit code 75). A non-finite training loss raises
:class:`NonFiniteLoss` before any checkpoint of the diverged state is written; it,
like any other exception, leaves error.json (exit code 1) and the previous checkpoint.

One engine per cell: ``train`` holds the run directory's lock (``RunDir.lock``)
from before its first write to its end; a second engine raises ``LockHeld``
(exit code 3) and writes nothing. The thread count is pinned to ``--threads``, so
a cell gives the same numbers wherever it runs on one machine.

Collapse. A classification run whose training loss sits at the uniform-prediction
level ln C is dead, not diverged (``benchmarks.collapse``, docs/collapse.md): the
engine judges the epoch's training loss it already reads, records a collapse in
meta.json and result.json, and trains on, or with ``--stop-on-collapse`` raises
:class:`Collapsed`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


from . import collapse
from .config import ConfigError, TrainConfig, cell_id, run_dir
from .distributed import (Collective, World, check_global_batch, data_parallel, device_of,
                          init_process_group, world_from_environment)
from .methods import build_optimizer
from .monitor import Monitor, wanted as monitor_wanted
from .progress import Progress
from .rundir import RunDir, WriteFailed
from .tasks import Task, TaskData, get_task
from .tasks.base import Batch, Sums, data_seed
from .training.data_path import DevicePath, LoaderPath, data_path, use_fast_path
from .training.schedule import lr_factor
from .training.signals import StopSignals
from .training.state import load_optimizer_state, rng_state, seed_everything, set_rng_state
from .training.step import TrainStep, use_tensor_lr

CHECKPOINT_FORMAT = 2
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
STAMP = {"epoch", "step", "lr", "split", "time_s"}  # the keys of a metrics line beside the metrics


class Preempted(Exception):
    """A stop signal arrived; the checkpoint is written and a relaunch resumes (exit 75)."""


class Collapsed(RuntimeError):
    """``--stop-on-collapse``: the run has collapsed (``benchmarks.collapse``); exit 1, error.json."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite at ``step`` (exit 1, error.json)."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"non-finite training loss {loss} at step {step}; the last "
                         "checkpoint (before it) is kept. Lower --lr or --rho?")
        self.step, self.loss = step, loss


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device=cuda but no CUDA device is available; use --device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class FollowerRunDir:
    """The run directory as a rank other than 0 sees it: rank 0 alone reads the
    checkpoint (and sends it) and writes every file; the others write nothing."""

    def __init__(self, path) -> None:
        self.path = path

    def has_checkpoint(self) -> bool:
        return False  # the checkpoint comes from rank 0

    def truncate_metrics(self, num_lines: int) -> None: ...
    def append_metrics(self, lines: list[dict[str, Any]]) -> None: ...
    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...
    def note_stop(self, reason: str, step: int) -> None: ...
    def note_collapse(self, found: dict[str, Any], epoch: int) -> None: ...
    def write_result(self, result: dict[str, Any]) -> None: ...
    def write_error(self, err: BaseException, **extra: Any) -> None: ...


@dataclasses.dataclass
class Position:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0               # epochs completed
    step_in_epoch: int = 0       # steps completed in the current epoch
    step: int = 0                # optimizer steps completed in all
    metrics_lines: int = 0       # lines of metrics.jsonl that belong to this state
    elapsed_s: float = 0.0       # training time before this process
    final: dict[str, Any] | None = None  # the last evaluation: {"epoch", "step", "test", "train"}
    best: dict[str, Any] | None = None   # the evaluation best by the primary metric
    stuck: dict[str, Any] | None = None  # the training loss's streak at the uniform level


class Trainer:
    """One cell's training: ``Trainer(...).run() -> result``. ``batches``: the data path,
    when the caller has built it already (default: :func:`data_path` decides)."""

    def __init__(self, cfg: TrainConfig, task: Task, data: TaskData, device: torch.device,
                 rundir: RunDir | FollowerRunDir, stop: StopSignals,
                 batches: LoaderPath | DevicePath | None = None,
                 collective: Collective | None = None) -> None:
        self.cfg, self.task, self.data, self.device = cfg, task, data, device
        self.rundir, self.stop = rundir, stop
        self.collective = collective = collective or Collective(World())
        self.world = collective.world
        self.batches = batches = batches or data_path(cfg, task, data, device, self.world)
        self.primary = task.metric(task.primary)
        clash = STAMP & {m.name for m in task.metrics}
        if clash:  # a metrics.jsonl line holds the stamp and the metrics side by side
            raise ValueError(f"the {task.name} task's metrics {sorted(clash)} clash with "
                             f"the metrics lines' own keys {sorted(STAMP)}: rename them")
        self.steps_per_epoch = batches.steps_per_epoch
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        torch.manual_seed(data_seed(cfg, "init"))  # same weights for every optimizer
        self.model = task.build_model(cfg, data).to(device)
        if batches.channels_last:  # DeviceCIFAR's NHWC images give channels-last batches for free
            self.model = self.model.to(memory_format=torch.channels_last)
        # Data parallel: the model in DDP (self.trained), BatchNorm layers synchronised
        # with --sync-batchnorm; self.model stays the module the checkpoints hold.
        self.model, self.trained = data_parallel(self.model, self.world, device, cfg.sync_batchnorm)
        self.optimizer, self.base = build_optimizer(cfg, self.trained, fused=batches.fast)
        self.scheduler = LambdaLR(self.base, lr_factor(cfg, self.steps_per_epoch, self.total_steps))
        if batches.fast:
            # After the scheduler is built: its base rates stay Python floats, so each
            # scheduler step is one fill_ of the LR tensor with a host number (no
            # device arithmetic, no sync) and checkpoints hold plain floats.
            use_tensor_lr(self.base)
        dtype = AUTOCAST[cfg.precision]
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        seed_everything(data_seed(cfg, "train"))
        self.pos = Position()
        self.sums = Sums()  # the epoch's training sums, on the device (read once per epoch)
        # First non-finite step and its loss, kept on the device (-1: none yet).
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        # Rank 0 reads the checkpoint (moving aside what is unusable); every rank
        # resumes from what it read.
        self._resume(collective.broadcast(
            rundir.load_checkpoint(self._problem) if rundir.has_checkpoint() else None))
        # Built after _resume, which may replace the LR tensors: a recorded graph reads
        # the tensors that exist when it is recorded (after the warm-up steps).
        self.step = TrainStep(self.trained, self.optimizer, self._objective,
                              mode="auto" if batches.fast else "eager", autocast_dtype=dtype,
                              scaler=self.scaler, clip_grad_norm=cfg.clip_grad_norm)

    @property
    def _state_per_rank(self) -> bool:
        """Whether the ranks' optimizer states differ: under sync="local" each rank's
        perturbation state is its own (VaSSO's average, the last perturbation), and each
        rank must resume its own. Otherwise every rank holds rank 0's."""
        return self.world.size > 1 and getattr(self.optimizer, "sync", "global") == "local"

    def _objective(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        loss, sums, weight = self.task.loss(model, batch, self.cfg)
        return loss, (sums, weight)

    # -- checkpoint -----------------------------------------------------------------
    def _fold_sums(self) -> None:
        """Data parallel: add the ranks' partial training sums into rank 0's, which the
        checkpoint saves; the other ranks go on from zero, so a resumed run counts each
        sample once."""
        if self.world.size == 1:
            return
        sums, weight = self._summed_over_ranks()
        self.sums = Sums()
        if self.world.main and sums:
            self.sums.add({name: torch.tensor(total, dtype=torch.float64, device=self.device)
                           for name, total in sums.items()}, weight)

    def _summed_over_ranks(self) -> tuple[dict[str, float], float]:
        """The ranks' training sums added up, on every rank. Rank 0 names them: a rank
        that has taken no step since a resume or a fold holds none (rank 0 holds the
        folded ones) and sends zeros, so that every rank sends as many numbers."""
        sums, weight = self.sums.read()
        if self.world.size == 1:
            return sums, weight
        names = self.collective.broadcast(list(sums))
        *totals, weight = self.collective.sum([*(sums.get(name, 0.0) for name in names), weight])
        return dict(zip(names, totals)), weight

    def _checkpoint(self) -> None:
        self._check_finite()  # never persist a diverged state
        self._fold_sums()
        optimizer = self.optimizer.state_dict()
        by_rank = self.collective.gather(optimizer) if self._state_per_rank else None
        if by_rank is not None:
            by_rank[0] = optimizer  # the same tensors: saved once
        self.rundir.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "cell_id": cell_id(self.cfg),
            "model": self.model.state_dict(), "optimizer": optimizer,
            "optimizer_by_rank": by_rank,
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "position": dataclasses.asdict(self.pos) | {"elapsed_s": self._elapsed()},
            "train_sums": self.sums.state_dict(), "rng": rng_state()})

    def _problem(self, ckpt: dict[str, Any]) -> str | None:
        """Why a loaded checkpoint is not one of this cell's, or None."""
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("cell_id") != cell_id(self.cfg):
            return (f"not a checkpoint of this cell (format {ckpt.get('format')}, "
                    f"cell {ckpt.get('cell_id')})")
        return None

    def _resume(self, ckpt: dict[str, Any] | None) -> None:
        if ckpt is None:  # none (or none usable: moved aside, recorded): start over; a run
            self.rundir.truncate_metrics(0)  # killed before its first checkpoint may have left a line
            return
        self.model.load_state_dict(ckpt["model"])
        by_rank = ckpt.get("optimizer_by_rank")
        saved = len(by_rank) if by_rank else 1  # processes that wrote the checkpoint
        if (self._state_per_rank or by_rank) and saved != self.world.size:
            raise ConfigError(f"{self.rundir.path}: its checkpoint was written by {saved} "
                              f"process(es) under --sync local, whose optimizer state is per "
                              f"rank; resume it with {saved}, not {self.world.size}")
        load_optimizer_state(self.optimizer, self.base,
                             by_rank[self.world.rank] if by_rank else ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        # The checkpoint's param groups brought back the LR of whichever path wrote it
        # (a float, or a tensor mapped to the CPU); set this path's kind from the
        # scheduler. Replacing the tensors is safe here: no graph is recorded yet.
        for group, lr in zip(self.base.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = float(lr)
        if self.batches.fast:
            use_tensor_lr(self.base, self.device)
        self.pos = Position(**ckpt["position"])
        if self.world.main:  # the others' share of the sums is in rank 0's (_fold_sums)
            self.sums.load_state_dict(ckpt["train_sums"], self.device)
        set_rng_state(ckpt["rng"])
        self.rundir.truncate_metrics(self.pos.metrics_lines)
        if self.world.main:
            print(f"resuming {self.rundir.path} at epoch {self.pos.epoch} step {self.pos.step}",
                  flush=True)

    # -- helpers ----------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.pos.elapsed_s + time.perf_counter() - self.tic

    def _lr(self) -> float:
        return float(self.base.param_groups[0]["lr"])  # a device tensor on the fast path

    def _check_finite(self) -> None:
        step = int(self.collective.max(int(self.bad_step)))  # every rank stops together
        if step >= 0:
            raise NonFiniteLoss(step, float(self.bad_loss))

    def _stop_requested(self) -> bool:
        """A stop signal reached this rank or another: all ranks stop at this step."""
        return self.collective.any(self.stop.requested is not None)

    def _train_step(self, batch: Batch) -> torch.Tensor:
        loss, (sums, weight) = self.step(batch)
        # In graph mode ``loss`` and ``sums`` are the graph's buffers, overwritten by
        # the next replay: everything that reads them is enqueued here, before it.
        self.sums.add(sums, weight)
        newly_bad = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(newly_bad, self.pos.step, self.bad_step)
        self.bad_loss = torch.where(newly_bad, loss, self.bad_loss)
        return loss

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), self.autocast:
            metrics = self.task.evaluate(self.model, self.batches.test_batches(), self.cfg, self.data)
        self.model.train()
        if self.primary.name not in metrics:
            raise ValueError(f"the {self.task.name} task's evaluate returned no "
                             f"{self.primary.name!r}, its primary metric")
        return self._declared(metrics, "evaluate")

    def _declared(self, metrics: dict[str, float], where: str) -> dict[str, float]:
        """``metrics``, when the task declares every one of them (else it has a bug: say so)."""
        unknown = set(metrics) - {m.name for m in self.task.metrics}
        if unknown:
            raise ValueError(f"the {self.task.name} task's {where} returned {sorted(unknown)}, "
                             f"which it does not declare; its metrics: "
                             f"{', '.join(m.name for m in self.task.metrics)}")
        return metrics

    def _record_evaluation(self, epoch: float, train: dict[str, float] | None) -> dict[str, float]:
        """Evaluate, append the evaluation's line, keep it as the final and maybe the best
        one (under the task's ``eval_split``: "test", or "valid" for a task that tests at
        the end, whose best weights are then kept)."""
        pos, split = self.pos, self.task.eval_split
        test = self.evaluate()
        self._log({"epoch": epoch, "step": pos.step, "lr": self._lr(), "split": split, **test,
                   "time_s": self._elapsed()})
        pos.final = {"epoch": epoch, "step": pos.step, split: test}
        if train is not None:
            pos.final["train"] = train
        if self.primary.better(test[self.primary.name], pos.best and pos.best[split][self.primary.name]):
            pos.best = {"epoch": epoch, "step": pos.step, split: test}
            if self.task.tests_at_end:
                self.rundir.save_best_model(self.model.state_dict())
        return test

    def _log(self, line: dict[str, Any]) -> None:
        """One metrics line: to metrics.jsonl, and to the live monitor (TensorBoard)."""
        self.rundir.append_metrics([line])
        self.pos.metrics_lines += 1
        self.monitor.lines([line])

    def _preempt(self) -> None:
        self._checkpoint()
        self.rundir.note_stop(self.stop.requested or "signal", self.pos.step)
        self.collective.close()
        raise Preempted(f"{self.stop.requested}: checkpoint written at step {self.pos.step}; "
                        "relaunch the same command to resume")

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, pos = self.cfg, self.pos
        self.tic = time.perf_counter()
        progress = Progress(cfg.progress if self.world.main else "none", self.epochs,
                            self.steps_per_epoch)
        # After a resume: what an earlier start logged after its checkpoint is dropped.
        # Rank 0 alone writes the run directory, its monitor included.
        self.monitor = (Monitor.open(self.rundir.path, resumed_at=pos.step) if self.world.main
                        else Monitor(None))
        try:
            while pos.step < self.total_steps:
                if self._stop_requested():
                    self._preempt()
                self.model.train()
                progress.start_epoch(pos.epoch, pos.step_in_epoch)
                # The last epoch ends part-way when --max-steps says so.
                stop = min(self.steps_per_epoch, self.total_steps - pos.epoch * self.steps_per_epoch)
                for batch in self.batches.train_batches(pos.epoch, pos.step_in_epoch, stop):
                    loss = self._train_step(batch)
                    self.scheduler.step()
                    pos.step_in_epoch += 1
                    pos.step += 1
                    # The LR is a device tensor on the fast path: Progress formats it
                    # (a host read) only on the steps it prints, as it does the loss.
                    progress.step(pos.step_in_epoch, loss, self.base.param_groups[0]["lr"])
                    if pos.step_in_epoch % progress.interval == 0:
                        self._check_finite()  # a host read: the monitor's read rides on it
                        self.monitor.record(pos.step, loss=loss)
                        self.monitor.flush()
                    if pos.step_in_epoch < stop:
                        self._every_steps()
                    if self._stop_requested():
                        self._preempt()
                self._end_epoch(progress)
        finally:
            progress.close()
            self.monitor.close()
        return self._finish()

    def _every_steps(self) -> None:
        """Mid-epoch evaluation and checkpoint, every so many steps."""
        cfg, pos = self.cfg, self.pos
        evaluate = cfg.eval_every_steps and pos.step % cfg.eval_every_steps == 0
        if evaluate:
            self._check_finite()
            self._record_evaluation(pos.epoch + pos.step_in_epoch / self.steps_per_epoch, None)
        if evaluate or (cfg.checkpoint_every_steps and pos.step % cfg.checkpoint_every_steps == 0):
            self._checkpoint()

    def _end_epoch(self, progress: Progress) -> None:
        cfg, pos = self.cfg, self.pos
        self._check_finite()
        sums, weight = self._summed_over_ranks()
        train = self._declared(self.task.summarize(sums, weight), "summarize")
        pos.epoch += 1
        pos.step_in_epoch = 0
        self.sums = Sums()
        self._log({"epoch": pos.epoch, "step": pos.step, "lr": self._lr(), "split": "train", **train,
                   "time_s": self._elapsed()})
        summary = f"epoch {pos.epoch}/{self.epochs}: train {self._show(train)}"
        if (pos.epoch % cfg.eval_every == 0 or pos.step == self.total_steps
                or (cfg.eval_every_steps and pos.step % cfg.eval_every_steps == 0)):
            summary += f", test {self._show(self._record_evaluation(pos.epoch, train))}"
        if "loss" in train:
            pos.stuck = collapse.update(pos.stuck, pos.epoch, train["loss"], self.data.num_classes)
        # Before the checkpoint: a run killed between the two redoes the epoch and rewrites
        # the same snapshot (resume is exact), instead of never writing it.
        if cfg.snapshot_every and pos.epoch % cfg.snapshot_every == 0:
            self.rundir.save_snapshot(pos.epoch, pos.step, cell_id(cfg), self.model.state_dict())
        self._checkpoint()
        progress.end_epoch(summary + f" ({self._elapsed():.1f}s)")
        self._watch_collapse()

    def _show(self, metrics: dict[str, float]) -> str:
        return " ".join(f"{name} {value:{self.task.metric(name).format}}"
                        for name, value in metrics.items())

    def _watch_collapse(self) -> None:
        """Say so once when the run has collapsed (meta.json, stderr); stop only if asked."""
        found = collapse.verdict(self.pos.stuck, self.data.num_classes)
        if found is None:
            return
        if found["epochs"] == collapse.PATIENCE:
            self.rundir.note_collapse(found, self.pos.epoch)
            print(f"warning: {collapse.message(found)}", file=sys.stderr, flush=True)
        if self.cfg.stop_on_collapse:
            raise Collapsed(f"{collapse.message(found)}; stopped (--stop-on-collapse)")

    def _passes(self) -> dict[str, Any]:
        """Forward/backward passes as measured by the optimizer (a sharpness-aware one
        counts them, across resumes: the count is in its state dict; the base alone
        takes one per step), in all and per step."""
        passes = self.optimizer.passes if self.optimizer is not self.base else self.pos.step
        return {"passes": passes, "passes_per_step": passes / max(self.pos.step, 1)}

    def _test_at_end(self) -> None:
        """The last weights and the best evaluation's, scored on the test split by the task
        (its evaluations during training used another split); its outputs to the run dir."""
        self.model.eval()
        for which, entry in (("last", self.pos.final), ("best", self.pos.best)):
            if which == "best":
                self.model.load_state_dict(self.rundir.load_best_model())
            with torch.no_grad(), self.autocast:
                entry["test"], outputs = self.task.test(self.model, self.cfg, self.data)
            for name, text in outputs.items():
                self.rundir.write_output(f"{which}.{name}", text)

    def _finish(self) -> dict[str, Any]:
        if self.task.tests_at_end:
            self._test_at_end()
        result = {"primary": self.primary.name, "final": self.pos.final, "best": self.pos.best,
                  "epochs": self.pos.epoch, "steps": self.pos.step, "time_s": self._elapsed(),
                  **self._passes(),
                  "collapse": collapse.verdict(self.pos.stuck, self.data.num_classes)}
        self.rundir.write_result(result)
        self.collective.close()
        return result


def pin_threads(threads: int) -> dict[str, int]:
    """Pin torch's intra-op threads (and inter-op threads, where torch still allows it:
    only before its first parallel work); what is in force, for meta.json."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one cell into ``run_dir(cfg)`` and return result.json's content.

    Raises ConfigError (bad input, an unwritable runs dir or a damaged result.json;
    nothing written), LockHeld (another engine holds the cell; nothing written),
    Preempted (stop signal; checkpoint written), WriteFailed (a write failed;
    error.json written when it still can be), NonFiniteLoss or any other exception
    (error.json written).
    """
    world = world_from_environment()
    check_global_batch(cfg.batch_size, world)
    try:
        monitor_wanted()  # a bad VASSO_TENSORBOARD is bad input: said before anything is written
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rundir = RunDir(run_dir(cfg))
    done = rundir.finished_result()
    if done is not None:
        print(f"{rundir.path}: already done (result.json exists); nothing to train", flush=True)
        return done
    if not world.main:  # rank 0 holds the lock and writes; the others only train
        return _train_locked(cfg, FollowerRunDir(rundir.path), world)
    existed = rundir.existing_ancestor()
    rundir.check_writable()
    rundir.check_config(cfg)
    try:
        with rundir.lock():
            rundir.remove_temporaries()  # of writes a killed run left behind
            done = rundir.finished_result()  # finished while we waited for the lock
            return done if done is not None else _train_locked(cfg, rundir, world)
    except ConfigError:
        rundir.remove_empty(upto=existed)  # bad input (missing or damaged data) leaves no trace
        raise


def _train_locked(cfg: TrainConfig, rundir: RunDir | FollowerRunDir, world: World
                  ) -> dict[str, Any]:
    task = get_task(cfg.task)
    device = device_of(world, resolve_device(cfg.device))
    threads = pin_threads(cfg.threads)
    if world.size > 1 and use_fast_path(cfg, device):
        raise ConfigError("--fast with several processes: the CIFAR fast path trains in one "
                          "process; pass --fast off")
    if world.size > 1 and cfg.sync_batchnorm and device.type != "cuda":
        raise ConfigError("--sync-batchnorm on CPU processes: torch's SyncBatchNorm runs on GPUs "
                          "only; leave it off (each rank then normalises by its own share)")
    # One try from loading on: a ConfigError (missing data, a batch larger than the
    # data) is bad input and writes nothing; any other failure, a corrupt data file
    # included, is a failure and leaves error.json, as exit code 1 promises.
    try:
        data = task.load_data(cfg)
        batches = data_path(cfg, task, data, device, world)  # a batch larger than the data is bad input
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        init_process_group(world, device)
        collective = Collective(world)
        if world.main:
            rundir.begin(cfg, device, data.record, threads=threads, world_size=world.size,
                         **data.meta)
            print(f"run directory: {rundir.path}", flush=True)
        with StopSignals() as stop:
            return Trainer(cfg, task, data, device, rundir, stop, batches, collective).run()
    except (ConfigError, Preempted):
        raise
    except NonFiniteLoss as err:
        rundir.write_error(err, step=err.step, loss=err.loss)
        raise
    except WriteFailed as err:
        try:  # the disk may still take a small file (or the failure was elsewhere)
            rundir.write_error(err, file=str(err.path), errno=err.errno)
        except WriteFailed:
            pass
        raise
    except Exception as err:
        rundir.write_error(err)
        raise
