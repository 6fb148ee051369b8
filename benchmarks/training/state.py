"""What a checkpoint needs beyond state dicts: the RNG states of every generator the
run draws from, and an optimizer state loaded into either data path's implementation."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

import vasso


def rng_state() -> dict[str, Any]:
    state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"name": state[0], "keys": torch.from_numpy(state[1].copy()),
                      "pos": state[2], "has_gauss": state[3], "cached_gaussian": state[4]},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy(), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# Param-group keys that choose an implementation, not a hyperparameter: a checkpoint
# written by one path must not switch the other path's optimizer implementation.
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, base: torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the implementation flags of ``base``
    and the memory layout of its parameters.

    ``load_state_dict`` takes every param-group entry from the checkpoint, ``fused``
    included, and places Adam's ``step`` by the checkpoint's flags (on the device only
    when fused or capturable); state tensors keep the strides they were saved with.
    A run preempted on one path and resumed on the other (``--fast`` is not part of
    the cell, and only the fast path is channels-last on CUDA) must get its own path's
    implementation, ``step`` placement and layout: the flags are put into the
    checkpoint's groups before loading, and the state is re-laid like the parameters
    (and a ``step`` saved on the device is brought to the host where this path's Adam
    keeps it).
    """
    wrapped = optimizer is not base
    base_state = state["base"] if wrapped else state
    saved_groups = base_state["param_groups"]
    if len(saved_groups) != len(base.param_groups):
        raise ValueError(f"the checkpoint's optimizer has {len(saved_groups)} param groups, "
                         f"this one {len(base.param_groups)}: not a checkpoint of this model")
    groups = [{**saved, **{k: group[k] for k in IMPLEMENTATION_KEYS if k in group}}
              for saved, group in zip(saved_groups, base.param_groups)]
    base_state = {**base_state, "param_groups": groups}
    optimizer.load_state_dict({**state, "base": base_state} if wrapped else base_state)
    if not wrapped:  # a wrapper's load_state_dict re-lays its base's state itself
        vasso.lay_out_state_like_params(base)
    for group in base.param_groups:  # torch.optim.Adam keeps `step` on the host unless
        if not (group.get("capturable") or group.get("fused")):  # fused or capturable:
            for p in group["params"]:  # a device `step` would cost a sync per parameter
                step = base.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor) and step.device.type != "cpu":
                    base.state[p]["step"] = step.cpu()
