"""A tiny ImageNet in the real on-disk formats: JPEG files written by PIL in the
ImageFolder layout, the official flat validation folder, and both ground-truth
files (Kaggle's LOC_val_solution.csv; the devkit's ground-truth text with a
meta.mat written by scipy.io in the devkit's ``synsets`` structure)."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850")  # the first three ILSVRC-2012 classes


def write_jpeg(path: pathlib.Path, rng: np.random.Generator, height: int | None = None,
               width: int | None = None) -> None:
    """A textured RGB JPEG of random size (ImageNet's images differ in size): a wrong
    crop or flip changes its pixels a lot, while decoders agree on it to a level or two."""
    height = height or int(rng.integers(48, 96))
    width = width or int(rng.integers(48, 96))
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.integers(0, 256, 3)
    image = np.stack([(x * 7 + phase[0]) % 256, (y * 5 + phase[1]) % 256,
                      ((x + 2 * y) * 3 + phase[2]) % 256], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=95)


def write_train(root: pathlib.Path, per_class: int = 4, seed: int = 0) -> None:
    """``root/imagenet/train/<wnid>/<wnid>_<k>.JPEG``."""
    rng = np.random.default_rng(seed)
    for wnid in WNIDS:
        for k in range(per_class):
            write_jpeg(root / "imagenet" / "train" / wnid / f"{wnid}_{k}.JPEG", rng)


def write_flat_val(root: pathlib.Path, per_class: int = 2, seed: int = 1) -> dict[str, str]:
    """The official flat folder ``root/imagenet/val/ILSVRC2012_val_0000000k.JPEG``;
    returns {image id: wnid}, the classes in a shuffled order, as in the real set."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.repeat(np.arange(len(WNIDS)), per_class))
    labels = {}
    for number, cls in enumerate(classes, start=1):
        image_id = f"ILSVRC2012_val_{number:08d}"
        write_jpeg(root / "imagenet" / "val" / f"{image_id}.JPEG", rng)
        labels[image_id] = WNIDS[cls]
    return labels


def write_solution(path: pathlib.Path, labels: dict[str, str]) -> None:
    """Kaggle's LOC_val_solution.csv: the wnid, then a box, per object; rows unsorted."""
    rows = [f"{image_id},{wnid} 10 12 40 44 {wnid} 3 4 20 30 "
            for image_id, wnid in sorted(labels.items(), reverse=True)]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


def write_devkit(devkit: pathlib.Path, labels: dict[str, str]) -> None:
    """``devkit/data/meta.mat`` and ``ILSVRC2012_validation_ground_truth.txt``.

    The synsets carry the devkit's fields; the leaf classes get ILSVRC2012_IDs in an
    order that is *not* their wnids' sorted order, and an inner node (children, id
    1001 as in the real file) comes first, so a reader that ignores ``num_children``
    or assumes ID order = wnid order gets the classes wrong.
    """
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    ids = {WNIDS[2]: 1, WNIDS[0]: 2, WNIDS[1]: 3}
    synsets = np.zeros((len(WNIDS) + 1, 1), dtype=[(f, object) for f in fields])
    synsets[0, 0] = (1001, "n00000001", "an inner node", "", 3, np.array([1, 2, 3]), 1, 0)
    for row, (wnid, number) in enumerate(ids.items(), start=1):
        synsets[row, 0] = (number, wnid, f"class {wnid}", "", 0, np.zeros((1, 0)), 0, 1300)
    (devkit / "data").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(devkit / "data" / "meta.mat", {"synsets": synsets})
    order = sorted(labels)  # image 1, 2, ...
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ids[labels[image_id]]}\n" for image_id in order))


def write_imagenet(root: pathlib.Path) -> pathlib.Path:
    """A complete tiny ImageNet under ``root`` (4 training and 2 validation images per
    class), its validation folder sorted by the preparation command; returns ``root``."""
    from benchmarks.imagenet.__main__ import main

    write_train(root, per_class=4)
    write_solution(root / "imagenet" / "LOC_val_solution.csv", write_flat_val(root, per_class=2))
    assert main(["prepare-val", "--data-dir", str(root)]) == 0
    return root
