"""GLUE's text and labels, read offline from one of three local copies.

Looked for in this order, under ``--data-dir`` (``DATA``):

1. the original GLUE distribution's TSV files (``download_glue_data.py``):
   ``DATA/glue/<Task>/train.tsv``, ``dev.tsv`` (MNLI: ``dev_matched.tsv`` and
   ``dev_mismatched.tsv``), each task with its own columns (``spec.TsvColumns``).
   Their quirks: CoLA's train and dev files have no header; MRPC's start with a
   byte-order mark; no file quotes its fields (a ``"`` is text, so the reader
   never treats it as a quote); a few QQP training rows lack fields and are
   skipped, counted in the split's record;
2. a ``datasets`` copy saved with ``save_to_disk``: ``DATA/glue-hf/<task>/``
   (``dataset_dict.json`` with its splits), as written by
   ``datasets.load_dataset("nyu-mll/glue", "<task>").save_to_disk(...)``;
3. the ``datasets`` cache of ``nyu-mll/glue`` (``$HF_DATASETS_CACHE``, by default
   ``~/.cache/huggingface/datasets``), read by ``datasets``' own cache reader: no
   request to the Hub is made.

Labels come out as ``datasets`` numbers them (``GlueTask.labels``), whichever copy
is read, so a model trained on one copy scores on the other. Nothing is downloaded
unless asked (:func:`download`, ``--download``).
"""

from __future__ import annotations

import csv
import hashlib
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError
from .spec import GlueTask

HUB_ID = "nyu-mll/glue"
TSV_ROOT = "glue"        # DATA/glue/<Task>/*.tsv
DISK_ROOT = "glue-hf"    # DATA/glue-hf/<task>/ (save_to_disk); its own root, not glue/<task>,
                         # which would be the same folder as glue/<Task> on a case-insensitive disk


@dataclass
class GlueSplit:
    """One split: the one or two texts of every row, and the labels.

    ``labels``: int64 class ids, or float32 scores for STS-B. ``digest``: sha256 of the
    source (the TSV file's bytes, or the ``datasets`` fingerprint), which keys the
    tokenised cache. ``record``: what the run directory notes about the source.
    """

    texts: tuple[list[str], ...]
    labels: np.ndarray
    digest: str
    record: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def tsv_file(task: GlueTask, data_dir: pathlib.Path, stem: str) -> pathlib.Path:
    return data_dir / TSV_ROOT / task.folder / f"{stem}.tsv"


def disk_folder(task: GlueTask, data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / DISK_ROOT / task.name


def _split_stems(task: GlueTask) -> dict[str, tuple[str, str]]:
    """split name -> (TSV file stem, datasets split) for train and every dev split."""
    return {"train": ("train", "train"), **{name: (stem, hf) for name, stem, hf in task.dev}}


def _hf_cache_dir() -> pathlib.Path:
    import datasets

    return pathlib.Path(datasets.config.HF_DATASETS_CACHE)


def _cached_in_hf(task: GlueTask) -> bool:
    """Whether the datasets cache holds the task (``nyu-mll___glue/<task>/<version>/<hash>``)."""
    root = _hf_cache_dir() / HUB_ID.replace("/", "___") / task.name
    return any(p.is_dir() for p in root.glob("*/*"))


def find_source(task: GlueTask, data_dir: pathlib.Path) -> str | None:
    """"tsv", "disk" or "cache": the first local copy that has every split; None if none has."""
    if all(tsv_file(task, data_dir, stem).is_file() for stem, _ in _split_stems(task).values()):
        return "tsv"
    if (disk_folder(task, data_dir) / "dataset_dict.json").is_file():
        return "disk"
    if _cached_in_hf(task):
        return "cache"
    return None


def fetch_command(task: GlueTask, data_dir: pathlib.Path) -> str:
    """The command that makes the ``save_to_disk`` copy on a machine with internet."""
    return (f"python -c \"import datasets; datasets.load_dataset('{HUB_ID}', '{task.name}')"
            f".save_to_disk('{disk_folder(task, data_dir)}')\"")


def missing_data(task: GlueTask, data_dir: pathlib.Path) -> str | None:
    """One line naming what is missing and how to get it, or None when a copy is there."""
    if find_source(task, data_dir) is not None:
        return None
    stems = "/".join(stem for stem, _ in _split_stems(task).values())
    return (f"GLUE {task.folder} not found: no {data_dir / TSV_ROOT / task.folder}/{{{stems}}}.tsv, "
            f"no datasets copy in {disk_folder(task, data_dir)} and none in the datasets cache "
            f"{_hf_cache_dir()}; on a machine with internet run {fetch_command(task, data_dir)} "
            "and copy that folder here (or pass --download where there is internet)")


def download(task: GlueTask, data_dir: pathlib.Path) -> None:
    """``--download``: fetch the task with ``datasets`` and save it to :func:`disk_folder`."""
    import datasets

    try:
        datasets.load_dataset(HUB_ID, task.name).save_to_disk(str(disk_folder(task, data_dir)))
    except Exception as err:  # noqa: BLE001 - no network, hub errors, a full disk: one line
        raise ConfigError(f"GLUE {task.folder} --download failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); run "
                          f"{fetch_command(task, data_dir)} where there is internet") from None


def load_splits(task: GlueTask, data_dir: pathlib.Path) -> dict[str, GlueSplit]:
    """``{"train": ..., <each dev split>: ...}`` from the first local copy found."""
    source = find_source(task, data_dir)
    if source is None:
        raise ConfigError(missing_data(task, data_dir))
    if source == "tsv":
        return {name: read_tsv(task, tsv_file(task, data_dir, stem))
                for name, (stem, _) in _split_stems(task).items()}
    import datasets

    if source == "disk":
        folder = disk_folder(task, data_dir)
        try:
            copy = datasets.load_from_disk(str(folder))
        except (FileNotFoundError, ValueError, OSError) as err:
            raise ConfigError(f"{folder} is not a readable datasets save_to_disk copy "
                              f"({type(err).__name__}: {err}); save it again with "
                              f"{fetch_command(task, data_dir)}") from None
        where = str(folder)
    else:
        from datasets.packaged_modules.cache.cache import Cache

        builder = Cache(dataset_name=HUB_ID.split("/")[1], repo_id=HUB_ID, config_name=task.name,
                        version="auto", hash="auto", cache_dir=str(_hf_cache_dir()))
        copy, where = builder.as_dataset(), builder.cache_dir
    splits = {}
    for name, (_, hf_split) in _split_stems(task).items():
        if hf_split not in copy:
            raise ConfigError(f"the datasets copy of GLUE {task.folder} in {where} has no "
                              f"{hf_split!r} split (it has {', '.join(copy)}); save it again with "
                              f"{fetch_command(task, data_dir)}")
        splits[name] = from_datasets(task, copy[hf_split], f"{where} [{hf_split}]")
    return splits


def _label_id(task: GlueTask, value: str, where: str) -> int | float:
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: the STS-B score {value!r} is not a number") from None
    if value in task.labels:
        return task.labels.index(value)
    if value.isdigit() and int(value) < task.num_labels:  # the 0/1 tasks spell the index
        return int(value)
    raise ConfigError(f"{where}: label {value!r} is not one of {task.folder}'s labels "
                      f"({', '.join(task.labels)}, or their index)")


def read_tsv(task: GlueTask, path: pathlib.Path) -> GlueSplit:
    """One split from the original distribution's TSV file (see the module docstring)."""
    data = path.read_bytes()
    # utf-8-sig: MRPC's files begin with a byte-order mark, which would otherwise glue
    # itself to the first header name ("\ufeffQuality").
    lines = data.decode("utf-8-sig").splitlines()
    rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    spec = task.tsv
    if spec.header:
        header = next(rows, [])
        missing = [c for c in (*spec.text, spec.label) if c not in header]
        if missing:
            raise ConfigError(f"{path}: no column {', '.join(map(repr, missing))} in its header "
                              f"({', '.join(header[:12])}); is it GLUE's {task.folder} file?")
        text_at = [header.index(c) for c in spec.text]
        label_at = -1 if spec.label_last else header.index(spec.label)
    else:
        text_at, label_at = list(spec.text), spec.label
    needed = max(spec.min_fields, max(text_at) + 1, (label_at + 1) if label_at >= 0 else 1)
    texts: tuple[list[str], ...] = tuple([] for _ in text_at)
    labels, skipped = [], 0
    first = 2 if spec.header else 1
    for number, row in enumerate(rows, start=first):
        if not row:
            continue
        if len(row) < needed:
            if spec.min_fields:  # a known-malformed row of QQP's training file
                skipped += 1
                continue
            raise ConfigError(f"{path}:{number}: {len(row)} tab-separated fields, expected at "
                              f"least {needed}; is it GLUE's {task.folder} file, undamaged?")
        for column, at in zip(texts, text_at):
            column.append(row[at])
        labels.append(_label_id(task, row[label_at], f"{path}:{number}"))
    if not labels:
        raise ConfigError(f"{path} holds no rows; is it GLUE's {task.folder} file, undamaged?")
    dtype = np.float32 if task.is_regression else np.int64
    record = {"source": str(path), "rows": len(labels)}
    if skipped:
        record["skipped_malformed_rows"] = skipped
    return GlueSplit(texts, np.asarray(labels, dtype=dtype), hashlib.sha256(data).hexdigest(), record)


def from_datasets(task: GlueTask, split: Any, where: str) -> GlueSplit:
    """One split from a ``datasets.Dataset`` with GLUE's columns and label numbering."""
    missing = [c for c in (*task.text_fields, "label") if c not in split.column_names]
    if missing:
        raise ConfigError(f"{where}: no column {', '.join(missing)} (it has "
                          f"{', '.join(split.column_names)}); is it GLUE's {task.name}?")
    names = getattr(split.features["label"], "names", None)
    if task.labels is not None and names is not None and tuple(names) != task.labels:
        raise ConfigError(f"{where}: labels {names} differ from GLUE's {list(task.labels)} "
                          f"(in that order); is it nyu-mll/glue's {task.name}?")
    labels = np.asarray(split["label"], dtype=np.float32 if task.is_regression else np.int64)
    if not task.is_regression and len(labels) and (labels.min() < 0 or labels.max() >= task.num_labels):
        raise ConfigError(f"{where}: labels outside 0..{task.num_labels - 1} (-1 marks a test "
                          "split without labels); GLUE's dev sets are labelled")
    texts = tuple(list(split[c]) for c in task.text_fields)
    digest = hashlib.sha256(split._fingerprint.encode()).hexdigest()
    return GlueSplit(texts, labels, digest, {"source": where, "rows": len(labels)})


__all__ = ["GlueSplit", "load_splits", "missing_data", "download", "find_source",
           "read_tsv", "from_datasets", "fetch_command", "tsv_file", "disk_folder"]
