"""benchmarks.experiments: the paper's grids, cell by cell."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from benchmarks import experiments as E
from benchmarks.config import TrainConfig, cell_fields, cell_id


def _by(exp, *fields):
    return Counter(tuple(getattr(c, f) for f in fields) for c in exp.cells)


@pytest.mark.parametrize(
    "name, n_cells",
    [("cifar10", 4 * 5 * 3), ("cifar100", 4 * 5 * 3), ("label-noise", 3 * 3 * 3), ("theta", 6 * 3), ("demo", 5 * 3)],
)
def test_every_experiment_is_a_full_grid_of_distinct_cells(name, n_cells):
    exp = E.get(name)
    assert exp.name == name and len(exp.cells) == n_cells
    assert len({cell_id(c) for c in exp.cells}) == n_cells, "two cells share a run directory"
    assert all(c.experiment == name for c in exp.cells)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert exp.rows in fields and set(exp.columns) <= fields
    # Every group of cells that differ only by seed holds the three seeds.
    groups = Counter(
        tuple(sorted((k, str(v)) for k, v in cell_fields(c).items() if k != "seed")) for c in exp.cells
    )
    assert set(groups.values()) == {3}
    assert {c.seed for c in exp.cells} == {0, 1, 2}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tables_follow_the_official_recipe(name):
    exp = E.get(name)
    assert set(_by(exp, "model")) == {("vgg11_bn",), ("resnet18",), ("wrn28_10",), ("pyramidnet110",)}
    assert set(_by(exp, "optimizer")) == {(o,) for o in E.OPTIMIZERS}
    for c in exp.cells:
        assert (c.task, c.dataset, c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay) == (
            "cifar", name, 200, 128, 0.05, 0.9, 1e-3
        )
        # The official code's choices (docs/recipe.md): per-epoch cosine stepped after the
        # epoch, BatchNorm statistics from both passes, Cutout p = 0.5, CIFAR-10 statistics.
        assert (c.schedule, c.bn_stats, c.cutout_prob, c.norm_stats, c.warmup_epochs) == (
            "cosine-epoch", "both", 0.5, "official", 0.0
        )


def test_method_hyperparameters_derive_from_the_models_sam_radius():
    models = E.CIFAR10_MODELS
    for c in E.get("cifar10").cells:
        hp = models[c.model]
        expected_rho = {"sgd": None, "sam": hp["rho"], "asam": 10 * hp["rho"],
                        "gsam": hp["rho"], "vasso": hp["rho"]}[c.optimizer]
        assert c.rho == (expected_rho and pytest.approx(expected_rho)), (c.model, c.optimizer)
        assert c.theta == (hp["theta"] if c.optimizer == "vasso" else E._default("theta"))
        if c.optimizer == "gsam":
            assert 0 <= c.gsam_rho_min < c.rho and c.gsam_alpha > 0
        else:
            assert c.gsam_rho_min is None and c.gsam_alpha == 0.0
    # The per-model values are what METHODS.md's hints say.
    assert (models["resnet18"]["rho"], models["resnet18"]["theta"]) == (0.1, 0.4)
    assert (E.CIFAR100_MODELS["wrn28_10"]["rho"], E.CIFAR100_MODELS["wrn28_10"]["theta"]) == (0.2, 0.4)


def test_label_noise_and_theta_sweeps():
    noise = E.get("label-noise")
    assert noise.columns == ("label_noise",) and noise.figure == "noise"
    assert set(_by(noise, "label_noise", "optimizer")) == {
        (r, o) for r in (0.25, 0.5, 0.75) for o in ("sgd", "sam", "vasso")
    }
    assert {(c.model, c.dataset) for c in noise.cells} == {("resnet18", "cifar10")}

    theta = E.get("theta")
    assert theta.columns == ("theta",) and theta.figure == "theta"
    assert {c.theta for c in theta.cells} == {0.1, 0.2, 0.4, 0.6, 0.9, 1.0}
    assert {(c.optimizer, c.model, c.rho) for c in theta.cells} == {("vasso", "resnet18", 0.1)}


def test_demo_is_cheap_noisy_digits_with_every_optimizer():
    demo = E.get("demo")
    assert {c.task for c in demo.cells} == {"digits"}
    assert {c.optimizer for c in demo.cells} == set(E.OPTIMIZERS)
    assert all(c.label_noise >= 0.25 for c in demo.cells)
    assert all(c.epochs * 1347 / c.batch_size <= 1000 for c in demo.cells), "demo budget grew"


def test_demo_warms_up_and_demo_noise_checks_its_recipe_over_30_seeds():
    # Without a warm-up 4 of 60 sharpness-aware demo runs collapsed (docs/collapse.md).
    demo, check = E.get("demo"), E.get("demo-noise")
    assert {c.warmup_epochs for c in demo.cells} == {3.0}
    assert len(check.cells) == 270 == len({cell_id(c) for c in check.cells})
    assert _by(check, "optimizer", "label_noise") == Counter(
        {(o, r): 30 for o in ("sgd", "sam", "vasso") for r in (0.2, 0.4, 0.6)})
    # The same recipe as the demo's cells, but for the noise rate and the experiment.
    same = {"label_noise", "experiment", "seed"}
    demo_vasso = next(c for c in demo.cells if c.optimizer == "vasso")
    for cell in check.cells:
        twin = dataclasses.replace(demo_vasso, optimizer=cell.optimizer, rho=cell.rho, theta=cell.theta)
        assert {k: v for k, v in cell_fields(cell).items() if k not in same} == \
            {k: v for k, v in cell_fields(twin).items() if k not in same}
    # Seed-major: a sweep cut short has every table cell at the same number of seeds.
    assert [c.seed for c in check.cells[:9]] == [0] * 9


def test_get_unknown_names_the_known_experiments():
    with pytest.raises(ValueError, match="known experiments: cifar10, cifar100, label-noise, theta, demo, demo-noise"):
        E.get("cifar-10")


def test_grid_product_merges_dict_axes_and_rejects_foreign_cells():
    cells = E.grid({"task": "digits", "experiment": "x"}, setting=[{"lr": 0.1}, {"lr": 0.2}],
                   optimizer=["sgd", "vasso"], seed=[0])
    assert [(c.lr, c.optimizer) for c in cells] == [(0.1, "sgd"), (0.1, "vasso"), (0.2, "sgd"), (0.2, "vasso")]
    with pytest.raises(ValueError, match="experiment 'y' holds 4 cell"):
        E.Experiment(name="y", title="", cells=cells)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        E.grid({"task": "digits", "experiment": "x"}, optimizer=["adam"])


def test_grid_keeps_settings_given_explicitly_and_defaults_the_optimizer():
    base = {"task": "digits", "experiment": "x", "gsam_alpha": 0.2, "gsam_rho_min": 0.01}
    [gsam] = E.grid(base, optimizer=["gsam"], rho=[0.05])
    assert (gsam.rho, gsam.gsam_rho_min, gsam.gsam_alpha) == (0.05, 0.01, 0.2), "an explicit setting was replaced"
    [derived] = E.grid({"task": "digits", "experiment": "x"}, optimizer=["gsam"], rho=[0.05])
    assert (derived.gsam_rho_min, derived.gsam_alpha) == (0.025, 0.01)
    # No optimizer axis: the config's default optimizer, not a KeyError.
    cells = E.grid({"task": "digits", "experiment": "x"}, lr=[0.01, 0.1])
    assert [(c.optimizer, c.lr) for c in cells] == [(E._default("optimizer"), 0.01), (E._default("optimizer"), 0.1)]


USER_MODULE = """
from __future__ import annotations
from dataclasses import dataclass
from benchmarks.experiments import Experiment, grid

@dataclass
class Note:  # a dataclass under postponed annotations needs the module in sys.modules
    text: str

EXPERIMENTS = {"mine": Experiment("mine", "Mine", grid(
    {"task": "digits", "experiment": "mine"}, optimizer=["sgd", "vasso"], seed=[0]))}
"""


def test_load_a_users_module_by_path_or_dotted_name(tmp_path, monkeypatch):
    (tmp_path / "my_sweeps.py").write_text(USER_MODULE)
    by_path = E.get("mine", str(tmp_path / "my_sweeps.py"))
    assert [c.optimizer for c in by_path.cells] == ["sgd", "vasso"]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(E.load("my_sweeps")) == ["mine"]
    assert E.load(None) is E.EXPERIMENTS and E.get("demo", None) is E.EXPERIMENTS["demo"]
    with pytest.raises(ValueError, match="unknown experiment 'demo'; known experiments: mine"):
        E.get("demo", str(tmp_path / "my_sweeps.py"))


@pytest.mark.parametrize(
    "module, message",
    [
        ("no_such_module_xyz", "--experiments-module no_such_module_xyz: cannot import it"),
        ("{tmp}/missing.py", "missing.py: no such file"),
        ("{tmp}/empty.py", "it defines no EXPERIMENTS dict"),
    ],
)
def test_load_errors_name_the_module_and_the_fix(tmp_path, module, message):
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match=message.replace("{tmp}", "")):
        E.load(module.replace("{tmp}", str(tmp_path)))
