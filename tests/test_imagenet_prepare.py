"""ImageNet's layout (benchmarks/imagenet/layout.py) and the validation folder's
preparation (``python -m benchmarks.imagenet prepare-val``), on tiny real JPEG files
with both official ground-truth formats."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from torchvision.datasets import ImageFolder

from benchmarks.imagenet import layout
from benchmarks.imagenet.__main__ import main
from imagenet_fixtures import WNIDS, write_devkit, write_flat_val, write_jpeg, write_solution, write_train

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def flat(tmp_path) -> tuple[pathlib.Path, dict[str, str]]:
    """A data dir with a sorted train split and the official flat val folder."""
    write_train(tmp_path, per_class=1)
    return tmp_path, write_flat_val(tmp_path, per_class=3)


def files_by_class(val: pathlib.Path) -> dict[str, str]:
    """{image id: its class folder} of every sorted image."""
    return {p.stem: p.parent.name for p in val.glob("*/*.JPEG")}


def loose(val: pathlib.Path) -> list[str]:
    return sorted(p.name for p in val.glob("*.JPEG"))


def test_kaggle_solution_sorts_every_image_into_its_class(flat, capsys):
    data, labels = flat
    write_solution(data / "imagenet" / "LOC_val_solution.csv", labels)  # found there
    assert main(["prepare-val", "--data-dir", str(data)]) == 0
    val = data / "imagenet" / "val"
    assert files_by_class(val) == labels and loose(val) == []
    out = capsys.readouterr().out
    assert "moved 9 images" in out and "9 of the 9 ground-truth images" in out
    assert "3 classes, 3 to 3 images per class" in out
    assert layout.missing_data(data) is None
    # What the task reads: ImageFolder's class index of each image is its wnid's rank.
    folder = ImageFolder(str(val))
    assert folder.classes == sorted(WNIDS)
    for path, target in folder.samples:
        assert folder.classes[target] == labels[pathlib.Path(path).stem]


def test_devkit_ground_truth_and_meta_mat_sort_every_image(flat, tmp_path_factory, capsys):
    data, labels = flat
    devkit = tmp_path_factory.mktemp("devkit") / "ILSVRC2012_devkit_t12"
    write_devkit(devkit, labels)
    assert main(["prepare-val", "--data-dir", str(data), "--devkit", str(devkit)]) == 0
    assert files_by_class(data / "imagenet" / "val") == labels
    assert f"ground truth: {devkit}" in capsys.readouterr().out


def test_a_rerun_moves_nothing_and_an_interrupted_run_finishes(flat, capsys):
    data, labels = flat
    write_solution(data / "imagenet" / "LOC_val_solution.csv", labels)
    val = data / "imagenet" / "val"
    # An interrupted run: some images already moved, the rest still loose.
    for image_id in sorted(labels)[:4]:
        (val / labels[image_id]).mkdir(exist_ok=True)
        os.rename(val / f"{image_id}.JPEG", val / labels[image_id] / f"{image_id}.JPEG")
    assert main(["prepare-val", "--data-dir", str(data)]) == 0
    assert "moved 5 images into class folders, 4 were already in place" in capsys.readouterr().out
    before = {p: p.read_bytes() for p in val.rglob("*.JPEG")}
    assert main(["prepare-val", "--data-dir", str(data)]) == 0
    assert "moved 0 images into class folders, 9 were already in place" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in val.rglob("*.JPEG")} == before


def test_what_it_cannot_place_stays_where_it_is_and_is_reported(flat, capsys):
    data, labels = flat
    val = data / "imagenet" / "val"
    rng = np.random.default_rng(5)
    write_jpeg(val / "stray.JPEG", rng)                            # not in the ground truth
    taken = sorted(labels)[0]                                       # its destination exists
    write_jpeg(val / labels[taken] / f"{taken}.JPEG", rng)
    own = (val / f"{taken}.JPEG").read_bytes()
    absent = sorted(labels)[-1]
    (val / f"{absent}.JPEG").unlink()                               # a ground-truth image missing
    write_solution(data / "imagenet" / "LOC_val_solution.csv", labels)
    assert main(["prepare-val", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert loose(val) == sorted(["stray.JPEG", f"{taken}.JPEG"])
    assert (val / f"{taken}.JPEG").read_bytes() == own             # neither file overwritten
    assert "not in the ground truth: 1 (stray.JPEG)" in out
    assert f"already in its class folder: 1 ({taken}.JPEG)" in out
    assert f"not found, ground-truth images: 1 ({absent})" in out
    assert "moved 7 images" in out
    # The task refuses the half-sorted folder, saying what to run.
    assert "prepare-val" in layout.missing_data(data)


def test_dry_run_moves_nothing(flat, capsys):
    data, labels = flat
    write_solution(data / "imagenet" / "LOC_val_solution.csv", labels)
    assert main(["prepare-val", "--data-dir", str(data), "--dry-run"]) == 0
    assert "would move 9 images" in capsys.readouterr().out
    assert len(loose(data / "imagenet" / "val")) == 9


@pytest.mark.parametrize("case, message", [
    ("no ground truth", "no ground truth found: pass --solution"),
    ("no val folder", "does not exist: put the official validation images"),
    ("bad csv", "LOC_val_solution.csv:3: expected an image id"),
    ("devkit id unknown", "ILSVRC2012_validation_ground_truth.txt:2: '7' is not the "
                          "ILSVRC2012_ID of a class"),
    ("devkit incomplete", "meta.mat not found: --devkit takes the extracted"),
])
def test_bad_input_is_one_line_and_moves_nothing(flat, case, message, capsys):
    data, labels = flat
    base = data / "imagenet"
    args = ["prepare-val", "--data-dir", str(data)]
    if case == "no val folder":
        args[-1] = str(data / "elsewhere")
    elif case == "bad csv":
        write_solution(base / "LOC_val_solution.csv", labels)
        lines = (base / "LOC_val_solution.csv").read_text().splitlines()
        lines[2] = "ILSVRC2012_val_00000002,"
        (base / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    elif case.startswith("devkit"):
        write_devkit(base / "ILSVRC2012_devkit_t12", labels)
        if case == "devkit id unknown":
            truth = base / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
            lines = truth.read_text().splitlines()
            truth.write_text("\n".join([lines[0], "7", *lines[2:]]) + "\n")
        else:
            (base / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m benchmarks.imagenet: error: ")
    assert message in lines[0] and out == ""
    assert len(loose(base / "val")) == 9


def test_the_command_line_exits_2_with_one_line_and_starts_without_torch(tmp_path):
    """The real entry point, in a fresh interpreter: bad input is exit 2 and one line, and
    the command imports neither torch nor torchvision (it only moves files)."""
    code = ("import sys, runpy; sys.argv = ['x', 'prepare-val', '--data-dir', sys.argv[1]]\n"
            "try:\n    runpy.run_module('benchmarks.imagenet', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules, 'torchvision' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.stdout.split() == ["2", "False", "False"]
    assert proc.stderr.count("\n") == 1 and f"{tmp_path / 'imagenet' / 'val'} does not exist" in proc.stderr


def test_image_suffixes_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert layout.IMG_EXTENSIONS == IMG_EXTENSIONS


@pytest.mark.parametrize("damage, message", [
    ("nothing", "train does not exist"),
    ("flat val", "validation images are not sorted: "),
    ("empty class", "1 class folders of "),
    ("class only in train", "1 classes are in "),
    ("loose train image", "images outside class folders"),
])
def test_missing_or_partial_data_says_what_to_put_where(tmp_path, damage, message, capsys):
    if damage != "nothing":
        write_train(tmp_path, per_class=1)
        labels = write_flat_val(tmp_path, per_class=1)
        if damage != "flat val":
            write_solution(tmp_path / "imagenet" / "LOC_val_solution.csv", labels)
            assert main(["prepare-val", "--data-dir", str(tmp_path)]) == 0
    train = tmp_path / "imagenet" / "train"
    if damage == "empty class":
        for p in (train / WNIDS[1]).iterdir():
            p.unlink()
    elif damage == "class only in train":
        write_jpeg(train / "n09999999" / "x.JPEG", np.random.default_rng(0))
    elif damage == "loose train image":
        write_jpeg(train / "x.JPEG", np.random.default_rng(0))
    problem = layout.missing_data(tmp_path)
    assert problem is not None and message in problem and "\n" not in problem
    capsys.readouterr()
    assert main(["check", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m benchmarks.imagenet: error: {problem}\n"
