"""The CIFAR task end to end on tiny datasets written in the real on-disk pickle format,
read through torchvision's CIFAR10 / CIFAR100 classes: every CIFAR model trains a
step and leaves a complete run directory; label noise is applied and recorded."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.config import TrainConfig, run_dir
from benchmarks.data import (CIFAR100_MEAN, CIFAR100_STD, OFFICIAL_CIFAR_MEAN, OFFICIAL_CIFAR_STD,
                             label_digest)
from benchmarks.engine import train
from benchmarks.tasks import get_task
from benchmarks.tasks.cifar import CIFAR10, CIFAR100
from bench_fixtures import read_metrics, write_cifar10, write_cifar100

RUN_FILES = {"config.json", "meta.json", "metrics.jsonl", "checkpoint.pt", "result.json"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar-data")
    write_cifar10(root)    # 5 x 8 training images, 16 test images
    write_cifar100(root)   # 40 training images, 16 test images
    return root


def cifar(data_dir, runs_dir, **kw) -> TrainConfig:
    fields = dict(epochs=1, steps_per_epoch=2, batch_size=8, num_workers=0, progress="none",
                  data_dir=str(data_dir), runs_dir=str(runs_dir), pyramidnet_alpha=48)
    return TrainConfig("cifar", **{**fields, **kw})


@pytest.mark.parametrize("dataset, model, steps_per_epoch", [
    ("cifar10", "vgg11_bn", 2),
    ("cifar100", "resnet18", 2),
    ("cifar10", "pyramidnet110", 2),  # alpha 48 here: the code path of alpha 270, 1/16 the size
    pytest.param("cifar100", "wrn28_10", 1, marks=pytest.mark.slow),  # slow on CPU: one step
])
def test_cifar_models_produce_complete_run_dirs(data_dir, tmp_path, dataset, model, steps_per_epoch):
    cfg = cifar(data_dir, tmp_path, dataset=dataset, model=model, steps_per_epoch=steps_per_epoch)
    result = train(cfg)
    run = run_dir(cfg)
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert result["steps"] == steps_per_epoch
    assert [m["split"] for m in read_metrics(run)] == ["train", "test"]
    num_classes = 10 if dataset == "cifar10" else 100
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    classifier = [t for name, t in ckpt["model"].items() if name.endswith("weight")][-1]
    assert classifier.shape[0] == num_classes
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


def test_label_noise_run_records_the_corrupted_labels(data_dir, tmp_path):
    cfg = cifar(data_dir, tmp_path, model="resnet18", steps_per_epoch=1, label_noise=0.25)
    train(cfg)
    record = json.loads((run_dir(cfg) / "noisy_labels.json").read_text())
    clean = CIFAR10(str(data_dir), train=True).targets
    assert record["count"] == 10 and record["num_train"] == 40 and len(record["indices"]) == 10
    data = get_task("cifar").load_data(cfg)
    noisy = data.train.labels.tolist()
    assert record["noisy_labels_sha256"] == label_digest(noisy)
    assert {i for i in range(40) if noisy[i] != clean[i]} == set(record["indices"])
    # The test set stays clean.
    assert data.test.labels.tolist() == CIFAR10(str(data_dir), train=False).targets


def test_augmentation_is_seeded_per_sample_and_epoch(data_dir, tmp_path):
    data = get_task("cifar").load_data(cifar(data_dir, tmp_path, cutout_prob=1.0))
    image, target = data.train[(3, 0)]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert torch.equal(data.train[(3, 0)][0], image)       # same key, same augmentation
    assert not torch.equal(data.train[(3, 1)][0], image)   # another epoch, another one
    # Cutout (p = 1) zeroes a square of the normalised image: some exact zeros remain.
    assert (image == 0).all(dim=0).sum() >= 64
    # Fetching does not disturb the global torch RNG, and the draw is made per epoch,
    # not per fetch order: a fresh dataset gives the same image for the same key.
    state = torch.get_rng_state()
    data.train[(5, 2)]
    assert torch.equal(torch.get_rng_state(), state)
    again = get_task("cifar").load_data(cifar(data_dir, tmp_path, cutout_prob=1.0))
    assert torch.equal(again.train[(3, 0)][0], image)


@pytest.mark.parametrize("norm_stats, stats", [
    # The official code normalises CIFAR-100 with its CIFAR-10 statistics (the default).
    ("official", (OFFICIAL_CIFAR_MEAN, OFFICIAL_CIFAR_STD)),
    ("dataset", (CIFAR100_MEAN, CIFAR100_STD)),
])
def test_cifar_test_set_is_normalised_tensors(data_dir, tmp_path, norm_stats, stats):
    cfg = cifar(data_dir, tmp_path, dataset="cifar100", norm_stats=norm_stats)
    assert TrainConfig("cifar", dataset="cifar100").norm_stats == "official"
    data = get_task("cifar").load_data(cfg)
    assert data.num_classes == 100 and len(data.test) == 16
    assert (data.train.mean, data.train.std) == (data.test.mean, data.test.std) == stats
    raw = torch.tensor(CIFAR100(str(data_dir), train=False).data[4]).permute(2, 0, 1) / 255
    mean, std = (torch.tensor(v)[:, None, None] for v in stats)
    torch.testing.assert_close(data.test[4][0], (raw - mean) / std)


def test_worker_processes_give_the_same_run(data_dir, tmp_path):
    # Augmentation is seeded per sample, so where a sample is fetched does not matter.
    runs = []
    for workers in (0, 2):
        cfg = cifar(data_dir, tmp_path / f"w{workers}", model="vgg11_bn", num_workers=workers)
        train(cfg)
        runs.append(run_dir(cfg))
    assert read_metrics(runs[0]) == read_metrics(runs[1])
