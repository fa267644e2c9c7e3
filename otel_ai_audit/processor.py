"""The audit span processor, and the audit spans it emits off the hot path.

An instrumentation hands each audited call to the processor as an `AuditSpan`: the facts of
the span (name, parent context, times, attributes) and its deferred records. The writer thread
later builds the records and emits the span with those same times and parent, so the calling
thread pays for neither the SDK span nor the hashing and chaining. A durable caller builds and
seals the records itself (they must be on disk when it returns) but still leaves the span to the
writer thread: the records carry the trace and span ids chosen for it, which the span gets when
it is emitted (`_PresetIds`). A span that no processor but the audit one would receive (the
provider exports nothing) is not built at all: its records still carry the ids it would have.

Records do not travel through `on_end`: the SDK calls `on_end` only for sampled spans, and an
audit trail must not depend on trace sampling (`OTEL_TRACES_SAMPLER=traceidratio` would
otherwise drop decisions). The processor sits in the TracerProvider so that the provider's
`force_flush` and `shutdown` flush and close the audit chain.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

from otel_ai_audit.pipeline.writer import AuditWriter, Durability

logger = logging.getLogger(__name__)


class TracedEvents(Protocol):
    """Deferred records that carry the trace and service of the span they belong to."""

    trace: dict[str, str]
    service: dict[str, Any]

    def build(self) -> list[dict[str, Any]]: ...


_emitting = threading.local()
"""The (trace id, span id) of the deferred span this thread is emitting, if any."""


class _PresetIds(IdGenerator):
    """A tracer's id generator that gives a deferred span the ids its records already carry,
    while the span is emitted, and otherwise generates as before."""

    def __init__(self, generated: IdGenerator) -> None:
        self.generated = generated

    def generate_span_id(self) -> int:
        ids = getattr(_emitting, "ids", None)
        return self.generated.generate_span_id() if ids is None else int(ids[1])

    def generate_trace_id(self) -> int:
        ids = getattr(_emitting, "ids", None)
        return self.generated.generate_trace_id() if ids is None else int(ids[0])

    def is_trace_id_random(self) -> bool:
        return self.generated.is_trace_id_random()


class AuditSpan:
    """An audited call's span, emitted when its records are built (on the writer thread)."""

    __slots__ = ("tracer", "name", "parent", "start_ns", "end_ns", "attributes", "error",
                 "records", "fallback_service", "ids")

    def __init__(self, tracer: trace.Tracer, name: str, parent: Context, start_ns: int,
                 attributes: dict[str, Any], records: TracedEvents,
                 fallback_service: str) -> None:
        self.tracer, self.name, self.parent, self.start_ns = tracer, name, parent, start_ns
        self.attributes, self.records, self.fallback_service = (
            attributes, records, fallback_service)
        self.end_ns = start_ns
        self.error: str | None = None
        self.ids: tuple[int, int] | None = None
        """Set by `build_records`: the span is still to be emitted, with these ids."""

    def build(self) -> list[dict[str, Any]]:
        """Emit the span, then build the records (which carry its trace and span ids). A span
        no processor but the audit one would receive is not built: the records get its ids."""
        if _unobserved(self.tracer) and self._choose_ids():
            self.ids = None
        else:
            self._emit_span()
        return self.records.build()

    def build_records(self) -> list[dict[str, Any]]:
        """Build the records now and leave the span to `emit`, later and on another thread:
        the records carry the ids chosen here for it. Where the tracer cannot be given ids
        (not the SDK's), emit it now, as `build` does."""
        if not self._choose_ids():
            return self.build()
        if _unobserved(self.tracer):
            self.ids = None
        return self.records.build()

    def _choose_ids(self) -> bool:
        """Choose the span's trace and span ids and give them to its records; False where the
        tracer's id generator is not the SDK's (then the span chooses them as it starts)."""
        generator = getattr(self.tracer, "id_generator", None)
        if not isinstance(generator, IdGenerator):
            return False
        if not isinstance(generator, _PresetIds):
            generator = _PresetIds(generator)
            self.tracer.id_generator = generator  # type: ignore[attr-defined]
        parent = trace.get_current_span(self.parent).get_span_context()
        trace_id = (parent.trace_id if parent.is_valid
                    else generator.generated.generate_trace_id())
        self.ids = trace_id, generator.generated.generate_span_id()
        self.records.trace = {"trace_id": f"{trace_id:032x}", "span_id": f"{self.ids[1]:016x}"}
        self.records.service = {"name": service_name(None, self.tracer, self.fallback_service)}
        return True

    def emit(self) -> None:
        """Emit the span `build_records` left, with the ids its records carry (nothing if it
        was emitted already, by `build`)."""
        if self.ids is not None:
            self._emit_span()

    def _emit_span(self) -> None:
        _emitting.ids = self.ids
        try:
            self._emit()
        except Exception:  # noqa: BLE001 - a tracing failure must not cost the records
            logger.exception("otel-ai-audit: could not emit the span of an audited call")
        finally:
            _emitting.ids = None

    def _emit(self) -> None:
        span = self.tracer.start_span(self.name, context=self.parent, start_time=self.start_ns,
                                      attributes=self.attributes)
        if self.error is not None:
            span.set_status(Status(StatusCode.ERROR, self.error))
        context = span.get_span_context()
        self.records.trace = {"trace_id": f"{context.trace_id:032x}",
                              "span_id": f"{context.span_id:016x}"}
        self.records.service = {"name": service_name(span, self.tracer, self.fallback_service)}
        span.end(end_time=self.end_ns)


def _unobserved(tracer: trace.Tracer) -> bool:
    """Would only audit processors receive this tracer's spans? (An SDK tracer whose provider
    exports nothing.) Building such a span costs as much as sealing its records, for nothing."""
    processors = getattr(getattr(tracer, "span_processor", None), "_span_processors", None)
    return type(processors) is tuple and all(
        isinstance(processor, AuditSpanProcessor) for processor in processors)


def service_name(span: Any, tracer: Any, fallback: str) -> str:
    """`service.name` of the span's resource (or its tracer's, for an unsampled span)."""
    resource = getattr(span, "resource", None) or getattr(tracer, "resource", None)
    name = resource.attributes.get("service.name") if resource is not None else None
    return str(name or fallback)


class AuditSpanProcessor(SpanProcessor):
    def __init__(self, writer: AuditWriter) -> None:
        self.writer = writer

    def audit(self, span: AuditSpan, durability: Durability = "async") -> None:
        """Queue an audited call for the writer: its records, then its span; with `process`
        or `fsync` durability, return once they are committed."""
        self.writer.submit(span, durability)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.writer.flush(timeout_millis / 1000)

    def submit_event(self, event: dict[str, Any]) -> None:
        self.writer.submit(event)
