"""The audited model call shared by every framework instrumentation.

Hot path: resolve the model's identity (cached fingerprint), allocate decision ids, note the
parent context and the time, call the model, and queue the decision batch with the facts of its
span. The writer thread builds the records and emits the span later (`AuditSpan`). Any failure
of ours is logged and counted; the model's result or exception reaches the caller untouched.

The instrumentations reach the audit runtime only through what `instrument()` is given, as
opentelemetry-python-contrib's instrumentors take `tracer_provider=`: `audit_runtime=` is an
`AuditRuntime`, or a callable returning the current one (None while none is configured); by
default, the process's runtime (`otel_ai_audit.configure`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context, trace

from otel_ai_audit import semconv
from otel_ai_audit.decisions import DecisionBatch, new_decision_ids, row_count
from otel_ai_audit.instrumentation.context import request_context
from otel_ai_audit.pipeline.writer import Durability
from otel_ai_audit.processor import AuditSpan
from otel_ai_audit.record.schema import EventType, described_time

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

logger = logging.getLogger(__name__)

Result = TypeVar("Result")
Identify = Callable[[Any, "str | None", "str | None"], dict[str, Any]]
RuntimeSource = Callable[[], "AuditRuntime | None"]
"""Asked on every call for the audit runtime to record to (None: record nothing)."""


def runtime_source(kwargs: Mapping[str, Any]) -> RuntimeSource:
    """The `audit_runtime` an instrumentor's `instrument(**kwargs)` was given, as a callable;
    the process's runtime when none was (it follows `configure()` and `shutdown()`). A given
    callable that fails counts as an instrumentation failure and records nothing."""
    given = kwargs.get("audit_runtime")
    if given is None:
        from otel_ai_audit.runtime import get_runtime

        return get_runtime
    if not callable(given):
        return lambda: given

    def guarded() -> AuditRuntime | None:
        try:
            runtime: AuditRuntime | None = given()
        except Exception:  # noqa: BLE001
            InstrumentationErrors.record("finding the audit runtime (audit_runtime=)")
            return None
        return runtime

    return guarded


class InstrumentationErrors:
    """Count of failures inside the instrumentation (each also logged)."""

    count = 0

    @classmethod
    def record(cls, what: str, runtime: AuditRuntime | None = None) -> None:
        """Log and count a failure; with `runtime`, a decision went unrecorded, which the
        signed checkpoints then count as failed."""
        cls.count += 1
        if runtime is not None:
            runtime.writer.count_failed()
        logger.warning("otel-ai-audit instrumentation: %s failed (the model call was not "
                       "affected)", what, exc_info=True)


def audited_inference(tracer: trace.Tracer, runtime: AuditRuntime, *, framework: str,
                      operation: str, model: Any, identify: Identify, features: Any,
                      call: Callable[[], Result],
                      snapshot: Callable[[Any], Any] | None = None) -> Result:
    """Run `call()` (the model) as one audited decision per input row.

    `snapshot` copies inputs/outputs that the caller could mutate before the writer thread
    reads them (tensors); arrays and frames are read as they are.
    """
    started = time.time_ns()
    audit = None
    durability: Durability = "async"
    try:
        info = runtime.model_info(model)
        settings = runtime.settings
        identity = identify(model, *info.resolve(settings))
        if info.source is not None:
            identity = {**identity, "source": info.source}
        ids = new_decision_ids(row_count(features))
        risk = info.risk or settings.default_risk
        durability = runtime.durability(info, risk)
        batch = DecisionBatch(capture=runtime.capture, model=identity, operation=operation,
                              inputs=snapshot(features) if snapshot else features, ids=ids,
                              end_time_ns=started, risk=risk, risk_fn=info.risk_fn,
                              mode=settings.decision_mode)
        audit = AuditSpan(tracer, f"{framework} {operation}", context.get_current(), started, {
            semconv.EVENT_TYPE: EventType.INFERENCE.value,
            semconv.MODEL_NAME: identity["name"],
            semconv.MODEL_VERSION: identity["version"],
            semconv.MODEL_FINGERPRINT: identity["fingerprint"],
            semconv.MODEL_FRAMEWORK: framework,
            semconv.OPERATION: operation,
            semconv.DECISION_ID: ids.batch_id,
            semconv.DECISION_COUNT: ids.count,
            semconv.RISK_LEVEL: risk,
        }, batch, runtime.writer.service_name)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("preparing the audit record", runtime)
    try:
        result = call()
    except BaseException as error:
        _finish(runtime, audit, None, error, durability)
        raise
    if audit is not None:
        _finish(runtime, audit, snapshot(result) if snapshot else result, None, durability)
    return result


def _finish(runtime: AuditRuntime, audit: AuditSpan | None, outputs: Any,
            error: BaseException | None, durability: Durability) -> None:
    if audit is None:
        return
    try:
        ended = time.time_ns()
        batch: DecisionBatch = audit.records  # type: ignore[assignment]
        batch.outputs, batch.end_time_ns, batch.duration_ns = outputs, ended, ended - audit.start_ns
        audit.end_ns = ended
        if error is not None:
            batch.error = type(error).__qualname__
            audit.attributes[semconv.ERROR_TYPE] = batch.error
            audit.error = str(error)[:200]
        batch.context = request_context(batch.record_ids)
        batch.described_time = described_time()
        if batch.described_time is not None:
            audit.attributes[semconv.DESCRIBED_TIME] = batch.described_time
        runtime.processor.audit(audit, durability)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("recording the audit record", runtime)
