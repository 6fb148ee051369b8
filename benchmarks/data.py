"""Data plumbing shared by the tasks: seeds, a resumable batch order, label noise, Cutout.

Reproducibility rests on two rules:

* Every random decision about data is a pure function of a seed and a position:
  the order of epoch ``e`` is ``randperm(n)`` under ``derive_seed(seed, e)``, and the
  augmentation of sample ``i`` in epoch ``e`` runs under its own seed. The state of
  the "sampler" is therefore just (epoch, step in epoch), which the checkpoint
  stores; a run resumed mid-epoch sees the very batches it would have seen.
* Those seeds derive from (task, dataset, model, seed index), never from the
  optimizer, so SGD, SAM and VaSSO cells with the same seed index see the same
  batches, augmentations and noisy labels.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset, get_worker_info

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
    The epoch travels with each index so that a :class:`SeededAugment` dataset can seed
    the sample's augmentation, in whatever worker process fetches it.
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


class Cutout:
    """Zero a ``size`` x ``size`` square of a CHW tensor with probability ``p``.

    As in DeVries & Taylor (2017) and the official VaSSO code: the square's centre is
    uniform over the image and the square is clipped at the borders (so near an
    edge less than size^2 pixels are cut). Uses the torch RNG, which
    :class:`SeededAugment` seeds per sample.
    """

    def __init__(self, size: int = 16, p: float = 1.0) -> None:
        if size < 1 or not 0 <= p <= 1:
            raise ValueError(f"Cutout needs size >= 1 and p in [0, 1], got size={size}, p={p}")
        self.size, self.p = size, p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.p < 1 and torch.rand(()).item() >= self.p:
            return image
        height, width = image.shape[-2:]
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        half = self.size // 2
        y0, y1 = max(cy - half, 0), min(cy + self.size - half, height)
        x0, x1 = max(cx - half, 0), min(cx + self.size - half, width)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


class SeededAugment(Dataset):
    """``dataset[(index, epoch)]`` -> ``transform(sample)`` under a per-sample torch seed.

    The seed is a function of (seed, epoch, index), so augmentation does not depend
    on which worker fetches a sample nor on where a resumed run starts. In the main
    process (``num_workers=0``) the global torch RNG is restored afterwards, so the
    data pipeline never perturbs the training loop's random stream.
    """

    def __init__(self, samples: Dataset, transform: Callable | None, seed: int) -> None:
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        image, target = self.samples[index]
        if self.transform is not None:
            sample_seed = (self.seed + epoch * 1_000_003 * len(self) + index) & _SEED_MASK
            if get_worker_info() is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(sample_seed)
                    image = self.transform(image)
            else:
                torch.manual_seed(sample_seed)
                image = self.transform(image)
        return image, target


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
