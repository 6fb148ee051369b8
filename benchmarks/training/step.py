"""One training step as one call, replayed from a CUDA graph where it can be.

``step = TrainStep(model, optimizer, objective)``; ``loss, extras = step(batch)``.
The batch is a tuple or dict of device tensors; ``objective(forward, batch)``
returns the loss that every pass differentiates and ``extras``, detached tensors
of the first (clean) pass that the caller reads afterwards (the engine: its
device-side training sums). :func:`supervised` is the objective of an ``(x, y)``
batch whose extras are the model's output.

A SAM / VaSSO step on a fast GPU is launch-bound: two forward/backward passes,
a global norm, the perturbation, the restore and the base step are hundreds of
small kernels, and the host cannot enqueue them as fast as the GPU runs them.
:class:`TrainStep` records the whole step once into a ``torch.cuda.CUDAGraph``
and afterwards replays it with one launch. ``vasso`` keeps every step free of
host synchronisation (norms stay on the device, Python branches depend on step
counters only), so the recorded kernels are the step.

Modes (``mode=``):

* ``"graph"``: the first ``warmup_steps`` calls run eagerly on one side stream
  (they are real training steps: they allocate the optimizer state, the
  momentum buffers, VaSSO's average and the weight copies, and let cuDNN pick
  its kernels); the next call records the step into a graph on that stream and
  replays it; later calls copy the batch into the graph's static input buffers
  and replay. Only CUDA; before recording, :func:`capture_blockers` lists what
  would make the recording wrong or impossible, and a failed recording is undone
  (current stream, allocator pool, step counter; see
  :meth:`TrainStep._undo_failed_recording`): in both cases the step warns once
  and runs eagerly from then on (the fallback). A failure that cannot be undone
  raises instead of training on in a broken process.
* ``"compile"``: the model's forward (and, through AOTAutograd, backward) is
  ``torch.compile``d; the optimizer runs eagerly. Works on any device, costs a
  compilation up front; the alternative where a graph cannot be recorded.
* ``"eager"``: the plain loop, the reference every other mode must match.
* ``"auto"`` (default): ``"graph"`` on CUDA, ``"eager"`` elsewhere.

Requirements for ``"graph"`` (what :func:`capture_blockers` checks):

* the learning rate is a device tensor in every param group (call
  :func:`use_tensor_lr` once, before building the LR scheduler: torch's schedulers
  then update it in place with ``fill_``, which the graph reads at each replay);
* the base optimizer reads it without a host sync: ``torch.optim.SGD(...,
  fused=True)`` (its foreach and single-tensor paths call ``.item()`` on a tensor
  LR), or an optimizer with a ``capturable`` flag (Adam, AdamW, ...) built with
  ``capturable=True`` (``Adam.step`` refuses to be captured otherwise, fused or
  not: ``torch.optim.Optimizer._accelerator_graph_capture_health_check``);
* a sharpness-aware optimizer ascends on every step (``ascent_every=1``, no
  ``ascent_prob``): a recorded graph cannot take a Python branch per step;
* nothing in the step reads a device value on the host: no BatchNorm with
  ``momentum=None`` (its cumulative average divides by ``float(num_batches_tracked)``),
  no autograd anomaly detection (it checks every gradient on the host);
* no fp16 ``GradScaler`` (bf16 autocast needs none) and no data parallelism.

fp16: pass ``scaler=torch.amp.GradScaler(...)``; the passes then backpropagate the
scaled loss and the optimizer skips a step whose gradients overflowed (a ``vasso``
optimizer takes the scaler in its own ``step``). ``clip_grad_norm``: the global
norm of a plain optimizer's gradient is clipped before its step (a ``vasso``
optimizer clips its descent gradient itself: its ``clip_grad_norm`` argument).

Numerics: every mode runs the same operations in the same order on the same
buffers; graph replay and eager execution agree to floating-point noise (cuDNN
may pick different algorithms during warm-up and capture). The step counter of a
``vasso`` optimizer is advanced by the Python side of the step, which a replay
skips: :class:`TrainStep` advances it after each replay
(``SharpnessAware.count_replayed_step``), so checkpoints of a graphed run record
the steps it took.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

MODES = ("auto", "graph", "compile", "eager")


class StepOutput(NamedTuple):
    """``loss``: the first-pass loss, 0-d float32; ``extras``: what the objective
    returned beside it in the first pass. In graph mode both are the graph's static
    buffers, overwritten by the next step: consume them (or ``.clone()``) before it."""

    loss: Tensor
    extras: Any


Objective = Callable[[Callable[..., Any], Any], tuple[Tensor, Any]]


def supervised(loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> Objective:
    """The objective of an ``(x, y)`` batch: ``loss_fn(model(x), y)``, and the
    model's output (detached) as the extras."""
    def objective(forward: Callable[[Tensor], Tensor], batch: tuple[Tensor, Tensor]
                  ) -> tuple[Tensor, Tensor]:
        x, y = batch
        output = forward(x)
        return loss_fn(output, y), output.detach()
    return objective


def use_tensor_lr(optimizer: torch.optim.Optimizer, device: torch.device | str | None = None
                  ) -> torch.optim.Optimizer:
    """Make every param group's ``lr`` a 0-d float32 tensor on ``device`` (in place).

    ``device`` defaults to the device of the group's first parameter. Call it
    before building the LR scheduler. From then on set the LR with
    :func:`set_lr` (or a torch scheduler), never ``group["lr"] = value``: a
    recorded graph reads the tensor it was recorded with.
    """
    for group in optimizer.param_groups:
        lr = group["lr"]
        target = torch.device(device) if device is not None else group["params"][0].device
        if isinstance(lr, Tensor):
            if lr.device != target or lr.dim() != 0:
                raise ValueError(f"lr is already a tensor on {lr.device} with shape "
                                 f"{tuple(lr.shape)}: expected a 0-d tensor on {target}")
            continue
        group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=target)
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lrs: list[float] | float) -> None:
    """Set each group's LR, in place when it is a tensor (so a recorded graph sees it)."""
    groups = optimizer.param_groups
    values = [lrs] * len(groups) if isinstance(lrs, (int, float)) else list(lrs)
    if len(values) != len(groups):
        raise ValueError(f"{len(values)} learning rates for {len(groups)} param groups")
    for group, value in zip(groups, values):
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(float(value))
        else:
            group["lr"] = float(value)


def _base_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "base", optimizer)


def capture_blockers(optimizer: torch.optim.Optimizer, device: torch.device | str,
                     model: nn.Module | None = None,
                     scaler: torch.amp.GradScaler | None = None) -> list[str]:
    """Why the step of ``optimizer`` (on ``model``; default: the optimizer's own
    ``model``) cannot be recorded in a CUDA graph on ``device`` (an empty list: it
    can). Each entry names the problem and its fix."""
    device = torch.device(device)
    problems = []
    if device.type != "cuda" or not torch.cuda.is_available():
        problems.append(f"CUDA graphs need a CUDA device, this step runs on {device}")
    if getattr(optimizer, "ascent_every", 1) != 1 or getattr(optimizer, "ascent_prob", None):
        problems.append("the ascent schedule (ascent_every / ascent_prob) branches per step in "
                        "Python: use ascent_every=1, or mode='eager' / 'compile'")
    if getattr(optimizer, "sync", "global") == "local" or (
            torch.distributed.is_available() and torch.distributed.is_initialized()):
        problems.append("data-parallel steps are not recorded: use mode='eager' or 'compile'")
    if scaler is not None and scaler.is_enabled():
        problems.append("an fp16 GradScaler reads the overflow flag on the host: use bf16, "
                        "or mode='eager'")
    if torch.is_anomaly_enabled():
        problems.append("autograd anomaly detection checks every gradient on the host: "
                        "turn it off (torch.autograd.set_detect_anomaly(False))")
    base = _base_optimizer(optimizer)
    for i, group in enumerate(base.param_groups):
        lr = group["lr"]
        if not isinstance(lr, Tensor):
            problems.append(f"param group {i}: lr is a Python number, frozen into the graph at "
                            "recording: call benchmarks.training.step.use_tensor_lr(optimizer) first")
        elif lr.device.type != device.type:
            problems.append(f"param group {i}: lr tensor is on {lr.device}, not {device}")
        if isinstance(base, torch.optim.SGD) and not group.get("fused"):
            problems.append(f"param group {i}: SGD reads a tensor lr with .item() unless "
                            "fused: build it with torch.optim.SGD(..., fused=True)")
        if "capturable" in group and not group["capturable"]:
            # torch.optim's capture health check raises for it, fused or not.
            problems.append(f"param group {i}: {type(base).__name__}.step refuses a CUDA graph "
                            f"capture unless capturable=True: build it with "
                            f"{type(base).__name__}(..., fused=True, capturable=True)")
    model = model if model is not None else getattr(optimizer, "model", None)
    for name, module in model.named_modules() if model is not None else ():
        if (isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats
                and module.momentum is None):
            problems.append(f"BatchNorm {name or 'model'} has momentum=None: its cumulative "
                            "average reads num_batches_tracked on the host every step; give it "
                            "a momentum (e.g. 0.1)")
    return problems


class TrainStep:
    """``step(batch) -> StepOutput``: one full training step of ``optimizer`` on ``model``.

    ``optimizer`` is a ``vasso`` optimizer (SAM, VaSSO, ...; ``step(closure)``
    runs both passes, the perturbation, the restore and the base step) or a plain
    ``torch.optim`` optimizer (one pass, then its step). ``objective(forward,
    batch)`` returns ``(loss, extras)`` (see the module docstring; default:
    :func:`supervised` cross-entropy). ``autocast_dtype``: e.g. ``torch.bfloat16``
    to run the passes under autocast (``None``: full precision); ``scaler`` and
    ``clip_grad_norm``: see the module docstring.
    ``compile_options``: keyword arguments of ``torch.compile`` in ``"compile"``
    mode (e.g. ``{"mode": "max-autotune-no-cudagraphs"}``).

    See the module docstring for the modes; ``self.mode`` is the one in use
    (after a fallback: ``"eager"``), ``self.fallback_reason`` why it fell back,
    ``self.replays`` how many steps ran as a replay of the recorded graph.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 objective: Objective | None = None, *,
                 mode: str = "auto", autocast_dtype: torch.dtype | None = None,
                 scaler: torch.amp.GradScaler | None = None, clip_grad_norm: float | None = None,
                 warmup_steps: int = 3, compile_options: dict | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if warmup_steps < 1:
            raise ValueError("warmup_steps must be >= 1: the optimizer state must exist "
                             "before a graph is recorded")
        self.model, self.optimizer = model, optimizer
        self.objective = objective if objective is not None else supervised()
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.clip_grad_norm = clip_grad_norm
        self.sharpness_aware = hasattr(optimizer, "first_step")
        self.device = next(model.parameters()).device
        if mode == "auto":
            mode = "graph" if self.device.type == "cuda" else "eager"
        self.autocast_dtype = autocast_dtype
        self.warmup_steps = warmup_steps
        self.fallback_reason: str | None = None
        self.mode = mode
        self._forward: Callable[..., Any] = model
        if mode == "compile":
            self._forward = torch.compile(model, **(compile_options or {}))
        self._calls = 0
        self.replays = 0
        self._stream: torch.cuda.Stream | None = None  # warm-up and recording, created once
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: Any = None  # the batch's static input buffers
        self._static_out: StepOutput | None = None
        if mode == "graph":
            blockers = capture_blockers(optimizer, self.device, model, self.scaler)
            if blockers:
                self._fall_back("; ".join(blockers))

    # ------------------------------------------------------------------ the step itself

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # No autocast weight cache: cached casts made during recording would be
        # stale at replay (torch.cuda.graph's documented requirement).
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _run(self, batch: Any) -> StepOutput:
        """The step, eagerly: what every mode executes or records."""
        first: list[Any] = []

        def closure() -> Tensor:
            # vasso optimizers zero the gradients before each call themselves; a
            # plain optimizer does not. set_to_none launches no kernel.
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad(), self._autocast():
                loss, extras = self.objective(self._forward, batch)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            if not first:  # the clean first pass gives the step's loss and extras
                first.extend((loss.detach().float(), extras))
            return loss

        if self.sharpness_aware:  # both passes, and its own clipping and scaler handling
            self.optimizer.step(closure, scaler=self.scaler)
        elif self.scaler or self.clip_grad_norm is not None:
            closure()
            self._unscale_clip_step()
        else:
            self.optimizer.step(closure)
        return StepOutput(*first)

    def _unscale_clip_step(self) -> None:
        """A plain optimizer's step after the backward: unscale, clip, step."""
        scaler = self.scaler
        if self.clip_grad_norm is not None:
            if scaler:
                scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        if scaler:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()

    def __call__(self, batch: Any) -> StepOutput:
        self._calls += 1
        if self.mode != "graph":
            return self._run(batch)
        if self._static is None:
            # Static buffers keep the batch's memory format (channels_last stays so).
            self._static = tree_map(torch.empty_like, batch)
        for static, new in zip(tree_flatten(self._static)[0], tree_flatten(batch)[0]):
            if new.shape != static.shape or new.dtype != static.dtype:
                raise ValueError(f"graph mode needs every batch of one shape: recorded for an "
                                 f"input {tuple(static.shape)} {static.dtype}, got "
                                 f"{tuple(new.shape)} {new.dtype}; drop the last partial batch "
                                 "(drop_last=True)")
            static.copy_(new)
        if self._graph is not None:
            self._graph.replay()
            self._count_replay()
            return self._static_out
        if self._calls <= self.warmup_steps:
            return self._warmup_step(self._static)
        return self._record_and_replay(self._static)

    # ------------------------------------------------------------------ CUDA graph

    def _side_stream(self) -> torch.cuda.Stream:
        # One stream for every warm-up step and the recording, as in PyTorch's capture
        # recipe: lazily created state (cuBLAS workspaces, cuDNN plans) and the memory
        # cached by the warm-up steps belong to that stream, not to one stream per step.
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        return self._stream

    def _warmup_step(self, batch: Any) -> StepOutput:
        side, current = self._side_stream(), torch.cuda.current_stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side), warnings.catch_warnings():
            # A capturable Adam warns when it steps outside a capture: expected here.
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            out = self._run(batch)
        current.wait_stream(side)
        return out

    def _count_replay(self) -> None:
        # A replay skips the step's Python code: advance the host-side step counter
        # it would have advanced (what state_dict() saves, so checkpoints are right).
        self.replays += 1
        count = getattr(self.optimizer, "count_replayed_step", None)
        if callable(count):
            count()

    def _record_and_replay(self, batch: Any) -> StepOutput:
        graph = torch.cuda.CUDAGraph()
        stream_before = torch.cuda.current_stream(self.device)
        # The host-side counters of a vasso optimizer, which the recording's Python side
        # advances for a step that, if the recording fails, never ran.
        counters = {name: getattr(self.optimizer, name)
                    for name in ("_steps", "_passes", "_last_step_passes")
                    if hasattr(self.optimizer, name)}
        # Gradients are created inside the recording (from the graph's memory pool),
        # so the replayed backward writes to the same tensors every time.
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph, stream=self._side_stream(),
                                  capture_error_mode="thread_local"):
                out = self._run(batch)
        except Exception as err:  # noqa: BLE001 - any failure to record means: run eagerly
            # Nothing ran during the failed recording (kernels are only recorded), so
            # parameters and optimizer state are those after the last real step; the
            # Python side of a vasso step may have advanced its counter or be left
            # half-way, and the process may still be set up for the capture.
            for name, value in counters.items():
                setattr(self.optimizer, name, value)
            end_step = getattr(self.optimizer, "_end_step", None)
            if callable(end_step):
                end_step()
            self._undo_failed_recording(graph, stream_before, err)
            self._fall_back(f"recording the CUDA graph failed: {type(err).__name__}: {err}")
            self._graph = None
            return self._run(batch)
        self._graph, self._static_out = graph, out
        graph.replay()  # recording ran nothing: this executes this call's step
        return out

    def _undo_failed_recording(self, graph: torch.cuda.CUDAGraph,
                               stream_before: torch.cuda.Stream, err: Exception) -> None:
        """Put the process back as it was before a failed recording, or raise.

        ``torch.cuda.graph``'s exit ends the capture and only then restores the
        current stream; and ``CUDAGraph.capture_end`` ends the capture and only then
        tells the allocator to stop serving this thread from the graph's private
        pool. When the capture was invalidated (a host sync, a pageable copy), ending
        it raises first: the capture stream stays current and the allocator keeps a
        capture "underway", so the next ``torch.cuda.empty_cache()`` fails an internal
        assertion. Undo both; if the stream is still capturing, or the allocator still
        refuses to empty its cache, the process cannot train on: raise, naming the cause.
        """
        def broken(what: str) -> RuntimeError:
            return RuntimeError(
                f"recording the CUDA graph failed ({type(err).__name__}: {err}) and {what}: "
                "this process cannot continue; rerun with the eager step (--fast off, or "
                "TrainStep(mode='eager')) and report the cause")

        if self._stream is not None and self._stream.is_capturing():
            raise broken("the capture stream is still capturing") from err
        torch.cuda.set_stream(stream_before)
        with contextlib.suppress(RuntimeError):  # raises when capture_end already did it
            torch._C._cuda_endAllocateToPool(self.device.index, graph.pool())
        try:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
        except RuntimeError as again:
            raise broken(f"the CUDA state could not be restored ({again})") from err

    def _fall_back(self, reason: str) -> None:
        self.mode, self.fallback_reason = "eager", reason
        warnings.warn(f"TrainStep: running the eager step instead of a CUDA graph: {reason}",
                      RuntimeWarning, stacklevel=3)
