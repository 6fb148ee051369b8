"""Cheaper steps (METHODS.md, "Cheaper steps"): skipped ascents that reuse the last
perturbation, and the measured count of forward/backward passes."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from vasso_reference import (
    METHODS, HostReads, batch, closure_for, method_kwargs, mlp, reference_for, sgd, step_both, two_step)

import vasso


@pytest.mark.parametrize(
    "name, update_on_reuse",
    [(name, False) for name in METHODS] + [("VaSSO", True)],  # update_on_reuse: VaSSO's option
)
def test_reuse_matches_the_reference_in_float64(name, update_on_reuse):
    model = mlp(dtype=torch.float64)
    ref_model = copy.deepcopy(model)
    extra = {"update_on_reuse": True} if update_on_reuse else {}
    opt = getattr(vasso, name)(sgd(model), model=model, ascent_every=3, skip="reuse",
                               **method_kwargs(name), **extra)
    ref = reference_for(name, ref_model, skip="reuse", **extra)
    step_both(opt, model, ref, ref_model, 8, ascends=lambda step: step % 3 == 0)
    if name == "VaSSO":
        for p, d in zip(model.parameters(), ref.d):
            torch.testing.assert_close(opt.state[p]["grad_avg"], d, rtol=1e-12, atol=1e-14)
    assert opt.passes == ref.passes == 8 + 3  # ascents on steps 0, 3, 6


def test_reuse_is_not_the_clean_skip():
    """Negative control: the two skip modes give different weights after a skipped step."""
    finals = []
    for skip in ("clean", "reuse"):
        model = mlp(dtype=torch.float64)
        opt = vasso.SAM(sgd(model), rho=0.1, ascent_every=2, skip=skip)
        for step in range(2):
            opt.step(closure_for(model, *batch(step, torch.float64)))
        finals.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert not torch.allclose(finals[0], finals[1])


def test_a_reused_step_evaluates_the_gradient_at_w_plus_the_last_perturbation():
    model = mlp(dtype=torch.float64)
    opt = vasso.SAM(torch.optim.SGD(model.parameters(), lr=0.0), rho=0.1, ascent_every=10, skip="reuse")
    opt.step(closure_for(model, *batch(0, torch.float64)))  # ascends, keeps e_last
    e_last = [opt.state[p]["e_last"].clone() for p in model.parameters()]
    w = [p.detach().clone() for p in model.parameters()]
    seen = []

    def closure():
        seen.append([p.detach().clone() for p in model.parameters()])
        return closure_for(model, *batch(1, torch.float64))()

    opt.step(closure)
    assert len(seen) == 1  # one pass
    for at, wi, ei in zip(seen[0], w, e_last):
        assert torch.equal(at, wi + ei)
    assert all(torch.equal(p, wi) for p, wi in zip(model.parameters(), w))  # lr 0: back at w
    norm = torch.cat([e.flatten() for e in e_last]).norm()
    assert norm.item() == pytest.approx(0.1)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("skip", ["clean", "reuse"])
@pytest.mark.parametrize("schedule", [{"ascent_every": 3}, {"ascent_prob": 0.4, "seed": 2}])
def test_passes_count_every_closure_call(name, skip, schedule):
    model = mlp()
    opt = getattr(vasso, name)(sgd(model), model=model, skip=skip, **schedule, **method_kwargs(name))
    calls: list[int] = []
    for step in range(12):
        opt.step(closure_for(model, *batch(step), calls))
    assert opt.passes == len(calls)
    assert 12 < opt.passes < 24


def test_reuse_before_any_ascent_is_a_clean_step():
    """With ascent_prob, the first steps may come before any e_last exists."""
    model = mlp(dtype=torch.float64)
    opt = vasso.SAM(sgd(model), rho=0.1, ascent_prob=0.05, seed=0, skip="reuse")
    gen = torch.Generator().manual_seed(0)
    first_ascent = next(i for i in range(100) if torch.rand((), generator=gen).item() < 0.05)
    assert first_ascent >= 2
    plain = copy.deepcopy(model)
    base = sgd(plain)
    for step in range(2):
        opt.step(closure_for(model, *batch(step, torch.float64)))
        base.zero_grad()
        closure_for(plain, *batch(step, torch.float64))()
        base.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters()))
    assert opt.passes == 2


@pytest.mark.parametrize("name", METHODS)
def test_two_step_api_with_first_pass_equals_the_closure(name):
    models = [mlp(batchnorm=True), mlp(batchnorm=True)]
    opts = [getattr(vasso, name)(sgd(m), model=m, ascent_every=2, skip="reuse", **method_kwargs(name))
            for m in models]
    for step in range(5):
        x, y = batch(step)
        assert torch.equal(opts[0].step(closure_for(models[0], x, y)), two_step(opts[1], models[1], x, y))
    for p, q in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(p, q)
    assert opts[0].passes == opts[1].passes == 5 + 3


def test_two_step_api_without_first_pass_is_refused_on_a_reused_step():
    model = mlp()
    opt = vasso.VaSSO(sgd(model), ascent_every=2, skip="reuse")
    opt.step(closure_for(model, *batch(0)))
    w = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(batch(1)[0]), batch(1)[1]).backward()
    with pytest.raises(RuntimeError, match="first_pass"):
        opt.first_step()
    assert all(torch.equal(p, wi) for p, wi in zip(model.parameters(), w))


def test_a_failing_pass_at_the_reused_point_puts_the_weights_back():
    model = mlp()
    opt = vasso.SAM(sgd(model), ascent_every=2, skip="reuse")
    opt.step(closure_for(model, *batch(0)))
    w = [p.detach().clone() for p in model.parameters()]

    def failing():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        opt.step(failing)
    assert all(torch.equal(p, wi) for p, wi in zip(model.parameters(), w))
    opt.step(closure_for(model, *batch(1)))  # the optimizer is usable again
    assert opt.passes == 3


@pytest.mark.parametrize("bn_stats", ["first", "both"])
def test_the_one_pass_of_a_reused_step_updates_batchnorm_statistics(bn_stats):
    model = mlp(batchnorm=True)
    opt = vasso.SAM(sgd(model), model=model, ascent_every=2, skip="reuse", bn_stats=bn_stats)
    opt.step(closure_for(model, *batch(0)))
    before = model[1].running_mean.clone()
    opt.step(closure_for(model, *batch(1)))  # reused
    assert not torch.equal(model[1].running_mean, before)
    assert model[1].num_batches_tracked.item() == (2 if bn_stats == "first" else 3)


@pytest.mark.parametrize("name", METHODS)
def test_resume_mid_cycle_continues_bit_for_bit(name):
    def make(seed):
        model = mlp(seed=seed, batchnorm=True)
        extra = {"update_on_reuse": True} if name == "VaSSO" else {}
        opt = getattr(vasso, name)(sgd(model), model=model, ascent_every=3, skip="reuse",
                                   **method_kwargs(name), **extra)
        return model, opt

    model, opt = make(0)
    for step in range(8):
        opt.step(closure_for(model, *batch(step)))
    uninterrupted, passes = copy.deepcopy(model.state_dict()), opt.passes

    model, opt = make(0)
    for step in range(4):  # stops after a reused step, before the next ascent
        opt.step(closure_for(model, *batch(step)))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    model, opt = make(1)
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["optimizer"])
    for step in range(4, 8):
        opt.step(closure_for(model, *batch(step)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, uninterrupted[key]), key
    assert opt.passes == passes


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda b: vasso.SAM(b, skip="sometimes"), "skip must be one of"),
        (lambda b: vasso.VaSSO(b, update_on_reuse=True), "update_on_reuse=True needs skip='reuse'"),
    ],
)
def test_bad_settings_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make(torch.optim.SGD(mlp().parameters(), lr=0.1))


@pytest.mark.parametrize("name", METHODS)
def test_reused_steps_read_nothing_back_to_the_host(name):
    model = mlp(batchnorm=True)
    opt = getattr(vasso, name)(sgd(model), model=model, ascent_every=2, skip="reuse", **method_kwargs(name))
    opt.step(closure_for(model, *batch(0)))  # the first ascent, outside the mode
    x, y = batch(1)
    opt.zero_grad()
    with HostReads():
        with opt.first_pass():
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
        assert not opt.first_step()
        opt.second_step()
    assert opt.passes == 3
    with pytest.raises(AssertionError, match="host read"), HostReads():
        float(loss)  # the mode does see a host read: a negative control
