"""ImageNet-1k (ILSVRC-2012) classification: top-1 and top-5 accuracy.

The data is the ImageFolder tree under ``--data-dir`` (``benchmarks.imagenet.layout``;
docs/imagenet.md says how to lay it out and sort the validation folder). Training
crops are RandomResizedCrop + flip, drawn per (seed, epoch, sample) so that a resumed
run sees the same crops; evaluation is Resize + CenterCrop (``benchmarks.imagenet``).

Two data paths give the same batches: PIL in the DataLoader workers, or (``--fast``;
``auto``: on CUDA) the workers read the JPEG files' bytes and the batch is decoded and
augmented on the device. Either way a batch reaches the device as uint8 and is
normalised there once (:meth:`ImageNetTask.to_device`), before the step's passes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ConfigError, TrainConfig
from ..imagenet import layout
from ..imagenet.data import DeviceDecoder, EncodedBatch, ImageNetSplit, collate_encoded
from ..imagenet.transforms import normalise
from ..models import create_model
from .base import ACCURACY, LOSS, Batch, Metric, Task, TaskData, data_seed

TOP5 = Metric("top5", higher_is_better=True, format=".2f", title="top-5 accuracy (%)",
              bounds=(0.0, 100.0))


def decodes_on_device(cfg: TrainConfig) -> bool:
    """``--fast``: on, or auto on CUDA: JPEG decoding and augmentation on the device."""
    if cfg.fast == "auto":
        return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    return cfg.fast == "on"


class ImageNetTask(Task):
    name = "imagenet"
    metrics = (ACCURACY, TOP5, LOSS)
    primary = "acc"

    def missing_data(self, cfg: TrainConfig) -> str | None:
        return layout.missing_data(cfg.data_dir)

    def load_data(self, cfg: TrainConfig) -> TaskData:
        problem = self.missing_data(cfg)
        if problem:
            raise ConfigError(problem)
        base, encoded = layout.root(cfg.data_dir), decodes_on_device(cfg)
        train = ImageNetSplit(base / "train", size=cfg.image_size, train=True,
                              seed=data_seed(cfg, "augment"), encoded=encoded)
        test = ImageNetSplit(base / "val", size=cfg.image_size, train=False, encoded=encoded)
        counts = {"classes": len(train.classes), "train": len(train), "val": len(test)}
        return TaskData(
            train=train, test=test, num_classes=len(train.classes),
            collate=collate_encoded if encoded else None,
            to_device=self._decoder(cfg, train.seed) if encoded else self._mover(),
            meta={"imagenet": {**counts, "official": counts == layout.OFFICIAL,
                               "decoded_on": "device" if encoded else "loader workers"}})

    @staticmethod
    def _mover():
        def to_device(batch: Batch, device: torch.device) -> Batch:
            images, labels = batch
            return (normalise(images.to(device, non_blocking=True)),
                    labels.to(device, non_blocking=True))
        return to_device

    @staticmethod
    def _decoder(cfg: TrainConfig, seed: int):
        decoders: dict[torch.device, DeviceDecoder] = {}

        def to_device(batch: EncodedBatch, device: torch.device) -> Batch:
            if device not in decoders:
                decoders[device] = DeviceDecoder(device, size=cfg.image_size, seed=seed)
            return normalise(decoders[device](batch)), batch.labels.to(device, non_blocking=True)
        return to_device

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        return create_model(cfg.model, data.num_classes, image_size=cfg.image_size)

    def eval_sums(self, model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], int]:
        x, y = batch
        output = model(x)
        top5 = output.topk(min(5, output.shape[1]), dim=1).indices
        return ({"loss": nn.functional.cross_entropy(output.float(), y, reduction="sum"),
                 "correct": (top5[:, 0] == y).sum(), "correct5": (top5 == y[:, None]).any(1).sum()},
                y.shape[0])

    def summarize(self, sums, weight: float) -> dict[str, float]:
        metrics = super().summarize(sums, weight)
        if "correct5" in sums:  # evaluation (training reports top-1 and the loss)
            metrics["top5"] = 100.0 * sums["correct5"] / weight
        return metrics
