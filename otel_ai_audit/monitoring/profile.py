"""Reference profiles: what a model's inputs and predictions looked like when it was trained.

A profile is taken at `fit` (scikit-learn) or by `otel_ai_audit.register_reference` (models
trained elsewhere), tied to the model's fingerprint and recorded in the chain as a `reference`
record. Per feature it keeps

* numeric: cut points at the reference's 1/n, 2/n, ... quantiles (n = `bins`, default 20, a
  multiple of 10 so the PSI deciles are among them) and at its maximum, the reference count
  per bin, and a bin for missing values. PSI is computed on the deciles, or on these finer
  bins when ties merge deciles (a feature that is mostly one value);
* categorical: the `top_categories` most frequent values, then `(other)` and `(missing)`, with
  their reference counts;

and the same for the model's prediction (its class for classifiers, its value otherwise). The
size is bounded by bins x features, never by the training data.

Decisions of a profiled model carry a *monitoring view* (`monitor` in the record): per feature
the bin index or the category, never the raw value. It is computed on the writer thread, for a
whole model call at once (`monitor_views`); drift and fairness are computed from it, so they
work when the inputs themselves are only recorded as keyed hashes.

Why one module: a monitoring view bins a decision with the very cut points and categories the
profile was built with (`FeatureProfile`); building a profile and placing a value in it are one
binning rule, kept in one place so that drift compares like with like.
"""

from __future__ import annotations

import hashlib
import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event

logger = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MISSING = "(missing)"
OTHER = "(other)"
PSI_BINS = 10
"""PSI is computed on reference deciles (DESIGN §5: 10 quantile bins)."""
DEFAULT_BINS = 20
DEFAULT_TOP_CATEGORIES = 20
MIN_CATEGORY_COUNT = 10
"""A value seen fewer times in the reference is `(other)`: a profile (and the monitoring view)
never names a rare value, which could single out a person."""
PREDICTION = "prediction"
SMALL_BATCH = 16


@dataclass(frozen=True)
class FeatureProfile:
    """The reference distribution of one feature (or of the prediction), binned.

    Numeric bin `i` holds values in `[edges[i-1], edges[i])` (open at both ends), and bin
    `len(edges) + 1` the missing values. Categorical code `i` is `categories[i]`; the last two
    categories are `(other)` and `(missing)`.
    """

    name: str
    kind: str
    counts: tuple[int, ...]
    edges: tuple[float, ...] = ()
    psi_edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.counts)

    @property
    def missing_code(self) -> int:
        return self.size - 1

    @cached_property
    def _category_codes(self) -> dict[str, int]:
        return {category: code for code, category in enumerate(self.categories)}

    @cached_property
    def psi_groups(self) -> np.ndarray:
        """For each bin, its PSI bin: reference deciles (numeric), categories as they are."""
        if self.kind != NUMERIC:
            return np.arange(self.size)
        lower = np.concatenate(([-np.inf], np.asarray(self.edges, dtype=float)))
        groups = np.searchsorted(np.asarray(self.psi_edges, dtype=float), lower, side="right")
        return np.concatenate((groups, [len(self.psi_edges) + 1]))

    def codes(self, values: Sequence[Any]) -> np.ndarray:
        """Bin index (numeric) or category code of each value, as one vectorised pass."""
        if self.kind == NUMERIC:
            numbers = np.fromiter((_number(value) for value in values), dtype=float,
                                  count=len(values))
            codes = np.searchsorted(np.asarray(self.edges, dtype=float), numbers, side="right")
            codes[np.isnan(numbers)] = self.missing_code
            return codes
        known, other = self._category_codes, self.size - 2
        return np.fromiter((self.missing_code if _is_missing(value)
                            else known.get(str(value), other) for value in values),
                           dtype=np.int64, count=len(values))

    def views(self, values: Sequence[Any]) -> list[int | str]:
        """The monitoring-view values of a column: numpy for batches; value by value (the
        same bins, `bisect_right` being `searchsorted(side="right")`) for the few rows of an
        online call, where numpy's per-call overhead would cost more than the binning."""
        if len(values) > SMALL_BATCH:
            return [self.view(code) for code in self.codes(values).tolist()]
        return [self.view(self._code(value)) for value in values]

    def _code(self, value: Any) -> int:
        if self.kind == NUMERIC:
            number = _number(value)
            return self.missing_code if math.isnan(number) else bisect_right(self.edges, number)
        if _is_missing(value):
            return self.missing_code
        return self._category_codes.get(str(value), self.size - 2)

    def view(self, code: int) -> int | str:
        """What a decision's monitoring view holds for a code: the bin, or the category."""
        return int(code) if self.kind == NUMERIC else self.categories[code]

    def describe(self, view: Any) -> str:
        """A monitoring-view value as a reader sees it: a numeric bin as its interval of
        reference values (`[30, 41.5)`), not its index; a category as it is."""
        if self.kind != NUMERIC:
            return str(view)
        code = self.code_of(view)
        if code == self.missing_code:
            return MISSING
        low = f"{self.edges[code - 1]:.4g}" if code > 0 else None
        high = f"{self.edges[code]:.4g}" if code < len(self.edges) else None
        if low is None:
            return f"< {high}" if high is not None else "(any)"
        return f">= {low}" if high is None else f"[{low}, {high})"

    def code_of(self, view: Any) -> int:
        """The code of a monitoring-view value (the inverse of `view`; unknown -> missing)."""
        if self.kind == NUMERIC:
            valid = type(view) is int and 0 <= view < self.size
            return view if valid else self.missing_code
        return self._category_codes.get(view, self.missing_code) if isinstance(view, str) \
            else self.missing_code

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "counts": list(self.counts)}
        if self.kind == NUMERIC:
            data.update(edges=list(self.edges), psi_edges=list(self.psi_edges))
        else:
            data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureProfile:
        return cls(name=str(data["name"]), kind=str(data["kind"]),
                   counts=tuple(int(c) for c in data["counts"]),
                   edges=tuple(float(e) for e in data.get("edges", ())),
                   psi_edges=tuple(float(e) for e in data.get("psi_edges", ())),
                   categories=tuple(str(c) for c in data.get("categories", ())))


@dataclass(frozen=True)
class ReferenceProfile:
    """A model's reference: its features' and prediction's profiles, tied to its fingerprint."""

    fingerprint: str
    rows: int
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None = None
    columns: tuple[str, ...] = ()
    """Input column order, to read features from rows given as lists (arrays, tensors)."""
    classes: tuple[str, ...] = ()
    """A classifier's classes, to read the predicted class from a row of scores."""

    @cached_property
    def id(self) -> str:
        """Short hash of the profile: a monitoring view's bins mean something only with it."""
        return hashlib.sha256(canonical_json(self.to_json())).hexdigest()[:16]

    def feature(self, name: str) -> FeatureProfile | None:
        return next((item for item in self.all_profiles() if item.name == name), None)

    def all_profiles(self) -> tuple[FeatureProfile, ...]:
        return self.features + ((self.prediction,) if self.prediction is not None else ())

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "rows": self.rows,
                "features": [item.to_json() for item in self.features],
                "prediction": None if self.prediction is None else self.prediction.to_json(),
                "columns": list(self.columns), "classes": list(self.classes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReferenceProfile:
        prediction = data.get("prediction")
        return cls(fingerprint=str(data["fingerprint"]), rows=int(data["rows"]),
                   features=tuple(FeatureProfile.from_json(item) for item in data["features"]),
                   prediction=None if prediction is None else FeatureProfile.from_json(prediction),
                   columns=tuple(str(c) for c in data.get("columns", ())),
                   classes=tuple(str(c) for c in data.get("classes", ())))


def profile_options(settings: Any) -> dict[str, int]:
    """`build_profile` keywords from the settings (`OTEL_AI_AUDIT_MONITOR_BINS`, ...)."""
    return {"bins": settings.monitor_bins, "top_categories": settings.monitor_top_categories}


def reference_event(profile: ReferenceProfile, model: dict[str, Any],
                    time_ns: int | None = None) -> dict[str, Any]:
    """The `reference` record of a profile (model: name, version, fingerprint, ...)."""
    return new_event(EventType.REFERENCE, time_ns=time_ns, model=model,
                     reference={"id": profile.id, **profile.to_json()})


def profile_feature(name: str, values: Any, *, kind: str | None = None,
                    bins: int = DEFAULT_BINS,
                    top_categories: int = DEFAULT_TOP_CATEGORIES) -> FeatureProfile:
    """The profile of one column of reference data (its kind from its dtype unless given)."""
    array = np.asarray(values)
    if kind is None:
        kind = NUMERIC if array.dtype.kind in "iuf" else CATEGORICAL
    if kind == NUMERIC:
        if bins % PSI_BINS:
            raise ValueError(f"bins must be a multiple of {PSI_BINS}, not {bins}")
        numbers = np.fromiter((_number(value) for value in array.tolist()), dtype=float,
                              count=array.size)
        present = numbers[~np.isnan(numbers)]
        edges = _quantile_edges(present, bins)
        deciles = _quantile_edges(present, PSI_BINS)
        if len(deciles) < PSI_BINS:  # ties merged deciles: split what they hide, finer
            deciles = edges
        profile = FeatureProfile(name, NUMERIC, (0,) * (len(edges) + 2), tuple(edges),
                                 tuple(deciles))
        return _counted(profile, profile.codes(numbers.tolist()))
    strings = [MISSING if _is_missing(value) else str(value) for value in array.tolist()]
    frequent = _top(strings, top_categories)
    profile = FeatureProfile(name, CATEGORICAL, (0,) * (len(frequent) + 2),
                             categories=(*frequent, OTHER, MISSING))
    return _counted(profile, profile.codes([None if s == MISSING else s for s in strings]))


def build_profile(fingerprint: str, data: Any, predictions: Any = None, *,
                  categorical: Iterable[str] = (), classes: Sequence[Any] = (),
                  bins: int = DEFAULT_BINS, top_categories: int = DEFAULT_TOP_CATEGORIES,
                  ) -> ReferenceProfile:
    """The profile of reference data (a DataFrame, or a 2-D array whose columns are named
    `x0`, `x1`, ...) and, if given, of the model's predictions on it."""
    columns = _columns(data)
    classes = [_label(value) for value in classes]
    forced = set(categorical)
    features = tuple(profile_feature(name, column, bins=bins, top_categories=top_categories,
                                     kind=CATEGORICAL if name in forced else None)
                     for name, column in columns.items())
    prediction = None
    if predictions is not None:
        values = _host(predictions)
        if values.ndim == 2 and values.shape[1] > 1:
            values = _classes_of(values, classes)
        prediction = profile_feature(PREDICTION, values.reshape(-1), bins=bins,
                                     kind=CATEGORICAL if classes else None,
                                     top_categories=max(top_categories, len(classes)))
    return ReferenceProfile(fingerprint, len(next(iter(columns.values()), ())), features,
                            prediction, tuple(columns), tuple(classes))


def _columns(data: Any) -> dict[str, Any]:
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):
        return {str(name): data[name].to_numpy() for name in data.columns}
    array = _host(data)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"reference data must be a table (2-D), not shape {array.shape}")
    return {f"x{index}": array[:, index] for index in range(array.shape[1])}


def _host(data: Any) -> np.ndarray:
    """An array or a tensor (on any device, with or without gradients) as a numpy array."""
    return np.asarray(data.detach().cpu().numpy() if hasattr(data, "detach") else data)


def _classes_of(scores: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    best = np.argmax(scores, axis=1)
    return np.asarray(classes, dtype=object)[best] if len(classes) else best


def _label(value: Any) -> str:
    """A class label as the category it is in the profile (`1`, not `np.int64(1)`)."""
    return str(value.item() if isinstance(value, np.generic) else value)


def _quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Cut points at the 1/bins quantiles (ties merged), and the maximum: values beyond
    anything seen in training get a bin of their own, so a shift of a feature that is mostly
    one value (UCI Adult's capital gain is 92% zeros, all its deciles 0) still shows."""
    if values.size == 0:
        return []
    cuts = np.quantile(values, np.arange(1, bins) / bins)
    return [float(edge) for edge in np.unique(np.append(cuts, values.max()))]


def _top(values: list[str], limit: int) -> list[str]:
    categories, counts = np.unique(np.asarray([v for v in values if v != MISSING], dtype=str),
                                   return_counts=True)
    order = sorted((i for i in range(len(categories)) if counts[i] >= MIN_CATEGORY_COUNT),
                   key=lambda i: (-counts[i], categories[i]))
    return [str(categories[i]) for i in order[:limit]]


def _counted(profile: FeatureProfile, codes: np.ndarray) -> FeatureProfile:
    counts = np.bincount(codes, minlength=profile.size)
    return FeatureProfile(profile.name, profile.kind, tuple(int(c) for c in counts),
                          profile.edges, profile.psi_edges, profile.categories)


def _number(value: Any) -> float:
    """A value as a float; NaN for anything that is not a finite number (missing)."""
    if type(value) in (int, float, bool) or isinstance(value, (np.integer, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else math.nan
    return math.nan


def _is_missing(value: Any) -> bool:
    if value is None or value == "NaN":
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


# --- the monitoring views of decisions ---------------------------------------------------------


@dataclass
class References:
    """The profiles known to this process, by model fingerprint, and which features the
    monitoring view keeps (`OTEL_AI_AUDIT_MONITOR_FEATURES`: `all`, `none` or a list)."""

    profiles: dict[str, ReferenceProfile] = field(default_factory=dict)
    selection: frozenset[str] | None = None
    """None keeps every profiled feature; an empty set turns monitoring views off."""

    def select(self, setting: Sequence[str]) -> None:
        names = {name.strip() for name in setting if name.strip()}
        if names in ({"all"}, set()):
            self.selection = None
        elif names == {"none"}:
            self.selection = frozenset()
        else:
            self.selection = frozenset(names)

    def register(self, profile: ReferenceProfile) -> None:
        self.profiles[profile.fingerprint] = profile

    def get(self, fingerprint: Any) -> ReferenceProfile | None:
        return self.profiles.get(fingerprint) if isinstance(fingerprint, str) else None

    def clear(self) -> None:
        """Forget every profile and the feature selection: `otel_ai_audit.shutdown()` calls
        this, so a later `configure()` starts afresh."""
        self.profiles.clear()
        self.selection = None


references = References()


def monitor_views(model: dict[str, Any], inputs: list[Any],
                  outputs: list[Any]) -> list[dict[str, Any]] | None:
    """The monitoring view of each decision of one model call (None without a profile).

    `inputs`/`outputs` are the call's rows as JSON data (what `decisions.rows` made of them).
    Never raises: a failure costs the views of this call, never its records.
    """
    profile = references.get(model.get("fingerprint"))
    selection = references.selection
    if profile is None or selection == frozenset():
        return None
    try:
        return _views(profile, selection, inputs, outputs)
    except Exception:  # noqa: BLE001 - the decision records must be written regardless
        logger.warning("otel-ai-audit: monitoring view of a %s call failed", model.get("name"),
                       exc_info=True)
        return None


def _views(profile: ReferenceProfile, selection: frozenset[str] | None, inputs: list[Any],
           outputs: list[Any]) -> list[dict[str, Any]]:
    count = len(inputs)
    positions = {name: index for index, name in enumerate(profile.columns)}
    features: dict[str, list[Any]] = {}
    for feature in profile.features:
        if selection is not None and feature.name not in selection:
            continue
        position = positions.get(feature.name, -1)
        values = [_field(row, feature.name, position) for row in inputs]
        features[feature.name] = feature.views(values)
    predicted: list[Any] | None = None
    if profile.prediction is not None:
        values = [_predicted(outputs[i] if i < len(outputs) else None, profile.classes)
                  for i in range(count)]
        predicted = profile.prediction.views(values)
    views = []
    for index in range(count):
        view: dict[str, Any] = {"profile": profile.id,
                                "features": {name: column[index]
                                             for name, column in features.items()}}
        if predicted is not None:
            view[PREDICTION] = predicted[index]
        views.append(view)
    return views


def _field(row: Any, name: str, position: int) -> Any:
    if isinstance(row, dict):
        return row.get(name)
    if isinstance(row, list) and 0 <= position < len(row):
        return row[position]
    return None


def _predicted(output: Any, classes: tuple[str, ...]) -> Any:
    """The prediction of one output row: the value itself, or the best-scoring class."""
    if isinstance(output, list):
        if len(output) == 1:
            return _predicted(output[0], classes)
        numbers = [_number(value) for value in output]
        if not output or any(math.isnan(n) for n in numbers):
            return None
        best = int(np.argmax(numbers))
        return classes[best] if best < len(classes) else best
    return output
