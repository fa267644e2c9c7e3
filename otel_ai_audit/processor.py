"""The audit span processor: turns ended audit spans into records for the writer.

`on_end` receives a read-only span, so chain fields cannot live on it: the processor looks up
the decision batch the instrumentation registered for that span and hands it to the writer's
queue. That is all it does on the calling thread; hashing, chaining and persistence happen on
the writer thread.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_ai_audit.pipeline.writer import AuditWriter, DeferredEvents

logger = logging.getLogger(__name__)


class _SpanRecords:
    """A span's deferred records, given the span's identity when built (off the hot path)."""

    __slots__ = ("records", "trace_id", "span_id", "resource")

    def __init__(self, records: DeferredEvents, trace_id: int, span_id: int,
                 resource: Any) -> None:
        self.records, self.trace_id, self.span_id, self.resource = (
            records, trace_id, span_id, resource)

    def build(self) -> list[dict[str, Any]]:
        self.records.trace = {  # type: ignore[attr-defined]
            "trace_id": f"{self.trace_id:032x}", "span_id": f"{self.span_id:016x}"}
        service = self.resource.attributes.get("service.name")
        if service is not None:
            self.records.service = {"name": str(service)}  # type: ignore[attr-defined]
        return self.records.build()


class AuditSpanProcessor(SpanProcessor):
    def __init__(self, writer: AuditWriter) -> None:
        self.writer = writer
        self._pending: dict[int, DeferredEvents] = {}
        self.errors = 0

    def register(self, span_id: int, batch: DeferredEvents) -> None:
        """Attach the records of a span that is about to end (built later, off-thread)."""
        self._pending[span_id] = batch

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        batch = self._pending.pop(context.span_id, None)
        if batch is None:
            return
        try:
            self.writer.submit(_SpanRecords(batch, context.trace_id, context.span_id,
                                            span.resource))
        except Exception:  # noqa: BLE001 - never raise into the application
            self.errors += 1
            logger.exception("otel-ai-audit: could not queue an audit record")

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.writer.flush(timeout_millis / 1000)

    def submit_event(self, event: dict[str, Any]) -> None:
        self.writer.submit(event)
