"""What the CUDA fast path needs, checked on a CPU.

Each test pins one rule that a first GPU run would otherwise discover by crashing,
warning or silently recording wrong numbers: the optimizer state takes its
parameters' memory layout after a load (a fused CUDA kernel refuses mixed
layouts), BatchNorm statistics are copied one dtype per fused list, the
capture blockers name the known causes, and TrainStep's graph bookkeeping (one
side stream, the step counter advanced per replay, a failed recording undone) is
run against a stand-in for ``torch.cuda`` that records what it is asked to do.
What only a GPU can show is in ``make gpu-check`` (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vasso
from benchmarks import engine
from benchmarks.config import TrainConfig
from benchmarks.training import step as step_module
from benchmarks.training.step import TrainStep, capture_blockers, use_tensor_lr
from benchmarks.methods import build_optimizer
from vasso._model import RunningStats


def conv_net(seed: int = 0, momentum: float | None = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False),
                         nn.BatchNorm2d(8, momentum=momentum), nn.ReLU(),
                         nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8, momentum=momentum),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def batch(seed: int = 1, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    for k in range(steps):
        x, y = batch(k)
        x = x.contiguous(memory_format=torch.channels_last) if _is_channels_last(model) else x

        def closure():
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        if isinstance(opt, vasso.SharpnessAware):
            opt.step(closure)
        else:
            opt.zero_grad()
            closure()
            opt.step()


def _is_channels_last(model: nn.Module) -> bool:
    return model[0].weight.is_contiguous(memory_format=torch.channels_last) and \
        not model[0].weight.is_contiguous()


# -- defect 2: state re-laid like its parameter after a load -------------------------------

def _per_param_tensors(opt: torch.optim.Optimizer):
    for p, state in opt.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                yield p, key, value


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_a_contiguous_checkpoint_loads_into_a_channels_last_model_in_its_layout(base):
    # Written by --fast off (contiguous model, foreach SGD / AdamW) ...
    model = conv_net()
    cfg = TrainConfig("cifar", optimizer="vasso", base=base, lr=0.1 if base == "sgd" else 1e-2,
                      rho=0.1, theta=0.4, bn_stats="first")
    opt, _ = build_optimizer(cfg, model)
    train_steps(model, opt, 2)
    saved = opt.state_dict()
    # ... resumed by --fast on (channels-last model, fused base).
    resumed = conv_net().to(memory_format=torch.channels_last)
    resumed.load_state_dict(model.state_dict())
    conv = resumed[0].weight
    assert not conv.is_contiguous()  # the layouts do differ: the test means something
    new, _ = build_optimizer(cfg, resumed, fused=True)
    engine.load_optimizer_state(new, new.base, saved)

    pairs = list(_per_param_tensors(new.base)) + list(_per_param_tensors(new))
    keys = {key for _, key, _ in pairs}
    assert keys == ({"momentum_buffer", "grad_avg"} if base == "sgd"
                    else {"exp_avg", "exp_avg_sq", "grad_avg"})
    for p, key, value in pairs:
        assert value.stride() == p.stride(), f"{key} of a {tuple(p.shape)} parameter"
    # Re-laid, not changed: the values are those saved.
    old = {id_: s for id_, s in saved["base"]["state"].items()}
    torch.testing.assert_close(new.base.state[conv][pairs[0][1]], old[0][pairs[0][1]],
                               rtol=0, atol=0)
    torch.testing.assert_close(new.state[conv]["grad_avg"], saved["state"][0]["grad_avg"],
                               rtol=0, atol=0)
    # The loaded implementation flags are this path's, and training continues.
    assert new.param_groups[0]["fused"] and (base == "sgd" or new.param_groups[0]["capturable"])
    train_steps(resumed, new, 1)


def test_a_plain_base_optimizer_is_re_laid_by_the_engine_too():
    model = conv_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, opt, 1)
    resumed = conv_net().to(memory_format=torch.channels_last)
    new = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9, fused=True)
    engine.load_optimizer_state(new, new, opt.state_dict())
    for p, _, value in _per_param_tensors(new):
        assert value.stride() == p.stride()
    assert new.param_groups[0]["fused"]


def test_lay_out_state_like_params_leaves_other_shapes_alone():
    p = nn.Parameter(torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    opt = torch.optim.AdamW([p], lr=0.1)
    step = torch.tensor(3.0)
    opt.state[p] = {"step": step, "exp_avg": torch.ones(4, 3, 2, 2)}
    vasso.lay_out_state_like_params(opt)
    assert opt.state[p]["step"] is step
    assert opt.state[p]["exp_avg"].stride() == p.stride()
    assert torch.equal(opt.state[p]["exp_avg"], torch.ones(4, 3, 2, 2))


# -- defect 4: BatchNorm statistics, one dtype per fused copy ---------------------------------

def test_running_stats_copy_one_dtype_per_fused_list(monkeypatch):
    model = conv_net()
    calls = []
    real = torch._foreach_copy_

    def spy(dst, src, *args, **kwargs):
        calls.append(({t.dtype for t in dst}, len(dst)))
        return real(dst, src, *args, **kwargs)

    stats = RunningStats(model)
    monkeypatch.setattr(torch, "_foreach_copy_", spy)
    stats.save()
    bn = model[1]
    before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    model(batch()[0])  # a training forward moves the statistics and the counter
    assert not torch.equal(bn.running_mean, before[0])
    stats.restore()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])
    # save and restore: one float32 list (4 statistics) and one int64 list (2 counters) each
    assert sorted((sorted(map(str, d)), n) for d, n in calls) == [
        (["torch.float32"], 4), (["torch.float32"], 4), (["torch.int64"], 2), (["torch.int64"], 2)]


# -- defects 1 and 3: what blocks a recording is named before recording ------------------------

def test_capture_blockers_require_capturable_for_the_adam_family():
    model = conv_net()
    fused_only = use_tensor_lr(torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True))
    problems = capture_blockers(fused_only, "cpu", model)
    assert any("capturable=True" in p and "AdamW" in p for p in problems), problems
    ready = use_tensor_lr(torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True,
                                            capturable=True))
    assert capture_blockers(ready, "cpu", model) == [
        "CUDA graphs need a CUDA device, this step runs on cpu"]


def test_the_engine_builds_a_capturable_fused_adamw_on_the_fast_path(tmp_path):
    cfg = TrainConfig("cifar", base="adamw", optimizer="vasso", lr=1e-3, runs_dir=str(tmp_path))
    model = conv_net()
    _, base = build_optimizer(cfg, model, fused=True)
    group = base.param_groups[0]
    assert isinstance(base, torch.optim.AdamW) and group["fused"] and group["capturable"]
    _, plain = build_optimizer(cfg, model, fused=False)
    assert not plain.param_groups[0]["capturable"] and not plain.param_groups[0]["fused"]


def test_capture_blockers_reject_the_known_host_reads():
    model = conv_net(momentum=None)  # cumulative average: divides by float(num_batches_tracked)
    opt = vasso.SAM(use_tensor_lr(torch.optim.SGD(model.parameters(), lr=0.1, fused=True)),
                    model=model)
    problems = capture_blockers(opt, "cpu")  # the model comes from the optimizer
    assert sum("momentum=None" in p for p in problems) == 2, problems
    assert any("BatchNorm 1 " in p for p in problems)
    with torch.autograd.set_detect_anomaly(True):
        assert any("anomaly" in p for p in capture_blockers(opt, "cpu"))
    assert not any("anomaly" in p for p in capture_blockers(opt, "cpu"))


# -- defects 3, 5 and 6: TrainStep's graph bookkeeping against a recording torch.cuda ----------

class FakeStream:
    def __init__(self, name: str) -> None:
        self.name, self.capturing = name, False

    def wait_stream(self, other: "FakeStream") -> None:
        pass

    def is_capturing(self) -> bool:
        return self.capturing


class FakeCuda:
    """Stands in for the torch.cuda calls TrainStep makes, on a CPU.

    A "recording" executes the step's operations on the CPU (a real one only
    records them) and a "replay" executes nothing: what these tests check is the
    bookkeeping around the graph, which is plain Python either way.
    """

    def __init__(self, fail_on_exit: bool = False, still_capturing: bool = False,
                 empty_cache_fails: bool = False) -> None:
        self.default = FakeStream("default")
        self.current = self.default
        self.streams: list[FakeStream] = []
        self.replays = 0
        self.ended_pools: list[tuple[int, int]] = []
        self.captured_on: list[FakeStream] = []
        self.empty_cache_calls = 0
        self.fail_on_exit, self.still_capturing = fail_on_exit, still_capturing
        self.empty_cache_fails = empty_cache_fails

    def install(self, monkeypatch) -> None:
        fake = self

        class Graph:
            def replay(self) -> None:
                fake.replays += 1

            def pool(self) -> tuple[int, int]:
                return (0, 7)

        @contextlib.contextmanager
        def stream(s):
            before, fake.current = fake.current, s
            yield
            fake.current = before

        @contextlib.contextmanager
        def graph(g, stream=None, capture_error_mode="global"):
            fake.captured_on.append(stream)
            fake.current = stream  # like torch.cuda.graph: the capture stream is current
            yield
            if fake.fail_on_exit:  # capture_end raised: torch leaves the capture stream current
                stream.capturing = fake.still_capturing
                raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
            fake.current = fake.default

        def end_allocate(device, pool):
            fake.ended_pools.append(pool)

        def empty_cache():
            fake.empty_cache_calls += 1
            if fake.empty_cache_fails:
                raise RuntimeError("INTERNAL ASSERT FAILED: captures_underway.empty()")

        def new_stream(device=None):
            s = FakeStream(f"side{len(fake.streams)}")
            fake.streams.append(s)
            return s

        monkeypatch.setattr(torch.cuda, "Stream", new_stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: fake.current)
        monkeypatch.setattr(torch.cuda, "stream", stream)
        monkeypatch.setattr(torch.cuda, "set_stream", lambda s: setattr(fake, "current", s))
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
        monkeypatch.setattr(torch._C, "_cuda_endAllocateToPool", end_allocate, raising=False)
        monkeypatch.setattr(step_module, "capture_blockers", lambda *a, **k: [])


def graph_step(warmup_steps: int = 3) -> tuple[nn.Module, vasso.VaSSO, TrainStep]:
    model = conv_net()
    base = use_tensor_lr(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True))
    opt = vasso.VaSSO(base, rho=0.1, theta=0.4, model=model)
    return model, opt, TrainStep(model, opt, mode="graph", warmup_steps=warmup_steps)


def test_replays_advance_the_step_counter_that_checkpoints_record(monkeypatch):
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    _, opt, step = graph_step(warmup_steps=3)
    x, y = batch()
    for _ in range(10):
        step((x, y))
    assert step.mode == "graph" and step._graph is not None
    assert cuda.replays == 7 and step.replays == 6  # the recording call replays once too
    assert opt.state_dict()["steps"] == 10 and opt.state_dict()["passes"] == 20


def test_warm_up_and_recording_share_one_side_stream(monkeypatch):
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    _, _, step = graph_step(warmup_steps=3)
    x, y = batch()
    seen = []
    real_run = step._run
    step._run = lambda *a: (seen.append(cuda.current), real_run(*a))[1]
    for _ in range(5):
        step((x, y))
    assert len(cuda.streams) == 1
    side = cuda.streams[0]
    assert seen[:3] == [side] * 3 and cuda.captured_on == [side]  # warm-ups, then the recording
    assert cuda.current is cuda.default


def test_a_failed_recording_is_undone_before_the_eager_fallback(monkeypatch):
    cuda = FakeCuda(fail_on_exit=True)
    cuda.install(monkeypatch)
    _, opt, step = graph_step(warmup_steps=2)
    x, y = batch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            step((x, y))
    assert step.mode == "eager" and "operation not permitted" in step.fallback_reason
    assert sum("instead of a CUDA graph" in str(w.message) for w in caught) == 1
    assert cuda.current is cuda.default          # the stream the capture left current is undone
    assert cuda.ended_pools == [(0, 7)]           # the allocator stops serving the graph's pool
    assert cuda.empty_cache_calls == 1            # and is checked to be out of capture mode
    assert cuda.replays == 0 and step.replays == 0
    assert opt.state_dict()["steps"] == 5         # the recording's Python side is not counted
    assert opt.state_dict()["passes"] == 10


@pytest.mark.parametrize("trouble", ["still_capturing", "empty_cache_fails"])
def test_a_recording_that_cannot_be_undone_fails_loudly(monkeypatch, trouble):
    FakeCuda(fail_on_exit=True, **{trouble: True}).install(monkeypatch)
    _, _, step = graph_step(warmup_steps=1)
    x, y = batch()
    step((x, y))
    with pytest.raises(RuntimeError, match="this process cannot continue; rerun with the eager"):
        step((x, y))


# -- DeviceCIFAR: a few augmentation calls per epoch, not one per batch ----------------------

def _top_level_ops(fn) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name
                                                    .startswith("aten::")) for e in prof.events())


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_cifar_groups_batches_per_call_without_changing_them(channels_last):
    from benchmarks.fast.data import Augmentation, DeviceCIFAR
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (70, 32, 32, 3), dtype=torch.uint8, generator=g)

    def data(per_call: int) -> DeviceCIFAR:
        return DeviceCIFAR(images, torch.arange(70), batch_size=8, seed=2, channels_last=channels_last,
                           augmentation=Augmentation(), batches_per_call=per_call)

    one = list(data(1).batches(epoch=1, start=1))
    grouped = list(data(3).batches(epoch=1, start=1))  # 7 batches: groups of 3, 3, 1
    assert len(one) == len(grouped) == 7
    for (xa, ya), (xb, yb) in zip(one, grouped):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xb.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert xb.is_contiguous() != channels_last
    # One augmentation call serves several batches: far fewer operations per epoch.
    per_batch = _top_level_ops(lambda: list(data(1).batches(epoch=1)))
    per_eight = _top_level_ops(lambda: list(data(8).batches(epoch=1)))
    assert per_eight * 3 < per_batch, (per_eight, per_batch)
