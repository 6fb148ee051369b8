"""CIFAR files are checked against their md5 checksums (benchmarks.checksums).

The fixtures are tiny files in the real format, so "official" here means the md5s
of these fixtures, patched into torchvision's CIFAR10 class (where the real ones
live); the session-wide opt-out (VASSO_SKIP_DATA_CHECKSUMS, tests/conftest.py) is
switched off in every test but the last."""

from __future__ import annotations

import json
import tarfile

import pytest
from torchvision import datasets
from torchvision.datasets import utils as tv_utils

from benchmarks import checksums
from benchmarks.__main__ import EXIT_BAD_INPUT, main as engine_main
from benchmarks.config import ConfigError, TrainConfig, run_dir, to_argv
from benchmarks.tasks import get_task
from bench_fixtures import write_cifar10

FOLDER = "cifar-10-batches-py"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A CIFAR-10 folder whose md5s are "official", its archive beside it, checks on."""
    root = tmp_path / "data"
    write_cifar10(root)
    folder = root / FOLDER
    md5 = {p.name: checksums.md5(p) for p in folder.iterdir()}
    official = datasets.CIFAR10
    monkeypatch.setattr(official, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(official, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(official, "meta", {**official.meta, "md5": md5["batches.meta"]})
    with tarfile.open(root / official.filename, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    monkeypatch.setattr(official, "tgz_md5", checksums.md5(root / official.filename))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_utils, "_get_redirect_url", no_network)  # no network here either
    monkeypatch.setattr(tv_utils, "_urlretrieve", no_network)
    monkeypatch.delenv(checksums.SKIP_ENV)
    return root


def cifar(data_dir, runs_dir, **kw) -> TrainConfig:
    fields = dict(epochs=1, steps_per_epoch=1, batch_size=8, num_workers=0, progress="none",
                  model="vgg11_bn", data_dir=str(data_dir), runs_dir=str(runs_dir))
    return TrainConfig("cifar", **{**fields, **kw})


def load(cfg):
    return get_task("cifar").load_data(cfg)


def test_intact_files_are_verified_once_and_remembered(data, tmp_path, monkeypatch):
    cfg = cifar(data, tmp_path / "runs")
    assert load(cfg).meta == {"data_checksums": "verified"}
    assert len(json.loads((data / FOLDER / checksums.VERIFIED).read_text())) == 7
    hashed = []
    monkeypatch.setattr(checksums, "md5", lambda path: hashed.append(path) or "x")
    load(cfg)
    assert hashed == [], "a verified, unchanged folder is not hashed again"


@pytest.mark.parametrize("damage", ["corrupted-pixels", "truncated", "emptied"])
def test_a_damaged_file_is_bad_input_naming_it_and_the_fix(data, tmp_path, capsys, damage):
    path = data / FOLDER / "data_batch_3"
    raw = bytearray(path.read_bytes())
    if damage == "corrupted-pixels":
        raw[-200] ^= 0xFF  # same size, one pixel changed: loads fine without the check
    path.write_bytes({"corrupted-pixels": bytes(raw), "truncated": bytes(raw[:500]), "emptied": b""}[damage])
    cfg = cifar(data, tmp_path / "runs")
    assert engine_main(to_argv(cfg)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{path} is damaged" in err and "--download" in err
    assert not run_dir(cfg).exists(), "nothing written"


def test_download_replaces_a_damaged_copy_from_the_intact_archive(data, tmp_path):
    path = data / FOLDER / "test_batch"
    good = path.read_bytes()
    path.write_bytes(good[:100])
    assert load(cifar(data, tmp_path / "runs", download=True)).meta["data_checksums"] == "verified"
    assert path.read_bytes() == good


def test_a_local_archive_failing_its_checksum_is_named(data, tmp_path):
    (data / FOLDER / "test_batch").write_bytes(b"")
    archive = data / datasets.CIFAR10.filename
    archive.write_bytes(archive.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=f"local archive {archive} fails its md5 checksum"):
        load(cifar(data, tmp_path / "runs", download=True))


def test_with_the_check_switched_off_a_truncated_file_is_still_named(tmp_path, capsys):
    write_cifar10(tmp_path / "data")
    path = tmp_path / "data" / FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:300])
    cfg = cifar(tmp_path / "data", tmp_path / "runs")
    assert engine_main(to_argv(cfg)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{path} cannot be read" in err and len(err.strip().splitlines()) == 1
