"""TrainConfig, cell ids and the generated command line (benchmarks/config.py, __main__.py)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from benchmarks.__main__ import main
from benchmarks.config import (
    LOCATION_FIELDS, TASK_DEFAULTS, ConfigError, TrainConfig, build_parser, cell_fields,
    cell_id, parse_argv, run_dir, to_argv)
from bench_fixtures import snapshot


@pytest.mark.parametrize("cfg", [
    TrainConfig("digits"),
    TrainConfig("cifar", dataset="cifar100", model="wrn28_10", optimizer="vasso", rho=0.1 + 0.2,
                theta=0.4, nesterov=True, steps_per_epoch=7, gsam_rho_min=0.025, label_noise=0.2,
                download=True, precision="bf16", experiment="table1"),
    TrainConfig("cifar", optimizer="gsam", base="adamw", lr=3e-4, schedule="constant",
                warmup_epochs=2.5, data_dir="/data x", runs_dir="/r", adam_beta1=0.8,
                adam_beta2=0.98, adam_eps=1e-6),
    TrainConfig("digits", optimizer="vasso", skip="reuse", ascent_prob=0.25, update_on_reuse=True),
])
def test_argv_round_trip(cfg):
    argv = to_argv(cfg)
    assert argv[0] == cfg.task
    back = parse_argv(argv)
    assert back == cfg
    assert cell_id(back) == cell_id(cfg)


def test_task_defaults_resolved_and_overridable():
    digits, cifar = TrainConfig("digits"), TrainConfig("cifar")
    for cfg in (digits, cifar):
        for name, value in TASK_DEFAULTS[cfg.task].items():
            assert getattr(cfg, name) == value
    assert digits.epochs != cifar.epochs
    assert parse_argv(["cifar", "--lr", "0.1"]).lr == 0.1
    assert parse_argv(["cifar"]).epochs == 200


def test_cell_id_ignores_location_and_display_fields():
    cfg = TrainConfig("digits")
    moved = dataclasses.replace(cfg, data_dir="/elsewhere", runs_dir="/runs2", device="cpu",
                                download=True, progress="none", num_workers=0)
    assert re.fullmatch(r"[0-9a-f]{12}", cell_id(cfg))
    assert cell_id(moved) == cell_id(cfg)
    assert set(cell_fields(cfg)).isdisjoint(LOCATION_FIELDS)
    assert cell_id(dataclasses.replace(cfg, lr=0.06)) != cell_id(cfg)
    assert cell_id(dataclasses.replace(cfg, seed=1)) != cell_id(cfg)
    # An int given for a float field is the same cell as the float.
    assert cell_id(TrainConfig("digits", optimizer="sam", rho=1)) == cell_id(
        TrainConfig("digits", optimizer="sam", rho=1.0))


def test_run_dir_layout(tmp_path):
    cfg = TrainConfig("digits", runs_dir=str(tmp_path), experiment="demo")
    assert run_dir(cfg) == tmp_path / "demo" / cell_id(cfg)


def test_env_defaults_for_data_and_runs(monkeypatch):
    monkeypatch.setenv("VASSO_DATA", "/d")
    monkeypatch.setenv("VASSO_RUNS", "/r")
    cfg = TrainConfig("digits")
    assert (cfg.data_dir, cfg.runs_dir) == ("/d", "/r")
    monkeypatch.delenv("VASSO_DATA")
    monkeypatch.delenv("VASSO_RUNS")
    assert (TrainConfig("digits").data_dir, TrainConfig("digits").runs_dir) == ("./data", "./runs")


def test_help_lists_every_field_with_choices():
    text = build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name != "task":
            assert "--" + f.name.replace("_", "-") in text
    assert "{sgd,sam,asam,gsam,vasso}" in text
    assert "{digits,mnist1d,cifar,imagenet,translation,glue}" in text
    assert "VaSSO averaging weight" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "mnist"}, "valid tasks: digits, mnist1d, cifar, imagenet"),
    ({"task": "cifar", "dataset": "svhn"}, "cifar10, cifar100"),
    ({"task": "cifar", "model": "resnet50"}, "vgg11_bn, resnet18, wrn28_10, pyramidnet110"),
    ({"task": "digits", "optimizer": "adam"}, "sgd, sam, asam, gsam, vasso"),
    ({"task": "digits", "rho": -0.1}, "--rho"),
    ({"task": "digits", "theta": 0.0}, "(0, 1]"),
    ({"task": "digits", "theta": 1.5}, "(0, 1]"),
    ({"task": "digits", "label_noise": 1.0}, "[0, 1)"),
    ({"task": "digits", "label_noise": -0.1}, "[0, 1)"),
    ({"task": "digits", "lr": 0.0}, "--lr"),
    ({"task": "digits", "lr": float("nan")}, "--lr"),
    ({"task": "digits", "epochs": 0}, "--epochs"),
    ({"task": "digits", "max_steps": 0}, "--max-steps"),
    ({"task": "digits", "steps_per_epoch": 0}, "--steps-per-epoch"),
    ({"task": "digits", "cutout_prob": 0.5}, "no augmentation"),
    ({"task": "cifar", "cutout_prob": 1.5}, "[0, 1]"),
    ({"task": "cifar", "norm_stats": "imagenet"}, "official, dataset"),
    ({"task": "digits", "norm_stats": "official"}, "standardises by its own"),
    ({"task": "cifar", "schedule": "step"}, "cosine, cosine-epoch, constant"),
    ({"task": "cifar", "schedule": "cosine-epoch", "warmup_epochs": 1.0}, "has no warm-up"),
    ({"task": "digits", "gsam_rho_min": 0.1, "rho": 0.05}, "--gsam-rho-min"),
    ({"task": "digits", "warmup_epochs": 50.0, "epochs": 5}, "--warmup-epochs"),
    ({"task": "digits", "experiment": "a/b"}, "folder name"),
    ({"task": "digits", "epochs": 3, "max_steps": 60}, "give the length of training once"),
    ({"task": "digits", "warmup_steps": 5, "warmup_epochs": 1.0}, "give the warm-up once"),
    ({"task": "digits", "schedule": "inverse-sqrt"}, "give --warmup-steps or --warmup-epochs"),
    ({"task": "cifar", "max_steps": 100}, "cosine-epoch is set per epoch"),
    ({"task": "digits", "clip_grad_norm": 0.0}, "--clip-grad-norm"),
    ({"task": "digits", "eval_every_steps": 0}, "--eval-every-steps"),
    ({"task": "digits", "rho": "big"}, "expected float"),
    ({"task": "digits", "optimizer": "sam", "ascent_prob": 0.0}, "--ascent-prob=0.0: must lie in (0, 1]"),
    ({"task": "digits", "optimizer": "sam", "ascent_prob": 1.5}, "(0, 1]"),
    ({"task": "digits", "optimizer": "sam", "ascent_prob": 0.5, "ascent_every": 2},
     "give --ascent-every or --ascent-prob, not both"),
    ({"task": "digits", "optimizer": "sam", "skip": "reuse", "update_on_reuse": True,
      "ascent_every": 2}, "only VaSSO with --skip reuse"),
    ({"task": "digits", "optimizer": "vasso", "update_on_reuse": True, "ascent_every": 2},
     "--update-on-reuse=True: only VaSSO with --skip reuse"),
    ({"task": "digits", "optimizer": "vasso", "skip": "sometimes"}, "valid choices: clean, reuse"),
    ({"task": "digits", "base": "adamw", "adam_beta2": 1.0}, "--adam-beta2"),
    ({"task": "digits", "base": "adamw", "adam_eps": 0.0}, "--adam-eps"),
])
def test_invalid_config_names_the_problem(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("argv", [
    ["digits", "--dataset", "cifar10"],
    ["cifar", "--model", "resnet50"],
    ["digits", "--optimizer", "adam"],
    ["digits", "--theta", "0"],
    ["digits", "--optimizer", "vasso", "--ascent-prob", "2"],
    ["digits", "--optimizer", "sam", "--skip", "reuse", "--ascent-every", "2", "--update-on-reuse"],
    ["digits", "--lr", "fast"],
    ["digits", "--epochs", "3", "--max-steps", "60"],
    ["digits", "--schedule", "step"],
    ["imagenet"],
])
def test_cli_bad_input_exits_2_and_writes_nothing(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc_info:
        raise SystemExit(main(argv + ["--runs-dir", str(tmp_path)]))
    assert exc_info.value.code == 2
    assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_cifar_data_says_where_files_go(tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = main(["cifar", "--data-dir", str(tmp_path / "data"), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "cifar-10-batches-py" in err and "data_batch_1" in err and "--download" in err
    assert not runs.exists()


def test_cli_refuses_a_run_dir_holding_another_config(tmp_path, capsys):
    import json

    cfg = TrainConfig("digits", runs_dir=str(tmp_path), epochs=1, steps_per_epoch=1, progress="none")
    directory = run_dir(cfg)
    directory.mkdir(parents=True)
    other = dataclasses.asdict(dataclasses.replace(cfg, lr=0.5))
    (directory / "config.json").write_text(json.dumps(other))
    before = snapshot(tmp_path)
    assert main(to_argv(cfg)) == 2
    assert "lr" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_help_from_the_command_line():
    from bench_fixtures import cli

    proc = cli(["--help"])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert "--label-noise" in out and "Exit codes" in out


def test_rho_defaults_to_the_methods_own_radius():
    # ASAM's useful radius is about ten times SAM's: `--optimizer asam` alone must not get SAM's.
    assert TrainConfig(task="digits", optimizer="asam").rho == 0.5
    for optimizer in ("sam", "gsam", "vasso"):
        assert TrainConfig(task="digits", optimizer=optimizer).rho == 0.05
    assert TrainConfig(task="digits", optimizer="sgd").rho is None  # no perturbation, no radius
    assert TrainConfig(task="digits", optimizer="asam", rho=0.1).rho == 0.1
    # Resolved before hashing: leaving rho out and passing its default are one cell.
    assert cell_id(TrainConfig(task="digits", optimizer="asam")) == cell_id(
        TrainConfig(task="digits", optimizer="asam", rho=0.5))


def test_help_shows_every_real_default_and_each_tasks_own(capsys):
    def help_text(*argv):
        with pytest.raises(SystemExit) as exc_info:
            parse_argv([*argv, "--help"])
        assert exc_info.value.code == 0
        return " ".join(capsys.readouterr().out.split())  # unwrapped

    text = help_text()
    assert "default: None" not in text and text.count("(default:") == len(dataclasses.fields(TrainConfig)) - 1
    assert ("--epochs INT number of epochs (or give --max-steps) (default: 30 for digits, mnist1d; "
            "200 for cifar; 90 for imagenet; 60 for translation; 10 for glue)") in text
    assert "(default: sgd for digits, mnist1d, cifar, imagenet; adamw for translation, glue)" in text
    assert "(default: 128 for glue; none for digits, mnist1d, cifar, imagenet, translation)" in text
    assert ("--rho FLOAT perturbation radius, rho_max for GSAM; only for --optimizer sam, asam, gsam, "
            "vasso (default: 0.05 for sam, gsam, vasso; 0.5 for asam)") in text
    assert "--data-dir STR dataset root (default: $VASSO_DATA, else ./data)" in text
    assert ("--theta FLOAT VaSSO averaging weight theta in (0, 1]; 1 is SAM; only for --optimizer vasso "
            "(default: 0.9)") in text
    cifar = help_text("cifar")
    assert "number of epochs (or give --max-steps) (default: 200)" in cifar and "weight decay (default: 0.001)" in cifar
    glue = help_text("glue")
    assert "AdamW's beta2; only for --base adamw (default: 0.98)" in glue
    assert "AdamW's eps; only for --base adamw (default: 1e-06)" in glue


@pytest.mark.parametrize("argv, valid", [
    (["digits", "--optimizer", "vaso"], ("sgd", "sam", "asam", "gsam", "vasso")),
    (["pytorch"], ("digits", "cifar", "imagenet", "translation", "glue")),
])
def test_an_unknown_choice_is_one_line_naming_the_valid_ones(argv, valid, capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(argv)
    assert exc_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m benchmarks: error: argument ") and "invalid choice" in line, line
    assert all(name in line.split("choose from", 1)[1] for name in valid), line


def test_num_workers_default_is_what_this_process_may_use(monkeypatch):
    from benchmarks.config import default_num_workers

    cfg = parse_argv(["cifar"])
    assert cfg.num_workers is None and "--num-workers" not in to_argv(cfg)  # resolved where the cell runs
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert default_num_workers() == 2
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert default_num_workers() == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert default_num_workers() == 8
    assert parse_argv(["cifar", "--num-workers", "3"]).num_workers == 3
