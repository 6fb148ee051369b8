"""Prepared IWSLT'14 De-En: where it lives, its manifest check, its splits and batches.

:func:`load_prepared` refuses prepared data whose manifest does not match what the cell
expects (another BPE setting, another recipe, files changed since preparation) with a
:class:`~benchmarks.config.ConfigError` that names the problem and the fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..config import ConfigError
from . import corpus
from .bpe import remove_bpe
from .dictionary import EOS_INDEX, PAD_INDEX, Dictionary
from .prepare import DEFAULT_BPE_MERGES, MANIFEST, PREPARE_COMMAND, PREPARED, dataset_root, recipe


@dataclass
class ParallelSplit:
    """One binarised split: German source and English target ids, each line ending in ``</s>``."""

    src_tokens: np.ndarray
    src_offsets: np.ndarray
    tgt_tokens: np.ndarray
    tgt_offsets: np.ndarray

    @classmethod
    def from_lists(cls, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> "ParallelSplit":
        """A split from id lists (each already ending in ``</s>``): for tests and small tasks."""
        def flat(lines):
            offsets = np.zeros(len(lines) + 1, dtype=np.int64)
            np.cumsum([len(line) for line in lines], out=offsets[1:])
            return np.array([i for line in lines for i in line], dtype=np.int32), offsets
        return cls(*flat(sources), *flat(targets))

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def source(self, i: int) -> np.ndarray:
        return self.src_tokens[self.src_offsets[i]:self.src_offsets[i + 1]]

    def target(self, i: int) -> np.ndarray:
        return self.tgt_tokens[self.tgt_offsets[i]:self.tgt_offsets[i + 1]]

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Sentence pair ``i``, with its index (so that a batch knows its sentences)."""
        return i, self.source(i), self.target(i)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of sentences ``indices``: :func:`collate` of those pairs."""
        return collate([self[i] for i in indices])


def collate(pairs: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """A batch of sentence pairs: ``src`` (B, S) and ``target`` (B, T) right-padded with
    ``<pad>``, the decoder's input ``prev`` (B, T): ``</s>`` then the target shifted right
    (teacher forcing), and ``id`` (B,), the sentences' indices in their split."""
    src = _pad([source for _, source, _ in pairs])
    target = _pad([target for _, _, target in pairs])
    prev = torch.full_like(target, PAD_INDEX)
    prev[:, 0] = EOS_INDEX
    shifted = target[:, :-1]
    prev[:, 1:] = shifted.masked_fill(shifted == EOS_INDEX, PAD_INDEX)
    return {"src": src, "prev": prev, "target": target, "id": torch.tensor([i for i, _, _ in pairs])}


def _pad(lines: Sequence[np.ndarray]) -> torch.Tensor:
    out = np.full((len(lines), max(len(line) for line in lines)), PAD_INDEX, dtype=np.int64)
    for row, line in zip(out, lines):
        row[:len(line)] = line
    return torch.from_numpy(out)


@dataclass
class Prepared:
    """A verified preparation: dictionaries, splits, and the English references."""

    folder: pathlib.Path
    manifest: dict[str, Any]
    dictionaries: dict[str, Dictionary]
    splits: dict[str, ParallelSplit]
    raw_references: dict[str, list[str]]  # valid / test, before tokenisation (sacreBLEU)

    def tokenized_references(self, split: str) -> list[str]:
        """The references as fairseq-generate scores them: the binarised target, words
        joined back from BPE, unknown words as ``<<unk>>``."""
        data, target = self.splits[split], self.dictionaries[corpus.TARGET]
        return [remove_bpe(target.string(data.target(i), escape_unk=True)) for i in range(len(data))]


def load_prepared(data_dir: str | pathlib.Path, bpe_merges: int = DEFAULT_BPE_MERGES) -> Prepared:
    """The prepared data under ``data_dir``, checked against its manifest and the recipe."""
    folder = dataset_root(data_dir) / PREPARED
    prepare = PREPARE_COMMAND.format(data_dir=data_dir)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ConfigError(f"IWSLT'14 De-En is not prepared ({folder / MANIFEST} is missing): place "
                          f"de-en.tgz in {dataset_root(data_dir)} and run `{prepare}`") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{folder / MANIFEST} is unreadable ({err}): move {folder} aside "
                          f"and run `{prepare}`") from None
    found = manifest.get("recipe", {})
    if found != recipe(bpe_merges):
        if found.get("bpe_merges") != bpe_merges:
            why = f"it was prepared with {found.get('bpe_merges')} BPE merges, this cell needs {bpe_merges}"
        else:
            differ = sorted(k for k in set(found) | set(recipe(bpe_merges))
                            if found.get(k) != recipe(bpe_merges).get(k))
            why = f"it was prepared with other settings ({', '.join(differ)})"
        raise ConfigError(f"{folder}: {why}; move it aside and run `{prepare}"
                          f"{'' if bpe_merges == DEFAULT_BPE_MERGES else f' --bpe-merges {bpe_merges}'}`")
    contents = {}
    for name, expected in manifest["outputs"].items():
        try:
            contents[name] = (folder / name).read_bytes()
        except OSError as err:
            raise ConfigError(f"{folder / name} is unreadable ({err.strerror or err}): move {folder} "
                              f"aside and run `{prepare}`") from None
        if hashlib.sha256(contents[name]).hexdigest() != expected:
            raise ConfigError(f"{folder / name} differs from its manifest (changed after preparation): "
                              f"move {folder} aside and run `{prepare}`")
    dictionaries = {lang: Dictionary.from_text(contents[f"dict.{lang}.txt"].decode())
                    for lang in corpus.LANGUAGES}
    splits = {}
    for split in ("train", "valid", "test"):
        with np.load(io.BytesIO(contents[f"{split}.npz"]), allow_pickle=False) as arrays:
            splits[split] = ParallelSplit(arrays["de_tokens"], arrays["de_offsets"],
                                          arrays["en_tokens"], arrays["en_offsets"])
    references = {split: contents[f"{split}.raw.en"].decode().splitlines() for split in ("valid", "test")}
    return Prepared(folder, manifest, dictionaries, splits, references)


def check_lengths(split: ParallelSplit, name: str, max_positions: int) -> None:
    """ConfigError when a sentence of ``split`` is longer than the model's positions;
    checked before anything runs, so a run never dies half-way through an evaluation."""
    for side, lengths in (("source", split.src_lengths), ("target", split.tgt_lengths)):
        too_long = np.flatnonzero(lengths > max_positions)
        if too_long.size:
            i = int(too_long[0])
            raise ConfigError(
                f"{name} sentence {i + 1} has {lengths[i]} {side} tokens, more than the model's "
                f"{max_positions} positions ({too_long.size} such sentences): raise the model's "
                "max_positions or remove the sentence from the split")
