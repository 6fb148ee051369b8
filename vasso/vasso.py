"""VaSSO: Variance-Suppressed Sharpness-aware Optimization (Li & Giannakis, NeurIPS 2023)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vasso._foreach import global_norm, select_
from vasso.sam import SharpnessAware, _check_range

__all__ = ["VaSSO"]


class VaSSO(SharpnessAware):
    """SAM whose adversary follows a moving average of the gradients.

    SAM's perturbation is built from one noisy minibatch gradient; VaSSO builds it
    from an exponential moving average of the clean (first-pass) gradients::

        d_t = (1 - theta) d_{t-1} + theta g_t,   d_0 = g_0
        e_t = rho d_t / (||d_t|| + eps)          (one global norm)

    and the base optimizer steps with g_p, the gradient at w + e_t (written one tensor
    at a time, for reading and testing: ``vasso._reference``, ``vasso_average`` and
    ``ReferenceStep(..., "vasso")``). theta = 1 is
    SAM, step for step and bit for bit. d_t is updated on every step, also on the
    steps the ascent schedule skips (from their one, clean, gradient), and it is
    part of ``state_dict()`` (``state[p]["grad_avg"]``).

    d_t is computed as ``d * (1 - w) + g * w`` with w = 1 on the first update
    (so d_0 = g_0 exactly) and w = theta after; w is a device tensor so that the
    fp16 path can leave it untouched on an overflow step without a host read. A
    tensor that receives its first gradient after the first update starts from
    d = 0, like the moments of torch.optim.Adam.

    Args:
        theta: weight of the newest gradient, in (0, 1]; the official code's
            default is 0.9.
        update_on_reuse: with ``skip="reuse"``, also feed the gradient of a reused
            step (taken at w + e_last) into d_t (the "ReMu" variant of METHODS.md);
            by default d_t sees clean gradients only and is left alone on such steps.
        Other arguments: see :class:`vasso.SharpnessAware`.
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, theta: float = 0.9,
                 update_on_reuse: bool = False, **kwargs: Any) -> None:
        _check_range("theta", theta, 0 < theta <= 1, "in (0, 1]")
        if update_on_reuse and kwargs.get("skip", "clean") != "reuse":
            raise ValueError("update_on_reuse=True needs skip='reuse' (no step reuses a perturbation otherwise)")
        super().__init__(base, rho=rho, **kwargs)
        self.theta = theta
        self.update_on_reuse = update_on_reuse
        self._weight: Tensor | None = None  # w: 1.0 until the first update, then theta
        self._candidate: list[Tensor] | None = None  # fp16 path: this step's d_t until committed
        self._active_averages: list[Tensor] = []  # d of the tensors with a gradient this step

    def _averages(self, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        averages = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "grad_avg" not in state:
                state["grad_avg"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            averages.append(state["grad_avg"])
        if self._weight is None:
            dtype = torch.promote_types(grads[0].dtype, torch.float32)
            self._weight = torch.ones((), dtype=dtype, device=grads[0].device)
        return averages

    def _observe_gradient(self, params: list[Tensor], grads: list[Tensor], found_inf: Tensor | None) -> None:
        averages = self._averages(params, grads)
        w = self._weight
        weighted_grads = torch._foreach_mul(grads, w)
        if found_inf is None:
            torch._foreach_mul_(averages, 1.0 - w)
            torch._foreach_add_(averages, weighted_grads)
            w.fill_(self.theta)
            self._candidate = None
        else:
            # fp16 path: keep d_{t-1} until second_step knows whether the step overflowed.
            self._candidate = torch._foreach_mul(averages, 1.0 - w)
            torch._foreach_add_(self._candidate, weighted_grads)
        self._active_averages = averages

    def _observes_reused_gradient(self) -> bool:
        return self.update_on_reuse

    def _perturbation(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        d = self._candidate if self._candidate is not None else self._active_averages
        scale = self._current_rho() / (global_norm(d) + self.eps)
        return params, torch._foreach_mul(d, scale)

    def _commit(self, found_inf: Tensor) -> None:
        if self._candidate is None:
            return
        select_(self._active_averages, self._candidate, found_inf)
        self._weight.copy_(self._weight * found_inf + self.theta * (1.0 - found_inf))
        self._candidate = None

    def _method_state(self) -> dict[str, Any]:
        return {"grad_avg_weight": self._weight}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        weight = state.get("grad_avg_weight")
        self._weight = None if weight is None else weight.detach().clone()
        if self._weight is not None:
            params = self._param_index()
            if params:
                self._weight = self._weight.to(params[0].device)
