"""Sort ImageNet's flat validation folder into class folders, from the official ground truth.

The official releases ship the 50,000 validation images in one folder
(``ILSVRC2012_val_00000001.JPEG`` ...) and their classes in a separate file, either

* ``LOC_val_solution.csv`` (the Kaggle release): ``ImageId,PredictionString`` per
  image, the string's first token being the class wnid; or
* the devkit (``ILSVRC2012_devkit_t12``): ``data/ILSVRC2012_validation_ground_truth.txt``,
  one ILSVRC2012_ID per line for image 1, 2, ..., and ``data/meta.mat``, whose
  ``synsets`` map each ID of a leaf class (no children) to its wnid.

:func:`sort_validation` moves each image it has a class for into ``val/<wnid>/`` by
one ``os.rename`` (atomic: an image is in exactly one place at any moment), creates
no file, and leaves every other file where it is. A rerun, after an interruption or
not, finds the images already in place and moves the rest; an image whose
destination is taken is left alone and reported. It reports what it moved, what was
already in place, what it could not place and which ground-truth images it did not
find.
"""

from __future__ import annotations

import csv
import os
import pathlib
import re
from collections import Counter
from dataclasses import dataclass, field

from . import layout

WNID = re.compile(r"n\d{8}")
SOLUTION = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_GROUND_TRUTH = pathlib.Path("data", "ILSVRC2012_validation_ground_truth.txt")
DEVKIT_META = pathlib.Path("data", "meta.mat")


class GroundTruthError(ValueError):
    """A ground-truth file that is missing or cannot be read: one line, what and where."""


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def read_solution(path: pathlib.Path) -> dict[str, str]:
    """``LOC_val_solution.csv`` -> {image id: wnid}."""
    labels = {}
    try:
        with open(path, newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header != ["ImageId", "PredictionString"]:
                raise GroundTruthError(f"{path} is not Kaggle's {SOLUTION}: its header is "
                                       f"{header}, expected ImageId,PredictionString")
            for line, row in enumerate(rows, start=2):
                wnid = row[1].split()[0] if len(row) == 2 and row[1].split() else ""
                if not WNID.fullmatch(wnid):
                    raise GroundTruthError(f"{path}:{line}: expected an image id and a "
                                           f"prediction string starting with a wnid, got {row}")
                labels[row[0]] = wnid
    except OSError as err:
        raise GroundTruthError(f"cannot read {path}: {err.strerror}") from None
    return labels


def read_devkit(devkit: pathlib.Path) -> dict[str, str]:
    """The devkit's ground truth and meta.mat -> {image id: wnid}."""
    import scipy.io  # only this command needs it

    meta, truth = devkit / DEVKIT_META, devkit / DEVKIT_GROUND_TRUTH
    for path in (meta, truth):
        if not path.is_file():
            raise GroundTruthError(f"{path} not found: --devkit takes the extracted "
                                   f"{DEVKIT} folder, which holds {DEVKIT_META} and "
                                   f"{DEVKIT_GROUND_TRUTH}")
    try:
        synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
        wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets
                   if int(s["num_children"]) == 0}  # the leaves are the 1,000 classes
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise GroundTruthError(f"{meta} is not the devkit's meta.mat (a 'synsets' struct "
                               f"array with ILSVRC2012_ID, WNID, num_children): {err}") from None
    labels = {}
    for number, line in enumerate(truth.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if not line.strip().isdigit() or int(line) not in wnid_of:
            raise GroundTruthError(f"{truth}:{number}: {line.strip()!r} is not the "
                                   f"ILSVRC2012_ID of a class in {meta}")
        labels[f"ILSVRC2012_val_{number:08d}"] = wnid_of[int(line)]
    return labels


def find_ground_truth(base: pathlib.Path, solution: str | None, devkit: str | None
                      ) -> tuple[str, dict[str, str]]:
    """The labels from the file the user named, else from one found in ``base``;
    returns (where they came from, labels)."""
    if solution and devkit:
        raise GroundTruthError("pass --solution or --devkit, not both")
    if not solution and not devkit:
        if (base / SOLUTION).is_file():
            solution = str(base / SOLUTION)
        elif (base / DEVKIT).is_dir():
            devkit = str(base / DEVKIT)
        else:
            raise GroundTruthError(
                f"no ground truth found: pass --solution PATH/{SOLUTION} (the Kaggle release) "
                f"or --devkit PATH/{DEVKIT} (the extracted devkit), or put either in {base}")
    if solution:
        return solution, read_solution(pathlib.Path(solution))
    return str(devkit), read_devkit(pathlib.Path(devkit))


@dataclass
class Report:
    moved: int = 0
    in_place: int = 0
    unplaced: list[str] = field(default_factory=list)   # loose images with no ground truth
    taken: list[str] = field(default_factory=list)      # loose images whose destination exists
    elsewhere: list[str] = field(default_factory=list)  # sorted images in another class than the truth's
    missing: list[str] = field(default_factory=list)    # ground-truth images found nowhere
    per_class: Counter = field(default_factory=Counter)  # ground-truth images in their folders

    @property
    def complete(self) -> bool:
        """Every loose image found its class folder."""
        return not self.unplaced and not self.taken

    def lines(self, val: pathlib.Path, source: str, total: int, dry_run: bool) -> list[str]:
        verb = "would move" if dry_run else "moved"
        out = [f"{val}: {verb} {self.moved:,} images into class folders, {self.in_place:,} "
               f"were already in place (ground truth: {source})"]
        counts = self.per_class.values()
        placed = sum(counts) + (self.moved if dry_run else 0)
        out.append(f"{placed:,} of the {total:,} ground-truth images are in class folders"
                   + (f" ({len(self.per_class):,} classes, {min(counts)} to {max(counts)} "
                      "images per class)" if counts and not dry_run else ""))
        for names, what in ((self.unplaced, "left in place, not in the ground truth"),
                            (self.taken, "left in place, a file of that name is already in "
                                         "its class folder"),
                            (self.elsewhere, "in another class folder than the ground truth "
                                             "says (not moved)"),
                            (self.missing, "not found, ground-truth images")):
            if names:
                out.append(f"{what}: {len(names):,} ({', '.join(names[:3])}"
                           f"{', ...' if len(names) > 3 else ''})")
        return out


def sort_validation(val: pathlib.Path, labels: dict[str, str], dry_run: bool = False) -> Report:
    """Move each loose image of ``val`` that ``labels`` names into ``val/<wnid>/``."""
    report, seen = Report(), set()
    for wnid in layout.class_folders(val):
        for name in sorted(os.listdir(val / wnid)):
            if not layout.is_image(name) or _stem(name) not in labels:
                continue
            seen.add(_stem(name))
            if labels[_stem(name)] == wnid:
                report.in_place += 1
                report.per_class[wnid] += 1
            else:
                report.elsewhere.append(f"{wnid}/{name}")
    loose = sorted(e.name for e in os.scandir(val) if e.is_file() and layout.is_image(e.name))
    for name in loose:
        wnid = labels.get(_stem(name))
        if wnid is None:
            report.unplaced.append(name)
            continue
        target = val / wnid / name
        if target.exists():
            report.taken.append(name)
            continue
        seen.add(_stem(name))
        report.moved += 1
        if not dry_run:
            target.parent.mkdir(exist_ok=True)
            os.rename(val / name, target)
            report.per_class[wnid] += 1
    report.missing = sorted(set(labels) - seen)
    return report
