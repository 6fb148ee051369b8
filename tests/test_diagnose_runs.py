"""Diagnostics over run directories: engine snapshots, `python -m benchmarks.diagnose RUN_DIR`
and `python -m benchmarks.sharpness RUN_DIR` on a tiny trained digits run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmarks import diagnose, engine, sharpness
from benchmarks.config import TrainConfig, cell_fields, cell_id, run_dir
from benchmarks.runstate import Holders, classify


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of five SAM steps (batches of 256) on noisy digits, a snapshot after each."""
    root = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig("digits", optimizer="sam", epochs=2, batch_size=256, label_noise=0.4,
                      snapshot_every=1, runs_dir=str(root), progress="none")
    engine.train(cfg)
    return cfg, run_dir(cfg)


def test_snapshots_are_kept_every_k_epochs_and_change_no_cell(trained):
    cfg, path = trained
    assert sorted(p.name for p in (path / "snapshots").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    last = torch.load(path / "snapshots/epoch-0002.pt", weights_only=True)
    final = torch.load(path / "checkpoint.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (2, 10)
    assert all(torch.equal(last["model"][k], final["model"][k]) for k in final["model"])
    # Where the weights are kept is not part of the cell: same id, and the run is done.
    assert cell_id(cfg) == cell_id(dataclasses.replace(cfg, snapshot_every=0))
    assert classify(path, cell_fields(cfg), Holders({}, None)).state == "done"


def test_diagnose_scores_every_snapshot_and_theta(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "adversary.json"
    assert diagnose.main([str(path), "--thetas", "1,0.2", "--steps", "6", "--warmup", "4",
                          "--json", str(out)]) == 0
    records = json.loads(out.read_text())["records"]
    assert [(r["epoch"], r["theta"]) for r in records] == [(1, 1.0), (1, 0.2), (2, 1.0), (2, 0.2)]
    assert all(r["steps"] == 6 and r["samples"] == 1280 for r in records)  # 5 full batches of 256
    for sam, vasso in zip(records[::2], records[1::2]):  # the mechanism, on the run's own batches
        assert vasso["distance_mean"] < sam["distance_mean"] and vasso["cos_mean"] > sam["cos_mean"]
    assert "||e-e*||/rho" in capsys.readouterr().out


def test_diagnostics_of_a_run_without_weights_is_one_line_exit_2(trained, tmp_path, capsys):
    cfg, path = trained
    empty = tmp_path / "adhoc" / "cell"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text((path / "config.json").read_text())
    for main in (diagnose.main, sharpness.main):
        assert main([str(empty)]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "no weights to measure" in err and "--snapshot-every" in err
    assert sharpness.main([str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_sharpness_of_the_final_model_states_convergence(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "sharpness.json"
    assert sharpness.main([str(path), "--samples", "200", "--max-iter", "60", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["converged"] and record["epoch"] == 2 and record["num_samples"] == 200
    assert record["residual"] <= record["tol"] * abs(record["top_eigenvalue"])
    assert "(converged: residual" in capsys.readouterr().out
    # Out of budget: the last estimate, said to be one, and a non-zero exit.
    assert sharpness.main([str(path), "--samples", "200", "--max-iter", "2"]) == 1
    captured = capsys.readouterr()
    assert "NOT converged, last estimate" in captured.out and "raise --max-iter" in captured.err
    assert sharpness.main([str(path), "--epoch", "7"]) == 2
    assert "no weights after epoch 7 (it has: 1, 2)" in capsys.readouterr().err
