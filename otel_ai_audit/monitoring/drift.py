"""Drift of production decisions from a model's reference profile, feature by feature.

Everything works on counts per reference bin (numeric) or category (categorical), so it needs
neither raw values nor their keyed hashes: a window of decisions becomes one `bincount` over
their monitoring views, and a million decisions by 14 features take milliseconds (`make
bench`). Per feature:

* PSI on the reference deciles (categories for categorical features), empty bins smoothed to
  a share of 0.0001 as Evidently does: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major;
* KS (numeric): the largest distance between the two CDFs at the reference bin edges, with
  the asymptotic two-sided p-value of `scipy.stats.ks_2samp(method="asymp")`. Binned, the
  statistic is a lower bound of the raw-value one: equal when every distinct value is its own
  bin (discrete features), and never more than the largest bin share (reference or current)
  below it otherwise;
* chi-squared (categorical): `scipy.stats.chi2_contingency` of reference vs current counts;
* Jensen-Shannon distance (categorical): `scipy.spatial.distance.jensenshannon` of the shares
  (natural log, as Evidently).

The method compared with the threshold follows Evidently's defaults: with a reference of at
most 1,000 rows, KS (numeric) and chi-squared (categorical) at p < 0.05; above it, where those
tests call every negligible shift significant, PSI >= 0.1 (numeric) and Jensen-Shannon >= 0.1
(categorical). The prediction is compared like a feature of its kind. The dataset drifts when
at least half of the features do. All of it is configurable (`DriftPolicy`, `OTEL_AI_AUDIT_
DRIFT_*`). Missing values have their own bin: PSI and chi-squared see a change in missingness;
KS compares the present values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_ai_audit.config import AuditSettings
from otel_ai_audit.errors import RequestError
from otel_ai_audit.monitoring.profile import (
    CATEGORICAL,
    NUMERIC,
    PREDICTION,
    FeatureProfile,
    ReferenceProfile,
)
from otel_ai_audit.record.schema import EventType, new_event

PSI = "psi"
KS = "ks"
CHI2 = "chi2"
JENSEN_SHANNON = "jensenshannon"
P_VALUE_METHODS = (KS, CHI2)
METHODS = {NUMERIC: ("auto", PSI, KS), CATEGORICAL: ("auto", PSI, CHI2, JENSEN_SHANNON)}
PSI_FLOOR = 0.0001


_DEFAULTS = AuditSettings()


@dataclass(frozen=True)
class DriftPolicy:
    """Which statistic decides, and its threshold. The defaults are the settings' (`AuditSettings`
    `drift_*`: Evidently's conventions, DESIGN §5)."""

    numeric_method: str = _DEFAULTS.drift_numeric_method
    categorical_method: str = _DEFAULTS.drift_categorical_method
    small_reference: int = _DEFAULTS.drift_small_reference
    p_value: float = _DEFAULTS.drift_p_value
    psi_threshold: float = _DEFAULTS.drift_psi_threshold
    js_threshold: float = _DEFAULTS.drift_js_threshold
    share: float = _DEFAULTS.drift_share

    def __post_init__(self) -> None:
        for kind, method in ((NUMERIC, self.numeric_method),
                             (CATEGORICAL, self.categorical_method)):
            if method not in METHODS[kind]:
                raise ValueError(f"{kind} drift method must be one of {METHODS[kind]}, "
                                 f"not {method!r}")

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> DriftPolicy:
        return cls(settings.drift_numeric_method, settings.drift_categorical_method,
                   settings.drift_small_reference, settings.drift_p_value,
                   settings.drift_psi_threshold, settings.drift_js_threshold,
                   settings.drift_share)

    def method(self, kind: str, reference_count: int) -> str:
        chosen = self.numeric_method if kind == NUMERIC else self.categorical_method
        if chosen != "auto":
            return chosen
        small = reference_count <= self.small_reference
        if kind == NUMERIC:
            return KS if small else PSI
        return CHI2 if small else JENSEN_SHANNON

    def threshold(self, method: str) -> float:
        return {PSI: self.psi_threshold, JENSEN_SHANNON: self.js_threshold}.get(
            method, self.p_value)


@dataclass(frozen=True, kw_only=True)
class FeatureDrift:
    """One feature's (or the prediction's) comparison with the reference (keyword-only: ten
    values, several of them floats a position would mix up)."""

    feature: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    psi: float
    p_value: float | None
    reference_count: int
    current_count: int

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "method": self.method,
                "score": self.score, "threshold": self.threshold, "drifted": self.drifted,
                "psi": self.psi, "p_value": self.p_value,
                "reference_count": self.reference_count, "current_count": self.current_count}


@dataclass(frozen=True)
class DriftReport:
    """The drift of one model version's decisions in one window."""

    model: dict[str, Any]
    window: dict[str, str]
    features: list[FeatureDrift]
    decisions: int
    share_threshold: float = 0.5
    profile_id: str = ""

    @property
    def share(self) -> float:
        """Share of drifted input features (the prediction is not counted)."""
        inputs = [item for item in self.features if item.kind != PREDICTION]
        return sum(item.drifted for item in inputs) / len(inputs) if inputs else 0.0

    @property
    def dataset_drifted(self) -> bool:
        return any(item.kind != PREDICTION for item in self.features) and \
            self.share >= self.share_threshold

    @property
    def drifted(self) -> list[str]:
        return [item.feature for item in self.features if item.drifted]

    def events(self, time_ns: int | None = None) -> list[dict[str, Any]]:
        """One `drift` record per feature (contract in docs/monitoring.md); time = window end."""
        return [new_event(EventType.DRIFT, time_ns=time_ns, model=self.model,
                          window=self.window, drift=item.to_json(),
                          reference={"id": self.profile_id})
                for item in self.features]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "window": self.window, "decisions": self.decisions,
                "profile": self.profile_id, "share": self.share,
                "dataset_drifted": self.dataset_drifted,
                "features": [item.to_json() for item in self.features]}


# --- the statistics, on counts ------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of two count vectors over the same bins."""
    expected = np.maximum(reference / max(reference.sum(), 1), floor)
    actual = np.maximum(current / max(current.sum(), 1), floor)
    return float(np.sum((expected - actual) * np.log(expected / actual)))


def ks_binned(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """KS statistic of binned samples (CDFs compared at the bin edges) and its asymptotic
    two-sided p-value (`scipy.stats.ks_2samp(method="asymp")`'s formula)."""
    from scipy.stats import kstwo

    n, m = int(reference.sum()), int(current.sum())
    if n == 0 or m == 0:
        return 0.0, 1.0
    distance = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    return distance, float(kstwo.sf(distance, np.round(n * m / (n + m))))


def chi2(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """`scipy.stats.chi2_contingency` of the 2 x k table (categories seen by neither left
    out: they carry no information and make the expected counts zero)."""
    from scipy.stats import chi2_contingency

    table = np.vstack((reference, current))
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(reference / max(reference.sum(), 1),
                               current / max(current.sum(), 1)))


def compare(profile: FeatureProfile, current: np.ndarray, policy: DriftPolicy,
            kind: str | None = None) -> FeatureDrift:
    """One feature's drift: `current` counts per bin of `profile` (missing last)."""
    reference = np.asarray(profile.counts, dtype=np.int64)
    current = np.asarray(current, dtype=np.int64)
    reference_count = int(reference.sum())
    groups = profile.psi_groups
    size = int(groups.max()) + 1
    stability = psi(np.bincount(groups, reference, size), np.bincount(groups, current, size))
    method = policy.method(profile.kind, reference_count)
    if profile.kind == NUMERIC:
        statistic, p_value = ks_binned(reference[:-1], current[:-1])
    else:
        statistic, p_value = chi2(reference, current)
    score = {PSI: stability, KS: statistic, CHI2: statistic}.get(method)
    if method == JENSEN_SHANNON:
        score = jensen_shannon(reference, current)
    if method in P_VALUE_METHODS:
        score, drifted = p_value, p_value < policy.threshold(method)
    else:
        drifted = bool(score >= policy.threshold(method))
    return FeatureDrift(feature=profile.name, kind=kind or profile.kind, method=method,
                        score=_finite(score), threshold=policy.threshold(method),
                        drifted=bool(drifted), psi=_finite(stability),
                        p_value=p_value if math.isfinite(p_value) else None,
                        reference_count=reference_count, current_count=int(current.sum()))


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def counts(profiles: Sequence[FeatureProfile], codes: np.ndarray) -> list[np.ndarray]:
    """Counts per bin of each profile from a (decisions x profiles) matrix of codes, in one
    `bincount` (negative codes: the decision's view lacks the feature)."""
    sizes = np.array([profile.size for profile in profiles], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    shifted = codes + starts
    flat = np.bincount(shifted[codes >= 0], minlength=int(sizes.sum()))
    return np.split(flat, starts[1:])


def drift_of_codes(profile: ReferenceProfile, codes: np.ndarray,
                   policy: DriftPolicy | None = None) -> list[FeatureDrift]:
    """Drift of every profiled feature, then the prediction, from their codes (columns in
    `profile.all_profiles()` order)."""
    policy = policy or DriftPolicy()
    profiles = profile.all_profiles()
    results = []
    for item, current in zip(profiles, counts(profiles, codes), strict=True):
        if current.sum() == 0:
            continue  # not in the views (monitoring off for it): nothing to compare
        kind = PREDICTION if item is profile.prediction else None
        results.append(compare(item, current, policy, kind))
    return results


# --- decisions (records) to codes -------------------------------------------------------------


@dataclass
class DecisionGroup:
    """The monitoring views of one model version's decisions under one profile."""

    model: dict[str, Any]
    profile_id: str
    views: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def group_decisions(events: Iterable[dict[str, Any]], model: str,
                    version: str | None = None) -> dict[tuple[str, str, str], DecisionGroup]:
    """Decisions of `model` (and `version`) that carry a monitoring view, by (version,
    fingerprint, profile id)."""
    groups: dict[tuple[str, str, str], DecisionGroup] = {}
    for event in events:
        identity, view = event.get("model") or {}, event.get("monitor")
        if identity.get("name") != model or not isinstance(view, dict):
            continue
        if version is not None and identity.get("version") != version:
            continue
        key = (str(identity.get("version")), str(identity.get("fingerprint")),
               str(view.get("profile")))
        group = groups.get(key)
        if group is None:
            group = groups[key] = DecisionGroup(
                {"name": model, "version": key[0], "fingerprint": key[1]}, key[2])
        group.views.append(view)
        group.ids.append(str(event.get("id")))
    return groups


def codes_of_views(profile: ReferenceProfile, views: Sequence[dict[str, Any]]) -> np.ndarray:
    """The (decisions x profiles) code matrix of monitoring views (-1 where one is absent)."""
    profiles = profile.all_profiles()
    codes = np.full((len(views), len(profiles)), -1, dtype=np.int64)
    features = [view.get("features") or {} for view in views]
    for column, item in enumerate(profiles):
        if item is profile.prediction:
            values = [view.get(PREDICTION) for view in views]
        else:
            values = [row.get(item.name) for row in features]
        codes[:, column] = _codes(item, values)
    return codes


def _codes(profile: FeatureProfile, values: list[Any]) -> np.ndarray:
    """Codes of one column of views (None: absent, -1), the common cases without a Python
    call per value; anything odd (a view edited by hand) through `code_of`."""
    try:
        if profile.kind == NUMERIC:
            if not all(type(value) is int or value is None for value in values):
                raise TypeError("not all bins")
            codes = np.asarray([-1 if value is None else value for value in values],
                               dtype=np.int64)
            codes[(codes < -1) | (codes >= profile.size)] = profile.missing_code
            return codes
        lookup: dict[Any, int] = {None: -1, **{category: code for code, category
                                               in enumerate(profile.categories)}}
        missing = profile.missing_code
        return np.asarray([lookup.get(value, missing) for value in values], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return np.asarray([-1 if value is None else profile.code_of(value) for value in values],
                          dtype=np.int64)


def references_by_id(events: Iterable[dict[str, Any]]) -> dict[str, ReferenceProfile]:
    """The reference profiles recorded in a trail, by profile id."""
    found = {}
    for event in events:
        data = event.get("reference")
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            found[data["id"]] = ReferenceProfile.from_json(data)
    return found


class MonitoringError(RequestError):
    """Drift or fairness cannot be computed as asked (no decisions, no reference)."""


def drift(source: Any, model: str, start: str, end: str, *, version: str | None = None,
          policy: DriftPolicy | None = None) -> list[DriftReport]:
    """Drift of `model`'s decisions in [start, end) (record-time bounds, `records.record_time`)
    against their reference profiles, one report per version and profile."""
    from otel_ai_audit.monitoring.records import INFERENCE, REFERENCE

    policy = policy or DriftPolicy()
    groups = group_decisions(source.events([INFERENCE], start, end), model, version)
    if not groups:
        raise MonitoringError(f"no decisions of model {model!r}"
                         f"{f' version {version!r}' if version else ''} with a monitoring view "
                         f"in {source.description} between {start} and {end}")
    references = references_by_id(source.events([REFERENCE]))
    reports = []
    for group in groups.values():
        profile = references.get(group.profile_id)
        if profile is None:
            raise MonitoringError(f"the reference profile {group.profile_id} of model {model!r} "
                             f"version {group.model['version']} is not in "
                             f"{source.description}")
        features = drift_of_codes(profile, codes_of_views(profile, group.views), policy)
        reports.append(DriftReport(group.model, {"start": start, "end": end}, features,
                                   len(group.views), policy.share, profile.id))
    return reports
