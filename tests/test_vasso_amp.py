"""Mixed precision: bf16 autocast, and fp16-style loss scaling with torch.amp.GradScaler, on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch
from vasso_reference import METHODS, batch, method_kwargs, mlp

import vasso


def _opt(name: str, model: torch.nn.Module, fused: bool = False):
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=fused or None)
    return getattr(vasso, name)(base, model=model, **method_kwargs(name))


@pytest.mark.parametrize("name", METHODS)
def test_bf16_autocast_step_runs_unchanged(name):
    model = mlp(batchnorm=True)
    opt = _opt(name, model)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batch(0)

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        return loss

    for _ in range(2):
        loss = opt.step(closure)
    assert torch.isfinite(loss)
    for p, b in zip(model.parameters(), before):
        assert p.dtype == torch.float32 and torch.isfinite(p).all() and not torch.equal(p, b)


def _scaled_closure(model, x, y, scaler, inject_inf_on_call=None):
    calls = []

    def closure():
        calls.append(1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if len(calls) == inject_inf_on_call:
            model[0].weight.grad[0, 0] = float("inf")
        return loss

    return closure


def _snapshot(model, opt):
    return (
        [p.detach().clone() for p in model.parameters()],
        copy.deepcopy(opt.base.state_dict()["state"]),
        copy.deepcopy(opt.state_dict()["state"]),
    )


def _assert_same(a, b):
    for x, y in zip(a[0], b[0]):
        assert torch.equal(x, y)
    for state_a, state_b in ((a[1], b[1]), (a[2], b[2])):
        assert state_a.keys() == state_b.keys()
        for i in state_a:
            for key in state_a[i]:
                assert torch.equal(state_a[i][key], state_b[i][key]), key


@pytest.mark.parametrize("name", METHODS)
def test_scaled_step_equals_the_unscaled_step(name):
    """Scaling by a power of two and unscaling is exact: same weights, same VaSSO average."""
    model = mlp(batchnorm=True)
    plain_model = copy.deepcopy(model)
    opt, plain = _opt(name, model), _opt(name, plain_model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for step in range(3):
        x, y = batch(step)
        opt.step(_scaled_closure(model, x, y, scaler), scaler=scaler)
        plain.step(_scaled_closure(plain_model, x, y, torch.amp.GradScaler("cpu", enabled=False)))
    assert scaler.get_scale() == 2.0**12
    _assert_same(_snapshot(model, opt), _snapshot(plain_model, plain))


@pytest.mark.parametrize("fused", [False, True], ids=["sgd", "fused-sgd"])
@pytest.mark.parametrize("overflow_pass", [1, 2])
@pytest.mark.parametrize("name", METHODS)
def test_an_overflow_in_either_pass_skips_the_whole_step(name, overflow_pass, fused):
    model = mlp(batchnorm=True)
    opt = _opt(name, model, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt.step(_scaled_closure(model, *batch(0), scaler), scaler=scaler)  # a clean step: state exists
    before = _snapshot(model, opt)
    bn_before = model[1].running_mean.clone()
    opt.step(_scaled_closure(model, *batch(1), scaler, inject_inf_on_call=overflow_pass), scaler=scaler)
    _assert_same(_snapshot(model, opt), before)  # weights, base state, method state
    assert scaler.get_scale() == 2.0**11  # the scaler saw the overflow and backed off
    assert not torch.equal(model[1].running_mean, bn_before)  # the first forward still counted
    opt.step(_scaled_closure(model, *batch(2), scaler), scaler=scaler)  # and training goes on
    assert not torch.equal(model[0].weight, before[0][0]) and not torch.equal(model[3].weight, before[0][4])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_vasso_average_starts_at_the_first_step_that_does_not_overflow():
    model = mlp()
    plain_model = copy.deepcopy(model)
    opt, plain = _opt("VaSSO", model), _opt("VaSSO", plain_model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt.step(_scaled_closure(model, *batch(0), scaler, inject_inf_on_call=1), scaler=scaler)
    assert all(torch.equal(s["grad_avg"], torch.zeros_like(s["grad_avg"])) for s in opt.state.values())
    opt.step(_scaled_closure(model, *batch(1), scaler), scaler=scaler)
    plain.step(_scaled_closure(plain_model, *batch(1), torch.amp.GradScaler("cpu", enabled=False)))
    _assert_same(_snapshot(model, opt), _snapshot(plain_model, plain))  # d_0 = g_0 of that step


def test_scaler_with_a_fused_base_optimizer_reads_nothing_back(monkeypatch):
    model = mlp()
    opt = _opt("VaSSO", model, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt.step(_scaled_closure(model, *batch(0), scaler), scaler=scaler)

    def host_read(*args, **kwargs):
        raise AssertionError("host read inside the step")

    for attr in ("item", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, attr, host_read)
    opt.step(_scaled_closure(model, *batch(1), scaler, inject_inf_on_call=2), scaler=scaler)
    monkeypatch.undo()
    assert scaler.get_scale() == 2.0**11
