"""ImageNet's two data paths: PIL in DataLoader workers, or JPEG decoding on the device.

Both read one split through torchvision's ``ImageFolder`` (its file list, its class
order: the sorted wnids) and are addressed by ``(index, epoch)`` keys like the
suite's other datasets, so the engine's seeded batch order and exact resume apply.

* The DataLoader path, :class:`ImageNetSplit`: each worker opens a file with PIL and
  applies the transforms of :mod:`.transforms`; the batch is uint8.
* The device path, ``ImageNetSplit(..., encoded=True)`` with :class:`DeviceDecoder`:
  the workers only read the files' bytes (I/O, no decoding); the decoder decodes the
  batch on the device with TorchCodec's batched ``decode_jpeg`` (one nvJPEG call per
  batch on CUDA), then crops, resizes and flips there. TorchCodec, not
  ``torchvision.io``: torchvision 0.29 deprecates its image decoders in TorchCodec's
  favour (the same API, batched CUDA decoding included). The crop decisions are the same
  :func:`.transforms.train_crop` draws, computed on the host from each decoded
  image's shape, so both paths make the same decisions for every image.

Either way :func:`.transforms.normalise` makes the model's input on the device.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchcodec.decoders import decode_image, decode_jpeg
from torchvision.datasets import ImageFolder
from torchvision.transforms import functional as TF

from .transforms import apply_eval, apply_train, train_crop


class ImageNetSplit(Dataset):
    """One split of an ImageFolder tree: ``dataset[(index, epoch)]``.

    ``train``: the drawn random-resized crop and flip of sample ``index`` in
    ``epoch`` (seeded by ``seed``); otherwise the resize and centre crop (the epoch is
    ignored; a plain index works too). Returns ``(uint8 CHW image, label)``, or with
    ``encoded`` ``(file bytes, label, key, train)`` for :func:`collate_encoded`.
    """

    def __init__(self, folder: str | pathlib.Path, *, size: int, train: bool, seed: int = 0,
                 encoded: bool = False) -> None:
        self.folder = ImageFolder(str(folder))
        self.size, self.train, self.seed, self.encoded = size, train, seed, encoded

    @property
    def classes(self) -> list[str]:
        return self.folder.classes

    @property
    def targets(self) -> list[int]:
        return self.folder.targets

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, key: tuple[int, int] | int):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.folder.samples[index]
        if self.encoded:
            return pathlib.Path(path).read_bytes(), label, (index, epoch), self.train
        image = self.folder.loader(path)  # PIL, RGB
        if self.train:
            image = apply_train(image, train_crop(self.seed, epoch, index, image.height,
                                                  image.width), self.size)
        else:
            image = apply_eval(image, self.size)
        return TF.pil_to_tensor(image), label


class EncodedBatch(NamedTuple):
    """A batch of the device path: the files' bytes (a list: their lengths differ), the
    labels, the ``(index, epoch)`` keys (N, 2), and whether it is a training batch."""

    encoded: list[bytes]
    labels: Tensor
    keys: Tensor
    train: bool


def collate_encoded(items: list) -> EncodedBatch:
    data, labels, keys, train = zip(*items)
    return EncodedBatch(list(data), torch.tensor(labels), torch.tensor(keys), train[0])


def decode(encoded: list[bytes], device: torch.device | str) -> list[Tensor]:
    """Decode a batch of JPEG files to RGB uint8 CHW tensors on ``device``, in one batched
    call; a file that fails it (ImageNet holds a PNG and some CMYK JPEGs under .JPEG
    names, which nvJPEG may refuse) is decoded alone, on the CPU if need be."""
    try:
        return decode_jpeg(encoded, mode="RGB", device=device)
    except RuntimeError:
        pass
    images = []
    for data in encoded:
        try:
            images.append(decode_jpeg(data, mode="RGB", device=device))
        except RuntimeError:
            images.append(decode_image(data, mode="RGB").to(device))
    return images


class DeviceDecoder:
    """Decode an :class:`EncodedBatch` on ``device`` and augment it there:
    ``decoder(batch) -> uint8 (N, 3, size, size)``, the same crops and flips (a training
    batch, drawn under ``seed``) or the same resize and centre crop as
    :class:`ImageNetSplit`'s."""

    def __init__(self, device: torch.device | str, *, size: int, seed: int = 0) -> None:
        self.device, self.size, self.seed = torch.device(device), size, seed

    def __call__(self, batch: EncodedBatch) -> Tensor:
        images = decode(batch.encoded, self.device)
        out = []
        for image, (index, epoch) in zip(images, batch.keys.tolist()):
            if batch.train:
                height, width = image.shape[-2:]  # host metadata: no device sync
                out.append(apply_train(image, train_crop(self.seed, epoch, index, height, width),
                                       self.size))
            else:
                out.append(apply_eval(image, self.size))
        return torch.stack(out)
