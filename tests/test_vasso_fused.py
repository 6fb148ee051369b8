"""The step is fused and sync-free: no host reads, and an op count that does not grow with the model."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from vasso_reference import METHODS, HostReads, batch, closure_for, method_kwargs, mlp

import vasso


def test_the_guard_sees_every_kind_of_host_read():
    t = torch.tensor(1.5)
    reads = (float, int, bool, lambda t: t.item(), lambda t: t.tolist(), lambda t: t.numpy(),
             lambda t: [0, 1][t.long()])
    for read in reads:
        with pytest.raises(AssertionError, match="host read"), HostReads():
            read(t)


PRECISIONS = ("fp32", "bf16-autocast", "bf16-weights")


def _model_and_closures(precision: str, steps: int):
    dtype = torch.bfloat16 if precision == "bf16-weights" else torch.float32
    model = mlp(batchnorm=True, dtype=dtype)
    autocast = precision == "bf16-autocast"

    def closure_for_step(step):
        x, y = batch(step, dtype=dtype)

        def closure():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.mse_loss(model(x).float(), y.float())
            loss.backward()
            return loss

        return closure

    return model, [closure_for_step(step) for step in range(steps)]


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("schedule", [{}, {"ascent_every": 3}], ids=["every-step", "every-3"])
@pytest.mark.parametrize("name", METHODS)
def test_no_host_synchronisation_inside_a_step(name, schedule, precision, fused):
    model, closures = _model_and_closures(precision, steps=4)
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3,
                           **({"fused": True} if fused else {"foreach": True}))
    opt = getattr(vasso, name)(base, model=model, **method_kwargs(name), **schedule)
    before = [p.detach().clone() for p in model.parameters()]
    with HostReads():
        for closure in closures:  # 4 steps: the first allocates state; every-3 skips two
            opt.step(closure)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("lr", [0.05, 0.001], ids=["above-lr-min", "below-lr-min"])
def test_gsam_with_a_tensor_learning_rate_reads_nothing_back(lr):
    model = mlp()
    # The fused SGD reads a tensor LR on the device (the foreach one calls .item() on it).
    base = torch.optim.SGD(model.parameters(), lr=torch.tensor(lr), momentum=0.9, fused=True)
    opt = vasso.GSAM(base, rho=0.1, rho_min=0.01, alpha=0.3, lr_max=0.05, lr_min=0.002)
    closures = [closure_for(model, *batch(step)) for step in range(2)]
    with HostReads():
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
