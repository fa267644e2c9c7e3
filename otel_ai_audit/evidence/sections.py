"""The bundle's sections, each built from the records of the window as they stream past.

Every section holds counts, or lists bounded by what is rare on a trail (lifecycle events,
incidents, drift records, outcomes): never one entry per decision, so a window of millions
of decisions is summarised in bounded memory. Performance per subgroup joins decisions with
their outcomes (`record_outcome`), which arrive after the decision and may fall after the
window: they are read up to the time the bundle is built.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_ai_audit.evidence.window import Window
from otel_ai_audit.monitoring.fairness import attribute_fairness
from otel_ai_audit.monitoring.metrics import wilson
from otel_ai_audit.record.canonical import to_json_data

BUCKETS = 48
"""Slices of the window in the charts: one per hour for a 48-hour request."""
LIFECYCLE_TYPES = ("training", "deploy", "rollback", "model_card")
"""Records read from the whole trail up to the window's end: a model serving in the window
was trained and deployed before it."""
UNKNOWN = "(unknown)"
ALL = "(all)"


@dataclass(frozen=True)
class Location:
    """Where a record sits in its chain, and the leaf hash that binds a citation to it."""

    chain_id: str
    seq: int
    leaf_hash: str


@dataclass
class Review:
    """The last human-oversight action on a decision (Art. 14)."""

    action: str
    reviewer: str
    role: str


@dataclass
class Joins:
    """Facts recorded after a decision about it, looked up while the decision streams past."""

    outcomes: dict[str, Any] = field(default_factory=dict)
    reviews: dict[str, Review] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)

    def add(self, event: dict[str, Any]) -> None:
        decision_id = str(event.get("decision_id"))
        kind = event.get("type")
        if kind == "outcome":
            self.outcomes[decision_id] = event.get("label")
        elif kind == "oversight":
            reviewer = part(event, "reviewer")
            self.reviews[decision_id] = Review(str(event.get("action")),
                                               str(reviewer.get("id") or ""),
                                               str(reviewer.get("role") or ""))
        elif kind == "dispute":
            self.disputed.add(decision_id)


def as_object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else {}: records are data from outside (an edited record
    may hold a string where an object belongs), and the bundle reports them, never crashes."""
    return value if isinstance(value, dict) else {}


def part(event: dict[str, Any], name: str) -> dict[str, Any]:
    """A record's object field, or {} (see `as_object`)."""
    return as_object(event.get(name))


def version_of(event: dict[str, Any]) -> str:
    model = part(event, "model")
    return str(model.get("version") or str(model.get("fingerprint") or "")[:12] or UNKNOWN)


class Sections:
    """Accumulates every section; `to_json()` gives their data for the files and the report."""

    def __init__(self, window: Window, joins: Joins, subgroups: tuple[str, ...],
                 positive_labels: tuple[str, ...]) -> None:
        self.window, self.joins = window, joins
        self.subgroups, self.positive_labels = subgroups, positive_labels
        self.types: Counter[str] = Counter()
        self.risk: Counter[str] = Counter()
        self.volume = np.zeros((3, BUCKETS), dtype=np.int64)  # decisions, high risk, overrides
        self.versions: dict[str, dict[str, Any]] = {}
        self.lifecycle: list[dict[str, Any]] = []
        self.actions: Counter[str] = Counter()
        self.reviewers: Counter[tuple[str, str]] = Counter()
        self.by_version_review: dict[str, Counter[str]] = defaultdict(Counter)
        self.disputes: list[dict[str, Any]] = []
        self.incidents: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.drift: list[dict[str, Any]] = []
        self.scored: list[tuple[str, str, str, tuple[str, ...]]] = []
        """(version, predicted, outcome, subgroup values) of decisions with an outcome."""
        self.inputs_hashed = 0

    # --- feeding ---------------------------------------------------------------------------

    def add_lifecycle(self, event: dict[str, Any], where: Location) -> None:
        self.lifecycle.append({"event": event, "chain_id": where.chain_id, "seq": where.seq,
                               "leaf_hash": where.leaf_hash,
                               "in_window": self.window.holds(str(event.get("time")))})

    def add(self, event: dict[str, Any], where: Location) -> None:
        """A record whose event time is in the window."""
        kind = str(event.get("type"))
        self.types[kind] += 1
        time = str(event.get("time"))
        if kind == "inference":
            self._decision(event, time)
        elif kind == "oversight" and event.get("action") == "overridden":
            self.volume[2, self.window.bucket(time, BUCKETS)] += 1
        elif kind == "dispute":
            self.disputes.append(_cited(event, where))
        elif kind == "incident":
            self.incidents.append(_cited(event, where))
        elif kind == "alert":
            self.alerts.append(_cited(event, where))
        elif kind == "drift":
            self.drift.append(_cited(event, where))
        if kind == "oversight":
            reviewer = part(event, "reviewer")
            self.actions[str(event.get("action"))] += 1
            self.reviewers[(str(reviewer.get("id")), str(reviewer.get("role")))] += 1

    def _decision(self, event: dict[str, Any], time: str) -> None:
        decision_id = str(event.get("id"))
        version = version_of(event)
        level = str(part(event, "risk").get("level") or UNKNOWN)
        self.risk[level] += 1
        bucket = self.window.bucket(time, BUCKETS)
        self.volume[0, bucket] += 1
        if level == "high":
            self.volume[1, bucket] += 1
        seen = self.versions.get(version)
        if seen is None:
            model = part(event, "model")
            seen = self.versions[version] = {
                "version": version, "name": model.get("name"),
                "fingerprint": model.get("fingerprint"), "first": time, "last": time,
                "decisions": 0, "high_risk": 0}
        seen["first"], seen["last"] = min(seen["first"], time), max(seen["last"], time)
        seen["decisions"] += 1
        seen["high_risk"] += level == "high"
        review = self.joins.reviews.get(decision_id)
        tally = self.by_version_review[version]
        tally["decisions"] += 1
        tally["high_risk"] += level == "high"
        if review is not None:
            tally["reviewed"] += 1
            tally["high_risk_reviewed"] += level == "high"
            tally[review.action] += 1
        if decision_id in self.joins.outcomes:
            captured = part(event, "input")
            values = captured.get("value") if isinstance(captured.get("value"), dict) else {}
            self.inputs_hashed += captured.get("policy") != "full"
            self.scored.append((version, label_text(output_value(event)),
                                label_text(self.joins.outcomes[decision_id]),
                                tuple(str(values.get(name, UNKNOWN)) for name in self.subgroups)))

    # --- results ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return to_json_data({
            "volume": self._volume(),
            "timeline": self._timeline(),
            "oversight": self._oversight(),
            "incidents": {"incidents": self.incidents, "disputes": self.disputes,
                          "alerts": self.alerts},
            "drift": {"records": self.drift,
                      "drifted": sum(bool(part(r["event"], "drift").get("drifted"))
                                     for r in self.drift)},
            "performance": self._performance(),
            "lineage": self._lineage(),
        })

    def _volume(self) -> dict[str, Any]:
        width_ns = (self.window.end_ns - self.window.start_ns) // BUCKETS
        return {"buckets": BUCKETS, "bucket_seconds": width_ns / 1e9,
                "decisions": self.volume[0].tolist(), "high_risk": self.volume[1].tolist(),
                "overrides": self.volume[2].tolist(), "by_type": dict(self.types),
                "by_risk": dict(self.risk)}

    def _timeline(self) -> dict[str, Any]:
        events = [entry for entry in self.lifecycle if entry["event"].get("type") != "training"]
        return {"served": sorted(self.versions.values(), key=lambda v: v["first"]),
                "events": sorted(events, key=lambda e: str(e["event"].get("time")))}

    def _oversight(self) -> dict[str, Any]:
        high = sum(t["high_risk"] for t in self.by_version_review.values())
        reviewed = sum(t["high_risk_reviewed"] for t in self.by_version_review.values())
        return {
            "records": sum(self.actions.values()), "actions": dict(self.actions),
            "reviewers": [{"id": reviewer, "role": role, "actions": count}
                          for (reviewer, role), count in self.reviewers.most_common()],
            "high_risk_decisions": high, "high_risk_reviewed": reviewed,
            "high_risk_review_rate": reviewed / high if high else None,
            "by_version": {version: dict(tally)
                           for version, tally in sorted(self.by_version_review.items())}}

    def _lineage(self) -> dict[str, Any]:
        deployed = {}
        for entry in self.lifecycle:
            model = part(entry["event"], "model")
            if entry["event"].get("type") in ("deploy", "rollback") and model.get("fingerprint"):
                deployed[model["fingerprint"]] = model.get("version")
        trainings = []
        for entry in self.lifecycle:
            event = entry["event"]
            if event.get("type") != "training":
                continue
            fingerprint = part(event, "model").get("fingerprint")
            trainings.append({**entry, "version": deployed.get(fingerprint),
                              "data": part(event, "training").get("data")})
        cards = [entry for entry in self.lifecycle if entry["event"].get("type") == "model_card"]
        return {"trainings": trainings, "model_cards": cards}

    def _performance(self) -> dict[str, Any]:
        if not self.scored:
            return {"decisions_with_outcome": 0, "versions": [], "subgroups": self.subgroups,
                    "positive_labels": self.positive_labels, "inputs_hashed": 0}
        frame = pd.DataFrame([(v, p, o, *g) for v, p, o, g in self.scored],
                             columns=["version", "predicted", "outcome", *self.subgroups])
        versions = []
        for version, rows in [(ALL, frame), *frame.groupby("version", sort=True)]:
            versions.append({"version": version, "decisions_with_outcome": len(rows),
                             "slices": self._slices(rows)})
        return {"decisions_with_outcome": len(frame), "versions": versions,
                "subgroups": self.subgroups, "positive_labels": self.positive_labels,
                "inputs_hashed": self.inputs_hashed}

    def _slices(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Exact-match accuracy per subgroup value; with positive labels, fairlearn-style rates
        of "positive" (e.g. high urgency) per slice: TPR is the share of truly positive cases
        the model caught."""
        correct = rows["predicted"] == rows["outcome"]
        result = []
        for attribute in (ALL, *self.subgroups):
            groups = pd.Series(ALL, index=rows.index) if attribute == ALL else rows[attribute]
            binary = None
            if self.positive_labels:
                positive = list(self.positive_labels)
                binary = attribute_fairness(attribute, groups, rows["outcome"].isin(positive),
                                            rows["predicted"].isin(positive), positive_label=True)
            rates = {s.value: s for s in binary.slices} if binary else {}
            for value, hits in correct.groupby(groups.to_numpy(), sort=True):
                fairness = rates.get(str(value))
                result.append({
                    "attribute": attribute, "value": str(value), "count": len(hits),
                    "accuracy": asdict(wilson(int(hits.sum()), len(hits))),
                    "positive": None if fairness is None else {
                        "selection_rate": asdict(fairness.selection_rate),
                        "tpr": fairness.tpr and asdict(fairness.tpr),
                        "fpr": fairness.fpr and asdict(fairness.fpr)}})
        return result


def output_value(event: dict[str, Any]) -> Any:
    output = part(event, "output")
    return output.get("value", output.get("hmac_sha256"))


def label_text(value: Any) -> str:
    """Labels compare as text: a JSON 2, a CLI "2" and a numpy 2 are one class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _cited(event: dict[str, Any], where: Location) -> dict[str, Any]:
    return {"event": event, "chain_id": where.chain_id, "seq": where.seq,
            "leaf_hash": where.leaf_hash}
