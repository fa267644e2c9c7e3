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
so the verifier can be tested on documents in the exporter's shape without the exporter;
`span_telemetry` reads a document back as the span a gateway sealed (`otlp.sealed.Telemetry`).
`log_documents` and `log_telemetry` do the same for log records, which the same exporter
writes with `SerializeLog` (logs.go): `@timestamp` the time, else the observed time;
`observed_timestamp`; `severity_text`, `severity_number`; `event_name` (the record's, else its
string `event.name` attribute); ids, `attributes`, `resource`, `scope`; and `body` as
{"text": scalar} or {"structured": map, array of maps, or {"value": any other array}}.

What survives the document, for rebuilding a sealed span's record: names, ids, kind, status,
the start time and duration to the nanosecond (`@timestamp` and `duration` as `_source` keeps
them: the date_nanos field reads the unpadded "<ms>.<ns>" as a decimal fraction, which is
wrong whenever the nanoseconds have fewer than 6 digits), scope, service.name, and attribute
values that are strings, bools, int64s (JSON integers, exact in `_source`), finite doubles
(JSON numbers: 40.0 may come back as 40, which RFC 8785 writes alike), empty values (null),
arrays and maps. Lost: bytes values, written as hex text (a sealed span with a bytes
attribute does not verify from Elasticsearch: its record holds base64); NaN and infinite
doubles, for which go-structform's JSON visitor writes no value, so the document is invalid
and never indexed (the verifier reports a gap); the attributes the exporter routes on
(`UNWRITTEN_ATTRIBUTES`); and double attributes `[*.]geo.location.lat` and `.lon`, merged
into one `geo.location` when both are present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_ai_audit.backends.elasticsearch import layout
from otel_ai_audit.backends.otlp import layout as otlp
from otel_ai_audit.backends.otlp.sealed import SEAL, SPAN_KINDS, STATUS_CODES, Telemetry
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


def log_documents(request: ExportLogsServiceRequest,
                  ) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(`_id`, document) of each log record of `request`, as `span_documents` for spans."""
    for resource_logs in request.resource_logs:
        resource = _resource(resource_logs.resource, resource_logs.schema_url)
        for scope_logs in resource_logs.scope_logs:
            scope = _scope(scope_logs.scope, scope_logs.schema_url)
            for record in scope_logs.log_records:
                doc_id = next((pair.value.string_value for pair in record.attributes
                               if pair.key == otlp.DOCUMENT_ID), None)
                yield doc_id, log_document(record, resource, scope)


def log_document(record: LogRecord, resource: Mapping[str, Any], scope: Mapping[str, Any],
                 ) -> dict[str, Any]:
    """One log record's document (`SerializeLog`)."""
    document: dict[str, Any] = {
        "@timestamp": _timestamp(record.time_unix_nano or record.observed_time_unix_nano),
        "observed_timestamp": _timestamp(record.observed_time_unix_nano)}
    _put(document, "severity_text", record.severity_text)
    _put(document, "severity_number", record.severity_number)
    _put_id(document, "trace_id", record.trace_id)
    _put_id(document, "span_id", record.span_id)
    _put_attributes(document, record.attributes)
    _put(document, "dropped_attributes_count", record.dropped_attributes_count)
    _put(document, "event_name", record.event_name or next(
        (pair.value.string_value for pair in record.attributes if pair.key == "event.name"), ""))
    document[RESOURCE] = dict(resource)
    document["scope"] = dict(scope)
    kind = record.body.WhichOneof("value")
    if kind in ("kvlist_value", "array_value"):
        body = _value(record.body)
        if kind == "array_value" and not all(
                item.WhichOneof("value") == "kvlist_value"
                for item in record.body.array_value.values):
            body = {"value": body}
        document["body"] = {"structured": body}
    elif kind is not None:
        document["body"] = {"text": _value(record.body)}
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
    """`WriteValue`: bytes as hex, maps as objects, arrays as arrays, empty as null.
    ValueError for a NaN or infinite double, for which the exporter writes no valid JSON."""
    kind = value.WhichOneof("value")
    if kind == "double_value" and not math.isfinite(value.double_value):
        raise ValueError(f"{value.double_value}: the exporter writes no JSON value for it")
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "kvlist_value":
        return {pair.key: _value(pair.value) for pair in value.kvlist_value.values}
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)



# --- documents read back as spans ------------------------------------------------------------


def span_telemetry(document: Mapping[str, Any]) -> Telemetry:
    """The span a document was written from, as far as a sealed record is built from it; the
    seal (`ai_audit.seal`, hex in the document) as bytes among the attributes."""
    values = _attributes(document)
    resource = (document.get(RESOURCE) or {}).get(ATTRIBUTES) or {}
    service = resource.get("service.name")
    scope = document.get("scope") or {}
    status = document.get("status") or {}
    start = _nanoseconds(document.get("@timestamp"))
    duration = _number(document.get("duration"))
    return Telemetry(
        "span", values, str(scope.get("name", "")), str(scope.get("version", "")),
        service if isinstance(service, str) else "",
        trace_id=_hex(document.get("trace_id")), span_id=_hex(document.get("span_id")),
        name=str(document.get("name", "")), kind=_index(SPAN_KINDS, document.get("kind")),
        status_code=_index(STATUS_CODES, status.get("code")),
        status_message=str(status.get("message", "")),
        parent_span_id=_hex(document.get("parent_span_id")), start_ns=start,
        end_ns=start + (duration - 2**64 if duration >= 2**63 else duration))


def log_telemetry(document: Mapping[str, Any]) -> Telemetry:
    """The log record a document was written from, as `span_telemetry` for spans. Two forms
    cannot be told apart, and are read as the likelier: an `event_name` equal to the record's
    `event.name` attribute is taken from the attribute (the record had no event name of its
    own), and a structured body {"value": [not only maps]} as the array the exporter wrapped
    (not a map of that one member)."""
    values = _attributes(document)
    resource = (document.get(RESOURCE) or {}).get(ATTRIBUTES) or {}
    service = resource.get("service.name")
    scope = document.get("scope") or {}
    event_name = document.get("event_name")
    if not isinstance(event_name, str) or event_name == values.get("event.name"):
        event_name = ""
    body = document.get("body") or {}
    content: Any = None
    if "text" in body:
        content = body["text"]
    elif "structured" in body:
        content = body["structured"]
        if (isinstance(content, dict) and list(content) == ["value"]
                and isinstance(content["value"], list)
                and not all(isinstance(item, dict) for item in content["value"])):
            content = content["value"]
    severity = document.get("severity_number")
    return Telemetry(
        "log", values, str(scope.get("name", "")), str(scope.get("version", "")),
        service if isinstance(service, str) else "",
        trace_id=_hex(document.get("trace_id")), span_id=_hex(document.get("span_id")),
        end_ns=_nanoseconds(document.get("@timestamp")),
        observed_ns=_nanoseconds(document.get("observed_timestamp")),
        severity_text=str(document.get("severity_text", "")),
        severity_number=_number(severity), event_name=event_name, body=content,
        has_body="text" in body or "structured" in body)


def _attributes(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document's attributes, the seal (hex in the document) as bytes."""
    values = dict(document.get(ATTRIBUTES) or {})
    if isinstance(seal := values.get(SEAL), str):
        try:
            values[SEAL] = bytes.fromhex(seal)
        except ValueError:
            pass  # left as text: `rebuild` reports it as no seal
    return values


_EXPORTER_TIME = re.compile(r"([0-9]+)\.([0-9]+)")


def _nanoseconds(timestamp: Any) -> int:
    """Unix ns of `writeTimestampField`'s "<ms>.<remaining ns, not zero-padded>" (0 if the
    field is not in that form)."""
    match = _EXPORTER_TIME.fullmatch(timestamp) if isinstance(timestamp, str) else None
    if match is None:
        return 0
    return int(match.group(1)) * 1_000_000 + int(match.group(2))


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _index(names: tuple[str, ...], name: Any) -> int:
    """The OTLP enum value of pdata's name for it (0, the default, when absent)."""
    return names.index(name) if name in names else 0


def _hex(text: Any) -> bytes:
    try:
        return bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        return b""
