"""The cell ids of every experiment in benchmarks/experiments.py, pinned.

    python scripts/golden_cell_ids.py            # compare with the pinned file; exit 1 on a change
    python scripts/golden_cell_ids.py --write    # pin the ids as they are now

A cell id names a run directory (``<runs-dir>/<experiment>/<cell-id>``): when an id
changes, the runs users already have for that cell are no longer found by
``python -m slurm`` (which reruns the cell) or ``python -m results`` (which shows it
as missing). tests/test_cell_ids_golden.py fails on any change; rewrite the file only
for a change that must split cells, and say so in the release notes. A new config
field does not need that: list it in ``benchmarks.config.FIELDS_ADDED_AFTER_PIN``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "cell_ids.json"

if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks.config import TrainConfig, cell_fields, cell_id  # noqa: E402
from benchmarks.experiments import EXPERIMENTS  # noqa: E402


def label(cell: TrainConfig, varying: list[str]) -> str:
    """The fields that tell a cell apart within its experiment: "optimizer=sam model=resnet18 seed=0"."""
    fields = cell_fields(cell)
    return " ".join(f"{k}={fields[k]}" for k in varying if k in fields)


def cell_ids() -> dict[str, dict[str, str]]:
    """``{experiment: {cell label: cell id}}`` for every experiment, in declaration order."""
    out = {}
    for name, experiment in EXPERIMENTS.items():
        rows = [cell_fields(c) for c in experiment.cells]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        varying = [k for k in keys if len({json.dumps(row[k]) for row in rows if k in row}) > 1]
        out[name] = {label(c, varying): cell_id(c) for c in experiment.cells}
    return out


def changes(pinned: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> list[str]:
    """One line per experiment whose cell ids differ from the pinned ones: pinned ids
    that are gone (their runs are orphaned) and new ids (harmless, but not pinned)."""
    lines = []
    for name in dict.fromkeys([*pinned, *now]):
        old, new = pinned.get(name, {}), now.get(name, {})
        gone = [(k, v) for k, v in old.items() if v not in set(new.values())]
        added = [(k, v) for k, v in new.items() if v not in set(old.values())]
        if gone:
            lines.append(f"{name}: {len(gone)} of {len(old)} pinned cell ids are gone (their runs "
                         f"would be orphaned), e.g. {gone[0][0]!r} was {gone[0][1]}"
                         + (f", now {new[gone[0][0]]}" if gone[0][0] in new else ""))
        if added:
            lines.append(f"{name}: {len(added)} cell(s) not pinned yet, e.g. {added[0][0]!r} "
                         f"({added[0][1]})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {GOLDEN.relative_to(REPO)}")
    args = parser.parse_args(argv)
    now = cell_ids()
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(now, indent=1) + "\n")
        print(f"wrote {GOLDEN.relative_to(REPO)}: {sum(map(len, now.values()))} cells of "
              f"{len(now)} experiments")
        return 0
    found = changes(json.loads(GOLDEN.read_text()), now)
    for line in found:
        print(line)
    print("cell ids as pinned" if not found else "cell ids changed (see the module docstring)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
