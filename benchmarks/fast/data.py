"""CIFAR held on the device as uint8, augmented there in a few vectorised kernels.

A PIL ``DataLoader`` feeds a few thousand CIFAR images per second per CPU worker,
which starves a fast GPU (a ResNet-18 SAM step at batch 128 eats ~18k images/s).
:class:`DeviceCIFAR` keeps the whole split on the device (50000 x 32 x 32 x 3
uint8 is 150 MB) and builds each batch with one gather and two element-wise
kernels, applying the augmentation of :class:`benchmarks.data.Augmentation`
(``RandomCrop(32, padding=4) -> RandomHorizontalFlip() -> ToTensor() -> Normalize
-> Cutout``):

* crop: zero padding of ``pad`` pixels, then a 32 x 32 window whose top-left
  corner is uniform over the ``(2 pad + 1)^2`` positions, independently per image.
  Padded pixels are black *before* normalisation, as with torchvision.
* flip: left-right with probability 1/2, after the crop.
* cutout (DeVries & Taylor 2017, :func:`benchmarks.data.cutout_box`): with
  probability ``p`` a ``size`` x ``size`` square whose centre is uniform over the
  32 x 32 image, clipped at the borders, is set to 0 *after* normalisation.

Randomness: the batch order of epoch ``e`` is
:func:`benchmarks.data.epoch_permutation` and its augmentation is
:func:`benchmarks.data.epoch_augmentation` (drawn on the CPU, moved to the device
once per epoch, indexed by sample index): the very draws the torchvision path
(:class:`benchmarks.data.AugmentedImages`) applies, so both paths train on the same
images up to floating-point rounding. Both are pure functions of ``(seed, epoch)``,
so a run resumed mid-epoch (``batches(epoch, start=k)``) sees the batches it would
have seen. ``tests/test_fast_data.py`` checks the distribution against an
independent torchvision pipeline and the agreement with the torchvision path.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from benchmarks.data import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD,
                             Augmentation, AugmentationDraw, AugmentedImages, as_nhwc_uint8,
                             draw_augmentation, epoch_augmentation, epoch_permutation,
                             normalisation)

__all__ = ["Augmentation", "AugmentationDraw", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN",
           "CIFAR100_STD", "DeviceCIFAR", "augment", "draw_augmentation"]


def augment(images: Tensor, draw: AugmentationDraw, *, padding: int, cutout_size: int,
            scale: Tensor, shift: Tensor, index: Tensor | None = None) -> Tensor:
    """Crop, flip, normalise and cut out uint8 NHWC images; returns a float NCHW batch.

    ``images``: (N, H, W, C) uint8; ``index``: (B,) the images to take (default:
    all), gathered in the same kernel as the crop. ``draw``: B decisions. ``scale``,
    ``shift``: (C,) float with ``x = pixel * scale + shift``
    (:func:`benchmarks.data.normalisation`).
    The result is a (B, C, H, W) view of channels-last memory (call
    ``.contiguous()`` for NCHW memory). Every operation is batched: one gather for
    crop + flip, one fused multiply-add, one masked fill; no Python loop over images.
    """
    _, height, width, _ = images.shape
    device = images.device
    batch = len(draw.flip)
    if index is None:
        index = torch.arange(batch, device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    # Output pixel (i, j) of the crop reads padded pixel (oy + i, ox + j), i.e. source
    # pixel (oy + i - pad, ox + j - pad); a flip reads column W - 1 - j of the crop instead.
    src_rows = draw.offsets[:, :1] - padding + rows                                 # (B, H)
    crop_cols = torch.where(draw.flip[:, None], (width - 1) - cols, cols)           # (B, W)
    src_cols = draw.offsets[:, 1:] - padding + crop_cols                            # (B, W)
    inside = (((src_rows >= 0) & (src_rows < height))[:, :, None]
              & ((src_cols >= 0) & (src_cols < width))[:, None, :])                 # (B, H, W)
    # One flat gather of whole pixels (C bytes each): index_select beats 3-d advanced indexing.
    flat = ((index[:, None, None] * height + src_rows.clamp(0, height - 1)[:, :, None]) * width
            + src_cols.clamp(0, width - 1)[:, None, :])                            # (B, H, W)
    pixels = images.reshape(-1, images.shape[-1]).index_select(0, flat.reshape(-1))
    pixels = pixels.view(batch, height, width, -1)                                  # (B, H, W, C)
    # Zero padding, as RandomCrop(padding=...) pads black before normalisation.
    pixels = pixels * inside[..., None]
    x = pixels.to(scale.dtype) * scale + shift
    if cutout_size > 0:
        # The square [c - size//2, c + size - size//2) per axis, clipped by the comparisons.
        low = draw.cutout_centre - cutout_size // 2                                 # (B, 2)
        high = low + cutout_size
        in_rows = (rows >= low[:, :1]) & (rows < high[:, :1])                       # (B, H)
        in_cols = (cols >= low[:, 1:]) & (cols < high[:, 1:])                       # (B, W)
        cut = in_rows[:, :, None] & in_cols[:, None, :] & draw.cutout[:, None, None]
        x = x.masked_fill(cut[..., None], 0.0)
    return x.permute(0, 3, 1, 2)


class DeviceCIFAR:
    """A CIFAR split on ``device``, served as augmented, normalised float batches.

    >>> train = DeviceCIFAR(ds.data, ds.targets, batch_size=128, seed=seed, device="cuda",
    ...                     augmentation=Augmentation(), channels_last=True)
    >>> for x, y in train.batches(epoch): ...

    ``seed`` orders each epoch by :func:`benchmarks.data.epoch_permutation` (when
    ``shuffle``, by default on when augmenting); ``augment_seed`` (default ``seed``)
    draws each epoch's augmentation by :func:`benchmarks.data.epoch_augmentation`.
    ``drop_last`` (default: as ``shuffle``) keeps full batches only, as training
    needs (a batch of one breaks BatchNorm), while evaluation wants every sample.
    ``channels_last`` returns batches in channels-last memory, which the images'
    NHWC storage gives for free. ``batches_per_call`` batches are built by one
    call of the augmentation (about 40 small kernels whatever its size: on a GPU
    their launches, not the pixels, set the cost of a batch) and served as views
    of it; every sample's result is the same, whatever the grouping.
    :meth:`from_dataset` serves an
    :class:`benchmarks.data.AugmentedImages` split with its own statistics,
    augmentation and augmentation seed: the same images, from the device.
    """

    def __init__(self, images: Tensor | np.ndarray, labels: Tensor | np.ndarray | Sequence[int],
                 *, batch_size: int, mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD, augmentation: Augmentation | None = None,
                 shuffle: bool | None = None, drop_last: bool | None = None, seed: int = 0,
                 augment_seed: int | None = None, device: torch.device | str = "cpu",
                 channels_last: bool = False, dtype: torch.dtype = torch.float32,
                 batches_per_call: int = 8) -> None:
        self.device = torch.device(device)
        self.images = as_nhwc_uint8(images).to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        channels = self.images.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} entries, got {len(mean)} and {len(std)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batches_per_call < 1:
            raise ValueError(f"batches_per_call must be >= 1, got {batches_per_call}")
        self.batches_per_call = batches_per_call
        self.batch_size = batch_size
        self.augmentation = augmentation or Augmentation.none()
        self.shuffle = (not self.augmentation.is_identity) if shuffle is None else shuffle
        self.drop_last = self.shuffle if drop_last is None else drop_last
        if self.drop_last and len(self.images) < batch_size:
            raise ValueError(f"{len(self.images)} images make no full batch of {batch_size}: "
                             "lower batch_size or pass drop_last=False")
        self.seed = seed
        self.augment_seed = seed if augment_seed is None else augment_seed
        self.channels_last = channels_last
        self.scale, self.shift = normalisation(mean, std, dtype, self.device)

    @classmethod
    def from_dataset(cls, dataset: AugmentedImages, *, batch_size: int, seed: int | None = None,
                     device: torch.device | str = "cpu", channels_last: bool = False
                     ) -> "DeviceCIFAR":
        """The split of ``dataset`` on ``device``: its images, labels, statistics,
        augmentation and augmentation seed. With a ``seed`` it is a training split:
        every epoch shuffled by that seed, full batches only, as the DataLoader path
        (whether or not it augments); without one, an evaluation split: every sample,
        in order."""
        if not isinstance(dataset, AugmentedImages):
            raise TypeError(f"DeviceCIFAR.from_dataset needs a benchmarks.data.AugmentedImages, "
                            f"got {type(dataset).__name__}")
        training = seed is not None
        return cls(dataset.images, dataset.labels, batch_size=batch_size, mean=dataset.mean,
                   std=dataset.std, augmentation=dataset.augmentation, shuffle=training,
                   seed=seed if training else 0, augment_seed=dataset.seed, device=device,
                   channels_last=channels_last)

    def __len__(self) -> int:
        """The number of batches per epoch."""
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> Tensor:
        """The sample order of ``epoch`` on the device."""
        if not self.shuffle:
            return torch.arange(len(self.images), device=self.device)
        return epoch_permutation(len(self.images), self.seed, epoch).to(self.device)

    def draw(self, epoch: int) -> AugmentationDraw:
        """The augmentation of every sample in ``epoch``, indexed by sample index, on the device."""
        _, height, width, _ = self.images.shape
        return epoch_augmentation(len(self.images), self.augmentation, height, width,
                                  self.augment_seed, epoch).to(self.device)

    def batches(self, epoch: int = 0, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(inputs, labels)`` for batches ``start, ..., stop - 1`` of ``epoch``.

        ``inputs``: (B, C, H, W) float, normalised, augmented; ``labels``: (B,) int64.
        ``stop`` defaults to ``len(self)``. All randomness of the epoch is drawn before
        the first batch, so ``start`` skips batches without changing the ones it yields.
        """
        stop = len(self) if stop is None else min(stop, len(self))
        order = self.order(epoch)
        draw = self.draw(epoch) if not self.augmentation.is_identity else None
        aug, size = self.augmentation, self.batch_size
        for first in range(start, stop, self.batches_per_call):
            last = min(first + self.batches_per_call, stop)
            index = order[first * size:last * size]
            if draw is None:
                pixels = self.images[index].to(self.scale.dtype)
                x = (pixels * self.scale + self.shift).permute(0, 3, 1, 2)
            else:
                x = augment(self.images, draw[index], padding=aug.crop_padding,
                            cutout_size=aug.cutout_size, scale=self.scale, shift=self.shift,
                            index=index)
            if not self.channels_last:
                x = x.contiguous()
            labels = self.labels[index]
            for k in range(last - first):  # views along the batch axis keep the memory format
                yield x[k * size:(k + 1) * size], labels[k * size:(k + 1) * size]
