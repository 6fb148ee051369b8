"""benchmarks.methods: the registry of methods and base optimizers, the factory, and
the per-method identity of a cell (benchmarks.config.cell_fields)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import vasso
from benchmarks import experiments, methods
from benchmarks.config import (
    BASE_OPTIMIZERS, FIELDS_ADDED_AFTER_PIN, LOCATION_FIELDS, METHOD_RHO, OPTIMIZERS, TrainConfig, build_parser, cell_fields,
    cell_id)
from results import plots

# Written out here, not read from the registry: what each method and base reads.
SHARPNESS = {"rho", "bn_stats", "ascent_every", "ascent_prob", "skip", "sync"}
READS = {
    "sgd": set(),
    "sam": SHARPNESS,
    "asam": SHARPNESS | {"eta", "asam_scale"},
    "gsam": SHARPNESS | {"gsam_rho_min", "gsam_alpha"},
    "vasso": SHARPNESS | {"theta", "update_on_reuse"},
}
BASE_READS = {"sgd": {"momentum", "nesterov", "weight_decay"},
              "adamw": {"adam_beta1", "adam_beta2", "adam_eps", "weight_decay"}}
# Another valid value of each owned field.
OTHER = {"rho": 0.3, "bn_stats": "both", "ascent_every": 2, "ascent_prob": 0.5, "skip": "reuse", "sync": "local",
         "eta": 0.2, "asam_scale": "all", "gsam_rho_min": 0.01, "gsam_alpha": 0.3, "theta": 0.2,
         "update_on_reuse": True, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01,
         "adam_beta1": 0.8, "adam_beta2": 0.99, "adam_eps": 1e-6}


def test_the_registry_lists_every_method_and_base_the_config_offers():
    assert OPTIMIZERS == tuple(methods.METHODS) == ("sgd", "sam", "asam", "gsam", "vasso")
    assert BASE_OPTIMIZERS == tuple(methods.BASES) == ("sgd", "adamw")
    assert {m.name: m.vasso_class for m in methods.METHODS.values()} == {
        "sgd": None, "sam": vasso.SAM, "asam": vasso.ASAM, "gsam": vasso.GSAM, "vasso": vasso.VaSSO}
    assert {name: set(m.fields) for name, m in methods.METHODS.items()} == READS
    assert {name: set(b.fields) for name, b in methods.BASES.items()} == BASE_READS
    # The default radius is each class's own default.
    for m in methods.METHODS.values():
        if m.vasso_class is not None:
            class_default = inspect.signature(m.vasso_class).parameters["rho"].default
            assert m.default_rho == class_default == METHOD_RHO[m.name]
    assert "sgd" not in METHOD_RHO


def test_every_owned_field_is_a_config_field():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert methods.OWNED_FIELDS <= fields and set(OTHER) == methods.OWNED_FIELDS


def _with(cfg: TrainConfig, name: str) -> TrainConfig:
    """``cfg`` with another value of ``name``, and what that value needs to be valid."""
    extra = {"skip": "reuse"} if name == "update_on_reuse" else {}
    return dataclasses.replace(cfg, **{name: OTHER[name]}, **extra)


@pytest.mark.parametrize("base", BASE_OPTIMIZERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_cell_holds_exactly_the_fields_its_method_and_base_read(optimizer, base):
    cfg = TrainConfig("digits", optimizer=optimizer, base=base)
    reads = READS[optimizer] | BASE_READS[base]
    for name in sorted(methods.OWNED_FIELDS):
        if name == "update_on_reuse" and optimizer != "vasso":
            continue  # refused for the others (test_cli_config)
        changed = cell_id(_with(cfg, name)) != cell_id(cfg)
        assert changed == (name in reads), f"{optimizer}/{base}: {name} {'moves' if changed else 'does not move'} the cell"
    # Every field no method or base owns (the task, the data, the schedule, fields to
    # come) is in every cell: the rule does not depend on knowing them.
    # Fields added after the ids were pinned join a cell only away from their default.
    everything = {f.name for f in dataclasses.fields(TrainConfig)} - set(LOCATION_FIELDS)
    at_default = {name for name in FIELDS_ADDED_AFTER_PIN
                  if getattr(cfg, name) == TrainConfig.__dataclass_fields__[name].default}
    assert set(cell_fields(cfg)) == everything - (methods.OWNED_FIELDS - reads) - at_default


def test_what_an_unused_field_holds_does_not_move_a_cell():
    # The cases the issue names: a new default of one of them would be the same change.
    sam = TrainConfig("digits", optimizer="sam")
    assert cell_id(dataclasses.replace(sam, theta=0.5)) == cell_id(sam)
    assert cell_id(dataclasses.replace(sam, rho=0.5)) != cell_id(sam)
    sgd = TrainConfig("digits", optimizer="sgd")
    assert "rho" not in cell_fields(sgd) and "theta" not in cell_fields(sgd)
    assert cell_id(dataclasses.replace(sgd, rho=0.2)) == cell_id(sgd)
    assert "adam_beta1" not in cell_fields(TrainConfig("digits", optimizer="vasso"))
    adamw = TrainConfig("digits", optimizer="vasso", base="adamw")
    assert "momentum" not in cell_fields(adamw) and "adam_eps" in cell_fields(adamw)
    vasso_cell = TrainConfig("digits", optimizer="vasso")
    assert cell_id(dataclasses.replace(vasso_cell, theta=0.5)) != cell_id(vasso_cell)


def test_help_says_which_methods_read_a_field():
    flat = " ".join(build_parser("digits").format_help().split())
    assert "AdamW's beta1; only for --base adamw (default: 0.9)" in flat
    assert "weight decay (default: 0.0005)" in flat  # every base reads it
    assert "only for --optimizer vasso (default: off)" in flat  # update_on_reuse
    assert "vasso = variance-suppressed SAM" in flat


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("base", BASE_OPTIMIZERS)
def test_build_optimizer_wraps_the_base_in_the_methods_class(optimizer, base):
    cfg = TrainConfig("digits", optimizer=optimizer, base=base, lr=0.01)
    model = _model()
    opt, built = methods.build_optimizer(cfg, model)
    assert type(built) is methods.BASES[base].torch_class
    assert built.param_groups[0]["params"] == list(model.parameters())
    if optimizer == "sgd":
        assert opt is built
    else:
        assert type(opt) is methods.METHODS[optimizer].vasso_class and opt.base is built
        assert (opt.rho, opt.model, opt.bn_stats) == (cfg.rho, model, cfg.bn_stats)
    assert not built.param_groups[0].get("fused")  # fused=True: tests/test_graph_readiness.py


def test_gsam_derives_its_settings_from_rho_and_lr():
    cfg = TrainConfig("digits", optimizer="gsam", rho=0.1, lr=0.2)
    opt, _ = methods.build_optimizer(cfg, _model())
    assert (opt.rho_min, opt.lr_max, opt.lr_min) == (0.1, 0.2, 0.0)  # a constant radius by default
    opt, _ = methods.build_optimizer(dataclasses.replace(cfg, gsam_rho_min=0.02), _model())
    assert opt.rho_min == 0.02


def test_grids_and_figures_read_the_registry():
    # ASAM's radius in a grid scales the model's SAM radius as its default scales SAM's.
    [asam] = experiments.grid({"task": "digits", "experiment": "x"}, optimizer=["asam"], rho=[0.2])
    assert asam.rho == pytest.approx(0.2 * METHOD_RHO["asam"] / METHOD_RHO["sam"])
    # A grid cell holds the defaults of the fields its method does not read.
    [sam] = experiments.grid({"task": "digits", "experiment": "x", "theta": 0.3}, optimizer=["sam"])
    assert sam.theta == TrainConfig("digits").theta
    for name, m in methods.METHODS.items():
        assert plots.method_colour(name) == m.colour
        assert plots.METHOD_STYLES[name] == m.line_style
