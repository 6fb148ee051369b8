"""The `translation` task in the engine: a cell trains on the tiny IWSLT'14 archive
(tests/translation_fixtures.py, prepared with the recipe's 10,000 merges: subword-nmt
stops when no pair repeats), SAM and VaSSO resume exactly after SIGKILL through the
command line, bad input is one line and exit 2, and the `iwslt14` experiment plans
its 9 cells."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

import translation_fixtures as fx
from benchmarks.__main__ import main
from benchmarks.config import TrainConfig, run_dir, to_argv
from benchmarks.engine import train
from benchmarks.translation import model as model_mod
from bench_fixtures import cli, kill_at_first_checkpoint, read_metrics, read_result


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    fx.prepare_tiny(folder, bpe_merges=10000)
    return folder


def cell(data_dir, runs_dir, **kw) -> TrainConfig:
    # 12 steps of batches of at most 256 tokens (4 per epoch over the 66 training pairs),
    # validation BLEU every 6 steps, a checkpoint every 2.
    fields = dict(model="transformer_tiny", base="adamw", adam_beta2=0.98, warmup_steps=4,
                  label_smoothing=0.1, max_tokens=256, max_steps=12, eval_every_steps=6,
                  checkpoint_every_steps=2, lr=1e-3, optimizer="vasso", rho=0.05, theta=0.4,
                  threads=1, progress="log", data_dir=str(data_dir), runs_dir=str(runs_dir))
    return TrainConfig("translation", **{**fields, **kw})


def test_the_task_defaults_are_fairseqs_iwslt14_recipe():
    cfg = TrainConfig("translation", optimizer="vasso")
    recipe = dict(model="transformer_iwslt_de_en", base="adamw", adam_beta1=0.9, adam_beta2=0.98,
                  adam_eps=1e-8, lr=5e-4, schedule="inverse-sqrt", warmup_steps=4000,
                  warmup_epochs=0.0, weight_decay=1e-4, label_smoothing=0.1, max_tokens=4096)
    assert {name: getattr(cfg, name) for name in recipe} == recipe
    # A warm-up given in epochs replaces the recipe's in steps (not a clash with it).
    assert TrainConfig("translation", warmup_epochs=1.0).warmup_steps == 0
    assert TrainConfig("glue", warmup_steps=100).warmup_epochs == 0.0
    assert TrainConfig("digits").label_smoothing == 0.0 and TrainConfig("digits").warmup_steps == 0


def test_a_translation_cell_trains_on_token_batches_and_scores_validation_bleu(data_dir, tmp_path):
    cfg = cell(data_dir, tmp_path)
    assert cfg.lr == 1e-3 and cfg.schedule == "inverse-sqrt" and cfg.weight_decay == 1e-4
    result = train(cfg)
    run = run_dir(cfg)
    assert result["primary"] == "bleu" and result["steps"] == 12
    # Validation BLEU on the subset during training; the last weights and the best
    # validation BLEU's scored on the whole test set at the end.
    for entry in (result["final"], result["best"]):
        assert set(entry["valid"]) == set(entry["test"]) == {"bleu", "sacrebleu", "loss", "nll"}
        assert 0 <= entry["test"]["bleu"] <= 100
    assert set(result["final"]["train"]) == {"loss", "nll"}
    evaluations = [line for line in read_metrics(run) if line["split"] == "valid"]
    assert [line["step"] for line in evaluations] == [4, 6, 8, 12]  # every 6 steps and every epoch
    assert not [line for line in read_metrics(run) if line["split"] == "test"]
    for which in ("last", "best"):
        hypotheses = (run / "outputs" / f"{which}.test.hyp.en").read_text().splitlines()
        assert len(hypotheses) == fx.TEST
        assert len((run / "outputs" / f"{which}.test.detok.en").read_text().splitlines()) == fx.TEST
    assert (run / "best_model.pt").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["prepared_data"]["counts"]["valid"] == fx.VALID
    assert meta["sacrebleu_signature"].startswith("nrefs:1|case:lc|eff:no|tok:13a|")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sam", "vasso"])
def test_sam_and_vasso_on_token_batches_resume_exactly_after_sigkill(data_dir, tmp_path, optimizer):
    reference = cell(data_dir, tmp_path / "reference", optimizer=optimizer)
    train(reference)
    cfg = cell(data_dir, tmp_path / "killed", optimizer=optimizer)
    run = run_dir(cfg)
    kill_at_first_checkpoint(cli(to_argv(cfg)), run, timeout_s=180)
    assert main(to_argv(cfg)) == 0
    assert read_metrics(run) == read_metrics(run_dir(reference))
    assert read_result(run) == read_result(run_dir(reference))
    ours = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(run_dir(reference) / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[name], tensor) for name, tensor in theirs.items())


def run_main(capsys, cfg: TrainConfig) -> tuple[int, str]:
    code = main(to_argv(cfg))
    return code, capsys.readouterr().err


def test_unprepared_data_is_one_line_exit_2_nothing_written(tmp_path, capsys):
    cfg = cell(tmp_path / "empty", tmp_path / "runs")
    code, err = run_main(capsys, cfg)
    assert code == 2 and err.count("\n") == 1
    assert "IWSLT'14 De-En is not prepared" in err and "python -m benchmarks.translation.prepare" in err
    assert not (tmp_path / "runs").exists()


def test_data_prepared_with_another_bpe_setting_is_refused(tmp_path, capsys):
    fx.prepare_tiny(tmp_path / "data", bpe_merges=60)
    capsys.readouterr()  # subword-nmt's progress bar
    code, err = run_main(capsys, cell(tmp_path / "data", tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1
    assert "prepared with 60 BPE merges, this cell needs 10000" in err
    assert not (tmp_path / "runs").exists()


def test_a_sentence_longer_than_the_positions_is_refused_before_training(data_dir, tmp_path, capsys,
                                                                         monkeypatch):
    tiny = model_mod.ARCHITECTURES["transformer_tiny"]
    monkeypatch.setitem(model_mod.ARCHITECTURES, "transformer_tiny",
                        model_mod.TransformerConfig(**{**tiny.__dict__, "max_positions": 20}))
    code, err = run_main(capsys, cell(data_dir, tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1
    assert re.search(r"train sentence \d+ has \d+ source tokens, more than the model's 20 positions", err)
    assert not (tmp_path / "runs").exists()


def test_slurm_plan_iwslt14_lists_adamw_sam_and_vasso_at_three_seeds(tmp_path, capsys):
    from slurm import cli as slurm_cli
    code = slurm_cli.main(["plan", "iwslt14", "--runs-dir", str(tmp_path), "--data-dir", str(tmp_path / "none")])
    out = capsys.readouterr().out
    assert code == 0
    assert "9 cells: 9 not launched" in out
    cells = [line for line in out.splitlines() if re.match(r"[0-9a-f]{12}  .*not launched$", line)]
    assert len(cells) == 9
    assert {m for line in cells for m in ("sgd", "sam", "vasso") if f" {m} " in f" {line} "} == {"sgd", "sam", "vasso"}


def test_the_iwslt14_table_shows_test_bleu_of_the_best_validation_checkpoint(tmp_path, capsys):
    from benchmarks.experiments import get
    from benchmarks.translation.bleu import sacrebleu_signature
    from results import cli as results_cli
    experiment = get("iwslt14")
    signature = sacrebleu_signature()
    for n, cfg in enumerate(experiment.cells):
        cfg = dataclasses.replace(cfg, runs_dir=str(tmp_path))
        run = run_dir(cfg)
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
        valid = {"bleu": 30.0, "sacrebleu": 29.0, "loss": 3.0, "nll": 2.5}
        test = {"bleu": 34.0 + n % 3, "sacrebleu": 33.0, "loss": 3.1, "nll": 2.6}
        (run / "result.json").write_text(json.dumps({
            "primary": "bleu",
            "final": {"epoch": 60, "step": 66000, "valid": valid, "test": {**test, "bleu": 7.0},
                      "train": {"loss": 3.0, "nll": 2.4}},
            "best": {"epoch": 55, "step": 60000, "valid": valid, "test": test},
            "epochs": 60, "steps": 66000, "time_s": 1.0, "collapse": None}))
        (run / "meta.json").write_text(json.dumps({"sacrebleu_signature": signature}))
    out = tmp_path / "outputs"
    assert results_cli.main(["iwslt14", "--runs-dir", str(tmp_path), "--out", str(out), "--metric", "best"]) == 0
    table = (out / "tables" / "iwslt14.md").read_text()
    # The best checkpoint's test BLEU (34, 35, 36 over the seeds), not the last one's (7).
    [vasso] = [line for line in table.splitlines() if line.startswith("| vasso |")]
    assert "35.00 ± 1.00" in vasso and "33.00 ± 0.00" in vasso and "7.00" not in table
    # The sacreBLEU signature the runs recorded, under the table.
    assert f"\nsacreBLEU signature (9 finished runs): {signature}\n" in table
    assert "sacreBLEU signature (9 finished runs): nrefs:1\\textbar{}case:" in (
        out / "tables" / "iwslt14.tex").read_text()
    # Runs scored under another signature (another sacrebleu version) are said not comparable.
    other = signature.replace("version:", "version:0.")
    (run / "meta.json").write_text(json.dumps({"sacrebleu_signature": other}))
    assert results_cli.main(["iwslt14", "--runs-dir", str(tmp_path), "--out", str(out), "--metric", "best"]) == 0
    table = (out / "tables" / "iwslt14.md").read_text()
    assert ("sacreBLEU signatures differ between the runs, whose figures are therefore not comparable: "
            f"{other} (1 runs); {signature} (8 runs)") in table
