"""The IWSLT'14 De-En corpus and the text steps of fairseq's ``prepare-iwslt14.sh``.

Each step is a pure function over lines, in the order the script runs them:

* training text (``train.tags.de-en.{de,en}``): drop the lines holding ``<url>``,
  ``<talkid>`` or ``<keywords>``, strip the ``<title>`` / ``<description>`` tags (their
  text stays), Moses-tokenise, clean the pairs as ``clean-corpus-n.perl -ratio 1.5 ...
  1 175`` does, lowercase; every 23rd remaining pair (the 23rd, 46th, ...) is the
  validation set, the rest the training set;
* dev/test text (``IWSLT14.TED*.{de,en}.xml``): keep the ``<seg id=...>`` lines, strip
  the tags, replace ``’`` by ``'``, Moses-tokenise, lowercase; the test set is the
  concatenation of :data:`TEST_SETS`, in that order.

Moses tokenisation is sacremoses' port of ``tokenizer.perl`` with the script's settings
(``-l de`` / ``-l en``, escaping on, no aggressive hyphen splitting); lowercasing is
Python's ``str.lower`` (``lowercase.perl`` is Perl's ``lc``).
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import re
import tarfile
from dataclasses import dataclass
from typing import Sequence

SOURCE, TARGET = "de", "en"
LANGUAGES = (SOURCE, TARGET)
FOLDER = "de-en"  # the archive's top folder (de-en.tgz extracts to de-en/)
TRAIN_FILE = "train.tags.de-en.{lang}"
# The test set, in the order prepare-iwslt14.sh concatenates it.
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
XML_FILE = "{name}.de-en.{lang}.xml"

# clean-corpus-n.perl's settings in the recipe, and its fixed limit on a word's length.
MIN_LEN, MAX_LEN, MAX_RATIO, MAX_WORD_CHARS = 1, 175, 1.5, 1000
VALID_EVERY = 23

_DROPPED_TAGS = ("<url>", "<talkid>", "<keywords>")
_STRIPPED_TAGS = re.compile(r"</?(?:title|description)>")
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")


def required_files() -> list[str]:
    """The archive members the recipe reads, relative to the archive's ``de-en/`` folder."""
    names = [TRAIN_FILE.format(lang=lang) for lang in LANGUAGES]
    return names + [XML_FILE.format(name=name, lang=lang) for name in TEST_SETS for lang in LANGUAGES]


@dataclass(frozen=True)
class RawCorpus:
    """The recipe's input files, as text, with the sha256 of each (and of the archive)."""

    files: dict[str, str]
    sha256: dict[str, str]
    source: str  # what was read: the archive or the folder

    def lines(self, name: str) -> list[str]:
        return self.files[name].splitlines()


class NotIwslt14(ValueError):
    """The given archive or folder lacks files of the IWSLT'14 De-En release."""


def read_corpus(path: pathlib.Path) -> RawCorpus:
    """Read the recipe's files from ``de-en.tgz`` or from its extracted ``de-en/`` folder.

    Raises :class:`NotIwslt14` naming the missing files when any is absent.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise NotIwslt14(f"{path} does not exist")
    if path.is_dir():
        found = {name: (path / name).read_bytes() for name in required_files()
                 if (path / name).is_file()}
        archive_hash = {}
    else:
        archive = path.read_bytes()  # ~20 MB: hashed and read from memory
        found, archive_hash = _read_archive(archive, path), {path.name: hashlib.sha256(archive).hexdigest()}
    missing = [name for name in required_files() if name not in found]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise NotIwslt14(f"{path} is not the IWSLT'14 De-En release (de-en.tgz): it lacks {shown}")
    try:
        files = {name: data.decode("utf-8") for name, data in found.items()}
    except UnicodeDecodeError as err:
        raise NotIwslt14(f"{path}: a file is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return RawCorpus(files=files,
                     sha256={**archive_hash, **{name: hashlib.sha256(data).hexdigest()
                                                for name, data in sorted(found.items())}},
                     source=str(path))


def _read_archive(archive: bytes, path: pathlib.Path) -> dict[str, bytes]:
    wanted = {f"{FOLDER}/{name}": name for name in required_files()}
    found = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise NotIwslt14(f"{path} is not a readable tar archive ({err})") from None
    return found


def strip_train_tags(lines: Sequence[str]) -> list[str]:
    """The training files' ``grep -v`` / ``sed`` steps: metadata lines out, title and
    description text kept without their tags."""
    return [_STRIPPED_TAGS.sub("", line) for line in lines
            if not any(tag in line for tag in _DROPPED_TAGS)]


def xml_segments(lines: Sequence[str], straighten: bool = True) -> list[str]:
    """The text of the ``<seg id=...>`` lines of a dev/test file, with ``’`` made ``'``
    (``straighten``: the recipe's input to tokenisation; without: the original text)."""
    segments = [_SEG_CLOSE.sub("", _SEG_OPEN.sub("", line)) for line in lines if "<seg id" in line]
    return [line.replace("’", "'") for line in segments] if straighten else segments


class Tokenizer:
    """Moses tokenisation as ``tokenizer.perl -l LANG`` (escaping on), then lowercasing."""

    def __init__(self, lang: str):
        from sacremoses import MosesTokenizer  # imported here: only preparation needs it
        self._moses = MosesTokenizer(lang=lang)

    def tokenize(self, line: str) -> str:
        return self._moses.tokenize(line, escape=True, return_str=True)

    def __call__(self, lines: Sequence[str], lowercase: bool = True) -> list[str]:
        out = [self.tokenize(line) for line in lines]
        return [line.lower() for line in out] if lowercase else out


def keep_pair(src: str, tgt: str) -> bool:
    """clean-corpus-n.perl's test for one pair of tokenised lines (``-ratio 1.5``, 1..175).

    Words are single-space separated after whitespace runs are collapsed; a pair goes if
    either side is empty, has fewer than MIN_LEN or more than MAX_LEN words, is more than
    MAX_RATIO times longer than the other, or holds a word over MAX_WORD_CHARS characters.
    (The script also deletes ``|``; Moses tokenisation has already escaped it.)
    """
    src_words, tgt_words = src.split(), tgt.split()
    ns, nt = len(src_words), len(tgt_words)
    if not (MIN_LEN <= ns <= MAX_LEN and MIN_LEN <= nt <= MAX_LEN):
        return False
    if ns / nt > MAX_RATIO or nt / ns > MAX_RATIO:
        return False
    return max(map(len, src_words + tgt_words)) <= MAX_WORD_CHARS


def normalize_spaces(line: str) -> str:
    """clean-corpus-n.perl's whitespace normalisation of the lines it keeps."""
    return " ".join(line.split())


def split_every(n_pairs: int, every: int = VALID_EVERY) -> tuple[list[int], list[int]]:
    """``awk 'NR%23 == 0'``: indices (0-based) of the training and validation pairs."""
    valid = list(range(every - 1, n_pairs, every))
    held = set(valid)
    return [i for i in range(n_pairs) if i not in held], valid
