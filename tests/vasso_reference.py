"""Readable reference implementations of SAM, ASAM, GSAM and VaSSO for the tests.

Written from the equations (docs/optimizers.md, METHODS.md), one tensor at a
time, with Python-float norms and no code shared with ``vasso/``: the fused
library is checked against this, step by step, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode


def _norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float((t * t).sum()) for t in tensors))


def _dot(a: list[Tensor], b: list[Tensor]) -> float:
    return sum(float((x * y).sum()) for x, y in zip(a, b))


class ReferenceStep:
    """One sharpness-aware step around a base optimizer, written out plainly.

    method: "sam", "asam", "gsam" or "vasso". ``scaled`` (ASAM): the set of
    tensors T_w scales. GSAM reads lr from ``base.param_groups[0]``.
    """

    def __init__(
        self,
        params: list[Tensor],
        base: torch.optim.Optimizer,
        method: str,
        rho: float,
        eps: float = 1e-12,
        eta: float = 0.01,
        scaled: set[Tensor] | None = None,
        theta: float = 0.9,
        alpha: float = 0.0,
        rho_min: float | None = None,
        lr_max: float | None = None,
        lr_min: float = 0.0,
        skip: str = "clean",
        update_on_reuse: bool = False,
    ) -> None:
        self.params, self.base, self.method = params, base, method
        self.skip, self.update_on_reuse = skip, update_on_reuse
        self.e_last: list[Tensor] | None = None  # skip="reuse": the last perturbation
        self.passes = 0
        self.rho, self.eps, self.eta, self.theta, self.alpha = rho, eps, eta, theta, alpha
        self.scaled = scaled if scaled is not None else set(params)
        self.rho_min = rho if rho_min is None else rho_min
        self.lr_max = base.param_groups[0]["lr"] if lr_max is None else lr_max
        self.lr_min = lr_min
        self.d: list[Tensor] | None = None  # VaSSO's gradient average

    def _gradients(self, closure: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = closure()
        return loss, [p.grad.detach().clone() for p in self.params]

    def _rho(self) -> float:
        if self.method != "gsam" or self.rho_min == self.rho:
            return self.rho
        lr = float(self.base.param_groups[0]["lr"])
        fraction = (lr - self.lr_min) / (self.lr_max - self.lr_min)
        return max(0.0, self.rho_min + (self.rho - self.rho_min) * fraction)

    def _perturbation(self, g: list[Tensor]) -> list[Tensor]:
        rho = self._rho()
        if self.method == "vasso":
            if self.d is None:
                self.d = [gi.clone() for gi in g]
            else:
                self.d = [(1 - self.theta) * di + self.theta * gi for di, gi in zip(self.d, g)]
            direction = self.d
            return [rho * di / (_norm(direction) + self.eps) for di in direction]
        if self.method == "asam":
            t = [
                (p.detach().abs() + self.eta) if p in self.scaled else torch.ones_like(p)
                for p in self.params
            ]
            tg = [ti * gi for ti, gi in zip(t, g)]
            norm = _norm(tg)
            return [rho * ti * ti * gi / (norm + self.eps) for ti, gi in zip(t, g)]
        norm = _norm(g)
        return [rho * gi / (norm + self.eps) for gi in g]

    def _average(self, g: list[Tensor]) -> None:
        self.d = [gi.clone() for gi in g] if self.d is None else [
            (1 - self.theta) * di + self.theta * gi for di, gi in zip(self.d, g)
        ]

    def _gradients_at(self, e: list[Tensor], closure: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Loss and gradients at w + e; the weights are w again afterwards."""
        w = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, ei in zip(self.params, e):
                p.add_(ei)
        result = self._gradients(closure)
        with torch.no_grad():
            for p, wi in zip(self.params, w):
                p.copy_(wi)
        return result

    def step(self, closure: Callable[[], Tensor], ascend: bool = True) -> Tensor:
        if not ascend and self.skip == "reuse" and self.e_last is not None:
            # One pass at w + e_last; its gradient is the descent direction.
            loss, direction = self._gradients_at(self.e_last, closure)
            self.passes += 1
            if self.method == "vasso" and self.update_on_reuse:
                self._average(direction)
            for p, di in zip(self.params, direction):
                p.grad = di.clone()
            self.base.step()
            return loss
        loss, g = self._gradients(closure)
        self.passes += 1
        if not ascend:
            if self.method == "vasso":  # the average still sees the clean gradient
                self._average(g)
            direction = g
        else:
            e = self._perturbation(g)
            if self.skip == "reuse":
                self.e_last = [ei.clone() for ei in e]
            _, g_p = self._gradients_at(e, closure)
            self.passes += 1
            direction = g_p
            if self.method == "gsam" and self.alpha:
                c = _dot(g, g_p) / (_norm(g_p) ** 2 + self.eps)
                g_perp = [gi - c * gpi for gi, gpi in zip(g, g_p)]
                direction = [gpi - self.alpha * gq for gpi, gq in zip(g_p, g_perp)]
        for p, di in zip(self.params, direction):
            p.grad = di.clone()
        self.base.step()
        return loss


# ---------------------------------------------------------------- shared test fixtures

METHODS = ("SAM", "ASAM", "GSAM", "VaSSO")


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
