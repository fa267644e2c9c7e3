"""The model card (Mitchell et al., "Model Cards for Model Reporting", 2019) as data.

Facts come from where they can be checked, never from the author's say-so: hyper-parameters,
training data fingerprints and duration from the `training` record captured at `fit`; the
model's structure from the fitted object; metrics, intervals and fairness per slice from an
evaluation run here; file SHA-256s from the files. The author adds what only they can say
(`Narrative`); what they leave out shows as "not stated", so a reviewer sees the gap.
"""

from __future__ import annotations

import inspect
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from otel_ai_audit.datasets.source import DataSource, sha256_of
from otel_ai_audit.document.lineage import (
    DatasetFacts,
    PipelineStep,
    describe_dataset,
    model_structure,
)
from otel_ai_audit.document.trail import RecordRef, StoredRecord
from otel_ai_audit.instrumentation.sklearn.identity import estimator_name, fingerprint
from otel_ai_audit.monitoring.fairness import AttributeFairness, SliceMetrics, fairness_report
from otel_ai_audit.monitoring.metrics import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    Estimate,
    classification_metrics,
)
from otel_ai_audit.record.canonical import rfc3339_from_ns, to_json_data
from otel_ai_audit.version import __version__

FOUR_FIFTHS = 0.8
"""Demographic-parity ratio below which a finding is raised: the "four-fifths rule" of thumb
for adverse impact in US employment selection (29 CFR 1607.4(D)). A flag for review, not a
verdict: the right threshold depends on the use."""
WIDE_INTERVAL = 0.2
"""Width of a slice's confidence interval above which a finding warns that its rates are too
uncertain to compare without their intervals."""
_RATES = {"selection_rate": "selection rate", "tpr": "TPR", "fpr": "FPR", "accuracy": "accuracy"}


@dataclass(frozen=True)
class Narrative:
    """What only the model's owner can say; each tuple item is one paragraph or list item."""

    overview: str = ""
    owner: str = ""
    intended_uses: tuple[str, ...] = ()
    intended_users: tuple[str, ...] = ()
    out_of_scope_uses: tuple[str, ...] = ()
    factors: tuple[str, ...] = ()
    ethical_considerations: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelDetails:
    name: str
    version: str
    model_class: str
    framework: str
    fingerprint: str
    artifact: dict[str, str] | None
    """`{"file", "sha256"}` of the serialised model this card documents, when there is one."""


@dataclass(frozen=True)
class TrainingFacts:
    """The recorded `fit`, and the training file when it is described too."""

    record: RecordRef
    time: str
    duration_ms: float | None
    hyperparameters: dict[str, Any]
    """The parameters set to something else than their estimator's default, as recorded (the
    record holds every parameter; the structure of a Pipeline is in `ModelCard.structure`)."""
    parameters_at_default: int
    """How many recorded parameters kept their default, and are left out of `hyperparameters`."""
    features: dict[str, Any] | None
    target: dict[str, Any] | None
    data: DatasetFacts | None
    data_matches_record: bool | None
    """Whether the described file's fingerprints are those the training record holds."""


@dataclass(frozen=True)
class Diagnostics:
    """The numbers behind the card's charts, from the same evaluation as its metrics."""

    labels: tuple[Any, Any]
    """(negative, positive) class, the order of `confusion`'s rows and columns."""
    confusion: list[list[int]]
    """Rows: actual class; columns: predicted class (`predict`, the model's own threshold)."""
    roc: dict[str, list[float]] | None
    """`fpr`, `tpr`: points of scikit-learn's `roc_curve`, the first, the last and each one at
    least `ROC_STEP` away (on either axis) from the point kept before it, so a chart draws the
    same curve from a few hundred points instead of one per evaluation row. None when the model
    gives no scores."""
    calibration: dict[str, list[float]] | None
    """Per non-empty bin of `CALIBRATION_BINS` equal-width bins of the predicted probability:
    `predicted` (mean), `observed` (share positive), `count`; None without `predict_proba`."""


CALIBRATION_BINS = 10
ROC_STEP = 0.005


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    details: ModelDetails
    narrative: Narrative
    structure: list[PipelineStep]
    training: TrainingFacts
    evaluation: DatasetFacts
    label: str
    positive_label: Any
    confidence: float
    resamples: int
    seed: int
    metrics: dict[str, Estimate | None]
    diagnostics: Diagnostics
    fairness: list[AttributeFairness]
    findings: list[str]
    """Caveats derived from the numbers (see `FOUR_FIFTHS`, `WIDE_INTERVAL`)."""
    generated: str
    generator: dict[str, str]

    def identity(self) -> dict[str, Any]:
        """The model as audit records name it (`event.model`)."""
        return {"name": self.details.name, "version": self.details.version,
                "fingerprint": self.details.fingerprint, "class": self.details.model_class,
                "framework": self.details.framework}

    def headline(self) -> dict[str, Any]:
        """What the `model_card` audit record states besides the files' hashes."""
        return {
            "training_record": asdict(self.training.record),
            "evaluation_data": {"source": self.evaluation.source,
                                "sha256": self.evaluation.sha256, "rows": self.evaluation.rows},
            "artifact": self.details.artifact,
            "confidence": self.confidence,
            "metrics": {name: None if estimate is None else
                        {"value": estimate.value, "low": estimate.low, "high": estimate.high}
                        for name, estimate in self.metrics.items()},
            "fairness": {attribute.attribute: {
                "demographic_parity_difference": attribute.demographic_parity_difference,
                "demographic_parity_ratio": attribute.demographic_parity_ratio,
                "equalized_odds_difference": attribute.equalized_odds_difference,
            } for attribute in self.fairness},
        }

    def to_json(self) -> dict[str, Any]:
        return to_json_data(asdict(self))


def build_model_card(model: Any, training_record: StoredRecord, eval_frame: pd.DataFrame,
                     label: str, sensitive: Sequence[str], *, name: str,
                     version: str | None = None, features: Sequence[str] | None = None,
                     eval_source: str | Path | DataSource | None = None,
                     train_frame: pd.DataFrame | None = None,
                     train_source: str | Path | DataSource | None = None,
                     artifact: str | Path | None = None,
                     narrative: Narrative | None = None, positive_label: Any = 1,
                     confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = SEED) -> ModelCard:
    """Evaluate a fitted binary classifier on `eval_frame` and document it.

    `training_record` (see `find_training_record`) must be the record of this very model: its
    fitted-state fingerprint is checked, so a card never pairs one model's training with
    another's numbers. `eval_frame` holds the model's input columns (`features`, by default
    the ones it was fitted on), the true `label` and the `sensitive` attributes the fairness
    analysis slices by. `train_frame` (the frame the model was fitted on, with its label) adds
    the training file's lineage and checks it against the record's fingerprints.

    The evaluation calls the model: with the scikit-learn instrumentation on, each evaluation row
    would be recorded as a decision, so evaluate with it off (as `otel-ai-audit document` does).
    """
    model_fingerprint = fingerprint(model)
    recorded = training_record.event.get("model", {}).get("fingerprint")
    if recorded != model_fingerprint:
        raise ValueError(f"training record {training_record.ref.id} is of the model with "
                         f"fingerprint {recorded}, not of this one ({model_fingerprint})")
    features = list(features if features is not None else _fitted_features(model))
    classes = list(getattr(model, "classes_", []))
    if len(classes) != 2 or positive_label not in classes:
        raise ValueError(f"model cards cover binary classifiers with the positive label "
                         f"{positive_label!r}; the model's classes are {classes}")
    inputs = eval_frame[features]
    predicted = model.predict(inputs)
    truth = eval_frame[label].to_numpy()
    scores = _positive_scores(model, inputs, classes.index(positive_label))
    metrics = classification_metrics(
        truth, predicted, scores, positive_label=positive_label, confidence=confidence,
        resamples=resamples, seed=seed)
    negative_label = next(value for value in classes if value != positive_label)
    fairness = fairness_report(eval_frame, sensitive, truth, predicted,
                               positive_label=positive_label, confidence=confidence)
    training = _training_facts(model, training_record, features, label, train_frame,
                               train_source)
    return ModelCard(
        details=ModelDetails(
            name=name, version=version or model_fingerprint[:12],
            model_class=estimator_name(model), framework="sklearn",
            fingerprint=model_fingerprint,
            artifact={"file": Path(artifact).name, "sha256": sha256_of(Path(artifact))}
            if artifact is not None else None),
        narrative=narrative or Narrative(),
        structure=model_structure(model),
        training=training,
        evaluation=describe_dataset(eval_frame, features, label, eval_source),
        label=label, positive_label=positive_label, confidence=confidence,
        resamples=resamples, seed=seed, metrics=metrics,
        diagnostics=_diagnostics(truth, predicted, scores, (negative_label, positive_label),
                                 probabilities=hasattr(model, "predict_proba")),
        fairness=fairness,
        findings=_findings(fairness, features, training, confidence),
        generated=rfc3339_from_ns(time.time_ns()),
        generator=_generator())


def _fitted_features(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise ValueError("the model was not fitted on a DataFrame, so its input columns are "
                         "unknown: pass features=[...]")
    return [str(name) for name in names]


def _positive_scores(model: Any, inputs: pd.DataFrame, positive: int) -> Any:
    """Scores ranking rows by the positive class, for ROC AUC; None if the model has none."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(inputs)[:, positive]
    if hasattr(model, "decision_function"):
        scores = model.decision_function(inputs)
        return scores if positive == 1 else -scores
    return None


def _diagnostics(truth: Any, predicted: Any, scores: Any, labels: tuple[Any, Any], *,
                 probabilities: bool) -> Diagnostics:
    from sklearn.metrics import confusion_matrix, roc_curve

    actual = np.asarray(truth) == labels[1]
    roc = calibration = None
    if scores is not None:
        fpr, tpr, _ = roc_curve(actual, scores)
        kept = [0]
        for point in range(1, len(fpr) - 1):
            last = kept[-1]
            if max(fpr[point] - fpr[last], tpr[point] - tpr[last]) >= ROC_STEP:
                kept.append(point)
        kept.append(len(fpr) - 1)
        roc = {"fpr": fpr[kept].tolist(), "tpr": tpr[kept].tolist()}
    if scores is not None and probabilities:
        bins = np.searchsorted(np.linspace(0, 1, CALIBRATION_BINS + 1)[1:-1], scores)
        count = np.bincount(bins, minlength=CALIBRATION_BINS)
        kept = count > 0
        calibration = {
            "predicted": (np.bincount(bins, scores, CALIBRATION_BINS)[kept] / count[kept]).tolist(),
            "observed": (np.bincount(bins, actual, CALIBRATION_BINS)[kept] / count[kept]).tolist(),
            "count": count[kept].tolist()}
    return Diagnostics(labels, confusion_matrix(truth, predicted, labels=list(labels)).tolist(),
                       roc, calibration)


def _training_facts(model: Any, record: StoredRecord, features: list[str], label: str,
                    frame: pd.DataFrame | None,
                    source: str | Path | DataSource | None) -> TrainingFacts:
    training = record.event.get("training", {})
    data = training.get("data", {})
    described = (describe_dataset(frame, features, label, source)
                 if frame is not None else None)
    recorded = training.get("hyperparameters", {})
    chosen = set(_set_parameters(model))
    return TrainingFacts(
        record=record.ref, time=record.event.get("time", ""),
        duration_ms=training.get("duration_ms"),
        hyperparameters={key: value for key, value in recorded.items() if key in chosen},
        parameters_at_default=sum(1 for key in recorded if key not in chosen
                                  and key not in _structural(model)),
        features=data.get("features"), target=data.get("target"), data=described,
        data_matches_record=None if described is None else (
            described.features == data.get("features") and described.target == data.get("target")))


def _set_parameters(model: Any) -> Iterator[str]:
    """The names, as `get_params(deep=True)` gives them, of the parameters of `model` and of the
    estimators nested in it that differ from the default of their estimator's constructor
    (compared as scikit-learn's own repr does: by repr, NaN equal to NaN). Parameters that hold
    estimators (Pipeline steps, transformers) are the structure, not parameters: left out."""
    for prefix, estimator in _estimators(model):
        constructor = type(estimator).__init__
        constructor = getattr(constructor, "deprecated_original", constructor)  # @deprecated
        defaults = {name: parameter.default for name, parameter in
                    inspect.signature(constructor).parameters.items()}
        for name, value in estimator.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            if not _holds_estimators(value) and (default is inspect.Parameter.empty
                                                 or not _same(value, default)):
                yield prefix + name


def _structural(model: Any) -> set[str]:
    """Parameter names that hold estimators: the structure of the model, not parameters."""
    return {name for name, value in model.get_params(deep=True).items()
            if _holds_estimators(value)}


def _estimators(model: Any) -> Iterator[tuple[str, Any]]:
    """`model` and every estimator nested in it, each with the prefix of its parameter names."""
    yield "", model
    for name, value in model.get_params(deep=True).items():
        if hasattr(value, "get_params") and not isinstance(value, type):
            yield f"{name}__", value


def _holds_estimators(value: Any) -> bool:
    """An estimator, or a list or tuple with one in it (Pipeline steps, transformers)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_estimators(item) for item in value)
    return hasattr(value, "get_params") and not isinstance(value, type)


def _same(value: Any, default: Any) -> bool:
    both_nan = all(isinstance(item, float) and np.isnan(item) for item in (value, default))
    return both_nan or repr(value) == repr(default)


def _findings(fairness: list[AttributeFairness], features: list[str], training: TrainingFacts,
              confidence: float) -> list[str]:
    findings = []
    if training.data_matches_record is False:
        findings.append("The training file described here is not the data of the recorded fit: "
                        "its fingerprints differ from the training record's.")
    used = [attribute.attribute for attribute in fairness if attribute.attribute in features]
    if used:
        findings.append(f"{', '.join(used)} {'is an input' if len(used) == 1 else 'are inputs'} "
                        "of the model: its decisions can depend on them directly, not only "
                        "through correlated features.")
    for attribute in fairness:
        findings.extend(_disparity(attribute))
        for piece in attribute.slices:
            rate, width = _widest(piece)
            if width > WIDE_INTERVAL:
                findings.append(_uncertainty(attribute.attribute, piece, rate, confidence))
    return findings


def _disparity(attribute: AttributeFairness) -> list[str]:
    ratio = attribute.demographic_parity_ratio
    if ratio is None or ratio >= FOUR_FIFTHS:
        return []
    by_rate = sorted(attribute.slices, key=lambda piece: piece.selection_rate.value)
    low, high = by_rate[0], by_rate[-1]
    return [f"{attribute.attribute}: demographic-parity ratio {ratio:.2f}, below the "
            f"{FOUR_FIFTHS} of the four-fifths rule of thumb: the model selects {low.value} at "
            f"{low.selection_rate.value:.3f} and {high.value} at "
            f"{high.selection_rate.value:.3f}."]


def _uncertainty(attribute: str, piece: SliceMetrics, rate: str, confidence: float) -> str:
    estimate = getattr(piece, rate)
    return (f"{attribute} = {piece.value}: {piece.count} evaluation rows; its {_RATES[rate]} has "
            f"the {confidence:.0%} interval [{estimate.low:.3f}, {estimate.high:.3f}]: compare "
            "its rates only with their intervals.")


def _widest(piece: SliceMetrics) -> tuple[str, float]:
    """The slice rate with the widest interval, and that width."""
    widths = {name: estimate.high - estimate.low for name in _RATES
              if (estimate := getattr(piece, name)) is not None
              and estimate.high is not None and estimate.low is not None}
    name = max(widths, key=widths.__getitem__)
    return name, widths[name]


def _generator() -> dict[str, str]:
    import sklearn

    return {"otel-ai-audit": __version__, "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__, "python": platform.python_version()}
