"""``python -m benchmarks.translation.prepare``: prepare IWSLT'14 De-En once, as fairseq's
``prepare-iwslt14.sh`` and ``fairseq-preprocess`` do.

Reads ``DATA/iwslt14-de-en/de-en.tgz`` (the official archive) or its extracted
``DATA/iwslt14-de-en/de-en/`` folder; nothing is downloaded. Writes
``DATA/iwslt14-de-en/prepared/``:

* ``code``: the joint BPE codes; ``dict.de.txt``, ``dict.en.txt``: the dictionaries;
* ``{train,valid,test}.{de,en}``: the BPE text, line for line what the recipe's
  ``iwslt14.tokenized.de-en/`` holds;
* ``{train,valid,test}.npz``: the binarised splits (``de_tokens``, ``de_offsets``,
  ``en_tokens``, ``en_offsets``; see :func:`benchmarks.translation.dictionary.binarize`);
* ``{valid,test}.raw.en``: the English references before tokenisation (for sacreBLEU);
* ``manifest.json``, last: the recipe's settings, the tools' versions, the sha256 of
  every input and output, sentence counts and dictionary sizes.

Everything is written into a temporary folder that is renamed into place at the end, so
an interrupted preparation leaves nothing half-written. An existing preparation is never
overwritten: the same inputs and settings are reported as already prepared (exit 0),
anything else is refused (exit 2) until the user moves the folder aside.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable

import numpy as np

from ..config import ConfigError
from . import corpus
from .bpe import Segmenter, count_merges, learn_codes
from .dictionary import Dictionary, binarize

PROG = "python -m benchmarks.translation.prepare"
SPLITS = ("train", "valid", "test")

# Where the data lives: DATA/iwslt14-de-en/{de-en.tgz | de-en/} in, .../prepared/ out.
DATASET = "iwslt14-de-en"
ARCHIVE, EXTRACTED, PREPARED, MANIFEST = "de-en.tgz", corpus.FOLDER, "prepared", "manifest.json"
DEFAULT_BPE_MERGES = 10000
PREPARE_COMMAND = PROG + " --data-dir {data_dir}"
FORMAT = 1  # of the prepared folder; a change here makes older preparations mismatch


def dataset_root(data_dir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(data_dir) / DATASET


def recipe(bpe_merges: int = DEFAULT_BPE_MERGES) -> dict[str, Any]:
    """What a preparation did, as its manifest records it; a cell needs an exact match."""
    return {"format": FORMAT, "bpe_merges": bpe_merges, "tokenizer": "moses (sacremoses), escaped",
            "lowercase": True, "min_len": corpus.MIN_LEN, "max_len": corpus.MAX_LEN,
            "max_ratio": corpus.MAX_RATIO, "valid_every": corpus.VALID_EVERY,
            "test_sets": list(corpus.TEST_SETS), "dictionary": "fairseq, padded to a multiple of 8"}


def find_input(root: pathlib.Path) -> pathlib.Path:
    """The archive in ``root``, else its extracted folder; ConfigError if neither is there."""
    for candidate in (root / ARCHIVE, root / EXTRACTED):
        if candidate.exists():
            return candidate
    raise ConfigError(f"no IWSLT'14 De-En data in {root}: place the official de-en.tgz there "
                      f"(as {root / ARCHIVE}, or extracted as {root / EXTRACTED}/); "
                      "nothing is downloaded")


def tools() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("sacremoses", "subword-nmt")}


def process(raw: corpus.RawCorpus, bpe_merges: int, log: Callable[[str], None] = print
            ) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The prepared files (name -> content) and the manifest's counts, from the raw corpus."""
    tokenizers = {lang: corpus.Tokenizer(lang) for lang in corpus.LANGUAGES}

    raw_train = {lang: corpus.strip_train_tags(raw.lines(corpus.TRAIN_FILE.format(lang=lang)))
                 for lang in corpus.LANGUAGES}
    if len(raw_train["de"]) != len(raw_train["en"]):
        raise corpus.NotIwslt14(f"the training files are not parallel: {len(raw_train['de'])} "
                                f"German and {len(raw_train['en'])} English lines after the tags")
    log(f"tokenising {len(raw_train['de'])} training pairs")
    tok_train = {lang: tokenizers[lang](lines) for lang, lines in raw_train.items()}
    kept = [i for i, pair in enumerate(zip(tok_train["de"], tok_train["en"])) if corpus.keep_pair(*pair)]
    train_idx, valid_idx = corpus.split_every(len(kept))
    text = {("train", lang): [corpus.normalize_spaces(tok_train[lang][kept[i]]) for i in train_idx]
            for lang in corpus.LANGUAGES}
    text.update({("valid", lang): [corpus.normalize_spaces(tok_train[lang][kept[i]]) for i in valid_idx]
                 for lang in corpus.LANGUAGES})
    raw_refs = {"valid": [raw_train["en"][kept[i]].strip() for i in valid_idx]}

    test_sets: dict[str, int] = {}
    raw_test = {lang: [] for lang in corpus.LANGUAGES}
    for name in corpus.TEST_SETS:
        segments = {lang: corpus.xml_segments(raw.lines(corpus.XML_FILE.format(name=name, lang=lang)))
                    for lang in corpus.LANGUAGES}
        if len(segments["de"]) != len(segments["en"]):
            raise corpus.NotIwslt14(f"{name} is not parallel: {len(segments['de'])} German and "
                                    f"{len(segments['en'])} English segments")
        test_sets[name] = len(segments["de"])
        for lang in corpus.LANGUAGES:
            raw_test[lang] += segments[lang]
    log(f"tokenising {len(raw_test['de'])} test pairs")
    text.update({("test", lang): tokenizers[lang](raw_test[lang]) for lang in corpus.LANGUAGES})
    # The original references (before the ’ -> ' replacement), for sacreBLEU.
    raw_refs["test"] = [line.strip() for name in corpus.TEST_SETS for line in corpus.xml_segments(
        raw.lines(corpus.XML_FILE.format(name=name, lang=corpus.TARGET)), straighten=False)]

    log(f"learning {bpe_merges} BPE merges on the German and English training text")
    codes = learn_codes(text["train", "de"] + text["train", "en"], bpe_merges)
    segment = Segmenter(codes)
    bpe_text = {key: segment(lines) for key, lines in text.items()}
    dictionaries = {lang: Dictionary.build(bpe_text["train", lang]) for lang in corpus.LANGUAGES}

    files: dict[str, bytes] = {"code": codes.encode()}
    for lang, dictionary in dictionaries.items():
        files[f"dict.{lang}.txt"] = dictionary.to_text().encode()
    for (split, lang), lines in bpe_text.items():
        files[f"{split}.{lang}"] = _lines(lines)
    for split, lines in raw_refs.items():
        files[f"{split}.raw.en"] = _lines(lines)
    for split in SPLITS:
        arrays = {}
        for lang, dictionary in dictionaries.items():
            arrays[f"{lang}_tokens"], arrays[f"{lang}_offsets"] = binarize(dictionary, bpe_text[split, lang])
        files[f"{split}.npz"] = _npz(arrays)

    counts = {"train_raw": len(raw_train["de"]), "train_clean": len(kept),
              **{split: len(bpe_text[split, "de"]) for split in SPLITS},
              "test_sets": test_sets,
              "dictionary": {lang: len(d) for lang, d in dictionaries.items()},
              "bpe_merges_learned": count_merges(codes)}
    return files, counts


def _lines(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import io
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def build_manifest(raw: corpus.RawCorpus, bpe_merges: int, files: dict[str, bytes],
                   counts: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": DATASET, "recipe": recipe(bpe_merges), "tools": tools(),
            "source": raw.source, "inputs": raw.sha256, "counts": counts,
            "outputs": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_prepared(out: pathlib.Path, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """All files into a temporary sibling folder, the manifest last, then one rename."""
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for path in tmp.iterdir():  # on disk before the rename publishes them
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(root: pathlib.Path, bpe_merges: int = DEFAULT_BPE_MERGES, source: pathlib.Path | None = None,
            out: pathlib.Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare the corpus found in ``root`` (or ``source``) into ``out`` (default
    ``root/prepared``); returns the manifest. ConfigError for bad input, nothing written."""
    source = pathlib.Path(source) if source else find_input(root)
    out = pathlib.Path(out) if out else root / PREPARED
    try:
        raw = corpus.read_corpus(source)
    except corpus.NotIwslt14 as err:
        raise ConfigError(f"{err}; place the official IWSLT'14 de-en.tgz as {root / ARCHIVE}") from None
    existing = out / MANIFEST
    if out.exists():
        try:
            manifest = json.loads(existing.read_text())
        except (OSError, ValueError):
            manifest = None
        if manifest and manifest.get("inputs") == raw.sha256 and manifest.get("recipe") == recipe(bpe_merges):
            log(f"already prepared: {out} (same inputs and settings)")
            return manifest
        raise ConfigError(f"{out} already holds other prepared data (other inputs or settings, or an "
                          "incomplete folder); move it aside to prepare again")
    from ..rundir import check_writable  # (imports torch: not before the input is known good)
    check_writable(out.parent, "the folder for the prepared data")  # before minutes of work
    try:
        files, counts = process(raw, bpe_merges, log)
    except corpus.NotIwslt14 as err:
        raise ConfigError(str(err)) from None
    manifest = build_manifest(raw, bpe_merges, files, counts)
    write_prepared(out, files, manifest)
    return manifest


def summary(manifest: dict[str, Any]) -> str:
    """The counts as fairseq reports them, beside the figures its recipe gives on the real archive."""
    counts = manifest["counts"]
    return "\n".join([
        f"train {counts['train']} pairs (of {counts['train_clean']} after cleaning, "
        f"{counts['train_raw']} raw); valid {counts['valid']} (fairseq: 7283); "
        f"test {counts['test']} (fairseq: 6750)",
        f"dictionaries: de {counts['dictionary']['de']} types (fairseq: 8848), "
        f"en {counts['dictionary']['en']} types (fairseq: 6632); "
        f"{counts['bpe_merges_learned']} BPE merges",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("VASSO_DATA") or "./data",
                        help="dataset root; reads DATA/iwslt14-de-en/de-en.tgz "
                             "(default: $VASSO_DATA, else ./data)")
    parser.add_argument("--source", help="the archive or its extracted de-en/ folder, "
                                         "if not in DATA/iwslt14-de-en/")
    parser.add_argument("--bpe-merges", type=int, default=DEFAULT_BPE_MERGES,
                        help=f"joint BPE merge operations (the recipe: {DEFAULT_BPE_MERGES})")
    parser.add_argument("--out", help="where to write (default: DATA/iwslt14-de-en/prepared)")
    args = parser.parse_args(argv)
    try:
        if args.bpe_merges < 1:
            raise ConfigError(f"--bpe-merges={args.bpe_merges}: expected a positive number")
        manifest = prepare(dataset_root(args.data_dir), args.bpe_merges, args.source, args.out,
                           log=lambda line: print(line, file=sys.stderr, flush=True))
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
