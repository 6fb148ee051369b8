"""One training step as one call, replayed from a CUDA graph where it can be.

A SAM / VaSSO step on a fast GPU is launch-bound: two forward/backward passes,
a global norm, the perturbation, the restore and the base step are hundreds of
small kernels, and the host cannot enqueue them as fast as the GPU runs them.
:class:`TrainStep` records the whole step once into a ``torch.cuda.CUDAGraph``
and afterwards replays it with one launch. ``vasso`` keeps every step free of
host synchronisation (norms stay on the device, Python branches depend on step
counters only), so the recorded kernels are the step.

Modes (``mode=``):

* ``"graph"``: the first ``warmup_steps`` calls run eagerly on a side stream
  (they are real training steps: they allocate the optimizer state, the
  momentum buffers, VaSSO's average and the weight copies, and let cuDNN pick
  its kernels); the next call records the step into a graph and replays it;
  later calls copy the batch into the graph's static input buffers and replay.
  Only CUDA; before recording, :func:`capture_blockers` lists what would make
  the recording wrong or impossible, and capture errors are caught: in both
  cases the step warns once and runs eagerly from then on (the fallback).
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
  LR), or Adam / AdamW with ``capturable=True`` or ``fused=True``;
* a sharpness-aware optimizer ascends on every step (``ascent_every=1``, no
  ``ascent_prob``): a recorded graph cannot take a Python branch per step;
* no fp16 ``GradScaler`` (bf16 autocast needs none) and no data parallelism.

Numerics: every mode runs the same operations in the same order on the same
buffers; graph replay and eager execution agree to floating-point noise (cuDNN
may pick different algorithms during warm-up and capture). The step counter of a
``vasso`` optimizer is advanced by the Python side of the step, which a replay
skips; it only schedules ascents, which the graph mode requires to be every step.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("auto", "graph", "compile", "eager")


class StepOutput(NamedTuple):
    """``loss``: the first-pass loss, 0-d float32; ``output``: the first-pass model
    output (detached). In graph mode both are the graph's static buffers,
    overwritten by the next step: consume them (or ``.clone()``) before it."""

    loss: Tensor
    output: Tensor


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


def capture_blockers(optimizer: torch.optim.Optimizer, device: torch.device | str) -> list[str]:
    """Why the step of ``optimizer`` cannot be recorded in a CUDA graph on ``device``
    (an empty list: it can). Each entry names the problem and its fix."""
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
    base = _base_optimizer(optimizer)
    for i, group in enumerate(base.param_groups):
        lr = group["lr"]
        if not isinstance(lr, Tensor):
            problems.append(f"param group {i}: lr is a Python number, frozen into the graph at "
                            "recording: call benchmarks.fast.step.use_tensor_lr(optimizer) first")
        elif lr.device.type != device.type:
            problems.append(f"param group {i}: lr tensor is on {lr.device}, not {device}")
        if isinstance(base, torch.optim.SGD) and not group.get("fused"):
            problems.append(f"param group {i}: SGD reads a tensor lr with .item() unless "
                            "fused: build it with torch.optim.SGD(..., fused=True)")
        if isinstance(base, (torch.optim.Adam, torch.optim.AdamW)) and not (
                group.get("capturable") or group.get("fused")):
            problems.append(f"param group {i}: {type(base).__name__} needs capturable=True "
                            "or fused=True")
    return problems


class TrainStep:
    """``step(x, y) -> StepOutput``: one full training step of ``optimizer`` on ``model``.

    ``optimizer`` is a ``vasso`` optimizer (SAM, VaSSO, ...; ``step(closure)``
    runs both passes, the perturbation, the restore and the base step) or a plain
    ``torch.optim`` optimizer (one pass, then its step). ``loss_fn(output,
    target)`` returns the mean loss. ``autocast_dtype``: e.g. ``torch.bfloat16``
    to run the passes under autocast (``None``: full precision).
    ``compile_options``: keyword arguments of ``torch.compile`` in ``"compile"``
    mode (e.g. ``{"mode": "max-autotune-no-cudagraphs"}``).

    See the module docstring for the modes; ``self.mode`` is the one in use
    (after a fallback: ``"eager"``), ``self.fallback_reason`` why it fell back.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, *,
                 mode: str = "auto", autocast_dtype: torch.dtype | None = None,
                 warmup_steps: int = 3, compile_options: dict | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if warmup_steps < 1:
            raise ValueError("warmup_steps must be >= 1: the optimizer state must exist "
                             "before a graph is recorded")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.device = next(model.parameters()).device
        if mode == "auto":
            mode = "graph" if self.device.type == "cuda" else "eager"
        self.autocast_dtype = autocast_dtype
        self.warmup_steps = warmup_steps
        self.fallback_reason: str | None = None
        self.mode = mode
        self._forward: Callable[[Tensor], Tensor] = model
        if mode == "compile":
            self._forward = torch.compile(model, **(compile_options or {}))
        self._calls = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[Tensor, Tensor] | None = None
        self._static_out: StepOutput | None = None
        if mode == "graph":
            blockers = capture_blockers(optimizer, self.device)
            if blockers:
                self._fall_back("; ".join(blockers))

    # ------------------------------------------------------------------ the step itself

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # No autocast weight cache: cached casts made during recording would be
        # stale at replay (torch.cuda.graph's documented requirement).
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def _run(self, x: Tensor, y: Tensor) -> StepOutput:
        """The step, eagerly: what every mode executes or records."""
        first: list[Tensor] = []

        def closure() -> Tensor:
            # vasso optimizers zero the gradients before each call themselves; a
            # plain optimizer does not. set_to_none launches no kernel.
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad(), self._autocast():
                output = self._forward(x)
                loss = self.loss_fn(output, y)
            loss.backward()
            if not first:  # the clean first pass gives the step's loss and output
                first.extend((loss.detach().float(), output.detach()))
            return loss

        self.optimizer.step(closure)
        return StepOutput(*first)

    def __call__(self, x: Tensor, y: Tensor) -> StepOutput:
        self._calls += 1
        if self.mode != "graph":
            return self._run(x, y)
        if self._static is None:
            # Static buffers keep the batch's memory format (channels_last stays so).
            self._static = (torch.empty_like(x), torch.empty_like(y))
        static_x, static_y = self._static
        if x.shape != static_x.shape or x.dtype != static_x.dtype or y.shape != static_y.shape:
            raise ValueError(f"graph mode needs every batch of one shape: recorded for inputs "
                             f"{tuple(static_x.shape)} {static_x.dtype}, got {tuple(x.shape)} "
                             f"{x.dtype}; drop the last partial batch (drop_last=True)")
        static_x.copy_(x)
        static_y.copy_(y)
        if self._graph is not None:
            self._graph.replay()
            return self._static_out
        if self._calls <= self.warmup_steps:
            return self._warmup_step(static_x, static_y)
        return self._record_and_replay(static_x, static_y)

    # ------------------------------------------------------------------ CUDA graph

    def _warmup_step(self, x: Tensor, y: Tensor) -> StepOutput:
        # Warm-up runs on a side stream, as recording does, so that lazily created
        # state (cuBLAS workspaces, cuDNN plans) belongs to a non-default stream.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self._run(x, y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out

    def _record_and_replay(self, x: Tensor, y: Tensor) -> StepOutput:
        graph = torch.cuda.CUDAGraph()
        # Gradients are created inside the recording (from the graph's memory pool),
        # so the replayed backward writes to the same tensors every time.
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = self._run(x, y)
        except Exception as err:  # noqa: BLE001 - any failure to record means: run eagerly
            # Nothing ran during the failed recording (kernels are only recorded),
            # so parameters and optimizer state are those after the last real step;
            # only the Python-side phase of a vasso step may be left half-way.
            end_step = getattr(self.optimizer, "_end_step", None)
            if callable(end_step):
                end_step()
            self._fall_back(f"recording the CUDA graph failed: {type(err).__name__}: {err}")
            self._graph = None
            return self._run(x, y)
        self._graph, self._static_out = graph, out
        graph.replay()  # recording ran nothing: this executes this call's step
        return out

    def _fall_back(self, reason: str) -> None:
        self.mode, self.fallback_reason = "eager", reason
        warnings.warn(f"TrainStep: running the eager step instead of a CUDA graph: {reason}",
                      RuntimeWarning, stacklevel=3)
