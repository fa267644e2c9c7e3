"""Group fairness of a binary classifier: its rates per slice of a sensitive attribute, and the
disparities between the slices.

The definitions are fairlearn's, so the numbers compare with fairlearn's without depending on it:

* selection rate: share of the slice predicted positive;
* TPR: share of the slice's actual positives predicted positive; FPR: the same among its
  actual negatives; accuracy: share predicted right;
* demographic-parity difference: largest minus smallest selection rate; ratio: smallest over
  largest;
* equalized-odds difference: the larger of the TPR range and the FPR range across slices.

Every slice rate carries a Wilson interval (see `metrics`): slices are often small, and a gap
between two rates means little without their uncertainty. A slice without actual positives (or
negatives) has no TPR (or FPR) and is left out of the equalized-odds difference.

Slices are the attribute's distinct values (bin a continuous attribute such as age first). A
missing value is a slice of its own, `(missing)`, so no row drops out of the analysis silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from otel_ai_audit.monitoring.metrics import CONFIDENCE, Estimate, binary, wilson

MISSING = "(missing)"


@dataclass(frozen=True)
class SliceMetrics:
    """The classifier's rates on the rows where the attribute has one value."""

    value: str
    count: int
    selection_rate: Estimate
    tpr: Estimate | None
    fpr: Estimate | None
    accuracy: Estimate
    positives: int = 0
    """Rows of the slice whose actual label is positive (the TPR's denominator)."""


@dataclass(frozen=True)
class AttributeFairness:
    """Slices of one sensitive attribute, largest first, and the disparities between them."""

    attribute: str
    slices: list[SliceMetrics]
    demographic_parity_difference: float
    demographic_parity_ratio: float | None
    equalized_odds_difference: float | None


def attribute_fairness(attribute: str, groups: Any, y_true: Any, y_pred: Any, *,
                       positive_label: Any = 1,
                       confidence: float = CONFIDENCE) -> AttributeFairness:
    """Slice metrics and disparities for one attribute (`groups`: its value on each row)."""
    truth, predicted = binary(y_true, positive_label), binary(y_pred, positive_label)
    values = pd.Series(np.asarray(groups, dtype=object))
    rows = pd.DataFrame({
        "slice": values.where(values.notna(), MISSING).astype(str),
        "positive": truth, "predicted": predicted, "hit": truth & predicted,
        "false_alarm": ~truth & predicted, "correct": truth == predicted,
    })
    counts = rows.groupby("slice").agg(
        count=("positive", "size"), positives=("positive", "sum"),
        predicted=("predicted", "sum"), hits=("hit", "sum"),
        false_alarms=("false_alarm", "sum"), correct=("correct", "sum"),
    ).sort_values("count", ascending=False, kind="stable")
    slices = [_slice(str(value), row, confidence) for value, row in counts.iterrows()]
    selection = [s.selection_rate.value for s in slices]
    return AttributeFairness(
        attribute=attribute, slices=slices,
        demographic_parity_difference=max(selection) - min(selection),
        demographic_parity_ratio=min(selection) / max(selection) if max(selection) else None,
        equalized_odds_difference=_equalized_odds(slices))


def fairness_report(frame: pd.DataFrame, sensitive: Sequence[str], y_true: Any, y_pred: Any, *,
                    positive_label: Any = 1,
                    confidence: float = CONFIDENCE) -> list[AttributeFairness]:
    """`attribute_fairness` for each sensitive column of `frame` (rows aligned with labels)."""
    return [attribute_fairness(column, frame[column], y_true, y_pred,
                               positive_label=positive_label, confidence=confidence)
            for column in sensitive]


def _slice(value: str, row: pd.Series, confidence: float) -> SliceMetrics:
    count, positives = int(row["count"]), int(row["positives"])
    selection, accuracy = (wilson(int(row["predicted"]), count, confidence),
                           wilson(int(row["correct"]), count, confidence))
    assert selection is not None and accuracy is not None  # a slice has at least one row
    return SliceMetrics(
        value=value, count=count, selection_rate=selection,
        tpr=wilson(int(row["hits"]), positives, confidence),
        fpr=wilson(int(row["false_alarms"]), count - positives, confidence),
        accuracy=accuracy, positives=positives)


def _equalized_odds(slices: list[SliceMetrics]) -> float | None:
    ranges = []
    for rates in ([s.tpr for s in slices], [s.fpr for s in slices]):
        defined = [rate.value for rate in rates if rate is not None]
        if defined:
            ranges.append(max(defined) - min(defined))
    return max(ranges) if ranges else None
