"""ASAM: Adaptive Sharpness-Aware Minimization (Kwon et al., ICML 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vasso._foreach import global_norm
from vasso.sam import SharpnessAware, _check_choice, _check_range

__all__ = ["ASAM"]

SCALE = ("weights", "all")


class ASAM(SharpnessAware):
    """Adaptive SAM: the perturbation is taken in weight-scaled coordinates.

    With T_w = |w| + eta (elementwise) on the scaled tensors and T_w = 1 on the
    others, one global norm over all tensors::

        e = rho * T_w^2 g / (||T_w g|| + eps)

    and the base optimizer steps with g_p, the gradient at w + e (written one tensor
    at a time, for reading and testing: ``vasso._reference.asam_perturbation``).

    Args:
        eta: the offset that keeps zero weights perturbable; ``eta >= 0``. The
            default 0.01 is the official ASAM class default (its CIFAR script
            passes eta = 0).
        scale: which tensors T_w scales. ``"weights"`` (default, the official
            ASAM): the tensors whose parameter name contains "weight" (conv,
            linear and normalisation weights, not biases); names come from
            ``model.named_parameters()`` when ``model`` is given; without a model,
            tensors with more than one dimension count as weights (so
            normalisation weights, being 1-d, are then not scaled). ``"all"``:
            every tensor, as in ports that scale everything.
        Other arguments: see :class:`vasso.SharpnessAware`. ASAM's useful rho is
        about ten times SAM's (0.5 on CIFAR-10 in the ASAM paper).
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        rho: float = 0.5,
        eta: float = 0.01,
        scale: str = "weights",
        **kwargs: Any,
    ) -> None:
        _check_range("eta", eta, eta >= 0, "a number >= 0")
        _check_choice("scale", scale, SCALE)
        super().__init__(base, rho=rho, **kwargs)
        self.eta = eta
        self.scale = scale
        model = kwargs.get("model")
        self._named_weights = (
            {id(p) for name, p in model.named_parameters() if "weight" in name} if model is not None else None
        )

    def _scales(self, p: Tensor) -> bool:
        if self.scale == "all":
            return True
        if self._named_weights is not None:
            return id(p) in self._named_weights
        return p.ndim > 1

    def _perturbation(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        flags = [self._scales(p) for p in params]
        weights = [p for p, f in zip(params, flags) if f]
        weight_grads = [g for g, f in zip(grads, flags) if f]
        others = [p for p, f in zip(params, flags) if not f]
        other_grads = [g for g, f in zip(grads, flags) if not f]

        scaled_grads: list[Tensor] = []  # T_w g
        if weights:
            t = torch._foreach_abs(weights)
            torch._foreach_add_(t, self.eta)
            scaled_grads = torch._foreach_mul(weight_grads, t)
        scale = self._current_rho() / (global_norm(scaled_grads, other_grads) + self.eps)
        e: list[Tensor] = []
        if weights:
            e = torch._foreach_mul(scaled_grads, t)  # T_w^2 g
            torch._foreach_mul_(e, scale)
        if others:
            e += torch._foreach_mul(other_grads, scale)
        return weights + others, e
