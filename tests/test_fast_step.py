"""TrainStep against the plain loop written out here, on a tiny BatchNorm CNN.

The reference loop is what the official code does (with vasso's in-place
restore): a float LR, the default (foreach) SGD, forward/backward,
``first_step``, forward/backward, ``second_step``. The fast step uses the
settings a CUDA graph needs (a tensor LR updated in place by the scheduler,
fused SGD). On the CPU ``auto`` runs eagerly and ``graph`` falls back, so these
tests pin that the fast configuration computes the same step; the CUDA test at
the end replays a recorded graph against the eager step where a GPU exists.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

import vasso
from benchmarks.config import TrainConfig
from benchmarks.training.step import TrainStep, capture_blockers, set_lr, use_tensor_lr
from benchmarks.methods import build_optimizer

STEPS = 6


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))


def batches(n: int = STEPS, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=g).to(device),
             torch.randint(0, 10, (16,), generator=g).to(device)) for _ in range(n)]


def make_optimizer(method: str, model: nn.Module, *, fast: bool) -> torch.optim.Optimizer:
    """As the engine builds it (the method registry), on the fast path with a tensor LR."""
    cfg = TrainConfig("cifar", optimizer=method, lr=0.1, momentum=0.9, weight_decay=5e-4,
                      theta=0.4, bn_stats="first")
    optimizer, base = build_optimizer(cfg, model, fused=fast)
    if fast:
        use_tensor_lr(base)
    return optimizer


def cosine(step: int) -> float:
    return 0.5 * (1 + torch.cos(torch.tensor(step / STEPS * 3.14159)).item())


def reference_loop(method: str) -> tuple[nn.Module, list[float]]:
    model = tiny_cnn()
    opt = make_optimizer(method, model, fast=False)
    sched = LambdaLR(getattr(opt, "base", opt), cosine)
    losses = []
    for x, y in batches():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if method == "sgd":
            opt.step()
        else:
            assert opt.first_step()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.second_step()
        sched.step()
        losses.append(loss.item())
    return model, losses


def fast_loop(method: str, **step_kw) -> tuple[nn.Module, list[float], TrainStep]:
    model = tiny_cnn()
    opt = make_optimizer(method, model, fast=True)
    sched = LambdaLR(getattr(opt, "base", opt), cosine)
    step = TrainStep(model, opt, **step_kw)
    losses = []
    for x, y in batches():
        out = step((x, y))
        assert out.extras.shape == (16, 10)
        sched.step()
        losses.append(float(out.loss))
    return model, losses, step


def assert_same_state(a: nn.Module, b: nn.Module, tol: float = 1e-5) -> None:
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(ta, tb, atol=tol, rtol=tol, msg=f"{name} differs")


@pytest.mark.parametrize("method", ["sgd", "sam", "vasso"])
def test_fast_step_equals_the_plain_loop(method):
    ref_model, ref_losses = reference_loop(method)
    model, losses, step = fast_loop(method)
    assert step.mode == "eager"  # auto on the CPU
    assert losses == pytest.approx(ref_losses, rel=1e-5, abs=1e-6)
    assert_same_state(model, ref_model)
    # The run actually trained: the weights moved away from their initial values.
    assert not torch.allclose(model[0].weight, tiny_cnn()[0].weight)


def test_graph_mode_without_cuda_warns_once_and_runs_eagerly():
    ref_model, ref_losses = reference_loop("vasso")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, losses, step = fast_loop("vasso", mode="graph")
    relevant = [w for w in caught if "instead of a CUDA graph" in str(w.message)]
    assert len(relevant) == 1 and "CUDA device" in str(relevant[0].message)
    assert step.mode == "eager" and "CUDA" in step.fallback_reason
    assert losses == pytest.approx(ref_losses, rel=1e-5, abs=1e-6)
    assert_same_state(model, ref_model)


COMPILE_BACKENDS = [
    "aot_eager",  # TorchDynamo capture + AOTAutograd, no code generation: seconds
    pytest.param("inductor", marks=pytest.mark.skipif(
        os.environ.get("VASSO_TEST_INDUCTOR") != "1",
        reason="inductor compiles C++ for about 90 s on a 2-core CPU: set VASSO_TEST_INDUCTOR=1")),
]


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_step_equals_the_plain_loop(backend):
    torch._dynamo.reset()
    ref_model, ref_losses = reference_loop("vasso")
    model, losses, step = fast_loop("vasso", mode="compile", compile_options={"backend": backend})
    assert step.mode == "compile"
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-5)
    assert_same_state(model, ref_model, tol=1e-4)


def test_bf16_autocast_step_stays_close_to_fp32():
    _, ref_losses = reference_loop("sam")
    _, losses, _ = fast_loop("sam", autocast_dtype=torch.bfloat16)
    assert losses != ref_losses  # autocast really ran in bf16
    assert losses == pytest.approx(ref_losses, rel=3e-2, abs=3e-2)


def test_tensor_lr_follows_the_scheduler_in_place():
    model = tiny_cnn()
    fast = make_optimizer("sgd", model, fast=True)
    plain = torch.optim.SGD(tiny_cnn().parameters(), lr=0.1)
    lr = fast.param_groups[0]["lr"]
    schedulers = [LambdaLR(fast, cosine), LambdaLR(plain, cosine)]
    for _ in range(4):
        fast.step(), plain.step()
        for s in schedulers:
            s.step()
        assert fast.param_groups[0]["lr"] is lr  # the very tensor a graph would read
        assert float(lr) == pytest.approx(plain.param_groups[0]["lr"], rel=1e-6)
    set_lr(fast, 0.02)
    assert fast.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="2 learning rates for 1 param groups"):
        set_lr(fast, [0.1, 0.2])


def test_capture_blockers_name_each_problem_and_its_fix():
    model = tiny_cnn()
    plain = vasso.VaSSO(torch.optim.SGD(model.parameters(), lr=0.1), ascent_every=2)
    problems = " | ".join(capture_blockers(plain, "cpu"))
    for expected in ("need a CUDA device", "ascent_every=1", "use_tensor_lr", "fused=True"):
        assert expected in problems
    ready = make_optimizer("vasso", model, fast=True)
    assert capture_blockers(ready, "cpu") == [
        "CUDA graphs need a CUDA device, this step runs on cpu"]
    adam = use_tensor_lr(torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3)))
    assert any("capturable=True" in p for p in capture_blockers(adam, "cpu"))


def test_bad_arguments_are_clear_errors():
    model = tiny_cnn()
    opt = make_optimizer("sgd", model, fast=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        TrainStep(model, opt, mode="fast")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainStep(model, opt, warmup_steps=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["sgd", "vasso"])
def test_cuda_graph_replay_equals_eager(method):
    def run(mode: str):
        model = tiny_cnn().cuda().to(memory_format=torch.channels_last)
        opt = make_optimizer(method, model, fast=True)
        sched = LambdaLR(getattr(opt, "base", opt), cosine)
        step = TrainStep(model, opt, mode=mode, warmup_steps=2)
        losses = []
        for x, y in batches(device="cuda"):
            losses.append(float(step((x.contiguous(memory_format=torch.channels_last), y)).loss))
            sched.step()
        return model, losses, step

    eager_model, eager_losses, _ = run("eager")
    graph_model, graph_losses, step = run("graph")
    assert step.mode == "graph" and step._graph is not None, step.fallback_reason
    assert graph_losses == pytest.approx(eager_losses, rel=1e-4, abs=1e-5)
    assert_same_state(graph_model, eager_model, tol=1e-4)
