"""The audited model call shared by every framework instrumentation.

Hot path: resolve the model's identity (cached fingerprint), allocate decision ids, start a span
with the audit attributes, call the model, register the decision batch with the audit processor
and end the span. Building the records happens later on the writer thread. Any failure of ours
is logged and counted; the model's result or exception reaches the caller untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from otel_ai_audit import semconv
from otel_ai_audit.decisions import DecisionBatch, new_decision_ids, row_count
from otel_ai_audit.instrumentation.context import request_context
from otel_ai_audit.record.schema import EventType
from otel_ai_audit.runtime import AuditRuntime

logger = logging.getLogger(__name__)

Result = TypeVar("Result")
Identify = Callable[[Any, "str | None", "str | None"], dict[str, Any]]


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
    span = call_facts = None
    try:
        info = runtime.model_info(model)
        settings = runtime.settings
        identity = identify(model, *info.resolve(settings))
        if info.source is not None:
            identity = {**identity, "source": info.source}
        ids = new_decision_ids(row_count(features))
        risk = info.risk or settings.default_risk
        span = tracer.start_span(f"{framework} {operation}", attributes={
            semconv.EVENT_TYPE: EventType.INFERENCE.value,
            semconv.MODEL_NAME: identity["name"],
            semconv.MODEL_VERSION: identity["version"],
            semconv.MODEL_FINGERPRINT: identity["fingerprint"],
            semconv.MODEL_FRAMEWORK: framework,
            semconv.OPERATION: operation,
            semconv.DECISION_ID: ids.batch_id,
            semconv.DECISION_COUNT: ids.count,
            semconv.RISK_LEVEL: risk,
        })
        call_facts = (identity, ids, risk, info.risk_fn,
                      snapshot(features) if snapshot else features)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("preparing the audit record", runtime)
    try:
        result = call()
    except BaseException as error:
        _finish(runtime, span, call_facts, operation, started, None, error)
        raise
    if call_facts is not None:
        _finish(runtime, span, call_facts, operation, started,
                snapshot(result) if snapshot else result, None)
    return result


def _finish(runtime: AuditRuntime, span: Any, call_facts: tuple[Any, ...] | None,
            operation: str, started: int, outputs: Any, error: BaseException | None) -> None:
    if span is None or call_facts is None:
        return
    try:
        ended = time.time_ns()
        identity, ids, risk, risk_fn, inputs = call_facts
        batch = DecisionBatch(runtime.capture, identity, operation, inputs, outputs, ids, ended,
                              ended - started, risk, risk_fn, runtime.settings.decision_mode)
        if error is not None:
            batch.error = type(error).__qualname__
            span.set_attribute(semconv.ERROR_TYPE, batch.error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        batch.context = request_context(batch.record_ids)
        runtime.processor.register(span.get_span_context().span_id, batch)
        span.end(end_time=ended)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("recording the audit record", runtime)
