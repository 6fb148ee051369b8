"""Data plumbing shared by the tasks: seeds, a resumable batch order, label noise, augmentation.

Reproducibility rests on two rules:

* Every random decision about data is a pure function of a seed and a position:
  the order of epoch ``e`` is ``randperm(n)`` under ``derive_seed(seed, e)``, and the
  augmentation of every sample in epoch ``e`` is drawn at once by
  :func:`epoch_augmentation` under a seed of its own. The state of the "sampler" is
  therefore just (epoch, step in epoch), which the checkpoint stores; a run resumed
  mid-epoch sees the very batches it would have seen.
* Those seeds derive from (task, dataset, model, seed index), never from the
  optimizer, so SGD, SAM and VaSSO cells with the same seed index see the same
  batches, augmentations and noisy labels.

Both image pipelines apply the same :class:`AugmentationDraw`: the torchvision path
(:class:`AugmentedImages`, per sample, in DataLoader workers) and the device path
(``benchmarks.fast.DeviceCIFAR``, batched on the GPU). A cell therefore trains on the
same augmented images whichever path runs it, up to floating-point rounding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

_SEED_MASK = (1 << 63) - 1


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-serialisable parts (stable across runs and machines)."""
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MASK


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)``, a pure function of its inputs."""
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return torch.randperm(n, generator=generator)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, start: int, stop: int
                  ) -> list[list[tuple[int, int]]]:
    """Batches ``start..stop-1`` of ``epoch``, as lists of ``(sample index, epoch)`` keys.

    Full batches only (``drop_last``): a last batch of one sample would break BatchNorm.
    The epoch travels with each index so that an :class:`AugmentedImages` dataset can
    find the sample's augmentation, in whatever worker process fetches it.
    """
    order = epoch_permutation(n, seed, epoch).tolist()
    return [[(i, epoch) for i in order[b * batch_size:(b + 1) * batch_size]]
            for b in range(start, stop)]


def corrupt_labels(labels: torch.Tensor, num_classes: int, rate: float, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric label noise: exactly ``round(rate * n)`` labels changed to a *different* class.

    The corrupted indices are a uniform random subset; each new label is drawn
    uniformly from the ``num_classes - 1`` other classes. Returns ``(noisy labels,
    sorted corrupted indices)``; ``labels`` is not modified.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"label-noise rate must lie in [0, 1), got {rate}")
    if num_classes < 2:
        raise ValueError("label noise needs at least two classes")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    count = int(round(rate * len(labels)))
    indices = torch.randperm(len(labels), generator=generator)[:count].sort().values
    # An offset in 1..C-1 (mod C) is uniform over the other classes and never zero.
    offsets = torch.randint(1, num_classes, (count,), generator=generator)
    noisy = labels.clone()
    noisy[indices] = (labels[indices] + offsets) % num_classes
    return noisy, indices


def label_digest(labels: Sequence[int] | torch.Tensor) -> str:
    """sha256 of a label vector, to record which labels a run trained on."""
    array = torch.as_tensor(labels, dtype=torch.int64).contiguous()
    return hashlib.sha256(array.numpy().tobytes()).hexdigest()


# -- augmentation: one draw per epoch, applied by either image pipeline ---------------

# Channel statistics of the CIFAR training sets (the values the CIFAR literature uses).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# The official VaSSO code's statistics, on the 0..255 scale, used for CIFAR-10 *and*
# CIFAR-100 (docs/recipe.md): close to CIFAR-10's own, not CIFAR-100's.
OFFICIAL_CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
OFFICIAL_CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))


def cifar_statistics(dataset: str, norm_stats: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of ``dataset`` ("cifar10" | "cifar100") under ``norm_stats``:
    "official" (the official code's, for both datasets) or "dataset" (its own)."""
    if norm_stats == "official":
        return OFFICIAL_CIFAR_MEAN, OFFICIAL_CIFAR_STD
    if norm_stats != "dataset":
        raise ValueError(f"norm_stats must be 'official' or 'dataset', got {norm_stats!r}")
    own = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
    if dataset not in own:
        raise ValueError(f"no statistics for dataset {dataset!r}; expected cifar10 or cifar100")
    return own[dataset]


@dataclass(frozen=True)
class Augmentation:
    """The train-time augmentation of the official VaSSO CIFAR code.

    ``RandomCrop(H, padding=crop_padding)`` (zero padding, a window whose top-left
    corner is uniform over the ``(2 pad + 1)^2`` positions), ``RandomHorizontalFlip``
    (probability 1/2) if ``flip``, ``ToTensor``, ``Normalize``, then Cutout (DeVries &
    Taylor 2017): with probability ``cutout_prob`` a ``cutout_size`` square whose
    centre is uniform over the image, clipped at the borders, is set to 0 after
    normalisation (a zero of the *normalised* image, the channel mean, not black).
    The defaults are the official code's ``Cutout(size=16, p=0.5)``.
    ``Augmentation.none()`` (evaluation) changes nothing.
    """

    crop_padding: int = 4
    flip: bool = True
    cutout_size: int = 16
    cutout_prob: float = 0.5

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

    def __getitem__(self, index: Tensor | slice | int) -> "AugmentationDraw":
        return AugmentationDraw(self.offsets[index], self.flip[index],
                                self.cutout_centre[index], self.cutout[index])

    def __len__(self) -> int:
        return len(self.flip)

    def to(self, device: torch.device | str) -> "AugmentationDraw":
        return AugmentationDraw(self.offsets.to(device), self.flip.to(device),
                                self.cutout_centre.to(device), self.cutout.to(device))


def draw_augmentation(n: int, aug: Augmentation, height: int, width: int,
                      generator: torch.Generator) -> AugmentationDraw:
    """Draw the augmentation of ``n`` images on ``generator`` (and its device).

    Every field is drawn whatever ``aug`` says (a disabled part is drawn and never
    applied), so the stream of one part does not shift when another is turned off.
    """
    device = generator.device
    offsets = torch.randint(0, 2 * aug.crop_padding + 1, (n, 2), generator=generator,
                            device=device)
    flip = torch.rand(n, generator=generator, device=device) < (0.5 if aug.flip else 0.0)
    centre = torch.stack([torch.randint(0, height, (n,), generator=generator, device=device),
                          torch.randint(0, width, (n,), generator=generator, device=device)], 1)
    cut = torch.rand(n, generator=generator, device=device) < (
        aug.cutout_prob if aug.cutout_size > 0 else 0.0)
    return AugmentationDraw(offsets, flip, centre, cut)


def epoch_augmentation(n: int, aug: Augmentation, height: int, width: int, seed: int,
                       epoch: int) -> AugmentationDraw:
    """The augmentation of every sample of ``epoch``, indexed by *sample index*.

    A pure function of its arguments, drawn on a CPU generator (the same numbers on
    every machine and whichever device trains): entry ``i`` is what sample ``i``
    gets in this epoch, wherever it falls in the epoch's order, so the DataLoader
    path (keyed by ``(index, epoch)``) and the device path (which gathers the
    entries of a batch's indices) agree, and a resumed run redraws the same epoch.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, "augmentation"))
    return draw_augmentation(n, aug, height, width, generator)


def normalisation(mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """``(scale, shift)``, (C,) each, with ``(pixel / 255 - mean) / std = pixel * scale + shift``.

    Both image pipelines normalise a uint8 pixel with this one formula (a multiply,
    then an add), so they produce the same floats bit for bit.
    """
    std_t = torch.tensor(std, dtype=dtype, device=device)
    return 1.0 / (255.0 * std_t), -torch.tensor(mean, dtype=dtype, device=device) / std_t


def cutout_box(centre_row: int, centre_col: int, size: int, height: int, width: int
               ) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the square ``[c - size//2, c + size - size//2)`` per axis,
    clipped to the image (so near an edge fewer than ``size^2`` pixels are cut)."""
    half = size // 2
    return (max(centre_row - half, 0), min(centre_row + size - half, height),
            max(centre_col - half, 0), min(centre_col + size - half, width))


class Cutout:
    """Zero a ``size`` x ``size`` square of a CHW tensor with probability ``p``.

    A torchvision-style transform drawing from the global torch RNG (the PIL
    reference pipeline of ``make bench`` uses it). The training pipelines apply a
    drawn cutout instead (:class:`AugmentedImages`); both use :func:`cutout_box`.
    """

    def __init__(self, size: int = 16, p: float = 0.5) -> None:
        if size < 1 or not 0 <= p <= 1:
            raise ValueError(f"Cutout needs size >= 1 and p in [0, 1], got size={size}, p={p}")
        self.size, self.p = size, p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.p < 1 and torch.rand(()).item() >= self.p:
            return image
        height, width = image.shape[-2:]
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        y0, y1, x0, x1 = cutout_box(cy, cx, self.size, height, width)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


def as_nhwc_uint8(images: Tensor | np.ndarray) -> Tensor:
    """``images`` as an (N, H, W, C) uint8 tensor; NCHW input is transposed."""
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


class AugmentedImages(Dataset):
    """uint8 images served as normalised, augmented CHW float tensors: the torchvision path.

    ``dataset[(index, epoch)] -> (image, label)``. The augmentation of the sample is
    entry ``index`` of :func:`epoch_augmentation` ``(seed, epoch)``, applied with
    ``torchvision.transforms.functional``: pad (zeros), crop, hflip, then
    :func:`normalisation` and the cutout square set to 0. The epoch's draw is made
    once per process and cached, so any worker fetches the same image for a key,
    and the global torch RNG is never touched. Without augmentation (evaluation)
    a plain ``index`` works too and a batch is normalised in one operation.

    The attributes (``images`` (N, H, W, C) uint8, ``labels``, ``mean``, ``std``,
    ``augmentation``, ``seed``) are all that ``benchmarks.fast.DeviceCIFAR.from_dataset``
    needs to serve the same split from the device.
    """

    def __init__(self, images: Tensor | np.ndarray, labels: Tensor | Sequence[int], *,
                 mean: Sequence[float], std: Sequence[float],
                 augmentation: Augmentation | None = None, seed: int = 0) -> None:
        self.images = as_nhwc_uint8(images)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        channels = self.images.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} entries, got {len(mean)} and {len(std)}")
        self.mean, self.std = tuple(mean), tuple(std)
        scale, shift = normalisation(mean, std)
        self._scale, self._shift = scale[:, None, None], shift[:, None, None]
        self.augmentation = augmentation or Augmentation.none()
        self.seed = seed
        self._draw: tuple[int, AugmentationDraw] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def epoch_draw(self, epoch: int) -> AugmentationDraw:
        """:func:`epoch_augmentation` of this split (cached for the latest epoch)."""
        if self._draw is None or self._draw[0] != epoch:
            _, height, width, _ = self.images.shape
            self._draw = (epoch, epoch_augmentation(len(self), self.augmentation, height, width,
                                                    self.seed, epoch))
        return self._draw[1]

    def _normalise(self, image: Tensor) -> Tensor:
        """(..., C, H, W) uint8 -> normalised float32."""
        return image.to(torch.float32) * self._scale + self._shift

    def _augment(self, image: Tensor, draw: AugmentationDraw) -> Tensor:
        """One CHW uint8 image through the drawn pad -> crop -> flip -> normalise -> cutout."""
        aug = self.augmentation
        _, height, width = image.shape
        if aug.crop_padding:
            top, left = draw.offsets.tolist()
            image = TF.crop(TF.pad(image, [aug.crop_padding], fill=0), top, left, height, width)
        if bool(draw.flip):
            image = TF.hflip(image)
        x = self._normalise(image)
        if bool(draw.cutout):
            y0, y1, x0, x1 = cutout_box(*draw.cutout_centre.tolist(), aug.cutout_size,
                                        height, width)
            x[:, y0:y1, x0:x1] = 0.0
        return x

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, None)
        image = self.images[index].permute(2, 0, 1)
        if self.augmentation.is_identity:
            return self._normalise(image), self.labels[index]
        if epoch is None:
            raise KeyError(f"an augmented dataset is addressed by (index, epoch), got {key!r}")
        return self._augment(image, self.epoch_draw(epoch)[index]), self.labels[index]

    def __getitems__(self, keys: list) -> list[tuple[Tensor, Tensor]]:
        if not self.augmentation.is_identity:
            return [self[key] for key in keys]
        # Evaluation: one gather and one normalisation per batch; the collate stacks it back.
        index = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys])
        batch = self._normalise(self.images[index].permute(0, 3, 1, 2))
        return list(zip(batch, self.labels[index]))


class IndexedTensors(Dataset):
    """In-memory ``(inputs, targets)`` tensors addressed by ``(index, epoch)`` keys."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: tuple[int, int] | int):
        index = key[0] if isinstance(key, tuple) else key
        return self.inputs[index], self.targets[index]

    def __getitems__(self, keys: list) -> list:
        # One gather per batch instead of one per sample; the collate stacks it back.
        index = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys])
        return list(zip(self.inputs[index], self.targets[index]))
