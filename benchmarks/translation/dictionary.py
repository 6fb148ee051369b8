"""``fairseq-preprocess``'s dictionaries and binarisation.

A dictionary holds the four special symbols first (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
``<unk>`` 3), then every type of the training text, most frequent first (ties in
alphabetical order), then ``madeupword0000``, ... up to a multiple of 8 types. This is
fairseq's ``Dictionary.finalize(padding_factor=8)``, so the sizes it reports for
IWSLT'14 (8,848 German and 6,632 English types) are directly comparable. A sentence is
binarised as its ids followed by ``</s>``.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
SPECIALS = (BOS, PAD, EOS, UNK)
PAD_INDEX, EOS_INDEX, UNK_INDEX = 1, 2, 3
PADDING_FACTOR = 8


class Dictionary:
    """Symbols and their ids; ``counts`` are the training counts (0 for specials)."""

    def __init__(self, symbols: Sequence[str], counts: Sequence[int]):
        if tuple(symbols[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a dictionary starts with {SPECIALS}, not {tuple(symbols[:4])}")
        self.symbols = list(symbols)
        self.counts = list(counts)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}

    @classmethod
    def build(cls, lines: Iterable[str]) -> "Dictionary":
        counts = Counter(word for line in lines for word in line.split())
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        symbols = list(SPECIALS) + [word for word, _ in ranked]
        frequencies = [0] * len(SPECIALS) + [count for _, count in ranked]
        padding = -len(symbols) % PADDING_FACTOR
        symbols += [f"madeupword{i:04d}" for i in range(padding)]
        return cls(symbols, frequencies + [0] * padding)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, line: str) -> list[int]:
        """Ids of a line's words, unknown words as ``<unk>``, then ``</s>``."""
        return [self.index.get(word, UNK_INDEX) for word in line.split()] + [EOS_INDEX]

    def string(self, ids: Iterable[int], escape_unk: bool = False) -> str:
        """Words of ids up to the first ``</s>``, pads dropped; ``escape_unk`` shows
        ``<unk>`` as ``<<unk>>`` (fairseq-generate's reference text), so that a
        hypothesis's ``<unk>`` never matches a reference's unknown word."""
        words = []
        for i in ids:
            if i == EOS_INDEX:
                break
            if i != PAD_INDEX:
                words.append("<<unk>>" if escape_unk and i == UNK_INDEX else self.symbols[i])
        return " ".join(words)

    def to_text(self) -> str:
        """fairseq's ``dict.LANG.txt``: ``symbol count`` per line, specials left out."""
        return "".join(f"{symbol} {count}\n" for symbol, count in
                       zip(self.symbols[len(SPECIALS):], self.counts[len(SPECIALS):]))

    @classmethod
    def from_text(cls, text: str) -> "Dictionary":
        pairs = [line.rsplit(" ", 1) for line in text.splitlines()]
        return cls(list(SPECIALS) + [symbol for symbol, _ in pairs],
                   [0] * len(SPECIALS) + [int(count) for _, count in pairs])


def binarize(dictionary: Dictionary, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every line's ids (with ``</s>``), concatenated, and the offsets of each line:
    line ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``."""
    encoded = [dictionary.encode(line) for line in lines]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(ids) for ids in encoded], out=offsets[1:])
    tokens = np.fromiter((i for ids in encoded for i in ids), dtype=np.int32, count=int(offsets[-1]))
    return tokens, offsets
