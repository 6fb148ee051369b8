"""Token-count batches grouped by length, as fairseq's ``--max-tokens`` builds them.

Sentences are ordered by source length, then target length, ties broken at random; the
order is cut greedily into batches whose padded size (sentences x the longest sentence,
counting the longer of source and target, ``</s>`` included) stays within ``max_tokens``;
the batches are then shuffled. Both random draws are a pure function of (seed, epoch),
so the batches of any epoch can be rebuilt at any time and a resumed run sees the very
batches it would have seen. The cut depends on the lengths alone (tied sentences have the
same size), so every epoch has the same number of batches. (fairseq draws its ties once per run and additionally rounds
batch sizes to multiples of 8 for GPU efficiency; neither changes what a batch may hold.)
"""

from __future__ import annotations

import numpy as np

from ..data import derive_seed


def token_batches(src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int,
                  seed: int | None = None, epoch: int = 0) -> list[np.ndarray]:
    """The batches of one epoch, as arrays of sentence indices.

    ``seed=None``: no randomness, batches in length order (evaluation).
    Raises ValueError when one sentence alone exceeds ``max_tokens``.
    """
    src_lengths, tgt_lengths = np.asarray(src_lengths), np.asarray(tgt_lengths)
    sizes = np.maximum(src_lengths, tgt_lengths)
    if sizes.size and sizes.max() > max_tokens:
        i = int(sizes.argmax())
        raise ValueError(f"sentence {i} has {sizes[i]} tokens, more than max_tokens={max_tokens}")
    rng = None if seed is None else np.random.default_rng(derive_seed("token-batches", seed, epoch))
    order = np.arange(len(sizes)) if rng is None else rng.permutation(len(sizes))
    order = order[np.lexsort((tgt_lengths[order], src_lengths[order]))]  # stable: ties stay random

    batches, start, longest = [], 0, 0
    for end, i in enumerate(order):
        longest = max(longest, sizes[i])
        if (end + 1 - start) * longest > max_tokens:
            batches.append(order[start:end])
            start, longest = end, sizes[i]
    if start < len(order):
        batches.append(order[start:])
    if rng is not None:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches
