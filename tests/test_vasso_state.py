"""Checkpointing, the BatchNorm policy and bad input of the vasso optimizers."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from vasso_reference import METHODS, batch, closure_for, method_kwargs, mlp

import vasso

BASES = {
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2),
}


SCHEDULES = {"prob": {"ascent_prob": 0.6, "seed": 5}, "every-3": {"ascent_every": 3}}


def _make(name: str, base: str, seed: int, schedule: str = "prob"):
    model = mlp(seed=seed, batchnorm=True)
    opt = getattr(vasso, name)(
        BASES[base](model.parameters()), model=model, **SCHEDULES[schedule], **method_kwargs(name)
    )
    return model, opt


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("name", METHODS)
def test_resume_continues_bit_for_bit(name, base, schedule):
    # Interrupted after 4 steps: mid-cycle for ascent_every=3 (step 4 does not ascend,
    # step 6 does), so the resumed step counter decides which steps ascend.
    n, m = 4, 4
    model, opt = _make(name, base, seed=0, schedule=schedule)
    for step in range(n + m):
        opt.step(closure_for(model, *batch(step)))
    uninterrupted = copy.deepcopy(model.state_dict())

    model, opt = _make(name, base, seed=0, schedule=schedule)
    for step in range(n):
        opt.step(closure_for(model, *batch(step)))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    model, opt = _make(name, base, seed=1, schedule=schedule)  # fresh weights, fresh optimizer
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["optimizer"])
    assert opt.param_groups is opt.base.param_groups  # base.load_state_dict replaced the list
    for step in range(n, n + m):
        opt.step(closure_for(model, *batch(step)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, uninterrupted[key]), key


def test_state_dict_carries_the_base_state_and_the_gradient_average():
    model, opt = _make("VaSSO", "adamw", seed=0)
    for step in range(2):
        opt.step(closure_for(model, *batch(step)))
    state = opt.state_dict()
    assert state["base"]["state"][0]["exp_avg"].shape == model[0].weight.shape
    assert state["state"][0]["grad_avg"].shape == model[0].weight.shape
    assert state["steps"] == 2 and state["ascent_rng"] is not None
    assert float(state["method_state"]["grad_avg_weight"]) == pytest.approx(0.4)


def test_load_state_dict_rejects_another_method_and_half_steps():
    model, opt = _make("VaSSO", "sgd-momentum", seed=0)
    opt.step(closure_for(model, *batch(0)))
    _, sam = _make("SAM", "sgd-momentum", seed=0)
    with pytest.raises(ValueError, match="belongs to VaSSO"):
        sam.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="not a SAM state dict"):
        sam.load_state_dict(opt.base.state_dict())
    closure_for(model, *batch(1))()
    opt.first_step()
    with pytest.raises(RuntimeError, match="finish the step"):
        opt.state_dict()


def _running_stats(model: torch.nn.Module) -> list[torch.Tensor]:
    bn = model[1]
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


@pytest.mark.parametrize("name", METHODS)
def test_batchnorm_statistics_come_from_the_first_pass_by_default(name):
    model = mlp(batchnorm=True)
    first_only = copy.deepcopy(model)
    opt = getattr(vasso, name)(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    x, y = batch(0)
    opt.step(closure_for(model, x, y))
    first_only(x)  # one train-mode forward at the same weights
    for a, b in zip(_running_stats(model), _running_stats(first_only)):
        assert torch.equal(a, b)


def test_batchnorm_statistics_from_both_passes_when_asked():
    model = mlp(batchnorm=True)
    first_only = copy.deepcopy(model)
    opt = vasso.VaSSO(torch.optim.SGD(model.parameters(), lr=0.1), model=model, bn_stats="both")
    x, y = batch(0)
    opt.step(closure_for(model, x, y))
    first_only(x)
    stats, reference = _running_stats(model), _running_stats(first_only)
    assert int(stats[2]) == 2 and not torch.equal(stats[0], reference[0])


def test_batchnorm_statistics_survive_model_to():
    """model.to() replaces buffers: the optimizer must follow the new tensors."""
    model = mlp(batchnorm=True)
    opt = vasso.SAM(torch.optim.SGD(model.parameters(), lr=0.1), model=model)
    opt.step(closure_for(model, *batch(0)))
    model[1].running_mean = model[1].running_mean.clone()  # what model.to(device) does to buffers
    before = copy.deepcopy(model)
    opt.step(closure_for(model, *batch(1)))
    before(batch(1)[0])
    assert torch.equal(model[1].running_mean, before[1].running_mean)


def _model_and_base():
    model = mlp()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "cls, kwargs, argument",
    [
        (vasso.SAM, {"rho": -0.1}, "rho"),
        (vasso.SAM, {"eps": -1.0}, "eps"),
        (vasso.VaSSO, {"theta": 0.0}, "theta"),
        (vasso.VaSSO, {"theta": 1.5}, "theta"),
        (vasso.ASAM, {"eta": -0.01}, "eta"),
        (vasso.ASAM, {"scale": "biases"}, "scale"),
        (vasso.SAM, {"ascent_every": 0}, "ascent_every"),
        (vasso.SAM, {"ascent_every": 1.5}, "ascent_every"),
        (vasso.SAM, {"ascent_prob": 0.0}, "ascent_prob"),
        (vasso.SAM, {"ascent_prob": 1.2}, "ascent_prob"),
        (vasso.SAM, {"ascent_prob": 0.5, "ascent_every": 2}, "ascent_every or ascent_prob"),
        (vasso.GSAM, {"alpha": -0.1}, "alpha"),
        (vasso.GSAM, {"rho": 0.05, "rho_min": 0.1}, "rho_min"),
        (vasso.GSAM, {"rho": 0.05, "rho_min": 0.01, "lr_max": 0.0}, "lr_max"),
        (vasso.GSAM, {"alpha": 0.1, "sync": "local"}, "alpha"),
        (vasso.SAM, {"bn_stats": "second"}, "bn_stats"),
        (vasso.SAM, {"sync": "none"}, "sync"),
        (vasso.SAM, {"sync": "local"}, "sync='local'"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(cls, kwargs, argument):
    _, base = _model_and_base()
    with pytest.raises(ValueError, match=argument):
        cls(base, **kwargs)


def test_a_base_optimizer_over_other_tensors_than_the_model_is_refused():
    model, _ = _model_and_base()
    _, base = _model_and_base()
    with pytest.raises(ValueError, match="model"):
        vasso.VaSSO(base, model=model)


def test_an_optimizer_class_or_a_wrapper_is_not_a_base_optimizer():
    with pytest.raises(TypeError, match="instance"):
        vasso.SAM(torch.optim.SGD)
    with pytest.raises(TypeError, match="Optimizer"):
        vasso.SAM([torch.zeros(1)])
    _, base = _model_and_base()
    with pytest.raises(TypeError, match="already"):
        vasso.VaSSO(vasso.SAM(base))


def test_step_without_closure_and_steps_out_of_order_raise():
    model, base = _model_and_base()
    opt = vasso.SAM(base)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(RuntimeError, match="first_step"):
        opt.second_step()
    with pytest.raises(RuntimeError, match="no parameter has a gradient"):
        opt.first_step()
    closure_for(model, *batch(0))()
    opt.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        opt.first_step()


def test_a_failing_second_pass_restores_the_weights():
    model, base = _model_and_base()
    opt = vasso.SAM(base)
    w = [p.detach().clone() for p in model.parameters()]
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return closure_for(model, *batch(0))()

    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    assert all(torch.equal(p, wi) for p, wi in zip(model.parameters(), w))
    opt.step(closure_for(model, *batch(0)))  # and the optimizer is ready for the next step
