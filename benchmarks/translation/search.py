"""Beam search and greedy decoding over a batch, with cached incremental decoding.

The rules are fairseq's ``SequenceGenerator`` (``fairseq-generate --beam 5 --lenpen 1``):
decoding starts from ``</s>``; ``<pad>`` is never produced, ``</s>`` not as the first
token; a hypothesis is at most ``max_len_a * source length + max_len_b`` tokens (the
source counted with its ``</s>``; fairseq uses the batch's padded width, so a sentence's
limit here does not depend on its batch), capped by the model's positions, and ``</s>``
is forced there. Each step takes the ``2 * beam`` best extensions of the live beams: those
ending in ``</s>`` among the first ``beam`` of them are finished, with their score (the
summed log-probability) divided by length ** ``lenpen`` (``</s>`` counted); the best
``beam`` others continue. A sentence is done when ``beam`` hypotheses are finished; its
translation is the best of them. With ``beam=1`` this is greedy decoding, step for step.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .batching import token_batches
from .data import ParallelSplit
from .dictionary import EOS_INDEX, PAD_INDEX
from .model import Transformer

MAX_LEN_A, MAX_LEN_B = 1.2, 10


def max_lengths(src: Tensor, max_positions: int, max_len_a: float = MAX_LEN_A,
                max_len_b: int = MAX_LEN_B) -> Tensor:
    """The longest translation (in tokens, ``</s>`` aside) allowed for each source row."""
    src_len = (src != PAD_INDEX).sum(dim=1)
    return (max_len_a * src_len + max_len_b).long().clamp(max=max_positions - 1)


def _constrain(lprobs: Tensor, step: int, limits: Tensor) -> Tensor:
    lprobs[:, PAD_INDEX] = -torch.inf
    if step == 0:
        lprobs[:, EOS_INDEX] = -torch.inf
    at_limit = limits <= step
    if at_limit.any():
        eos = lprobs[:, EOS_INDEX].clone()
        lprobs[at_limit] = -torch.inf
        lprobs[:, EOS_INDEX] = torch.where(at_limit, eos, lprobs[:, EOS_INDEX])
    return lprobs


@torch.no_grad()
def greedy_decode(model: Transformer, src: Tensor, max_len_a: float = MAX_LEN_A,
                  max_len_b: int = MAX_LEN_B) -> list[list[int]]:
    """The most likely next token at every step; token ids without the final ``</s>``."""
    memory, mask = model.encode(src)
    state = model.start_decoding(memory, mask)
    limits = max_lengths(src, model.config.max_positions, max_len_a, max_len_b)
    tokens = torch.full((src.size(0),), EOS_INDEX, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    steps = []
    for step in range(int(limits.max()) + 1):
        lprobs = _constrain(F.log_softmax(model.decode_step(tokens, state).float(), dim=-1), step, limits)
        tokens = lprobs.argmax(dim=-1).masked_fill(finished, EOS_INDEX)
        steps.append(tokens)
        finished |= tokens == EOS_INDEX
        if finished.all():
            break
    return [_until_eos(row) for row in torch.stack(steps, dim=1).tolist()]


def _until_eos(ids: list[int]) -> list[int]:
    return ids[:ids.index(EOS_INDEX)] if EOS_INDEX in ids else ids


@torch.no_grad()
def beam_search(model: Transformer, src: Tensor, beam: int = 5, lenpen: float = 1.0,
                max_len_a: float = MAX_LEN_A, max_len_b: int = MAX_LEN_B) -> list[list[int]]:
    """The best finished hypothesis of each source row; token ids without ``</s>``."""
    n, device = src.size(0), src.device
    memory, mask = model.encode(src)
    rows = torch.arange(n, device=device).repeat_interleave(beam)
    state = model.start_decoding(memory.index_select(0, rows), mask.index_select(0, rows))
    limits = max_lengths(src, model.config.max_positions, max_len_a, max_len_b)
    sentence = list(range(n))  # the source row of each live sentence
    history = torch.zeros((n, beam, 0), dtype=torch.long, device=device)
    scores = torch.full((n, beam), -torch.inf, device=device)
    scores[:, 0] = 0  # all beams start equal: only the first one may extend at step 0
    last = torch.full((n * beam,), EOS_INDEX, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]

    for step in range(int(limits.max()) + 1):
        live = len(sentence)
        lprobs = F.log_softmax(model.decode_step(last, state).float(), dim=-1)
        lprobs = _constrain(lprobs, step, limits.repeat_interleave(beam))
        vocab = lprobs.size(-1)
        top_scores, top = (scores.view(-1, 1) + lprobs).view(live, beam * vocab).topk(2 * beam, dim=1)
        top_beam, top_token = top // vocab, top % vocab
        ends = (top_token == EOS_INDEX) & top_scores.isfinite()
        for s, c in ends[:, :beam].nonzero().tolist():
            if len(finished[sentence[s]]) < beam:
                tokens = history[s, top_beam[s, c]].tolist()
                finished[sentence[s]].append((top_scores[s, c].item() / (step + 1) ** lenpen, tokens))

        keep_scores, keep = top_scores.masked_fill(top_token == EOS_INDEX, -torch.inf).topk(beam, dim=1)
        parent = (torch.arange(live, device=device)[:, None] * beam + top_beam.gather(1, keep)).view(-1)
        last = top_token.gather(1, keep).view(-1)
        history = torch.cat([history.view(live * beam, -1)[parent], last[:, None]], dim=1).view(live, beam, -1)
        scores, state = keep_scores, state.select(parent)

        open_ = [s for s in range(live) if len(finished[sentence[s]]) < beam]
        if not open_:
            break
        if len(open_) < live:
            alive = torch.tensor(open_, device=device)
            beam_rows = (alive[:, None] * beam + torch.arange(beam, device=device)).view(-1)
            sentence = [sentence[s] for s in open_]
            history, scores, limits = history[alive], scores[alive], limits[alive]
            last, state = last[beam_rows], state.select(beam_rows)
    return [max(hypotheses, key=lambda h: h[0])[1] for hypotheses in finished]


@torch.no_grad()
def translate(model: Transformer, data: ParallelSplit, max_tokens: int, device: torch.device,
              beam: int = 5, lenpen: float = 1.0, indices: Sequence[int] | None = None
              ) -> list[list[int]]:
    """Translations of ``data`` (or of its sentences ``indices``), in their order, decoded
    in length-sorted batches of at most ``max_tokens`` source tokens."""
    indices = list(range(len(data))) if indices is None else list(indices)
    src_lengths = data.src_lengths[indices]
    out: list[list[int] | None] = [None] * len(indices)
    for batch in token_batches(src_lengths, src_lengths, max_tokens):
        src = data.batch([indices[i] for i in batch])["src"].to(device)
        hypotheses = (greedy_decode(model, src) if beam == 1 else beam_search(model, src, beam, lenpen))
        for i, hypothesis in zip(batch, hypotheses):
            out[i] = hypothesis
    return out
