"""The bundle's sections, each built from the records of the window as they stream past.

Every section holds counts, or lists bounded by what is rare on a trail (lifecycle events,
incidents, drift records, outcomes): never one entry per decision, so a window of millions
of decisions is summarised in bounded memory. Performance per subgroup joins decisions with
their outcomes (`record_outcome`), which arrive after the decision and may fall after the
window: they are read up to the time the bundle is built.

Why one module: every section is fed by the same single pass over the window's records
(`Sections.add`) and shares its joins; split, each part would need the stream again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_ai_audit.evidence.window import Window, described_ns, time_unit
from otel_ai_audit.monitoring.drift import P_VALUE_METHODS
from otel_ai_audit.monitoring.fairness import attribute_fairness
from otel_ai_audit.monitoring.metrics import wilson
from otel_ai_audit.record.canonical import rfc3339_from_ns, to_json_data

BUCKETS = 48
"""Slices of the window in the charts: one per hour for a 48-hour request."""
DECISIONS, HIGH_RISK, OVERRIDES = 0, 1, 2
"""The series of the charts over time."""
LIFECYCLE_TYPES = ("training", "deploy", "rollback", "model_card")
"""Records read from the whole trail up to the window's end: a model serving in the window
was trained and deployed before it."""
UNKNOWN = "(unknown)"
ALL = "(all)"
ALL_VERSIONS = "all versions"
DEFAULT_THRESHOLD = 0.5
"""A `predict_proba` decision is rated positive when the positive class's probability is at
least this (scikit-learn's `predict` for a binary classifier)."""
PROBABILITY_OPERATIONS = ("predict_proba",)


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
    """Facts recorded after a decision about it, looked up while the decision streams past:
    outcomes, oversight and disputes by decision id, and the classes of each model (by
    fingerprint, from its reference profile) to read a `predict_proba` row."""

    outcomes: dict[str, Any] = field(default_factory=dict)
    reviews: dict[str, Review] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        decision_id = str(event.get("decision_id"))
        kind = event.get("type")
        if kind == "reference":
            fingerprint = part(event, "model").get("fingerprint")
            classes = part(event, "reference").get("classes")
            if fingerprint and isinstance(classes, list) and classes:
                self.classes[str(fingerprint)] = tuple(label_text(c) for c in classes)
        elif kind == "outcome":
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
                 positive_labels: tuple[str, ...], threshold: float = DEFAULT_THRESHOLD,
                 ) -> None:
        self.window, self.joins = window, joins
        self.subgroups, self.positive_labels = subgroups, positive_labels
        self.threshold = threshold
        self.types: Counter[str] = Counter()
        self.risk: Counter[str] = Counter()
        self.volume = np.zeros((3, BUCKETS), dtype=np.int64)  # decisions, high risk, overrides
        self.described: Counter[tuple[int, int]] = Counter()
        """(series, second) by described time: as many entries as distinct seconds claimed."""
        self.undescribed = 0
        """Decisions without a described time: then the charts use the recorded time."""
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
        self.thresholded = 0
        """Scored decisions whose output was a row of probabilities (`predict_proba`)."""

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
            self._count(OVERRIDES, event, time)
        elif kind == "dispute":
            self.disputes.append(_cited(event, where))
        elif kind == "incident":
            self.incidents.append(_cited(event, where))
        elif kind == "alert":
            self.alerts.append(_cited(event, where))
        elif kind == "drift":
            self.add_drift(event, where)
        if kind == "oversight":
            reviewer = part(event, "reviewer")
            self.actions[str(event.get("action"))] += 1
            self.reviewers[(str(reviewer.get("id")), str(reviewer.get("role")))] += 1

    def _count(self, series: int, event: dict[str, Any], time: str) -> None:
        """One more of `series` at the record's time, and at its described time."""
        self.volume[series, self.window.bucket(time, BUCKETS)] += 1
        described = described_ns(event)
        if described is not None:
            self.described[(series, described // 1_000_000_000)] += 1
        elif series == DECISIONS:
            self.undescribed += 1

    def add_drift(self, event: dict[str, Any], where: Location, own_chain: bool = True) -> None:
        """A drift record of the window; `own_chain` False: written by another process (a
        monitoring job), so it is cited but not in the bundle's chain extracts."""
        self.drift.append({**_cited(event, where), "in_extracts": own_chain})

    def _decision(self, event: dict[str, Any], time: str) -> None:
        decision_id = str(event.get("id"))
        version = version_of(event)
        level = str(part(event, "risk").get("level") or UNKNOWN)
        self.risk[level] += 1
        self._count(DECISIONS, event, time)
        if level == "high":
            self._count(HIGH_RISK, event, time)
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
            predicted = self._predicted(event)
            self.scored.append((version, predicted,
                                label_text(self.joins.outcomes[decision_id]),
                                tuple(str(values.get(name, UNKNOWN)) for name in self.subgroups)))

    def model_names(self) -> set[str]:
        """The models the system served in the window or deployed before it."""
        return {str(v["name"]) for v in self.versions.values()} | {
            str(part(entry["event"], "model").get("name")) for entry in self.lifecycle}

    def _predicted(self, event: dict[str, Any]) -> str:
        """The class a decision predicted. A `predict_proba` row is read with the model's
        classes (from its reference profile; column numbers without one): for two classes and
        one positive label, positive when its probability is at least the threshold, else the
        most probable class."""
        output = output_value(event)
        if event.get("operation") not in PROBABILITY_OPERATIONS:
            return label_text(output)
        row = probability_row(output)
        if row is None:
            return label_text(output)
        self.thresholded += 1
        fingerprint = str(part(event, "model").get("fingerprint"))
        classes = self.joins.classes.get(fingerprint, ())
        labels = classes if len(classes) == len(row) else tuple(map(str, range(len(row))))
        positive = [i for i, label in enumerate(labels) if label in self.positive_labels]
        if len(row) == 2 and len(positive) == 1:
            index = positive[0]
            return labels[index] if row[index] >= self.threshold else labels[1 - index]
        return labels[int(np.argmax(row))]

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
                                     for r in self.drift),
                      "features": drift_features(self.drift)},
            "performance": self._performance(),
            "lineage": self._lineage(),
        })

    def _volume(self) -> dict[str, Any]:
        """Counts over time: by described time when every decision carries one (the story the
        records tell), else by recorded time over the window."""
        volume, axis = self.volume, {
            "time": "recorded", "start": self.window.start,
            "seconds": (self.window.end_ns - self.window.start_ns) / 1e9}
        if self.described and not self.undescribed:
            seconds = [second for _, second in self.described]
            unit = int(time_unit(max(seconds) + 1 - min(seconds))[1])
            start = min(seconds) // unit * unit  # whole units: hour 0 to hour 48
            span = -(-(max(seconds) + 1 - start) // unit) * unit
            volume = np.zeros((3, BUCKETS), dtype=np.int64)
            for (series, second), count in self.described.items():
                volume[series, min((second - start) * BUCKETS // span, BUCKETS - 1)] += count
            axis = {"time": "described", "start": rfc3339_from_ns(start * 1_000_000_000),
                    "seconds": float(span)}
        return {"buckets": BUCKETS, "bucket_seconds": axis["seconds"] / BUCKETS, "axis": axis,
                "decisions": volume[DECISIONS].tolist(), "high_risk": volume[HIGH_RISK].tolist(),
                "overrides": volume[OVERRIDES].tolist(), "by_type": dict(self.types),
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
        rule = {"threshold": self.threshold, "probability_decisions": self.thresholded}
        if not self.scored:
            return {"decisions_with_outcome": 0, "versions": [], "subgroups": self.subgroups,
                    "positive_labels": self.positive_labels, "inputs_hashed": 0, **rule}
        frame = pd.DataFrame([(v, p, o, *g) for v, p, o, g in self.scored],
                             columns=["version", "predicted", "outcome", *self.subgroups])
        versions = []
        for version, rows in [(ALL_VERSIONS, frame), *frame.groupby("version", sort=True)]:
            versions.append({"version": version, "decisions_with_outcome": len(rows),
                             "slices": self._slices(rows)})
        return {"decisions_with_outcome": len(frame), "versions": versions,
                "subgroups": self.subgroups, "positive_labels": self.positive_labels,
                "inputs_hashed": self.inputs_hashed, **rule}

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


def probability_row(output: Any) -> list[float] | None:
    """The probabilities of a `predict_proba` output for one row (`[p0, p1]` or `[[p0, p1]]`),
    or None if it is not one."""
    if isinstance(output, list) and len(output) == 1 and isinstance(output[0], list):
        output = output[0]
    if not isinstance(output, list) or len(output) < 2 or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) for p in output):
        return None
    return [float(p) for p in output]


def drift_features(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, version, feature, method): how many drift windows there were, how many
    drifted, and the window whose statistic went furthest past (or nearest to) its threshold,
    with its p-value when the method has one. Most drifted first: the report's table and the charts'
    choice of which features to name."""
    summary: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        drift = part(record["event"], "drift")
        score, threshold = drift.get("score"), drift.get("threshold")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in (score, threshold)):
            continue
        method = str(drift.get("method"))
        model = part(record["event"], "model")
        key = (str(model.get("name")), str(model.get("version")), str(drift.get("feature")),
               method)
        entry = summary.setdefault(key, {
            "model": key[0], "version": key[1], "feature": key[2], "method": method,
            "threshold": threshold, "windows": 0, "drifted": 0, "worst": None})
        entry["windows"] += 1
        entry["drifted"] += bool(drift.get("drifted"))
        severity = severity_of(method, float(score), float(threshold))
        if entry["worst"] is None or severity > entry["worst"]["severity"]:
            entry["worst"] = {"severity": severity, "score": score,
                              "p_value": drift.get("p_value") if has_p_value(method) else None,
                              "drifted": bool(drift.get("drifted")),
                              "window_end": part(record["event"], "window").get("end")
                              or record["event"].get("time")}
    return sorted(summary.values(), key=lambda e: (-e["drifted"], -e["worst"]["severity"],
                                                   e["model"], e["version"], e["feature"]))


def has_p_value(method: str) -> bool:
    """Is the method's score a p-value (drifted below the threshold)? Otherwise it is a
    distance, drifted at or above it (`monitoring.drift`)."""
    return method in P_VALUE_METHODS


def severity_of(method: str, score: float, threshold: float) -> float:
    """A statistic relative to its threshold, 1 at the threshold and above 1 when drifted, so
    methods compare on one scale: score / threshold for a distance, threshold / p for a
    p-value (capped at 1000 where p is 0)."""
    if has_p_value(method):
        return threshold / score if score > threshold / 1000 else 1000.0
    return score / threshold if threshold > 0 else 0.0


def label_text(value: Any) -> str:
    """Labels compare as text: a JSON 2, a CLI "2" and a numpy 2 are one class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _cited(event: dict[str, Any], where: Location) -> dict[str, Any]:
    return {"event": event, "chain_id": where.chain_id, "seq": where.seq,
            "leaf_hash": where.leaf_hash}
