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


class AuditSpanProcessor(SpanProcessor):
    def __init__(self, writer: AuditWriter) -> None:
        self.writer = writer
        self._pending: dict[int, DeferredEvents] = {}
        self.errors = 0

    def register(self, span_id: int, batch: DeferredEvents) -> None:
        """Attach the records of a span that is about to end (built later, off-thread)."""
        self._pending[span_id] = batch

    def discard(self, span_id: int) -> None:
        self._pending.pop(span_id, None)

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
            batch.trace = {"trace_id": f"{context.trace_id:032x}",  # type: ignore[attr-defined]
                           "span_id": f"{context.span_id:016x}"}
            service = span.resource.attributes.get("service.name")
            if service is not None:
                batch.service = {"name": str(service)}  # type: ignore[attr-defined]
            self.writer.submit(batch)
        except Exception:  # noqa: BLE001 - never raise into the application
            self.errors += 1
            logger.exception("otel-ai-audit: could not queue an audit record")

    def shutdown(self) -> None:
        self.writer.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.writer.flush(timeout_millis / 1000)

    def submit_event(self, event: dict[str, Any]) -> None:
        self.writer.submit(event)
