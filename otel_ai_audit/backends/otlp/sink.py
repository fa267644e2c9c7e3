"""The OTLP sink: sealed records, checkpoints, anchors and keys as spans (`layout`) to an
OpenTelemetry Collector.

The records are already sealed in the store; this sink only carries them, through the SDK's
own OTLP exporter (`client`). The export's result is checked: a failed export raises
`DeliveryError` and the shipper retries (the SDK exporter's own retries happen inside one
attempt). The Collector answers once the spans are in its pipeline: for nothing to be lost
there, the audit pipeline must have no batch processor and a persistent `sending_queue`
(collector_config/otelcol-gateway.yaml).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.backends.otlp import layout
from otel_ai_audit.backends.otlp.client import span_exporter
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.schema import parse_header
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import StoredAnchor
from otel_ai_audit.version import __version__

RESOURCE = Resource({"service.name": layout.SERVICE_NAME,
                     layout.PIPELINE: layout.PIPELINE_VALUE})
_SCOPE = InstrumentationScope(layout.SCOPE_NAME, __version__)


class OtlpSink:
    """Exports to one Collector endpoint through an SDK `SpanExporter`."""

    kind = "otlp"

    def __init__(self, exporter: SpanExporter, name: str, *, batch_size: int = 1000) -> None:
        self.exporter = exporter
        self.name = name
        self.batch_size = batch_size
        """Spans per export: a few hundred KB, under the Collector's 4 MiB gRPC limit."""

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> OtlpSink:
        if not settings.otlp_endpoint:
            raise ValueError("no OTLP endpoint configured")
        return cls.connect(settings.otlp_endpoint, settings.otlp_protocol,
                           settings.otlp_headers)

    @classmethod
    def connect(cls, endpoint: str, protocol: str = "grpc",
                headers: str | None = None, timeout: float = 10.0) -> OtlpSink:
        """A sink exporting to `endpoint` (`client.span_exporter`)."""
        exporter, endpoint = span_exporter(endpoint, protocol, headers, timeout)
        return cls(exporter, f"otlp:{protocol}:{endpoint}")

    # --- Sink ------------------------------------------------------------------------------

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._export([record_span(record) for record in batch])

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._export([checkpoint_span(signed) for signed in batch])

    def send_keys(self, keys: Mapping[str, str]) -> None:
        self._export([_span("key", layout.key_id(key_id), time.time_ns(),
                            {layout.KEY_ID: key_id, layout.KEY_PEM: pem})
                      for key_id, pem in keys.items()])

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        spans = []
        for anchor in batch:
            fields = anchor_fields(anchor)
            spans.append(_span("anchor",
                               layout.anchor_id(fields["anchor.store_id"], anchor.seq),
                               fields["anchor.issued_at_ns"], {
                                   layout.ANCHOR_PUBLISHED: published_body(anchor).decode("utf-8"),
                                   **{layout.ANCHOR_PREFIX + name: value
                                      for name, value in fields.items()
                                      if name != "anchor.issued_at_ns"}}))
        self._export(spans)

    def close(self) -> None:
        self.exporter.shutdown()

    def _export(self, spans: list[ReadableSpan]) -> None:
        """Export in batches, in order; `DeliveryError` names the spans from the first batch
        that failed on (the Collector took all or none of a batch)."""
        for start in range(0, len(spans), self.batch_size):
            if self.exporter.export(spans[start:start + self.batch_size]) \
                    is not SpanExportResult.SUCCESS:
                raise DeliveryError(f"the OTLP export to {self.name} failed (see the "
                                    "exporter's log above)", range(start, len(spans)))


def record_span(record: SealedRecord) -> ReadableSpan:
    header = parse_header(record.data)
    attributes: dict[str, Any] = {layout.CHAIN_ID: record.chain_id,
                                  layout.CHAIN_SEQ: record.seq, layout.EVENT_TYPE: record.type}
    try:
        attributes[layout.RECORD] = record.data.decode("utf-8")
    except UnicodeDecodeError:
        attributes[layout.RECORD_BASE64] = base64.b64encode(record.data).decode("ascii")
    return _span("record", layout.record_id(record.chain_id, record.seq),
                 header.logged_ns if header is not None else time.time_ns(), attributes,
                 record.chain_id)


def checkpoint_span(signed: SignedCheckpoint) -> ReadableSpan:
    try:
        issued = Checkpoint.from_payload(signed.payload).issued_at_ns
    except ValueError:
        issued = time.time_ns()  # shipped as stored: the verifier reports it as malformed
    return _span("checkpoint", layout.checkpoint_id(signed.chain_id, signed.index), issued, {
        layout.CHAIN_ID: signed.chain_id,
        layout.CHECKPOINT_INDEX: signed.index, layout.CHECKPOINT_SIZE: signed.size,
        layout.CHECKPOINT_KEY_ID: signed.key_id,
        layout.CHECKPOINT_PAYLOAD: base64.b64encode(signed.payload).decode("ascii"),
        layout.CHECKPOINT_SIGNATURE: base64.b64encode(signed.signature).decode("ascii"),
    }, signed.chain_id)


def _span(kind: str, document_id: str, time_ns: int, attributes: dict[str, Any],
          chain_id: str = "") -> ReadableSpan:
    """A finished span carrying one item of `kind`, with deterministic ids: the trace is the
    chain, the span the item."""
    digest = hashlib.sha256(document_id.encode()).digest()
    try:
        trace_id = int(chain_id, 16) if len(chain_id) == 32 else 0
    except ValueError:
        trace_id = 0
    context = SpanContext(trace_id=trace_id or int.from_bytes(digest[8:24], "big") or 1,
                          span_id=int.from_bytes(digest[:8], "big") or 1, is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(layout.span_name(kind), context, resource=RESOURCE,
                        attributes={layout.KIND: kind, **attributes,
                                    layout.DOCUMENT_ID: document_id},
                        kind=SpanKind.INTERNAL, start_time=time_ns, end_time=time_ns,
                        instrumentation_scope=_SCOPE)
