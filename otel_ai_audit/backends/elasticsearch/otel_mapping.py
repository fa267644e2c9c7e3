"""The documents the Collector's contrib `elasticsearchexporter` writes for spans in its `otel`
mapping mode, and the index template that makes the gateway's index a data stream.

The gateway (collector_config/otelcol-gateway.yaml, contrib release v0.161.0) sends the audit
spans of `otel_ai_audit.backends.otlp` to the static index `<prefix>-otlp`. In `otel` mode the
exporter sends every bulk request with `require_data_stream=true`, so that name must be a data
stream before the first span arrives: `gateway_template` (installed with the sink's other
templates, `layout.index_templates`).

One document per span (`SerializeSpan` in the exporter's
internal/serializer/otelserializer/traces.go and common.go; the values by
internal/serializer/map.go `WriteValue`):

* `@timestamp`: the start time as "<ms>.<rest of the ns>" (`writeTimestampField`);
* `trace_id`, `span_id`, `parent_span_id`: lower-case hex, left out when all zero;
* `trace_state`, `name`: left out when empty; `kind`: pdata's name ("Internal", "Server",
  ..., "Unspecified");
* `duration`: end minus start, in ns (unsigned);
* `attributes`: the span's attributes under their own dotted names (`ai_audit.record`, ...),
  left out when the span has none; `elasticsearch.document_id` (the `_id` with
  `traces_dynamic_id`), `elasticsearch._index` and `data_stream.*` are not written;
* `dropped_attributes_count`, `dropped_events_count`, `dropped_links_count`: left out when 0;
* `links`: always, an array; `status`: always, with `message` and `code` ("Ok", "Error")
  left out when empty (Unset is written as nothing, as the exporter's own test expects);
* `resource` and `scope`: `schema_url`, `attributes`, `dropped_attributes_count` (and the
  scope's `name`, `version`), each left out when empty;
* `data_stream` only when the index is routed from `data_stream.*` attributes, which a static
  `traces_index` never is. Span events are separate documents; audit spans have none.

`span_documents` builds exactly these from an OTLP export request (what the gateway receives),
so the verifier can be tested on documents in the exporter's shape without the exporter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_ai_audit.backends.elasticsearch import layout
from otel_ai_audit.backends.otlp import layout as otlp
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX, ELASTICSEARCH_RETENTION

ATTRIBUTES = "attributes"
"""A span's attributes in its document (the resource's: `resource.attributes`)."""
RESOURCE = "resource"
UNWRITTEN_ATTRIBUTES = frozenset({
    "data_stream.type", "data_stream.dataset", "data_stream.namespace",
    "elasticsearch.mapping.hints", "elastic.mapping.mode", otlp.DOCUMENT_ID,
    "elasticsearch.document_pipeline", "elasticsearch._index"})
"""Attributes the exporter routes on and leaves out of the document (`writeAttributes`)."""

_SPAN_KINDS = {Span.SPAN_KIND_UNSPECIFIED: "Unspecified", Span.SPAN_KIND_INTERNAL: "Internal",
               Span.SPAN_KIND_SERVER: "Server", Span.SPAN_KIND_CLIENT: "Client",
               Span.SPAN_KIND_PRODUCER: "Producer", Span.SPAN_KIND_CONSUMER: "Consumer"}
_STATUS_CODES = {Status.STATUS_CODE_UNSET: "", Status.STATUS_CODE_OK: "Ok",
                 Status.STATUS_CODE_ERROR: "Error"}

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_LONG = {"type": "long"}
GATEWAY_FIELDS: dict[str, Any] = {
    "@timestamp": {"type": "date_nanos"},
    "trace_id": _KEYWORD, "span_id": _KEYWORD, "parent_span_id": _KEYWORD,
    "name": _KEYWORD, "kind": _KEYWORD, "duration": _LONG,
    ATTRIBUTES: {"type": "object", "subobjects": False, "properties": {
        otlp.KIND: _KEYWORD, otlp.CHAIN_ID: _KEYWORD, otlp.CHAIN_SEQ: _LONG,
        otlp.EVENT_TYPE: _KEYWORD, otlp.CHECKPOINT_INDEX: _LONG, otlp.CHECKPOINT_SIZE: _LONG,
        otlp.CHECKPOINT_KEY_ID: _KEYWORD, otlp.KEY_ID: _KEYWORD}},
    RESOURCE: {"properties": {ATTRIBUTES: {"type": "object", "subobjects": False, "properties": {
        otlp.PIPELINE: _KEYWORD, "service.name": _KEYWORD}}}},
    "scope": {"properties": {"name": _KEYWORD, "version": _KEYWORD}},
}
"""Mapping of the gateway's data stream. Attribute names keep their dots (`subobjects:
false`), as the exporter writes them; `dynamic: false` keeps the rest (the record's bytes,
checkpoint payloads, keys) in `_source` only, so no attribute can break the mapping (a
`ai_audit.record` text beside an `ai_audit.record.base64` would, with objects)."""


def gateway_index(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> str:
    """`<prefix>-otlp`: the gateway's `traces_index` (otel-ai-audit-otlp by default)."""
    layout.index_names(prefix)
    return f"{prefix}-otlp"


def gateway_template(prefix: str = ELASTICSEARCH_INDEX_PREFIX, *,
                     retention: str = ELASTICSEARCH_RETENTION) -> dict[str, Any]:
    """Arguments of `put_index_template` (without the name, `gateway_index`) for the data
    stream the exporter writes to, with the records' retention."""
    index = gateway_index(prefix)
    return {"index_patterns": [index], "priority": 500, "data_stream": {},
            "meta": layout.MANAGED_BY,
            "template": {"mappings": {"dynamic": False, "properties": GATEWAY_FIELDS},
                         "lifecycle": {"data_retention": retention}}}


# --- documents in the exporter's shape -----------------------------------------------------


def span_documents(request: ExportTraceServiceRequest,
                   ) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(`_id`, document) of each span of `request`, as the exporter indexes it with
    `traces_dynamic_id` on: the id is the span's `elasticsearch.document_id`, or None (the
    exporter lets Elasticsearch choose one). ValueError for a span with events, which the
    exporter writes as documents of their own (not built here)."""
    for resource_spans in request.resource_spans:
        resource = _resource(resource_spans.resource, resource_spans.schema_url)
        for scope_spans in resource_spans.scope_spans:
            scope = _scope(scope_spans.scope, scope_spans.schema_url)
            for span in scope_spans.spans:
                if span.events:
                    raise ValueError(f"span {span.name!r} has events: the exporter writes "
                                     "them as separate documents")
                doc_id = next((pair.value.string_value for pair in span.attributes
                               if pair.key == otlp.DOCUMENT_ID), None)
                yield doc_id, span_document(span, resource, scope)


def span_document(span: Span, resource: Mapping[str, Any], scope: Mapping[str, Any],
                  ) -> dict[str, Any]:
    """One span's document (`resource`, `scope`: their parts, `_resource`/`_scope`)."""
    document: dict[str, Any] = {"@timestamp": _timestamp(span.start_time_unix_nano)}
    _put_id(document, "trace_id", span.trace_id)
    _put_id(document, "span_id", span.span_id)
    _put(document, "trace_state", span.trace_state)
    _put_id(document, "parent_span_id", span.parent_span_id)
    _put(document, "name", span.name)
    _put(document, "kind", _SPAN_KINDS.get(span.kind, ""))
    document["duration"] = (span.end_time_unix_nano - span.start_time_unix_nano) % 2**64
    _put_attributes(document, span.attributes)
    _put(document, "dropped_attributes_count", span.dropped_attributes_count)
    _put(document, "dropped_events_count", span.dropped_events_count)
    links = []
    for link in span.links:
        entry: dict[str, Any] = {}
        _put(entry, "trace_id", link.trace_id.hex())
        _put(entry, "span_id", link.span_id.hex())
        _put(entry, "trace_state", link.trace_state)
        _put_attributes(entry, link.attributes)
        _put(entry, "dropped_attributes_count", link.dropped_attributes_count)
        links.append(entry)
    document["links"] = links
    _put(document, "dropped_links_count", span.dropped_links_count)
    status: dict[str, Any] = {}
    _put(status, "message", span.status.message)
    _put(status, "code", _STATUS_CODES.get(span.status.code, ""))
    document["status"] = status
    document[RESOURCE] = dict(resource)
    document["scope"] = dict(scope)
    return document


def _resource(resource: Resource, schema_url: str) -> dict[str, Any]:
    part: dict[str, Any] = {}
    _put(part, "schema_url", schema_url)
    _put_attributes(part, resource.attributes)
    _put(part, "dropped_attributes_count", resource.dropped_attributes_count)
    return part


def _scope(scope: InstrumentationScope, schema_url: str) -> dict[str, Any]:
    part: dict[str, Any] = {}
    _put(part, "schema_url", schema_url)
    _put(part, "name", scope.name)
    _put(part, "version", scope.version)
    _put_attributes(part, scope.attributes)
    _put(part, "dropped_attributes_count", scope.dropped_attributes_count)
    return part


def _timestamp(nanos: int) -> str:
    """`writeTimestampField`: milliseconds, a dot, and the remaining nanoseconds as a plain
    number (not zero-padded, as the exporter writes it)."""
    return f"{nanos // 1_000_000}.{nanos % 1_000_000}"


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """`write*FieldSkipDefault`: the field only when it is not "" or 0."""
    if value:
        target[key] = value


def _put_id(target: dict[str, Any], key: str, value: bytes) -> None:
    if any(value):
        target[key] = value.hex()


def _put_attributes(target: dict[str, Any], attributes: Any) -> None:
    """`writeAttributes`: the object whenever there are attributes (even if all of them are
    ones the exporter leaves out), without those."""
    pairs: list[KeyValue] = list(attributes)
    if pairs:
        target[ATTRIBUTES] = {pair.key: _value(pair.value) for pair in pairs
                              if pair.key not in UNWRITTEN_ATTRIBUTES}


def _value(value: AnyValue) -> Any:
    """`WriteValue`: bytes as hex, maps as objects, arrays as arrays, empty as null."""
    kind = value.WhichOneof("value")
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "kvlist_value":
        return {pair.key: _value(pair.value) for pair in value.kvlist_value.values}
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)

