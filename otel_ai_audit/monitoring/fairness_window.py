"""Fairness of production decisions over time, once their outcomes are known.

A decision's monitoring view holds the category of each sensitive attribute and the predicted
class; `record_outcome(decision_id, label=...)` adds the true label later. For a window of
decisions, those with an outcome (recorded at any time after the window started; the latest
one counts) are joined with it by decision id, and `fairness.attribute_fairness` gives, per
slice, selection rate, TPR and FPR, and per attribute the demographic-parity and
equalized-odds differences: the model card's definitions, on production data. Decisions
still without an outcome are counted (`decisions`) but not rated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from otel_ai_audit.monitoring.drift import (
    DecisionGroup,
    MonitoringError,
    group_decisions,
    references_by_id,
)
from otel_ai_audit.monitoring.fairness import MISSING, AttributeFairness, attribute_fairness
from otel_ai_audit.monitoring.profile import PREDICTION, ReferenceProfile
from otel_ai_audit.record.schema import EventType, new_event


@dataclass(frozen=True)
class FairnessReport:
    """One model version's fairness per attribute in one window."""

    model: dict[str, Any]
    window: dict[str, str]
    decisions: int
    labelled: int
    attributes: list[AttributeFairness]
    decisions_per_slice: dict[tuple[str, str], int]

    def rows(self) -> list[dict[str, Any]]:
        """One `fairness` object per (attribute, slice): the records' contract."""
        rows = []
        for attribute in self.attributes:
            for item in attribute.slices:
                rows.append({
                    "attribute": attribute.attribute, "slice": item.value,
                    "count": item.count, "positives": item.positives,
                    "decisions": self.decisions_per_slice.get(
                        (attribute.attribute, item.value), item.count),
                    "selection_rate": item.selection_rate.value,
                    "tpr": None if item.tpr is None else item.tpr.value,
                    "fpr": None if item.fpr is None else item.fpr.value,
                    "dp_difference": attribute.demographic_parity_difference,
                    "eo_difference": attribute.equalized_odds_difference})
        return rows

    def events(self, time_ns: int | None = None) -> list[dict[str, Any]]:
        return [new_event(EventType.FAIRNESS, time_ns=time_ns, model=self.model,
                          window=self.window, fairness=row) for row in self.rows()]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "window": self.window, "decisions": self.decisions,
                "labelled": self.labelled, "slices": self.rows()}


def latest_outcomes(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """decision id -> its latest outcome label."""
    ordered = sorted(events, key=lambda event: str(event.get("time")))
    return {str(event["decision_id"]): event.get("label") for event in ordered
            if "decision_id" in event}


def group_fairness(group: DecisionGroup, outcomes: dict[str, Any], attributes: Sequence[str],
                   window: dict[str, str], positive_label: Any = 1,
                   profile: ReferenceProfile | None = None) -> FairnessReport:
    """Fairness of one group's decisions that have an outcome; with their reference `profile`,
    a numeric attribute's slices are named by their bin's interval, not its index."""
    labelled = [(view, outcomes[decision_id])
                for decision_id, view in zip(group.ids, group.views, strict=True)
                if decision_id in outcomes]
    positive = str(positive_label)
    truth = [str(label) for _, label in labelled]
    predicted = [str(view.get(PREDICTION)) for view, _ in labelled]
    results, per_slice = [], {}
    for attribute in attributes:
        for view in group.views:
            value = _slice(view, attribute, profile)
            per_slice[(attribute, value)] = per_slice.get((attribute, value), 0) + 1
        if labelled:
            results.append(attribute_fairness(
                attribute, [_slice(view, attribute, profile) for view, _ in labelled], truth,
                predicted, positive_label=positive))
    return FairnessReport(group.model, window, len(group.views), len(labelled), results,
                          per_slice)


def _slice(view: dict[str, Any], attribute: str, profile: ReferenceProfile | None) -> str:
    value = (view.get("features") or {}).get(attribute)
    if value is None:
        return MISSING
    feature = profile.feature(attribute) if profile is not None else None
    return str(value) if feature is None else feature.describe(value)


def fairness(source: Any, model: str, start: str, end: str, attributes: Sequence[str], *,
             version: str | None = None, positive_label: Any = 1) -> list[FairnessReport]:
    """Fairness of `model`'s decisions in [start, end) per version (record-time bounds)."""
    from otel_ai_audit.monitoring.records import INFERENCE, OUTCOME, REFERENCE

    groups = group_decisions(source.events([INFERENCE], start, end), model, version)
    if not groups:
        raise MonitoringError(f"no decisions of model {model!r} with a monitoring view in "
                         f"{source.description} between {start} and {end}")
    outcomes = latest_outcomes(source.events([OUTCOME], start))
    references = references_by_id(source.events([REFERENCE]))
    window = {"start": start, "end": end}
    return [group_fairness(group, outcomes, attributes, window, positive_label,
                           references.get(group.profile_id))
            for group in groups.values()]
