"""The two-pass mechanism shared by every sharpness-aware optimizer, and SAM itself.

A sharpness-aware step at weights w with minibatch gradient g:

1. first pass: forward and backward at w, giving g;
2. ascent: e = rho * a / (||b|| + eps), where each method chooses a and b
   (SAM: a = b = g); move to w + e;
3. second pass: forward and backward on the same minibatch at w + e, giving g_p;
4. descent: copy w back from a buffer, hand g_p (GSAM: a decomposed direction)
   to the base optimizer, which takes its own step (momentum, Adam, weight decay).

``SharpnessAware`` owns steps 1-4, the ascent schedule, the BatchNorm and
data-parallel policies, mixed precision and checkpointing; a method only
supplies the perturbation (and, for GSAM, the descent direction, for VaSSO the
gradient average). ``vasso._reference`` writes every method's step out one tensor
at a time, sharing no code with this module (the tests check one against the other).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from vasso._foreach import global_norm, nonfinite_flag, zero_nonfinite_
from vasso._model import RunningStats

__all__ = ["SharpnessAware", "SAM", "lay_out_state_like_params"]

BN_STATS = ("first", "both")
SYNC = ("global", "local")
SKIP = ("clean", "reuse")


def _check_range(name: str, value: Any, ok: bool, valid: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def lay_out_state_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor of ``optimizer`` its parameter's memory layout.

    ``load_state_dict`` keeps the strides the state was saved with: a momentum buffer
    saved from a contiguous model and loaded into a channels-last one stays contiguous,
    and on CUDA the fused optimizers (``fused=True``) refuse parameters, gradients and
    state of different layouts. Tensors shaped unlike their parameter (Adam's ``step``)
    are left alone. Call it after ``load_state_dict`` of a plain ``torch.optim``
    optimizer; the sharpness-aware optimizers call it themselves, for their base
    optimizer and for their own state.
    """
    for p, state in optimizer.state.items():
        if not isinstance(p, Tensor):  # state torch.optim could not match to a parameter
            continue
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == p.shape and value.stride() != p.stride():
                state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _enabled(scaler: torch.amp.GradScaler | None) -> torch.amp.GradScaler | None:
    return scaler if scaler is not None and scaler.is_enabled() else None


class SharpnessAware(torch.optim.Optimizer):
    """Base class of SAM, ASAM, GSAM and VaSSO: wraps a base optimizer instance.

    Args:
        base: the optimizer that takes the descent step, an *instance*
            (``torch.optim.SGD(model.parameters(), lr=...)``, ``AdamW``, ...). The
            wrapper shares its ``param_groups`` (``opt.param_groups is
            base.param_groups``), so an LR scheduler may be built on either object.
        rho: radius of the perturbation, ``||e|| = rho`` (up to eps); ``rho >= 0``.
        eps: added to the global norm in the denominator, so that a zero gradient
            gives e = 0, not nan; ``eps >= 0``.
        model: the model being trained (optionally wrapped in DDP). Needed for
            ``bn_stats="first"`` (to find the BatchNorm layers) and for
            ``sync="local"`` (for ``no_sync()``); when given, the base optimizer's
            parameters must be parameters of this model.
        bn_stats: ``"first"`` (default): BatchNorm running statistics come from the
            first pass only; the buffers are saved before the second forward and
            copied back after it. ``"both"``: both passes update them (what the
            official VaSSO code does). With ``model=None`` the optimizer cannot see
            the BatchNorm layers and the caller is responsible for them.
        sync: data parallel only. ``"global"`` (default): the all-reduced gradient
            builds the perturbation, as with plain DDP. ``"local"``: each rank
            perturbs with its own gradient (the SAM paper's m-sharpness), so the
            first forward and backward run under ``model.no_sync()`` and a step
            costs one all-reduce instead of two.
        ascent_every: ascend on steps 0, k, 2k, ... only (k >= 1). A step without
            ascent runs one forward/backward and gives the base optimizer the
            clean gradient.
        ascent_prob: instead, ascend with probability p in (0, 1], drawn once per
            step from a CPU ``torch.Generator`` seeded with ``seed``: the same draw
            on every rank, no device involved.
        seed: seed of that generator.
        skip: what a step without a fresh ascent does (METHODS.md, "Cheaper steps").
            ``"clean"`` (default): one forward/backward at w, and the base optimizer
            steps with that clean gradient. ``"reuse"``: the last perturbation
            computed, e_last, is re-applied: one forward/backward at w + e_last and
            the base optimizer steps with that gradient (the VaSSO follow-up work's
            reuse scheme). Before the first ascent there is no e_last, and such a
            step is a clean one. On a reused step the one pass updates the
            BatchNorm statistics under either ``bn_stats`` policy (it is the only
            pass), GSAM descends along the reused gradient as it is (there is no
            clean gradient to decompose), and VaSSO's average is left alone unless
            ``update_on_reuse=True``. With the two-step API, ``first_pass()`` is
            required in this mode: it moves the weights to w + e_last on entry.
        clip_grad_norm: clip the global norm of the descent gradient (the gradient at
            w + e, or GSAM's direction; the clean gradient on a step without ascent)
            to this value before the base optimizer's step, as
            ``torch.nn.utils.clip_grad_norm_`` does (on the device, no host read).
            The ascent direction is computed from the unclipped first-pass gradient.
            None (default): no clipping.

    Every step counts its forward/backward passes in ``passes`` (2 for a step that
    ascends, 1 otherwise), part of ``state_dict()``, so that the compute of a run
    is measured rather than assumed.

    Two ways to call it, which give bit-identical results::

        loss = opt.step(closure)   # closure: forward + backward, returns the loss

        with opt.first_pass():     # only needed for sync="local"; harmless otherwise
            loss_fn(model(x), y).backward()
        if opt.first_step():       # False: this step does not ascend, skip the second pass
            opt.zero_grad()
            loss_fn(model(x), y).backward()
        opt.second_step()

    Mixed precision: bf16 autocast needs nothing. For fp16 with
    ``torch.amp.GradScaler``, the closure calls ``scaler.scale(loss).backward()``
    and the scaler is passed to ``step(closure, scaler=scaler)`` (or to
    ``first_step(scaler=...)``); the optimizer unscales the gradients of each pass
    before using them, skips the whole step when either pass overflowed (weights
    restored, base step skipped, method state untouched) and calls
    ``scaler.update()`` itself: do not call ``scaler.step`` or ``scaler.update``.
    The skip is decided on the device when the base optimizer supports it
    (``fused=True`` SGD, Adam, AdamW); for any other base optimizer, the one host
    read of the step happens there, exactly as in ``GradScaler.step``.

    No host synchronisation in an fp32 or bf16 step: norms and scales stay on the
    device, and Python control flow depends on step counters only, never on
    tensor values (``ascent_prob`` reads one CPU scalar).
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        *,
        rho: float,
        eps: float = 1e-12,
        model: nn.Module | None = None,
        bn_stats: str = "first",
        sync: str = "global",
        ascent_every: int = 1,
        ascent_prob: float | None = None,
        seed: int = 0,
        skip: str = "clean",
        clip_grad_norm: float | None = None,
    ) -> None:
        name = type(self).__name__
        if isinstance(base, type):
            raise TypeError(
                f"{name} wraps an optimizer instance, got the class {base.__name__}: "
                f"pass {base.__name__}(model.parameters(), lr=...), not {base.__name__}"
            )
        if not isinstance(base, torch.optim.Optimizer):
            raise TypeError(f"base must be a torch.optim.Optimizer instance, got {type(base).__name__}")
        if isinstance(base, SharpnessAware):
            raise TypeError(f"base is already a sharpness-aware optimizer ({type(base).__name__})")
        _check_range("rho", rho, rho >= 0, "a number >= 0")
        _check_range("eps", eps, eps >= 0, "a number >= 0")
        _check_choice("bn_stats", bn_stats, BN_STATS)
        _check_choice("sync", sync, SYNC)
        _check_choice("skip", skip, SKIP)
        _check_range(
            "ascent_every", ascent_every, isinstance(ascent_every, int) and ascent_every >= 1,
            "an integer >= 1",
        )
        if clip_grad_norm is not None:
            _check_range("clip_grad_norm", clip_grad_norm, clip_grad_norm > 0, "a number > 0")
        if ascent_prob is not None:
            _check_range("ascent_prob", ascent_prob, 0 < ascent_prob <= 1, "in (0, 1]")
            if ascent_every != 1:
                raise ValueError("give ascent_every or ascent_prob, not both")
        if sync == "local" and not hasattr(model, "no_sync"):
            raise ValueError(
                "sync='local' runs the first pass under model.no_sync(): pass model=<the "
                "DistributedDataParallel model>"
            )
        if model is not None:
            owned = {id(p) for p in model.parameters()}
            foreign = sum(
                id(p) not in owned for group in base.param_groups for p in group["params"]
            )
            if foreign:
                raise ValueError(
                    f"model: the base optimizer holds {foreign} tensor(s) that are not "
                    "parameters of model; build it from model.parameters() of this model"
                )

        # Optimizer.__init__ sets up hooks and profiling; the groups it builds are
        # then dropped: param_groups is the base optimizer's (see the property).
        super().__init__([dict(group) for group in base.param_groups], base.defaults)
        del self.__dict__["_groups_under_construction"]
        self.base = base
        self.rho = rho
        self.eps = eps
        self.model = model
        self.bn_stats = bn_stats
        self.sync = sync
        self.ascent_every = ascent_every
        self.ascent_prob = ascent_prob
        self.skip = skip
        self.clip_grad_norm = clip_grad_norm
        self._ascent_rng = None
        if ascent_prob is not None:
            self._ascent_rng = torch.Generator(device="cpu")
            self._ascent_rng.manual_seed(seed)
        self._running_stats = RunningStats(model) if model is not None and bn_stats == "first" else None
        self._weights: dict[Tensor, Tensor] = {}  # the copy of w taken before each ascent
        self._steps = 0  # completed steps, ascended or not
        self._passes = 0  # forward/backward passes of the completed steps
        self._last_step_passes = 0  # passes of the last completed step (count_replayed_step)
        self._has_last_perturbation = False  # skip="reuse": e_last exists (after the first ascent)
        self._reusing = False  # this step's one pass runs at w + e_last (set by first_pass)
        self._ascends: bool | None = None  # this step's ascent decision, once drawn
        self._phase: str | None = None  # None, "ascended", "skipped" or "reused" (between first and second step)
        self._active: list[Tensor] = []
        self._found_inf: Tensor | None = None
        self._scaler: torch.amp.GradScaler | None = None

    # ------------------------------------------------------------------ method hooks

    def _perturbation(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Return (tensors, e): the perturbation e to add to each of those tensors."""
        raise NotImplementedError

    def _observe_gradient(self, params: list[Tensor], grads: list[Tensor], found_inf: Tensor | None) -> None:
        """See the clean first-pass gradient of every step (VaSSO's average)."""

    def _observes_reused_gradient(self) -> bool:
        """Whether ``_observe_gradient`` also sees the gradient of a reused step (at w + e_last)."""
        return False

    def _commit(self, found_inf: Tensor) -> None:
        """fp16 path: keep the state observed this step unless ``found_inf`` is 1."""

    def _descent_direction_(self, params: list[Tensor], grads: list[Tensor]) -> None:
        """Turn the second-pass gradients into the base optimizer's direction, in place."""

    def _method_state(self) -> dict[str, Any]:
        """Method state beyond ``self.state`` (per-tensor), for ``state_dict``."""
        return {}

    def _load_method_state(self, state: dict[str, Any]) -> None:
        pass

    def _current_rho(self) -> float | Tensor:
        return self.rho

    # ------------------------------------------------------------------ the step

    def sam_perturbation(self, grads: list[Tensor], rho: float | Tensor) -> list[Tensor]:
        """``rho * g / (||g|| + eps)`` with one global norm over all of ``grads``."""
        scale = rho / (global_norm(grads) + self.eps)
        return torch._foreach_mul(grads, scale)

    def ascends_this_step(self) -> bool:
        """Whether the current step ascends (draws the decision once per step)."""
        if self._ascends is None:
            if self._ascent_rng is not None:
                # A CPU generator, so this read never waits for an accelerator.
                draw = torch.rand((), generator=self._ascent_rng).item()
                self._ascends = draw < self.ascent_prob
            else:
                self._ascends = self._steps % self.ascent_every == 0
        return self._ascends

    @property
    def passes(self) -> int:
        """Forward/backward passes taken by the completed steps (2 per ascent, 1 otherwise)."""
        return self._passes

    def reuses_this_step(self) -> bool:
        """Whether the current step's one pass runs at w + e_last (``skip="reuse"``)."""
        return self.skip == "reuse" and self._has_last_perturbation and not self.ascends_this_step()

    @contextlib.contextmanager
    def first_pass(self) -> Iterator[None]:
        """Wrap the first forward *and* backward of a step in this (two-step API).

        Under ``sync="local"`` on a step that ascends it enters ``model.no_sync()``
        so that the first gradient is the rank's own. Under ``skip="reuse"`` on a
        step without a fresh ascent it moves the weights to w + e_last for the
        pass (``second_step`` moves them back). Otherwise it does nothing.
        """
        if self._phase is not None:
            raise RuntimeError("first_pass() inside a step: call second_step() to finish the previous one")
        if self.reuses_this_step():
            self._apply_last_perturbation()
            try:
                yield
            except BaseException:
                self._abort()
                raise
        elif self.sync == "local" and self.ascends_this_step():
            with self.model.no_sync():
                yield
        else:
            yield

    @torch.no_grad()
    def _apply_last_perturbation(self) -> None:
        targets = [p for p in self._param_index() if "e_last" in self.state.get(p, {})]
        torch._foreach_copy_(self._weight_copies(targets), targets)
        torch._foreach_add_(targets, [self.state[p]["e_last"] for p in targets])
        self._active, self._reusing = targets, True

    def _keep_last_perturbation(self, targets: list[Tensor], e: list[Tensor]) -> None:
        """skip="reuse": copy this ascent's e into per-tensor buffers (stable storage)."""
        buffers = []
        for p, ei in zip(targets, e):
            state = self.state[p]
            if "e_last" not in state or state["e_last"].shape != ei.shape:
                state["e_last"] = torch.empty_like(p, memory_format=torch.preserve_format)
            buffers.append(state["e_last"])
        torch._foreach_copy_(buffers, e)
        self._has_last_perturbation = True

    def _params_with_grads(self) -> tuple[list[Tensor], list[Tensor]]:
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        return params, [p.grad for p in params]

    def _weight_copies(self, params: list[Tensor]) -> list[Tensor]:
        copies = []
        for p in params:
            copy = self._weights.get(p)
            if copy is None or copy.shape != p.shape or copy.device != p.device or copy.dtype != p.dtype:
                copy = self._weights[p] = torch.empty_like(p, memory_format=torch.preserve_format)
            copies.append(copy)
        return copies

    @torch.no_grad()
    def first_step(self, scaler: torch.amp.GradScaler | None = None) -> bool:
        """After the first backward: perturb the weights to w + e when this step ascends.

        Returns True when the caller must run the second forward/backward (at
        w + e, after ``zero_grad()``) before ``second_step()``; False on a step of
        the ascent schedule that does not ascend: then call ``second_step()``
        directly, and the base optimizer steps with the clean gradient.
        """
        if self._phase is not None:
            raise RuntimeError("first_step() called twice: call second_step() to finish the step")
        if self.reuses_this_step() and not self._reusing:
            raise RuntimeError(
                "skip='reuse': this step evaluates its gradient at w + e_last, which first_pass() "
                "applies: wrap the first forward and backward in `with opt.first_pass():`"
            )
        params, grads = self._params_with_grads()
        if not params:
            raise RuntimeError(
                "no parameter has a gradient: run the forward and backward pass before first_step()"
            )
        scaler = _enabled(scaler)
        found_inf = None
        if scaler is not None:
            scaler.unscale_(self)
            found_inf = nonfinite_flag(grads)
            zero_nonfinite_(grads)  # keeps w + e and the method state finite when skipped
        if not self._reusing or self._observes_reused_gradient():
            self._observe_gradient(params, grads, found_inf)
        if self._reusing:  # the weights are at w + e_last since first_pass; _active holds them
            self._phase, self._found_inf, self._scaler = "reused", found_inf, scaler
            return False
        ascends = self.ascends_this_step()
        if ascends:
            torch._foreach_copy_(self._weight_copies(params), params)
            targets, e = self._perturbation(params, grads)
            if self.skip == "reuse":
                self._keep_last_perturbation(targets, e)
            if self._running_stats:
                self._running_stats.save()
            torch._foreach_add_(targets, e)
        self._phase = "ascended" if ascends else "skipped"
        self._active, self._found_inf, self._scaler = params, found_inf, scaler
        return ascends

    @torch.no_grad()
    def second_step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """After the second backward (if any): restore w and take the base optimizer's step."""
        if self._phase is None:
            raise RuntimeError("second_step() without first_step(): call first_step() after the first backward")
        scaler = _enabled(scaler) or self._scaler
        if scaler is not self._scaler:
            raise ValueError("pass the same scaler to first_step() and second_step()")
        params, found_inf = self._active, self._found_inf
        try:
            if self._phase == "ascended":
                grads = [p.grad for p in params]
                if any(g is None for g in grads):
                    raise RuntimeError(
                        "a parameter that had a gradient in the first pass has none in the "
                        "second: run the second forward/backward between first_step() and second_step()"
                    )
                self._restore(params)
                if scaler is not None:
                    scaler.unscale_(self.base)  # a second optimizer id: one unscale per pass
                    found_inf = torch.maximum(found_inf, nonfinite_flag(grads))
                self._descent_direction_(params, grads)
            elif self._phase == "reused":
                self._restore(params, running_stats=False)  # the one pass's statistics stay
            if found_inf is not None:
                self._commit(found_inf)
            if self.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
            self._base_step(found_inf)
            passes = 2 if self._phase == "ascended" else 1
        finally:
            self._end_step()
        self._steps += 1
        self._passes += passes
        self._last_step_passes = passes  # what a replay of this step repeats
        if scaler is not None:
            scaler.update()

    def count_replayed_step(self) -> None:
        """Count a step that ran without this object's Python code: a replay of a CUDA
        graph recorded from ``step()``. The replay repeats every recorded kernel (both
        passes, the perturbation, the restore, the base step); only the host-side
        counters, which ``state_dict()`` saves and the ascent schedule reads, are left
        to advance here: one step, and the passes of the step that was recorded."""
        self._steps += 1
        self._passes += self._last_step_passes

    def _restore(self, params: list[Tensor], running_stats: bool = True) -> None:
        # An in-place copy: exact in any precision (w + e - e is not), and the
        # parameters keep their storage (CUDA graphs, FSDP).
        torch._foreach_copy_(params, [self._weights[p] for p in params])
        if running_stats and self._running_stats:
            self._running_stats.restore()

    def _end_step(self) -> None:
        self._phase, self._ascends, self._active, self._found_inf, self._scaler = None, None, [], None, None
        self._reusing = False

    def _base_step(self, found_inf: Tensor | None) -> None:
        if found_inf is None:
            self.base.step()
        elif getattr(self.base, "_step_supports_amp_scaling", False):
            # Fused optimizers skip on the device when found_inf is 1 (the
            # protocol GradScaler.step uses); the gradients are already unscaled.
            self.base.grad_scale, self.base.found_inf = None, found_inf
            try:
                self.base.step()
            finally:
                del self.base.grad_scale, self.base.found_inf
        elif not found_inf.item():  # the one host read of the fp16 path, as in GradScaler.step
            self.base.step()

    def step(self, closure: Callable[[], Any] | None = None, scaler: torch.amp.GradScaler | None = None) -> Any:
        """One sharpness-aware step; returns the loss of the first pass, detached.

        ``closure`` runs forward and backward and returns the loss; gradients are
        zeroed before each call. It is called at w and, when the step ascends,
        again at w + e. With an fp16 ``GradScaler``, the closure calls
        ``scaler.scale(loss).backward()`` and ``scaler`` is passed here.

        The returned loss is detached (its graph was used by the closure's
        backward and the weights have changed since), so ``float(loss)`` or
        ``loss.item()`` reads it without autograd's warning; reading it syncs
        with the device, so a fast loop reads it only now and then.
        """
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}.step() needs a closure that runs forward and backward "
                "and returns the loss (or call first_step() / second_step())"
            )
        self.zero_grad()
        with torch.enable_grad(), self.first_pass():
            loss = closure()
        if self.first_step(scaler):
            self.zero_grad()
            try:
                with torch.enable_grad():
                    closure()
            except BaseException:
                self._abort()
                raise
        self.second_step(scaler)
        return loss.detach() if isinstance(loss, Tensor) else loss

    @torch.no_grad()
    def _abort(self) -> None:
        """A pass failed: put the weights (and statistics) back and forget the step."""
        if self._phase == "ascended":
            self._restore(self._active)
        elif self._reusing:
            self._restore(self._active, running_stats=False)
        self._end_step()

    # ------------------------------------------------------------------ plumbing

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's ``param_groups``, the very same list.

        A property rather than a shared attribute, because ``load_state_dict``
        replaces the base optimizer's list: the two objects must never drift apart.
        """
        if "base" in self.__dict__:
            return self.base.param_groups
        return self.__dict__["_groups_under_construction"]

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        if "base" in self.__dict__:
            self.base.param_groups = groups
        else:  # inside Optimizer.__init__
            self.__dict__["_groups_under_construction"] = groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "base" in self.__dict__:
            self.base.add_param_group(param_group)
        else:  # inside Optimizer.__init__
            super().add_param_group(param_group)

    def _param_index(self) -> list[Tensor]:
        return list(itertools.chain.from_iterable(group["params"] for group in self.param_groups))

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus the method's: its per-tensor state (keyed
        by position in ``param_groups``, like torch.optim), the step counter and the
        ascent generator."""
        if self._phase is not None:
            raise RuntimeError("state_dict() between first_step() and second_step(): finish the step first")
        index = {p: i for i, p in enumerate(self._param_index())}
        return {
            "method": type(self).__name__,
            "base": self.base.state_dict(),
            "state": {index[p]: dict(s) for p, s in self.state.items() if s},
            "steps": self._steps,
            "passes": self._passes,
            "ascent_rng": None if self._ascent_rng is None else self._ascent_rng.get_state(),
            "method_state": self._method_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "base" not in state_dict or "method" not in state_dict:
            raise ValueError(f"not a {name} state dict: expected the dict returned by {name}.state_dict()")
        if state_dict["method"] != name:
            raise ValueError(f"this state dict belongs to {state_dict['method']}, not {name}")
        if (state_dict["ascent_rng"] is None) != (self._ascent_rng is None):
            raise ValueError("ascent_prob was given to one optimizer and not the other: use the same settings")
        self.base.load_state_dict(state_dict["base"])
        params = self._param_index()
        self.state.clear()
        for i, per_tensor in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {k: v.detach().to(p.device, copy=True) for k, v in per_tensor.items()}
        lay_out_state_like_params(self.base)
        lay_out_state_like_params(self)
        self._steps = int(state_dict["steps"])
        self._passes = int(state_dict.get("passes", 0))  # absent from state dicts saved before passes were counted
        self._has_last_perturbation = any("e_last" in s for s in self.state.values())
        if self._ascent_rng is not None:
            self._ascent_rng.set_state(state_dict["ascent_rng"])
        self._load_method_state(state_dict["method_state"])
        self._end_step()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rho={self.rho}, base={self.base!r})"


class SAM(SharpnessAware):
    """Sharpness-Aware Minimization (Foret et al., ICLR 2021).

    e = rho * g / (||g|| + eps), with one global L2 norm over every tensor that
    has a gradient; the base optimizer steps with g_p, the gradient at w + e on
    the same minibatch. Arguments: see :class:`SharpnessAware`.

    The same step written one tensor at a time, for reading and testing:
    ``vasso._reference`` (``ReferenceStep(params, base, "sam", rho)``).
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, **kwargs: Any) -> None:
        super().__init__(base, rho=rho, **kwargs)

    def _perturbation(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return params, self.sam_perturbation(grads, self._current_rho())
