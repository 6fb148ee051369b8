"""The pretrained Transformer and its tokenizer, found offline.

``--model`` is a Hugging Face model id (``roberta-base``, the default, or
``bert-base-uncased``) or a local directory written by ``save_pretrained``. An id
is looked for, in order, in ``DATA/models/<id>/`` (a copy placed next to the data,
e.g. with ``hf download <id> --local-dir DATA/models/<id>``) and in the Hugging Face
hub cache (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``) with
``local_files_only``: nothing is fetched unless ``--download`` is given, which
saves the id into ``DATA/models/<id>/``.

The model gets a sequence-classification head sized for the task (one output for
STS-B's regression), newly initialised from the torch RNG the caller seeded. A
checkpoint that already has such a head keeps it only if its size fits the task;
otherwise the error says so (start from the pretrained model, not one fine-tuned
on another task).
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from .spec import GlueTask

MODELS_ROOT = "models"  # DATA/models/<id>/
# The ids the suite names (their canonical Hub ids): what --download fetches and what
# the cache is searched under, besides the short name.
HUB_IDS = {"roberta-base": "FacebookAI/roberta-base",
           "bert-base-uncased": "google-bert/bert-base-uncased"}
# What --download fetches: the config, the tokenizer and the safetensors weights.
FILES = ["config.json", "*.safetensors", "tokenizer*", "vocab*", "merges.txt",
         "special_tokens_map.json"]
# Architectures whose position ids start after the padding index (fairseq's layout):
# of max_position_embeddings (514 for roberta-base), pad_token_id + 1 are never a position.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt")


def _is_model_dir(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file()


def _hub_cache() -> pathlib.Path:
    from huggingface_hub import constants

    return pathlib.Path(constants.HF_HUB_CACHE)


def fetch_command(name: str, data_dir: pathlib.Path) -> str:
    return f"hf download {HUB_IDS.get(name, name)} --local-dir {data_dir / MODELS_ROOT / name}"


def find_model(name: str, data_dir: pathlib.Path) -> pathlib.Path | None:
    """The directory holding model ``name`` on this machine (see the module docstring), or None."""
    for path in (pathlib.Path(name).expanduser(), data_dir / MODELS_ROOT / name):
        if _is_model_dir(path):
            return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    for repo in dict.fromkeys((name, HUB_IDS.get(name, name))):
        try:
            snapshot = pathlib.Path(snapshot_download(repo, local_files_only=True))
        except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
            continue
        if _is_model_dir(snapshot):
            return snapshot
    return None


def missing_model(name: str, data_dir: pathlib.Path) -> str | None:
    """One line naming where model ``name`` was looked for and how to get it; None if found."""
    if find_model(name, data_dir) is not None:
        return None
    return (f"model {name!r} not found: not a directory with config.json, not in "
            f"{data_dir / MODELS_ROOT / name}, not in the Hugging Face cache {_hub_cache()}; on a "
            f"machine with internet run {fetch_command(name, data_dir)} and copy that folder here "
            "(or pass --download where there is internet)")


def resolve_model(name: str, data_dir: pathlib.Path, download: bool = False) -> pathlib.Path:
    """The directory of model ``name``; with ``download``, fetched into ``DATA/models/<name>``
    when it is nowhere on this machine. ConfigError (one line) when missing."""
    found = find_model(name, data_dir)
    if found is not None:
        return found
    if not download:
        raise ConfigError(missing_model(name, data_dir))
    from huggingface_hub import snapshot_download

    placed = data_dir / MODELS_ROOT / name
    try:
        snapshot_download(HUB_IDS.get(name, name), local_dir=placed, allow_patterns=FILES)
    except Exception as err:  # noqa: BLE001 - no network, an unknown id: one line
        raise ConfigError(f"model {name!r} --download failed ({type(err).__name__}); run "
                          f"{fetch_command(name, data_dir)} where there is internet") from None
    return placed


def tokenizer_digest(path: pathlib.Path) -> str:
    """sha256 over the tokenizer's files: keys the tokenised cache, so that a changed
    vocabulary under the same model name never reuses stale token ids."""
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        file = path / name
        if file.is_file():
            h.update(name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def load_tokenizer(path: pathlib.Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"no usable tokenizer in {path} ({type(err).__name__}: "
                          f"{str(err).splitlines()[0]})") from None


def max_sequence_length(config: Any, tokenizer: Any) -> int:
    """The longest input the model takes: its position embeddings (less RoBERTa's
    offset), and the tokenizer's own limit where it states one."""
    limit = config.max_position_embeddings
    if config.model_type in OFFSET_POSITIONS:
        limit -= config.pad_token_id + 1
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < 1_000_000:  # "no limit" is a huge sentinel
        limit = min(limit, stated)
    return limit


def check_fit(config: Any, tokenizer: Any, task: GlueTask, max_length: int, name: str) -> None:
    """The one-line errors for a model that cannot serve the task at that length."""
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if heads and config.num_labels != task.num_labels:
        raise ConfigError(f"model {name!r} has a sequence-classification head with "
                          f"{config.num_labels} outputs, but GLUE {task.folder} needs "
                          f"{task.num_labels}; start from the pretrained model (e.g. roberta-base), "
                          "not one fine-tuned on another task")
    limit = max_sequence_length(config, tokenizer)
    if max_length > limit:
        raise ConfigError(f"--max-length={max_length} exceeds model {name!r}'s maximum sequence "
                          f"length {limit}; use --max-length <= {limit}")
    if max_length < 8:
        raise ConfigError(f"--max-length={max_length}: must be >= 8 (two texts and the special tokens)")


@dataclass
class LoadedModel:
    model: Any                # a transformers *ForSequenceClassification, in train mode
    new_weights: list[str]    # the parameters initialised here (the head), for the run record


def load_model(path: pathlib.Path, task: GlueTask) -> LoadedModel:
    """The classifier for ``task`` from the pretrained weights in ``path`` (checked by
    :func:`check_fit` first). The new head is drawn from the global torch RNG: seed it
    first (the cell's init seed)."""
    from transformers import AutoModelForSequenceClassification

    problem = "regression" if task.is_regression else "single_label_classification"
    labels = {} if task.labels is None else {
        "id2label": dict(enumerate(task.labels)), "label2id": {n: i for i, n in enumerate(task.labels)}}
    from transformers.utils import logging as hf_logging

    # The "newly initialised" notice is recorded instead (new_weights); the per-tensor
    # progress bar would only clutter a Slurm log.
    transformers_log, bar = logging.getLogger("transformers"), hf_logging.is_progress_bar_enabled()
    level = transformers_log.level
    transformers_log.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, num_labels=task.num_labels, problem_type=problem,
            output_loading_info=True, **labels)
    except ValueError as err:  # an architecture with no sequence-classification model
        raise ConfigError(f"the model in {path} cannot classify sequences: "
                          f"{str(err).splitlines()[0]}") from None
    finally:
        transformers_log.setLevel(level)
        if bar:
            hf_logging.enable_progress_bar()
    model.train()
    return LoadedModel(model, sorted(info.get("missing_keys", [])))
