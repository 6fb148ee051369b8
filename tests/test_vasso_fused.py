"""The step is fused and sync-free: no host reads, and an op count that does not grow with the model."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from vasso_reference import METHODS, batch, closure_for, method_kwargs, mlp

import vasso


def _forbid_host_reads(monkeypatch):
    def host_read(*args, **kwargs):
        raise AssertionError("host read inside the step")

    for attr in ("item", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, attr, host_read)


@pytest.mark.parametrize("schedule", [{}, {"ascent_every": 2}], ids=["every-step", "every-2"])
@pytest.mark.parametrize("name", METHODS)
def test_no_host_synchronisation_inside_a_step(name, schedule, monkeypatch):
    model = mlp(batchnorm=True)
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    opt = getattr(vasso, name)(base, model=model, **method_kwargs(name), **schedule)
    closures = [closure_for(model, *batch(step)) for step in range(3)]
    _forbid_host_reads(monkeypatch)
    for closure in closures:
        opt.step(closure)
    monkeypatch.undo()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_gsam_with_a_tensor_learning_rate_reads_nothing_back(monkeypatch):
    model = mlp()
    base = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.05), momentum=0.9)
    opt = vasso.GSAM(base, rho=0.1, rho_min=0.01, alpha=0.3)
    closures = [closure_for(model, *batch(step)) for step in range(2)]
    _forbid_host_reads(monkeypatch)
    for closure in closures:
        opt.step(closure)


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active and not paused."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.active = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.active:
            self.count += 1
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def paused(self):
        self.active = False
        try:
            yield
        finally:
            self.active = True


def _ops_per_step(name: str, n_tensors: int) -> int:
    """The optimizer's own op count for one step, over n_tensors parameter tensors."""
    torch.manual_seed(0)
    # Half matrices, half vectors: ASAM scales the first kind only.
    params = [
        torch.nn.Parameter(torch.randn(3, 2) if i % 2 else torch.randn(3)) for i in range(n_tensors)
    ]
    grads = [torch.randn_like(p) for p in params]
    base = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3, foreach=True)
    opt = getattr(vasso, name)(base, **method_kwargs(name))
    counter = OpCounter()

    def closure():
        with counter.paused():  # the closure's own ops are not the optimizer's
            for p, g in zip(params, grads):
                p.grad = g.clone()
            return torch.zeros(())

    opt.step(closure)  # the first step allocates buffers and momentum, tensor by tensor
    with counter:
        opt.step(closure)
    return counter.count


@pytest.mark.parametrize("name", METHODS)
def test_op_count_does_not_grow_with_the_number_of_tensors(name):
    small, large = _ops_per_step(name, 10), _ops_per_step(name, 200)
    assert small == large
    assert 5 < small < 80
