"""The eight GLUE tasks: where their text and labels are, and how each is scored.

One :class:`GlueTask` per task holds everything that differs between them: the
folder of the original distribution and the ``datasets`` config name, the text
columns in either source, the label names (in the order ``datasets`` numbers
them, so that both sources give the same label ids), the dev split(s), and the
metrics with the primary one. WNLI is left out, as in the RoBERTa and BERT
papers' dev tables (its dev set is adversarial to the train set).

Scores are in percent, as GLUE and the papers print them (MCC and the
correlations x 100). Every task's primary metric is ``score``, GLUE's per-task
score: the task's metric, or the unweighted average of the two where GLUE lists
two (MRPC's F1 and accuracy, QQP's accuracy and F1, STS-B's Pearson and Spearman,
MNLI's matched and mismatched accuracy). One primary name for all eight lets one
table rank and average them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError


@dataclass(frozen=True)
class Metric:
    """A named dev-set metric: ``format`` prints it (percent, one decimal)."""

    name: str
    title: str
    higher_is_better: bool = True
    format: str = "{:.1f}"


@dataclass(frozen=True)
class TsvColumns:
    """Where a row's fields are in the original distribution's TSV files.

    ``text``: the one or two text columns and ``label`` the label column, by header
    name, or by position in header-less files (``header=False``: CoLA's train and dev).
    ``min_fields``: rows with fewer tab-separated fields are malformed and skipped
    (a few QQP training rows lack their questions). ``label_last``: the label is read
    as the row's last field, as the reference readers (transformers' GLUE processors,
    fairseq) read MNLI, STS-B, QNLI and RTE; MNLI's dev rows, for one, hold five
    annotator labels before the gold one.
    """

    text: tuple[str | int, ...]
    label: str | int
    header: bool = True
    min_fields: int = 0
    label_last: bool = False


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task.

    ``labels``: the class names in ``datasets``' order (its ``ClassLabel``); the TSV
    files spell them (or give their index, for the 0/1 tasks); ``None`` for STS-B's
    regression target (a similarity score in [0, 5]). ``dev``: (split name, TSV file
    stem, ``datasets`` split), one entry per dev set; MNLI has two, matched and
    mismatched. ``metrics``: the task's own one or two metrics, then ``score``.
    """

    name: str                      # the datasets config name, and the --dataset value
    folder: str                    # the original distribution's folder: glue/<folder>/
    text_fields: tuple[str, ...]   # the datasets column names of the one or two texts
    tsv: TsvColumns
    labels: tuple[str, ...] | None
    metrics: tuple[Metric, ...]
    dev: tuple[tuple[str, str, str], ...] = (("dev", "dev", "validation"),)

    primary = "score"

    @property
    def num_labels(self) -> int:
        """Outputs of the model's head: one for the regression task."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.dev)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


ACC = Metric("acc", "accuracy")
F1 = Metric("f1", "F1")
SCORE = Metric("score", "GLUE score (the metric, or the average of the pair)")

GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in (
    # CoLA's train.tsv and dev.tsv have no header: source, label, the author's mark, sentence.
    GlueTask("cola", "CoLA", ("sentence",), TsvColumns((3,), 1, header=False),
             ("unacceptable", "acceptable"), (Metric("mcc", "Matthews corr."), SCORE)),
    GlueTask("sst2", "SST-2", ("sentence",), TsvColumns(("sentence",), "label"),
             ("negative", "positive"), (ACC, SCORE)),
    GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"),
             TsvColumns(("#1 String", "#2 String"), "Quality"),
             ("not_equivalent", "equivalent"), (F1, ACC, SCORE)),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"),
             TsvColumns(("sentence1", "sentence2"), "score", label_last=True), None,
             (Metric("pearson", "Pearson corr."), Metric("spearman", "Spearman corr."), SCORE)),
    GlueTask("qqp", "QQP", ("question1", "question2"),
             TsvColumns(("question1", "question2"), "is_duplicate", min_fields=6),
             ("not_duplicate", "duplicate"), (ACC, F1, SCORE)),
    GlueTask("mnli", "MNLI", ("premise", "hypothesis"),
             TsvColumns(("sentence1", "sentence2"), "gold_label", label_last=True),
             ("entailment", "neutral", "contradiction"),
             (Metric("acc_m", "matched accuracy"), Metric("acc_mm", "mismatched accuracy"), SCORE),
             dev=(("dev_matched", "dev_matched", "validation_matched"),
                  ("dev_mismatched", "dev_mismatched", "validation_mismatched"))),
    GlueTask("qnli", "QNLI", ("question", "sentence"),
             TsvColumns(("question", "sentence"), "label", label_last=True),
             ("entailment", "not_entailment"), (ACC, SCORE)),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"),
             TsvColumns(("sentence1", "sentence2"), "label", label_last=True),
             ("entailment", "not_entailment"), (ACC, SCORE)),
)}

# What users type for a task: the datasets config name, or the distribution's folder name.
_ALIASES = {name.replace("-", "").lower(): name for name in GLUE_TASKS} | {
    t.folder.replace("-", "").lower(): t.name for t in GLUE_TASKS.values()}


def get_glue_task(name: str) -> GlueTask:
    """The task called ``name`` ("rte", "RTE", "SST-2", "sst2", ...); ConfigError otherwise."""
    key = _ALIASES.get(name.replace("-", "").replace("_", "").lower())
    if key is None:
        raise ConfigError(f"unknown GLUE task {name!r}; the GLUE tasks are: "
                          f"{', '.join(GLUE_TASKS)} (WNLI is not supported)")
    return GLUE_TASKS[key]
