"""``make bench``: what a training step, the data pipeline and an epoch cost.

    python -m benchmarks.perf            # small CPU sizes here, the full ones on a GPU
    python -m benchmarks.perf --full     # the full sizes (both models) on any device

For SGD, SAM and VaSSO (``--methods``: any method of ``benchmarks.methods``) on each
model it times one training step three ways:

* ``textbook``: the library's per-tensor reference (``vasso._reference``, the
  official code's style): Python loops over the parameters, one reduction per
  tensor, a per-tensor (``foreach=False``) SGD;
* ``eager``: the suite's ``vasso`` optimizers (foreach kernels, in-place
  restore) with a default SGD, stepped eagerly, as the engine steps them;
* ``fast``: :class:`benchmarks.training.step.TrainStep` with a fused SGD and a tensor
  LR: on CUDA the whole step replayed from one CUDA graph (eager on a CPU).

Every row runs in each precision asked for (``--precision``; on CUDA both bf16
autocast, which the speed goals assume, and fp32, which the engine defaults to and
the paper's official code trained in; fp32 on a CPU), every row and table names its
precision; all use one memory format (channels_last on CUDA), the same weights and
the same batch. Per step it
reports the median time, its spread (interquartile range, min, max) and, on
CUDA, the peak memory; then the ratios VaSSO/SAM, SAM/(2 x forward-backward)
and fast/textbook; the images per second of the device data pipeline
(:class:`benchmarks.fast.data.DeviceCIFAR`) and of the PIL DataLoader it
replaces; and the wall time of a full epoch of ResNet-18 VaSSO on the fast path
per precision, evaluation included, on synthetic CIFAR-shaped data (speed does not depend on
pixel values); and one GLUE fine-tuning step of AdamW, SAM and VaSSO on a RoBERTa-shaped
model (``benchmarks.glue.perf``: roberta-base's shape on a GPU or with ``--full``).
Times use CUDA events on a GPU and ``perf_counter`` on a CPU.
Results go to ``outputs/perf/<device>-<timestamp>.json`` and a table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import pathlib
import platform
import re
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.fast.data import Augmentation, DeviceCIFAR
from benchmarks.config import TrainConfig
from benchmarks.training.step import TrainStep, use_tensor_lr
from benchmarks.methods import METHODS as METHODS_BY_NAME
from benchmarks.methods import build_base, build_optimizer
from vasso._reference import ReferenceStep
from benchmarks.models import create_model

METHODS = ("sgd", "sam", "vasso")  # timed by default; --methods takes any of the registry's
IMPLS = ("textbook", "eager", "fast")
PRECISIONS = ("bf16", "fp32")
# The precision the speed goals are stated for (the figures of the other are reported too).
GOAL_PRECISION = "bf16"
RHO, THETA, LR = 0.1, 0.4, 0.05

# The goals on one H100, checked (not asserted) when the device is CUDA.
GOALS = {"resnet18_vasso_step_ms": 8.0, "wrn28_10_vasso_step_ms": 30.0,
         "vasso_over_sam": 1.03, "pipeline_images_per_s": 1e6, "cifar10_200_epochs_min": 15.0,
         # #12: ImageNet's device data path serves 1.2x what a ResNet-50 VaSSO step consumes.
         "imagenet_data_over_step": 1.2}
IMAGENET_PATHS = ("loader", "device")


@dataclass
class Settings:
    device: str
    models: list[str]
    methods: list[str]
    impls: list[str]
    batch_size: int
    iters: int
    warmup: int
    precisions: list[str]
    channels_last: bool
    pipeline_images: int
    loader_images: int
    loader_workers: int
    epoch_train_images: int
    epoch_test_images: int
    translation_model: str
    translation_tokens: int
    out_dir: str
    imagenet_models: list[str]
    imagenet_batch_size: int
    imagenet_image_size: int
    imagenet_images: int
    imagenet_workers: int
    glue_full: bool = False  # the GLUE step at roberta-base's shape (else a small one)


# ----------------------------------------------------------------------------- the optimizers

class ForwardBackwardOnly(torch.optim.Optimizer):
    """An "optimizer" whose step is the closure alone: times one forward + backward."""

    def __init__(self, params, lr: float | Tensor = 0.0) -> None:
        super().__init__(params, {"lr": lr})

    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        with torch.enable_grad():
            return closure()


def optimizer_for(method: str, impl: str, model: nn.Module) -> torch.optim.Optimizer:
    """``method`` ("fb": forward and backward alone) as ``impl`` steps it, built from the
    method registry with the benchmark's settings."""
    fast = impl == "fast"
    if method == "fb":
        device = next(model.parameters()).device
        return ForwardBackwardOnly(model.parameters(), torch.tensor(0.0, device=device) if fast else 0.0)
    cfg = TrainConfig("cifar", optimizer=method, rho=None if method == "sgd" else RHO, theta=THETA,
                      lr=LR, momentum=0.9, weight_decay=1e-3, bn_stats="first")
    if impl == "textbook":
        base = build_base(cfg, model, foreach=False)
        if method == "sgd":
            return base
        settings = METHODS_BY_NAME[method].settings(cfg)
        scale = settings.pop("scale", None)
        if scale is not None:  # ASAM: the tensors T scales, picked as the class picks them
            settings["scaled"] = {p for n, p in model.named_parameters() if scale == "all" or "weight" in n}
        return ReferenceStep(list(model.parameters()), base, method, rho=cfg.rho, **settings)
    optimizer, base = build_optimizer(cfg, model, fused=fast)
    if fast:
        use_tensor_lr(base)
    return optimizer


# ----------------------------------------------------------------------------- timing

class Timer:
    """Per-interval timings: CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._pairs: list[Any] = []

    def start(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, started: Any) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._pairs.append((started, event))
        else:
            self._pairs.append((started, time.perf_counter()))

    def millis(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in self._pairs]
        return [(b - a) * 1e3 for a, b in self._pairs]


def summarize(times_ms: list[float]) -> dict[str, float]:
    q = np.percentile(times_ms, [25, 75])
    return {"median_ms": statistics.median(times_ms), "iqr_ms": float(q[1] - q[0]),
            "min_ms": min(times_ms), "max_ms": max(times_ms), "n": len(times_ms)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(model_name: str, method: str, impl: str, precision: str, s: Settings,
              device: torch.device, image_size: int | None = None, num_classes: int = 10
              ) -> dict[str, Any]:
    """Median time of one training step of ``method`` (``"fb"``: forward + backward), on
    32x32 inputs, or ``image_size`` ones for the ImageNet models (which take that size)."""
    torch.manual_seed(0)
    kwargs = {} if image_size is None else {"image_size": image_size}
    model = create_model(model_name, num_classes, **kwargs).to(device)
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = optimizer_for(method, impl, model)
    g = torch.Generator().manual_seed(1)
    side = image_size or 32
    x = torch.randn(s.batch_size, 3, side, side, generator=g).to(device, memory_format=memory_format)
    y = torch.randint(0, num_classes, (s.batch_size,), generator=g).to(device)
    autocast = torch.bfloat16 if precision == "bf16" else None
    step = TrainStep(model, optimizer, autocast_dtype=autocast,
                     mode="auto" if impl == "fast" else "eager", warmup_steps=max(1, s.warmup))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    # Warm-up; the fast path records its graph on the call after its warm-up steps.
    for _ in range(max(1, s.warmup) + 1 if impl == "fast" else s.warmup):
        step((x, y))
    sync(device)
    timer = Timer(device)
    for _ in range(s.iters):
        started = timer.start()
        loss = step((x, y)).loss
        timer.stop(started)
    result = summarize(timer.millis())
    if not math.isfinite(float(loss)):
        raise RuntimeError(f"{model_name} {method} {impl}: the loss became {float(loss)}")
    result["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20
                             if device.type == "cuda" else None)
    result["mode"] = step.mode
    result["param_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {"model": model_name, "method": method, "impl": impl, "precision": precision,
            "batch_size": s.batch_size, **result}


# ----------------------------------------------------------------------------- data and epoch

def synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.int64))


def time_pipelines(s: Settings, device: torch.device) -> dict[str, Any]:
    images, labels = synthetic_cifar(s.pipeline_images, 0)
    data = DeviceCIFAR(images, labels, batch_size=min(s.batch_size, s.pipeline_images),
                       augmentation=Augmentation(), device=device, channels_last=s.channels_last)
    for _ in data.batches(epoch=0):  # warm-up: allocator, kernels
        pass
    sync(device)
    tic = time.perf_counter()
    served = 0
    for x, _ in data.batches(epoch=1):
        served += len(x)
    sync(device)
    device_rate = served / (time.perf_counter() - tic)

    from PIL import Image
    from torchvision import transforms

    from benchmarks.data import Cutout

    pipeline = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3), Cutout(16)])

    class PilImages(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return s.loader_images

        def __getitem__(self, i: int):
            return pipeline(Image.fromarray(images[i % len(images)])), int(labels[i % len(labels)])

    loader = torch.utils.data.DataLoader(PilImages(), batch_size=s.batch_size,
                                         num_workers=s.loader_workers, drop_last=True)
    tic = time.perf_counter()
    served = sum(len(x) for x, _ in loader)
    pil_rate = served / (time.perf_counter() - tic)
    return {"device_images_per_s": device_rate, "device_images": s.pipeline_images,
            "pil_dataloader_images_per_s": pil_rate, "pil_workers": s.loader_workers,
            "pil_images": s.loader_images, "batch_size": data.batch_size}


def time_epoch(s: Settings, device: torch.device, precision: str, model_name: str = "resnet18"
               ) -> dict[str, Any]:
    """Two epochs of VaSSO on the fast path, evaluation included; the second is steady state."""
    train_x, train_y = synthetic_cifar(s.epoch_train_images, 1)
    test_x, test_y = synthetic_cifar(s.epoch_test_images, 2)
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    train = DeviceCIFAR(train_x, train_y, batch_size=s.batch_size, augmentation=Augmentation(),
                        device=device, channels_last=s.channels_last)
    test = DeviceCIFAR(test_x, test_y, batch_size=max(256, s.batch_size), device=device,
                       channels_last=s.channels_last)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).to(device, memory_format=memory_format)
    optimizer = optimizer_for("vasso", "fast", model)
    total_steps = 2 * len(train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer.base, lambda k: 0.5 * (1 + math.cos(math.pi * min(k / total_steps, 1.0))))
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    step = TrainStep(model, optimizer, autocast_dtype=autocast_dtype)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype
                else nullcontext())
    times, accuracy = [], 0.0
    for epoch in range(2):
        sync(device)
        tic = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in train.batches(epoch):
            loss_sum += step((x, y)).loss
            scheduler.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=device)
        with torch.no_grad(), autocast:
            for x, y in test.batches():
                correct += (model(x).argmax(1) == y).sum()
        accuracy = 100.0 * int(correct) / len(test.labels)  # the one sync of the epoch
        times.append(time.perf_counter() - tic)
    return {"model": model_name, "method": "vasso", "impl": "fast", "precision": precision,
            "mode": step.mode,
            "train_images": s.epoch_train_images, "test_images": s.epoch_test_images,
            "batch_size": s.batch_size, "first_epoch_s": times[0], "epoch_s": times[1],
            "projected_200_epochs_min": 200 * times[1] / 60 * 50000 / s.epoch_train_images,
            "test_acc": accuracy, "train_loss": float(loss_sum) / len(train)}


def time_imagenet(s: Settings, device: torch.device) -> dict[str, Any]:
    """ImageNet: the VaSSO step of each model (eager, as the engine steps it; bf16 when
    the run measures it; channels-last for the ResNets only, where the convolutions gain
    from it) in images per second, against the images per second of each data path."""
    import tempfile

    from benchmarks.imagenet.throughput import time_path, write_synthetic

    precision = GOAL_PRECISION if GOAL_PRECISION in s.precisions else s.precisions[0]
    steps = []
    for model in s.imagenet_models:
        channels_last = s.channels_last and model.startswith("resnet")
        settings = replace(s, batch_size=s.imagenet_batch_size, channels_last=channels_last)
        row = time_step(model, "vasso", "eager", precision, settings, device,
                        image_size=s.imagenet_image_size, num_classes=1000)
        row["channels_last"] = channels_last
        row["images_per_s"] = 1e3 * s.imagenet_batch_size / row["median_ms"]
        steps.append(row)
        print(f"  {model:9s} {precision} vasso imagenet {row['median_ms']:9.2f} ms", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_synthetic(pathlib.Path(tmp), s.imagenet_images)
        paths = {path: time_path(folder, path, size=s.imagenet_image_size,
                                 batch_size=s.imagenet_batch_size, workers=s.imagenet_workers,
                                 device=device, channels_last=s.channels_last)
                 for path in IMAGENET_PATHS}
    limits = [{"model": r["model"], "step_images_per_s": r["images_per_s"],
               **{f"{path}_over_step": paths[path]["images_per_s"] / r["images_per_s"]
                  for path in IMAGENET_PATHS}} for r in steps]
    return {"precision": precision, "image_size": s.imagenet_image_size,
            "batch_size": s.imagenet_batch_size, "steps": steps, "data_paths": paths,
            "limits": limits}
# ----------------------------------------------------------------------------- translation

def time_translation(s: Settings, device: torch.device, precision: str) -> dict[str, Any]:
    """Target tokens per second of an AdamW, a SAM and a VaSSO step (both around AdamW)
    on the translation Transformer (benchmarks.translation): the recipe's 4,096-token
    batch of transformer_iwslt_de_en at full size, on a synthetic batch of 32-token
    sentences (speed does not depend on which tokens), eager steps."""
    from benchmarks.translation.loss import label_smoothed_loss
    from benchmarks.translation.model import ARCHITECTURES, Transformer

    full = s.translation_model == "transformer_iwslt_de_en"
    src_vocab, tgt_vocab = (8848, 6632) if full else (1000, 1000)
    g = torch.Generator().manual_seed(2)
    sentences, length = max(1, s.translation_tokens // 32), 32
    src = torch.randint(4, src_vocab, (sentences, length), generator=g).to(device)
    target = torch.randint(4, tgt_vocab, (sentences, length), generator=g).to(device)
    batch = {"src": src, "prev": target.roll(1, dims=1), "target": target}

    def objective(forward: Callable[..., Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, Any]:
        loss, _, tokens = label_smoothed_loss(forward(batch["src"], batch["prev"]), batch["target"], 0.1)
        return loss / tokens, ()

    rows = []
    for method in ("sgd", "sam", "vasso"):  # sgd: the base alone, here AdamW
        torch.manual_seed(0)
        model = Transformer(src_vocab, tgt_vocab, ARCHITECTURES[s.translation_model]).to(device)
        cfg = TrainConfig("translation", optimizer=method, rho=None if method == "sgd" else RHO,
                          theta=THETA)  # the recipe's AdamW: the task's defaults
        optimizer, _ = build_optimizer(cfg, model)
        step = TrainStep(model, optimizer, objective, mode="eager",
                         autocast_dtype=torch.bfloat16 if precision == "bf16" else None)
        for _ in range(s.warmup):
            step(batch)
        sync(device)
        timer = Timer(device)
        for _ in range(s.iters):
            started = timer.start()
            step(batch)
            timer.stop(started)
        times = summarize(timer.millis())
        rows.append({"model": s.translation_model, "precision": precision,
                     "method": "adamw" if method == "sgd" else method, "tokens": target.numel(),
                     **times, "tokens_per_s": target.numel() / times["median_ms"] * 1e3})
    median = {r["method"]: r["median_ms"] for r in rows}
    return {"steps": rows, "vasso_over_adamw": median["vasso"] / median["adamw"],
            "vasso_over_sam": median["vasso"] / median["sam"]}


# ----------------------------------------------------------------------------- ratios and goals

def ratios(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, precision and implementation: the ratios of the medians (within
    one precision: a ratio across precisions would mix two effects)."""
    median = {(r["model"], r["precision"], r["method"], r["impl"]): r["median_ms"] for r in steps}
    peak = {(r["model"], r["precision"], r["method"], r["impl"]): r["peak_mem_mb"] for r in steps}
    rows = []
    for model, prec in dict.fromkeys((r["model"], r["precision"]) for r in steps):
        for impl in IMPLS:
            row: dict[str, Any] = {"model": model, "precision": prec, "impl": impl}
            sam, vas, fb = (median.get((model, prec, m, impl)) for m in ("sam", "vasso", "fb"))
            if sam and vas:
                row["vasso_over_sam"] = vas / sam
            if sam and fb:
                row["sam_over_2fb"] = sam / (2 * fb)
            for method in METHODS_BY_NAME:
                t = median.get((model, prec, method, impl))
                ref = median.get((model, prec, method, "textbook"))
                if t and ref and impl != "textbook":
                    row[f"{method}_over_textbook"] = t / ref
            p_sam = peak.get((model, prec, "sam", impl))
            p_vas = peak.get((model, prec, "vasso", impl))
            if p_sam is not None and p_vas is not None:
                row["vasso_minus_sam_peak_mb"] = p_vas - p_sam
            if len(row) > 3:
                rows.append(row)
    return rows


def goals(report: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's H100 goals against this run's bf16 figures (the precision they
    assume; each entry names it); None off CUDA (they do not apply)."""
    if report["device_type"] != "cuda":
        return None
    prec = GOAL_PRECISION
    median = {(r["model"], r["method"], r["impl"]): r for r in report["steps"]
              if r["precision"] == prec}
    out: dict[str, Any] = {}

    def check(name: str, value: float | None, target: float, at_most: bool = True) -> None:
        if value is not None:
            out[name] = {"value": value, "target": target, "precision": prec,
                         "met": value <= target if at_most else value >= target}

    for model in ("resnet18", "wrn28_10"):
        r = median.get((model, "vasso", "fast"))
        check(f"{model}_vasso_step_ms", r and r["median_ms"], GOALS[f"{model}_vasso_step_ms"])
    for row in report["ratios"]:
        if row["impl"] != "fast" or row["precision"] != prec:
            continue
        if "vasso_over_sam" in row:
            check(f"{row['model']}_vasso_over_sam", row["vasso_over_sam"], GOALS["vasso_over_sam"])
        if "vasso_minus_sam_peak_mb" in row:
            param_mb = median[(row["model"], "vasso", "fast")]["param_mb"]
            check(f"{row['model']}_vasso_extra_peak_mb", row["vasso_minus_sam_peak_mb"], param_mb)
    pipeline = report.get("data_pipeline")
    if pipeline:
        check("pipeline_images_per_s", pipeline["device_images_per_s"],
              GOALS["pipeline_images_per_s"], at_most=False)
    for epoch in report.get("epochs") or []:
        if epoch["train_images"] == 50000 and epoch["precision"] == prec:
            check("cifar10_200_epochs_min", epoch["projected_200_epochs_min"],
                  GOALS["cifar10_200_epochs_min"])
    imagenet = report.get("imagenet")
    if imagenet and imagenet["precision"] == prec:
        for row in imagenet["limits"]:
            if row["model"] == "resnet50":  # the device path: the one chosen on CUDA
                check("imagenet_device_data_over_resnet50_step", row["device_over_step"],
                      GOALS["imagenet_data_over_step"], at_most=False)
    return out


# ----------------------------------------------------------------------------- report

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def print_tables(report: dict[str, Any]) -> None:
    from tabulate import tabulate

    print(f"\n{report['device']}  (torch {report['torch']}, "
          f"{' and '.join(report['settings']['precisions'])}, "
          f"batch {report['settings']['batch_size']})")
    rows = [[r["model"], r["precision"], r["method"], r["impl"], r["mode"],
             f"{r['median_ms']:.2f}", f"{r['iqr_ms']:.2f}", f"{r['min_ms']:.2f}-{r['max_ms']:.2f}",
             "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"]
            for r in report["steps"]]
    print(tabulate(rows, ["model", "precision", "step", "impl", "ran as", "median ms", "IQR ms",
                          "range ms", "peak MiB"]))
    keys = ["vasso_over_sam", "sam_over_2fb", "sgd_over_textbook", "sam_over_textbook",
            "vasso_over_textbook"]
    print()
    print(tabulate([[r["model"], r["precision"], r["impl"],
                     *(f"{r[k]:.3f}" if k in r else "-" for k in keys)] for r in report["ratios"]],
                   ["model", "precision", "impl", "VaSSO/SAM", "SAM/(2 fb)", "SGD/textbook", "SAM/textbook",
                    "VaSSO/textbook"]))
    if report.get("data_pipeline"):
        p = report["data_pipeline"]
        print(f"\ndata pipeline: device {p['device_images_per_s']:,.0f} images/s; PIL DataLoader "
              f"({p['pil_workers']} workers) {p['pil_dataloader_images_per_s']:,.0f} images/s")
    for e in report.get("epochs") or []:
        print(f"epoch ({e['model']} VaSSO, {e['precision']}, {e['train_images']} train + "
              f"{e['test_images']} test images, evaluation included): {e['epoch_s']:.2f} s "
              f"(first, with warm-up: {e['first_epoch_s']:.2f} s); 200 CIFAR-10 epochs ~ "
              f"{e['projected_200_epochs_min']:.1f} min")
    if report.get("imagenet"):
        print_imagenet(report["imagenet"])
    for t in report.get("translation") or []:
        print()
        print(tabulate([[r["model"], r["precision"], r["method"], r["tokens"], f"{r['median_ms']:.2f}",
                         f"{r['tokens_per_s']:,.0f}"] for r in t["steps"]],
                       ["translation model", "precision", "step", "tokens", "median ms", "tokens/s"]))
        print(f"VaSSO/AdamW {t['vasso_over_adamw']:.3f}, VaSSO/SAM {t['vasso_over_sam']:.3f}")
    if report.get("glue"):
        from benchmarks.glue.perf import print_table

        print_table(report["glue"])
    if report.get("goals"):
        print()
        print(tabulate([[k, f"{v['value']:.3g}", f"{v['target']:.3g}", "yes" if v["met"] else "NO"]
                        for k, v in report["goals"].items()],
                       [f"goal (one H100, {GOAL_PRECISION})", "measured", "target", "met"]))


def print_imagenet(imagenet: dict[str, Any]) -> None:
    from tabulate import tabulate

    paths = imagenet["data_paths"]
    print(f"\nImageNet ({imagenet['image_size']}x{imagenet['image_size']} crops, batch "
          f"{imagenet['batch_size']}): data paths, training augmentation, to a normalised batch "
          "on the device: " + "; ".join(f"{name} {p['images_per_s']:,.3g} images/s "
                                        f"({p['workers']} workers)" for name, p in paths.items()))
    steps = {r["model"]: r for r in imagenet["steps"]}
    print(tabulate([[r["model"], imagenet["precision"], "yes" if steps[r["model"]]["channels_last"]
                     else "no", f"{steps[r['model']]['median_ms']:.1f}",
                     f"{r['step_images_per_s']:,.3g}", f"{r['loader_over_step']:.2f}",
                     f"{r['device_over_step']:.2f}",
                     "data" if max(r["loader_over_step"], r["device_over_step"]) < 1 else "step"]
                    for r in imagenet["limits"]],
                   ["model", "precision", "channels-last", "VaSSO step ms", "step images/s",
                    "loader/step", "device/step", "limits"]))


def run(s: Settings, *, pipeline: bool = True, epoch: bool = True, imagenet: bool = True,
        translation: bool = True, glue: bool = True) -> dict[str, Any]:
    device = torch.device(s.device)
    report: dict[str, Any] = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "cuda": torch.version.cuda, "host": platform.node(),
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(s), "steps": []}
    for precision in s.precisions:
        for model in s.models:
            for impl in s.impls:
                for method in ("fb", *s.methods):
                    row = time_step(model, method, impl, precision, s, device)
                    report["steps"].append(row)
                    print(f"  {model:9s} {precision} {method:5s} {impl:8s} "
                          f"{row['median_ms']:9.2f} ms ({row['mode']})", flush=True)
    report["ratios"] = ratios(report["steps"])
    report["data_pipeline"] = time_pipelines(s, device) if pipeline else None
    report["epochs"] = [time_epoch(s, device, precision) for precision in s.precisions
                        ] if epoch else None
    report["imagenet"] = time_imagenet(s, device) if imagenet else None
    report["translation"] = [time_translation(s, device, precision) for precision in s.precisions
                             ] if translation else None
    if glue:
        from benchmarks.glue.perf import time_glue

        report["glue"] = time_glue(s.glue_full, s.precisions, s.iters, s.warmup, device)
    else:
        report["glue"] = None
    report["goals"] = goals(report)
    out_dir = pathlib.Path(s.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", report["device"]).strip("-").lower()[:40]
    path = out_dir / f"{slug}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = str(path)
    print_tables(report)
    print(f"\nwrote {path}")
    return report


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    p.add_argument("--full", action="store_true",
                   help="the full sizes on any device (both models, batch 128, 50k-image epoch)")
    p.add_argument("--models", help="comma-separated (default: resnet18,wrn28_10 on CUDA or "
                                    "with --full, resnet18 on a CPU)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--iters", type=int, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, help="untimed steps first (the fast path records after)")
    p.add_argument("--precision", choices=("bf16", "fp32", "both"),
                   help="bf16 autocast, fp32, or both (bf16 first); default: both on CUDA, fp32 "
                        "on a CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="default: on for CUDA")
    p.add_argument("--pipeline-images", type=int)
    p.add_argument("--loader-images", type=int)
    p.add_argument("--loader-workers", type=int)
    p.add_argument("--epoch-train-images", type=int)
    p.add_argument("--epoch-test-images", type=int)
    p.add_argument("--no-pipeline", action="store_true", help="skip the data pipeline timing")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch timing")
    p.add_argument("--imagenet-models", help="ImageNet models whose VaSSO step is timed "
                                             "(default: resnet50,vit_s32)")
    p.add_argument("--imagenet-batch-size", type=int, help="default: 256 on CUDA, 4 on a CPU")
    p.add_argument("--imagenet-image-size", type=int, help="the training crop (default: 224)")
    p.add_argument("--imagenet-images", type=int,
                   help="synthetic 500x375 JPEG files the data paths read (default: 4096 on "
                        "CUDA, 32 on a CPU)")
    p.add_argument("--imagenet-workers", type=int,
                   help="DataLoader workers of both ImageNet data paths (default: the CPUs, at "
                        "most 16, on CUDA; 0 on a CPU)")
    p.add_argument("--no-imagenet", action="store_true", help="skip the ImageNet section")
    p.add_argument("--no-translation", action="store_true", help="skip the translation step timing")
    p.add_argument("--no-glue", action="store_true", help="skip the GLUE step timing")
    p.add_argument("--out-dir", default="outputs/perf")
    a = p.parse_args(argv)
    device = "cuda" if a.device == "auto" and torch.cuda.is_available() else (
        "cpu" if a.device == "auto" else a.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device=cuda but no CUDA device is available; use --device=cpu")
    big = device.startswith("cuda") or a.full
    default_precision = "both" if device.startswith("cuda") else "fp32"
    pick = lambda value, full, small: value if value is not None else (full if big else small)  # noqa: E731
    models = (a.models or ("resnet18,wrn28_10" if big else "resnet18")).split(",")
    methods, impls = a.methods.split(","), a.impls.split(",")
    for name, values, valid in (("methods", methods, tuple(METHODS_BY_NAME)), ("impls", impls, IMPLS)):
        bad = [v for v in values if v not in valid]
        if bad:
            p.error(f"unknown {name} {', '.join(bad)}; valid: {', '.join(valid)}")
    s = Settings(
        device=device, models=models, methods=methods, impls=impls,
        batch_size=pick(a.batch_size, 128, 16), iters=pick(a.iters, 50, 3),
        warmup=pick(a.warmup, 10, 1),
        precisions=(list(PRECISIONS) if (a.precision or default_precision) == "both"
                    else [a.precision or default_precision]),
        channels_last=(device.startswith("cuda") if a.channels_last is None else a.channels_last),
        pipeline_images=pick(a.pipeline_images, 50000, 4096),
        loader_images=pick(a.loader_images, 20000, 512),
        loader_workers=pick(a.loader_workers, min(8, os.cpu_count() or 1), 0),
        epoch_train_images=pick(a.epoch_train_images, 50000, 64),
        epoch_test_images=pick(a.epoch_test_images, 10000, 64), out_dir=a.out_dir,
        imagenet_models=(a.imagenet_models or "resnet50,vit_s32").split(","),
        imagenet_batch_size=pick(a.imagenet_batch_size, 256, 4),
        imagenet_image_size=a.imagenet_image_size or 224,
        imagenet_images=pick(a.imagenet_images, 4096, 32),
        imagenet_workers=pick(a.imagenet_workers, min(16, os.cpu_count() or 1), 0),
        translation_model=pick(None, "transformer_iwslt_de_en", "transformer_tiny"),
        translation_tokens=pick(None, 4096, 256), glue_full=big)
    if min(s.batch_size, s.iters, s.pipeline_images, s.loader_images, s.epoch_train_images,
           s.epoch_test_images, s.imagenet_batch_size, s.imagenet_images) < 1 or s.warmup < 0:
        p.error("sizes must be >= 1 (and --warmup >= 0)")
    if not a.no_imagenet:
        from benchmarks.imagenet.sizes import MODELS, image_size_problem

        for model in s.imagenet_models:
            problem = (f"unknown ImageNet model {model}; valid: {', '.join(MODELS)}"
                       if model not in MODELS
                       else image_size_problem(model, s.imagenet_image_size))
            if problem:
                p.error(f"--imagenet-models / --imagenet-image-size: {problem}")
        if s.imagenet_images < s.imagenet_batch_size:
            p.error(f"--imagenet-images={s.imagenet_images} makes no batch of "
                    f"{s.imagenet_batch_size}")
    if s.epoch_train_images < s.batch_size:
        p.error(f"--epoch-train-images={s.epoch_train_images} makes no batch of {s.batch_size}")
    return s, a


def main(argv: list[str] | None = None) -> int:
    s, a = parse_args(argv)
    run(s, pipeline=not a.no_pipeline, epoch=not a.no_epoch, imagenet=not a.no_imagenet,
        translation=not a.no_translation, glue=not a.no_glue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
