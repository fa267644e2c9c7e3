"""Performance of a binary classifier, each metric with a confidence interval.

Point estimates are scikit-learn's own (`sklearn.metrics`), so the numbers are the ones anyone
recomputes with that library. The intervals (95% by default):

* **Wilson score interval** for the metrics that are a proportion of a known number of cases:
  accuracy (correct / rows), precision (true positives / predicted positives), recall (true
  positives / actual positives), and the per-slice rates of `fairness`. A closed form exists, so
  it is exact to compute and deterministic; unlike the normal (Wald) interval it keeps close to
  its nominal coverage for small counts and for rates near 0 or 1, and never leaves [0, 1] —
  which is where the small slices of a fairness table live.
* **Percentile bootstrap** for F1 and ROC AUC, which are not proportions of a fixed count and have
  no simple closed form: rows are resampled with their label and prediction paired
  (`scipy.stats.bootstrap`), with a fixed seed so that the same model and data always give the
  same interval (and the same model card).

An undefined metric (precision when nothing is predicted positive, ROC AUC with one class only)
is `None`, never NaN: the results go into canonical JSON, which has no NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap
from sklearn import metrics as skm

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
WILSON = "wilson"
BOOTSTRAP = "bootstrap-percentile"


@dataclass(frozen=True)
class Estimate:
    """A metric's value and its confidence interval (bounds `None` if not computable)."""

    value: float
    low: float | None
    high: float | None
    method: str


def binary(values: Any, positive_label: Any) -> np.ndarray:
    """Labels or predictions as booleans: True where equal to the positive label."""
    return np.asarray(values) == positive_label


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate | None:
    """The proportion successes / trials with its Wilson interval; None for no trials."""
    if trials == 0:
        return None
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence, method=WILSON)
    return Estimate(successes / trials, float(interval.low), float(interval.high), WILSON)


def classification_metrics(y_true: Any, y_pred: Any, y_score: Any = None, *,
                           positive_label: Any = 1, confidence: float = CONFIDENCE,
                           resamples: int = RESAMPLES, seed: int = SEED,
                           ) -> dict[str, Estimate | None]:
    """Accuracy, precision, recall, F1 and (with scores for the positive class) ROC AUC."""
    truth, predicted = binary(y_true, positive_label), binary(y_pred, positive_label)
    hits = int(np.sum(truth & predicted))

    def proportion(metric: Callable[..., float], successes: int, trials: int) -> Estimate | None:
        """scikit-learn's value of a metric that is successes / trials, with its interval."""
        interval = wilson(successes, trials, confidence)
        return None if interval is None else replace(interval,
                                                     value=float(metric(truth, predicted)))

    results: dict[str, Estimate | None] = {
        "accuracy": proportion(skm.accuracy_score, int(np.sum(truth == predicted)), truth.size),
        "precision": proportion(skm.precision_score, hits, int(predicted.sum())),
        "recall": proportion(skm.recall_score, hits, int(truth.sum())),
        "f1": _bootstrapped(skm.f1_score, truth, predicted, confidence=confidence,
                            resamples=resamples, seed=seed)
        if truth.any() or predicted.any() else None,
    }
    if y_score is not None:
        scores = np.asarray(y_score, dtype=float)
        results["roc_auc"] = _bootstrapped(
            _roc_auc, truth, scores, confidence=confidence, resamples=resamples, seed=seed,
        ) if 0 < truth.sum() < truth.size else None
    return results


def _roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN for a resample that drew one class only, which leaves the interval
    undefined (`None`) rather than failing the whole evaluation."""
    if truth.all() or not truth.any():
        return math.nan
    return float(skm.roc_auc_score(truth, scores))


def _bootstrapped(metric: Callable[..., float], *samples: np.ndarray, confidence: float,
                  resamples: int, seed: int) -> Estimate:
    value = float(metric(*samples))
    distribution = bootstrap(samples, lambda *drawn: float(metric(*drawn)), paired=True,
                             vectorized=False, n_resamples=resamples, method="percentile",
                             confidence_level=confidence, rng=np.random.default_rng(seed))
    low, high = distribution.confidence_interval
    return Estimate(value, _finite(low), _finite(high), BOOTSTRAP)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
