"""Shared fixtures of the vasso tests: a tiny model, fixed batches, closures, and
what each method's own math needs. The per-tensor reference the classes are checked
against is part of the library: ``vasso._reference`` (``ReferenceStep``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from vasso._reference import ReferenceStep


METHODS = ("SAM", "ASAM", "GSAM", "VaSSO")


def sgd(model: torch.nn.Module, lr: float = 0.1) -> torch.optim.SGD:
    """The tests' base optimizer: SGD with momentum and weight decay (both enter the step)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32, batchnorm: bool = False) -> torch.nn.Module:
    """A tiny regression model: 4 -> 8 -> 1, optionally with BatchNorm."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(4, 8)]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(8))
    layers += [torch.nn.Tanh(), torch.nn.Linear(8, 1)]
    return torch.nn.Sequential(*layers).to(dtype)


def batch(step: int, dtype: torch.dtype = torch.float32, size: int = 16) -> tuple[Tensor, Tensor]:
    """The minibatch of a given step, the same on every call."""
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(size, 4, generator=gen, dtype=dtype)
    y = torch.randn(size, 1, generator=gen, dtype=dtype)
    return x, y


def closure_for(model: torch.nn.Module, x: Tensor, y: Tensor, calls: list[int] | None = None):
    """A closure that runs forward + backward of the MSE loss and counts its calls."""

    def closure() -> Tensor:
        if calls is not None:
            calls.append(1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


def method_kwargs(name: str) -> dict:
    """Non-default settings that exercise each method's own math."""
    return {
        "SAM": {"rho": 0.1},
        "ASAM": {"rho": 0.5, "eta": 0.01},
        "GSAM": {"rho": 0.1, "rho_min": 0.02, "alpha": 0.4},
        "VaSSO": {"rho": 0.1, "theta": 0.4},
    }[name]


class HostReads(TorchDispatchMode):
    """While active, any read of a tensor's value by the host raises AssertionError.

    ``.item()``, ``float()``, ``int()``, ``bool()`` and indexing with a tensor all
    reach the dispatcher as ``aten._local_scalar_dense`` (``aten.is_nonzero`` on
    some versions); ``.tolist()`` and ``.numpy()`` of a CPU tensor read its memory
    without dispatching anything, so they are patched for the duration as well.
    """

    FORBIDDEN = (torch.ops.aten._local_scalar_dense, torch.ops.aten.is_nonzero)
    UNDISPATCHED = ("tolist", "numpy")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in self.FORBIDDEN:
            raise AssertionError(f"host read inside the step: {func}")
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        def host_read(*args, **kwargs):
            raise AssertionError("host read inside the step: .tolist() / .numpy()")

        self._saved = {name: getattr(Tensor, name) for name in self.UNDISPATCHED}
        for name in self.UNDISPATCHED:
            setattr(Tensor, name, host_read)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, method in self._saved.items():
            setattr(Tensor, name, method)
        return super().__exit__(*exc)


def two_step(opt, model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """One step through the two-step API (first_pass / first_step / second_step), the
    MSE loss of ``closure_for``; returns the first-pass loss."""
    with opt.first_pass():
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
    if opt.first_step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
    opt.second_step()
    opt.zero_grad()
    return loss


def reference_for(name: str, model: torch.nn.Module, **kwargs) -> ReferenceStep:
    """The per-tensor reference of class ``name`` over ``model`` (its own SGD), with
    ``method_kwargs(name)`` updated by ``kwargs``; ASAM scales what the class scales
    when given the model: the tensors named "weight"."""
    scaled = {p for n, p in model.named_parameters() if "weight" in n}
    return ReferenceStep(list(model.parameters()), sgd(model), name.lower(), scaled=scaled,
                         **{**method_kwargs(name), **kwargs})


def step_both(opt, model: torch.nn.Module, ref: ReferenceStep, ref_model: torch.nn.Module, steps: int,
              ascends: Callable[[int], bool] = lambda step: True) -> None:
    """``steps`` float64 steps of the class and of the reference on the same batches
    (the reference told which steps ascend); then their weights agree to rounding."""
    for step in range(steps):
        x, y = batch(step, torch.float64)
        loss = opt.step(closure_for(model, x, y))
        ref_loss = ref.step(closure_for(ref_model, x, y), ascend=ascends(step))
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
