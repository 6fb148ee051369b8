"""``make gpu-check``: what only a GPU can show about the CUDA fast path, in under ten minutes.

    python -m benchmarks.gpu_check                # on a CUDA machine: every check, PASS/FAIL per line
    python -m benchmarks.gpu_check --only twins   # some checks (names below, comma-separated)
    python -m benchmarks.gpu_check --dry-run      # any machine: every check's code, tiny, on the CPU

Without CUDA (and without ``--dry-run``) it says that it needs a GPU and exits 0.
The CPU tests cover what a CPU can express (``tests/test_graph_readiness.py``);
these checks cover the rest, one line each:

* ``cuda-tests``: the test files with CUDA-only tests, run on the GPU (none skipped).
* ``twin <method> <precision>``: ResNet-18 (1x1 projection shortcuts, channels-last,
  cuDNN benchmark on) trained 8 steps by :class:`TrainStep` replaying a CUDA graph and
  by the eager step, for SGD, SAM, ASAM, GSAM (radius following the LR) and VaSSO,
  fp32 and bf16, a cosine schedule driving the tensor LR: the step really ran as
  a graph (6 replays), the losses agree within 1e-3 (fp32) / 3e-2 (bf16), and so
  do the final weights, BatchNorm statistics and VaSSO's average (relative to the
  tensor's largest value); ``num_batches_tracked`` and the optimizer's step counter
  equal the number of steps; two more steps at LR 0 leave the weights bitwise unchanged.
* ``adamw``: the engine's fast-path AdamW (fused, capturable) under VaSSO, graphed
  and equal to eager; its ``step`` counters on the GPU and equal to the step count.
* ``resume-layout <base>``: a checkpoint of a contiguous model (``--fast off``)
  loaded by the engine into a channels-last one with a fused base (``--fast on``):
  the state takes the parameters' strides and the step records a graph. It also
  shows what happens without the re-layout (information, not judged).
* ``failed-capture <cause>``: in a subprocess, a capture made to fail (a host read
  in the forward pass; a BatchNorm with ``momentum=None``, its blocker bypassed):
  the step falls back (or fails loudly), the default stream is current again and
  ``torch.cuda.empty_cache()`` works; and the blocker rejects ``momentum=None``
  before any recording.
* ``sync-debug``: 20 graphed steps of the engine's per-step work (batch, step,
  on-device sums, scheduler), after the warm-up and the recording, under
  ``torch.cuda.set_sync_debug_mode("error")``.
* ``kernels ...``: GPU operations (kernels, copies, fills; the profiler's count) of
  one eager VaSSO step and of one replay; of saving the BatchNorm statistics, split
  by dtype against one mixed list; of one DeviceCIFAR batch.
* ``sigterm-resume``: a two-epoch CIFAR-format run (synthetic images) with
  ``--fast auto --precision bf16``, stopped by SIGTERM mid-epoch and resumed in a
  new process, recording a graph both times; each checkpoint's optimizer step
  count equals the steps taken.
* ``bench``: ``make bench`` at full size, bf16 and fp32 (``python -m benchmarks.perf
  --precision both``); every fast row ran as a graph; the goals it judged.

It writes ``<out-dir>/gpu-check-<device>-<time>.json`` and ``.md`` (default
``outputs/perf``) and exits 1 when a check failed. Checks that would start past
``--budget-s`` (default 420 s; the bench, last, may take 5 minutes more) are skipped:
about six minutes on one H100-class GPU, ten at most.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
import json
import math
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

import vasso
from benchmarks import engine, perf
from benchmarks.config import TrainConfig, run_dir
from benchmarks.training import step as step_module
from benchmarks.fast.data import Augmentation, DeviceCIFAR
from benchmarks.methods import METHODS as REGISTRY
from benchmarks.methods import build_optimizer
from benchmarks.training.state import load_optimizer_state
from benchmarks.training.step import TrainStep, set_lr, use_tensor_lr
from benchmarks.models import create_model
from benchmarks.models.resnet import BasicBlock
from benchmarks.progress import Progress
from benchmarks.rundir import RunDir
from benchmarks.tasks import get_task
from vasso._model import RunningStats

REPO = pathlib.Path(__file__).resolve().parents[1]
CHECKS = ("cuda-tests", "twins", "adamw", "resume-layout", "failed-capture", "sync-debug",
          "kernels", "sigterm-resume", "bench")
METHODS = tuple(REGISTRY)
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}  # losses: absolute; tensors: relative to their max
STEPS, WARMUP, ZERO_LR_STEPS = 8, 3, 2
LR = 0.1
FALLBACK = "instead of a CUDA graph"  # TrainStep's fallback warning


@dataclasses.dataclass
class Line:
    """One line of the report: ``ok`` None means not judged (information)."""
    name: str
    ok: bool | None
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Context:
    device: torch.device
    dry: bool
    work: pathlib.Path
    out_dir: pathlib.Path
    deadline: float
    batch: int = 64
    image: int = 32
    model: str = "resnet18"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Verdict:
    """Collects failed expectations; the CUDA-only ones are not judged in a dry run."""

    def __init__(self, ctx: Context) -> None:
        self.ctx, self.problems = ctx, []

    def need(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def need_cuda(self, ok: bool, problem: str) -> None:
        if self.ctx.cuda:
            self.need(ok, problem)

    def line(self, name: str, summary: str, data: dict | None = None) -> Line:
        return Line(name, not self.problems, "; ".join(self.problems) or summary, data or {})


# ----------------------------------------------------------------------------- building blocks

def tiny_resnet() -> nn.Module:
    """The dry run's stand-in for ResNet-18: a stem and one block with a 1x1 shortcut."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         BasicBlock(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def build_model(ctx: Context, *, channels_last: bool | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = tiny_resnet() if ctx.dry else create_model(ctx.model, num_classes=10)
    model = model.to(ctx.device)
    if ctx.cuda if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_batches(ctx: Context, n: int, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if ctx.cuda else torch.contiguous_format
    return [(torch.randn(ctx.batch, 3, ctx.image, ctx.image, generator=g)
             .to(ctx.device, memory_format=fmt),
             torch.randint(0, 10, (ctx.batch,), generator=g).to(ctx.device)) for _ in range(n)]


def build_method(method: str, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """``(optimizer, base)`` built as the fast path builds them (fused SGD, tensor LR),
    from the method registry; GSAM's radius follows the LR tensor from rho (at LR) to 0.02."""
    cfg = TrainConfig("cifar", optimizer=method, rho={"sgd": None, "asam": 0.5}.get(method, 0.1),
                      lr=LR, momentum=0.9, weight_decay=5e-4, bn_stats="first", eta=0.01,
                      gsam_rho_min=0.02, gsam_alpha=0.2, theta=0.4)
    optimizer, base = build_optimizer(cfg, model, fused=True)
    use_tensor_lr(base)
    return optimizer, base


def cosine(total: int) -> Callable[[int], float]:
    return lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k / total, 1.0)))


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Weights, BatchNorm statistics and VaSSO's average, as float32 on the CPU."""
    out = {f"param {n}": p.detach().float().cpu().clone() for n, p in model.named_parameters()}
    out |= {f"buffer {n}": b.detach().float().cpu().clone() for n, b in model.named_buffers()
            if not n.endswith("num_batches_tracked")}
    if isinstance(opt, vasso.VaSSO):
        for n, p in model.named_parameters():
            if "grad_avg" in opt.state.get(p, {}):
                out[f"grad_avg {n}"] = opt.state[p]["grad_avg"].float().cpu().clone()
    return out


def worst_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> tuple[float, str]:
    """The largest ``max|a - b| / max(1, max|b|)`` over the tensors, and whose."""
    worst, where = 0.0, ""
    for key, ref in b.items():
        diff = float((a[key] - ref).abs().max()) / max(1.0, float(ref.abs().max()))
        if not diff <= worst:  # also catches nan
            worst, where = diff, key
            if math.isnan(diff):
                break
    return worst, where


def counters(model: nn.Module) -> set[int]:
    return {int(b) for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}


@contextlib.contextmanager
def quiet_fallback() -> Iterator[list[warnings.WarningMessage]]:
    """Record TrainStep's fallback warning instead of printing it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def fell_back(caught: list[warnings.WarningMessage]) -> bool:
    return any(FALLBACK in str(w.message) for w in caught)


def strides_match(optimizers: list[torch.optim.Optimizer]) -> list[str]:
    """The per-parameter state tensors whose strides differ from their parameter's."""
    bad = []
    for opt in optimizers:
        for p, state in opt.state.items():
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == p.shape and \
                        value.stride() != p.stride():
                    bad.append(f"{type(opt).__name__}.{key} {tuple(p.shape)}")
    return bad


def child(name: str, ctx: Context, *args: str, timeout: float = 180) -> tuple[int, str, dict]:
    """Run ``python -m benchmarks.gpu_check --child NAME`` in a fresh process; returns
    (exit code, output tail, the JSON of its last line or {})."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--child", name, "--work",
           str(ctx.work), *(["--dry-run"] if ctx.dry else []), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), **({"OMP_NUM_THREADS": "1"} if ctx.dry else {})}
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return 124, f"timed out after {timeout:.0f} s: {(err.stdout or '')[-300:]}", {}
    output = done.stdout + done.stderr
    data = {}
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            break
    return done.returncode, output[-600:], data


# ----------------------------------------------------------------------------- the checks

def check_cuda_tests(ctx: Context) -> Iterator[Line]:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "torch.cuda.is_available()" in p.read_text())
    files.append("tests/test_graph_readiness.py")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           "-m", "not slow and not slurm", *files, *(["--collect-only"] if ctx.dry else [])]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=max(30.0, min(240.0, ctx.remaining())))
    output = done.stdout + done.stderr
    summary = (output.strip().splitlines() or ["no output"])[-1]
    v = Verdict(ctx)
    v.need(done.returncode == 0, f"pytest exit {done.returncode}: {output[-400:]}")
    v.need_cuda("needs a CUDA device" not in output, f"CUDA tests skipped: {summary}")
    yield v.line("cuda-tests", f"{', '.join(files)}: {summary}", {"files": files})


def run_twin(ctx: Context, method: str, precision: str, mode: str,
             batches: list[tuple[Tensor, Tensor]]) -> dict[str, Any]:
    model = build_model(ctx)
    opt, base = build_method(method, model)
    scheduler = LambdaLR(base, cosine(STEPS))
    step = TrainStep(model, opt, mode=mode, warmup_steps=WARMUP,
                     autocast_dtype=torch.bfloat16 if precision == "bf16" else None)
    losses = []
    for x, y in batches[:STEPS]:
        losses.append(step((x, y)).loss.clone())  # the graph's buffer: copy before the next replay
        scheduler.step()
    state = snapshot(model, opt)
    set_lr(base, 0.0)
    weights = [p.detach().clone() for p in model.parameters()]
    for x, y in batches[STEPS:]:
        step((x, y))
    return {"losses": torch.stack(losses).float().cpu(), "state": state, "mode": step.mode,
            "replays": step.replays, "reason": step.fallback_reason,
            "frozen": all(torch.equal(w, p) for w, p in zip(weights, model.parameters())),
            "counters": counters(model),
            "steps": opt.state_dict()["steps"] if isinstance(opt, vasso.SharpnessAware) else None}


def check_twins(ctx: Context) -> Iterator[Line]:
    if ctx.cuda:
        torch.backends.cudnn.benchmark = True
    batches = make_batches(ctx, STEPS + ZERO_LR_STEPS)
    total = STEPS + ZERO_LR_STEPS
    for precision in ("fp32", "bf16"):
        for method in METHODS:
            tol = TOLERANCE[precision]
            eager = run_twin(ctx, method, precision, "eager", batches)
            with quiet_fallback():
                graph = run_twin(ctx, method, precision, "graph", batches)
            v = Verdict(ctx)
            v.need_cuda(graph["mode"] == "graph", f"ran eagerly: {graph['reason']}")
            v.need_cuda(graph["replays"] == total - WARMUP - 1,
                        f"{graph['replays']} replays, expected {total - WARMUP - 1}")
            loss_diff = float((graph["losses"] - eager["losses"]).abs().max())
            v.need(loss_diff <= tol, f"losses differ by {loss_diff:.2e} > {tol}")
            state_diff, where = worst_difference(graph["state"], eager["state"])
            v.need(state_diff <= tol, f"{where} differs by {state_diff:.2e} > {tol}")
            for name, run in (("graph", graph), ("eager", eager)):
                v.need(run["counters"] == {total},
                       f"{name}: num_batches_tracked {sorted(run['counters'])}, expected {total}")
                v.need(run["frozen"], f"{name}: LR 0 changed the weights")
                v.need(run["steps"] in (None, total),
                       f"{name}: the optimizer counted {run['steps']} steps, not {total}")
            v.need(bool(torch.isfinite(eager["losses"]).all()), "non-finite eager loss")
            yield v.line(f"twin {method} {precision}",
                         f"{graph['mode']}, {graph['replays']} replays; loss diff {loss_diff:.1e}, "
                         f"state diff {state_diff:.1e} ({where or '-'})",
                         {"loss_diff": loss_diff, "state_diff": state_diff, "where": where,
                          "mode": graph["mode"], "replays": graph["replays"]})


def check_adamw(ctx: Context) -> Iterator[Line]:
    cfg = TrainConfig("cifar", optimizer="vasso", base="adamw", lr=1e-3, weight_decay=0.05,
                      rho=0.1, theta=0.4, runs_dir=str(ctx.work / "runs"))
    batches = make_batches(ctx, STEPS)
    runs = {}
    for mode in ("eager", "graph"):
        model = build_model(ctx)
        opt, base = build_optimizer(cfg, model, fused=True)
        use_tensor_lr(base)
        with quiet_fallback() as caught:
            step = TrainStep(model, opt, mode=mode, warmup_steps=WARMUP)
            losses = torch.stack([step((x, y)).loss.clone() for x, y in batches]).cpu()
        steps = {float(s["step"]) for s in base.state.values()}
        devices = {s["step"].device.type for s in base.state.values()}
        runs[mode] = dict(losses=losses, state=snapshot(model, opt), mode=step.mode,
                          reason=step.fallback_reason, warned=fell_back(caught), steps=steps,
                          devices=devices, group=base.param_groups[0])
    graph, eager = runs["graph"], runs["eager"]
    v = Verdict(ctx)
    v.need(graph["group"]["fused"] and graph["group"]["capturable"],
           "the fast path's AdamW is not fused and capturable")
    v.need_cuda(graph["mode"] == "graph" and not graph["warned"], f"ran eagerly: {graph['reason']}")
    loss_diff = float((graph["losses"] - eager["losses"]).abs().max())
    v.need(loss_diff <= TOLERANCE["fp32"], f"losses differ by {loss_diff:.2e}")
    state_diff, where = worst_difference(graph["state"], eager["state"])
    v.need(state_diff <= TOLERANCE["fp32"], f"{where} differs by {state_diff:.2e}")
    v.need(graph["steps"] == {float(STEPS)}, f"Adam step counters {sorted(graph['steps'])}")
    v.need(graph["devices"] == {ctx.device.type}, f"Adam steps on {sorted(graph['devices'])}")
    yield v.line("adamw", f"{graph['mode']}; loss diff {loss_diff:.1e}, state diff "
                          f"{state_diff:.1e}; step counters {sorted(graph['steps'])}",
                 {"loss_diff": loss_diff, "state_diff": state_diff, "mode": graph["mode"]})


def check_resume_layout(ctx: Context) -> Iterator[Line]:
    batches = make_batches(ctx, 6)
    for base_name in ("sgd", "adamw"):
        cfg = TrainConfig("cifar", optimizer="vasso", base=base_name, rho=0.1, theta=0.4,
                          lr=LR if base_name == "sgd" else 1e-3, runs_dir=str(ctx.work / "runs"))
        # Written by --fast off: a contiguous model, the default implementation, a float LR.
        model = build_model(ctx, channels_last=False)
        opt, _ = build_optimizer(cfg, model, fused=False)
        step = TrainStep(model, opt, mode="eager")
        for x, y in batches[:3]:
            step((x.contiguous(), y))
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
        buffer.seek(0)
        ckpt = torch.load(buffer, weights_only=True)
        # Resumed by --fast on: channels-last (on CUDA), fused base, tensor LR, a graph.
        resumed = build_model(ctx)
        resumed.load_state_dict(ckpt["model"])
        new, base = build_optimizer(cfg, resumed, fused=True)
        load_optimizer_state(new, base, ckpt["optimizer"])
        use_tensor_lr(base, ctx.device)
        bad = strides_match([base, new])
        v = Verdict(ctx)
        v.need(not bad, f"state not laid out like its parameter: {', '.join(bad[:3])}")
        fresh = TrainStep(resumed, new, mode="auto", warmup_steps=WARMUP)
        with quiet_fallback():
            losses = torch.stack([fresh((x, y)).loss.clone() for x, y in batches]).cpu()
        v.need(bool(torch.isfinite(losses).all()), f"losses {losses.tolist()}")
        v.need_cuda(fresh.mode == "graph", f"ran eagerly: {fresh.fallback_reason}")
        steps = {s["step"].device.type for s in base.state.values() if "step" in s}
        v.need(steps <= {ctx.device.type}, f"Adam step counters on {sorted(steps)}")
        without = without_relayout(ctx, ckpt) if base_name == "sgd" and ctx.cuda else "not tried"
        yield v.line(f"resume-layout {base_name}",
                     f"{fresh.mode}, {fresh.replays} replays; without the re-layout: {without}",
                     {"without_relayout": without})


def without_relayout(ctx: Context, ckpt: dict[str, Any]) -> str:
    """What the fused SGD kernel does with state of another layout (the defect, shown)."""
    model = build_model(ctx)
    model.load_state_dict(ckpt["model"])
    base = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, fused=True)
    base.load_state_dict(ckpt["optimizer"]["base"])  # torch.optim alone: strides as saved
    for group in base.param_groups:  # and the checkpoint's (foreach) flags: back to fused
        group.update(fused=True, foreach=None)
    x, y = make_batches(ctx, 1)[0]
    F.cross_entropy(model(x), y).backward()
    try:
        base.step()
        torch.cuda.synchronize()
    except RuntimeError as err:
        return f"the fused step raised: {str(err).splitlines()[0][:160]}"
    return "the fused step ran (no error)"


def check_failed_capture(ctx: Context) -> Iterator[Line]:
    for cause in ("host-read", "bn-momentum-none"):
        code, tail, data = child("blocked-capture", ctx, "--cause", cause)
        v = Verdict(ctx)
        v.need(code == 0 and bool(data), f"exit {code}: {tail}")
        if data.get("outcome") == "recovered":
            v.need(data["empty_cache"] == "ok", f"empty_cache: {data['empty_cache']}")
            v.need(data["finite"], "the eager steps after the fallback gave non-finite losses")
            v.need_cuda(data["mode"] == "eager" and "recording the CUDA graph failed"
                        in (data["reason"] or ""), f"no fallback: {data['mode']} {data['reason']}")
            v.need_cuda(data["default_stream"], "the capture stream is still current")
            summary = f"recovered: {data['reason']}"[:200]
        else:
            summary = f"failed loudly: {data.get('error', '')}"[:200]
        yield v.line(f"failed-capture {cause}", summary, data)
    # The blocker names momentum=None before anything is recorded.
    model = build_model(ctx)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    opt, _ = build_method("vasso", model)
    with quiet_fallback():
        step = TrainStep(model, opt, mode="graph")
    v = Verdict(ctx)
    v.need(step.mode == "eager" and "momentum=None" in (step.fallback_reason or ""),
           f"not rejected: {step.mode} {step.fallback_reason}")
    yield v.line("failed-capture rejected", "momentum=None named before recording")


class HostRead(nn.Module):
    """Reads a device value on the host in its forward pass: illegal in a capture."""

    def forward(self, x: Tensor) -> Tensor:
        self.last = float(x.detach().mean())
        return x


def child_blocked_capture(ctx: Context, cause: str) -> dict[str, Any]:
    model = build_model(ctx)
    if cause == "host-read":
        model = nn.Sequential(HostRead(), model)
    else:  # the blocker would refuse it before recording: bypass it to see the recording fail
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        step_module.capture_blockers = lambda *args, **kwargs: []
    opt, _ = build_method("vasso", model)
    step = TrainStep(model, opt, mode="auto", warmup_steps=2)
    losses = []
    try:
        with quiet_fallback():
            for x, y in make_batches(ctx, 6):
                losses.append(float(step((x, y)).loss))
    except RuntimeError as err:
        if "this process cannot continue" not in str(err):
            raise
        return {"outcome": "loud", "error": str(err)[:300]}
    default = (torch.cuda.current_stream() == torch.cuda.default_stream()) if ctx.cuda else True
    try:
        torch.cuda.empty_cache()
        emptied = "ok"
    except RuntimeError as err:
        emptied = str(err)[:300]
    return {"outcome": "recovered", "mode": step.mode, "reason": step.fallback_reason,
            "default_stream": default, "empty_cache": emptied,
            "finite": all(math.isfinite(v) for v in losses)}


def write_cifar(ctx: Context) -> pathlib.Path:
    """A CIFAR-10 folder of random images, in the real on-disk format (once per run)."""
    root = ctx.work / "cifar"
    if not (root / "cifar-10-batches-py").is_dir():
        sys.path.insert(0, str(REPO / "tests"))
        from bench_fixtures import write_cifar10  # the tests' writer of the format
        per_batch, test = (8, 16) if ctx.dry else (512, 512)
        write_cifar10(root, per_batch=per_batch, num_test=test)
    return root


def engine_cell(ctx: Context, runs: pathlib.Path, **kw: Any) -> TrainConfig:
    fields = dict(model="resnet18", optimizer="vasso", rho=0.1, theta=0.4, epochs=2,
                  batch_size=8 if ctx.dry else 64, num_workers=0, progress="none",
                  # bf16 convolutions crawl on most CPUs: the dry run trains in fp32
                  fast="on" if ctx.dry else "auto", precision="fp32" if ctx.dry else "bf16",
                  data_dir=str(write_cifar(ctx)), runs_dir=str(runs), device=ctx.device.type)
    return TrainConfig("cifar", **{**fields, **kw})


def check_sync_debug(ctx: Context) -> Iterator[Line]:
    cfg = engine_cell(ctx, ctx.work / "sync-debug", epochs=1)
    task = get_task("cifar")
    trainer = engine.Trainer(cfg, task, task.load_data(cfg), ctx.device, RunDir(run_dir(cfg)),
                             engine.StopSignals())
    progress = Progress("none", cfg.epochs, trainer.steps_per_epoch)
    batches = iter(trainer.batches.train_batches(0, 0, trainer.steps_per_epoch))
    x, y = next(batches)  # the epoch's order and draws go to the device here, once: not checked
    # The warm-up steps (cuDNN's algorithm search) and the recording (torch.cuda.graph
    # synchronises) may synchronise; the steps after them must not.
    steps = min(WARMUP + 1 + 20, trainer.steps_per_epoch)
    checked = 0
    for k in range(steps):
        steady = k > WARMUP
        with sync_debug(ctx.cuda and steady):
            if k:
                x, y = next(batches)
            loss = trainer._train_step((x, y))
            trainer.scheduler.step()
            trainer.pos.step_in_epoch += 1
            trainer.pos.step += 1
            progress.step(trainer.pos.step_in_epoch, loss, trainer.base.param_groups[0]["lr"])
        checked += steady
    v = Verdict(ctx)
    v.need_cuda(trainer.step.mode == "graph", f"ran eagerly: {trainer.step.fallback_reason}")
    v.need(math.isfinite(float(loss)), f"loss {float(loss)}")
    yield v.line("sync-debug", f"{checked} steps ({trainer.step.mode}, {trainer.step.replays} "
                               f"replays) without a host synchronisation")


@contextlib.contextmanager
def sync_debug(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def count_device_ops(ctx: Context, fn: Callable[[], Any]) -> int:
    """GPU operations (kernels, copies, fills) ``fn`` launches, by the profiler; on a CPU
    (dry run) the top-level aten operators instead."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if ctx.cuda:
            torch.cuda.synchronize()
    events = prof.events()
    if ctx.cuda:
        return sum(e.device_type == DeviceType.CUDA for e in events)
    return sum(e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name
                                                    .startswith("aten::")) for e in events)


def check_kernels(ctx: Context) -> Iterator[Line]:
    if ctx.cuda:
        torch.backends.cudnn.benchmark = True
    batches = make_batches(ctx, WARMUP + 3)
    counts: dict[str, int] = {}
    for mode in ("eager", "graph"):
        model = build_model(ctx)
        opt, _ = build_method("vasso", model)
        with quiet_fallback():
            step = TrainStep(model, opt, mode=mode, warmup_steps=WARMUP)
            for x, y in batches[:-1]:
                step((x, y))
            x, y = batches[-1]
            counts[mode] = count_device_ops(ctx, lambda: step((x, y)))
    v = Verdict(ctx)
    v.need(counts["eager"] > 0, "the profiler saw nothing")
    yield v.line("kernels vasso step", f"eager {counts['eager']}, one graph replay "
                 f"{counts['graph']} ({ctx.model}, batch {ctx.batch})", counts)

    model = build_model(ctx)
    stats = RunningStats(model)
    stats.save()
    split = count_device_ops(ctx, stats.save)
    mixed = [b for m in model.modules() if isinstance(m, nn.BatchNorm2d)
             for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    copies = [torch.empty_like(b) for b in mixed]
    one_list = count_device_ops(ctx, lambda: torch._foreach_copy_(copies, mixed))
    v = Verdict(ctx)
    # Two fused copies (float32 statistics, int64 counters), each a launch or two.
    v.need_cuda(split <= 4, f"saving the statistics split by dtype took {split} operations")
    yield v.line("kernels batchnorm save", f"split by dtype {split}, one mixed list {one_list} "
                 f"({len(mixed)} buffers)", {"split": split, "mixed": one_list})

    # A 16-batch epoch, its order and draws included, one batch and eight per call.
    images = torch.randint(0, 256, (16 * ctx.batch, 32, 32, 3), dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (16 * ctx.batch,)).numpy()
    per_batch = {}
    for per_call in (1, 8):
        data = DeviceCIFAR(images, labels, batch_size=ctx.batch, augmentation=Augmentation(),
                           device=ctx.device, channels_last=ctx.cuda, batches_per_call=per_call)
        list(data.batches(epoch=0))  # warm-up
        per_batch[per_call] = count_device_ops(ctx, lambda: list(data.batches(epoch=1))) / len(data)
    yield Line("kernels device-cifar", None, f"{per_batch[8]:.1f} per batch of {ctx.batch} eight "
               f"batches per call, {per_batch[1]:.1f} one per call (an epoch of 16 batches, its "
               f"order and draws included)", {"per_batch": per_batch})


def check_sigterm_resume(ctx: Context) -> Iterator[Line]:
    runs = ctx.work / "sigterm"
    stop_at = 2 if ctx.dry else 15
    first = child("engine-run", ctx, "--runs", str(runs), "--stop-at", str(stop_at), timeout=240)
    second = child("engine-run", ctx, "--runs", str(runs), timeout=240)
    v = Verdict(ctx)
    for name, (code, tail, data), expected in (("stopped", first, 75), ("resumed", second, 0)):
        v.need(code == expected and bool(data), f"{name}: exit {code}, expected {expected}: {tail}")
        if data:
            v.need_cuda(data["recorded"] == 1 and not data["fallback"],
                        f"{name}: {data['recorded']} graphs recorded, fallback {data['fallback']}")
            v.need(data["ckpt_steps"] == data["pos_step"],
                   f"{name}: the checkpoint's optimizer counted {data['ckpt_steps']} steps, the "
                   f"run took {data['pos_step']}")
    data = second[2]
    v.need(bool(data.get("finished")), "the resumed run did not finish")
    yield v.line("sigterm-resume", f"stopped at step {first[2].get('pos_step')}, resumed and "
                 f"finished at step {data.get('pos_step')}; test acc {data.get('test_acc')}",
                 {"stopped": first[2], "resumed": data})


def child_engine_run(ctx: Context, runs: pathlib.Path, stop_at: int | None) -> dict[str, Any]:
    cfg = engine_cell(ctx, runs)
    recorded, fallback = [0], []
    real_record = TrainStep._record_and_replay

    def record(self, batch):
        out = real_record(self, batch)
        recorded[0] += self._graph is not None
        if self.fallback_reason:
            fallback.append(self.fallback_reason)
        return out

    TrainStep._record_and_replay = record
    if stop_at is not None:
        real_step = Progress.step

        def step(self, step_in_epoch, loss, lr):
            real_step(self, step_in_epoch, loss, lr)
            if (self.epoch, step_in_epoch) == (0, stop_at):
                os.kill(os.getpid(), signal.SIGTERM)

        Progress.step = step
    outcome: dict[str, Any] = {}
    try:
        result = engine.train(cfg)
        outcome = {"finished": True, "test_acc": result["final"]["test"]["acc"]}
    except engine.Preempted:
        outcome = {"finished": False}
    ckpt = RunDir(run_dir(cfg)).load_checkpoint(lambda checkpoint: None)  # the newest readable one
    return {**outcome, "recorded": recorded[0], "fallback": fallback,
            "ckpt_steps": ckpt["optimizer"].get("steps"), "pos_step": ckpt["position"]["step"]}


def check_bench(ctx: Context) -> Iterator[Line]:
    out = ctx.work / "bench" if ctx.dry else ctx.out_dir
    # Full sizes (both models, batch 128, a 50k-image epoch); 20 timed steps per row
    # instead of 50 keep both precisions within about three minutes.
    # (The dry run measures fp32 only: bf16 convolutions crawl on most CPUs, and the
    # bench's handling of both precisions has its own test, tests/test_perf.py.)
    sizes = ["--precision", "both", "--iters", "20", "--warmup", "5"] if ctx.cuda else [
        "--precision", "fp32", "--device", "cpu", "--batch-size", "2", "--iters", "1",
        "--warmup", "0", "--methods", "vasso", "--impls", "fast", "--pipeline-images", "32",
        "--loader-images", "8", "--epoch-train-images", "4", "--epoch-test-images", "4"]
    cmd = [sys.executable, "-m", "benchmarks.perf", "--out-dir", str(out), *sizes]
    timeout = 300.0 if ctx.cuda else 900.0
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if ctx.dry else {})}
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        yield Line("bench", False, f"timed out after {timeout:.0f} s")
        return
    match = re.search(r"^wrote (.+\.json)$", done.stdout, flags=re.M)
    v = Verdict(ctx)
    v.need(done.returncode == 0 and match is not None,
           f"exit {done.returncode}: {(done.stdout + done.stderr)[-400:]}")
    if not match:
        yield v.line("bench", "")
        return
    report = json.loads(pathlib.Path(match.group(1)).read_text())
    eager_fast = [f"{r['model']} {r['precision']} {r['method']}" for r in report["steps"]
                  if r["impl"] == "fast" and r["mode"] != "graph"]
    v.need_cuda(not eager_fast, f"fast rows ran eagerly: {', '.join(eager_fast)}")
    vasso_fast = {f"{r['model']} {r['precision']}": round(r["median_ms"], 2)
                  for r in report["steps"] if r["impl"] == "fast" and r["method"] == "vasso"}
    goals = report.get("goals") or {}
    missed = [k for k, g in goals.items() if not g["met"]]
    yield v.line("bench", f"VaSSO fast step ms {vasso_fast}; goals met "
                 f"{len(goals) - len(missed)}/{len(goals)}"
                 + (f" (missed: {', '.join(missed)})" if missed else "") + f"; {match.group(1)}",
                 {"report": match.group(1), "vasso_fast_ms": vasso_fast, "goals": goals})


CHECK_FUNCTIONS: dict[str, Callable[[Context], Iterator[Line]]] = {
    "cuda-tests": check_cuda_tests, "twins": check_twins, "adamw": check_adamw,
    "resume-layout": check_resume_layout, "failed-capture": check_failed_capture,
    "sync-debug": check_sync_debug, "kernels": check_kernels,
    "sigterm-resume": check_sigterm_resume, "bench": check_bench}


# ----------------------------------------------------------------------------- report

def status(ctx: Context, line: Line) -> str:
    if line.ok is None:
        return "INFO"
    if not line.ok:
        return "FAIL"
    return "DRY-OK" if ctx.dry else "PASS"


def run_checks(ctx: Context, names: list[str]) -> list[dict[str, Any]]:
    results = []

    def emit(line: Line, seconds: float, state: str | None = None) -> None:
        state = state or status(ctx, line)
        print(f"{state:6s} {line.name:28s} {line.detail}  [{seconds:.1f} s]", flush=True)
        results.append({"name": line.name, "status": state, "detail": line.detail,
                        "seconds": round(seconds, 2), "data": line.data})

    for name in names:
        if ctx.remaining() <= 0:
            emit(Line(name, None, "the time budget is spent (--budget-s)"), 0.0, "SKIP")
            continue
        tic = time.monotonic()
        try:
            for line in CHECK_FUNCTIONS[name](ctx):
                emit(line, time.monotonic() - tic)
                tic = time.monotonic()
        except Exception as err:  # noqa: BLE001 - a crashed check is a failed line, not the end
            tail = traceback.format_exc().strip().splitlines()[-3:]
            emit(Line(name, False, f"{type(err).__name__}: {err} | {' | '.join(tail)}"[:600]),
                 time.monotonic() - tic)
    return results


def write_report(ctx: Context, results: list[dict[str, Any]], seconds: float) -> pathlib.Path:
    device = perf.device_name(ctx.device)
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("PASS", "DRY-OK", "FAIL", "SKIP", "INFO")}
    report = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
              "host": platform.node(), "dry_run": ctx.dry, "seconds": round(seconds, 1),
              "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "counts": counts, "results": results}
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()[:40]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = ctx.out_dir / f"gpu-check-{'dry-' if ctx.dry else ''}{slug}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    rows = [f"| {r['name']} | {r['status']} | {r['detail'].replace('|', '/')} | {r['seconds']} |"
            for r in results]
    path.with_suffix(".md").write_text("\n".join([
        f"# gpu-check{' (dry run: CUDA-only expectations not judged)' if ctx.dry else ''}", "",
        f"{device}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"{report['time']}, {seconds:.0f} s: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n), "",
        "| check | status | detail | s |", "|---|---|---|---|", *rows, ""]))
    return path


# ----------------------------------------------------------------------------- entry point

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="run every check's code on the CPU at tiny sizes (CUDA-only "
                        "expectations are not judged)")
    p.add_argument("--only", help=f"comma-separated checks: {', '.join(CHECKS)}")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="skip the checks that would start after this many seconds")
    p.add_argument("--out-dir", default="outputs/perf", help="where the JSON and Markdown go")
    # Internal: the checks that need a fresh process run themselves with --child.
    p.add_argument("--child", choices=("blocked-capture", "engine-run"), help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--cause", help=argparse.SUPPRESS)
    p.add_argument("--runs", help=argparse.SUPPRESS)
    p.add_argument("--stop-at", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        p.error(f"unknown checks {', '.join(unknown)}; valid: {', '.join(CHECKS)}")
    args.names = names
    return args


def make_context(args: argparse.Namespace, work: pathlib.Path) -> Context:
    device = torch.device("cpu" if args.dry_run else "cuda")
    sizes = dict(batch=4, image=8, model="tiny") if args.dry_run else {}
    if args.dry_run:  # tiny sizes: threads would only contend
        torch.set_num_threads(1)
    return Context(device=device, dry=args.dry_run, work=work, out_dir=pathlib.Path(args.out_dir),
                   deadline=time.monotonic() + args.budget_s, **sizes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("make gpu-check needs a CUDA GPU and torch sees none (torch.cuda.is_available() "
              "is False): nothing was checked. Run it on a GPU machine; `python -m "
              "benchmarks.gpu_check --dry-run` runs every check's code here, on the CPU.")
        return 0
    if args.child:
        ctx = make_context(args, pathlib.Path(args.work))
        if args.child == "blocked-capture":
            data = child_blocked_capture(ctx, args.cause)
        else:
            data = child_engine_run(ctx, pathlib.Path(args.runs), args.stop_at)
        print(json.dumps(data))
        return 75 if args.child == "engine-run" and not data.get("finished") else 0
    tic = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = make_context(args, pathlib.Path(work))
        print(f"gpu-check on {perf.device_name(ctx.device)}, torch {torch.__version__}"
              f"{' (dry run on the CPU: CUDA-only expectations not judged)' if ctx.dry else ''}",
              flush=True)
        results = run_checks(ctx, args.names)
        path = write_report(ctx, results, time.monotonic() - tic)
    failed = [r["name"] for r in results if r["status"] == "FAIL"]
    print(f"\n{len(results) - len(failed)} of {len(results)} lines without failure "
          f"({time.monotonic() - tic:.0f} s); wrote {path} and {path.with_suffix('.md')}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
