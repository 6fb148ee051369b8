"""The methods and base optimizers the suite trains, in one table each.

A *method* is what ``--optimizer`` names: ``sgd`` (the base optimizer alone) or a
sharpness-aware class of ``vasso`` wrapped around it. A *base optimizer* is what
``--base`` names: the ``torch.optim`` optimizer that takes the descent step. For
each, this module says once

- which class implements it;
- which :class:`~benchmarks.config.TrainConfig` fields it reads (``fields``): a
  cell's identity holds exactly those of its method and its base, besides the
  fields no method or base owns (``benchmarks.config.cell_fields``), so that SAM's
  cells do not move when VaSSO's default theta does;
- how its constructor's settings derive from a config (``settings``: GSAM's
  ``rho_min`` from ``rho``, its ``lr_max`` from ``lr``, ...);
- its default radius, and the colour and line style figures draw it in.

The config's choices and help, the optimizer factory :func:`build_optimizer`, the
experiment grids, the benchmark and the figures all read these tables; adding a
method is one entry here (and its class in ``vasso/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import vasso

if TYPE_CHECKING:
    from .config import TrainConfig

# Read by every sharpness-aware method: the radius, the BatchNorm policy (meaningless
# with one pass per step), when a step ascends and what a step without ascent does
# (issue #15's cheaper steps), and whose gradient perturbs under data parallelism.
SHARPNESS_FIELDS = ("rho", "bn_stats", "ascent_every", "ascent_prob", "skip", "sync")


@dataclass(frozen=True)
class Method:
    """One value of ``--optimizer``."""

    name: str
    vasso_class: type[vasso.SharpnessAware] | None  # None: the base optimizer alone
    default_rho: float | None  # the class default; None: no perturbation
    fields: tuple[str, ...]  # the config fields it reads
    settings: Callable[[TrainConfig], dict[str, Any]]  # the class's own keyword arguments
    colour: str  # in every figure (results/plots.py)
    line_style: Any  # its first variant's (matplotlib linestyle)
    help: str


@dataclass(frozen=True)
class BaseOptimizer:
    """One value of ``--base``."""

    name: str
    torch_class: type[torch.optim.Optimizer]
    fields: tuple[str, ...]
    settings: Callable[[TrainConfig], dict[str, Any]]
    # The fast path's implementation: fused kernels read a tensor learning rate without a
    # host sync (a CUDA graph needs that); Adam(W) also refuses a capture unless capturable.
    graph_ready: tuple[tuple[str, Any], ...]


def _no_settings(cfg: TrainConfig) -> dict[str, Any]:
    return {}


def _asam(cfg: TrainConfig) -> dict[str, Any]:
    return {"eta": cfg.eta, "scale": cfg.asam_scale}


def _gsam(cfg: TrainConfig) -> dict[str, Any]:
    # rho follows the LR schedule from rho (at the peak lr) down to rho_min (at lr 0);
    # without --gsam-rho-min the radius is constant.
    rho_min = cfg.rho if cfg.gsam_rho_min is None else cfg.gsam_rho_min
    return {"rho_min": rho_min, "alpha": cfg.gsam_alpha, "lr_max": cfg.lr, "lr_min": 0.0}


def _vasso(cfg: TrainConfig) -> dict[str, Any]:
    return {"theta": cfg.theta, "update_on_reuse": cfg.update_on_reuse}


def _sgd(cfg: TrainConfig) -> dict[str, Any]:
    return {"lr": cfg.lr, "momentum": cfg.momentum, "nesterov": cfg.nesterov,
            "weight_decay": cfg.weight_decay}


def _adamw(cfg: TrainConfig) -> dict[str, Any]:
    return {"lr": cfg.lr, "betas": (cfg.adam_beta1, cfg.adam_beta2), "eps": cfg.adam_eps,
            "weight_decay": cfg.weight_decay}


DASH_DOT_DOT = (0, (4, 1.5, 1, 1.5, 1, 1.5))

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sgd", vasso_class=None, default_rho=None, fields=(), settings=_no_settings,
           colour="#7f7f7f", line_style=":", help="the base optimizer alone"),
    Method("sam", vasso_class=vasso.SAM, default_rho=0.05, fields=SHARPNESS_FIELDS,
           settings=_no_settings, colour="#1f77b4", line_style="--", help="SAM (Foret et al.)"),
    # ASAM's useful radius is about ten times SAM's (0.5 vs 0.05 on CIFAR-10).
    Method("asam", vasso_class=vasso.ASAM, default_rho=0.5,
           fields=SHARPNESS_FIELDS + ("eta", "asam_scale"), settings=_asam,
           colour="#2ca02c", line_style="-.", help="adaptive SAM (Kwon et al.)"),
    Method("gsam", vasso_class=vasso.GSAM, default_rho=0.05,
           fields=SHARPNESS_FIELDS + ("gsam_rho_min", "gsam_alpha"), settings=_gsam,
           colour="#9467bd", line_style=DASH_DOT_DOT, help="surrogate-gap guided SAM (Zhuang et al.)"),
    Method("vasso", vasso_class=vasso.VaSSO, default_rho=0.05,
           fields=SHARPNESS_FIELDS + ("theta", "update_on_reuse"), settings=_vasso,
           colour="#d62728", line_style="-", help="variance-suppressed SAM (Li & Giannakis)"),
)}

BASES: dict[str, BaseOptimizer] = {b.name: b for b in (
    BaseOptimizer("sgd", torch_class=torch.optim.SGD, fields=("momentum", "nesterov", "weight_decay"),
                  settings=_sgd, graph_ready=(("fused", True),)),
    BaseOptimizer("adamw", torch_class=torch.optim.AdamW,
                  fields=("adam_beta1", "adam_beta2", "adam_eps", "weight_decay"), settings=_adamw,
                  graph_ready=(("fused", True), ("capturable", True))),
)}

# Fields some method or base reads: a cell holds one only when its own method or base
# reads it. Every other field (the task, the data, the schedule, ...) is in every cell.
OWNED_FIELDS = frozenset(f for entry in (*METHODS.values(), *BASES.values()) for f in entry.fields)


def unused_fields(optimizer: str, base: str) -> frozenset[str]:
    """The owned fields that neither the method ``optimizer`` nor the base ``base`` reads."""
    return OWNED_FIELDS - set(METHODS[optimizer].fields) - set(BASES[base].fields)


def readers(field_name: str) -> str:
    """Who reads ``field_name``, as ``--help`` says it: "--optimizer sam, vasso"; empty
    when every choice reads it (weight decay: every base)."""
    groups = {"--optimizer": (METHODS, [m.name for m in METHODS.values() if field_name in m.fields]),
              "--base": (BASES, [b.name for b in BASES.values() if field_name in b.fields])}
    return "; ".join(f"{flag} {', '.join(names)}" for flag, (every, names) in groups.items()
                     if names and len(names) < len(every))


def build_base(cfg: TrainConfig, model: nn.Module, **implementation: Any) -> torch.optim.Optimizer:
    """The base optimizer ``cfg.base`` over ``model``'s parameters, with the config's
    settings; ``implementation``: torch's flags (``fused=True``, ``foreach=False``)."""
    spec = BASES[cfg.base]
    return spec.torch_class(model.parameters(), **spec.settings(cfg), **implementation)


def build_optimizer(cfg: TrainConfig, model: nn.Module, fused: bool = False
                    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """``(optimizer, base)``: the base optimizer, wrapped in the method's ``vasso``
    class unless ``cfg.optimizer == "sgd"`` (then both are the base). Schedulers
    drive ``base``.

    ``fused``: the base optimizer's graph-ready implementation (the fast path: fused
    kernels read a tensor learning rate without a host sync, which a CUDA graph
    needs; AdamW also gets ``capturable=True``, without which ``Adam.step`` refuses a
    CUDA graph capture).
    """
    from .tasks.base import data_seed  # the tasks import the config, which imports this

    base = build_base(cfg, model, **(dict(BASES[cfg.base].graph_ready) if fused else {}))
    method = METHODS[cfg.optimizer]
    if method.vasso_class is None:
        return base, base
    # One process: its gradient is the global one (and a model outside DDP has no no_sync).
    sync = cfg.sync if isinstance(model, DistributedDataParallel) else "global"
    optimizer = method.vasso_class(
        base, rho=cfg.rho, model=model, bn_stats=cfg.bn_stats, sync=sync,
        ascent_every=cfg.ascent_every, ascent_prob=cfg.ascent_prob, skip=cfg.skip,
        clip_grad_norm=cfg.clip_grad_norm,
        seed=data_seed(cfg, "ascent") % 2**31,
        **method.settings(cfg))
    return optimizer, base
