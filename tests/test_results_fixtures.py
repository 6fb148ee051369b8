"""Run directories written the way the engine writes them, for the results tests (no tests here).

The tests build their own Experiment objects and fill their run directories
with chosen numbers, so the expected tables are known exactly and nothing
trains.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from benchmarks import rundir
from benchmarks.config import TrainConfig, run_dir
from benchmarks.experiments import Experiment
from bench_fixtures import fake_result


def cifar_cell(root: Path, experiment: str, model: str, optimizer: str, seed: int, **fields) -> TrainConfig:
    return TrainConfig(
        task="cifar", dataset="cifar10", model=model, optimizer=optimizer, seed=seed,
        experiment=experiment, runs_dir=str(root), **fields,
    )


def write_config(cfg: TrainConfig, **overrides) -> Path:
    path = run_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), **overrides}))
    return path


def write_metrics(path: Path, accs: list[float], truncate_last: bool = False) -> None:
    """One train and one test line per epoch; optionally cut the last line mid-write."""
    lines = []
    for epoch, acc in enumerate(accs, start=1):
        for split, value in (("train", acc + 1.0), ("test", acc)):
            lines.append(json.dumps({"epoch": epoch, "step": 10 * epoch, "split": split,
                                     "loss": 0.5, "acc": value, "time_s": 1.0 * epoch, "lr": 0.05}))
    text = "\n".join(lines) + "\n"
    if truncate_last:
        text = text[: len(text) - 25]  # a crash mid-write leaves half a line, no newline
    (path / "metrics.jsonl").write_text(text)


def write_done(cfg: TrainConfig, final: float, best: float | None = None, curve: list[float] | None = None) -> Path:
    path = write_config(cfg)
    curve = curve if curve is not None else [final - 2.0, final - 1.0, final]
    write_metrics(path, curve)
    best = max(curve + [final]) if best is None else best
    (path / "result.json").write_text(json.dumps(fake_result(final, best, epochs=len(curve))))
    return path


def write_failed(cfg: TrainConfig, message: str = "CUDA out of memory") -> Path:
    path = write_config(cfg)
    error = {"type": "RuntimeError", "message": message, "traceback": "Traceback ...\nRuntimeError"}
    (path / "error.json").write_text(json.dumps(error))
    return path


def write_running(cfg: TrainConfig) -> Path:
    """Held by a live process: this test's own."""
    path = write_config(cfg)
    write_metrics(path, [50.0])
    rundir.acquire_lock(path / rundir.LOCK, rundir.owner())  # the engine's lock, held by this process
    return path


def write_stopped(cfg: TrainConfig) -> Path:
    path = write_config(cfg)
    write_metrics(path, [50.0, 60.0])
    return path


def golden_experiment(root: Path) -> Experiment:
    """CIFAR-10 (so the paper's values apply), three models, three methods, three seeds.

    resnet18: every seed done. wrn28_10: sgd one done, one failed, one not
    launched; sam all failed; vasso one running, one stopped, one not launched.
    vgg11_bn: nothing launched (and no paper value).
    """
    finals = {
        ("resnet18", "sgd"): [96.0, 96.2, 96.4],
        ("resnet18", "sam"): [96.5, 96.7, 96.6],
        ("resnet18", "vasso"): [96.8, 96.9, 97.0],
    }
    cells = []
    for model in ("resnet18", "wrn28_10", "vgg11_bn"):
        for optimizer in ("sgd", "sam", "vasso"):
            for seed in range(3):
                cfg = cifar_cell(root, "cifar10", model, optimizer, seed)
                cells.append(cfg)
                if model == "resnet18":
                    write_done(cfg, finals[(model, optimizer)][seed], best=97.5 + seed / 10)
                elif model == "wrn28_10" and optimizer == "sgd":
                    [lambda c: write_done(c, 97.0), write_failed, lambda c: None][seed](cfg)
                elif model == "wrn28_10" and optimizer == "sam":
                    write_failed(cfg)
                elif model == "wrn28_10" and optimizer == "vasso":
                    [write_running, write_stopped, lambda c: None][seed](cfg)
    return Experiment(name="cifar10", title="Table 1: CIFAR-10 test accuracy", cells=tuple(cells))
