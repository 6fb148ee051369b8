"""benchmarks.diagnose: the adversary's distance to the full-gradient adversary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.diagnose import adversary_alignment, flat_gradient, measure


def _noisy_gradients(mu: torch.Tensor, sigma: float, k: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [mu + sigma * torch.randn(len(mu), generator=gen, dtype=torch.float64) for _ in range(k)]


@pytest.mark.parametrize("theta", [0.2, 0.5])
def test_the_averaged_direction_has_theta_over_two_minus_theta_of_sams_variance(theta):
    mu = torch.linspace(-1.0, 1.0, 4000, dtype=torch.float64)
    grads = _noisy_gradients(mu, sigma=0.5, k=400)
    sam, vasso = adversary_alignment(mu, grads, thetas=[1.0, theta], warmup=100)
    assert sam.steps == vasso.steps == 300
    assert sam.variance == pytest.approx(4000 * 0.25, rel=0.03)  # sigma^2 per coordinate
    assert vasso.variance / sam.variance == pytest.approx(theta / (2 - theta), rel=0.06)
    # ...and so its adversary sits closer to e* and is better aligned with it
    assert vasso.distance_mean < sam.distance_mean and vasso.cos_mean > sam.cos_mean


def test_without_noise_every_adversary_is_the_ideal_one():
    mu = torch.randn(50, dtype=torch.float64)
    grads = _noisy_gradients(mu, sigma=0.0, k=5)
    for a in adversary_alignment(mu, grads, thetas=[1.0, 0.3]):
        assert a.distance_mean == pytest.approx(0.0, abs=1e-12) and a.cos_mean == pytest.approx(1.0)


def test_measure_uses_the_same_weights_and_puts_batchnorm_statistics_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 3, generator=gen), torch.randint(0, 2, (16,), generator=gen)) for _ in range(6)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = nn.functional.cross_entropy
    results = measure(model, loss, data, data[:4], thetas=[1.0, 0.5], warmup=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert [a.theta for a in results] == [1.0, 0.5] and all(a.steps == 3 for a in results)
    # the full gradient is the size-weighted mean of the batch gradients
    full = flat_gradient(model, loss, data)
    mean = sum(flat_gradient(model, loss, [b]) for b in data) / len(data)
    torch.testing.assert_close(full, mean)


@pytest.mark.parametrize("kwargs, match", [({"warmup": 5}, "warmup"), ({"thetas": [0.0]}, "theta")])
def test_bad_settings_are_refused(kwargs, match):
    args = {"thetas": [1.0], "warmup": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        adversary_alignment(torch.ones(3), [torch.ones(3)] * 5, **args)
