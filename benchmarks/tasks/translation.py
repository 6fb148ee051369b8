"""IWSLT'14 De-En translation with a Transformer: fairseq's recipe (docs/translation.md).

The pieces live in :mod:`benchmarks.translation`; this adapter gives them to the engine:
the prepared data, checked against its manifest and the model's positions before
anything is written; token-count batches grouped by length, a pure function of
(seed, epoch); fairseq's label-smoothed loss as the mean per target token (what both
passes of a sharpness-aware method differentiate); and evaluation by beam search
(beam 5) and both BLEU figures on a fixed subset of the validation set, tokenised
BLEU being the primary metric (metrics.jsonl's "valid" lines; result.json's ``valid``).
At the end the last weights and those of the best validation BLEU are scored on the
whole test set (result.json's ``final.test`` and ``best.test``), their translations
written to the run directory's ``outputs/`` (``last.test.hyp.en``, ``best.test.hyp.en``,
and detokenised), and meta.json holds the sacreBLEU signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import nn

from ..config import TrainConfig
from ..translation.batching import token_batches
from ..training.data_path import to_device
from ..translation.bleu import detokenize, sacrebleu_signature, hypothesis_text, score
from ..translation.corpus import TARGET
from ..translation.data import Prepared, check_lengths, collate, load_prepared
from ..translation.evaluate import validation_subset
from ..translation.loss import label_smoothed_loss
from ..translation.model import ARCHITECTURES, Transformer
from ..translation.prepare import MANIFEST, PREPARE_COMMAND, PREPARED, dataset_root
from ..translation.search import beam_search
from .base import Batch, Keys, Metric, Task, TaskData, TrainLoss, data_seed

VALID_SUBSET = 1000  # validation sentences translated at every evaluation during training
EVAL_TOKENS = 8192   # source tokens per decoding batch
BEAM, LENPEN = 5, 1.0


@dataclass
class TranslationData(TaskData):
    """The task's data: ``train`` and ``test`` (the validation split, which evaluation
    during training scores) are :class:`~benchmarks.translation.data.ParallelSplit`s."""

    prepared: Prepared | None = None


class TranslationTask(Task):
    name = "translation"
    metrics = (Metric("bleu", True, ".2f", "BLEU (tokenised)", (0.0, 100.0)),
               Metric("sacrebleu", True, ".2f", "sacreBLEU", (0.0, 100.0)),
               Metric("loss", False, ".4f", "label-smoothed loss per token"),
               Metric("nll", False, ".4f", "NLL per token"))
    primary = "bleu"
    eval_split = "valid"  # the fixed validation subset; the test set is scored at the end:
    tests_at_end = True   # the last weights and the best by validation BLEU

    def missing_data(self, cfg: TrainConfig) -> str | None:
        manifest = dataset_root(cfg.data_dir) / PREPARED / MANIFEST
        if manifest.is_file():
            return None
        return (f"IWSLT'14 De-En is not prepared ({manifest} is missing): place de-en.tgz in "
                f"{dataset_root(cfg.data_dir)} and run `{PREPARE_COMMAND.format(data_dir=cfg.data_dir)}`")

    def load_data(self, cfg: TrainConfig) -> TranslationData:
        prepared = load_prepared(cfg.data_dir)
        for name, split in prepared.splits.items():
            check_lengths(split, name, ARCHITECTURES[cfg.model].max_positions)
        counts = prepared.manifest["counts"]
        return TranslationData(train=prepared.splits["train"], test=prepared.splits["valid"],
                               collate=collate, in_memory=True, prepared=prepared,
                               meta={"prepared_data": {"folder": str(prepared.folder),
                                                       "counts": counts},
                                     "sacrebleu_signature": sacrebleu_signature()})

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        sizes = {lang: len(d) for lang, d in data.prepared.dictionaries.items()}
        return Transformer(sizes["de"], sizes["en"], ARCHITECTURES[cfg.model])

    def plan_batches(self, cfg: TrainConfig, data: TaskData, epoch: int) -> Keys:
        train = data.train
        return [b.tolist() for b in token_batches(train.src_lengths, train.tgt_lengths, cfg.max_tokens,
                                                  seed=data_seed(cfg, "batches"), epoch=epoch)]

    def plan_eval(self, cfg: TrainConfig, data: TaskData) -> Keys:
        """The fixed validation subset (the same at every evaluation and for every method
        at a seed index), in length-sorted batches."""
        subset = validation_subset(len(data.test), VALID_SUBSET, data_seed(cfg, "valid-subset"))
        lengths = data.test.src_lengths[subset]
        return [[subset[i] for i in b] for b in token_batches(lengths, lengths, EVAL_TOKENS)]

    def loss(self, model, batch: Batch, cfg: TrainConfig) -> TrainLoss:
        loss, nll, tokens = label_smoothed_loss(model(batch["src"], batch["prev"]), batch["target"],
                                                cfg.label_smoothing)
        return TrainLoss(loss / tokens, {"loss": loss.detach(), "nll": nll.detach()}, tokens)

    def summarize(self, sums: Mapping[str, float], weight: float) -> dict[str, float]:
        return {"loss": sums["loss"] / weight, "nll": sums["nll"] / weight}

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], cfg: TrainConfig,
                 data: TaskData | None = None) -> dict[str, float]:
        """Validation: both BLEU figures of the beam-search translations of ``batches``
        (sentences of the validation subset) and the validation loss per token."""
        metrics, _ = self._translate_and_score(model, batches, cfg, data.prepared, "valid")
        return metrics

    def test(self, model: nn.Module, cfg: TrainConfig, data: TaskData
             ) -> tuple[dict[str, float], dict[str, str]]:
        """The whole test set: both BLEU figures and the loss, and the translations
        (``test.hyp.en``: tokenised, as fairseq-generate prints them; ``test.detok.en``)."""
        test, device = data.prepared.splits["test"], next(model.parameters()).device
        batches = (to_device(test.batch(b.tolist()), device)
                   for b in token_batches(test.src_lengths, test.src_lengths, EVAL_TOKENS))
        metrics, hypotheses = self._translate_and_score(model, batches, cfg, data.prepared, "test")
        return metrics, {"test.hyp.en": _lines(hypotheses), "test.detok.en": _lines(detokenize(hypotheses))}

    @staticmethod
    def _translate_and_score(model: nn.Module, batches: Iterable[Batch], cfg: TrainConfig,
                             prepared: Prepared, split: str) -> tuple[dict[str, float], list[str]]:
        """Metrics of ``batches`` of ``split`` and the translations, in corpus order."""
        ids, hypotheses = [], []
        loss = nll = tokens = torch.zeros(())
        for batch in batches:
            batch_loss, batch_nll, batch_tokens = label_smoothed_loss(
                model(batch["src"], batch["prev"]), batch["target"], cfg.label_smoothing)
            loss, nll, tokens = loss + batch_loss.cpu(), nll + batch_nll.cpu(), tokens + batch_tokens.cpu()
            ids += batch["id"].tolist()
            hypotheses += beam_search(model, batch["src"], BEAM, LENPEN)
        target = prepared.dictionaries[TARGET]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids = [ids[k] for k in order]
        texts = [hypothesis_text(hypotheses[k], target) for k in order]
        tokenized, raw = prepared.tokenized_references(split), prepared.raw_references[split]
        bleu = score(texts, [tokenized[i] for i in ids], [raw[i] for i in ids])
        return {"bleu": bleu["bleu"], "sacrebleu": bleu["sacrebleu"],
                "loss": float(loss / tokens), "nll": float(nll / tokens)}, texts


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
