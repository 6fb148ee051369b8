"""The paper's reference values (results/reference/paper.csv).

The paper's own numbers are not available as text: the values are read off
the radar chart in the official README, so each carries a reading
uncertainty and a `source` column saying so. Tables print them as "≈96.77"
and say in the caption where they come from (`REFERENCE_NOTE`).

A value applies to a cell only inside the experiment named in its
`experiment` column (a clean CIFAR-10 number is no reference for a
label-noise run of the same model) and when dataset, model and method match.
Model names are compared without case and punctuation ("wrn28_10" matches
"WRN-28-10").
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAPER_CSV = Path(__file__).parent / "reference" / "paper.csv"
RECIPE_MD = Path(__file__).resolve().parent.parent / "docs" / "recipe.md"  # the official code beside the suite
REFERENCE_NOTE = "≈: the paper's value, read off the official README's figure (results/reference/paper.csv)"
_COLUMNS = ("experiment", "dataset", "model", "method", "metric", "value", "uncertainty", "source")


@dataclass(frozen=True)
class ReferenceValue:
    value: float
    uncertainty: float  # of reading the figure, in accuracy points
    source: str
    text: str  # the value as written in paper.csv: "81.0" keeps its one decimal


def _key(*parts: Any) -> tuple[str, ...]:
    return tuple(re.sub(r"[^a-z0-9]", "", str(p).lower()) for p in parts)


class ReferenceTable:
    """Reference test accuracies keyed by (experiment, dataset, model, method)."""

    def __init__(self, values: dict[tuple[str, ...], ReferenceValue]):
        self._values = values

    @classmethod
    def load(cls, path: Path = PAPER_CSV) -> ReferenceTable:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {list(_COLUMNS)}")
            values = {}
            for line, row in enumerate(reader, start=2):
                if row["metric"] != "test_acc":
                    continue
                try:
                    value, uncertainty = float(row["value"]), float(row["uncertainty"])
                except ValueError:
                    raise ValueError(f"{path}:{line}: value and uncertainty must be numbers") from None
                if not (math.isfinite(value) and math.isfinite(uncertainty)):
                    raise ValueError(f"{path}:{line}: value and uncertainty must be finite")
                key = _key(row["experiment"], row["dataset"], row["model"], row["method"])
                values[key] = ReferenceValue(value, uncertainty, row["source"], row["value"].strip())
        return cls(values)

    def lookup(self, experiment: str, cfg: Any) -> ReferenceValue | None:
        """The reference test accuracy for the cell `cfg` of `experiment`, if the paper has one."""
        parts = [getattr(cfg, name, None) for name in ("dataset", "model", "optimizer")]
        if any(p is None for p in parts):
            return None
        return self._values.get(_key(experiment, *parts))


def recipe_rows(path: Path = RECIPE_MD) -> list[dict[str, str]]:
    """The rows of the one table of docs/recipe.md (the CIFAR recipe, setting by setting:
    the official code, the paper, the suite, why they differ), keyed by its header."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    split = lambda line: [cell.strip() for cell in line.strip().strip("|").split("|")]
    header = split(lines[0])
    return [dict(zip(header, split(line))) for line in lines[2:]]
