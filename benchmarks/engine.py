"""The one training loop behind every task: ``train(cfg) -> result``.

For each cell: load the task's data and model, wrap the base optimizer in the
sharpness-aware method, and train with a learning-rate schedule set per step,
evaluating after every epoch (``eval_every``) and checkpointing after every
epoch. Everything the run produces goes to its run directory
(``benchmarks.rundir``).

The step. Every optimizer is driven by ``benchmarks.fast.TrainStep``: one closure
runs forward and backward and returns the loss; a sharpness-aware method calls it
at w and at w + e (``loss = opt.step(closure)``), the base optimizer once. Training
loss and accuracy come from the first (clean) pass and are summed on the device:
the loop never calls ``.item()`` per step.

Two paths compute the same cell (``--fast``, not part of the cell):

* the DataLoader path (``--fast off``; the default except for CIFAR on CUDA):
  the task's datasets through a DataLoader, torch's default (foreach) SGD, a Python
  float learning rate, the step run eagerly;
* the fast path (``--fast on``; ``auto`` picks it for CIFAR on CUDA): the splits
  held on the device (``DeviceCIFAR.from_dataset``), a channels-last model (CUDA), a fused
  base optimizer reading its learning rate from a device tensor, and on CUDA the
  step replayed from a CUDA graph (eagerly elsewhere, or when recording is blocked,
  e.g. by ``--ascent-every`` > 1, with a warning).

Both draw the same batches and the same augmentation (``benchmarks.data``), so
their losses and weights agree up to floating-point rounding (tested on CPU).

Restarts. A directory with result.json is done: ``train`` returns it at once. A
directory with checkpoint.pt resumes from it, always, bit-exactly on CPU: the
checkpoint holds the model, the optimizer (with the method's own state), the
scheduler, the position in the epoch, the partial training sums and the RNG
states, and the batch order and augmentations are pure functions of (seed,
epoch, position) (``benchmarks.data``). An unreadable checkpoint is moved aside
and the previous one (checkpoint.prev.pt) serves; with none readable the cell
starts over (``RunDir.load_checkpoint``). SIGTERM or SIGUSR2 ends the current
step, writes a (possibly mid-epoch) checkpoint and raises :class:`Preempted`
(exit code 75). A non-finite training loss raises :class:`NonFiniteLoss` before
any checkpoint of the diverged state is written; it, like any other exception,
leaves error.json (exit code 1) and the previous checkpoint.

One engine per cell: ``train`` holds the run directory's lock (``RunDir.lock``)
from before its first write to its end; a second engine raises ``LockHeld``
(exit code 3) and writes nothing. The thread count is pinned to ``--threads``, so
a cell gives the same numbers wherever it runs on one machine.

Collapse. A run whose training loss sits at the uniform-prediction level ln C is
dead, not diverged (``benchmarks.collapse``, docs/collapse.md): the engine judges the
epoch's training loss it already reads, records a collapse in meta.json and
result.json, and trains on, or with ``--stop-on-collapse`` raises :class:`Collapsed`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import sys
import threading
import time
from contextlib import nullcontext
from typing import Any, Iterator

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

import vasso

from . import collapse
from .config import FAST_TASKS, ConfigError, TrainConfig, cell_id, default_num_workers, run_dir
from .data import epoch_batches
from .fast import DeviceCIFAR, TrainStep, use_tensor_lr
from .methods import build_optimizer
from .progress import Progress
from .rundir import RunDir, WriteFailed
from .tasks import Task, TaskData, get_task
from .tasks.base import data_seed

CHECKPOINT_FORMAT = 1


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


# -- building blocks --------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device=cuda but no CUDA device is available; use --device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def use_fast_path(cfg: TrainConfig, device: torch.device) -> bool:
    """``--fast``: ``auto`` is on for the tasks that have a fast path, on CUDA only."""
    if cfg.fast == "auto":
        return cfg.task in FAST_TASKS and device.type == "cuda"
    return cfg.fast == "on"


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """``step -> multiplier of cfg.lr`` for the step about to be taken (0-based).

    ``cosine``: linear warm-up, then a per-step cosine to 0. ``constant``: warm-up, then 1.
    ``cosine-epoch``: the official VaSSO code's schedule, reproduced to the step. Its
    cosine ``(1 + cos(pi k / epochs)) / 2`` is set once per epoch, *after* the epoch,
    with the index k of the epoch just finished (``lr_scheduler.step(epoch)`` at the end
    of its epoch loop), and nothing sets it before the first epoch. So epoch 0 trains at
    the peak rate (the optimizer's initial one), epoch e >= 1 at k = e - 1: epochs 0 and
    1 both at the peak, the last epoch above 0. ``--max-steps`` shortens the epochs, not
    the schedule's count of them.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.schedule == "cosine-epoch":
            finished = max(step // steps_per_epoch - 1, 0)
            return 0.5 * (1.0 + math.cos(math.pi * finished / cfg.epochs))
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# Param-group keys that choose an implementation, not a hyperparameter: a checkpoint
# written by one path must not switch the other path's optimizer implementation.
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, base: torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the implementation flags of ``base``
    and the memory layout of its parameters.

    ``load_state_dict`` takes every param-group entry from the checkpoint, ``fused``
    included, and places Adam's ``step`` by the checkpoint's flags (on the device only
    when fused or capturable); state tensors keep the strides they were saved with.
    A run preempted on one path and resumed on the other (``--fast`` is not part of
    the cell, and only the fast path is channels-last on CUDA) must get its own path's
    implementation, ``step`` placement and layout: the flags are put into the
    checkpoint's groups before loading, and the state is re-laid like the parameters
    (and a ``step`` saved on the device is brought to the host where this path's Adam
    keeps it).
    """
    wrapped = optimizer is not base
    base_state = state["base"] if wrapped else state
    saved_groups = base_state["param_groups"]
    if len(saved_groups) != len(base.param_groups):
        raise ValueError(f"the checkpoint's optimizer has {len(saved_groups)} param groups, "
                         f"this one {len(base.param_groups)}: not a checkpoint of this model")
    groups = [{**saved, **{k: group[k] for k in IMPLEMENTATION_KEYS if k in group}}
              for saved, group in zip(saved_groups, base.param_groups)]
    base_state = {**base_state, "param_groups": groups}
    optimizer.load_state_dict({**state, "base": base_state} if wrapped else base_state)
    if not wrapped:  # a wrapper's load_state_dict re-lays its base's state itself
        vasso.lay_out_state_like_params(base)
    for group in base.param_groups:  # torch.optim.Adam keeps `step` on the host unless
        if not (group.get("capturable") or group.get("fused")):  # fused or capturable:
            for p in group["params"]:  # a device `step` would cost a sync per parameter
                step = base.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor) and step.device.type != "cpu":
                    base.state[p]["step"] = step.cpu()


def steps_per_epoch(cfg: TrainConfig, num_train: int) -> int:
    steps = num_train // cfg.batch_size
    if steps == 0:
        raise ConfigError(f"--batch-size={cfg.batch_size} exceeds the {num_train} training samples")
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def rng_state() -> dict[str, Any]:
    state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"name": state[0], "keys": torch.from_numpy(state[1].copy()),
                      "pos": state[2], "has_gauss": state[3], "cached_gaussian": state[4]},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy(), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class StopSignals:
    """While active, SIGTERM and SIGUSR2 only set ``requested``; the loop acts on it."""

    SIGNALS = ("SIGTERM", "SIGUSR2")

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal's own rule
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    num = getattr(signal, name)
                    self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for num, handler in self._previous.items():
            signal.signal(num, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGTERM / SIGUSR2.

    Slurm signals every process of a job step; a worker killed by it would turn a
    clean preemption into a "DataLoader worker exited unexpectedly" failure. The
    main process decides when to stop; its workers end with its loader (or, should
    it die, by their parent watchdog).
    """
    for name in StopSignals.SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


@dataclasses.dataclass
class Position:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0               # epochs completed
    step_in_epoch: int = 0       # steps completed in the current epoch
    seen_in_epoch: int = 0       # training samples seen in the current epoch
    step: int = 0                # optimizer steps completed in all
    metrics_lines: int = 0       # lines of metrics.jsonl that belong to this state
    elapsed_s: float = 0.0       # training time before this process
    best_acc: float = -1.0
    best_epoch: int = 0
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)
    stuck: dict[str, Any] | None = None  # the training loss's streak at the uniform level


# -- the trainer --------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: TrainConfig, task: Task, data: TaskData, device: torch.device,
                 rundir: RunDir, stop: StopSignals) -> None:
        self.cfg, self.task, self.data, self.device = cfg, task, data, device
        self.rundir, self.stop = rundir, stop
        self.steps_per_epoch = steps_per_epoch(cfg, len(data.train))

        self.fast = use_fast_path(cfg, device)
        # Channels-last feeds tensor-core convolutions on CUDA; on a CPU it would only
        # change the kernels' rounding, so the CPU form keeps the DataLoader path's layout.
        self.channels_last = self.fast and device.type == "cuda"

        torch.manual_seed(data_seed(cfg, "init"))  # same weights for every optimizer
        self.model = task.build_model(cfg, data.num_classes).to(device)
        if self.channels_last:  # DeviceCIFAR's NHWC images give channels-last batches for free
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer, self.base = build_optimizer(cfg, self.model, fused=self.fast)
        self.scheduler = LambdaLR(self.base, lr_factor(cfg, self.steps_per_epoch))
        if self.fast:
            # After the scheduler is built: its base rates stay Python floats, so each
            # scheduler step is one fill_ of the LR tensor with a host number (no
            # device arithmetic, no sync) and checkpoints hold plain floats.
            use_tensor_lr(self.base)
        self.criterion = task.criterion(cfg)
        bf16 = cfg.precision == "bf16"
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        if self.fast:
            self.device_train = DeviceCIFAR.from_dataset(
                data.train, batch_size=cfg.batch_size, seed=data_seed(cfg, "batches"),
                device=device, channels_last=self.channels_last)
            self.device_test = DeviceCIFAR.from_dataset(
                data.test, batch_size=self.eval_batch_size, device=device,
                channels_last=self.channels_last)
        seed_everything(data_seed(cfg, "train"))
        self.pos = Position()
        # Summed first-pass loss and hits of the epoch, on the device (read once per epoch).
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)
        # First non-finite step and its loss, kept on the device (-1: none yet).
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        if rundir.has_checkpoint():
            self._resume()
        else:  # a run killed before its first checkpoint may have left a metrics line
            rundir.truncate_metrics(0)
        # Built after _resume, which may replace the LR tensors: a recorded graph reads
        # the tensors that exist when it is recorded (after the warm-up steps).
        self.step = TrainStep(self.model, self.optimizer, self.criterion,
                              mode="auto" if self.fast else "eager",
                              autocast_dtype=torch.bfloat16 if bf16 else None)

    @property
    def eval_batch_size(self) -> int:
        return max(256, self.cfg.batch_size)

    # -- checkpoint -----------------------------------------------------------------
    def _checkpoint(self) -> None:
        self._check_finite()  # never persist a diverged state
        self.rundir.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "cell_id": cell_id(self.cfg),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "position": dataclasses.asdict(self.pos) | {"elapsed_s": self._elapsed()},
            "train_sums": self.sums.cpu(), "rng": rng_state()})

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
        # The checkpoint's param groups brought back the LR of whichever path wrote it
        # (a float, or a tensor mapped to the CPU); set this path's kind from the
        # scheduler. Replacing the tensors is safe here: no graph is recorded yet.
        for group, lr in zip(self.base.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = float(lr)
        if self.fast:
            use_tensor_lr(self.base, self.device)
        self.pos = Position(**ckpt["position"])
        self.sums = ckpt["train_sums"].to(self.device)
        set_rng_state(ckpt["rng"])
        self.rundir.truncate_metrics(self.pos.metrics_lines)
        print(f"resuming {self.rundir.path} at epoch {self.pos.epoch} step {self.pos.step}",
              flush=True)

    # -- helpers ----------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.pos.elapsed_s + time.perf_counter() - self.tic

    def _check_finite(self) -> None:
        step = int(self.bad_step)
        if step >= 0:
            raise NonFiniteLoss(step, float(self.bad_loss))

    def _train_batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start..steps_per_epoch-1`` of ``epoch``, on the device, from either path."""
        if self.fast:
            yield from self.device_train.batches(epoch, start, stop=self.steps_per_epoch)
            return
        cfg = self.cfg
        batches = epoch_batches(len(self.data.train), cfg.batch_size, data_seed(cfg, "batches"),
                                epoch, start, self.steps_per_epoch)
        if self.data.in_memory:
            workers = 0
        else:  # resolved here, where the cell runs: a launch host's CPU count means nothing
            workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
        loader = DataLoader(self.data.train, batch_sampler=batches, num_workers=workers,
                            pin_memory=self.device.type == "cuda",
                            worker_init_fn=ignore_stop_signals if workers else None,
                            generator=torch.Generator().manual_seed(data_seed(cfg, "loader") + epoch))
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole test split, in order, on the device."""
        if self.fast:
            yield from self.device_test.batches()
            return
        n, size = len(self.data.test), self.eval_batch_size
        batches = [[(i, 0) for i in range(s, min(s + size, n))] for s in range(0, n, size)]
        # A generator of its own: a DataLoader otherwise draws its base seed from the global
        # RNG, which the model's dropout (VGG) also draws from, and the fast path does not.
        loader = DataLoader(self.data.test, batch_sampler=batches,
                            generator=torch.Generator().manual_seed(0))
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, output = self.step(x, y)
        # In graph mode ``loss`` and ``output`` are the graph's buffers, overwritten by
        # the next replay: everything that reads them is enqueued here, before it.
        self.sums += torch.stack([loss.double() * y.shape[0],
                                  self.task.count_correct(output, y).double()])
        self.pos.seen_in_epoch += y.shape[0]
        newly_bad = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(newly_bad, self.pos.step, self.bad_step)
        self.bad_loss = torch.where(newly_bad, loss, self.bad_loss)
        return loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        n = len(self.data.test)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        for x, y in self._test_batches():
            with self.autocast:
                output = self.model(x)
            sums += torch.stack([self.task.eval_loss(output, y).double(),
                                 self.task.count_correct(output, y).double()])
        self.model.train()
        loss, correct = sums.tolist()
        return {"loss": loss / n, "acc": 100.0 * correct / n}

    # -- the loop -----------------------------------------------------------------------
    def _preempt(self) -> None:
        self._checkpoint()
        self.rundir.note_stop(self.stop.requested or "signal", self.pos.step)
        raise Preempted(f"{self.stop.requested}: checkpoint written at step {self.pos.step}; "
                        "relaunch the same command to resume")

    def run(self) -> dict[str, Any]:
        cfg, pos = self.cfg, self.pos
        self.tic = time.perf_counter()
        progress = Progress(cfg.progress, cfg.epochs, self.steps_per_epoch)
        check_every = progress.interval
        try:
            while pos.epoch < cfg.epochs:
                if self.stop.requested:
                    self._preempt()
                self.model.train()
                progress.start_epoch(pos.epoch, pos.step_in_epoch)
                for x, y in self._train_batches(pos.epoch, pos.step_in_epoch):
                    loss = self._train_step(x, y)
                    self.scheduler.step()
                    pos.step_in_epoch += 1
                    pos.step += 1
                    # The LR is a device tensor on the fast path: Progress formats it
                    # (a host read) only on the steps it prints, as it does the loss.
                    progress.step(pos.step_in_epoch, loss, self.base.param_groups[0]["lr"])
                    if pos.step_in_epoch % check_every == 0:
                        self._check_finite()
                    if self.stop.requested:
                        self._preempt()
                self._end_epoch(progress)
        finally:
            progress.close()
        return self._finish()

    def _end_epoch(self, progress: Progress) -> None:
        cfg, pos = self.cfg, self.pos
        self._check_finite()
        loss_sum, correct = self.sums.tolist()
        n = pos.seen_in_epoch
        lr = float(self.base.param_groups[0]["lr"])  # a device tensor on the fast path
        pos.epoch += 1
        pos.step_in_epoch = pos.seen_in_epoch = 0
        self.sums.zero_()
        stamp = {"epoch": pos.epoch, "step": pos.step, "lr": lr}
        lines = [{**stamp, "split": "train", "loss": loss_sum / n, "acc": 100.0 * correct / n,
                  "time_s": self._elapsed()}]
        summary = f"epoch {pos.epoch}/{cfg.epochs}: train loss {loss_sum / n:.4f} acc {100 * correct / n:.2f}"
        if pos.epoch % cfg.eval_every == 0 or pos.epoch == cfg.epochs:
            test = self.evaluate()
            lines.append({**stamp, "split": "test", **test, "time_s": self._elapsed()})
            pos.last_eval = {"test_acc": test["acc"], "test_loss": test["loss"],
                             "train_acc": lines[0]["acc"], "train_loss": lines[0]["loss"],
                             "epoch": pos.epoch}
            if test["acc"] > pos.best_acc:
                pos.best_acc, pos.best_epoch = test["acc"], pos.epoch
            summary += f", test loss {test['loss']:.4f} acc {test['acc']:.2f}"
        pos.stuck = collapse.update(pos.stuck, pos.epoch, lines[0]["loss"], self.data.num_classes)
        self.rundir.append_metrics(lines)
        pos.metrics_lines += len(lines)
        self._checkpoint()
        progress.end_epoch(summary + f" ({self._elapsed():.1f}s)")
        self._watch_collapse()

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
        result = {"final": self.pos.last_eval,
                  "best": {"test_acc": self.pos.best_acc, "epoch": self.pos.best_epoch},
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
        steps_per_epoch(cfg, len(data.train))  # a batch larger than the data is bad input
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        rundir.begin(cfg, device, data.record, threads=threads, **data.meta)
        print(f"run directory: {rundir.path}", flush=True)
        with StopSignals() as stop:
            return Trainer(cfg, task, data, device, rundir, stop).run()
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
