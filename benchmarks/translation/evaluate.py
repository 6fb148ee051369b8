"""Evaluation of a translation model: decode a split (or a fixed subset of it), score both
BLEU figures (:mod:`.bleu`), and keep the translations for the run directory."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data import derive_seed
from .bleu import hypothesis_text, score
from .corpus import TARGET
from .data import Prepared
from .model import Transformer
from .search import translate


def validation_subset(size: int, subset: int, seed: int) -> list[int]:
    """A fixed subset of ``subset`` validation sentences (all if ``subset`` >= ``size``),
    in corpus order: the same at every evaluation of a run, and for every method at one
    seed index."""
    if subset >= size:
        return list(range(size))
    rng = np.random.default_rng(derive_seed("valid-subset", seed))
    return sorted(rng.choice(size, subset, replace=False).tolist())


@torch.no_grad()
def evaluate_bleu(model: Transformer, prepared: Prepared, split: str, device: torch.device,
                  max_tokens: int, beam: int = 5, lenpen: float = 1.0,
                  indices: Sequence[int] | None = None) -> tuple[dict[str, float | str], list[str]]:
    """Both BLEU figures of ``split`` (or of its sentences ``indices``) and the translations
    (tokenised, BPE removed: fairseq-generate's H lines), in corpus order."""
    indices = list(range(len(prepared.splits[split]))) if indices is None else list(indices)
    was_training = model.training
    model.eval()
    try:
        ids = translate(model, prepared.splits[split], max_tokens, device, beam, lenpen, indices)
    finally:
        model.train(was_training)
    hypotheses = [hypothesis_text(h, prepared.dictionaries[TARGET]) for h in ids]
    tokenized = prepared.tokenized_references(split)
    raw = prepared.raw_references[split]
    metrics = score(hypotheses, [tokenized[i] for i in indices], [raw[i] for i in indices])
    return metrics, hypotheses
