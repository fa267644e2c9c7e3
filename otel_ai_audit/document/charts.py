"""The model card's charts: ROC curve, calibration (reliability diagram) and confusion matrix.

Drawn with matplotlib's object API (no pyplot state, no display) from `ModelCard.diagnostics`,
the same numbers the card's JSON holds, as PNG files: the HTML embeds them, the Markdown links
them, and the `model_card` record hashes them like the card's other files.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from otel_ai_audit.document.card import CALIBRATION_BINS, ModelCard

CHART_FILES = {"roc": "model-card-roc.png", "calibration": "model-card-calibration.png",
               "confusion": "model-card-confusion.png"}
"""Chart name to file name; a chart the model's outputs do not allow is not drawn."""
SIZE = (5.2, 4.6)
"""Inches; at `DPI`, 750 x 660 pixels, legible at 60% of that (two side by side in the HTML),
with `STYLE`'s larger type."""
DPI = 144
STYLE = {"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 11}
ACCENT, MUTED = "#1f5fa8", "#8a8a8a"


def draw_charts(card: ModelCard) -> dict[str, bytes]:
    """File name to PNG, for each chart the card's diagnostics allow."""
    diagnostics = card.diagnostics
    with matplotlib.rc_context(STYLE):
        drawn = {"confusion": _confusion(card)}
        if diagnostics.roc is not None:
            drawn["roc"] = _roc(card, diagnostics.roc)
        if diagnostics.calibration is not None:
            drawn["calibration"] = _calibration(card, diagnostics.calibration)
        return {CHART_FILES[name]: _png(drawn[name]) for name in CHART_FILES if name in drawn}


def _roc(card: ModelCard, roc: dict[str, list[float]]) -> Figure:
    (tn, fp), (fn, tp) = card.diagnostics.confusion
    auc = card.metrics.get("roc_auc")
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(roc["fpr"], roc["tpr"], color=ACCENT, linewidth=2,
              label="model" + (f" (AUC {auc.value:.3f})" if auc is not None else ""))
    axes.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="chance")
    tpr, fpr = _share(tp, tp + fn), _share(fp, fp + tn)
    if tpr is not None and fpr is not None:
        axes.plot([fpr], [tpr], "o", color="#c2410c", markersize=8,
                  label=f"predict(): TPR {tpr:.2f}, FPR {fpr:.2f}")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal",
             xlabel="false positive rate (FPR)", ylabel="true positive rate (TPR, recall)",
             title=f"ROC curve on {_evaluation(card)}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return figure


def _calibration(card: ModelCard, calibration: dict[str, list[float]]) -> Figure:
    figure = Figure(figsize=SIZE, layout="constrained")
    curve, counts = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    curve.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1,
               label="perfectly calibrated")
    curve.plot(calibration["predicted"], calibration["observed"], "o-", color=ACCENT,
               linewidth=2, label="model")
    curve.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed share positive",
              title=f"Calibration on {_evaluation(card)} ({CALIBRATION_BINS} bins)")
    curve.grid(alpha=0.3)
    curve.legend(loc="upper left")
    counts.bar(calibration["predicted"], calibration["count"], width=0.8 / CALIBRATION_BINS,
               color=ACCENT, alpha=0.6)  # at each bin's mean prediction, as the curve's points
    counts.set(ylabel="rows",
               xlabel=f"predicted probability of {card.label} = {card.positive_label}")
    counts.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    counts.grid(alpha=0.3, axis="y")
    return figure


def _confusion(card: ModelCard) -> Figure:
    matrix = card.diagnostics.confusion
    total = sum(sum(row) for row in matrix)
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    darkest = max(max(row) for row in matrix)
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=darkest)
    for actual, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            axes.text(predicted, actual, f"{count:,}\n{_share(count, total) or 0:.1%} of rows",
                      ha="center", va="center", fontsize="large",
                      color="white" if count > darkest / 2 else "#1b1b1b")
    names = [f"{card.label} = {label}" for label in card.diagnostics.labels]
    axes.set_xticks([0, 1], names)
    axes.set_yticks([0, 1], names, rotation=90, va="center")
    axes.set(xlabel="predicted (predict(), the model's own threshold)", ylabel="actual",
             title=f"Confusion matrix on {_evaluation(card)}")
    return figure


def _evaluation(card: ModelCard) -> str:
    return card.evaluation.source or "the evaluation data"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=_NO_DATE)
    return buffer.getvalue()


_NO_DATE: dict[str, Any] = {"Software": None}
"""PNG metadata left out: the same card draws the same bytes (matplotlib's version is in the
card's `generator` already)."""
