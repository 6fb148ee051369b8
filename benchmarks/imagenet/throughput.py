"""Images per second of ImageNet's two data paths, for ``make bench``.

Each path is timed from the files on disk to a normalised training batch on the
device, which is what a training step consumes: the DataLoader path (PIL decoding and
augmentation in ``workers`` processes, then the copy and :func:`.transforms.normalise`)
and the device path (the workers read bytes; decoding and augmentation on the device).
The files are synthetic JPEGs of ImageNet's most common size (500 x 375, quality 90):
decoding cost depends on the size and the compression, not on what the pixels show.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from .data import DeviceDecoder, ImageNetSplit, collate_encoded
from .transforms import normalise

WIDTH, HEIGHT, QUALITY, CLASSES = 500, 375, 90, 8


def write_synthetic(folder: pathlib.Path, images: int, seed: int = 0) -> pathlib.Path:
    """``images`` JPEG files in an ImageFolder tree of a few classes; returns the tree."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    for k in range(images):
        # Smooth structure plus noise compresses like a photograph (about 50-100 kB).
        a, b, c = rng.uniform(0.01, 0.1, 3)
        base = 127 + 60 * np.sin(a * x + b * y + c * k)
        array = np.clip(base[..., None] + rng.normal(0, 20, (HEIGHT, WIDTH, 3)), 0, 255)
        path = folder / f"class{k % CLASSES}" / f"{k}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array.astype(np.uint8)).save(path, format="JPEG", quality=QUALITY)
    return folder


def _keys(n: int, batch_size: int, epochs: int) -> list[list[tuple[int, int]]]:
    return [[(i, epoch) for i in range(b, b + batch_size)]
            for epoch in range(epochs) for b in range(0, n - batch_size + 1, batch_size)]


def time_path(folder: pathlib.Path, path: str, *, size: int, batch_size: int, workers: int,
              device: torch.device, channels_last: bool) -> dict[str, float]:
    """Images per second of ``path`` ("loader" | "device"): three passes over the files,
    the first one untimed (worker start-up, decoder and allocator warm-up)."""
    encoded = path == "device"
    split = ImageNetSplit(folder, size=size, train=True, encoded=encoded)
    batches = _keys(len(split), min(batch_size, len(split)), epochs=3)
    loader = DataLoader(split, batch_sampler=batches, num_workers=workers,
                        collate_fn=collate_encoded if encoded else None,
                        pin_memory=device.type == "cuda" and not encoded)
    decoder = DeviceDecoder(device, size=size) if encoded else None
    first_epoch = len(batches) // 3
    served, started = 0, None
    for k, batch in enumerate(loader):
        if k == first_epoch:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        images = decoder(batch) if encoded else batch[0].to(device, non_blocking=True)
        x = normalise(images, channels_last=channels_last)
        if started is not None:
            served += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_per_s": served / seconds, "images": served, "workers": workers}
