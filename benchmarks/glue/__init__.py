"""GLUE fine-tuning pieces: the eight tasks (``spec``), their local copies (``data``),
the pretrained model found offline (``models``), token ids and batches (``features``),
the official metrics (``metrics``), and ``prepare``, which puts them together."""

from .prepare import GlueData, missing, prepare
from .spec import GLUE_TASKS, GlueTask, get_glue_task

__all__ = ["GLUE_TASKS", "GlueData", "GlueTask", "get_glue_task", "missing", "prepare"]
