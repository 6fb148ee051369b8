"""One training cell, as a typed dataclass, and its command line.

Every CLI option of ``python -m benchmarks TASK`` is a field of :class:`TrainConfig`;
the argparse parser is generated from the fields (their ``help`` metadata, and
``choices`` for the enumerations), so the two cannot drift apart.

Fields whose default depends on the task (``dataset``, ``model``, ``lr``, ...) are
declared ``None`` ("the task's default") and resolved in ``__post_init__`` from
:data:`TASK_DEFAULTS`; a constructed config never holds such a ``None``. A config is
validated when it is built: bad input raises :class:`ConfigError` (a ``ValueError``)
naming the field, the value and what would be valid; the CLI turns it into exit code 2.

A *cell* is the set of fields that decide what is computed (everything but where
things live, how they are shown and which code path computes them,
:data:`LOCATION_FIELDS`; and of the fields a method or base optimizer owns, only
those its own read: ``benchmarks.methods``); ``cell_id`` hashes it, so the same cell
always maps to the same run directory. The ids of the paper's experiments are pinned
(tests/test_cell_ids_golden.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import typing
from dataclasses import dataclass, field
from typing import Any

from vasso.sam import SKIP, SYNC

from .imagenet.sizes import MODELS as IMAGENET_MODELS
from .imagenet.sizes import image_size_problem
from .methods import BASES, METHODS, readers, unused_fields


class ConfigError(ValueError):
    """Bad user input: the CLI prints it and exits with code 2, writing nothing."""


OPTIMIZERS = tuple(METHODS)
BASE_OPTIMIZERS = tuple(BASES)
SCHEDULES = ("cosine", "cosine-epoch", "constant", "linear", "inverse-sqrt")
PRECISIONS = ("fp32", "bf16", "fp16")
BN_STATS = ("first", "both")
# CIFAR input statistics: the official code's CIFAR-10 values for both datasets, or
# each training set's own (benchmarks.data). The digits task standardises by its own.
NORM_STATS = ("official", "dataset")
DEVICES = ("auto", "cpu", "cuda")
PROGRESS = ("auto", "bar", "log", "none")
FAST = ("auto", "on", "off")
ASAM_SCALES = ("weights", "all")
SKIP_MODES = SKIP  # what a step without a fresh ascent does (vasso.SharpnessAware's skip)
SYNC_MODES = SYNC  # the data-parallel perturbation (vasso.SharpnessAware's sync)

# What each task can train, and its defaults for the task-dependent fields.
TASK_DATASETS: dict[str, tuple[str, ...]] = {
    "digits": ("digits",),
    "mnist1d": ("mnist1d",),
    "cifar": ("cifar10", "cifar100"),
    "imagenet": ("imagenet",),
    "translation": ("iwslt14-de-en",),
    # The eight GLUE tasks, as benchmarks.glue.spec names them (tests/test_glue_task.py).
    "glue": ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"),
}
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "digits": ("digits_cnn",),
    "mnist1d": ("mnist1d_cnn",),
    "cifar": ("vgg11_bn", "resnet18", "wrn28_10", "pyramidnet110"),
    "imagenet": IMAGENET_MODELS,
    # transformer_tiny: the CPU-sized variant the tests train (benchmarks.translation.model).
    "translation": ("transformer_iwslt_de_en", "transformer_tiny"),
    # The suite's named models; --model may also be another Hugging Face id or a local
    # directory (benchmarks.glue.models finds it offline).
    "glue": ("roberta-base", "bert-base-uncased"),
}
# Tasks whose --model is not limited to TASK_MODELS.
OPEN_MODEL_TASKS = ("glue",)
# Defaults every task shares unless it sets its own: the base optimizer and its settings.
COMMON_DEFAULTS: dict[str, Any] = dict(base="sgd", warmup_epochs=0.0, warmup_steps=0,
                                       label_smoothing=0.0, adam_beta2=0.999, adam_eps=1e-8)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {task: {**COMMON_DEFAULTS, **defaults} for task, defaults in {
    # Seconds on a laptop CPU: the embedded demo and the tests. One thread (also for
    # mnist1d): the models are small, and cells run side by side, one per core.
    "digits": dict(dataset="digits", model="digits_cnn", lr=0.05, weight_decay=5e-4,
                   epochs=30, batch_size=64, cutout_prob=0.0, norm_stats="dataset",
                   schedule="cosine", bn_stats="first", threads=1),
    "mnist1d": dict(dataset="mnist1d", model="mnist1d_cnn", lr=0.05, weight_decay=5e-4,
                    epochs=30, batch_size=64, cutout_prob=0.0, norm_stats="dataset",
                    schedule="cosine", bn_stats="first", threads=1),
    # The official VaSSO CIFAR recipe (docs/recipe.md): 200 epochs, batch 128, lr 0.05,
    # wd 1e-3, Cutout 16x16 with probability 0.5, the official code's CIFAR-10 statistics,
    # its per-epoch cosine and BatchNorm statistics from both passes.
    # Four threads: the GPU computes, the main process only collates and copies, and with
    # the 4 loader workers (one thread each) it fills the 8 cores a Slurm cell asks for.
    "cifar": dict(dataset="cifar10", model="resnet18", lr=0.05, weight_decay=1e-3,
                  epochs=200, batch_size=128, cutout_prob=0.5, norm_stats="official",
                  schedule="cosine-epoch", bn_stats="both", threads=4),
    # ResNet-50 with the ResNet recipe's settings that are task defaults here
    # (benchmarks/imagenet/recipes.py, all *unverified*); the `imagenet` experiment sets
    # the rest (warm-up, label smoothing, bf16; AdamW and clipping for the ViTs).
    "imagenet": dict(dataset="imagenet", model="resnet50", lr=0.1, weight_decay=1e-4,
                     epochs=90, batch_size=256, cutout_prob=0.0, norm_stats="dataset",
                     schedule="cosine", bn_stats="first", threads=4, image_size=224),
    # fairseq's IWSLT'14 De-En recipe (docs/translation.md): batches of at most 4,096 tokens,
    # AdamW with betas (0.9, 0.98), lr 5e-4 with the inverse-sqrt schedule after 4,000
    # warm-up steps, wd 1e-4, label smoothing 0.1. The length, 60 epochs (~66k updates),
    # is *unverified*: the paper's could not be read. batch_size is unused (token batches).
    "translation": dict(dataset="iwslt14-de-en", model="transformer_iwslt_de_en", base="adamw",
                        adam_beta2=0.98, lr=5e-4, weight_decay=1e-4, schedule="inverse-sqrt",
                        warmup_steps=4000, label_smoothing=0.1, epochs=60, batch_size=1,
                        max_tokens=4096, cutout_prob=0.0, norm_stats="dataset", bn_stats="first",
                        threads=4),
    # The RoBERTa fine-tuning recipe (benchmarks/glue/recipe.py, docs/glue.md): AdamW with
    # betas (0.9, 0.98), eps 1e-6, wd 0.1, a linear warm-up over 6% of the 10 epochs
    # (0.6 epochs) then a linear decay to 0, 128 tokens; RTE's lr and batch size.
    "glue": dict(dataset="rte", model="roberta-base", lr=2e-5, weight_decay=0.1, epochs=10,
                 batch_size=16, cutout_prob=0.0, norm_stats="dataset", schedule="linear",
                 bn_stats="first", threads=4, base="adamw", warmup_epochs=0.6, adam_beta2=0.98,
                 adam_eps=1e-6, max_length=128),
}.items()}
TASKS = tuple(TASK_DEFAULTS)  # the built-in ones; benchmarks.tasks.register adds others
# The default radius of each sharpness-aware method (vasso's class defaults): ASAM's
# useful rho is about ten times SAM's. Plain SGD has none (its rho stays None).
METHOD_RHO: dict[str, float] = {m.name: m.default_rho for m in METHODS.values()
                                if m.default_rho is not None}
# Tasks with a fast path (benchmarks/fast/: data on the device, the step in a CUDA graph).
FAST_TASKS = ("cifar",)

# Fields that say where things live, how they are shown and which code path runs the
# cell; they are not part of a cell (a cell's results must not depend on them).
LOCATION_FIELDS = ("data_dir", "runs_dir", "device", "download", "progress", "num_workers",
                   "fast", "threads", "stop_on_collapse", "checkpoint_every_steps", "snapshot_every")


def _default_data_dir() -> str:
    return os.environ.get("VASSO_DATA") or "./data"


def _default_runs_dir() -> str:
    return os.environ.get("VASSO_RUNS") or "./runs"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    return str(value)


def _per_key(values: dict[str, Any]) -> str:
    """``{"digits": 30, "cifar": 200}`` -> "30 for digits, 200 for cifar"; one value if all agree."""
    keys_of: dict[str, list[str]] = {}
    for key, value in values.items():
        keys_of.setdefault(_show(value), []).append(key)
    if len(keys_of) == 1:
        return next(iter(keys_of))
    return "; ".join(f"{value} for {', '.join(keys)}" for value, keys in keys_of.items())


def default_num_workers() -> int:
    """DataLoader workers when ``--num-workers`` is not given: the CPUs this process
    may use (its affinity, which a Slurm allocation sets, and ``SLURM_CPUS_PER_TASK``),
    at most 8. Resolved where the cell runs, never where it was launched."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return min(cpus, 8)


def _opt(text: str, choices: tuple[str, ...] | None = None, default_text: str | None = None,
         **kw: Any) -> Any:
    """A dataclass field carrying its CLI help (and choices) as metadata.

    ``default_text``: what ``--help`` says the default is, for a default that is not
    a plain value (None standing for "per method", a value from the environment).
    """
    return field(metadata={"help": text, "choices": choices, "default_text": default_text}, **kw)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; see the module docstring."""

    task: str = _opt("the task to train")  # one of TASK_DEFAULTS (registered tasks included)
    # What is trained.
    dataset: str | None = _opt("dataset", default=None)
    model: str | None = _opt("model name (see benchmarks.models)", default=None)
    pyramidnet_alpha: int = _opt("PyramidNet widening factor alpha", default=270)
    image_size: int | None = _opt("training crop side in pixels; evaluation resizes the shorter "
                                  "side to image_size * 256/224, then crops the centre (imagenet)",
                                  default=None)
    # The optimizer.
    optimizer: str = _opt("the method: " + "; ".join(f"{m.name} = {m.help}" for m in METHODS.values()),
                          OPTIMIZERS, default="sgd")
    base: str | None = _opt("base optimizer (the one --optimizer sgd trains alone, and the one the "
                            "sharpness-aware methods wrap)", BASE_OPTIMIZERS, default=None)
    rho: float | None = _opt("perturbation radius, rho_max for GSAM", default=None,
                             default_text=_per_key(METHOD_RHO))
    theta: float = _opt("VaSSO averaging weight theta in (0, 1]; 1 is SAM", default=0.9)
    eta: float = _opt("ASAM's eta in T_w = |w| + eta", default=0.01)
    asam_scale: str = _opt("tensors ASAM scales: 'weights' (official) or 'all'", ASAM_SCALES, default="weights")
    gsam_alpha: float = _opt("GSAM's alpha (weight of the orthogonal ascent)", default=0.0)
    gsam_rho_min: float | None = _opt("GSAM's rho_min", default=None, default_text="rho, a constant rho")
    ascent_every: int = _opt("perturb every k-th step only (1: every step)", default=1)
    ascent_prob: float | None = _opt("instead, perturb each step with probability p in (0, 1], "
                                     "drawn from a seeded generator", default=None,
                                     default_text="none: --ascent-every decides")
    skip: str = _opt("what a step without a fresh perturbation does: clean = one pass at w, the "
                     "clean gradient; reuse = one pass at w + the last perturbation", SKIP_MODES,
                     default="clean")
    update_on_reuse: bool = _opt("VaSSO with --skip reuse: feed the gradient of a reused step into "
                                 "its average too", default=False)
    bn_stats: str | None = _opt("BatchNorm running statistics from the first pass or both passes "
                                "(both: what the official code does)", BN_STATS, default=None)
    sync: str = _opt("data parallel: the perturbation from the gradient all-reduced over the ranks "
                     "(global, as one process on the whole batch) or from each rank's own share "
                     "(local: the SAM paper's m-sharpness with m = the per-rank batch; one "
                     "all-reduce per step instead of two)", SYNC_MODES, default="global")
    sync_batchnorm: bool = _opt("data parallel on GPUs: BatchNorm statistics over the global batch "
                                "(SyncBatchNorm) instead of each rank's share", default=False)
    lr: float | None = _opt("peak learning rate", default=None)
    schedule: str | None = _opt("learning-rate schedule, per step after the linear warm-up: "
                                "cosine = a cosine to 0; linear = a linear decay to 0; constant; "
                                "inverse-sqrt = fairseq's inverse_sqrt (lr * sqrt(warm-up / step); "
                                "needs a warm-up); cosine-epoch = the official VaSSO code's, a cosine "
                                "set once per epoch after it with the finished epoch's index (epochs "
                                "0 and 1 at the peak rate, the last one above 0; no warm-up)",
                                SCHEDULES, default=None)
    warmup_epochs: float | None = _opt("linear warm-up length in epochs", default=None)
    warmup_steps: int | None = _opt("linear warm-up length in steps (instead of --warmup-epochs)",
                                    default=None)
    clip_grad_norm: float | None = _opt("clip the global norm of the descent gradient to this "
                                        "(sharpness-aware methods: the gradient at w + e; the ascent "
                                        "is unaffected)", default=None, default_text="no clipping")
    weight_decay: float | None = _opt("weight decay", default=None)
    momentum: float = _opt("SGD momentum", default=0.9)
    nesterov: bool = _opt("Nesterov momentum for the SGD base", default=False)
    adam_beta1: float = _opt("AdamW's beta1", default=0.9)
    adam_beta2: float | None = _opt("AdamW's beta2", default=None)
    adam_eps: float | None = _opt("AdamW's eps", default=None)
    # The training run.
    epochs: int | None = _opt("number of epochs (or give --max-steps)", default=None)
    max_steps: int | None = _opt("length of training in optimizer steps, instead of --epochs "
                                 "(the last epoch may end part-way)", default=None,
                                 default_text="none, --epochs whole epochs")
    batch_size: int | None = _opt("training batch size", default=None)
    max_tokens: int | None = _opt("translation: at most this many tokens per batch (source or "
                                  "target, padding included), batches grouped by length",
                                  default=None)
    steps_per_epoch: int | None = _opt("cap on the steps of every epoch (smoke runs; part of the "
                                       "cell)", default=None, default_text="none, whole epochs")
    eval_every: int = _opt("evaluate every k epochs (and always after the last)", default=1)
    eval_every_steps: int | None = _opt("also evaluate every k steps", default=None,
                                        default_text="only at the ends of epochs")
    label_smoothing: float | None = _opt("label smoothing of the training loss", default=None)
    max_length: int | None = _opt("glue: the tokens a row is truncated to, special tokens "
                                  "included", default=None)
    label_noise: float = _opt("fraction of training labels flipped to another class, in [0, 1)", default=0.0)
    cutout_prob: float | None = _opt("probability of a 16x16 Cutout", default=None)
    norm_stats: str | None = _opt("input normalisation: official = the official code's CIFAR-10 "
                                  "statistics for CIFAR-10 and CIFAR-100 alike; dataset = each "
                                  "dataset's own", NORM_STATS, default=None)
    precision: str = _opt("fp32, bf16 autocast, or fp16 autocast with a gradient scaler",
                          PRECISIONS, default="fp32")
    seed: int = _opt("seed index; data and init seeds derive from (task, dataset, model, seed)", default=0)
    experiment: str = _opt("experiment name: the runs-dir subfolder", default="adhoc")
    # Where things live and how they are shown (not part of the cell).
    data_dir: str = _opt("dataset root", default_factory=_default_data_dir,
                         default_text="$VASSO_DATA, else ./data")
    runs_dir: str = _opt("runs root", default_factory=_default_runs_dir,
                         default_text="$VASSO_RUNS, else ./runs")
    device: str = _opt("device: auto picks cuda when available", DEVICES, default="auto")
    download: bool = _opt("download a missing dataset (never otherwise)", default=False)
    progress: str = _opt("progress display: auto = a bar on a TTY, otherwise one line per epoch "
                         "(log; plus a step line a minute in long epochs)", PROGRESS,
                         default="auto")
    num_workers: int | None = _opt("DataLoader worker processes (in-memory tasks use none)", default=None,
                                   default_text="the CPUs this process may use (Slurm's allocation "
                                   "in a job), at most 8")
    fast: str = _opt("the fast path: cifar: data augmented on the device, the step in a CUDA "
                     "graph; imagenet: JPEG decoding and augmentation on the device. auto = on "
                     "on CUDA; on = also on the CPU (eager); only these two tasks have one",
                     FAST, default="auto")
    threads: int | None = _opt("torch intra-op threads, pinned so that a cell gives the same "
                               "numbers wherever it runs on one machine", default=None)
    checkpoint_every_steps: int | None = _opt("also write a checkpoint every k steps (it is always "
                                              "written at the end of an epoch)", default=None,
                                              default_text="only at the ends of epochs")
    stop_on_collapse: bool = _opt("stop a run whose training loss has collapsed to the "
                                  "uniform-prediction level (docs/collapse.md; error.json, exit 1) "
                                  "instead of training every epoch", default=False)
    snapshot_every: int = _opt("also keep the model's weights every k epochs in snapshots/ "
                               "(for python -m benchmarks.diagnose; 0: none)", default=0)

    def __post_init__(self) -> None:
        if self.task not in TASK_DEFAULTS:
            raise ConfigError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASK_DEFAULTS)}")
        if self.max_steps is not None and self.epochs is not None:
            raise ConfigError(f"--epochs={self.epochs} and --max-steps={self.max_steps}: give the "
                              "length of training once, in epochs or in steps")
        given = {name for name in _OTHER_WARMUP if getattr(self, name) is not None}
        for name, value in TASK_DEFAULTS[self.task].items():
            if name == "epochs" and self.max_steps is not None:
                continue  # the length is given in steps
            if name in _OTHER_WARMUP and _OTHER_WARMUP[name] in given:
                value = 0  # the warm-up is given in the other unit: none in this one
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.rho is None:  # None for SGD, and for an unknown optimizer (_validate says so)
            object.__setattr__(self, "rho", METHOD_RHO.get(self.optimizer))
        self._coerce_types()
        self._validate()

    def _coerce_types(self) -> None:
        """Ints given for float fields become floats, so that ``rho=1`` and ``rho=1.0``
        are the same cell (same canonical JSON); any other type mismatch is an error."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _base_type(f)
            if value is None and f.name in _OPTIONAL_FIELDS:
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{_flag(f.name)}={value!r}: expected {kind.__name__}")

    def _validate(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"--{name.replace('_', '-')}={getattr(self, name)!r}: {why}")

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise bad(f.name, f"valid choices: {', '.join(choices)}")
        if self.dataset not in TASK_DATASETS[self.task]:
            raise bad("dataset", f"task {self.task!r} has datasets: {', '.join(TASK_DATASETS[self.task])}")
        if self.task in OPEN_MODEL_TASKS:
            if not self.model:
                raise bad("model", f"name a model: {', '.join(TASK_MODELS[self.task])}, another "
                          "Hugging Face id, or a directory written by save_pretrained")
        elif self.model not in TASK_MODELS[self.task]:
            raise bad("model", f"task {self.task!r} has models: {', '.join(TASK_MODELS[self.task])}")
        for name in ("rho", "eta", "gsam_alpha", "weight_decay", "momentum", "warmup_epochs",
                     "label_smoothing"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise bad(name, "must be a finite number >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "must lie in [0, 1)")
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise bad("adam_eps", "must be a finite number > 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a finite number > 0")
        if not 0 < self.theta <= 1:
            raise bad("theta", "must lie in (0, 1] (theta = 1 is SAM)")
        if self.gsam_rho_min is not None and self.rho is not None and not 0 <= self.gsam_rho_min <= self.rho:
            raise bad("gsam_rho_min", f"must lie in [0, rho={self.rho}]")
        if self.ascent_prob is not None:
            if not 0 < self.ascent_prob <= 1:
                raise bad("ascent_prob", "must lie in (0, 1]")
            if self.ascent_every > 1:
                raise bad("ascent_prob", "give --ascent-every or --ascent-prob, not both")
        if self.sync == "local" and self.optimizer == "gsam" and self.gsam_alpha:
            raise bad("sync", f"GSAM with --gsam-alpha={self.gsam_alpha} descends along the "
                      "first-pass gradient, which sync local keeps per rank (the ranks' weights "
                      "would drift apart); use --sync global or --gsam-alpha 0")
        if self.update_on_reuse and (self.optimizer != "vasso" or self.skip != "reuse"):
            raise bad("update_on_reuse", "only VaSSO with --skip reuse has an average to feed; "
                      "use --optimizer vasso --skip reuse, or leave it off")
        if not 0 <= self.label_noise < 1:
            raise bad("label_noise", "must lie in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "must lie in [0, 1)")
        if not 0 <= self.cutout_prob <= 1:
            raise bad("cutout_prob", "must lie in [0, 1]")
        if self.task != "cifar" and self.cutout_prob > 0:
            what = "'s augmentation has no Cutout" if self.task == "imagenet" else " has no augmentation"
            raise bad("cutout_prob", f"the {self.task} task{what}; use 0")
        if self.task == "glue":
            for name in ("label_noise", "label_smoothing"):
                if getattr(self, name):
                    raise bad(name, "the glue task trains on GLUE's own labels with the "
                              "recipe's loss; use 0")
            if self.max_length < 8:
                raise bad("max_length", "must be an integer >= 8 (the model's maximum is "
                          "checked when it is loaded)")
        elif self.max_length is not None:
            raise bad("max_length", f"only the glue task reads it; the {self.task} task takes none")
        if self.task != "cifar" and self.norm_stats != "dataset":
            raise bad("norm_stats", f"the {self.task} task standardises by its own statistics; "
                      "use dataset")
        for name in ("batch_size", "ascent_every", "eval_every", "pyramidnet_alpha"):
            if getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("epochs", "max_steps", "steps_per_epoch", "eval_every_steps",
                     "checkpoint_every_steps", "max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1 (or left out)")
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm)
                                                    and self.clip_grad_norm > 0):
            raise bad("clip_grad_norm", "must be a finite number > 0 (or left out: no clipping)")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", "must be an integer >= 0")
        if self.warmup_steps and self.warmup_epochs:
            raise bad("warmup_steps", f"and --warmup-epochs={self.warmup_epochs}: give the "
                      "warm-up once, in epochs or in steps")
        if self.epochs is not None and self.warmup_epochs > self.epochs:
            raise bad("warmup_epochs", f"must not exceed --epochs={self.epochs}")
        if self.max_steps is not None and self.warmup_steps > self.max_steps:
            raise bad("warmup_steps", f"must not exceed --max-steps={self.max_steps}")
        if self.schedule == "cosine-epoch" and (self.warmup_epochs or self.warmup_steps):
            raise bad("warmup_epochs" if self.warmup_epochs else "warmup_steps",
                      "the official per-epoch schedule (cosine-epoch) has no warm-up; use 0, "
                      "or --schedule cosine")
        if self.schedule == "cosine-epoch" and self.epochs is None:
            raise bad("schedule", "cosine-epoch is set per epoch: give --epochs instead of --max-steps, "
                      "or another --schedule")
        if self.schedule == "inverse-sqrt" and not (self.warmup_epochs or self.warmup_steps):
            raise bad("schedule", "inverse-sqrt decays from the end of its warm-up: give "
                      "--warmup-steps or --warmup-epochs")
        if self.num_workers is not None and self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if self.threads < 1:
            raise bad("threads", "must be an integer >= 1")
        if self.image_size is not None and self.task != "imagenet":
            raise bad("image_size", f"the {self.task} task has a fixed input size; leave it out")
        if self.task == "imagenet":
            problem = image_size_problem(self.model, self.image_size)
            if problem:
                raise bad("image_size", problem)
        if self.fast == "on" and self.task not in (*FAST_TASKS, "imagenet"):
            raise bad("fast", f"only the {', '.join(FAST_TASKS)} and imagenet tasks have a fast "
                      "path; use auto or off")
        if self.seed < 0:
            raise bad("seed", "the seed index must be >= 0")
        if not self.experiment or "/" in self.experiment or self.experiment.startswith("."):
            raise bad("experiment", "must be a plain, non-empty folder name")


# A warm-up is given once, in epochs or in steps: giving one sets the other to 0
# (instead of the task's default, which would clash with it).
_OTHER_WARMUP = {"warmup_epochs": "warmup_steps", "warmup_steps": "warmup_epochs"}

# Fields that may stay None after the task defaults are applied.
_OPTIONAL_FIELDS = ("rho", "image_size", "max_tokens", "max_length", "gsam_rho_min", "ascent_prob",
                    "epochs", "max_steps", "steps_per_epoch", "eval_every_steps",
                    "checkpoint_every_steps", "clip_grad_norm", "num_workers")


# Fields added after the cell ids were pinned (tests/test_cell_ids_golden.py). Such a
# field joins a cell's identity only where it differs from its (dataclass) default, so
# that adding an option does not move the cells that existed before it: a new id would
# orphan the runs users already have. Append every new field here.
FIELDS_ADDED_AFTER_PIN: tuple[str, ...] = ("image_size", "max_tokens", "max_length", "sync",
                                           "sync_batchnorm")


def cell_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The fields that define the cell: all but :data:`LOCATION_FIELDS`, and of the
    fields a method or a base optimizer owns (``benchmarks.methods``), only those of
    the cell's own (SGD's cell holds no rho, SAM's no theta, an SGD-based one no
    AdamW betas). Fields no method or base owns (the task, the data, the schedule)
    are in every cell; one of :data:`FIELDS_ADDED_AFTER_PIN` only when not at its default."""
    unused = unused_fields(cfg.optimizer, cfg.base)
    fields = {k: v for k, v in dataclasses.asdict(cfg).items()
              if k not in LOCATION_FIELDS and k not in unused}
    for name in FIELDS_ADDED_AFTER_PIN:
        if name in fields and fields[name] == TrainConfig.__dataclass_fields__[name].default:
            del fields[name]
    return fields


def cell_id(cfg: TrainConfig) -> str:
    """12 hex chars of sha256 over the canonical (sorted-key) JSON of the cell fields."""
    canonical = json.dumps(cell_fields(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def run_dir(cfg: TrainConfig) -> pathlib.Path:
    """``<runs_dir>/<experiment>/<cell_id>``."""
    return pathlib.Path(cfg.runs_dir) / cfg.experiment / cell_id(cfg)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _base_type(f: dataclasses.Field) -> type:
    """The scalar type of a field (``float | None`` -> ``float``)."""
    hint = _type_hints()[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: what is wrong and what is valid
    (argparse's message names the valid choices), exit code 2. The usage is in --help."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _default_help(f: dataclasses.Field, task: str | None) -> str:
    """The real default of a field, as --help shows it: the task's own (every task's
    when none is named), or what the field's metadata says for a computed default."""
    if any(f.name in defaults for defaults in TASK_DEFAULTS.values()):
        if task in TASK_DEFAULTS:  # a field only some tasks use (--max-tokens, --image-size) is "none" for the others
            return _show(TASK_DEFAULTS[task].get(f.name, "none"))
        present = {t: d[f.name] for t, d in TASK_DEFAULTS.items() if f.name in d}
        if len(present) == len(TASK_DEFAULTS):
            return _per_key(present)
        return _per_key({**present, **{t: "none" for t in TASK_DEFAULTS if t not in present}})
    if f.metadata.get("default_text"):
        return f.metadata["default_text"]
    return _show(f.default)


def _help(f: dataclasses.Field, task: str | None) -> str:
    """A field's --help line: what it is, who reads it (a field a method or a base
    optimizer owns is ignored by the others) and its default."""
    read_by = f"; only for {readers(f.name)}" if readers(f.name) else ""
    return f"{f.metadata['help']}{read_by} (default: {_default_help(f, task)})"


def build_parser(task: str | None = None) -> ArgumentParser:
    """The ``python -m benchmarks`` parser, generated from the fields of TrainConfig.

    ``task``: whose defaults --help shows (every task's when None).
    """
    parser = ArgumentParser(
        prog="python -m benchmarks",
        description="Train one cell (task x model x optimizer x hyperparameters x seed) "
        "into <runs-dir>/<experiment>/<cell-id>. Exit codes: 0 done, 75 preempted "
        "(relaunch resumes), 1 failed (error.json), 2 bad input. "
        + (f"Defaults shown are the {task} task's." if task in TASK_DEFAULTS
           else "`python -m benchmarks TASK --help` shows one task's defaults."),
    )
    for f in dataclasses.fields(TrainConfig):
        choices = f.metadata.get("choices")
        if f.name == "task":
            parser.add_argument("task", choices=tuple(TASK_DEFAULTS), help=f.metadata["help"])
            continue
        help = _help(f, task)
        kind = _base_type(f)
        # argparse defaults are None: a field left out keeps the dataclass default
        # (or the task's), which depends on the task given first.
        if kind is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                                default=None, help=help)
        else:
            parser.add_argument(_flag(f.name), type=kind, choices=choices, default=None,
                                help=help, metavar=None if choices else kind.__name__.upper())
    return parser


def parse_argv(argv: list[str]) -> TrainConfig:
    """Parse ``[TASK, --option value, ...]``; raises ConfigError for invalid values."""
    task = next((a for a in argv if not a.startswith("-")), None)  # for --help's defaults
    ns = build_parser(task).parse_args(argv)
    given = {k: v for k, v in vars(ns).items() if v is not None}
    return TrainConfig(**given)


def to_argv(cfg: TrainConfig) -> list[str]:
    """The CLI arguments that rebuild ``cfg``: ``parse_argv(to_argv(cfg)) == cfg``."""
    argv = [cfg.task]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "task" or value is None:
            continue
        if isinstance(value, bool):
            argv.append(_flag(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            # repr() of a float round-trips exactly through float().
            argv += [_flag(f.name), repr(value) if isinstance(value, float) else str(value)]
    return argv
