"""The imagenet task through ``python -m benchmarks``: a few steps of ResNet-18 and
ViT-S/32 on a tiny ImageFolder of real JPEG files, both data paths, and bad input."""

from __future__ import annotations

import json
import pathlib

import pytest

from benchmarks.__main__ import main
from imagenet_fixtures import write_imagenet

CELL = ["imagenet", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
        "--progress", "none", "--num-workers", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    return write_imagenet(tmp_path_factory.mktemp("data"))


def result_of(runs: pathlib.Path) -> tuple[dict, dict]:
    [cell] = list((runs / "adhoc").iterdir())
    return (json.loads((cell / "result.json").read_text()),
            json.loads((cell / "meta.json").read_text()))


@pytest.mark.parametrize("model", ["resnet18_imagenet", "vit_s32"])
def test_a_few_steps_report_top1_and_top5(data_dir, tmp_path, model):
    assert main([*CELL, "--model", model, "--optimizer", "vasso", "--max-steps", "3",
                 "--data-dir", str(data_dir), "--runs-dir", str(tmp_path)]) == 0
    result, meta = result_of(tmp_path)
    assert result["primary"] == "acc" and result["steps"] == 3
    test = result["final"]["test"]
    assert set(test) == {"acc", "top5", "loss"}
    assert 0 <= test["acc"] <= test["top5"] <= 100
    assert test["top5"] == 100  # three classes: the true one is always among the top five
    assert meta["imagenet"] == {"classes": 3, "train": 12, "val": 6, "official": False,
                                "decoded_on": "loader workers"}


def test_decoding_on_the_device_trains_the_same_cell(data_dir, tmp_path):
    """--fast on (the CPU stands in for the GPU): the same crops, so the same run up to
    the decoders' rounding; the same cell, so the same run directory."""
    args = [*CELL, "--model", "vit_s32", "--optimizer", "sam", "--max-steps", "3",
            "--data-dir", str(data_dir)]
    assert main([*args, "--fast", "off", "--runs-dir", str(tmp_path / "off")]) == 0
    assert main([*args, "--fast", "on", "--runs-dir", str(tmp_path / "on")]) == 0
    (off, meta_off), (on, meta_on) = result_of(tmp_path / "off"), result_of(tmp_path / "on")
    assert (meta_off["imagenet"]["decoded_on"], meta_on["imagenet"]["decoded_on"]) == (
        "loader workers", "device")
    assert [p.name for p in (tmp_path / "on" / "adhoc").iterdir()] == [
        p.name for p in (tmp_path / "off" / "adhoc").iterdir()]
    assert on["final"]["train"]["loss"] == pytest.approx(off["final"]["train"]["loss"], rel=2e-2)
    assert on["final"]["test"]["loss"] == pytest.approx(off["final"]["test"]["loss"], rel=2e-2)


@pytest.mark.parametrize("argv, message", [
    (["--model", "vit_s32", "--image-size", "100"],
     "--image-size=100: vit_s32 cuts images into 32x32 patches, so its input size must be a "
     "multiple of 32; got 100 (use 96 or 128)"),
    (["--cutout-prob", "0.5"], "the imagenet task's augmentation has no Cutout"),
    (["--data-dir", "NOWHERE"], "ImageNet not found: NOWHERE/imagenet/train does not exist; put"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    argv = [a.replace("NOWHERE", str(tmp_path / "none")) for a in argv]
    message = message.replace("NOWHERE", str(tmp_path / "none"))
    assert main([*CELL, "--max-steps", "1", "--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))
