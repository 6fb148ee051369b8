"""ImageNet augmentation as decisions drawn on the host, applied by either data path.

Training: ``RandomResizedCrop(size)`` (scale 0.08-1, aspect ratio 3/4-4/3, the
torchvision defaults) then ``RandomHorizontalFlip``; evaluation: ``Resize(256)`` then
``CenterCrop(224)`` (at other sizes, the same 224/256 ratio), then the ImageNet
mean and standard deviation. These are the official VaSSO code's ImageNet transforms
and torchvision's reference recipe.

The random part is a :class:`Crop` per sample, a pure function of (seed, epoch,
sample index, image height, image width) drawn by :func:`train_crop` with
torchvision's own algorithm on a per-sample generator. Both data paths ask it for the
same decision: the DataLoader path for the PIL image it opened, the device path for
the image it decoded on the GPU (a decoded tensor's shape is known on the host). So
both paths crop the same window and flip the same images, whichever process or
device does the work, and a resumed run redraws the same crops. Both then resize
with antialiasing through ``torchvision.transforms.functional``, which takes a PIL
image or a tensor on any device; the pixels agree up to the resampling and JPEG
decoders' rounding.

Both paths produce uint8 images (a quarter of the bytes of float32 to move);
:func:`normalise` turns a batch into the model's input on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import functional as TF

from ..data import derive_seed, normalisation

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
# Evaluation resizes the shorter side to size * 256 / 224, then crops the centre.
RESIZE_RATIO = 256 / 224


@dataclass(frozen=True)
class Crop:
    """The random decisions of one training image: the window ``(top, left, height,
    width)`` in the original image, resized to the training size, and the flip."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def random_resized_crop(height: int, width: int, generator: torch.Generator,
                        scale: tuple[float, float] = SCALE,
                        ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``, drawing from ``generator``
    instead of the global RNG: up to ten tries of an area fraction and a log-uniform
    aspect ratio, else the centre crop clamped to the ratio range. Returns
    ``(top, left, crop height, crop width)``."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1],
                                                   generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
            left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def train_crop(seed: int, epoch: int, index: int, height: int, width: int) -> Crop:
    """The crop and flip of sample ``index`` in ``epoch`` (a ``height`` x ``width`` image)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, index, "crop"))
    top, left, h, w = random_resized_crop(height, width, generator)
    flip = bool(torch.rand(1, generator=generator) < 0.5)
    return Crop(top, left, h, w, flip)


def apply_train(image, crop: Crop, size: int):
    """``image`` (PIL, or a CHW tensor on any device) cropped, resized to ``size`` x
    ``size`` with antialiasing, and flipped as ``crop`` says."""
    image = TF.resized_crop(image, crop.top, crop.left, crop.height, crop.width, [size, size],
                            antialias=True)
    return TF.hflip(image) if crop.flip else image


def eval_resize(size: int) -> int:
    """The shorter side before the centre crop: 256 for 224."""
    return int(round(size * RESIZE_RATIO))


def apply_eval(image, size: int):
    """``Resize(eval_resize(size))`` (the shorter side) then ``CenterCrop(size)``."""
    return TF.center_crop(TF.resize(image, eval_resize(size), antialias=True), [size, size])


def normalise(images: Tensor, channels_last: bool = False) -> Tensor:
    """A uint8 (N, 3, H, W) batch as the model's float32 input, on the batch's device."""
    scale, shift = normalisation(MEAN, STD, device=images.device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(torch.float32, memory_format=memory_format)
    return x * scale[:, None, None] + shift[:, None, None]
