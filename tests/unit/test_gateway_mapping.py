"""The exporter-shaped documents (`otel_mapping.span_documents`), field by field.

Two references: the contrib elasticsearchexporter's own serializer test
(internal/serializer/otelserializer/traces_test.go, `TestSerializeTraces`: the same spans and
the JSON it asserts), and its encoder read field by field (traces.go, common.go, map.go) for
the spans the OTLP sink emits, encoded by the SDK's OTLP encoder as they go on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_ai_audit.backends.elasticsearch.otel_mapping import (
    gateway_index,
    gateway_template,
    span_documents,
)
from otel_ai_audit.backends.otlp import layout as otlp
from otel_ai_audit.backends.otlp.sink import RESOURCE, checkpoint_span, record_span
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.version import __version__

CHAIN = "0123456789abcdef0123456789abcdef"


def one_span(span: Span, resource: list[KeyValue] | None = None,
             scope: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(resource or [])
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.attributes.extend(scope or [])
    scope_spans.spans.append(span)
    return request


def pair(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def only_document(request: ExportTraceServiceRequest) -> dict[str, Any]:
    (( _, document),) = list(span_documents(request))
    # As the exporter's test decodes it: through JSON.
    return json.loads(json.dumps(document))


# --- the exporter's own test, TestSerializeTraces ---------------------------------------------


def default_span() -> Span:
    return Span(start_time_unix_nano=1721314113467654123, end_time_unix_nano=1721314113469654123,
                kind=Span.SPAN_KIND_SERVER,
                status=Status(code=Status.STATUS_CODE_OK, message="Hello"))


def test_the_exporters_default_case_with_scalar_attributes() -> None:
    request = one_span(default_span(), resource=[pair("foo", AnyValue(int_value=123))],
                       scope=[pair("foo", AnyValue(string_value="bar"))])
    assert only_document(request) == {
        "@timestamp": "1721314113467.654123", "duration": 2000000, "kind": "Server",
        "links": [], "resource": {"attributes": {"foo": 123}},
        "scope": {"attributes": {"foo": "bar"}}, "status": {"code": "Ok", "message": "Hello"}}


def test_the_exporters_default_case_with_map_attributes() -> None:
    nested = AnyValue(kvlist_value=KeyValueList(values=[pair("foo", AnyValue(string_value="bar"))]))
    request = one_span(default_span(), resource=[pair("resource_map", nested)],
                       scope=[pair("scope_map", nested)])
    assert only_document(request) == {
        "@timestamp": "1721314113467.654123", "duration": 2000000, "kind": "Server",
        "links": [], "resource": {"attributes": {"resource_map": {"foo": "bar"}}},
        "scope": {"attributes": {"scope_map": {"foo": "bar"}}},
        "status": {"code": "Ok", "message": "Hello"}}


def test_the_exporters_unset_status_case() -> None:
    request = one_span(Span(status=Status(code=Status.STATUS_CODE_UNSET)))
    assert only_document(request) == {
        "@timestamp": "0.0", "duration": 0, "kind": "Unspecified", "links": [],
        "resource": {}, "scope": {}, "status": {}}


# --- the spans the Python side emits ------------------------------------------------------------


def sink_request(*spans: Any) -> ExportTraceServiceRequest:
    """What the OTLP sink puts on the wire: the SDK's own encoder."""
    return encode_spans(list(spans))


def test_a_record_span_becomes_the_exporters_document_field_by_field() -> None:
    data = (b'{"chain":{"id":"%s","logged":1721314113467000456,"seq":7},"event":{"type":'
            b'"inference"}}' % CHAIN.encode())
    record = SealedRecord(CHAIN, 7, "2024-07-18T14:48:33Z", "inference", "r7", data)
    span = record_span(record)
    (doc_id, document), = list(span_documents(sink_request(span)))
    assert doc_id == f"{CHAIN}:7"  # traces_dynamic_id: the attribute is the _id ...
    assert set(document) == {"@timestamp", "trace_id", "span_id", "name", "kind", "duration",
                             "attributes", "links", "status", "resource", "scope"}
    assert document["@timestamp"] == f"{span.start_time // 10**6}.{span.start_time % 10**6}"
    assert document["trace_id"] == CHAIN  # the trace is the chain
    assert document["span_id"] == f"{span.context.span_id:016x}"
    assert document["name"] == "ai_audit.record"
    assert document["kind"] == "Internal"
    assert document["duration"] == 0
    assert document["attributes"] == {  # ... and is not written in the document
        otlp.KIND: "record", otlp.CHAIN_ID: CHAIN, otlp.CHAIN_SEQ: 7,
        otlp.EVENT_TYPE: "inference", otlp.RECORD: data.decode()}
    assert document["links"] == []
    assert document["status"] == {}  # the SDK sends Unset
    assert document["resource"] == {"attributes": dict(RESOURCE.attributes)}
    assert document["scope"] == {"name": otlp.SCOPE_NAME, "version": __version__}


def test_a_checkpoint_span_keeps_its_payload_and_signature_as_text() -> None:
    signed = SignedCheckpoint(b"not a payload", b"\x01\x02", "key-1", CHAIN, 3, 12)
    (doc_id, document), = list(span_documents(sink_request(checkpoint_span(signed))))
    assert doc_id == f"{CHAIN}:checkpoint:3"
    assert document["attributes"] == {
        otlp.KIND: "checkpoint", otlp.CHAIN_ID: CHAIN, otlp.CHECKPOINT_INDEX: 3,
        otlp.CHECKPOINT_SIZE: 12, otlp.CHECKPOINT_KEY_ID: "key-1",
        otlp.CHECKPOINT_PAYLOAD: "bm90IGEgcGF5bG9hZA==", otlp.CHECKPOINT_SIGNATURE: "AQI="}


def test_the_timestamp_is_milliseconds_a_dot_and_the_rest_in_nanoseconds_unpadded() -> None:
    """writeTimestampField: FormatUint(ms) + "." + FormatUint(ns % 1e6), as the exporter has it
    (so 456 ns past a millisecond reads as .456 ms in Elasticsearch: its quirk, kept)."""
    span = Span(start_time_unix_nano=1721314113467000456, end_time_unix_nano=1721314113467000456)
    assert only_document(one_span(span))["@timestamp"] == "1721314113467.456"


def test_values_as_the_exporters_write_value() -> None:
    span = Span(attributes=[
        pair("b", AnyValue(bytes_value=b"\x00\xff")), pair("d", AnyValue(double_value=1.5)),
        pair("t", AnyValue(bool_value=True)), pair("e", AnyValue()),
        pair("elasticsearch._index", AnyValue(string_value="x"))])
    assert only_document(one_span(span))["attributes"] == {
        "b": "00ff", "d": 1.5, "t": True, "e": None}


def test_span_events_are_not_built() -> None:
    span = Span(events=[Span.Event(name="e")])
    with pytest.raises(ValueError, match="events"):
        list(span_documents(one_span(span)))


def test_the_template_makes_the_gateways_index_a_data_stream() -> None:
    template = gateway_template("acme", retention="30d")
    assert gateway_index("acme") == "acme-otlp"
    assert template["index_patterns"] == ["acme-otlp"] and template["data_stream"] == {}
    assert template["template"]["lifecycle"] == {"data_retention": "30d"}
    mappings = template["template"]["mappings"]
    assert mappings["dynamic"] is False
    assert mappings["properties"]["attributes"]["subobjects"] is False
    assert mappings["properties"]["attributes"]["properties"][otlp.CHAIN_SEQ]["type"] == "long"
    # The shipped backends Collector (behind the gateway) writes to the default name.
    config = (Path(__file__).parents[2] / "collector_config" / "otelcol-backends.yaml").read_text()
    assert f"traces_index: {gateway_index()}" in config
