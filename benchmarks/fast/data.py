"""CIFAR held on the device as uint8, augmented there in a few vectorised kernels.

A PIL ``DataLoader`` feeds a few thousand CIFAR images per second per CPU worker,
which starves a fast GPU (a ResNet-18 SAM step at batch 128 eats ~18k images/s).
:class:`DeviceCIFAR` keeps the whole split on the device (50000 x 32 x 32 x 3
uint8 is 150 MB) and builds each batch with one gather and two element-wise
kernels, drawing the same augmentation distribution as the torchvision pipeline
``RandomCrop(32, padding=4) -> RandomHorizontalFlip() -> ToTensor() -> Normalize
-> Cutout`` (``tests/test_fast_data.py`` checks this statistically):

* crop: zero padding of ``pad`` pixels, then a 32 x 32 window whose top-left
  corner is uniform over the ``(2 pad + 1)^2`` positions, independently per image.
  Padded pixels are black *before* normalisation, as with torchvision.
* flip: left-right with probability 1/2, after the crop.
* cutout (DeVries & Taylor 2017, :class:`benchmarks.data.Cutout`): with
  probability ``p`` a ``size`` x ``size`` square whose centre is uniform over the
  32 x 32 image, clipped at the borders, is set to 0 *after* normalisation.

Randomness: the batch order of epoch ``e`` is
:func:`benchmarks.data.epoch_permutation` (the very order the DataLoader path
uses, so both paths see the same batches); the augmentation of epoch ``e`` is
drawn at once from a generator on the device seeded with
``derive_seed(seed, e, "device-augment")``. Both are pure functions of
``(seed, epoch)``, so a run resumed mid-epoch (``batches(epoch, start=k)``) sees
the batches it would have seen. The per-sample draws differ from the DataLoader
path's (which seeds each sample's PIL transform); only their distribution agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from benchmarks.data import derive_seed, epoch_permutation

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class Augmentation:
    """The train-time augmentation; ``Augmentation.none()`` for evaluation."""

    crop_padding: int = 4
    flip: bool = True
    cutout_size: int = 16
    cutout_prob: float = 1.0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout_size < 0 or not 0 <= self.cutout_prob <= 1:
            raise ValueError(f"invalid augmentation {self}: padding and cutout size must be "
                             ">= 0 and cutout_prob in [0, 1]")

    @classmethod
    def none(cls) -> "Augmentation":
        return cls(crop_padding=0, flip=False, cutout_size=0, cutout_prob=0.0)

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip and (self.cutout_size == 0
                                                             or self.cutout_prob == 0)


@dataclass
class AugmentationDraw:
    """The random decisions for ``n`` images (all on one device).

    ``offsets``: (n, 2) top-left corner (row, col) of the crop window in the
    padded image, in ``[0, 2 pad]``; ``flip``: (n,) bool; ``cutout_centre``: (n, 2)
    (row, col) in ``[0, H) x [0, W)``; ``cutout``: (n,) bool, whether to cut.
    """

    offsets: Tensor
    flip: Tensor
    cutout_centre: Tensor
    cutout: Tensor

    def __getitem__(self, index: Tensor | slice) -> "AugmentationDraw":
        return AugmentationDraw(self.offsets[index], self.flip[index],
                                self.cutout_centre[index], self.cutout[index])


def draw_augmentation(n: int, aug: Augmentation, height: int, width: int,
                      generator: torch.Generator) -> AugmentationDraw:
    """Draw the augmentation of ``n`` images on ``generator``'s device."""
    device = generator.device
    offsets = torch.randint(0, 2 * aug.crop_padding + 1, (n, 2), generator=generator,
                            device=device)
    flip = torch.rand(n, generator=generator, device=device) < (0.5 if aug.flip else 0.0)
    centre = torch.stack([torch.randint(0, height, (n,), generator=generator, device=device),
                          torch.randint(0, width, (n,), generator=generator, device=device)], 1)
    cut = torch.rand(n, generator=generator, device=device) < (
        aug.cutout_prob if aug.cutout_size > 0 else 0.0)
    return AugmentationDraw(offsets, flip, centre, cut)


def augment(images: Tensor, draw: AugmentationDraw, *, padding: int, cutout_size: int,
            scale: Tensor, shift: Tensor, index: Tensor | None = None) -> Tensor:
    """Crop, flip, normalise and cut out uint8 NHWC images; returns a float NCHW batch.

    ``images``: (N, H, W, C) uint8; ``index``: (B,) the images to take (default:
    all), gathered in the same kernel as the crop. ``draw``: B decisions. ``scale``, ``shift``: (C,) float with
    ``x = pixel * scale + shift`` (``scale = 1 / (255 std)``, ``shift = -mean / std``).
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


def _as_nhwc_uint8(images: Tensor | np.ndarray) -> Tensor:
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be a 4-d uint8 array (N, H, W, C) or (N, C, H, W), "
                         f"got dtype {images.dtype} and shape {tuple(images.shape)}")
    if images.shape[-1] in (1, 3):       # NHWC, as torchvision's CIFAR10(...).data
        return images.contiguous()
    if images.shape[1] in (1, 3):        # NCHW
        return images.permute(0, 2, 3, 1).contiguous()
    raise ValueError(f"cannot tell the channel axis of images with shape {tuple(images.shape)}: "
                     "expected 1 or 3 channels first (N, C, H, W) or last (N, H, W, C)")


class DeviceCIFAR:
    """A CIFAR split on ``device``, served as augmented, normalised float batches.

    >>> train = DeviceCIFAR(ds.data, ds.targets, batch_size=128, seed=seed, device="cuda",
    ...                     augmentation=Augmentation(), channels_last=True)
    >>> for x, y in train.batches(epoch): ...

    ``shuffle`` (default: on when augmenting) orders each epoch by
    :func:`benchmarks.data.epoch_permutation`; ``drop_last`` (default: as
    ``shuffle``) keeps full batches only, as training needs (a batch of one breaks
    BatchNorm), while evaluation wants every sample. ``channels_last`` returns
    batches in channels-last memory, which the images' NHWC storage gives for free.
    """

    def __init__(self, images: Tensor | np.ndarray, labels: Tensor | np.ndarray | Sequence[int],
                 *, batch_size: int, mean: Sequence[float] = CIFAR10_MEAN,
                 std: Sequence[float] = CIFAR10_STD, augmentation: Augmentation | None = None,
                 shuffle: bool | None = None, drop_last: bool | None = None, seed: int = 0,
                 device: torch.device | str = "cpu", channels_last: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.images = _as_nhwc_uint8(images).to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        channels = self.images.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} entries, got {len(mean)} and {len(std)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.augmentation = augmentation or Augmentation.none()
        self.shuffle = (not self.augmentation.is_identity) if shuffle is None else shuffle
        self.drop_last = self.shuffle if drop_last is None else drop_last
        if self.drop_last and len(self.images) < batch_size:
            raise ValueError(f"{len(self.images)} images make no full batch of {batch_size}: "
                             "lower batch_size or pass drop_last=False")
        self.seed = seed
        self.channels_last = channels_last
        std_t = torch.tensor(std, dtype=dtype, device=self.device)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, dtype=dtype, device=self.device) / std_t

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
        """The augmentation of every position of ``epoch``'s order."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(derive_seed(self.seed, epoch, "device-augment"))
        _, height, width, _ = self.images.shape
        return draw_augmentation(len(self.images), self.augmentation, height, width, generator)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(inputs, labels)`` for batches ``start, start + 1, ...`` of ``epoch``.

        ``inputs``: (B, C, H, W) float, normalised, augmented; ``labels``: (B,) int64.
        All randomness of the epoch is drawn before the first batch (a handful of
        kernels), so ``start`` skips batches without changing the ones it yields.
        """
        order = self.order(epoch)
        draw = self.draw(epoch) if not self.augmentation.is_identity else None
        aug = self.augmentation
        for k in range(start, len(self)):
            positions = slice(k * self.batch_size, (k + 1) * self.batch_size)
            index = order[positions]
            if draw is None:
                pixels = self.images[index].to(self.scale.dtype)
                x = (pixels * self.scale + self.shift).permute(0, 3, 1, 2)
            else:
                x = augment(self.images, draw[positions], padding=aug.crop_padding,
                            cutout_size=aug.cutout_size, scale=self.scale, shift=self.shift,
                            index=index)
            if not self.channels_last:
                x = x.contiguous()
            yield x, self.labels[index]
