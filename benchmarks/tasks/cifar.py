"""CIFAR-10 / CIFAR-100 through torchvision's dataset classes.

Data lives in ``data_dir/cifar-10-batches-py`` or ``data_dir/cifar-100-python`` (the
extracted official archives); it is downloaded only with ``--download``. Every file is
checked against the official md5 (``benchmarks.checksums``: once, then remembered), so
a truncated or corrupted file stops the run naming it; ``--download`` replaces a
damaged copy (from the archive in ``data_dir`` when that one is intact). Training
augmentation, as the official VaSSO code: RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize, then Cutout 16x16 with probability
``cutout_prob`` (:class:`benchmarks.data.Augmentation`), the patch zeroed after
normalisation. ``norm_stats`` picks the statistics: the official code's CIFAR-10
values for both datasets ("official"), or each dataset's own ("dataset"); see
docs/recipe.md. Both splits are :class:`benchmarks.data.AugmentedImages`: the
DataLoader path applies each sample's
drawn augmentation with torchvision's functional transforms, and the fast path
(``--fast``, ``benchmarks.fast.DeviceCIFAR.from_dataset``) applies the very same
draws on the device. The draws are pure functions of (seed, epoch), so runs resume
bit-exactly.
"""

from __future__ import annotations

import pathlib
import pickle

import torch
from torchvision import datasets
from torchvision.datasets.utils import download_and_extract_archive

from .. import checksums
from ..config import ConfigError, TrainConfig
from ..data import Augmentation, AugmentedImages, cifar_statistics
from .base import Task, TaskData, data_seed, noisy_labels


def _presence_only(cls: type) -> type:
    """A torchvision CIFAR class that checks the extracted files exist, not their md5:
    :func:`_verify` has checked them (and remembers it), so that 180 MB are not hashed
    again at every start."""
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


CIFAR10 = _presence_only(datasets.CIFAR10)
CIFAR100 = _presence_only(datasets.CIFAR100)
OFFICIAL = {CIFAR10: datasets.CIFAR10, CIFAR100: datasets.CIFAR100}  # with their md5s
_DATASETS = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}


def _missing_files(cls: type, root: pathlib.Path) -> list[str]:
    folder = root / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [name for name in names if not (folder / name).is_file()]


def _official_md5s(cls: type) -> dict[str, str]:
    official = OFFICIAL[cls]
    files = dict(official.train_list + official.test_list)
    files[official.meta["filename"]] = official.meta["md5"]
    return files


def _verify(cls: type, root: pathlib.Path) -> None:
    checksums.verify(root / cls.base_folder, _official_md5s(cls),
                     fix=f"Pass --download to replace it, or extract {cls.url} into {root} again.")


def _download(cls: type, root: pathlib.Path, dataset: str) -> None:
    """Fetch (or re-extract, when the archive in ``root`` is intact) the official archive."""
    official, archive = OFFICIAL[cls], root / cls.filename
    damaged = archive.is_file() and checksums.md5(archive) != official.tgz_md5
    try:
        download_and_extract_archive(official.url, str(root), filename=official.filename,
                                     md5=official.tgz_md5)
    except (RuntimeError, OSError) as err:  # no network, a failed download
        local = (f"the local archive {archive} fails its md5 checksum (a damaged or incomplete "
                 "download), and " if damaged else "")
        raise ConfigError(f"{dataset} --download: {local}downloading {official.url} failed "
                          f"({err}). Download it by hand, check its md5 ({official.tgz_md5}), "
                          f"and extract it into {root}.") from None


def _load(cls: type, root: pathlib.Path, train: bool):
    try:
        return cls(str(root), train=train)
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, RuntimeError) as err:
        # Only with checksums switched off can a damaged file get here: name it.
        folder = root / cls.base_folder
        for name in _official_md5s(cls):
            try:
                with open(folder / name, "rb") as f:
                    pickle.load(f, encoding="latin1")
            except Exception:  # noqa: BLE001 - this is the broken one
                raise ConfigError(f"{folder / name} cannot be read ({type(err).__name__}: {err}): "
                                  "it is truncated or corrupted. Pass --download to replace it, "
                                  f"or extract {cls.url} into {root} again.") from None
        raise


class CifarTask(Task):
    name = "cifar"

    def missing_data(self, cfg: TrainConfig) -> str | None:
        cls = _DATASETS[cfg.dataset][0]
        root = pathlib.Path(cfg.data_dir)
        missing = _missing_files(cls, root)
        if not missing:
            return None
        return (f"{cfg.dataset} not found: {root / cls.base_folder} lacks {', '.join(missing)}. "
                f"Extract {cls.url} into {root} (it unpacks to {cls.base_folder}/)")

    def load_data(self, cfg: TrainConfig) -> TaskData:
        cls, num_classes = _DATASETS[cfg.dataset]
        mean, std = cifar_statistics(cfg.dataset, cfg.norm_stats)
        root = pathlib.Path(cfg.data_dir)
        missing = None if cfg.download else self.missing_data(cfg)
        if missing:
            raise ConfigError(f"{missing}, pass --data-dir where it is, or pass --download.")
        if _missing_files(cls, root):  # with --download
            _download(cls, root, cfg.dataset)
        try:
            _verify(cls, root)
        except ConfigError:
            if not cfg.download:
                raise
            _download(cls, root, cfg.dataset)  # replaces the damaged copy
            _verify(cls, root)
        train, test = _load(cls, root, train=True), _load(cls, root, train=False)
        labels, record = noisy_labels(cfg, torch.tensor(train.targets), num_classes)
        augmentation = Augmentation(crop_padding=4, flip=True, cutout_size=16,
                                    cutout_prob=cfg.cutout_prob)
        return TaskData(
            train=AugmentedImages(train.data, labels, mean=mean, std=std,
                                  augmentation=augmentation, seed=data_seed(cfg, "augment")),
            test=AugmentedImages(test.data, test.targets, mean=mean, std=std),
            num_classes=num_classes, record=record,
            meta={"data_checksums": checksums.status()})
