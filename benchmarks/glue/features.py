"""Token ids on disk, length-grouped batches, dynamic padding.

A split is tokenised once per (tokenizer, task, split, max length, source) and
kept in ``DATA/glue-tokenized/<model>/`` (a torch file of flat tensors, written
atomically); a second run reads it back instead of tokenising again. The key
hashes the tokenizer's files and the source's digest, so a changed vocabulary or
a re-exported dataset never reuses stale ids. A read-only data directory only
means tokenising every time.

Batches. Training batches are length-grouped: the epoch's permutation
(``benchmarks.data.epoch_permutation``) is cut into mega-batches of ``GROUP``
batches, each sorted by length and cut into batches, which are then shuffled,
with the batch holding the longest row put first (a batch size too large for the
memory fails at the first step, not hours in). Rows in a batch have similar
lengths, so dynamic padding (to the batch's longest row, rounded up to a multiple
of 8 for tensor cores) wastes little. The batches are a pure function of
(lengths, batch size, seed, epoch): a run resumed mid-epoch sees the very same
batches. Every row is used once per epoch; the last batch of a mega-batch may be
short.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import derive_seed, epoch_permutation
from ..rundir import WriteFailed, atomic_write_bytes
from .data import GlueSplit
from .spec import GlueTask

CACHE_ROOT = "glue-tokenized"  # DATA/glue-tokenized/<model>/
CACHE_FORMAT = 1
GROUP = 50            # batches per mega-batch of the length grouping
PAD_MULTIPLE = 8      # pad a batch's width to a multiple of this (tensor cores)
TOKENIZE_CHUNK = 10_000


@dataclass
class Encoded:
    """A tokenised split, ragged: row ``i``'s ids are ``input_ids[offsets[i]:offsets[i + 1]]``.

    ``token_type_ids`` (BERT's segment ids) share the offsets; None for models that
    take none (RoBERTa). ``labels``: int64 class ids or float32 scores. ``split``: for
    dev rows put together from several dev sets (MNLI's matched and mismatched), the
    index of each row's set; batches carry it, so that an evaluation can score each
    set on its own.
    """

    input_ids: torch.Tensor          # (total,) int32
    offsets: torch.Tensor            # (n + 1,) int64
    labels: torch.Tensor             # (n,)
    token_type_ids: torch.Tensor | None = None  # (total,) int8
    split: torch.Tensor | None = None           # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def to_dict(self) -> dict[str, torch.Tensor]:
        tensors = {"input_ids": self.input_ids, "offsets": self.offsets, "labels": self.labels}
        if self.token_type_ids is not None:
            tensors["token_type_ids"] = self.token_type_ids
        return tensors


def concat(parts: list[Encoded]) -> Encoded:
    """The rows of ``parts`` one after the other, each marked with its part's index."""
    starts = torch.tensor([0] + [int(p.offsets[-1]) for p in parts]).cumsum(0)[:-1]
    types = [p.token_type_ids for p in parts]
    return Encoded(
        torch.cat([p.input_ids for p in parts]),
        torch.cat([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)]),
        torch.cat([p.labels for p in parts]),
        None if types[0] is None else torch.cat(types),
        torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)]))


def encode(tokenizer: Any, split: GlueSplit, max_length: int) -> Encoded:
    """Tokenise the one or two texts of every row, truncated to ``max_length`` tokens
    (longest text first, the tokenizer's ``longest_first``), special tokens included."""
    types = "token_type_ids" in tokenizer.model_input_names
    ids: list[np.ndarray] = []
    type_ids: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for start in range(0, len(split), TOKENIZE_CHUNK):
        texts = [column[start:start + TOKENIZE_CHUNK] for column in split.texts]
        out = tokenizer(*texts, truncation=True, max_length=max_length,
                        return_token_type_ids=types, return_attention_mask=False)
        lengths.append(np.fromiter((len(row) for row in out["input_ids"]), dtype=np.int64))
        ids.append(np.fromiter((t for row in out["input_ids"] for t in row), dtype=np.int32))
        if types:
            type_ids.append(np.fromiter((t for row in out["token_type_ids"] for t in row),
                                        dtype=np.int8))
    offsets = np.zeros(len(split) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return Encoded(torch.from_numpy(np.concatenate(ids)), torch.from_numpy(offsets),
                   torch.from_numpy(split.labels),
                   torch.from_numpy(np.concatenate(type_ids)) if types else None)


def cache_file(cache_dir: pathlib.Path, task: GlueTask, split_name: str, split: GlueSplit,
               max_length: int, tokenizer_key: str) -> pathlib.Path:
    key = json.dumps([CACHE_FORMAT, tokenizer_key, task.name, split_name, max_length, split.digest])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{task.name}-{split_name}-len{max_length}-{digest}.pt"


def cached_encode(tokenizer: Any, tokenizer_key: str, task: GlueTask, split_name: str,
                  split: GlueSplit, max_length: int, cache_dir: pathlib.Path
                  ) -> tuple[Encoded, bool]:
    """``(encoded split, whether it came from the cache)``; tokenises and caches on a miss.

    An unreadable cache file (a damaged write from elsewhere) is tokenised again and
    replaced: it is derived data, nothing is lost.
    """
    path = cache_file(cache_dir, task, split_name, split, max_length, tokenizer_key)
    if path.is_file():
        try:
            tensors = torch.load(path, weights_only=True)
            return Encoded(**{k: tensors[k] for k in ("input_ids", "offsets", "labels")},
                           token_type_ids=tensors.get("token_type_ids")), True
        except (RuntimeError, OSError, KeyError, EOFError, ValueError, pickle.UnpicklingError):
            pass
    encoded = encode(tokenizer, split, max_length)
    buffer = io.BytesIO()
    torch.save(encoded.to_dict(), buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getbuffer())
    except (OSError, WriteFailed):
        pass  # a read-only data dir: tokenise every time, nothing lost
    return encoded, False


def length_grouped_batches(lengths: torch.Tensor, batch_size: int, seed: int, epoch: int,
                           group: int = GROUP) -> list[list[int]]:
    """The training batches of ``epoch`` as lists of row indices (see the module docstring)."""
    n = len(lengths)
    order = epoch_permutation(n, seed, epoch)
    batches: list[torch.Tensor] = []
    span = batch_size * group
    for start in range(0, n, span):
        chunk = order[start:start + span]
        chunk = chunk[torch.sort(lengths[chunk], descending=True, stable=True).indices]
        batches.extend(chunk.split(batch_size))
    shuffle = torch.randperm(len(batches),
                             generator=torch.Generator().manual_seed(derive_seed(seed, epoch, "batches")))
    batches = [batches[i] for i in shuffle.tolist()]
    longest = max(range(len(batches)), key=lambda b: int(lengths[batches[b]].max()))
    batches[0], batches[longest] = batches[longest], batches[0]
    return [b.tolist() for b in batches]


def evaluation_batches(lengths: torch.Tensor, batch_size: int) -> list[list[int]]:
    """Dev-set batches: rows sorted by length, longest first (the least padding; no seed)."""
    order = torch.sort(lengths, descending=True, stable=True).indices
    return [b.tolist() for b in order.split(batch_size)]


def pad_batch(encoded: Encoded, indices: list[int], pad_id: int, max_length: int
              ) -> dict[str, torch.Tensor]:
    """The rows ``indices`` padded to the longest of them (rounded up to a multiple of
    :data:`PAD_MULTIPLE`, never beyond ``max_length``): ``input_ids``,
    ``attention_mask``, ``token_type_ids`` (where the model takes them) and ``labels``,
    the keywords of a transformers classifier's forward, and ``split`` for dev rows
    (:func:`concat`)."""
    index = torch.as_tensor(indices, dtype=torch.int64)
    starts = encoded.offsets[index]
    lengths = encoded.offsets[index + 1] - starts
    longest = int(lengths.max())
    width = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, max(max_length, longest))
    positions = torch.arange(width)
    mask = positions[None, :] < lengths[:, None]
    source = (starts[:, None] + positions[None, :])[mask]
    input_ids = torch.full((len(index), width), pad_id, dtype=torch.int64)
    input_ids[mask] = encoded.input_ids[source].long()
    batch = {"input_ids": input_ids, "attention_mask": mask.long()}
    if encoded.token_type_ids is not None:
        token_types = torch.zeros((len(index), width), dtype=torch.int64)
        token_types[mask] = encoded.token_type_ids[source].long()
        batch["token_type_ids"] = token_types
    batch["labels"] = encoded.labels[index]
    if encoded.split is not None:
        batch["split"] = encoded.split[index]
    return batch
