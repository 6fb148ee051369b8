"""Dataset files checked against their official md5 checksums, once.

A truncated or corrupted data file must stop a run with a message that names it,
not load silently (corrupted pixels) or fail deep inside unpickling. Hashing the
CIFAR files costs about a second, so a folder remembers what it verified in
``.verified.json`` (size, mtime and md5 per file): a later start re-hashes only a
file whose size or mtime changed. A folder that is not writable is simply verified
at every start.

Tests whose fixture files cannot match the official checksums (tiny files in the real
format) opt out with the one switch ``VASSO_SKIP_DATA_CHECKSUMS=1``; the engine
records in meta.json whether the data were verified or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

from .config import ConfigError
from .rundir import WriteFailed, atomic_write_json

SKIP_ENV = "VASSO_SKIP_DATA_CHECKSUMS"
VERIFIED = ".verified.json"


def skipped() -> bool:
    return os.environ.get(SKIP_ENV) == "1"


def status() -> str:
    """What meta.json records about the data checksums of this run."""
    return f"skipped ({SKIP_ENV}=1)" if skipped() else "verified"


def md5(path: pathlib.Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: pathlib.Path, expected: dict[str, str], fix: str) -> None:
    """Check every ``folder/name`` against ``expected[name]`` (an md5); ConfigError
    naming the first damaged file and ``fix`` (how to repair it) otherwise."""
    if skipped():
        return
    cache_path = folder / VERIFIED
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    changed = False
    for name, want in expected.items():
        path = folder / name
        stat = path.stat()
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": want}
        if cache.get(name) == seen:
            continue
        got = md5(path)
        if got != want:
            raise ConfigError(f"{path} is damaged: its md5 is {got}, the official file's is {want} "
                              f"(truncated or corrupted; {stat.st_size} bytes). {fix}")
        cache[name], changed = seen, True
    if changed:
        try:
            atomic_write_json(cache_path, cache)
        except WriteFailed:  # a read-only data folder: verify again next time
            pass
