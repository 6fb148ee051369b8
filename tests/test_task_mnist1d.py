"""The mnist1d task: generated offline by the ``mnist1d`` package, cached, recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.config import TrainConfig, run_dir
from benchmarks.engine import train
from benchmarks.models import create_model
from benchmarks.tasks import mnist1d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_generation_is_the_authors_default_and_leaves_global_rngs_alone(data_dir):
    state = np.random.get_state()[1].copy()
    arrays = mnist1d.load_arrays(data_dir)
    assert np.array_equal(np.random.get_state()[1], state)
    assert arrays["x"].shape == (4000, 40) and arrays["x_test"].shape == (1000, 40)
    assert sorted(np.unique(arrays["y"])) == list(range(10))
    assert (data_dir / "mnist1d" / mnist1d.CACHE_NAME).is_file()
    again = mnist1d.load_arrays(data_dir)  # from the cache: the same arrays
    assert mnist1d.digest(again) == mnist1d.digest(arrays)
    assert mnist1d.digest(mnist1d.generate()) == mnist1d.digest(arrays)  # deterministic


def test_a_few_steps_train_and_record_the_data(data_dir, tmp_path):
    cfg = TrainConfig("mnist1d", optimizer="vasso", epochs=1, steps_per_epoch=5, progress="none",
                      runs_dir=str(tmp_path), data_dir=str(data_dir), label_noise=0.2)
    result = train(cfg)
    assert result["steps"] == 5 and 0 <= result["final"]["test"]["acc"] <= 100
    record = json.loads((run_dir(cfg) / "mnist1d.json").read_text())
    assert record["sha256"] == mnist1d.digest(mnist1d.load_arrays(data_dir))
    assert record["num_train"] == 4000
    noisy = json.loads((run_dir(cfg) / "noisy_labels.json").read_text())
    assert noisy["count"] == 800


def test_model_takes_the_signals():
    import torch

    model = create_model("mnist1d_cnn", 10)
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    assert 4_000 < sum(p.numel() for p in model.parameters()) < 6_000


def test_no_augmentation_to_ask_for():
    from benchmarks.config import ConfigError

    with pytest.raises(ConfigError, match="mnist1d task has no augmentation"):
        TrainConfig("mnist1d", cutout_prob=0.5)
