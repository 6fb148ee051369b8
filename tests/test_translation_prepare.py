"""IWSLT'14 De-En preparation: the recipe's text steps, BPE, dictionaries, the manifest,
and the preparation command end to end on a tiny archive in the real layout
(tests/translation_fixtures.py, whose docstring derives the counts by hand)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import translation_fixtures as fx
from benchmarks.config import ConfigError
from benchmarks.translation import corpus
from benchmarks.translation.bpe import Segmenter, learn_codes, remove_bpe
from benchmarks.translation.data import check_lengths, load_prepared
from benchmarks.translation.dictionary import EOS_INDEX, UNK_INDEX, Dictionary
from benchmarks.translation.prepare import main, prepare

REPO = pathlib.Path(__file__).resolve().parents[1]
BPE_MERGES = 60  # enough for the fixture's small vocabulary


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[pathlib.Path, dict]:
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, fx.prepare_tiny(data_dir, BPE_MERGES)


def test_training_tags_are_stripped_as_the_recipe_does():
    lines = ["<url>http://x</url>", "<keywords>a, b</keywords>", "<speaker>Jane</speaker>",
             "<talkid>7</talkid>", "<title>Jane: Talk</title>", "<description>About</description>",
             "Ein Satz."]
    assert corpus.strip_train_tags(lines) == ["<speaker>Jane</speaker>", "Jane: Talk", "About", "Ein Satz."]


def test_xml_segments_keep_the_seg_text_and_straighten_apostrophes():
    lines = ['<doc docid="1">', "<title>Not a segment</title>", '<seg id="12">  It’s here. </seg>  ',
             '<seg id="13">Two</seg>', "</doc>"]
    assert corpus.xml_segments(lines) == ["It's here.", "Two"]
    assert corpus.xml_segments(lines, straighten=False) == ["It’s here.", "Two"]


@pytest.mark.parametrize("src_words, tgt_words, kept", [
    (1, 1, True), (175, 175, True), (176, 176, False), (175, 176, False), (0, 3, False),
    (2, 3, True), (3, 2, True), (2, 4, False), (10, 16, False), (10, 15, True)])
def test_length_filter_is_clean_corpus_n_with_ratio_1_5_and_1_to_175(src_words, tgt_words, kept):
    assert corpus.keep_pair(" ".join(["w"] * src_words), " ".join(["x"] * tgt_words)) is kept


def test_length_filter_drops_words_over_1000_characters_and_counts_after_collapsing_spaces():
    assert not corpus.keep_pair("a " + "b" * 1001, "a b")
    assert corpus.keep_pair("a  \t b", "a b")  # 2 words, not 4 fields
    assert corpus.normalize_spaces("  a \t b  ") == "a b"


def test_every_23rd_pair_is_validation():
    train, valid = corpus.split_every(70)
    assert valid == [22, 45, 68]  # the 23rd, 46th and 69th, as awk's NR % 23 == 0
    assert len(train) == 67 and not set(train) & set(valid)
    assert corpus.split_every(22) == (list(range(22)), [])


def test_moses_tokenisation_escapes_and_lowercases_as_the_recipe():
    assert corpus.Tokenizer("en")(["Don't \"stop\" | now."]) == ["don &apos;t &quot; stop &quot; &#124; now ."]
    assert corpus.Tokenizer("de")(["Das Haus, groß."], lowercase=False) == ["Das Haus , groß ."]


def test_bpe_applies_known_codes_to_known_strings():
    codes = "#version: 0.2\nl o\nlo w</w>\ne r</w>\n"
    segment = Segmenter(codes)
    assert segment(["low lower", "", "slow"]) == ["low lo@@ w@@ er", "", "s@@ low"]
    assert remove_bpe("lo@@ w@@ er low") == "lower low"


def test_bpe_learns_the_most_frequent_pair_first():
    codes = learn_codes(["ab ab ab cd", "ab cd"], merges=2)
    assert codes.splitlines()[:3] == ["#version: 0.2", "a b</w>", "c d</w>"]


def test_dictionary_orders_by_count_then_alphabet_and_pads_to_8_like_fairseq():
    d = Dictionary.build(["b a c b", "c b z"])
    assert d.symbols[:7] == ["<s>", "<pad>", "</s>", "<unk>", "b", "c", "a"]
    assert d.symbols[7] == "z" and len(d) == 8
    assert len(Dictionary.build(["a b c d e"])) == 16  # 4 + 5 = 9 types, padded to 16
    assert d.symbols[8:] == [] and Dictionary.build(["a b c d e"]).symbols[9] == "madeupword0000"
    assert d.encode("b q") == [4, UNK_INDEX, EOS_INDEX]
    assert Dictionary.from_text(d.to_text()).symbols == d.symbols
    assert d.string([4, UNK_INDEX, EOS_INDEX, 5]) == "b <unk>"
    assert d.string([4, UNK_INDEX], escape_unk=True) == "b <<unk>>"


def test_a_tiny_archive_is_prepared_end_to_end_with_hand_computed_counts(prepared):
    data_dir, manifest = prepared
    counts = manifest["counts"]
    assert (counts["train_raw"], counts["train_clean"], counts["train"], counts["valid"], counts["test"]) == (
        fx.TRAIN_RAW, fx.TRAIN_CLEAN, fx.TRAIN, fx.VALID, fx.TEST)
    assert counts["test_sets"] == fx.TEST_SEGMENTS
    assert counts["bpe_merges_learned"] == BPE_MERGES

    out = data_dir / "iwslt14-de-en" / "prepared"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert set(manifest["inputs"]) == {"de-en.tgz", *corpus.required_files()}
    # The validation pairs are the 23rd and 46th cleaned pairs: talk 1's regular pair 20
    # and talk 2's regular pair 10 (3 metadata pairs open each talk).
    valid_raw = (out / "valid.raw.en").read_text().splitlines()
    assert valid_raw == [fx.regular_pair(1, 20)[1], fx.regular_pair(2, 10)[1]]
    valid_text = [remove_bpe(line) for line in (out / "valid.en").read_text().splitlines()]
    assert valid_text == [corpus.Tokenizer("en")([line])[0] for line in valid_raw]
    test_raw = (out / "test.raw.en").read_text().splitlines()
    assert "It’s a cat, isn’t it?" in test_raw  # the original reference, for sacreBLEU
    assert "it &apos;s a cat , isn &apos;t it ?" in [remove_bpe(l) for l in (out / "test.en").read_text().splitlines()]

    loaded = load_prepared(data_dir, BPE_MERGES)
    for lang in ("de", "en"):
        assert len(loaded.dictionaries[lang]) == counts["dictionary"][lang]
        assert len(loaded.dictionaries[lang]) % 8 == 0
    assert [len(loaded.splits[s]) for s in ("train", "valid", "test")] == [fx.TRAIN, fx.VALID, fx.TEST]
    train = loaded.splits["train"]
    # The 175-word pair is kept; its BPE ids round-trip to the text, </s> last.
    words = ["katze"] * 175
    row = next(i for i in range(len(train)) if len(train.source(i)) >= 176)
    assert remove_bpe(loaded.dictionaries["de"].string(train.source(row))).split() == words
    assert train.source(row)[-1] == EOS_INDEX
    assert loaded.tokenized_references("valid") == valid_text


def test_a_folder_gives_the_same_preparation_as_the_archive(prepared, tmp_path):
    data_dir, manifest = prepared
    root = tmp_path / "iwslt14-de-en" / "de-en"
    root.mkdir(parents=True)
    for name, data in fx.archive_files().items():
        (root / name).write_bytes(data)
    from_folder = prepare(tmp_path / "iwslt14-de-en", BPE_MERGES, log=quiet)
    assert from_folder["outputs"] == manifest["outputs"]
    assert from_folder["counts"] == manifest["counts"]


def test_preparing_again_reports_it_and_other_settings_are_refused(prepared, capsys):
    data_dir, manifest = prepared
    out = data_dir / "iwslt14-de-en" / "prepared"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prepare(data_dir / "iwslt14-de-en", BPE_MERGES, log=print)
    assert again == manifest and "already prepared" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="already holds other prepared data.*move it aside"):
        prepare(data_dir / "iwslt14-de-en", BPE_MERGES + 1, log=quiet)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def run_prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.translation.prepare", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_an_archive_that_is_not_iwslt14_de_en_is_one_line_exit_2_nothing_written(tmp_path):
    root = tmp_path / "iwslt14-de-en"
    fx.write_archive(root, drop=("IWSLT14.TED.tst2012.de-en.en.xml",))
    result = run_prepare("--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "is not the IWSLT'14 De-En release" in result.stderr
    assert "IWSLT14.TED.tst2012.de-en.en.xml" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["de-en.tgz"]


def test_no_archive_says_where_to_put_it(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "place the official de-en.tgz there" in err and str(tmp_path / "iwslt14-de-en" / "de-en.tgz") in err


def test_the_runner_refuses_another_bpe_setting_and_changed_files(prepared, tmp_path):
    data_dir, _ = prepared
    with pytest.raises(ConfigError, match=f"prepared with {BPE_MERGES} BPE merges, this cell needs 10000"):
        load_prepared(data_dir)
    with pytest.raises(ConfigError, match="is not prepared.*python -m benchmarks.translation.prepare"):
        load_prepared(tmp_path)
    copy = tmp_path / "copy"
    (copy / "iwslt14-de-en").mkdir(parents=True)
    src = data_dir / "iwslt14-de-en" / "prepared"
    dst = copy / "iwslt14-de-en" / "prepared"
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    (dst / "valid.en").write_text("changed\n")
    with pytest.raises(ConfigError, match="valid.en differs from its manifest"):
        load_prepared(copy, BPE_MERGES)


def test_a_sentence_longer_than_the_positions_is_refused_before_anything_runs(prepared):
    data_dir, _ = prepared
    test = load_prepared(data_dir, BPE_MERGES).splits["test"]
    check_lengths(test, "test", max_positions=int(max(test.src_lengths.max(), test.tgt_lengths.max())))
    first = int(np.flatnonzero(test.src_lengths > 5)[0])
    with pytest.raises(ConfigError, match=f"test sentence {first + 1} has .* source tokens, more than "
                                          "the model's 5 positions"):
        check_lengths(test, "test", max_positions=5)


def test_an_unwritable_destination_is_refused_before_the_work(tmp_path):
    root = tmp_path / "iwslt14-de-en"
    fx.write_archive(root)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="the folder for the prepared data .* is not writable"):
        prepare(root, BPE_MERGES, out=blocker / "prepared", log=quiet)


def test_a_file_that_is_no_archive_is_refused(tmp_path):
    root = tmp_path / "iwslt14-de-en"
    root.mkdir()
    (root / "de-en.tgz").write_bytes(b"<html>a download error page</html>")
    with pytest.raises(ConfigError, match="de-en.tgz is not a readable tar archive"):
        prepare(root, BPE_MERGES, log=quiet)
    assert sorted(p.name for p in root.iterdir()) == ["de-en.tgz"]
