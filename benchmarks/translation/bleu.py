"""The two BLEU figures of a translation run, each exactly defined.

* ``bleu``: tokenised BLEU as ``fairseq-generate --remove-bpe`` reports it and IWSLT'14
  papers quote it: corpus BLEU-4 over whitespace tokens of the lowercased, Moses-tokenised
  text (BPE joined back, Moses' escapes such as ``&apos;`` left in place), one reference,
  no smoothing, the standard brevity penalty. The references are the prepared test set's
  (unknown words as ``<<unk>>``).
* ``sacrebleu``: sacreBLEU on detokenised output (sacremoses' Moses detokeniser, which
  also undoes the escapes) against the original, untokenised references, lowercased on
  both sides (the model writes lowercase): ``case:lc``, sacreBLEU's 13a tokenisation.
  Its signature string is stored beside the number.

Both are computed by sacrebleu (``tokenize="none", smooth_method="none"`` is the first
definition exactly), so neither is a reimplementation of BLEU.
"""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU

from .bpe import remove_bpe
from .dictionary import Dictionary


def hypothesis_text(ids: Sequence[int], dictionary: Dictionary) -> str:
    """A translation as fairseq-generate prints it with ``--remove-bpe`` (its H-line text)."""
    return remove_bpe(dictionary.string(ids))


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Tokenised BLEU (the first definition above) of tokenised, BPE-free lines."""
    metric = BLEU(tokenize="none", smooth_method="none", force=True)
    return metric.corpus_score(list(hypotheses), [list(references)]).score


def detokenize(lines: Sequence[str], lang: str = "en") -> list[str]:
    """Moses detokenisation (escapes undone), as ``detokenizer.perl -l LANG``."""
    from sacremoses import MosesDetokenizer
    moses = MosesDetokenizer(lang=lang)
    return [moses.detokenize(line.split()) for line in lines]


def _sacre_metric() -> BLEU:
    return BLEU(lowercase=True)


def sacrebleu_signature() -> str:
    """The signature of the sacreBLEU figure, known before any scoring, e.g.
    ``nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0`` (sacrebleu fills it
    in when it scores: here one line against itself)."""
    metric = _sacre_metric()
    metric.corpus_score(["a"], [["a"]])
    return str(metric.get_signature())


def sacre_bleu(hypotheses: Sequence[str], raw_references: Sequence[str]) -> tuple[float, str]:
    """sacreBLEU (the second definition above) of tokenised lines, and its signature."""
    metric = _sacre_metric()
    score = metric.corpus_score(detokenize(hypotheses), [list(raw_references)]).score
    return score, str(metric.get_signature())


def score(hypotheses: Sequence[str], tokenized_references: Sequence[str],
          raw_references: Sequence[str]) -> dict[str, float | str]:
    """Both figures for tokenised, BPE-free hypotheses."""
    sacre, signature = sacre_bleu(hypotheses, raw_references)
    return {"bleu": tokenized_bleu(hypotheses, tokenized_references), "sacrebleu": sacre,
            "sacrebleu_signature": signature}
