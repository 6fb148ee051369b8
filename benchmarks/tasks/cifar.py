"""CIFAR-10 / CIFAR-100 through torchvision's dataset classes.

Data lives in ``data_dir/cifar-10-batches-py`` or ``data_dir/cifar-100-python`` (the
extracted official archives); it is downloaded only with ``--download``. Training
augmentation, as the official VaSSO code: RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize, then Cutout 16x16 with probability
``cutout_prob`` (:class:`benchmarks.data.Augmentation`), the patch zeroed after
normalisation. ``norm_stats`` picks the statistics: the official code's CIFAR-10
values for both datasets ("official"), or each dataset's own ("dataset"); see
docs/recipe.md. Both splits are :class:`benchmarks.data.AugmentedImages`: the DataLoader path applies each sample's
drawn augmentation with torchvision's functional transforms, and the fast path
(``--fast``, ``benchmarks.fast.DeviceCIFAR.from_dataset``) applies the very same
draws on the device. The draws are pure functions of (seed, epoch), so runs resume
bit-exactly.
"""

from __future__ import annotations

import pathlib

import torch
from torchvision import datasets

from ..config import ConfigError, TrainConfig
from ..data import Augmentation, AugmentedImages, cifar_statistics
from .base import Task, TaskData, data_seed, noisy_labels


def _presence_only(cls: type) -> type:
    """A torchvision CIFAR class that checks the extracted files exist, not their md5.

    The md5 of the downloaded archive is still verified on download; skipping the
    per-file md5 saves reading 180 MB at every start and lets tests use small files
    written in the real format.
    """
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


CIFAR10 = _presence_only(datasets.CIFAR10)
CIFAR100 = _presence_only(datasets.CIFAR100)
_DATASETS = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}


def _missing_files(cls: type, root: pathlib.Path) -> list[str]:
    folder = root / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [name for name in names if not (folder / name).is_file()]


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
        try:
            train = cls(str(root), train=True, download=cfg.download)
            test = cls(str(root), train=False)
        except (RuntimeError, OSError) as err:  # a failed download (no network, bad archive)
            raise ConfigError(f"{cfg.dataset} could not be loaded into {root}: {err}. Download "
                              f"{cls.url} by hand and extract it there.") from err
        labels, record = noisy_labels(cfg, torch.tensor(train.targets), num_classes)
        augmentation = Augmentation(crop_padding=4, flip=True, cutout_size=16,
                                    cutout_prob=cfg.cutout_prob)
        return TaskData(
            train=AugmentedImages(train.data, labels, mean=mean, std=std,
                                  augmentation=augmentation, seed=data_seed(cfg, "augment")),
            test=AugmentedImages(test.data, test.targets, mean=mean, std=std),
            num_classes=num_classes, record=record)
