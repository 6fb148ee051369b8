"""CIFAR-10 / CIFAR-100 through torchvision's dataset classes.

Data lives in ``data_dir/cifar-10-batches-py`` or ``data_dir/cifar-100-python`` (the
extracted official archives); it is downloaded only with ``--download``. Training
augmentation, as the official VaSSO code: RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize(CIFAR mean/std), then Cutout 16x16 with
probability ``cutout_prob``. Each sample is augmented under its own seed
(``benchmarks.data.SeededAugment``), so runs resume bit-exactly.
"""

from __future__ import annotations

import pathlib

import torch
from torchvision import datasets, transforms

from ..config import ConfigError, TrainConfig
from ..data import Cutout, IndexedTensors, SeededAugment
from .base import Task, TaskData, data_seed, noisy_labels

# Channel statistics of the training sets (the values the CIFAR literature uses).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


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
_DATASETS = {"cifar10": (CIFAR10, 10, CIFAR10_MEAN, CIFAR10_STD),
             "cifar100": (CIFAR100, 100, CIFAR100_MEAN, CIFAR100_STD)}


def _missing_files(cls: type, root: pathlib.Path) -> list[str]:
    folder = root / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [name for name in names if not (folder / name).is_file()]


class CifarTask(Task):
    name = "cifar"

    def load_data(self, cfg: TrainConfig) -> TaskData:
        cls, num_classes, mean, std = _DATASETS[cfg.dataset]
        root = pathlib.Path(cfg.data_dir)
        missing = _missing_files(cls, root)
        if missing and not cfg.download:
            raise ConfigError(
                f"{cfg.dataset} not found: {root / cls.base_folder} lacks {', '.join(missing)}. "
                f"Extract {cls.url} into {root} (it unpacks to {cls.base_folder}/), "
                "pass --data-dir where it is, or pass --download.")
        try:
            train = cls(str(root), train=True, download=cfg.download)
            test = cls(str(root), train=False)
        except (RuntimeError, OSError) as err:  # a failed download (no network, bad archive)
            raise ConfigError(f"{cfg.dataset} could not be loaded into {root}: {err}. Download "
                              f"{cls.url} by hand and extract it there.") from err
        labels, record = noisy_labels(cfg, torch.tensor(train.targets), num_classes)
        train.targets = labels.tolist()

        normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                   *normalize]
        if cfg.cutout_prob > 0:
            augment.append(Cutout(16, p=cfg.cutout_prob))
        # The test set is normalised once, up front: evaluation then reads tensors.
        test_x = torch.stack([transforms.Compose(normalize)(image) for image, _ in test])
        return TaskData(
            train=SeededAugment(train, transforms.Compose(augment), data_seed(cfg, "augment")),
            test=IndexedTensors(test_x, torch.tensor(test.targets, dtype=torch.int64)),
            num_classes=num_classes, record=record)
