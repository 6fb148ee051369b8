"""GSAM: Surrogate Gap Guided SAM (Zhuang et al., ICLR 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vasso._foreach import dot, global_norm
from vasso.sam import SharpnessAware, _check_range

__all__ = ["GSAM"]


class GSAM(SharpnessAware):
    """Surrogate-gap guided SAM: SAM's ascent, a decomposed descent.

    Ascent: SAM's e = rho_t g / (||g|| + eps), where rho follows the learning rate::

        rho_t = rho_min + (rho - rho_min) (lr_t - lr_min) / (lr_max - lr_min),  clamped at >= 0

    with lr_t = ``param_groups[0]["lr"]`` (a float or a tensor); the clamp keeps
    rho_t non-negative when lr_t < lr_min (warm-up).
    Descent: the base optimizer steps along ``g_p - alpha * g_perp``, where
    ``g_perp = g - (<g, g_p> / (||g_p||^2 + eps)) g_p`` is the part of the clean
    gradient g orthogonal to g_p (the gradient at w + e); descending along
    ``-g_perp`` lowers the surrogate gap.
    With ``rho_min = rho`` and ``alpha = 0`` it is SAM. The same step written one
    tensor at a time, for reading and testing: ``vasso._reference`` (``gsam_radius``,
    ``gsam_direction``, ``ReferenceStep(..., "gsam")``).

    Args:
        rho: rho_max, the radius at lr_max.
        rho_min: the radius at lr_min; default ``rho`` (a constant radius);
            ``0 <= rho_min <= rho``.
        alpha: weight of the gap-descent term; ``alpha >= 0``.
        lr_max: default: the learning rate of ``param_groups[0]`` when the
            optimizer is built (its ``initial_lr`` if a scheduler already set one).
        lr_min: default 0.
        Other arguments: see :class:`vasso.SharpnessAware`.
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        rho: float = 0.05,
        rho_min: float | None = None,
        alpha: float = 0.0,
        lr_max: float | None = None,
        lr_min: float = 0.0,
        **kwargs: Any,
    ) -> None:
        rho_min = rho if rho_min is None else rho_min
        _check_range("rho_min", rho_min, 0 <= rho_min <= rho, f"in [0, rho={rho}]")
        _check_range("alpha", alpha, alpha >= 0, "a number >= 0")
        if alpha and kwargs.get("sync") == "local":
            raise ValueError(
                "alpha > 0 with sync='local': GSAM's descent direction contains the first-pass "
                "gradient, which sync='local' keeps per rank, so the ranks' weights would drift "
                "apart; use sync='global' or alpha=0"
            )
        super().__init__(base, rho=rho, **kwargs)
        if lr_max is None:
            group = self.param_groups[0]
            lr_max = group.get("initial_lr", group["lr"])
        lr_max = float(lr_max)  # once, at construction: a tensor lr is read here, never in a step
        if rho_min != rho:
            _check_range("lr_max", lr_max, lr_max > lr_min, f"> lr_min={lr_min}")
        self.rho_min = rho_min
        self.alpha = alpha
        self.lr_max = lr_max
        self.lr_min = lr_min
        self._clean_grads: dict[Tensor, Tensor] = {}  # g, kept for the descent

    def _current_rho(self) -> float | Tensor:
        if self.rho_min == self.rho:
            return self.rho
        lr = self.param_groups[0]["lr"]
        rho = self.rho_min + (self.rho - self.rho_min) * (lr - self.lr_min) / (self.lr_max - self.lr_min)
        if isinstance(rho, Tensor):
            return rho.clamp(min=0.0)
        return max(rho, 0.0)

    def _perturbation(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if self.alpha:
            copies = []
            for p, g in zip(params, grads):
                copy = self._clean_grads.get(p)
                if copy is None or copy.shape != g.shape or copy.dtype != g.dtype or copy.device != g.device:
                    copy = self._clean_grads[p] = torch.empty_like(g)
                copies.append(copy)
            torch._foreach_copy_(copies, grads)
        return params, self.sam_perturbation(grads, self._current_rho())

    def _descent_direction_(self, params: list[Tensor], grads: list[Tensor]) -> None:
        if not self.alpha:
            return
        clean = [self._clean_grads[p] for p in params]
        # g_p - alpha (g - c g_p) = (1 + alpha c) g_p - alpha g,  c = <g, g_p> / (||g_p||^2 + eps)
        c = dot(clean, grads) / (global_norm(grads).square() + self.eps)
        torch._foreach_mul_(grads, 1.0 + self.alpha * c)
        torch._foreach_add_(grads, clean, alpha=-self.alpha)
