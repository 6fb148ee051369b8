"""Both BLEU figures of the translation task, on fixed hypotheses, against sacrebleu's
own API and against BLEU computed by hand."""

from __future__ import annotations

import math

import sacrebleu

from benchmarks.translation.bleu import (detokenize, hypothesis_text, sacre_bleu, sacrebleu_signature, score,
                                         tokenized_bleu)
from benchmarks.translation.dictionary import EOS_INDEX, UNK_INDEX, Dictionary

# Lowercased, Moses-tokenised (escaped) text, as the prepared data and the model's output.
HYPOTHESES = ["the cat sat on the mat .", "it &apos;s a &quot; big &quot; dog , isn &apos;t it ?",
              "we saw three houses"]
REFERENCES = ["the cat sat on a mat .", "it &apos;s a &quot; big &quot; dog , is it not ?",
              "we saw three old houses"]
RAW_REFERENCES = ["The cat sat on a mat.", 'It\'s a "big" dog, is it not?', "We saw three old houses"]


def test_tokenised_bleu_is_corpus_bleu_4_over_whitespace_tokens_computed_by_hand():
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on a mat"]
    # Matches: 5 of 6 unigrams, 3 of 5 bigrams, 2 of 4 trigrams, 1 of 3 4-grams; same length.
    by_hand = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    assert math.isclose(tokenized_bleu(hyp, ref), by_hand, rel_tol=1e-9)
    # A shorter hypothesis pays the brevity penalty exp(1 - 6/5).
    short = 100 * math.exp((math.log(5 / 5) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4)
    assert math.isclose(tokenized_bleu(["the cat sat on mat"], ref), short * math.exp(1 - 6 / 5), rel_tol=1e-9)


def test_tokenised_bleu_matches_sacrebleu_without_tokenisation_or_smoothing():
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], tokenize="none", smooth_method="none")
    assert math.isclose(tokenized_bleu(HYPOTHESES, REFERENCES), expected.score, rel_tol=1e-12)
    # No smoothing (fairseq's scorer): no matching 4-gram at all gives 0.
    assert tokenized_bleu(["a b c d e"], ["a b c x e"]) == 0.0
    # The escapes are tokens like any other: the tokenised text is scored as it stands.
    assert tokenized_bleu(["it &apos;s"], ["it 's"]) < 100


def test_sacrebleu_figure_is_sacrebleu_on_detokenised_output_with_its_signature():
    value, signature = sacre_bleu(HYPOTHESES, RAW_REFERENCES)
    detokenised = ["the cat sat on the mat.", 'it\'s a "big" dog, isn\'t it?', "we saw three houses"]
    assert detokenize(HYPOTHESES) == detokenised
    expected = sacrebleu.corpus_bleu(detokenised, [RAW_REFERENCES], lowercase=True)
    assert math.isclose(value, expected.score, rel_tol=1e-12)
    assert signature == f"nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert sacrebleu_signature() == signature  # known before scoring, for meta.json
    # The original references' case does not count (the model writes lowercase) ...
    assert math.isclose(sacre_bleu(REFERENCES, RAW_REFERENCES)[0], 100.0)
    # ... and the two figures differ on the same output: they are different definitions.
    both = score(HYPOTHESES, REFERENCES, RAW_REFERENCES)
    assert both["bleu"] != both["sacrebleu"] and both["sacrebleu_signature"] == signature


def test_hypothesis_text_joins_bpe_units_and_stops_at_eos():
    d = Dictionary.build(["the c@@ at sat"])
    ids = d.encode("the c@@ at sat")[:-1] + [UNK_INDEX, EOS_INDEX, d.index["sat"]]
    assert hypothesis_text(ids, d) == "the cat sat <unk>"


def test_evaluation_scores_a_fixed_subset_against_its_own_references(tmp_path, monkeypatch):
    import torch

    import translation_fixtures as fx
    from benchmarks.translation import evaluate
    from benchmarks.translation.data import load_prepared
    from benchmarks.translation.model import ARCHITECTURES, Transformer

    fx.prepare_tiny(tmp_path)
    prepared = load_prepared(tmp_path, 60)
    test = prepared.splits["test"]
    subset = evaluate.validation_subset(len(test), 4, seed=0)
    assert all(UNK_INDEX not in test.target(i) for i in subset)  # (unknown words never match)
    assert subset == evaluate.validation_subset(len(test), 4, seed=0) == sorted(subset) and len(set(subset)) == 4
    assert evaluate.validation_subset(len(test), 50, seed=0) == list(range(len(test)))
    model = Transformer(len(prepared.dictionaries["de"]), len(prepared.dictionaries["en"]),
                        ARCHITECTURES["transformer_tiny"]).train()
    metrics, translations = evaluate.evaluate_bleu(model, prepared, "test", torch.device("cpu"),
                                                   max_tokens=64, beam=2, indices=subset)
    assert len(translations) == 4 and model.training  # evaluated in eval mode, then restored
    assert 0 <= metrics["bleu"] <= 100 and metrics["sacrebleu_signature"].startswith("nrefs:1|case:lc|")
    # A model that outputs the references scores 100: each translation meets its own reference.
    monkeypatch.setattr(evaluate, "translate", lambda model, data, *args: [
        data.target(i)[:-1].tolist() for i in args[-1]])
    metrics, translations = evaluate.evaluate_bleu(model, prepared, "test", torch.device("cpu"),
                                                   max_tokens=64, indices=subset)
    assert math.isclose(metrics["bleu"], 100.0)
    assert translations == [prepared.tokenized_references("test")[i] for i in subset]
