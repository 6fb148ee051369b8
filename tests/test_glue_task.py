"""The glue task on the one engine, through the CLI: a few steps of SAM and VaSSO on
RTE and on STS-B (regression), resumed exactly after SIGKILL; the one-line errors
(exit 2); the glue experiment's cells."""

from __future__ import annotations

import pathlib

import pytest
import torch

import glue_fixtures as gf
from bench_fixtures import cli, kill_at_first_checkpoint, read_metrics, read_result
from benchmarks.__main__ import main
from benchmarks.config import TrainConfig, run_dir, to_argv
from benchmarks.engine import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    data = tmp_path_factory.mktemp("glue-data")
    gf.tiny_roberta(data / "models" / "roberta-base")
    gf.tiny_bert(data / "models" / "bert-base-uncased")
    for task in ("rte", "stsb"):
        gf.write_tsv(data, task)
    return data


def cell(data_dir, runs_dir, dataset, optimizer, **kw) -> TrainConfig:
    fields = dict(dataset=dataset, optimizer=optimizer, epochs=3, batch_size=4, max_length=32,
                  checkpoint_every_steps=2, data_dir=str(data_dir), runs_dir=str(runs_dir),
                  progress="log", threads=1)
    return TrainConfig("glue", **{**fields, **kw})


def assert_same_run(run, reference):
    assert read_metrics(run) == read_metrics(reference)
    assert read_result(run) == read_result(reference)
    ours = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(reference / "checkpoint.pt", weights_only=True)["model"]
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


@pytest.mark.slow  # about a minute each on a loaded 2-core VM (a CLI start imports transformers)
# SAM on RTE (classification) and VaSSO on STS-B (regression): both methods, both heads.
@pytest.mark.parametrize("dataset, optimizer", [("rte", "sam"), ("stsb", "vasso")])
def test_a_few_steps_through_the_cli_resume_exactly_after_sigkill(data_dir, tmp_path, dataset,
                                                                  optimizer):
    reference = cell(data_dir, tmp_path / "reference", dataset, optimizer)
    result = train(reference)
    metric = {"rte": "acc", "stsb": "pearson"}[dataset]
    assert result["primary"] == "score" and metric in result["final"]["test"]
    cfg = cell(data_dir, tmp_path / "killed", dataset, optimizer)
    run = run_dir(cfg)
    kill_at_first_checkpoint(cli(to_argv(cfg)), run, timeout_s=300)
    assert main(to_argv(cfg)) == 0
    assert_same_run(run, run_dir(reference))


# -- bad input: one line, exit 2, nothing written ---------------------------------------

def run_cli(argv, capsys) -> str:
    assert main(argv) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("python -m benchmarks: error: ")
    return line


def glue_argv(data_dir, runs_dir, *extra) -> list[str]:
    return ["glue", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--epochs", "1",
            "--batch-size", "4", "--max-length", "32", "--progress", "none", *extra]


def test_bad_input_is_one_line_and_exit_2(data_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    line = run_cli(glue_argv(data_dir, runs, "--dataset", "wnli"), capsys)
    assert "--dataset='wnli'" in line and "rte" in line and "sst2" in line
    line = run_cli(glue_argv(data_dir, runs, "--dataset", "mrpc"), capsys)
    assert "GLUE MRPC not found" in line and "save_to_disk" in line
    line = run_cli(glue_argv(data_dir, runs, "--model", "roberta-large"), capsys)
    assert "'roberta-large' not found" in line and "hf download" in line
    line = run_cli(glue_argv(data_dir, runs, "--max-length", "65"), capsys)
    assert "maximum sequence length 64" in line
    from transformers import AutoModelForSequenceClassification

    three = tmp_path / "three-labels"
    AutoModelForSequenceClassification.from_pretrained(
        str(data_dir / "models" / "bert-base-uncased"), num_labels=3).save_pretrained(three)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (three / name).write_bytes((data_dir / "models" / "bert-base-uncased" / name).read_bytes())
    capsys.readouterr()  # transformers' loading report of the line above
    line = run_cli(glue_argv(data_dir, runs, "--model", str(three)), capsys)
    assert "head with 3 outputs, but GLUE RTE needs 2" in line
    assert not runs.exists() or not any(runs.rglob("*.json"))  # nothing written


def test_the_recipe_is_the_glue_default_and_max_length_is_glues_alone():
    from benchmarks.config import ConfigError, TASK_DATASETS, cell_fields
    from benchmarks.glue import GLUE_TASKS, recipe

    cfg = TrainConfig("glue")
    assert (cfg.base, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps) == ("adamw", 0.9, *recipe.ADAM_BETAS[1:],
                                                                         recipe.ADAM_EPS)
    assert (cfg.weight_decay, cfg.epochs, cfg.max_length, cfg.schedule) == (0.1, 10, 128, "linear")
    assert cfg.warmup_epochs == pytest.approx(recipe.WARMUP_FRACTION * cfg.epochs)
    assert TASK_DATASETS["glue"] == tuple(GLUE_TASKS)
    assert "max_length" in cell_fields(cfg) and "max_length" not in cell_fields(TrainConfig("digits"))
    with pytest.raises(ConfigError, match="only the glue task reads it"):
        TrainConfig("digits", max_length=64)
    with pytest.raises(ConfigError, match="--label-noise=0.2: the glue task trains on GLUE"):
        TrainConfig("glue", label_noise=0.2)


def test_the_glue_experiment_plans_120_cells(capsys):
    from slurm.cli import main as slurm_main

    assert slurm_main(["plan", "glue", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "120 cells: 120 not launched" in out
    from benchmarks import experiments

    cells = experiments.get("glue").cells
    assert {(c.dataset, c.optimizer) for c in cells} == {
        (t, o) for t in TASK_DATASETS_GLUE for o in ("sgd", "sam", "vasso")}
    assert {c.seed for c in cells} == set(range(5))
    assert all(c.base == "adamw" and c.precision == "bf16" for c in cells)
    rte = next(c for c in cells if c.dataset == "rte")
    assert (rte.lr, rte.batch_size) == (2e-5, 16)


TASK_DATASETS_GLUE = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
