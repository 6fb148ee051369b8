"""Tasks: each contributes its data, its model and its metrics to the one engine."""

from __future__ import annotations

from typing import Any

from .. import config
from .base import Metric, Task, TaskData, TrainLoss
from .cifar import CifarTask
from .digits import DigitsTask
from .glue import GlueTask
from .imagenet import ImageNetTask
from .mnist1d import Mnist1dTask
from .translation import TranslationTask

TASKS: dict[str, Task] = {"digits": DigitsTask(), "mnist1d": Mnist1dTask(), "cifar": CifarTask(),
                          "imagenet": ImageNetTask(), "translation": TranslationTask(),
                          "glue": GlueTask()}


def register(task: Task, *, datasets: tuple[str, ...], models: tuple[str, ...],
             defaults: dict[str, Any]) -> None:
    """Add ``task`` (a runner's, or one a test defines) to the engine and the command line:
    its datasets, its models and its defaults for the task-dependent fields of
    ``TrainConfig`` (dataset, model, lr, ...; see ``benchmarks.config.TASK_DEFAULTS``)."""
    TASKS[task.name] = task
    config.TASK_DATASETS[task.name] = tuple(datasets)
    config.TASK_MODELS[task.name] = tuple(models)
    config.TASK_DEFAULTS[task.name] = {**config.COMMON_DEFAULTS, **defaults}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["Metric", "Task", "TaskData", "TrainLoss", "get_task", "register", "TASKS"]
