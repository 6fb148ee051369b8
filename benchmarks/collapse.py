"""Collapsed runs: training that has stopped learning at, or above, the loss of a blind guess.

A classifier that predicts the uniform distribution over C classes has cross-entropy
ln C whatever the labels (label smoothing included). A network whose last hidden
units have all died (docs/collapse.md: on digits, a BatchNorm shift driven negative
in the first steps silences every ReLU behind it) outputs its bias alone and sits at
that level for the rest of the run, with no error: its gradients are zero, not NaN.

The rule, applied by the engine to the mean training loss of each epoch (a number it
already reads once per epoch; nothing is added to the step):

* an epoch is *stuck* when its training loss is no better than a uniform guess,
  ``loss >= (1 - TOLERANCE) * ln C``, and does not improve on the stuck epochs before
  it, ``loss >= (1 - TOLERANCE) * lowest``. A stuck epoch that does improve (a run
  coming down from a blow-up far above ln C) starts a new streak;
* a run has *collapsed* once ``PATIENCE`` consecutive epochs are stuck. An epoch below
  ``(1 - TOLERANCE) * ln C`` ends the streak: the run learns again.

On the digits runs of issue #19 the collapsed runs sat at 2.301-2.312 (ln 10 = 2.303)
from their second epoch on; healthy runs at 60% label noise leave 2.28 within a few
epochs. Tasks whose outputs are not a distribution over at least two classes are
never judged.
"""

from __future__ import annotations

import math
from typing import Any

PATIENCE = 5  # consecutive stuck epochs
TOLERANCE = 0.01  # relative: 1% below ln C still counts as "no better than a guess"

RULE = (f"training loss >= {1 - TOLERANCE:g} * ln(num_classes) and not {TOLERANCE:.0%} below "
        f"the lowest loss of the streak, for {PATIENCE} consecutive epochs")


def uniform_loss(num_classes: int) -> float:
    """The cross-entropy of predicting every class with probability 1 / num_classes."""
    return math.log(num_classes)


def judged(num_classes: int | None) -> bool:
    return num_classes is not None and num_classes >= 2


def update(streak: dict[str, Any] | None, epoch: int, loss: float, num_classes: int
           ) -> dict[str, Any] | None:
    """The stuck streak after ``epoch`` (1-based) trained with mean training loss ``loss``.

    ``streak``: ``None`` (the last epoch was not stuck) or ``{"since": first epoch,
    "epochs": length, "lowest": lowest loss in it}``; plain values, so that it rides
    in the checkpoint.
    """
    if not judged(num_classes) or loss < (1 - TOLERANCE) * uniform_loss(num_classes):
        return None
    if streak is None or loss < (1 - TOLERANCE) * streak["lowest"]:
        return {"since": epoch, "epochs": 1, "lowest": loss}
    return {"since": streak["since"], "epochs": streak["epochs"] + 1,
            "lowest": min(streak["lowest"], loss)}


def verdict(streak: dict[str, Any] | None, num_classes: int) -> dict[str, Any] | None:
    """What result.json and meta.json record of a collapsed run, or None."""
    if streak is None or streak["epochs"] < PATIENCE:
        return None
    return {"since_epoch": streak["since"], "epochs": streak["epochs"],
            "lowest_train_loss": streak["lowest"], "uniform_loss": uniform_loss(num_classes),
            "rule": RULE}


def message(found: dict[str, Any]) -> str:
    return (f"the run has collapsed: for {found['epochs']} epochs (since epoch "
            f"{found['since_epoch']}) its training loss has been no better than predicting every "
            f"class alike (ln C = {found['uniform_loss']:.4f}) and has not decreased; "
            "see docs/collapse.md")
