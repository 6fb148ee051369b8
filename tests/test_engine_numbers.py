"""The engine computes what it computed before the engine refactor (#11).

``engine_numbers.json`` holds the metrics lines and result of a few cells, recorded
on the code before the refactor (commit f3ae99a, one thread, this file's
``record()``): the demo's five methods at seed 0 (the whole 30-epoch cells), and
short digits and CIFAR-fixture cells that cover the other options (the base
optimizers, every schedule, bf16, label smoothing, the fast path on the CPU).
The refactored engine must give the same numbers: exactly equal floats here, as
the same operations run in the same order on one thread.

Rerecord (only when a change is *meant* to change the numbers) with
``python tests/test_engine_numbers.py``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest

from benchmarks import experiments
from benchmarks.config import LOCATION_FIELDS, TrainConfig, run_dir
from benchmarks.engine import train
from bench_fixtures import read_metrics, write_cifar10

FIXTURE = pathlib.Path(__file__).with_name("engine_numbers.json")
RECORDED: dict = {}
DIGITS = dict(task="digits", epochs=2, progress="none", threads=1)
CIFAR = dict(task="cifar", epochs=2, batch_size=8, num_workers=0, progress="none", threads=1,
             device="cpu")


def short_cells() -> dict[str, dict]:
    """Short cells that exercise the options, by name: the config fields of each."""
    return {
        **{f"digits-{m}": dict(DIGITS, optimizer=m, label_noise=0.2)
           for m in experiments.OPTIMIZERS},
        "digits-adamw-vasso": dict(DIGITS, optimizer="vasso", base="adamw", lr=0.003),
        "digits-constant-warmup-nesterov": dict(DIGITS, schedule="constant", warmup_epochs=1.0,
                                                nesterov=True, epochs=3, eval_every=2),
        "digits-cosine-epoch-both-ls": dict(DIGITS, optimizer="sam", schedule="cosine-epoch",
                                            bn_stats="both", label_smoothing=0.1),
        "digits-gsam-alpha-ascent2": dict(DIGITS, optimizer="gsam", gsam_alpha=0.02,
                                          gsam_rho_min=0.01, ascent_every=2),
        "digits-asam-all-bf16": dict(DIGITS, optimizer="asam", asam_scale="all", precision="bf16"),
        "cifar-sam-loader": dict(CIFAR, optimizer="sam", model="resnet18", fast="off"),
        "cifar-vasso-fast": dict(CIFAR, optimizer="vasso", model="resnet18", fast="on"),
    }


def demo_cells() -> dict[str, dict]:
    """The demo's cells at seed 0, one per method: their config fields."""
    cells = [c for c in experiments.get("demo").cells if c.seed == 0]
    return {f"demo-{c.optimizer}": {k: v for k, v in dataclasses.asdict(c).items()
                                    if k not in LOCATION_FIELDS} | {"progress": "none", "threads": 1}
            for c in cells}


def run_cell(fields: dict, tmp: pathlib.Path) -> dict:
    """Train one cell into ``tmp``; its metrics lines and result, without the times."""
    data = tmp / "data"
    if fields["task"] == "cifar" and not (data / "cifar-10-batches-py").exists():
        write_cifar10(data)
    cfg = TrainConfig(**fields, runs_dir=str(tmp / "runs"), data_dir=str(data))
    result = train(cfg)
    return {"metrics": read_metrics(run_dir(cfg)),
            "final": result["final"], "best": result["best"]}


RECORDED.update(json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {})


def check(name: str, tmp: pathlib.Path) -> None:
    recorded = RECORDED[name]
    got = run_cell(recorded["config"], tmp)
    assert got["metrics"] == recorded["metrics"]  # every epoch's train and test line, exactly
    # result.json's named form (#11) of the recorded {"test_acc", ...} sections
    old_final, old_best = recorded["final"], recorded["best"]
    assert got["final"]["test"] == {"acc": old_final["test_acc"], "loss": old_final["test_loss"]}
    assert got["final"]["train"] == {"acc": old_final["train_acc"], "loss": old_final["train_loss"]}
    assert got["final"]["epoch"] == old_final["epoch"]
    assert (got["best"]["test"]["acc"], got["best"]["epoch"]) == (old_best["test_acc"], old_best["epoch"])


@pytest.mark.parametrize("name", list(short_cells()))
def test_short_cells_give_the_numbers_recorded_before_the_refactor(name, tmp_path):
    assert RECORDED[name]["config"] == short_cells()[name]
    check(name, tmp_path)


@pytest.mark.slow  # the whole 30-epoch cells: ~15 s each on one core
@pytest.mark.parametrize("name", [f"demo-{m}" for m in experiments.OPTIMIZERS])
def test_demo_cells_give_the_numbers_recorded_before_the_refactor(name, tmp_path):
    check(name, tmp_path)


def record() -> None:
    import tempfile
    numbers = {}
    for name, fields in {**short_cells(), **demo_cells()}.items():
        with tempfile.TemporaryDirectory() as tmp:
            numbers[name] = {"config": fields, **run_cell(fields, pathlib.Path(tmp))}
        print(name, numbers[name]["final"], flush=True)
    FIXTURE.write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__":  # PYTHONPATH=. python tests/test_engine_numbers.py
    record()
