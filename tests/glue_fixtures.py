"""Tiny GLUE data in the real on-disk formats, and tiny pretrained-style models.

* :func:`write_tsv`: a task's files as the original GLUE distribution lays them out
  (``glue/<Task>/train.tsv``, ``dev.tsv`` or MNLI's ``dev_matched.tsv`` /
  ``dev_mismatched.tsv``), with each task's columns and quirks: CoLA's header-less
  train and dev files, MRPC's byte-order mark, MNLI's annotator labels before
  ``gold_label``, QQP's malformed training rows, STS-B's float scores, and a ``"``
  inside a text (the files are not quoted).
* :func:`save_to_disk`: the same rows as a ``datasets`` ``save_to_disk`` copy with
  nyu-mll/glue's column names and ``ClassLabel`` names.
* :func:`tiny_bert` / :func:`tiny_roberta`: a randomly initialised masked-LM of
  each architecture with hidden size 16, saved with ``save_pretrained`` next to its
  tokenizer (BERT: a WordPiece vocabulary of the fixture words; RoBERTa: a
  byte-level BPE trained with ``tokenizers`` on the fixture text).

Rows are a pure function of (task, split, index): both formats of one task hold the
same texts and labels.
"""

from __future__ import annotations

import json
import pathlib
import random

WORDS = ("the a cat dog bird sat ran on under mat box was is not very happy sad good bad "
         "movie film plot actor it this that and but who what why quick slow red blue").split()
# What each task's label column holds, by label id (the 0/1 tasks spell the index).
TSV_LABELS = {"cola": ("0", "1"), "sst2": ("0", "1"), "mrpc": ("0", "1"), "qqp": ("0", "1"),
              "mnli": ("entailment", "neutral", "contradiction"),
              "qnli": ("entailment", "not_entailment"), "rte": ("entailment", "not_entailment")}
SIZES = {"train": 24, "dev": 12}


def sentence(*key: object) -> str:
    rng = random.Random(repr(key))
    words = rng.choices(WORDS, k=rng.randint(3, 12))
    text = " ".join(words).capitalize() + rng.choice((".", "!", "?"))
    if rng.random() < 0.2:
        # A field that begins with a double quote, as many of GLUE's do: the files are not
        # quoted, so a CSV reader that honours quotes would drop both and glue the rest on.
        text = f'"{text}" he said.'

    return text


def label(task: str, split: str, i: int) -> int | float:
    """Row ``i``'s label id (a score in [0, 5] for STS-B); both classes occur in every split."""
    if task == "stsb":
        return round(random.Random(repr((task, split, i))).uniform(0, 5), 3)
    classes = len(TSV_LABELS[task])
    return i % classes


def rows(task: str, split: str) -> list[tuple[list[str], int | float]]:
    """``[(texts, label id)]`` of a split ("train", or a dev split name)."""
    n = SIZES["train" if split == "train" else "dev"]
    texts = 1 if task in ("cola", "sst2") else 2
    return [([sentence(task, split, i, j) for j in range(texts)], label(task, split, i))
            for i in range(n)]


def _tsv_lines(task: str, split: str) -> list[list[str]]:
    """The rows of one file, header included, laid out as GLUE's file for ``task``."""
    out = []
    for i, (texts, y) in enumerate(rows(task, split)):
        spelled = str(y) if task == "stsb" else TSV_LABELS[task][y]
        if task == "cola":
            out.append(["gj04", spelled, "" if y else "*", texts[0]])
        elif task == "sst2":
            out.append([texts[0], spelled])
        elif task == "mrpc":
            out.append([spelled, str(1000 + i), str(2000 + i), *texts])
        elif task == "stsb":
            out.append([str(i), "main-captions", "MSRvid", "2012test", str(i), "none", "none",
                        *texts, spelled])
        elif task == "qqp":
            out.append([str(i), str(2 * i), str(2 * i + 1), *texts, spelled])
        elif task == "mnli":
            # The annotators' labels (not the gold one) come first: the first disagrees.
            other = TSV_LABELS[task][(y + 1) % 3]
            annotators = [other] + [spelled] * (4 if split != "train" else 0)
            out.append([str(i), str(i), f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)",
                        "(ROOT y)", *texts, *annotators, spelled])
        else:  # qnli, rte
            out.append([str(i), *texts, spelled])
    headers = {
        "sst2": ["sentence", "label"],
        "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                 "sentence1", "sentence2", "score"],
        "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        "qnli": ["index", "question", "sentence", "label"],
        "rte": ["index", "sentence1", "sentence2", "label"],
        "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                 "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                 "sentence2", *(["label1"] if split == "train" else
                                [f"label{k}" for k in range(1, 6)]), "gold_label"],
    }
    if task == "qqp" and split == "train":
        out.insert(5, ["363362", "How do I"])  # a malformed row, as the real file has
    return ([headers[task]] if task in headers else []) + out  # CoLA: no header


FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
           "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}


def dev_splits(task: str) -> tuple[str, ...]:
    return ("dev_matched", "dev_mismatched") if task == "mnli" else ("dev",)


def write_tsv(data_dir: pathlib.Path, task: str) -> pathlib.Path:
    """``data_dir/glue/<Task>/*.tsv`` for ``task``; returns the folder."""
    folder = data_dir / "glue" / FOLDERS[task]
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", *dev_splits(task)):
        text = "".join("\t".join(fields) + "\n" for fields in _tsv_lines(task, split))
        bom = "\ufeff" if task == "mrpc" else ""  # MRPC's files start with one
        (folder / f"{split}.tsv").write_text(bom + text, encoding="utf-8")
    return folder


HF_COLUMNS = {"cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
              "stsb": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
              "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
              "rte": ("sentence1", "sentence2")}
HF_LABELS = {"cola": ["unacceptable", "acceptable"], "sst2": ["negative", "positive"],
             "mrpc": ["not_equivalent", "equivalent"], "qqp": ["not_duplicate", "duplicate"],
             "mnli": ["entailment", "neutral", "contradiction"],
             "qnli": ["entailment", "not_entailment"], "rte": ["entailment", "not_entailment"]}


def hf_dataset(task: str, split: str, label_names: list[str] | None = None):
    """One split as nyu-mll/glue's ``datasets.Dataset`` (its columns and label names)."""
    from datasets import ClassLabel, Dataset, Features, Value

    names = label_names or HF_LABELS.get(task)
    label_feature = Value("float32") if task == "stsb" else ClassLabel(names=names)
    columns = HF_COLUMNS[task]
    features = Features({**{c: Value("string") for c in columns}, "label": label_feature,
                         "idx": Value("int32")})
    data = rows(task, split)
    table = {c: [texts[j] for texts, _ in data] for j, c in enumerate(columns)}
    table.update(label=[y for _, y in data], idx=list(range(len(data))))
    return Dataset.from_dict(table, features=features)


def save_to_disk(data_dir: pathlib.Path, task: str) -> pathlib.Path:
    """``data_dir/glue-hf/<task>``: a DatasetDict saved as ``save_to_disk`` writes it."""
    from datasets import DatasetDict

    hf = {"train": "train", "dev": "validation", "dev_matched": "validation_matched",
          "dev_mismatched": "validation_mismatched"}
    folder = data_dir / "glue-hf" / task
    DatasetDict({hf[s]: hf_dataset(task, s) for s in ("train", *dev_splits(task))}
                ).save_to_disk(str(folder))
    return folder


def _corpus() -> list[str]:
    return [sentence("corpus", i) for i in range(200)] + [" ".join(WORDS)]


def tiny_bert(path: pathlib.Path, max_positions: int = 64) -> pathlib.Path:
    """A 1-layer BERT masked LM (hidden 16) with a WordPiece tokenizer of the fixture words."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + sorted(set(WORDS) | {"he", "said"}) + list(".!?\"',")
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)},
                              model_max_length=max_positions)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=max_positions)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_roberta(path: pathlib.Path, max_positions: int = 64) -> pathlib.Path:
    """A 1-layer RoBERTa masked LM (hidden 16) with a byte-level BPE trained on the fixture text."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=320, min_frequency=2, special_tokens=specials,
                            show_progress=False)
    path.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(path))
    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (path / "merges.txt").read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#")]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=max_positions)
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2,
                           max_position_embeddings=max_positions + 2)  # fairseq's offset
    RobertaForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
