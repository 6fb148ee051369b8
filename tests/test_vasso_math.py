"""The math of SAM, ASAM, GSAM and VaSSO against plain-loop reference code, and the two call styles."""

from __future__ import annotations

import copy

import pytest
import torch
from vasso_reference import (
    METHODS, batch, closure_for, method_kwargs, mlp, reference_for, sgd, step_both, two_step)

import vasso
from vasso._reference import ReferenceStep


@pytest.mark.parametrize("name", METHODS)
def test_fused_step_matches_the_reference_in_float64(name):
    model = mlp(dtype=torch.float64)
    ref_model = copy.deepcopy(model)
    opt = getattr(vasso, name)(sgd(model), model=model, **method_kwargs(name))
    ref = reference_for(name, ref_model)
    # GSAM's rho follows the learning rate: move it, so that rho_t changes every step.
    schedulers = [torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.7) for o in (opt, ref.base)]
    for step in range(5):
        x, y = batch(step, torch.float64)
        loss = opt.step(closure_for(model, x, y))
        ref_loss = ref.step(closure_for(ref_model, x, y))
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
        for s in schedulers:
            s.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), mlp(dtype=torch.float64).parameters()))


@pytest.mark.parametrize("scale, scaled_names", [("all", None), ("weights", "ndim>1")])
def test_asam_scaled_tensors_with_and_without_model(scale, scaled_names):
    """Without a model, "weights" means the tensors with more than one dimension."""
    model = mlp(dtype=torch.float64)
    ref_model = copy.deepcopy(model)
    opt = vasso.ASAM(sgd(model), rho=0.5, eta=0.05, scale=scale)
    ref_params = list(ref_model.parameters())
    scaled = set(ref_params) if scale == "all" else {p for p in ref_params if p.ndim > 1}
    ref = ReferenceStep(ref_params, sgd(ref_model), "asam", rho=0.5, eta=0.05, scaled=scaled)
    step_both(opt, model, ref, ref_model, 3)


def test_asam_scales_norm_weights_by_name_when_given_the_model():
    model = mlp(batchnorm=True)
    opt = vasso.ASAM(sgd(model), model=model)
    norm_weight, norm_bias = model[1].weight, model[1].bias
    assert opt._scales(norm_weight) and not opt._scales(norm_bias)
    assert not vasso.ASAM(sgd(model))._scales(norm_weight)  # 1-d: not a weight by shape


def _run(name: str, steps: int, **kwargs) -> list[torch.Tensor]:
    model = mlp()
    opt = getattr(vasso, name)(sgd(model), model=model, **kwargs)
    for step in range(steps):
        opt.step(closure_for(model, *batch(step)))
    return [p.detach().clone() for p in model.parameters()]


def test_vasso_with_theta_one_is_sam_bit_for_bit():
    sam = _run("SAM", 6, rho=0.1)
    vas = _run("VaSSO", 6, rho=0.1, theta=1.0)
    assert all(torch.equal(a, b) for a, b in zip(sam, vas))
    other = _run("VaSSO", 6, rho=0.1, theta=0.5)
    assert not all(torch.equal(a, b) for a, b in zip(sam, other))


def test_gsam_with_constant_rho_and_no_alpha_is_sam_bit_for_bit():
    sam = _run("SAM", 4, rho=0.1)
    gsam = _run("GSAM", 4, rho=0.1, alpha=0.0)
    assert all(torch.equal(a, b) for a, b in zip(sam, gsam))


def test_gsam_rho_follows_the_learning_rate_and_never_goes_negative():
    model = mlp()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = vasso.GSAM(base, rho=0.2, rho_min=0.05, lr_min=0.05)
    assert opt._current_rho() == pytest.approx(0.2)
    base.param_groups[0]["lr"] = 0.05
    assert opt._current_rho() == pytest.approx(0.05)
    base.param_groups[0]["lr"] = 0.0  # warm-up below lr_min: the line would go negative
    assert opt._current_rho() == 0.0
    base.param_groups[0]["lr"] = torch.tensor(0.075)  # a tensor lr gives a tensor rho
    rho = opt._current_rho()
    assert isinstance(rho, torch.Tensor) and float(rho) == pytest.approx(0.125)
    base.param_groups[0]["lr"] = torch.tensor(0.0)  # the same clamp on the tensor path
    rho = opt._current_rho()
    assert isinstance(rho, torch.Tensor) and float(rho) == 0.0


@pytest.mark.parametrize("name", METHODS)
def test_perturbation_has_norm_rho_and_restore_is_exact(name):
    model = mlp(dtype=torch.float64)
    opt = getattr(vasso, name)(sgd(model), rho=0.3)
    w = [p.detach().clone() for p in model.parameters()]
    closure_for(model, *batch(0, torch.float64))()
    assert opt.first_step()
    e = [p.detach() - wi for p, wi in zip(model.parameters(), w)]
    if name != "ASAM":  # ASAM's e has norm rho in the scaled coordinates T_w^-1 e
        assert torch.linalg.vector_norm(torch.stack([t.norm() for t in e])) == pytest.approx(0.3)
    opt.zero_grad()
    closure_for(model, *batch(0, torch.float64))()
    base_step = opt.base.step
    opt.base.step = lambda: None  # look at the weights between restore and the base step
    opt.second_step()
    opt.base.step = base_step
    assert all(torch.equal(p, wi) for p, wi in zip(model.parameters(), w))


@pytest.mark.parametrize("name", METHODS)
def test_zero_gradient_gives_no_nan(name):
    model = mlp()
    opt = getattr(vasso, name)(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model=model)

    def closure():
        loss = (model(torch.zeros(2, 4)) * 0.0).sum()
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        opt.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))



@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("schedule", [{}, {"ascent_every": 2}, {"ascent_prob": 0.5, "seed": 3}])
def test_closure_and_two_step_apis_are_bit_identical(name, schedule):
    models = [mlp(batchnorm=True), mlp(batchnorm=True)]
    opts = [
        getattr(vasso, name)(sgd(m), model=m, **method_kwargs(name), **schedule) for m in models
    ]
    for step in range(5):
        x, y = batch(step)
        a = opts[0].step(closure_for(models[0], x, y))
        b = two_step(opts[1], models[1], x, y)
        assert torch.equal(a, b)
    for p, q in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", METHODS)
def test_ascent_every_k_runs_one_pass_on_the_other_steps(name):
    model = mlp()
    opt = getattr(vasso, name)(sgd(model), model=model, ascent_every=3)
    calls: list[int] = []
    for step in range(7):
        opt.step(closure_for(model, *batch(step), calls))
    assert len(calls) == 7 + 3  # ascents on steps 0, 3, 6


def test_ascent_prob_draws_from_a_seeded_cpu_generator():
    model = mlp()
    opt = vasso.SAM(sgd(model), ascent_prob=0.3, seed=11)
    gen = torch.Generator().manual_seed(11)
    expected = [torch.rand((), generator=gen).item() < 0.3 for _ in range(20)]
    ascended = []
    for step in range(20):
        calls: list[int] = []
        opt.step(closure_for(model, *batch(step), calls))
        ascended.append(len(calls) == 2)
    assert ascended == expected and 0 < sum(ascended) < 20


def test_a_skipped_ascent_is_a_plain_base_step_with_the_clean_gradient():
    model = mlp()
    opt = vasso.SAM(sgd(model), ascent_every=100)
    opt.step(closure_for(model, *batch(0)))  # step 0 ascends; step 1 does not
    plain = copy.deepcopy(model)
    base = sgd(plain)
    base.load_state_dict(copy.deepcopy(opt.base.state_dict()))  # the same momentum, not shared
    opt.step(closure_for(model, *batch(1)))
    base.zero_grad()
    closure_for(plain, *batch(1))()
    base.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters()))


def test_vasso_average_is_updated_on_skipped_steps():
    model = mlp(dtype=torch.float64)
    ref_model = copy.deepcopy(model)
    opt = vasso.VaSSO(sgd(model), rho=0.1, theta=0.4, ascent_every=2)
    ref = reference_for("VaSSO", ref_model, rho=0.1, theta=0.4)
    step_both(opt, model, ref, ref_model, 5, ascends=lambda step: step % 2 == 0)
    for p, d in zip(model.parameters(), ref.d):
        torch.testing.assert_close(opt.state[p]["grad_avg"], d, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", METHODS)
def test_lr_schedulers_work_on_the_wrapper_and_the_base(name):
    model = mlp()
    base = sgd(model, lr=0.2)
    opt = getattr(vasso, name)(base, model=model)
    assert opt.param_groups is base.param_groups
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for step in range(4):
        opt.step(closure_for(model, *batch(step)))
        scheduler.step()
        lrs.append(base.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.2 * (1 + torch.cos(torch.tensor(torch.pi * (i + 1) / 4)).item()) / 2 for i in range(4)])
    other = torch.optim.lr_scheduler.StepLR(base, step_size=1, gamma=0.5)
    opt.step(closure_for(model, *batch(9)))
    other.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[-1] * 0.5)


@pytest.mark.parametrize("theta", [0.2, 0.5, 1.0])
def test_vasso_suppresses_gradient_noise_by_theta_over_two_minus_theta(theta):
    """VaSSO's point (METHODS.md): at a fixed w whose minibatch gradients are
    g_t = mu + sigma z_t, the average d_t has E||d_t - mu||^2 -> theta / (2 - theta)
    sigma^2 per coordinate, against sigma^2 for SAM's single gradient (theta = 1).
    Measured over 20000 independent coordinates after the average has forgotten d_0."""
    torch.manual_seed(0)
    dim, sigma, steps = 20_000, 0.5, 120
    w = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
    mu = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64)
    opt = vasso.VaSSO(torch.optim.SGD([w], lr=0.0), rho=0.05, theta=theta)  # lr 0 keeps w fixed

    def closure():
        noisy_gradient = mu + sigma * torch.randn(dim, dtype=torch.float64)
        loss = (w * noisy_gradient).sum()  # d loss / d w = the noisy gradient, whatever w is
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    error = (opt.state[w]["grad_avg"] - mu).square().mean().item()
    expected = theta / (2 - theta) * sigma**2
    assert error == pytest.approx(expected, rel=0.05)
