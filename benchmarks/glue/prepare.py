"""Everything a GLUE cell needs before training: the task, the model's directory and
tokenizer, and the token ids of every split (from the on-disk cache when it has them)."""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from . import data, features, models
from .features import Encoded
from .spec import GlueTask, get_glue_task


@dataclass
class GlueData:
    """A task's tokenised splits and what batches them. ``dev`` holds the rows of every
    dev set (one, or MNLI's matched then mismatched), each marked with its set's index
    in ``task.dev_splits`` (``Encoded.split``)."""

    task: GlueTask
    model_path: pathlib.Path
    tokenizer: Any
    train: Encoded
    dev: Encoded
    pad_id: int
    max_length: int
    record: dict[str, Any] = field(default_factory=dict)

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        return features.length_grouped_batches(self.train.lengths, batch_size, seed, epoch)

    def dev_batches(self, batch_size: int) -> list[list[int]]:
        return features.evaluation_batches(self.dev.lengths, batch_size)

    def collate(self, split: Encoded, indices: list[int]) -> dict:
        return features.pad_batch(split, indices, self.pad_id, self.max_length)


def missing(task_name: str, model: str, data_dir: pathlib.Path) -> str | None:
    """What of a GLUE cell is not on this machine (data first, then the model), one line; None if all is."""
    task = get_glue_task(task_name)
    return data.missing_data(task, data_dir) or models.missing_model(model, data_dir)


def _folder_name(model: str) -> str:
    """A readable cache folder for a model id or path (the cache key itself hashes the tokenizer)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"


def prepare(task_name: str, model: str, data_dir: pathlib.Path, max_length: int,
            download: bool = False) -> GlueData:
    """Load (never download unless ``download``) and tokenise; ConfigError (one line) on bad input."""
    task = get_glue_task(task_name)
    if download and data.find_source(task, data_dir) is None:
        data.download(task, data_dir)
    splits = data.load_splits(task, data_dir)
    model_path = models.resolve_model(model, data_dir, download)
    tokenizer = models.load_tokenizer(model_path)
    from transformers import AutoConfig

    models.check_fit(AutoConfig.from_pretrained(str(model_path), local_files_only=True),
                     tokenizer, task, max_length, model)
    key = models.tokenizer_digest(model_path)
    cache_dir = data_dir / features.CACHE_ROOT / _folder_name(model)
    encoded, cached = {}, {}
    for name, split in splits.items():
        encoded[name], cached[name] = features.cached_encode(tokenizer, key, task, name, split,
                                                             max_length, cache_dir)
    record = {"glue": {"task": task.name, "model_path": str(model_path), "tokenizer_sha256": key,
                       "max_length": max_length, "tokenized_from_cache": cached,
                       "splits": {name: split.record for name, split in splits.items()}}}
    dev = features.concat([encoded[name] for name in task.dev_splits])
    return GlueData(task, model_path, tokenizer, encoded["train"], dev,
                    tokenizer.pad_token_id, max_length, record)
