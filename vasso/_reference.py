"""Plain per-tensor reference implementations of SAM, ASAM, GSAM and VaSSO.

``torch.optim`` keeps ``_single_tensor_sgd`` (a loop over the parameters, each line
an equation) beside ``_multi_tensor_sgd`` (the same math in ``torch._foreach_*``
kernels). This module is the first kind for the sharpness-aware methods: each step
written out one tensor at a time, as ``../shared/reference/METHODS.md`` and
docs/optimizers.md state it, with plain torch operations, no ``_foreach_`` kernel and
no code shared with the classes in ``vasso.sam``, ``vasso.asam``, ``vasso.gsam`` and
``vasso.vasso``. Read it to see what a step computes; the tests check the classes
against it step by step in float64, and ``make bench`` times it as the textbook
baseline. It is not fast, it does not handle BatchNorm statistics, data parallelism
or fp16 scaling, and it expects every parameter to receive a gradient.

With g the minibatch gradient at w, one global L2 norm over all tensors:

- SAM:   e = rho g / (||g|| + eps); the base optimizer steps with g_p = grad at w + e.
- ASAM:  T = |w| + eta on the scaled tensors (1 elsewhere); e = rho T^2 g / (||T g|| + eps).
- GSAM:  SAM's e with rho_t = rho_min + (rho - rho_min)(lr - lr_min)/(lr_max - lr_min),
         at least 0; the base steps with g_p - alpha g_perp,
         g_perp = g - (<g, g_p> / (||g_p||^2 + eps)) g_p.
- VaSSO: d_t = (1 - theta) d_{t-1} + theta g_t, d_0 = g_0; e = rho d_t / (||d_t|| + eps).

A step without a fresh ascent (``ascend=False``) takes one pass: ``skip="clean"``
steps with g (VaSSO still averages it); ``skip="reuse"`` steps with the gradient at
w + e_last, the last perturbation computed (VaSSO averages it only with
``update_on_reuse``); before the first ascent there is no e_last and the step is clean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ReferenceStep", "global_norm", "sam_perturbation", "asam_perturbation",
           "gsam_radius", "gsam_direction", "vasso_average"]


def global_norm(tensors: list[Tensor]) -> Tensor:
    """sqrt(sum over the tensors of sum(t^2)): one L2 norm over all of them."""
    total = torch.zeros((), dtype=tensors[0].dtype, device=tensors[0].device)
    for t in tensors:
        total = total + (t * t).sum()
    return total.sqrt()


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    total = torch.zeros((), dtype=a[0].dtype, device=a[0].device)
    for x, y in zip(a, b):
        total = total + (x * y).sum()
    return total


def sam_perturbation(grads: list[Tensor], rho: float | Tensor, eps: float) -> list[Tensor]:
    """e = rho g / (||g|| + eps)."""
    scale = rho / (global_norm(grads) + eps)
    return [g * scale for g in grads]


def asam_perturbation(params: list[Tensor], grads: list[Tensor], scaled: list[bool], rho: float,
                      eta: float, eps: float) -> list[Tensor]:
    """e = rho T^2 g / (||T g|| + eps), T = |w| + eta where ``scaled``, 1 elsewhere."""
    t = [p.detach().abs() + eta if s else torch.ones_like(p) for p, s in zip(params, scaled)]
    scale = rho / (global_norm([ti * g for ti, g in zip(t, grads)]) + eps)
    return [ti * ti * g * scale for ti, g in zip(t, grads)]


def gsam_radius(rho: float, rho_min: float, lr: float | Tensor, lr_max: float,
                lr_min: float) -> float | Tensor:
    """rho_t = rho_min + (rho - rho_min)(lr - lr_min)/(lr_max - lr_min), never below 0."""
    if rho_min == rho:
        return rho
    rho_t = rho_min + (rho - rho_min) * (lr - lr_min) / (lr_max - lr_min)
    return rho_t.clamp(min=0.0) if isinstance(rho_t, Tensor) else max(rho_t, 0.0)


def gsam_direction(g: list[Tensor], g_p: list[Tensor], alpha: float, eps: float) -> list[Tensor]:
    """g_p - alpha g_perp, g_perp = g - (<g, g_p> / (||g_p||^2 + eps)) g_p."""
    c = _dot(g, g_p) / (global_norm(g_p) ** 2 + eps)
    return [gp - alpha * (gi - c * gp) for gi, gp in zip(g, g_p)]


def vasso_average(d: list[Tensor] | None, g: list[Tensor], theta: float) -> list[Tensor]:
    """d_t = (1 - theta) d_{t-1} + theta g_t; d_0 = g_0."""
    if d is None:
        return [gi.detach().clone() for gi in g]
    return [(1 - theta) * di + theta * gi for di, gi in zip(d, g)]


class ReferenceStep:
    """One sharpness-aware step around a base optimizer instance, written out plainly.

    ``method``: "sam", "asam", "gsam" or "vasso"; the keyword arguments are the
    classes' (``scaled``: the tensors ASAM's T scales, default all; GSAM reads lr
    from ``base.param_groups[0]``, and ``lr_max`` defaults to it at construction).
    ``step(closure, ascend)``: ``closure`` zeroes nothing, runs forward and backward
    and returns the loss; ``ascend`` says whether this step takes a fresh ascent (the
    schedule, ``ascent_every`` or ``ascent_prob``, is the caller's). Returns the
    first pass's loss. ``passes`` counts the forward/backward passes, ``d`` is
    VaSSO's average, ``e_last`` the kept perturbation (``skip="reuse"``).
    """

    def __init__(self, params: list[Tensor], base: torch.optim.Optimizer, method: str, rho: float,
                 eps: float = 1e-12, eta: float = 0.01, scaled: set[Tensor] | None = None,
                 theta: float = 0.9, alpha: float = 0.0, rho_min: float | None = None,
                 lr_max: float | None = None, lr_min: float = 0.0, skip: str = "clean",
                 update_on_reuse: bool = False) -> None:
        if method not in ("sam", "asam", "gsam", "vasso"):
            raise ValueError(f"method must be sam, asam, gsam or vasso, got {method!r}")
        self.params, self.base, self.method = list(params), base, method
        self.rho, self.eps, self.eta, self.theta, self.alpha = rho, eps, eta, theta, alpha
        self.scaled = [scaled is None or p in scaled for p in self.params]
        self.rho_min = rho if rho_min is None else rho_min
        self.lr_max = base.param_groups[0]["lr"] if lr_max is None else lr_max
        self.lr_min = lr_min
        self.skip, self.update_on_reuse = skip, update_on_reuse
        self.d: list[Tensor] | None = None
        self.e_last: list[Tensor] | None = None
        self.passes = 0

    @property
    def param_groups(self) -> list[dict]:
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def _gradient(self, closure: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The loss and the gradients at the current weights (fresh tensors)."""
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = closure()
        self.passes += 1
        return loss.detach(), [p.grad for p in self.params]

    def _gradient_at(self, e: list[Tensor], closure: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The loss and the gradients at w + e; the weights are w again afterwards."""
        w = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, ei in zip(self.params, e):
                p.add_(ei)
        loss, grads = self._gradient(closure)
        with torch.no_grad():
            for p, wi in zip(self.params, w):
                p.copy_(wi)  # an exact restore, as the classes do (w + e - e is not exact)
        return loss, grads

    def _perturbation(self, g: list[Tensor]) -> list[Tensor]:
        if self.method == "vasso":
            return sam_perturbation(self.d, self.rho, self.eps)
        if self.method == "asam":
            return asam_perturbation(self.params, g, self.scaled, self.rho, self.eta, self.eps)
        rho = self.rho
        if self.method == "gsam":
            rho = gsam_radius(self.rho, self.rho_min, self.base.param_groups[0]["lr"], self.lr_max, self.lr_min)
        return sam_perturbation(g, rho, self.eps)

    def step(self, closure: Callable[[], Tensor], ascend: bool = True) -> Tensor:
        if not ascend and self.skip == "reuse" and self.e_last is not None:
            loss, direction = self._gradient_at(self.e_last, closure)
            if self.method == "vasso" and self.update_on_reuse:
                self.d = vasso_average(self.d, direction, self.theta)
        else:
            loss, g = self._gradient(closure)
            if self.method == "vasso":  # the average sees every clean gradient
                self.d = vasso_average(self.d, g, self.theta)
            direction = g
            if ascend:
                e = self._perturbation(g)
                if self.skip == "reuse":
                    self.e_last = e
                _, direction = self._gradient_at(e, closure)
                if self.method == "gsam" and self.alpha:
                    direction = gsam_direction(g, direction, self.alpha, self.eps)
        for p, di in zip(self.params, direction):
            p.grad = di
        self.base.step()
        return loss
