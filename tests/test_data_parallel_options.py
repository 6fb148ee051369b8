"""The engine's data-parallel options on CPU processes over gloo: ``--sync`` (whose
gradient builds the perturbation) and ``--sync-batchnorm`` (BatchNorm statistics over
the global batch), with the digits task, whose runs take seconds."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from benchmarks.__main__ import main
from benchmarks.config import ConfigError, TrainConfig, cell_id
from benchmarks.distributed import World, data_parallel
from test_data_parallel import cell_dir, command, kill_after, run

CELL = ["digits", "--optimizer", "sam", "--batch-size", "32", "--max-steps", "6", "--device", "cpu",
        "--progress", "none", "--threads", "1"]


def final_weights(runs) -> dict[str, torch.Tensor]:
    return torch.load(cell_dir(runs) / "checkpoint.pt", weights_only=False)["model"]


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.mark.slow
def test_sync_local_perturbs_with_each_ranks_own_gradient(tmp_path):
    weights = {}
    for processes in (1, 2):
        for sync in ("global", "local"):
            runs = tmp_path / f"{processes}-{sync}"
            done = run(processes, [*CELL, "--sync", sync, "--runs-dir", str(runs)])
            assert done.returncode == 0, done.stderr[-2000:]
            weights[processes, sync] = final_weights(runs)
    # One process: its gradient is the global one, so "local" is the same computation.
    assert largest_difference(weights[1, "global"], weights[1, "local"]) == 0.0
    # Two: each rank perturbs along its own half-batch gradient, another ascent and so
    # other weights (a sync option that did not reach the optimizer would leave them equal).
    assert largest_difference(weights[2, "global"], weights[2, "local"]) > 1e-5


@pytest.mark.slow
def test_a_sync_local_vasso_run_killed_mid_run_resumes_every_ranks_own_average(tmp_path):
    """Under --sync local each rank's VaSSO average is its own: the checkpoint holds all
    of them and each rank resumes its own, so the resumed run ends bit-identical."""
    args = [*CELL, "--optimizer", "vasso", "--sync", "local", "--max-steps", "30",
            "--checkpoint-every-steps", "1"]
    whole = run(2, [*args, "--runs-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    runs = tmp_path / "killed"
    step = kill_after(command(2, [*args, "--runs-dir", str(runs)]), runs, step=8)
    assert 8 <= step < 30 and not (cell_dir(runs) / "result.json").exists()
    checkpoint = torch.load(cell_dir(runs) / "checkpoint.pt", weights_only=False)
    averages = [state["state"] for state in checkpoint["optimizer_by_rank"]]
    assert len(averages) == 2 and any(  # the ranks' averages differ: one alone would not do
        not torch.equal(averages[0][k]["grad_avg"], averages[1][k]["grad_avg"]) for k in averages[0])
    # Another number of processes cannot take the ranks' states over: one line, exit 2,
    # and the checkpoint stays as it was for the right number.
    one = run(1, [*args, "--runs-dir", str(runs)])
    assert one.returncode == 2 and one.stderr.endswith(
        "its checkpoint was written by 2 process(es) under --sync local, whose optimizer state "
        "is per rank; resume it with 2, not 1\n"), one.stderr[-2000:]
    resumed = run(2, [*args, "--runs-dir", str(runs)])
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]
    assert largest_difference(final_weights(runs), final_weights(tmp_path / "whole")) == 0.0
    # The base optimizer alone has no perturbation state: it resumes as ever.
    sgd = [*args, "--optimizer", "sgd", "--runs-dir", str(tmp_path / "sgd")]
    kill_after(command(2, sgd), tmp_path / "sgd", step=4)
    resumed = run(2, sgd)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]


def test_sync_batchnorm_on_cpu_processes_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main([*CELL, "--sync-batchnorm", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks: error: --sync-batchnorm on CPU processes: "
                          "torch's SyncBatchNorm runs on GPUs only") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_gsam_with_alpha_cannot_perturb_per_rank():
    with pytest.raises(ConfigError, match="--sync='local': GSAM with --gsam-alpha=0.1 descends"):
        TrainConfig("digits", optimizer="gsam", gsam_alpha=0.1, sync="local")
    TrainConfig("digits", optimizer="gsam", gsam_alpha=0.0, sync="local")  # alpha 0: plain SAM's descent


def test_the_new_options_at_their_defaults_leave_every_cell_id_as_it_was():
    cfg = TrainConfig("digits", optimizer="vasso")
    assert cell_id(TrainConfig("digits", optimizer="vasso", sync="global", sync_batchnorm=False)) == cell_id(cfg)
    assert len({cell_id(cfg), cell_id(TrainConfig("digits", optimizer="vasso", sync="local")),
                cell_id(TrainConfig("digits", optimizer="vasso", sync_batchnorm=True))}) == 3


def _wrap(rank: int, directory: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{directory}/store", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    kept, trained = data_parallel(model, World(rank, 2), torch.device("cpu"))
    torch.save({"norm": type(kept[1]).__name__, "ddp": type(trained).__name__,
                "wraps": kept is model and trained.module is model},
               os.path.join(directory, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_data_parallel_wraps_in_ddp_and_keeps_per_rank_batchnorm_by_default(tmp_path):
    model = nn.BatchNorm1d(3)
    assert data_parallel(model, World(), torch.device("cpu"), True) == (model, model)  # one process
    torch.multiprocessing.spawn(_wrap, args=(str(tmp_path),), nprocs=2, join=True)
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) == {
            "norm": "BatchNorm2d", "ddp": "DistributedDataParallel", "wraps": True}
    # --sync-batchnorm's SyncBatchNorm runs on GPUs only (DDP refuses it on CPU modules):
    # its path is not run here (docs/imagenet.md).
