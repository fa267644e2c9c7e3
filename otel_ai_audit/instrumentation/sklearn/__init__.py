"""Zero-code audit of scikit-learn (and scikit-learn-API) estimators.

Patches, with wrapt, the public inference methods (`predict`, `predict_proba`,
`predict_log_proba`, `decision_function`, `score_samples`) and `fit` on every `BaseEstimator`
subclass that defines them, including Pipelines, meta-estimators and third-party estimators
(XGBoost, LightGBM); classes defined later are patched as they are created. Only the outermost
call is recorded: a Pipeline's predict is one decision per row, not one per step.

Never raises into user code: failures of the instrumentation are logged and counted, and the
estimator's own result is returned untouched.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import context, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_ai_audit import fingerprints, semconv
from otel_ai_audit.instrumentation.model_call import (
    InstrumentationErrors,
    RuntimeSource,
    audited_inference,
    runtime_source,
)
from otel_ai_audit.instrumentation.sklearn.identity import (
    estimator_name,
    fingerprint,
    forget_fingerprint,
    identity,
)
from otel_ai_audit.monitoring.profile import (
    ReferenceProfile,
    build_profile,
    profile_options,
    reference_event,
    references,
)
from otel_ai_audit.processor import AuditSpan
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.version import __version__

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

logger = logging.getLogger(__name__)

INFERENCE_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function",
                     "score_samples")
TRAINING_METHODS = ("fit",)

_in_model_call: ContextVar[bool] = ContextVar("otel_ai_audit_sklearn_call", default=False)

fingerprints.register("sklearn", lambda model: hasattr(model, "get_params"), fingerprint)


def _subclasses(root: type) -> Iterator[type]:
    seen: set[type] = set()
    stack = [root]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


class SklearnInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `sklearn`. `instrument()` takes
    `tracer_provider=` and `audit_runtime=` (see `otel_ai_audit.instrumentation.model_call`)."""

    _patched: list[tuple[type, str]] = []
    _tracer: trace.Tracer | None = None
    _runtime: RuntimeSource | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("scikit-learn >= 1.2",)

    def _instrument(self, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        self._tracer = trace.get_tracer(__name__, __version__,
                                        tracer_provider=kwargs.get("tracer_provider"))
        self._runtime = runtime_source(kwargs)
        self._patched = []
        for cls in [BaseEstimator, *_subclasses(BaseEstimator)]:
            self._patch_class(cls)
        instrumentor = self

        def init_subclass(cls: type, **class_kwargs: Any) -> None:
            super(BaseEstimator, cls).__init_subclass__(**class_kwargs)
            instrumentor._patch_class(cls)

        BaseEstimator.__init_subclass__ = classmethod(init_subclass)  # type: ignore[assignment]

    def _uninstrument(self, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        if "__init_subclass__" in BaseEstimator.__dict__:
            del BaseEstimator.__init_subclass__
        for cls, name in self._patched:
            unwrap(cls, name)
        self._patched = []

    def _patch_class(self, estimator_class: type) -> None:
        """Patch the methods of the class and of its mixins (which are not estimators)."""
        for cls in estimator_class.__mro__[:-1]:
            self._patch_methods(cls)

    def _patch_methods(self, cls: type) -> None:
        for name in INFERENCE_METHODS + TRAINING_METHODS:
            current = cls.__dict__.get(name)
            if current is None or isinstance(current, wrapt.FunctionWrapper):
                continue
            wrapper = _fit_wrapper(self) if name in TRAINING_METHODS else _predict_wrapper(
                self, name)
            try:
                wrapt.wrap_function_wrapper(cls, name, wrapper)
            except Exception:  # noqa: BLE001 - an odd third-party class must not stop us
                InstrumentationErrors.record(f"patching {cls.__qualname__}.{name}")
                continue
            self._patched.append((cls, name))


def _outermost_audited_call(instrumentor: SklearnInstrumentor) -> AuditRuntime | None:
    """The runtime, when this call is to be audited: instrumented, configured, outermost."""
    source = instrumentor._runtime
    if source is None or _in_model_call.get() or instrumentor._tracer is None:
        return None
    return source()


def _predict_wrapper(instrumentor: SklearnInstrumentor, operation: str) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        runtime = _outermost_audited_call(instrumentor)
        if runtime is None:
            return wrapped(*args, **kwargs)
        token = _in_model_call.set(True)
        try:
            return audited_inference(
                instrumentor._tracer, runtime, framework="sklearn", operation=operation,
                model=instance, identify=_identify, features=args[0] if args else kwargs.get("X"),
                call=lambda: wrapped(*args, **kwargs))
        finally:
            _in_model_call.reset(token)

    return wrapper


def _identify(estimator: Any, name: str | None, version: str | None) -> dict[str, Any]:
    return identity(estimator, name, version)


@dataclass
class TrainingRecord:
    """A `fit`: estimator, hyper-parameters, data fingerprint, duration, fitted fingerprint."""

    estimator: Any
    features: Any
    target: Any
    started_ns: int
    ended_ns: int
    trace: dict[str, str] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)

    profile_options: dict[str, int] = field(default_factory=dict)
    """`bins`/`top_categories` of the reference profile taken of the training data."""

    def build(self) -> list[dict[str, Any]]:
        model = {"class": estimator_name(self.estimator), "framework": "sklearn",
                 "fingerprint": fingerprint(self.estimator)}
        training = new_event(
            EventType.TRAINING, time_ns=self.ended_ns, model=model,
            training={"hyperparameters": _params(self.estimator),
                      "data": {"features": data_fingerprint(self.features),
                               "target": data_fingerprint(self.target)},
                      "duration_ms": (self.ended_ns - self.started_ns) / 1e6},
            trace=self.trace, service=self.service)
        profile = self._profile(model["fingerprint"])
        if profile is None:
            return [training]
        references.register(profile)
        return [training, reference_event(profile, model, self.ended_ns)]

    def _profile(self, digest: str) -> ReferenceProfile | None:
        """The training data's reference profile, with the fitted model's predictions on it
        (made here, on the writer thread, and not audited as decisions); none when monitoring
        is off (`monitor_features=none`): no view would use it, and it holds the data's bins."""
        if (self.features is None or not hasattr(self.estimator, "predict")
                or references.selection == frozenset()):
            return None
        token = _in_model_call.set(True)
        try:
            return build_profile(digest, self.features, self.estimator.predict(self.features),
                                 classes=getattr(self.estimator, "classes_", ()),
                                 **self.profile_options)
        except Exception as error:  # noqa: BLE001 - odd data costs the profile, not the record
            logger.warning("otel-ai-audit: no reference profile (drift monitoring) for %s: %s",
                           estimator_name(self.estimator), error)
            return None
        finally:
            _in_model_call.reset(token)


def _params(estimator: Any) -> dict[str, Any]:
    params = estimator.get_params(deep=True)
    return {key: (estimator_name(value) if hasattr(value, "get_params") else to_json_data(value))
            for key, value in params.items()}


def data_fingerprint(data: Any) -> dict[str, Any] | None:
    """SHA-256 and shape of training data (a DataFrame by its content and column names)."""
    if data is None:
        return None
    digest = hashlib.sha256()
    if type(data).__name__ in ("DataFrame", "Series"):
        import pandas as pd

        columns = data.columns if hasattr(data, "columns") else [data.name]
        digest.update(repr(list(columns)).encode())
        digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    elif hasattr(data, "tobytes"):
        digest.update(data.tobytes())
    else:
        from otel_ai_audit.record.canonical import canonical_json

        digest.update(canonical_json(to_json_data(data)))
    shape = getattr(data, "shape", None)
    return {"sha256": digest.hexdigest(),
            "shape": list(shape) if shape is not None else [len(data)]}


def _fit_wrapper(instrumentor: SklearnInstrumentor) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        runtime = _outermost_audited_call(instrumentor)
        if runtime is None:
            return wrapped(*args, **kwargs)
        token = _in_model_call.set(True)
        parent = context.get_current()
        started = time.time_ns()
        try:
            result = wrapped(*args, **kwargs)
        finally:
            _in_model_call.reset(token)
            forget_fingerprint(instance)
        try:
            features = args[0] if args else kwargs.get("X")
            target = args[1] if len(args) > 1 else kwargs.get("y")
            record = TrainingRecord(instance, features, target, started, time.time_ns(),
                                    profile_options=profile_options(runtime.settings))
            audit = AuditSpan(instrumentor._tracer, "sklearn fit", parent, started, {
                semconv.EVENT_TYPE: EventType.TRAINING.value,
                semconv.MODEL_CLASS: estimator_name(instance),
                semconv.MODEL_FRAMEWORK: "sklearn"}, record, runtime.writer.service_name)
            audit.end_ns = record.ended_ns
            runtime.processor.audit(audit)
        except Exception:  # noqa: BLE001
            InstrumentationErrors.record("recording the training record", runtime)
        return result

    return wrapper
