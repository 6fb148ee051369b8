"""Where ImageNet lives under ``--data-dir``, and what of it is missing.

The standard ImageFolder layout, as torchvision's ``ImageFolder`` reads it::

    <data-dir>/imagenet/train/<wnid>/*.JPEG     1,281,167 images in 1,000 class folders
    <data-dir>/imagenet/val/<wnid>/*.JPEG       50,000 images, 50 per class

The validation images of the official releases come in one flat folder;
``python -m benchmarks.imagenet prepare-val`` sorts them into class folders
(:mod:`benchmarks.imagenet.prepare`). Class indices are the sorted wnids, as
ImageFolder numbers them, so ``train`` and ``val`` must hold the same classes.
"""

from __future__ import annotations

import os
import pathlib

ROOT = "imagenet"
SPLITS = ("train", "val")
# The official ILSVRC-2012 classification set.
OFFICIAL = {"classes": 1000, "train": 1_281_167, "val": 50_000}
# What ImageFolder reads: torchvision's IMG_EXTENSIONS (a test holds them equal), spelled
# out so that the preparation command starts without importing torch.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

HOW = ("put the training images at {root}/train/<wnid>/*.JPEG and the validation images at "
       "{root}/val/<wnid>/*.JPEG (python -m benchmarks.imagenet prepare-val sorts the official "
       "flat validation folder), or pass --data-dir where they are")


def root(data_dir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(data_dir) / ROOT


def is_image(name: str) -> bool:
    """Whether ImageFolder reads a file of this name (it compares the suffix lower-cased)."""
    return name.lower().endswith(IMG_EXTENSIONS)


def class_folders(split: pathlib.Path) -> list[str]:
    """The sorted class folder names of a split (ImageFolder's class order)."""
    with os.scandir(split) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _loose_images(split: pathlib.Path) -> int:
    with os.scandir(split) as entries:
        return sum(1 for e in entries if e.is_file() and is_image(e.name))


def _has_image(folder: pathlib.Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image(e.name) for e in entries)


def missing_data(data_dir: str | os.PathLike) -> str | None:
    """What of ImageNet is not in place under ``data_dir``, and what to put where, in
    one line; None when the layout is complete. Cheap (a sweep asks it of every cell):
    it lists the split folders and looks into each class folder for one image, but
    counts nothing (the dataset's meta records the counts when a run loads it)."""
    base = root(data_dir)
    how = HOW.format(root=base)
    for split in SPLITS:
        if not (base / split).is_dir():
            return f"ImageNet not found: {base / split} does not exist; {how}"
    classes = {}
    for split in SPLITS:
        folder = base / split
        classes[split] = class_folders(folder)
        loose = _loose_images(folder)
        if loose and split == "val":
            return (f"ImageNet's validation images are not sorted: {folder} holds {loose} images "
                    "outside class folders; run python -m benchmarks.imagenet prepare-val "
                    f"--data-dir {data_dir}")
        if loose:
            return f"ImageNet incomplete: {folder} holds {loose} images outside class folders; {how}"
        if not classes[split]:
            return f"ImageNet incomplete: {folder} has no class folders; {how}"
        empty = [c for c in classes[split] if not _has_image(folder / c)]
        if empty:
            return (f"ImageNet incomplete: {len(empty)} class folders of {folder} hold no image "
                    f"({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''}); {how}")
    train, val = set(classes["train"]), set(classes["val"])
    if train != val:
        only = sorted(train - val)
        where, other = ("train", "val") if only else ("val", "train")
        only = only or sorted(val - train)
        return (f"ImageNet incomplete: {len(only)} classes are in {base / where} but not in "
                f"{base / other} ({', '.join(only[:3])}{', ...' if len(only) > 3 else ''}); "
                "both splits need the same class folders")
    return None
