"""The OTLP sink: sealed records, checkpoints and keys as spans to an OpenTelemetry Collector.

The records are already sealed in the store; this sink only carries them. Each becomes one
span (exported with the SDK's own OTLP exporter, gRPC or HTTP) that holds the exact canonical
bytes, so whatever the Collector routes them to (Elasticsearch, Splunk HEC, a file) keeps a
verifiable copy:

* `ai_audit.record`: the canonical JSON text (or `ai_audit.record.base64` for bytes that are
  not UTF-8: a write torn by a crash, shipped as stored for the verifier to see);
* `ai_audit.chain.id`, `ai_audit.chain.seq`, `ai_audit.event.type`;
* `elasticsearch.document_id` = "<chain id>:<seq>", which the contrib elasticsearchexporter
  takes as the document id (`traces_dynamic_id`), so a span sent twice is one document.

Checkpoints (`ai_audit.checkpoint.*`, payload and signature base64) and public keys
(`ai_audit.key.*`) travel the same way, with ids "<chain id>:checkpoint:<index>" and
"key:<key id>". Every span's resource carries `ai_audit.pipeline` = "audit", the mark a
Collector routes on; the trace id is the chain id and the span id derives from the document
id, so a repeat is the same span.

The export's result is checked: a failed export raises `DeliveryError` and the shipper retries
(the SDK exporter's own retries happen inside one attempt). The Collector answers once the
spans are in its pipeline: for nothing to be lost there, the audit pipeline must have no batch
processor and a persistent `sending_queue` (collector_config/otelcol-gateway.yaml).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.util.re import parse_env_headers

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.schema import parse_header
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import SealedRecord, StoredAnchor
from otel_ai_audit.version import __version__

PIPELINE = "ai_audit.pipeline"
"""Resource attribute marking audit spans (value "audit") for a Collector to route on."""
KIND = "ai_audit.kind"
RECORD = "ai_audit.record"
RECORD_BASE64 = "ai_audit.record.base64"
CHAIN_ID = "ai_audit.chain.id"
CHAIN_SEQ = "ai_audit.chain.seq"
EVENT_TYPE = "ai_audit.event.type"
CHECKPOINT_INDEX = "ai_audit.checkpoint.index"
CHECKPOINT_SIZE = "ai_audit.checkpoint.size"
CHECKPOINT_KEY_ID = "ai_audit.checkpoint.key_id"
CHECKPOINT_PAYLOAD = "ai_audit.checkpoint.payload"
CHECKPOINT_SIGNATURE = "ai_audit.checkpoint.signature"
ANCHOR_PUBLISHED = "ai_audit.anchor.published"
"""An anchor span's published object (canonical JSON: signed payload, signature, token)."""
KEY_ID = "ai_audit.key.id"
KEY_PEM = "ai_audit.key.pem"
DOCUMENT_ID = "elasticsearch.document_id"

RESOURCE = Resource({"service.name": "otel-ai-audit", PIPELINE: "audit"})
_SCOPE = InstrumentationScope("otel_ai_audit.sinks.otlp", __version__)


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
        """An exporter for `endpoint` ("http://collector:4317"; an http:// gRPC endpoint is
        plaintext), protocol "grpc" or "http/protobuf", headers "k=v,k2=v2" as OTel's."""
        parsed = parse_env_headers(headers or "", liberal=True)
        exporter: SpanExporter
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            exporter = GrpcExporter(endpoint=endpoint, headers=parsed, timeout=timeout,
                                    insecure=urlsplit(endpoint).scheme == "http")
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            if urlsplit(endpoint).path in ("", "/"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            exporter = HttpExporter(endpoint=endpoint, headers=parsed, timeout=timeout)
        else:
            raise ValueError(f"OTLP protocol {protocol!r} is not grpc or http/protobuf")
        return cls(exporter, f"otlp:{protocol}:{endpoint}")

    # --- Sink ------------------------------------------------------------------------------

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._export([record_span(record) for record in batch])

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._export([checkpoint_span(signed) for signed in batch])

    def send_keys(self, keys: Mapping[str, str]) -> None:
        self._export([_span("ai_audit.key", f"key:{key_id}", time.time_ns(),
                            {KIND: "key", KEY_ID: key_id, KEY_PEM: pem})
                      for key_id, pem in keys.items()])

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        spans = []
        for anchor in batch:
            fields = anchor_fields(anchor)
            spans.append(_span("ai_audit.anchor",
                               f"anchor:{fields['anchor.store_id']}:{anchor.seq}",
                               fields["anchor.issued_at_ns"], {
                                   KIND: "anchor", ANCHOR_PUBLISHED:
                                   published_body(anchor).decode("utf-8"),
                                   **{f"ai_audit.{name}": value for name, value in fields.items()
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
    attributes: dict[str, Any] = {KIND: "record", CHAIN_ID: record.chain_id,
                                  CHAIN_SEQ: record.seq, EVENT_TYPE: record.type}
    try:
        attributes[RECORD] = record.data.decode("utf-8")
    except UnicodeDecodeError:
        attributes[RECORD_BASE64] = base64.b64encode(record.data).decode("ascii")
    return _span("ai_audit.record", f"{record.chain_id}:{record.seq}",
                 header.logged_ns if header is not None else time.time_ns(), attributes,
                 record.chain_id)


def checkpoint_span(signed: SignedCheckpoint) -> ReadableSpan:
    try:
        issued = Checkpoint.from_payload(signed.payload).issued_at_ns
    except ValueError:
        issued = time.time_ns()  # shipped as stored: the verifier reports it as malformed
    return _span("ai_audit.checkpoint", f"{signed.chain_id}:checkpoint:{signed.index}", issued,
                 {KIND: "checkpoint", CHAIN_ID: signed.chain_id,
                  CHECKPOINT_INDEX: signed.index, CHECKPOINT_SIZE: signed.size,
                  CHECKPOINT_KEY_ID: signed.key_id,
                  CHECKPOINT_PAYLOAD: base64.b64encode(signed.payload).decode("ascii"),
                  CHECKPOINT_SIGNATURE: base64.b64encode(signed.signature).decode("ascii")},
                 signed.chain_id)


def _span(name: str, document_id: str, time_ns: int, attributes: dict[str, Any],
          chain_id: str = "") -> ReadableSpan:
    """A finished span with deterministic ids: the trace is the chain, the span the item."""
    digest = hashlib.sha256(document_id.encode()).digest()
    try:
        trace_id = int(chain_id, 16) if len(chain_id) == 32 else 0
    except ValueError:
        trace_id = 0
    context = SpanContext(trace_id=trace_id or int.from_bytes(digest[8:24], "big") or 1,
                          span_id=int.from_bytes(digest[:8], "big") or 1, is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name, context, resource=RESOURCE,
                        attributes={**attributes, DOCUMENT_ID: document_id},
                        kind=SpanKind.INTERNAL, start_time=time_ns, end_time=time_ns,
                        instrumentation_scope=_SCOPE)
