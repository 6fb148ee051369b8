"""MNIST-1D (Greydanus & Kobak, ICML 2024): 10 classes of procedurally generated 1-D signals.

A CPU-scale benchmark that separates methods better than the 8x8 digits while
still training in seconds. The ``mnist1d`` package generates it offline with the
authors' default settings (5,000 signals of 40 samples, 4,000 train / 1,000 test,
generation seed 42, independent of the seed index), so every cell sees the same
split; nothing is downloaded. The generated arrays are cached in
``<data-dir>/mnist1d/`` (regenerated when absent) and their SHA-256 is recorded in
the run directory. Signals are already standardised by the generator. No
augmentation; the tensors live in memory.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import random

import numpy as np
import torch

from ..config import ConfigError, TrainConfig
from ..data import IndexedTensors
from ..rundir import WriteFailed, atomic_write_bytes
from .base import Task, TaskData, noisy_labels

CACHE_NAME = "mnist1d-default-seed42.npz"


def generate() -> dict[str, np.ndarray]:
    """The authors' default MNIST-1D, generated; the global RNGs it reseeds are put back."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise ConfigError("the mnist1d task needs the 'mnist1d' package: pip install mnist1d "
                          "(make install does)") from err
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load_arrays(data_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """The cached arrays, generated and cached (atomically, where the folder is writable) first."""
    path = data_dir / "mnist1d" / CACHE_NAME
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    arrays = generate()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getbuffer())
    except (OSError, WriteFailed):
        pass  # a read-only data dir: generate every time, nothing lost
    return arrays


def digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


class Mnist1dTask(Task):
    name = "mnist1d"

    def load_data(self, cfg: TrainConfig) -> TaskData:
        arrays = load_arrays(pathlib.Path(cfg.data_dir))
        x_train = torch.tensor(arrays["x"], dtype=torch.float32).unsqueeze(1)  # (N, 1, 40)
        x_test = torch.tensor(arrays["x_test"], dtype=torch.float32).unsqueeze(1)
        y_train, record = noisy_labels(cfg, torch.tensor(arrays["y"]), num_classes=10)
        record["mnist1d"] = {"generator": "mnist1d.data.make_dataset(get_dataset_args())",
                             "sha256": digest(arrays), "num_train": len(x_train),
                             "num_test": len(x_test)}
        return TaskData(train=IndexedTensors(x_train, y_train),
                        test=IndexedTensors(x_test, torch.tensor(arrays["y_test"], dtype=torch.int64)),
                        num_classes=10, in_memory=True, record=record)
