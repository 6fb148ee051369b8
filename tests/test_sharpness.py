"""benchmarks.sharpness: Hessian-vector products, Lanczos' top eigenvalue, Hutchinson's trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.sharpness import HessianOperator, hutchinson_trace, model_sharpness, top_eigenvalue


class Quadratic(nn.Module):
    """loss(w) = 1/2 w^T A w, whatever the batch: its Hessian is A."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a
        self.w = nn.Parameter(torch.randn(a.shape[0], dtype=a.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w + 0 * x.sum()


def _matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


def _operator(a: torch.Tensor) -> HessianOperator:
    model = Quadratic(a)
    batch = (torch.zeros(3, 1, dtype=a.dtype), torch.zeros(3, dtype=a.dtype))
    return HessianOperator(model, lambda out, y: out, [batch])


def test_lanczos_recovers_the_top_eigenvalue_of_a_known_spectrum():
    # An indefinite spectrum, as Hessians of trained networks are, with a modest gap.
    spectrum = torch.cat([torch.linspace(-2.0, 9.0, 299, dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64)])
    op = _operator(_matrix(spectrum))
    eig = top_eigenvalue(op, op.dim, tol=1e-6, dtype=torch.float64)
    assert eig.converged
    assert eig.value == pytest.approx(10.0, rel=1e-4)
    assert eig.iterations < 100 and op.products == eig.iterations


def test_an_unconverged_estimate_is_reported_as_such():
    spectrum = torch.linspace(0.0, 10.0, 400, dtype=torch.float64)  # no gap: slow convergence
    op = _operator(_matrix(spectrum, seed=1))
    eig = top_eigenvalue(op, op.dim, max_iter=4, tol=1e-8, dtype=torch.float64)
    assert not eig.converged and eig.iterations == 4
    assert eig.value < 10.0 and eig.residual > 1e-8 * eig.value
    assert "NOT converged" in str(eig)


def test_hutchinson_trace_is_unbiased_within_its_standard_error():
    spectrum = torch.linspace(-1.0, 5.0, 200, dtype=torch.float64)
    op = _operator(_matrix(spectrum, seed=2))
    trace = hutchinson_trace(op, op.dim, samples=200, dtype=torch.float64)
    assert 0 < trace.stderr < 5.0
    assert abs(trace.value - float(spectrum.sum())) < 4 * trace.stderr


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_hessian_vector_products_match_the_exact_hessian_in_eval_mode():
    model = _small_net()
    model.train()
    model(torch.randn(8, 3, dtype=torch.float64))  # running statistics away from their init
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (n,), generator=gen))
               for n in (5, 11)]
    loss_fn = nn.functional.cross_entropy
    op = HessianOperator(model, loss_fn, batches)
    params = list(model.parameters())
    shapes = [p.shape for p in params]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces, offset = {}, 0
        for (name, p), shape in zip(model.named_parameters(), shapes):
            pieces[name] = flat[offset:offset + p.numel()].view(shape)
            offset += p.numel()
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        out = torch.func.functional_call(model, {**pieces, **dict(model.named_buffers())}, (x,))
        return loss_fn(out, y)  # the mean over all 16 samples, BatchNorm in eval mode

    model.eval()
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    exact = torch.autograd.functional.hessian(loss_of, flat)
    model.train()
    v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op(v), exact @ v, rtol=1e-10, atol=1e-12)
    assert model.training  # the mode is put back


def test_model_sharpness_records_its_tolerance_and_cost():
    model = _small_net()
    batches = [(torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,)))]
    record = model_sharpness(model, nn.functional.cross_entropy, batches, tol=1e-6, trace_samples=10)
    assert record["converged"] and record["tol"] == 1e-6 and record["num_samples"] == 16
    assert record["num_params"] == sum(p.numel() for p in model.parameters())
    assert record["hessian_vector_products"] == record["lanczos_steps"] + 10
    assert record["top_eigenvalue"] > 0 and record["trace_stderr"] >= 0


@pytest.mark.parametrize("kwargs", [{"max_iter": 0}, {"tol": 0.0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="max_iter"):
        top_eigenvalue(lambda v: v, 3, **kwargs)
