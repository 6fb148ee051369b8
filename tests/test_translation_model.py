"""The translation model and its training and decoding pieces: the architecture's size,
cached incremental decoding, beam search, the label-smoothed loss, token batches, and a
tiny Transformer that learns to copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.translation.batching import token_batches
from benchmarks.translation.bleu import tokenized_bleu
from benchmarks.translation.data import ParallelSplit, collate
from benchmarks.translation.dictionary import EOS_INDEX, PAD_INDEX
from benchmarks.translation.loss import label_smoothed_loss, training_loss
from benchmarks.translation.model import ARCHITECTURES, Transformer, TransformerConfig, parameter_count
from benchmarks.translation.search import beam_search, greedy_decode, max_lengths, translate

TINY = TransformerConfig(layers=2, dim=32, ffn_dim=64, heads=4, dropout=0.0, max_positions=64)
VOCAB = 4 + 10  # the four specials and ten symbols


def random_split(n: int, seed: int, min_len: int = 2, max_len: int = 9) -> ParallelSplit:
    """``n`` random symbol sequences, each its own target (a copy task), ``</s>`` last."""
    rng = np.random.default_rng(seed)
    lines = [list(rng.integers(4, VOCAB, size=rng.integers(min_len, max_len))) + [EOS_INDEX] for _ in range(n)]
    return ParallelSplit.from_lists(lines, lines)


def tiny_model(seed: int = 0, config: TransformerConfig = TINY) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(VOCAB, VOCAB, config).eval()


def test_transformer_iwslt_de_en_has_the_parameters_its_architecture_implies():
    # fairseq reports 39,469,056 parameters for transformer_iwslt_de_en on the recipe's
    # dictionaries (8,848 German, 6,632 English types).
    config = ARCHITECTURES["transformer_iwslt_de_en"]
    assert parameter_count(config, 8848, 6632) == 39_469_056
    model = Transformer(8848, 6632, config)
    assert sum(p.numel() for p in model.parameters()) == 39_469_056
    assert (model.config.layers, model.config.dim, model.config.ffn_dim, model.config.heads) == (6, 512, 1024, 4)


def test_incremental_decoding_gives_the_logits_of_the_full_forward_pass():
    model = tiny_model()
    data = random_split(5, seed=1)
    batch = data.batch(range(5))
    full = model(batch["src"], batch["prev"])
    state = model.start_decoding(*model.encode(batch["src"]))
    for t in range(batch["prev"].size(1)):
        step = model.decode_step(batch["prev"][:, t], state)
        real = batch["target"][:, t] != PAD_INDEX
        torch.testing.assert_close(step[real], full[real, t], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_translation():
    model = tiny_model().double()
    data = random_split(6, seed=2)
    batch = data.batch(range(6))["src"]
    together = beam_search(model, batch, beam=3)
    alone = [beam_search(model, data.batch([i])["src"], beam=3)[0] for i in range(6)]
    assert together == alone


def test_beam_search_with_beam_1_is_greedy_decoding():
    for seed in range(3):
        model = tiny_model(seed)
        src = random_split(8, seed=10 + seed).batch(range(8))["src"]
        assert beam_search(model, src, beam=1) == greedy_decode(model, src)


def test_translations_stop_at_the_length_limit_and_never_hold_pad_or_eos():
    model = tiny_model(3)
    data = random_split(10, seed=4)
    src = data.batch(range(10))["src"]
    limits = max_lengths(src, TINY.max_positions).tolist()
    assert limits == [int(1.2 * n + 10) for n in data.src_lengths]
    for hypotheses in (beam_search(model, src, beam=4), greedy_decode(model, src)):
        for hypothesis, limit in zip(hypotheses, limits):
            assert 1 <= len(hypothesis) <= limit
            assert PAD_INDEX not in hypothesis and EOS_INDEX not in hypothesis


def test_label_smoothed_loss_is_fairseqs_formula_over_real_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 5, EOS_INDEX], [6, EOS_INDEX, PAD_INDEX]])
    loss, nll, tokens = label_smoothed_loss(logits, target, epsilon=0.1)
    lp = F.log_softmax(logits, dim=-1)
    expected = 0.0
    for b, t in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]:
        expected += -(1 - 0.1 - 0.1 / 6) * lp[b, t, target[b, t]] - (0.1 / 6) * lp[b, t].sum()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(logits.view(-1, 7), target.view(-1),
                                                    ignore_index=PAD_INDEX, reduction="sum"))
    assert tokens.item() == 5


def test_token_batches_respect_the_budget_and_are_a_pure_function_of_seed_and_epoch():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 60, size=500), rng.integers(1, 60, size=500)
    batches = token_batches(src, tgt, max_tokens=256, seed=7, epoch=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) * max(np.maximum(src, tgt)[batch]) <= 256
        assert np.all(np.diff(src[batch]) >= 0)  # grouped by length
    again = token_batches(src, tgt, max_tokens=256, seed=7, epoch=3)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)) and len(again) == len(batches)
    other = token_batches(src, tgt, max_tokens=256, seed=7, epoch=4)
    assert [b.tolist() for b in other] != [b.tolist() for b in batches] and len(other) == len(batches)
    ordered = np.concatenate(token_batches(src, tgt, max_tokens=256))
    assert np.all(np.diff(src[ordered]) >= 0)
    with pytest.raises(ValueError, match="more than max_tokens=50"):
        token_batches(src, tgt, max_tokens=50)


def test_the_batch_feeds_the_decoder_the_target_shifted_right():
    data = ParallelSplit.from_lists([[5, 6, EOS_INDEX], [7, EOS_INDEX]], [[8, EOS_INDEX], [9, 10, 11, EOS_INDEX]])
    batch = data.batch([1, 0])
    assert batch["id"].tolist() == [1, 0]
    batch = collate([data[0], data[1]])
    assert batch["id"].tolist() == [0, 1]
    assert batch["src"].tolist() == [[5, 6, EOS_INDEX], [7, EOS_INDEX, PAD_INDEX]]
    assert batch["target"].tolist() == [[8, EOS_INDEX, PAD_INDEX, PAD_INDEX], [9, 10, 11, EOS_INDEX]]
    assert batch["prev"].tolist() == [[EOS_INDEX, 8, PAD_INDEX, PAD_INDEX], [EOS_INDEX, 9, 10, 11]]


@pytest.mark.slow
def test_a_tiny_transformer_learns_to_copy_to_bleu_above_90():
    # One layer each side, width 32: ~350 AdamW steps with a short warm-up (about 6 s on
    # an idle 2-core CPU).
    train, test = random_split(1000, seed=0, max_len=8), random_split(100, seed=1, max_len=8)
    model = tiny_model(0, TransformerConfig(layers=1, dim=32, ffn_dim=64, heads=4, dropout=0.0,
                                            max_positions=64)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.98))
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 40))
    for epoch in range(16):
        for indices in token_batches(train.src_lengths, train.tgt_lengths, 256, seed=0, epoch=epoch):
            batch = train.batch(indices)
            loss, _, tokens = label_smoothed_loss(model(batch["src"], batch["prev"]), batch["target"], 0.1)
            optimizer.zero_grad()
            (loss / tokens).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            warmup.step()
    model.eval()
    hypotheses = translate(model, test, max_tokens=1024, device=torch.device("cpu"), beam=5)
    words = lambda ids: " ".join(f"w{i}" for i in ids)  # noqa: E731
    bleu = tokenized_bleu([words(h) for h in hypotheses], [words(test.target(i)[:-1]) for i in range(len(test))])
    assert bleu > 90, bleu


def test_sam_and_vasso_steps_on_token_batches_differentiate_the_per_token_mean():
    # VaSSO with theta = 1 is SAM step for step (METHODS.md): both passes of both methods
    # differentiate training_loss's mean per token on variable-size token batches.
    from vasso import SAM, VaSSO
    data = random_split(64, seed=5)
    batches = [data.batch(b) for b in token_batches(data.src_lengths, data.tgt_lengths, 96, seed=0, epoch=0)][:3]
    assert len({b["target"].shape for b in batches}) > 1  # the batches differ in shape
    params = []
    for method in (SAM, VaSSO):
        model = tiny_model(0).train()
        base = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1e-4)
        optimizer = method(base, rho=0.05) if method is SAM else method(base, rho=0.05, theta=1.0)
        for batch in batches:
            def closure():
                loss, sums = training_loss(model, batch, 0.1)
                loss.backward()
                return loss
            loss = optimizer.step(closure)
            optimizer.zero_grad()
            assert torch.isfinite(loss)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(params[0], params[1])
    assert not torch.equal(params[0], torch.cat([p.detach().flatten() for p in tiny_model(0).parameters()]))
