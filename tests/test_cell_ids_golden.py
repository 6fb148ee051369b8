"""The cell ids of every experiment of the paper are pinned (tests/golden/cell_ids.json).

A cell id names a run directory, ``<runs-dir>/<experiment>/<cell-id>``: a changed id
orphans the runs users already have for that cell (``python -m slurm`` would train it
again, ``python -m results`` shows it as missing). scripts/golden_cell_ids.py writes
the file and says what changed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

from benchmarks import config
from benchmarks.config import TrainConfig, cell_fields, cell_id

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "golden_cell_ids.py"


def _script():
    spec = importlib.util.spec_from_file_location("golden_cell_ids", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cell_ids_of_every_experiment_are_as_pinned():
    golden = _script()
    found = golden.changes(json.loads(golden.GOLDEN.read_text()), golden.cell_ids())
    assert not found, (
        "cell ids changed:\n  " + "\n  ".join(found) + "\n"
        "A cell id names a run directory: changing it orphans every run users already have "
        "for that cell (slurm reruns it, results shows it missing). Keep the ids: a new config "
        "field goes into benchmarks.config.FIELDS_ADDED_AFTER_PIN (it joins an id only away "
        "from its default), and a field only some methods read goes into their `fields` in "
        "benchmarks.methods. Only for a deliberate change that must split cells, rerun "
        "`python scripts/golden_cell_ids.py --write` and say so in the release notes.")


def test_the_pinned_file_covers_every_cell():
    golden = _script()
    pinned = json.loads(golden.GOLDEN.read_text())
    for name, experiment in golden.EXPERIMENTS.items():
        assert set(pinned[name].values()) == {cell_id(c) for c in experiment.cells}, name


def test_a_field_added_after_the_pin_joins_an_id_only_away_from_its_default(monkeypatch):
    cfg = TrainConfig("digits")
    before = cell_id(cfg)
    monkeypatch.setattr(config, "FIELDS_ADDED_AFTER_PIN", ("eval_every",))
    assert "eval_every" not in cell_fields(cfg) and cell_id(cfg) != before  # left out at 1
    sparse = dataclasses.replace(cfg, eval_every=2)
    assert cell_fields(sparse)["eval_every"] == 2 and cell_id(sparse) != cell_id(cfg)
