"""Joint BPE with subword-nmt, the tool fairseq's recipe runs (``learn_bpe.py -s 10000``,
``apply_bpe.py -c code``), called through its Python API with the scripts' defaults:
merges learned from the concatenated German and English training text, pairs seen fewer
than twice never merged, ``@@`` marking a unit that continues the word.
"""

from __future__ import annotations

import io
from typing import Iterable, Sequence

SEPARATOR = "@@"


def learn_codes(lines: Iterable[str], merges: int) -> str:
    """The BPE codes file (subword-nmt's format, ``#version: 0.2`` first) for ``lines``."""
    from subword_nmt.learn_bpe import learn_bpe  # imported here: only preparation needs it
    codes = io.StringIO()
    text = io.StringIO("".join(line + "\n" for line in lines))
    learn_bpe(text, codes, merges)
    return codes.getvalue()


def count_merges(codes: str) -> int:
    """Merges in a codes file (fewer than asked when no pair was frequent enough)."""
    return sum(1 for line in codes.splitlines() if line and not line.startswith("#version"))


class Segmenter:
    """Applies BPE codes to tokenised lines (``apply_bpe.py -c code``)."""

    def __init__(self, codes: str):
        from subword_nmt.apply_bpe import BPE
        self._bpe = BPE(io.StringIO(codes), separator=SEPARATOR)

    def __call__(self, lines: Sequence[str]) -> list[str]:
        return [self._bpe.segment(line) if line else line for line in lines]


def remove_bpe(line: str) -> str:
    """Join the units of a BPE line back into words (fairseq's ``--remove-bpe``)."""
    return (line + " ").replace(SEPARATOR + " ", "").rstrip()
