"""GLUE's dev-set metrics, computed here with scikit-learn and scipy (nothing fetched).

Every value is in percent (x 100), as GLUE and the papers print them. Degenerate
inputs give the value the definitions give, never NaN: a constant prediction has
MCC 0 (scikit-learn's convention) and correlation 0 (a constant has none).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from .spec import GlueTask


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return 100.0 * float(skm.accuracy_score(labels, predictions))


def f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """F1 of the positive class (label 1: MRPC's "equivalent", QQP's "duplicate")."""
    return 100.0 * float(skm.f1_score(labels, predictions, pos_label=1, zero_division=0.0))


def mcc(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Matthews correlation (CoLA); 0 when either vector is constant."""
    return 100.0 * float(skm.matthews_corrcoef(labels, predictions))


def _correlation(fn, labels: np.ndarray, predictions: np.ndarray) -> float:
    if np.ptp(labels) == 0 or np.ptp(predictions) == 0:
        return 0.0  # scipy would warn and return NaN: a constant has no correlation
    return 100.0 * float(fn(predictions, labels).statistic)


def pearson(labels: np.ndarray, predictions: np.ndarray) -> float:
    return _correlation(stats.pearsonr, labels, predictions)


def spearman(labels: np.ndarray, predictions: np.ndarray) -> float:
    return _correlation(stats.spearmanr, labels, predictions)


def split_metrics(task: GlueTask, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """The task's metrics on one dev split, from the labels and the model's outputs
    (logits (N, C) for a classification task, scores (N,) or (N, 1) for STS-B)."""
    labels = np.asarray(labels)
    outputs = np.asarray(outputs, dtype=np.float64)
    if task.is_regression:
        scores = outputs.reshape(len(outputs))
        return {"pearson": pearson(labels, scores), "spearman": spearman(labels, scores)}
    predictions = outputs.argmax(axis=-1)
    if task.name == "cola":
        return {"mcc": mcc(labels, predictions)}
    if task.name in ("mrpc", "qqp"):
        return {"acc": accuracy(labels, predictions), "f1": f1(labels, predictions)}
    return {"acc": accuracy(labels, predictions)}


def task_metrics(task: GlueTask, per_split: dict[str, tuple[np.ndarray, np.ndarray]]
                 ) -> dict[str, float]:
    """All of the task's metrics from ``{dev split: (labels, outputs)}``: its own one or
    two, then ``score``, GLUE's per-task score (the metric, or the average of the pair).
    MNLI's two dev sets give ``acc_m`` (matched) and ``acc_mm`` (mismatched)."""
    missing = set(task.dev_splits) - set(per_split)
    if missing:
        raise ValueError(f"{task.name}: no outputs for dev split(s) {sorted(missing)}")
    if task.name == "mnli":
        values = {"acc_m": split_metrics(task, *per_split["dev_matched"])["acc"],
                  "acc_mm": split_metrics(task, *per_split["dev_mismatched"])["acc"]}
    else:
        (split,) = task.dev_splits
        values = split_metrics(task, *per_split[split])
    own = [m.name for m in task.metrics if m.name != "score"]
    values["score"] = sum(values[name] for name in own) / len(own)
    return {m.name: values[m.name] for m in task.metrics}
