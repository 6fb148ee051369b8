"""Helpers for the benchmark tests: tiny CIFAR datasets in the real on-disk format,
run-directory readers, and the command line as a subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def fake_result(final: float, best: float | None = None, epochs: int = 3, **extra) -> dict:
    """result.json's content for a finished classification run (accuracy, percent)."""
    best = final if best is None else best
    return {"primary": "acc",
            "final": {"epoch": epochs, "step": 10 * epochs, "test": {"acc": final, "loss": 0.2},
                      "train": {"acc": 99.0, "loss": 0.01}},
            "best": {"epoch": epochs, "step": 10 * epochs, "test": {"acc": best, "loss": 0.2}},
            "epochs": epochs, "steps": 10 * epochs, "time_s": 3.0, "collapse": None, **extra}


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    # Row-major 3072 bytes per image: 1024 red, 1024 green, 1024 blue (the CIFAR layout).
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


class _Python2Pickler(pickle._Pickler):
    """Writes text and bytes as Python 2 byte strings (SHORT_BINSTRING / BINSTRING), as the
    official CIFAR files do (pickled by Python 2, the image array's buffer included): keys
    read back as bytes under ``encoding="bytes"`` and as text under torchvision's
    ``encoding="latin1"``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = _save_py2_str


def _dump(path: pathlib.Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)


def write_cifar10(root: pathlib.Path, per_batch: int = 8, num_test: int = 16, seed: int = 0) -> None:
    """``root/cifar-10-batches-py``: data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", {
            "batch_label": f"training batch {i} of 5", "data": _images(rng, per_batch),
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]})
    _dump(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1", "data": _images(rng, num_test),
        "labels": rng.integers(0, 10, num_test).tolist(),
        "filenames": [f"test_{j}.png" for j in range(num_test)]})
    _dump(folder / "batches.meta", {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                        "horse", "ship", "truck"],
        "num_cases_per_batch": per_batch, "num_vis": 3072})


def write_cifar100(root: pathlib.Path, num_train: int = 40, num_test: int = 16, seed: int = 1) -> None:
    """``root/cifar-100-python``: train, test, meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", num_train), ("test", num_test)):
        fine = rng.integers(0, 100, n)
        _dump(folder / name, {"batch_label": name, "data": _images(rng, n),
                              "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                              "filenames": [f"{name}_{j}.png" for j in range(n)]})
    _dump(folder / "meta", {"fine_label_names": [f"class_{i}" for i in range(100)],
                            "coarse_label_names": [f"super_{i}" for i in range(20)]})


def read_metrics(run: pathlib.Path, drop_time: bool = True) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if drop_time:
        for line in lines:
            line.pop("time_s")
    return lines


def read_result(run: pathlib.Path, drop_time: bool = True) -> dict:
    result = json.loads((run / "result.json").read_text())
    if drop_time:
        result.pop("time_s")
    return result


def snapshot(directory: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes, to check that nothing changed."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    """Start ``python -m benchmarks ARGS`` from the repository root, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def kill_after_first_checkpoint(args: list[str], run: pathlib.Path, timeout_s: float) -> None:
    """Start ``python -m benchmarks ARGS``, SIGKILL it as soon as ``run`` holds a
    checkpoint, and check that it was killed before it finished."""
    import signal
    import time

    proc = cli(args)
    deadline = time.monotonic() + timeout_s
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"no checkpoint after {timeout_s:g} s"
        time.sleep(0.01)
    proc.kill()
    proc.communicate()  # reaps it and closes its output pipe
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "result.json").exists(), "the run finished before it was killed"
