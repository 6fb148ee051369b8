"""GLUE on the one engine: a pretrained Transformer fine-tuned on one GLUE task.

``--dataset`` is the GLUE task (``rte``, ``sst2``, ...; ``benchmarks.glue.spec``),
``--model`` the pretrained model (``roberta-base`` or ``bert-base-uncased``, another
Hugging Face id or a local directory, found offline: ``benchmarks.glue.models``),
``--max-length`` the tokens a row is truncated to. The data are read from a local
copy (``benchmarks.glue.data``) and tokenised once (``benchmarks.glue.features``);
the training batches are length-grouped and padded per batch, a pure function of
(seed, epoch), so a resumed run sees the very same batches. The dev sets are scored
with GLUE's metrics (``benchmarks.glue.metrics``); every GLUE task's primary metric
is ``score``. docs/glue.md has the whole story.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterable, Mapping

from torch import nn
from torch.utils.data import Dataset

from .. import glue
from ..config import TrainConfig
from ..glue import features, models, steps
from ..glue.features import Encoded
from .base import LOSS, Metric, Task, TaskData, TrainLoss, data_seed

# Every GLUE task's metrics, in percent; a run reports its own task's, the dev loss and,
# for training, the loss and (classification) the accuracy.
METRICS = tuple(Metric(m.name, format=".2f", title=m.title, bounds=(-100.0, 100.0))
                for m in dict.fromkeys(m for t in glue.GLUE_TASKS.values() for m in t.metrics)
                ) + (LOSS,)
EVAL_BATCH = 128  # dev rows per batch: no gradients, so more than training's


class Rows(Dataset):
    """A tokenised split addressed by row index; :func:`collate` pads a batch of rows."""

    def __init__(self, encoded: Encoded, pad_id: int, max_length: int) -> None:
        self.encoded, self.pad_id, self.max_length = encoded, pad_id, max_length

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[Rows, int]:
        return self, index

    def __getitems__(self, indices: list[int]) -> list[tuple[Rows, int]]:
        return [(self, i) for i in indices]


def collate(samples: list[tuple[Rows, int]]) -> dict:
    rows = samples[0][0]
    return features.pad_batch(rows.encoded, [i for _, i in samples], rows.pad_id, rows.max_length)


class GlueTask(Task):
    name = "glue"
    metrics = METRICS
    primary = "score"

    def missing_data(self, cfg: TrainConfig) -> str | None:
        return glue.missing(cfg.dataset, cfg.model, pathlib.Path(cfg.data_dir))

    def load_data(self, cfg: TrainConfig) -> TaskData:
        data = glue.prepare(cfg.dataset, cfg.model, pathlib.Path(cfg.data_dir), cfg.max_length,
                            download=cfg.download)
        return TaskData(train=Rows(data.train, data.pad_id, data.max_length),
                        test=Rows(data.dev, data.pad_id, data.max_length),
                        num_classes=None if data.task.is_regression else data.task.num_labels,
                        collate=collate, in_memory=True, record=data.record)

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        path = models.resolve_model(cfg.model, pathlib.Path(cfg.data_dir))
        return models.load_model(path, glue.get_glue_task(cfg.dataset)).model

    def plan_batches(self, cfg: TrainConfig, data: TaskData, epoch: int) -> list[list[int]]:
        return features.length_grouped_batches(data.train.encoded.lengths, cfg.batch_size,
                                               data_seed(cfg, "batches"), epoch)

    def plan_eval(self, cfg: TrainConfig, data: TaskData) -> list[list[int]]:
        return features.evaluation_batches(data.test.encoded.lengths, EVAL_BATCH)

    def loss(self, model: Any, batch: dict, cfg: TrainConfig) -> TrainLoss:
        return TrainLoss(*steps.training_loss(glue.get_glue_task(cfg.dataset), model, batch))

    def summarize(self, sums: Mapping[str, float], weight: float) -> dict[str, float]:
        out = {"loss": sums["loss"] / weight}
        if "correct" in sums:  # a classification task
            out["acc"] = 100.0 * sums["correct"] / weight
        return out

    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: TrainConfig,
                 data: TaskData | None = None) -> dict[str, float]:
        return steps.evaluate(glue.get_glue_task(cfg.dataset), model, batches)
