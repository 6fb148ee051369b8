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
from .methods import build_optimizer
from .monitor import Monitor, wanted as monitor_wanted
from .progress import Progress
from .rundir import RunDir, WriteFailed
from .tasks import Task, TaskData, get_task
from .tasks.base import Batch, Sums, data_seed
from .training.data_path import DevicePath, LoaderPath, data_path
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
                 rundir: RunDir, stop: StopSignals, batches: LoaderPath | DevicePath | None = None
                 ) -> None:
        self.cfg, self.task, self.data, self.device = cfg, task, data, device
        self.rundir, self.stop = rundir, stop
        self.batches = batches = batches or data_path(cfg, task, data, device)
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
        self.optimizer, self.base = build_optimizer(cfg, self.model, fused=batches.fast)
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
        if rundir.has_checkpoint():
            self._resume()
        else:  # a run killed before its first checkpoint may have left a metrics line
            rundir.truncate_metrics(0)
        # Built after _resume, which may replace the LR tensors: a recorded graph reads
        # the tensors that exist when it is recorded (after the warm-up steps).
        self.step = TrainStep(self.model, self.optimizer, self._objective,
                              mode="auto" if batches.fast else "eager", autocast_dtype=dtype,
                              scaler=self.scaler, clip_grad_norm=cfg.clip_grad_norm)

    def _objective(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        loss, sums, weight = self.task.loss(model, batch, self.cfg)
        return loss, (sums, weight)

    # -- checkpoint -----------------------------------------------------------------
    def _checkpoint(self) -> None:
        self._check_finite()  # never persist a diverged state
        self.rundir.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "cell_id": cell_id(self.cfg),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "position": dataclasses.asdict(self.pos) | {"elapsed_s": self._elapsed()},
            "train_sums": self.sums.state_dict(), "rng": rng_state()})

    def _problem(self, ckpt: dict[str, Any]) -> str | None:
        """Why a loaded checkpoint is not one of this cell's, or None."""
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("cell_id") != cell_id(self.cfg):
            return (f"not a checkpoint of this cell (format {ckpt.get('format')}, "
                    f"cell {ckpt.get('cell_id')})")
        return None

    def _resume(self) -> None:
        ckpt = self.rundir.load_checkpoint(self._problem)
        if ckpt is None:  # none usable (moved aside, recorded): start over
            self.rundir.truncate_metrics(0)
            return
        self.model.load_state_dict(ckpt["model"])
        load_optimizer_state(self.optimizer, self.base, ckpt["optimizer"])
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
        self.sums.load_state_dict(ckpt["train_sums"], self.device)
        set_rng_state(ckpt["rng"])
        self.rundir.truncate_metrics(self.pos.metrics_lines)
        print(f"resuming {self.rundir.path} at epoch {self.pos.epoch} step {self.pos.step}",
              flush=True)

    # -- helpers ----------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.pos.elapsed_s + time.perf_counter() - self.tic

    def _lr(self) -> float:
        return float(self.base.param_groups[0]["lr"])  # a device tensor on the fast path

    def _check_finite(self) -> None:
        step = int(self.bad_step)
        if step >= 0:
            raise NonFiniteLoss(step, float(self.bad_loss))

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
            metrics = self.task.evaluate(self.model, self.batches.test_batches(), self.cfg)
        self.model.train()
        for name in metrics:
            self.task.metric(name)  # a metric the task does not declare is a bug: name it
        return metrics

    def _record_evaluation(self, epoch: float, train: dict[str, float] | None) -> dict[str, float]:
        """Evaluate, append the test line, keep it as the final and maybe the best one."""
        pos = self.pos
        test = self.evaluate()
        self._log({"epoch": epoch, "step": pos.step, "lr": self._lr(), "split": "test", **test,
                   "time_s": self._elapsed()})
        pos.final = {"epoch": epoch, "step": pos.step, "test": test}
        if train is not None:
            pos.final["train"] = train
        if self.primary.better(test[self.primary.name], pos.best and pos.best["test"][self.primary.name]):
            pos.best = {"epoch": epoch, "step": pos.step, "test": test}
        return test

    def _log(self, line: dict[str, Any]) -> None:
        """One metrics line: to metrics.jsonl, and to the live monitor (TensorBoard)."""
        self.rundir.append_metrics([line])
        self.pos.metrics_lines += 1
        self.monitor.lines([line])

    def _preempt(self) -> None:
        self._checkpoint()
        self.rundir.note_stop(self.stop.requested or "signal", self.pos.step)
        raise Preempted(f"{self.stop.requested}: checkpoint written at step {self.pos.step}; "
                        "relaunch the same command to resume")

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, pos = self.cfg, self.pos
        self.tic = time.perf_counter()
        progress = Progress(cfg.progress, self.epochs, self.steps_per_epoch)
        # After a resume: what an earlier start logged after its checkpoint is dropped.
        self.monitor = Monitor.open(self.rundir.path, resumed_at=pos.step)
        try:
            while pos.step < self.total_steps:
                if self.stop.requested:
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
                    if self.stop.requested:
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
        train = self.task.summarize(*self.sums.read())
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

    def _finish(self) -> dict[str, Any]:
        result = {"primary": self.primary.name, "final": self.pos.final, "best": self.pos.best,
                  "epochs": self.pos.epoch, "steps": self.pos.step, "time_s": self._elapsed(),
                  **self._passes(),
                  "collapse": collapse.verdict(self.pos.stuck, self.data.num_classes)}
        self.rundir.write_result(result)
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
    try:
        monitor_wanted()  # a bad VASSO_TENSORBOARD is bad input: said before anything is written
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rundir = RunDir(run_dir(cfg))
    done = rundir.finished_result()
    if done is not None:
        print(f"{rundir.path}: already done (result.json exists); nothing to train", flush=True)
        return done
    existed = rundir.existing_ancestor()
    rundir.check_writable()
    rundir.check_config(cfg)
    try:
        with rundir.lock():
            rundir.remove_temporaries()  # of writes a killed run left behind
            done = rundir.finished_result()  # finished while we waited for the lock
            return done if done is not None else _train_locked(cfg, rundir)
    except ConfigError:
        rundir.remove_empty(upto=existed)  # bad input (missing or damaged data) leaves no trace
        raise


def _train_locked(cfg: TrainConfig, rundir: RunDir) -> dict[str, Any]:
    task = get_task(cfg.task)
    device = resolve_device(cfg.device)
    threads = pin_threads(cfg.threads)
    # One try from loading on: a ConfigError (missing data, a batch larger than the
    # data) is bad input and writes nothing; any other failure, a corrupt data file
    # included, is a failure and leaves error.json, as exit code 1 promises.
    try:
        data = task.load_data(cfg)
        batches = data_path(cfg, task, data, device)  # a batch larger than the data is bad input
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        rundir.begin(cfg, device, data.record, threads=threads, **data.meta)
        print(f"run directory: {rundir.path}", flush=True)
        with StopSignals() as stop:
            return Trainer(cfg, task, data, device, rundir, stop, batches).run()
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
