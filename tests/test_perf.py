"""`python -m benchmarks.perf` at the tiniest sizes: the JSON carries every field,
and the ratios are computed from the measured times."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import perf

TINY = ["--device", "cpu", "--batch-size", "2", "--iters", "2", "--warmup", "0",
        "--pipeline-images", "32", "--loader-images", "8", "--epoch-train-images", "4",
        "--epoch-test-images", "4", "--imagenet-batch-size", "2", "--imagenet-image-size", "32",
        "--imagenet-images", "4"]


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    assert perf.main([*TINY, "--out-dir", str(out)]) == 0
    files = list(out.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("cpu-")
    return json.loads(files[0].read_text())


def test_report_has_every_field(report):
    for key in ("device", "device_type", "torch", "time", "settings", "steps", "ratios",
                "data_pipeline", "epochs", "glue", "goals", "imagenet"):
        assert key in report
    assert report["device_type"] == "cpu" and report["device"].startswith("CPU")
    assert report["goals"] is None  # the H100 goals are not judged on a CPU
    combos = {(r["model"], r["method"], r["impl"]) for r in report["steps"]}
    assert combos == {("resnet18", m, i) for m in ("fb", *perf.METHODS) for i in perf.IMPLS}
    for r in report["steps"]:
        assert r["n"] == 2 and positive(r["median_ms"]) and positive(r["param_mb"])
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["iqr_ms"] >= 0
        assert r["peak_mem_mb"] is None and r["mode"] == "eager" and r["precision"] == "fp32"
    p = report["data_pipeline"]
    assert positive(p["device_images_per_s"]) and positive(p["pil_dataloader_images_per_s"])
    [e] = report["epochs"]
    assert e["precision"] == "fp32" and positive(e["epoch_s"]) and positive(e["first_epoch_s"])
    assert positive(e["projected_200_epochs_min"]) and 0 <= e["test_acc"] <= 100


def test_the_translation_step_is_timed_in_tokens_per_second(report):
    [t] = report["translation"]
    assert [r["method"] for r in t["steps"]] == ["adamw", "sam", "vasso"]
    median = {}
    for r in t["steps"]:
        assert r["model"] == "transformer_tiny" and r["n"] == 2 and r["precision"] == "fp32"
        assert math.isclose(r["tokens_per_s"], r["tokens"] / r["median_ms"] * 1e3)
        median[r["method"]] = r["median_ms"]
    assert math.isclose(t["vasso_over_adamw"], median["vasso"] / median["adamw"])
    assert math.isclose(t["vasso_over_sam"], median["vasso"] / median["sam"])
def test_the_glue_step_is_timed_for_each_method_with_its_ratios(report):
    glue = report["glue"]
    median = {r["method"]: r["median_ms"] for r in glue["steps"]}
    assert set(median) == {"adamw", "sam", "vasso"} and all(positive(v) for v in median.values())
    [ratios] = glue["ratios"]
    assert ratios["vasso_over_adamw"] == pytest.approx(median["vasso"] / median["adamw"])
    assert ratios["vasso_over_sam"] == pytest.approx(median["vasso"] / median["sam"])
    assert "hidden 64" in glue["model"] and glue["batch_size"] == 8


def test_ratios_come_from_the_measured_times(report):
    median = {(r["method"], r["impl"]): r["median_ms"] for r in report["steps"]}
    rows = {r["impl"]: r for r in report["ratios"]}
    assert set(rows) == set(perf.IMPLS)
    assert {r["precision"] for r in report["ratios"]} == {"fp32"}
    for impl, row in rows.items():
        assert row["vasso_over_sam"] == pytest.approx(median["vasso", impl] / median["sam", impl])
        assert row["sam_over_2fb"] == pytest.approx(median["sam", impl] / (2 * median["fb", impl]))
        for value in row.values():
            assert isinstance(value, str) or positive(value)
    for method in perf.METHODS:
        assert rows["fast"][f"{method}_over_textbook"] == pytest.approx(
            median[method, "fast"] / median[method, "textbook"])


def test_textbook_reference_computes_the_same_step_as_vasso():
    """The reference is a benchmark baseline, but it must do the same math."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def run(impl: str, method: str) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = perf.optimizer_for(method, impl, model)
        g = torch.Generator().manual_seed(1)
        for _ in range(4):
            x, y = torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)

            def closure():
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss
            opt.step(closure)
        return model

    for method in ("sam", "asam", "gsam", "vasso"):
        for a, b in zip(run("textbook", method).parameters(), run("eager", method).parameters()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_imagenet_section_times_each_data_path_and_each_step(report):
    imagenet = report["imagenet"]
    assert imagenet["precision"] == "fp32" and imagenet["image_size"] == 32
    assert [r["model"] for r in imagenet["steps"]] == ["resnet50", "vit_s32"]
    for r in imagenet["steps"]:
        assert r["method"] == "vasso" and r["batch_size"] == 2 and r["n"] == 2
        assert r["channels_last"] is False  # a CPU run: the default memory format
        assert r["images_per_s"] == pytest.approx(2e3 / r["median_ms"])
    paths = imagenet["data_paths"]
    assert set(paths) == {"loader", "device"}
    for p in paths.values():
        assert positive(p["images_per_s"]) and p["images"] == 2 * 4  # two timed passes of 4
    for row, step in zip(imagenet["limits"], imagenet["steps"]):
        for path in ("loader", "device"):
            assert row[f"{path}_over_step"] == pytest.approx(
                paths[path]["images_per_s"] / step["images_per_s"])


def test_the_imagenet_goal_is_judged_on_the_device_path_of_resnet50():
    limits = [{"model": "resnet50", "step_images_per_s": 3000.0, "loader_over_step": 0.5,
               "device_over_step": 1.3},
              {"model": "vit_s32", "step_images_per_s": 9000.0, "loader_over_step": 0.2,
               "device_over_step": 0.4}]
    report = {"device_type": "cuda", "steps": [], "ratios": [], "data_pipeline": None,
              "epochs": None, "imagenet": {"precision": "bf16", "limits": limits}}
    goal = perf.goals(report)["imagenet_device_data_over_resnet50_step"]
    assert goal == {"value": 1.3, "target": 1.2, "precision": "bf16", "met": True}
    limits[0]["device_over_step"] = 1.1
    assert perf.goals(report)["imagenet_device_data_over_resnet50_step"]["met"] is False


def test_bad_options_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        perf.parse_args(["--device", "cpu", "--methods", "sgd,adam"])
    assert "unknown methods adam" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        perf.parse_args(["--device", "cpu", "--epoch-train-images", "4", "--batch-size", "8"])
    assert "makes no batch of 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        perf.parse_args(["--device", "cpu", "--imagenet-image-size", "100"])
    assert "vit_s32 cuts images into 32x32 patches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        perf.parse_args(["--device", "cpu", "--imagenet-models", "resnet152"])
    assert "unknown ImageNet model resnet152; valid: resnet18_imagenet" in capsys.readouterr().err


@pytest.mark.slow  # bf16 convolutions crawl on a CPU: about 90 s on 2 cores
def test_each_precision_is_measured_and_named(tmp_path):
    """``--precision both``: every step row, ratio row and epoch names its precision,
    and the ratios never mix two precisions."""
    out = tmp_path / "both"
    assert perf.main([*TINY, "--precision", "both", "--methods", "sam,vasso", "--impls", "fast",
                      "--no-pipeline", "--no-imagenet", "--out-dir", str(out)]) == 0
    report = json.loads(next(out.glob("*.json")).read_text())
    assert report["settings"]["precisions"] == ["bf16", "fp32"]
    assert sorted((r["precision"], r["method"]) for r in report["steps"]) == sorted(
        (p, m) for p in ("bf16", "fp32") for m in ("fb", "sam", "vasso"))
    assert sorted((r["precision"], r["method"]) for r in report["glue"]["steps"]) == sorted(
        (p, m) for p in ("bf16", "fp32") for m in ("adamw", "sam", "vasso"))
    assert [r["precision"] for r in report["glue"]["ratios"]] == ["bf16", "fp32"]
    median = {(r["precision"], r["method"]): r["median_ms"] for r in report["steps"]}
    for row in report["ratios"]:
        p = row["precision"]
        assert row["vasso_over_sam"] == pytest.approx(median[p, "vasso"] / median[p, "sam"])
    assert [e["precision"] for e in report["epochs"]] == ["bf16", "fp32"]
    assert perf.parse_args(["--device", "cpu"])[0].precisions == ["fp32"]
