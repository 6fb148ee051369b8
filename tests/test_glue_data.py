"""GLUE's pieces on CPU, offline: every task's TSV files with their quirks, the datasets
copies, the metrics against scikit-learn / scipy, the model found offline, the token
cache, the length-grouped batches and the one-line errors."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

import glue_fixtures as gf
from benchmarks.config import ConfigError
from benchmarks.glue import GLUE_TASKS, features, get_glue_task, metrics, missing, prepare
from benchmarks.glue.data import load_splits
from benchmarks.glue.models import load_model

TASKS = tuple(gf.FOLDERS)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> pathlib.Path:
    """DATA with tiny models placed as DATA/models/<id> (the ids the suite names)."""
    data = tmp_path_factory.mktemp("glue-models")
    gf.tiny_roberta(data / "models" / "roberta-base")
    gf.tiny_bert(data / "models" / "bert-base-uncased")
    return data


@pytest.fixture
def data_dir(tmp_path, models_dir) -> pathlib.Path:
    (tmp_path / "models").symlink_to(models_dir / "models")
    return tmp_path


def expected(task: str, split: str):
    """The fixture's rows of a split as (texts per column, labels), the malformed row excluded."""
    rows = gf.rows(task, split)
    columns = tuple(list(col) for col in zip(*(texts for texts, _ in rows)))
    return columns, np.array([y for _, y in rows])


# -- the sources ----------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_every_task_reads_from_the_original_tsv_files_with_their_quirks(tmp_path, task):
    gf.write_tsv(tmp_path, task)
    splits = load_splits(get_glue_task(task), tmp_path)
    assert set(splits) == {"train", *gf.dev_splits(task)}
    for name, split in splits.items():
        texts, labels = expected(task, name)
        assert split.texts == texts          # CoLA's first row is data, not a header; quotes kept
        np.testing.assert_allclose(split.labels, labels, rtol=1e-6)
        assert split.labels.dtype == (np.float32 if task == "stsb" else np.int64)
    assert splits["train"].record.get("skipped_malformed_rows") == (1 if task == "qqp" else None)
    if task == "mrpc":  # the byte-order mark is not part of the first header name
        assert (tmp_path / "glue/MRPC/train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_a_double_quote_inside_a_field_is_text(tmp_path):
    gf.write_tsv(tmp_path, "rte")
    texts = load_splits(get_glue_task("rte"), tmp_path)["train"].texts
    quoted = [t for column in texts for t in column if '"' in t]
    assert quoted and all(t.count('"') == 2 for t in quoted)


@pytest.mark.parametrize("task", ["rte", "stsb", "mnli", "cola"])
def test_a_datasets_save_to_disk_copy_gives_the_same_rows_as_the_tsv_files(tmp_path, task):
    tsv_dir, disk_dir = tmp_path / "tsv", tmp_path / "disk"
    gf.write_tsv(tsv_dir, task)
    gf.save_to_disk(disk_dir, task)
    from_tsv = load_splits(get_glue_task(task), tsv_dir)
    from_disk = load_splits(get_glue_task(task), disk_dir)
    assert set(from_disk) == set(from_tsv)
    for name in from_tsv:
        assert from_disk[name].texts == from_tsv[name].texts
        np.testing.assert_array_equal(from_disk[name].labels, from_tsv[name].labels)
        assert "glue-hf" in from_disk[name].record["source"]


def test_the_datasets_cache_is_read_without_the_hub(tmp_path, monkeypatch):
    """A cache laid out as datasets lays out nyu-mll/glue (<cache>/nyu-mll___glue/rte/<version>/
    <hash>/ with glue-<split>.arrow), written by datasets' own builder, read back by its
    cache reader: no TSV files, no save_to_disk copy, no network."""
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    files = {}
    for split, hf in (("train", "train"), ("dev", "validation")):
        files[hf] = str(tmp_path / f"{hf}.parquet")
        gf.hf_dataset("rte", split).to_parquet(files[hf])
    builder = Parquet(cache_dir=str(tmp_path / "build"), dataset_name="glue", config_name="rte",
                      data_files=files, features=gf.hf_dataset("rte", "dev").features)
    builder.download_and_prepare()
    cache = tmp_path / "hf-cache"
    target = cache / "nyu-mll___glue" / "rte" / "1.0.0" / "0123abcd"
    shutil.copytree(builder.cache_dir, target)
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "config_name": "rte"}))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    splits = load_splits(get_glue_task("rte"), tmp_path / "empty")
    texts, labels = expected("rte", "dev")
    assert splits["dev"].texts == texts
    np.testing.assert_array_equal(splits["dev"].labels, labels)


def test_a_datasets_copy_with_other_label_names_is_refused(tmp_path):
    from datasets import DatasetDict

    folder = tmp_path / "glue-hf" / "rte"
    DatasetDict({"train": gf.hf_dataset("rte", "train", ["not_entailment", "entailment"]),
                 "validation": gf.hf_dataset("rte", "dev", ["not_entailment", "entailment"])}
                ).save_to_disk(str(folder))
    with pytest.raises(ConfigError, match="differ from GLUE's"):
        load_splits(get_glue_task("rte"), tmp_path)


# -- the one-line errors ---------------------------------------------------------------

def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_an_unknown_glue_task_names_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        get_glue_task("wnli")
    assert "rte" in one_line(err) and "sst2" in one_line(err)
    assert get_glue_task("SST-2") is GLUE_TASKS["sst2"] is get_glue_task("sst2")
    assert get_glue_task("STS-B") is GLUE_TASKS["stsb"]


def test_missing_data_and_missing_model_say_what_and_how_to_fetch(data_dir, tmp_path):
    message = missing("rte", "roberta-base", data_dir)
    assert str(data_dir / "glue" / "RTE") in message and "load_dataset('nyu-mll/glue', 'rte')" in message
    with pytest.raises(ConfigError) as err:
        prepare("rte", "roberta-base", data_dir, 32)
    assert one_line(err) == message
    gf.write_tsv(data_dir, "rte")
    assert missing("rte", "roberta-base", data_dir) is None
    message = missing("rte", "roberta-large", data_dir)
    assert "hf download FacebookAI/roberta-large" not in message  # only the named ids are mapped
    assert "hf download roberta-large --local-dir" in message
    with pytest.raises(ConfigError) as err:
        prepare("rte", "bert-large-cased", data_dir, 32)
    assert "'bert-large-cased' not found" in one_line(err) and "hf download" in one_line(err)


def test_a_head_that_does_not_fit_the_task_is_refused(data_dir):
    from transformers import AutoModelForSequenceClassification

    gf.write_tsv(data_dir, "rte")
    mnli_model = data_dir / "roberta-mnli"
    AutoModelForSequenceClassification.from_pretrained(
        str(data_dir / "models" / "roberta-base"), num_labels=3).save_pretrained(mnli_model)
    shutil.copy(data_dir / "models" / "roberta-base" / "tokenizer.json", mnli_model)
    shutil.copy(data_dir / "models" / "roberta-base" / "tokenizer_config.json", mnli_model)
    with pytest.raises(ConfigError) as err:
        prepare("rte", str(mnli_model), data_dir, 32)
    assert "head with 3 outputs, but GLUE RTE needs 2" in one_line(err)


def test_a_sequence_length_above_the_models_maximum_is_refused(data_dir):
    gf.write_tsv(data_dir, "rte")
    for model, limit in (("roberta-base", 64), ("bert-base-uncased", 64)):
        with pytest.raises(ConfigError) as err:
            prepare("rte", model, data_dir, limit + 1)
        assert f"maximum sequence length {limit}" in one_line(err)
        prepare("rte", model, data_dir, limit)


def test_roberta_positions_exclude_the_padding_offset(data_dir):
    """RoBERTa's 514 position embeddings take 512 tokens: the offset is subtracted."""
    from transformers import AutoConfig

    from benchmarks.glue.models import max_sequence_length

    config = AutoConfig.from_pretrained(str(data_dir / "models" / "roberta-base"))
    assert config.max_position_embeddings == 66
    assert max_sequence_length(config, tokenizer=None) == 64


# -- metrics ---------------------------------------------------------------------------

LABELS = np.array([1, 1, 0, 0, 1, 0, 1, 1])
PREDS = np.array([1, 0, 0, 1, 1, 0, 1, 0])


def test_classification_metrics_match_scikit_learn_and_hand_counts():
    # tp = 3, tn = 2, fp = 1, fn = 2
    assert metrics.accuracy(LABELS, PREDS) == pytest.approx(100 * 5 / 8)
    assert metrics.f1(LABELS, PREDS) == pytest.approx(100 * 2 * 3 / (2 * 3 + 1 + 2))
    mcc = (3 * 2 - 1 * 2) / np.sqrt((3 + 1) * (3 + 2) * (2 + 1) * (2 + 2))
    assert metrics.mcc(LABELS, PREDS) == pytest.approx(100 * mcc)
    assert metrics.mcc(LABELS, PREDS) == pytest.approx(100 * skm.matthews_corrcoef(LABELS, PREDS))
    assert metrics.f1(LABELS, PREDS) == pytest.approx(100 * skm.f1_score(LABELS, PREDS))
    assert metrics.mcc(LABELS, np.ones_like(LABELS)) == 0.0


def test_correlations_match_scipy_and_hand_computation():
    labels = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    scores = np.array([0.5, 0.7, 3.0, 2.9, 4.8])
    centred_l, centred_s = labels - labels.mean(), scores - scores.mean()
    pearson = (centred_l @ centred_s) / np.sqrt((centred_l @ centred_l) * (centred_s @ centred_s))
    assert metrics.pearson(labels, scores) == pytest.approx(100 * pearson)
    # ranks of scores: 1 2 4 3 5 against 1 2 3 4 5: d^2 sums to 2; rho = 1 - 6*2 / (5*24)
    assert metrics.spearman(labels, scores) == pytest.approx(100 * (1 - 12 / 120))
    assert metrics.spearman(labels, scores) == pytest.approx(100 * stats.spearmanr(labels, scores)[0])
    assert metrics.pearson(labels, np.full(5, 2.0)) == 0.0  # constant: no correlation, no NaN


def test_task_metrics_score_is_glues_average_of_the_pair():
    logits = np.eye(2)[PREDS] * 3.0
    mrpc = metrics.task_metrics(GLUE_TASKS["mrpc"], {"dev": (LABELS, logits)})
    assert list(mrpc) == ["f1", "acc", "score"]
    assert mrpc["score"] == pytest.approx((mrpc["f1"] + mrpc["acc"]) / 2)
    cola = metrics.task_metrics(GLUE_TASKS["cola"], {"dev": (LABELS, logits)})
    assert cola == {"mcc": pytest.approx(metrics.mcc(LABELS, PREDS)),
                    "score": pytest.approx(metrics.mcc(LABELS, PREDS))}
    stsb = metrics.task_metrics(GLUE_TASKS["stsb"], {"dev": (np.arange(5.0), np.arange(5.0)[:, None])})
    assert stsb == {"pearson": pytest.approx(100), "spearman": pytest.approx(100),
                    "score": pytest.approx(100)}
    three = np.eye(3)
    mnli = metrics.task_metrics(GLUE_TASKS["mnli"], {
        "dev_matched": (np.array([0, 1, 2, 0]), three[[0, 1, 2, 1]]),       # 3 of 4
        "dev_mismatched": (np.array([0, 1, 2, 2]), three[[0, 0, 0, 2]])})   # 2 of 4
    assert mnli == {"acc_m": 75.0, "acc_mm": 50.0, "score": 62.5}
    for task in GLUE_TASKS.values():
        assert task.primary == "score" == task.metrics[-1].name
    with pytest.raises(ValueError, match="dev_mismatched"):
        metrics.task_metrics(GLUE_TASKS["mnli"], {"dev_matched": (LABELS, logits)})


# -- tokens, cache, batches ------------------------------------------------------------

@pytest.mark.parametrize("model", ["roberta-base", "bert-base-uncased"])
def test_tokenised_splits_are_cached_per_model_task_and_length(data_dir, model):
    gf.write_tsv(data_dir, "mrpc")
    first = prepare("mrpc", model, data_dir, 32)
    assert first.record["glue"]["tokenized_from_cache"] == {"train": False, "dev": False}
    again = prepare("mrpc", model, data_dir, 32)
    assert again.record["glue"]["tokenized_from_cache"] == {"train": True, "dev": True}
    for a, b in ((first.train, again.train), (first.dev, again.dev)):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.offsets, b.offsets)
        assert torch.equal(a.labels, b.labels)
    assert (first.train.token_type_ids is not None) == (model == "bert-base-uncased")
    assert int(first.train.lengths.max()) <= 32
    shorter = prepare("mrpc", model, data_dir, 16)  # another length: tokenised anew, truncated
    assert shorter.record["glue"]["tokenized_from_cache"]["train"] is False
    assert int(shorter.train.lengths.max()) == 16
    # A damaged cache file is derived data: tokenised again and replaced.
    cached = sorted((data_dir / features.CACHE_ROOT / model).glob("mrpc-train-len32-*.pt"))
    assert len(cached) == 1
    cached[0].write_bytes(b"damaged")
    repaired = prepare("mrpc", model, data_dir, 32)
    assert repaired.record["glue"]["tokenized_from_cache"]["train"] is False
    assert torch.equal(repaired.train.input_ids, first.train.input_ids)


def test_a_changed_tokenizer_is_never_served_stale_ids(data_dir, tmp_path):
    gf.write_tsv(data_dir, "rte")
    copy = tmp_path / "my-bert"
    shutil.copytree(data_dir / "models" / "bert-base-uncased", copy)
    before = prepare("rte", str(copy), data_dir, 32)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    (copy / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    after = prepare("rte", str(copy), data_dir, 32)
    assert after.record["glue"]["tokenized_from_cache"]["train"] is False
    assert not torch.equal(before.train.input_ids, after.train.input_ids)


def lengths_of(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 120, (n,), generator=torch.Generator().manual_seed(seed))


def test_length_grouped_batches_are_a_pure_function_of_seed_and_epoch():
    lengths = lengths_of(1000)
    batches = features.length_grouped_batches(lengths, 16, seed=7, epoch=3)
    assert batches == features.length_grouped_batches(lengths, 16, seed=7, epoch=3)
    assert batches != features.length_grouped_batches(lengths, 16, seed=7, epoch=4)
    assert batches != features.length_grouped_batches(lengths, 16, seed=8, epoch=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))  # each row once
    assert len(batches) == -(-1000 // 16)
    assert int(lengths.max()) in lengths[batches[0]].tolist()  # the longest batch first


def test_length_grouping_pads_far_less_than_random_batches():
    lengths = lengths_of(2000)

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    grouped = features.length_grouped_batches(lengths, 32, seed=0, epoch=0)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    random_batches = [b.tolist() for b in order.split(32)]
    assert padding(grouped) < 0.2 * padding(random_batches)


def test_evaluation_batches_cover_every_row_longest_first():
    lengths = lengths_of(50)
    batches = features.evaluation_batches(lengths, 8)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(50))
    assert lengths[flat].tolist() == sorted(lengths.tolist(), reverse=True)


def test_dynamic_padding_keeps_every_token_and_masks_the_rest(data_dir):
    gf.write_tsv(data_dir, "rte")
    glue = prepare("rte", "bert-base-uncased", data_dir, 32)
    rows = [0, 5, 9]
    batch = glue.collate(glue.train, rows)
    width = batch["input_ids"].shape[1]
    longest = int(glue.train.lengths[rows].max())
    assert width % features.PAD_MULTIPLE == 0 and longest <= width <= 32
    for r, i in enumerate(rows):
        start, stop = glue.train.offsets[i], glue.train.offsets[i + 1]
        n = int(stop - start)
        assert batch["input_ids"][r, :n].tolist() == glue.train.input_ids[start:stop].tolist()
        assert batch["input_ids"][r, n:].eq(glue.pad_id).all()
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (width - n)
        assert batch["token_type_ids"][r, :n].tolist() == glue.train.token_type_ids[start:stop].tolist()
    assert batch["labels"].tolist() == glue.train.labels[rows].tolist()


# -- the model -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["roberta-base", "bert-base-uncased"])
@pytest.mark.parametrize("task", ["rte", "stsb", "mnli"])
def test_the_classifier_fits_the_task_and_its_new_head_follows_the_seed(data_dir, model, task):
    gf.write_tsv(data_dir, task)
    glue = prepare(task, model, data_dir, 32)
    heads = []
    for _ in range(2):
        torch.manual_seed(123)
        loaded = load_model(glue.model_path, glue.task)
        heads.append({k: v.clone() for k, v in loaded.model.state_dict().items() if "classifier" in k})
    assert loaded.new_weights and all("classifier" in k or "pooler" in k for k in loaded.new_weights)
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    out = loaded.model(**glue.collate(glue.train, glue.train_batches(4, 0, 0)[0]))
    assert out.logits.shape == (4, GLUE_TASKS[task].num_labels)
    assert torch.isfinite(out.loss)
    if task == "stsb":
        assert loaded.model.config.problem_type == "regression"


def test_models_resolve_offline_from_the_hub_cache_under_their_canonical_id(data_dir, tmp_path,
                                                                             monkeypatch):
    """roberta-base downloaded by its canonical id (FacebookAI/roberta-base) sits in the hub
    cache as models--FacebookAI--roberta-base; it is found there, with every connection
    refused, and a model in no cache is reported, not fetched."""
    import socket

    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cache = tmp_path / "hub"
    snapshot = cache / "models--FacebookAI--roberta-base" / "snapshots" / "0123456789abcdef"
    shutil.copytree(data_dir / "models" / "roberta-base", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    elsewhere = tmp_path / "data"
    gf.write_tsv(elsewhere, "rte")
    assert prepare("rte", "roberta-base", elsewhere, 32).model_path == snapshot
    with pytest.raises(ConfigError, match="'bert-base-uncased' not found"):
        prepare("rte", "bert-base-uncased", elsewhere, 32)


# -- the loss and the evaluation ---------------------------------------------------------

def glue_and_model(data_dir: pathlib.Path, task: str, model: str):
    """The task's fixture files prepared for ``model``, and the classifier (seed 0)."""
    gf.write_tsv(data_dir, task)
    glue = prepare(task, model, data_dir, 32)
    torch.manual_seed(0)
    return glue, load_model(glue.model_path, glue.task).model


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_training_loss_and_sums_match_a_direct_computation(data_dir, task):
    from benchmarks.glue.steps import training_loss

    glue, model = glue_and_model(data_dir, task, "roberta-base")
    model.eval()  # no dropout: the two computations must agree
    batch = glue.collate(glue.train, list(range(6)))
    loss, sums, weight = training_loss(glue.task, model, batch)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    if task == "stsb":
        direct = ((logits.squeeze(-1) - batch["labels"]) ** 2).mean()
        assert set(sums) == {"loss"}
    else:
        direct = torch.nn.functional.cross_entropy(logits, batch["labels"])
        correct = (logits.argmax(-1) == batch["labels"]).sum()
        assert int(sums["correct"]) == int(correct)
    assert float(loss.detach()) == pytest.approx(float(direct.detach()), rel=1e-5)
    assert weight == 6 and float(sums["loss"]) == pytest.approx(6 * float(direct.detach()), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.classifier.parameters())


@pytest.mark.parametrize("task", ["mnli", "mrpc", "stsb"])
def test_evaluation_scores_each_dev_set_on_its_own_rows(data_dir, task):
    from benchmarks.glue.steps import evaluate

    glue, model = glue_and_model(data_dir, task, "bert-base-uncased")
    model.eval()
    result = evaluate(glue.task, model, (glue.collate(glue.dev, b) for b in glue.dev_batches(5)))
    per_split, losses = {}, []
    with torch.no_grad():
        for i, name in enumerate(gf.dev_splits(task)):  # one batch per dev set, in file order
            rows = torch.nonzero(glue.dev.split == i).squeeze(1).tolist()
            batch = glue.collate(glue.dev, rows)
            logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "split")}).logits
            per_split[name] = (np.array([y for _, y in gf.rows(task, name)]), logits.numpy())
            losses.append(torch.nn.functional.mse_loss(logits.squeeze(-1), batch["labels"], reduction="sum")
                          if task == "stsb" else
                          torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
    direct = metrics.task_metrics(glue.task, per_split)
    assert set(result) == set(direct) | {"loss"}
    for name, value in direct.items():
        # 0.01 points: a random head's STS-B outputs are nearly constant (spread ~1e-6),
        # so the rounding of other batch shapes (~1e-9) moves its correlations by ~0.002.
        assert result[name] == pytest.approx(value, abs=0.01)
    assert result["loss"] == pytest.approx(float(sum(losses)) / len(glue.dev), rel=1e-5)


def test_download_is_asked_for_only_what_is_missing_and_a_failure_is_one_line(data_dir, monkeypatch):
    import socket

    import datasets

    def no_network(*args, **kwargs):
        raise ConnectionError("no network here")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(ConfigError) as err:
        prepare("rte", "roberta-base", data_dir, 32, download=True)
    assert "GLUE RTE --download failed (ConnectionError: no network here)" in one_line(err)
    assert "save_to_disk" in one_line(err)
    gf.write_tsv(data_dir, "rte")  # present: --download fetches nothing
    assert prepare("rte", "roberta-base", data_dir, 32, download=True).train is not None
    with pytest.raises(ConfigError) as err:
        prepare("rte", "roberta-large", data_dir, 32, download=True)
    assert "model 'roberta-large' --download failed" in one_line(err)
    assert "hf download roberta-large --local-dir" in one_line(err)


def test_a_read_only_data_dir_only_means_tokenising_every_time(data_dir, monkeypatch):
    """A write that fails as on a read-only folder (EROFS) is no error: the ids are
    tokenised again the next time. (Simulated: the tests may run as root.)"""
    import errno

    from benchmarks.rundir import WriteFailed

    def read_only(path, data):
        raise WriteFailed(path, OSError(errno.EROFS, "Read-only file system"))

    monkeypatch.setattr(features, "atomic_write_bytes", read_only)
    gf.write_tsv(data_dir, "rte")
    for _ in range(2):
        glue = prepare("rte", "roberta-base", data_dir, 32)
        assert glue.record["glue"]["tokenized_from_cache"] == {"train": False, "dev": False}
        assert len(glue.train) == gf.SIZES["train"]
