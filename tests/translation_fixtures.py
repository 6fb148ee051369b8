"""A tiny IWSLT'14 De-En archive in the real layout and formats, with hand-computed counts.

``de-en.tgz`` holds ``de-en/train.tags.de-en.{de,en}`` (two talks, each opening with the
six metadata lines of the real files) and the ten ``IWSLT14.TED*.de-en.{de,en}.xml``
dev/test files (``<mteval>`` documents with ``<seg id=...>`` lines).

The training text is built so that every rule of the recipe is exercised and the
counts follow by hand:

* per talk, ``<url>``, ``<keywords>`` and ``<talkid>`` go, ``<speaker>``, ``<title>`` and
  ``<description>`` stay (tags stripped): 3 metadata pairs x 2 talks;
* talk 1: 30 regular pairs, then a pair with an empty German side and a pair whose
  English side is twice as long (both dropped);
* talk 2: 30 regular pairs, then a pair of 176 words (dropped), one of 175 words and
  one of ratio exactly 1.5 (both kept).

So 71 pairs after the tags, 68 after cleaning, of which the 23rd and 46th (talk 1's
regular pair 20 and talk 2's regular pair 10) are the validation set: train 66, valid 2.
The test set: 3 + 2 + 2 + 1 + 2 = 10 segments.
"""

from __future__ import annotations

import io
import pathlib
import tarfile

# A small vocabulary, so that BPE finds merges in 70 sentences.
_DE = ["der", "die", "das", "haus", "katze", "hund", "ist", "klein", "groß", "und", "sehr", "alt"]
_EN = ["the", "house", "cat", "dog", "is", "small", "big", "and", "very", "old", "a", "we"]

TRAIN_RAW, TRAIN_CLEAN, TRAIN, VALID = 71, 68, 66, 2
TEST_SEGMENTS = {"IWSLT14.TED.dev2010": 3, "IWSLT14.TEDX.dev2012": 2, "IWSLT14.TED.tst2010": 2,
                 "IWSLT14.TED.tst2011": 1, "IWSLT14.TED.tst2012": 2}
TEST = sum(TEST_SEGMENTS.values())


def regular_pair(talk: int, k: int) -> tuple[str, str]:
    """Regular pair ``k`` (1-based) of talk ``talk``: 4 to 7 words a side, a full stop."""
    n = 3 + (talk + k) % 4
    de = " ".join(_DE[(talk * 7 + k * 3 + j) % len(_DE)] for j in range(n))
    en = " ".join(_EN[(talk * 5 + k * 2 + j) % len(_EN)] for j in range(n))
    return f"{de.capitalize()} {talk}-{k}.", f"{en.capitalize()} {talk}-{k}."


def _metadata(talk: int, lang: str) -> list[str]:
    title = {"de": "Ein Vortrag über Katzen", "en": "A talk about cats"}[lang]
    about = {"de": "Eine Beschreibung des Vortrags.", "en": "A description of the talk."}[lang]
    return [f"<url>http://www.ted.com/talks/lang/{lang}/talk_{talk}.html</url>",
            "<keywords>talks, cats, science</keywords>",
            f"<speaker>Jane Doe {talk}</speaker>",
            f"<talkid>{talk}</talkid>",
            f"<title>Jane Doe: {title}</title>",
            f"<description>TED Talk Subtitles and Transcript: {about}</description>"]


def train_lines() -> dict[str, list[str]]:
    lines = {"de": [], "en": []}

    def add(de: str, en: str) -> None:
        lines["de"].append(de)
        lines["en"].append(en)

    for talk in (1, 2):
        for de, en in zip(_metadata(talk, "de"), _metadata(talk, "en")):
            add(de, en)
        for k in range(1, 31):
            add(*regular_pair(talk, k))
        if talk == 1:
            add("", "An English line without its German side .")   # empty side: dropped
            add("Haus alt", "the house is very old")                  # 2 vs 5 words: dropped
        else:
            add(" ".join(["haus"] * 176), " ".join(["house"] * 176))  # 176 words: dropped
            add(" ".join(["katze"] * 175), " ".join(["cat"] * 175))   # 175 words: kept
            add("Hund alt", "dog is old")                             # 2 vs 3 words (1.5): kept
    return lines


def segments_of(name: str, lang: str) -> list[str]:
    n = TEST_SEGMENTS[name]
    words = _DE if lang == "de" else _EN
    k = list(TEST_SEGMENTS).index(name)
    segments = [f"{words[(i + k) % 12].capitalize()} {words[(i + 2 * k + 3) % 12]} "
                f"{words[(i + k + 5) % 12]} {words[(2 * i + k + 7) % 12]}." for i in range(n)]
    if name == "IWSLT14.TED.tst2010" and lang == "en":
        segments[0] = "It’s a cat, isn’t it?"  # the recipe straightens ’ before tokenising
    return segments


def _xml(name: str, lang: str) -> str:
    setid = "iwslt2014-" + name.split(".")[-1]
    tag = "srcset" if lang == "de" else "refset"
    opening = (f'<srcset setid="{setid}" srclang="german">' if lang == "de" else
               f'<refset setid="{setid}" srclang="german" trglang="english" refid="ref">')
    segs = "\n".join(f'<seg id="{i + 1}"> {text} </seg>' for i, text in enumerate(segments_of(name, lang)))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n' + opening + "\n"
            '<doc docid="535" genre="lectures">\n<url>http://www.ted.com/talks/x.html</url>\n'
            "<description>TED Talk Subtitles and Transcript: a talk</description>\n"
            "<keywords>talks</keywords>\n<talkid>535</talkid>\n<title>A talk</title>\n"
            f"{segs}\n</doc>\n</{tag}>\n</mteval>\n")


def archive_files(drop: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The archive's members (paths under ``de-en/``), less ``drop``."""
    files = {f"train.tags.de-en.{lang}": "".join(line + "\n" for line in lines).encode()
             for lang, lines in train_lines().items()}
    for name in TEST_SEGMENTS:
        for lang in ("de", "en"):
            files[f"{name}.de-en.{lang}.xml"] = _xml(name, lang).encode()
    files["README"] = b"IWSLT 2014 German-English (a test fixture)\n"
    return {name: data for name, data in files.items() if name not in drop}


def write_archive(root: pathlib.Path, drop: tuple[str, ...] = ()) -> pathlib.Path:
    """``root/de-en.tgz`` (``root`` created), as the official archive is laid out."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "de-en.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in archive_files(drop).items():
            info = tarfile.TarInfo(f"de-en/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def prepare_tiny(data_dir: pathlib.Path, bpe_merges: int = 60) -> dict:
    """The tiny archive written into ``data_dir`` and prepared there; returns the manifest."""
    from benchmarks.translation.prepare import dataset_root, prepare
    write_archive(dataset_root(data_dir))
    return prepare(dataset_root(data_dir), bpe_merges, log=lambda _line: None)
