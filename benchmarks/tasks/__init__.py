"""Tasks: each contributes its data, its model and its metrics to the one engine."""

from __future__ import annotations

from .base import Metric, Task, TaskData, TrainLoss
from .cifar import CifarTask
from .digits import DigitsTask
from .glue import GlueTask
from .mnist1d import Mnist1dTask

TASKS: dict[str, Task] = {"digits": DigitsTask(), "mnist1d": Mnist1dTask(), "cifar": CifarTask(),
                          "glue": GlueTask()}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["Metric", "Task", "TaskData", "TrainLoss", "get_task", "TASKS"]
