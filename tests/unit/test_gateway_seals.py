"""Records a Collector gateway attached to telemetry (`ai_audit.seal`), rebuilt in Python.

The reference is tests/vectors/gateway_seals.json, written by the Go processor's own test
(collector/auditprocessor, `go test -run Vectors -update`): for each case the processor's output
as its file exporter writes it, and the exact record texts it hashed. Every record must rebuild
byte for byte from the export (`verify --otlp-export`) and from the Elasticsearch exporter's
documents of the same spans (`verify --elasticsearch --gateway-index`), and any change to an
item or its seal must give other bytes (or an unreadable seal), which the verifier reports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ai_audit.backends.elasticsearch.otel_mapping import (
    log_documents,
    log_telemetry,
    span_documents,
    span_telemetry,
)
from otel_ai_audit.backends.otlp.sealed import (
    INPUT_CONTENT,
    OUTPUT_CONTENT,
    SEAL,
    SealError,
    Telemetry,
    decode_seal,
    event_id,
    json_value,
    rebuild,
)
from otel_ai_audit.backends.otlp.source import (
    attributes,
    read_otlp_export,
    sealed_record,
    telemetry,
)
from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "gateway_seals.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
CHAIN = bytes(range(0xA0, 0xB0))


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)


def make_seal(seq: int = 3, logged: int = 1_765_100_000_123_456_789, policy: bytes = b"h",
              flags: int = 0b011, chain: bytes = CHAIN) -> bytes:
    """A seal as the Go processor writes it (collector/auditprocessor/seal.go)."""
    macs = b"".join(bytes([0x10 * (part + 1)]) * 32 for part in range(3) if flags >> part & 1)
    return (b"\x01" + chain + uvarint(seq) + uvarint(logged) + b"\x11" * 32 + policy
            + bytes([flags]) + (macs if policy == b"h" else b""))


def write_export(tmp_path: Path, documents: list[dict[str, Any]]) -> Path:
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(document) + "\n" for document in documents),
                    encoding="utf-8")
    return path


def records_of(path: Path) -> dict[tuple[str, int], bytes]:
    source = read_otlp_export(path)
    return {(chain_id, seq): data for chain_id in source.chain_ids()
            for seq, data in source.records(chain_id)}


def sealed_records(case: dict[str, Any]) -> dict[tuple[str, int], bytes]:
    return {(record["chain_id"], record["seq"]): record["record"].encode("utf-8")
            for record in case["records"]}


def export_lines(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's export as the file exporter's lines (one document, or a list of them)."""
    export = case["export"]
    return export if isinstance(export, list) else [export]


# --- the spec, on spans made here ------------------------------------------------------------


def chat_span(**attributes: Any) -> dict[str, Any]:
    """A GenAI chat span in OTLP/JSON as pdata's JSON marshaller writes it."""
    values = {"gen_ai.operation.name": {"stringValue": "chat"},
              "gen_ai.request.model": {"stringValue": "gpt-4o"},
              "gen_ai.prompt": {"stringValue": "What is 2+2?"},
              "gen_ai.completion": {"stringValue": "4"},
              **attributes}
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chat"}}]},
        "scopeSpans": [{"scope": {"name": "openai", "version": "1.2"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173", "name": "chat gpt-4o", "kind": 3,
            "startTimeUnixNano": "1765100000000000000", "endTimeUnixNano": "1765100000250000001",
            "attributes": [{"key": key, "value": value} for key, value in values.items()],
            "status": {"code": 2, "message": "rate limited"}}]}]}]}


def test_a_chat_span_rebuilds_the_specified_record(tmp_path: Path) -> None:
    seal = make_seal()
    span = chat_span(**{SEAL: {"bytesValue": base64.b64encode(seal).decode()},
                        "big": {"intValue": str(2**60)}, "nan": {"doubleValue": "NaN"},
                        "inf": {"doubleValue": "-Infinity"}, "half": {"doubleValue": 0.5},
                        "raw": {"bytesValue": "AAE="}, "on": {"boolValue": True},
                        "list": {"arrayValue": {"values": [{"intValue": "1"},
                                                           {"stringValue": "é"}]}},
                        "map": {"kvlistValue": {"values": [{"key": "k",
                                                            "value": {"doubleValue": 40}}]}},
                        "empty": {}})
    ((position, data),) = records_of(write_export(tmp_path, [span])).items()
    assert position == (CHAIN.hex(), 3)
    record = json.loads(data)
    assert data == canonical_json(record)
    assert record["chain"] == {"id": CHAIN.hex(), "logged": "1765100000123456789",
                               "prev": "11" * 32, "seq": 3, "v": 1}
    assert record["event"] == {
        "id": event_id(1_765_100_000_123_456_789, CHAIN, 3), "type": "inference",
        "time": "2025-12-07T09:33:20.250000001Z", "operation": "chat",
        "model": {"name": "gpt-4o"}, "service": {"name": "chat"},
        "trace": {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174"},
        "latency_ms": 250.000001, "error": {"type": "error"},
        "source": {"signal": "span", "name": "chat gpt-4o", "kind": "Client", "status": "Error",
                   "status_message": "rate limited", "parent_span_id": "eee19b7ec3c1b173",
                   "scope": {"name": "openai", "version": "1.2"}},
        "input": {"policy": "hash", "hmac_sha256": "10" * 32},
        "output": {"policy": "hash", "hmac_sha256": "20" * 32},
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                       "big": str(2**60), "nan": "NaN", "inf": "-Inf", "half": 0.5,
                       "raw": "AAE=", "on": True, "list": [1, "é"], "map": {"k": 40},
                       "empty": None}}


@pytest.mark.parametrize("policy", [b"h", b"n"])
@pytest.mark.parametrize("only_content", [False, True])
def test_content_removed_after_sealing_leaves_the_record_as_sealed(
        tmp_path: Path, policy: bytes, only_content: bool) -> None:
    """Under `hash` and `none` the seal holds what the record keeps of the content, so a later
    processor may drop the content attributes. The event type holds too, also for a span whose
    only `gen_ai.*` attributes were its content (`only_content`)."""
    seal = {SEAL: {"bytesValue": base64.b64encode(make_seal(policy=policy)).decode()}}
    span = chat_span(**seal)
    pairs = span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]

    def keep(dropped: tuple[str, ...]) -> None:
        pairs[:] = [pair for pair in pairs if pair["key"] not in dropped]

    if only_content:
        keep(("gen_ai.operation.name", "gen_ai.request.model"))
    ((_, sealed),) = records_of(write_export(tmp_path, [span])).items()
    keep((*INPUT_CONTENT, *OUTPUT_CONTENT))
    assert not only_content or not any(pair["key"].startswith("gen_ai.") for pair in pairs)
    ((_, stripped),) = records_of(write_export(tmp_path, [span])).items()
    assert stripped == sealed
    assert json.loads(stripped)["event"]["type"] == "inference"


def test_the_event_id_is_the_specified_uuidv7() -> None:
    chain = bytes.fromhex("ffeeddccbbaa99887766554433221100")
    assert event_id(1_700_000_000_123_999_999, chain, 2**32 + 7) == (
        "018bcfe5687b" "7fee" "9dccbbaa" "00000007")


@pytest.mark.parametrize(("policy", "expected"), [
    (b"f", {"policy": "full", "value": {"gen_ai.prompt": "What is 2+2?"}}),
    (b"n", {"policy": "none"}),
], ids=["full", "none"])
def test_content_under_the_full_and_none_policies(tmp_path: Path, policy: bytes,
                                                  expected: dict[str, Any]) -> None:
    seal = make_seal(policy=policy, flags=0b001)
    span = chat_span(**{SEAL: {"bytesValue": base64.b64encode(seal).decode()}})
    (data,) = records_of(write_export(tmp_path, [span])).values()
    event = json.loads(data)["event"]
    assert event["input"] == expected and "output" not in event


def test_a_log_record_with_a_body_and_severity_error(tmp_path: Path) -> None:
    seal = make_seal(policy=b"f", flags=0b100)
    log = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "app"},
           "logRecords": [{"observedTimeUnixNano": "1765100000000000042", "severityNumber": 17,
                           "severityText": "ERROR", "eventName": "gen_ai.choice",
                           "body": {"kvlistValue": {"values": [
                               {"key": "text", "value": {"stringValue": "no"}}]}},
                           "attributes": [{"key": SEAL, "value": {
                               "bytesValue": base64.b64encode(seal).decode()}}]}]}]}]}
    (data,) = records_of(write_export(tmp_path, [log])).values()
    event = json.loads(data)["event"]
    assert event["time"] == "2025-12-07T09:33:20.000000042Z"
    assert event["source"] == {"signal": "log", "severity": "ERROR",
                               "event_name": "gen_ai.choice", "scope": {"name": "app",
                                                                        "version": ""}}
    assert event["body"] == {"policy": "full", "value": {"body": {"text": "no"}}}
    assert event["error"] == {"type": "error"} and event["type"] == "request"
    assert "latency_ms" not in event and "trace" not in event and "attributes" not in event


@pytest.mark.parametrize(("seal", "chain_id", "seq", "says"), [
    (b"", "", -1, "too short"),
    (b"\x02" + bytes(40), "", -1, "format version 2"),
    (b"\x01" + CHAIN + b"\xff" * 11, CHAIN.hex(), -1, "varint"),
    (make_seal()[:-1], CHAIN.hex(), 3, "not the"),
    (make_seal() + b"\x00", CHAIN.hex(), 3, "not the"),
    (make_seal(policy=b"x"), CHAIN.hex(), 3, "unknown content policy"),
    (make_seal(flags=0b1000), CHAIN.hex(), 3, "unknown flags"),
    (make_seal(seq=2**53), CHAIN.hex(), -1, "beyond 2**53-1"),
], ids=["empty", "version", "varint", "short", "long", "policy", "flags", "seq"])
def test_a_malformed_seal_is_a_clear_error(seal: bytes, chain_id: str, seq: int,
                                           says: str) -> None:
    with pytest.raises(SealError, match=re.escape(says)) as raised:
        decode_seal(seal)
    assert (raised.value.chain_id, raised.value.seq) == (chain_id, seq)


def test_a_malformed_seal_is_a_finding_where_it_says_it_belongs(tmp_path: Path) -> None:
    """Not a crash: kept as bytes that are no record, the verifier reports them."""
    good, bad = make_seal(seq=0, flags=0), make_seal(seq=1, flags=0)[:-3]
    spans = [chat_span(**{SEAL: {"bytesValue": base64.b64encode(seal).decode()}})
             for seal in (good, bad)]
    unsealed = chat_span(**{SEAL: {"stringValue": "not bytes"}})
    report = Verifier({}, allow_self_asserted=True).verify(
        read_otlp_export(write_export(tmp_path, [*spans, unsealed])))
    kinds = {(finding.chain_id, finding.seq, finding.kind.value) for finding in report.findings}
    assert any(chain == CHAIN.hex() and seq == 1 and "record" in kind
               for chain, seq, kind in kinds), kinds
    assert any(chain == "" for chain, _, _ in kinds), kinds


def test_an_export_of_logs_alone_is_an_export(tmp_path: Path) -> None:
    path = write_export(tmp_path, [{"resourceLogs": []}])
    assert read_otlp_export(path).chain_ids() == []


# --- the Go processor's vectors ---------------------------------------------------------------

def test_the_vectors_cover_what_the_spec_asks() -> None:
    assert {case["content"] for case in CASES} == {"hash", "full", "none"}
    assert {case["signal"] for case in CASES} == {"traces", "logs"}
    events = [json.loads(record["record"])["event"] for case in CASES
              for record in case["records"]]
    values = [value for event in events for value in event.get("attributes", {}).values()]
    texts = [record["record"] for case in CASES for record in case["records"]]
    assert any(not text.isascii() for text in texts)
    assert any(isinstance(value, str) and value.lstrip("-").isdigit()
               and abs(int(value)) > 2**53 for value in values)
    assert {"NaN", "+Inf", "-Inf"} <= {value for value in values if isinstance(value, str)}
    assert any(isinstance(value, list) for value in values)
    assert any(isinstance(value, dict) for value in values)
    assert any(holds(pair["value"], "bytesValue") for case in CASES
               for entry in _entries(case) for pair in entry.get("attributes", [])
               if pair["key"] != SEAL)
    errors = {event["error"]["type"] == "error" for event in events
              if event["source"]["signal"] == "span" and event["source"]["status"] == "Error"}
    assert errors == {True, False}
    spans = [event["source"] for event in events if event["source"]["signal"] == "span"]
    assert any("parent_span_id" in source for source in spans)
    assert any(source["scope"]["version"] == "" for source in spans)
    assert any(event["source"]["signal"] == "log" and "body" in event and "error" in event
               and event["source"]["severity"] == "ERROR" for event in events)


SIGNALS = (("span", "resourceSpans", "scopeSpans", "spans"),
           ("log", "resourceLogs", "scopeLogs", "logRecords"))


def walk(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any],
                                                    dict[str, Any]]]:
    """(signal, resource entry, scope entry, item) of each span and log record of an OTLP/JSON
    document."""
    for signal, resources, scopes, entries in SIGNALS:
        for resource_entry in document.get(resources) or []:
            for scope_entry in resource_entry.get(scopes) or []:
                for entry in scope_entry.get(entries) or []:
                    yield signal, resource_entry, scope_entry, entry


def _entries(case: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every span and log record of the case's export."""
    for document in export_lines(case):
        for *_, entry in walk(document):
            yield entry


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_every_sealed_record_rebuilds_byte_for_byte_from_the_export(
        tmp_path: Path, case: dict[str, Any]) -> None:
    rebuilt = records_of(write_export(tmp_path, export_lines(case)))
    expected = sealed_records(case)
    assert expected, "a case with no sealed record"
    for position, data in expected.items():
        assert rebuilt.get(position) == data, position


@pytest.mark.parametrize("case", [case for case in CASES if any(
    '"policy":"hash"' in record["record"] for record in case["records"])],
                         ids=lambda case: case["name"])
def test_the_seals_hmacs_are_those_of_the_content_under_the_key(case: dict[str, Any]) -> None:
    """With the HMAC key (which the verifier does not need), the content still in the item is
    the content that was sealed: HMAC-SHA256 over its canonical JSON, as capture.py does."""
    key = VECTORS["hmac_key"].encode("utf-8")
    checked = 0
    for item, seal in sealed_items(case):
        event = json.loads(rebuild(item, seal)[2])["event"]
        contents = {"input": {name: json_value(item.attributes[name])
                              for name in INPUT_CONTENT if name in item.attributes},
                    "output": {name: json_value(item.attributes[name])
                               for name in OUTPUT_CONTENT if name in item.attributes},
                    "body": {"body": json_value(item.body)}}
        for part, content in contents.items():
            if part in event:
                mac = hmac.new(key, canonical_json(content), hashlib.sha256).hexdigest()
                assert event[part]["hmac_sha256"] == mac, part
                checked += 1
    assert checked


def sealed_items(case: dict[str, Any]) -> Iterator[tuple[Telemetry, bytes]]:
    """Each sealed item of the case's export with its seal, as the export reader reads them."""
    for document in export_lines(case):
        for signal, resource_entry, scope_entry, entry in walk(document):
            values = attributes(entry.get("attributes"))
            if SEAL in values:
                resource = attributes(resource_entry.get("resource", {}).get("attributes"))
                yield telemetry(signal, entry, values, scope_entry.get("scope") or {},
                                str(resource.get("service.name", ""))), values[SEAL]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_a_changed_seal_byte_or_attribute_gives_another_record(case: dict[str, Any]) -> None:
    """Every byte of the seal (one bit flipped) and every attribute is covered, except
    `ai_audit.*` attributes (unless read as the model or operation) and content attributes
    under the hash and none policies: their record holds the seal's HMAC (or nothing), so only
    a verifier with the HMAC key can hold them to it (the test above); users are told to
    redact content downstream instead."""
    expected = set(sealed_records(case).values())
    content = set(INPUT_CONTENT + OUTPUT_CONTENT)
    for item, seal in sealed_items(case):
        for at in range(len(seal)):
            changed = bytearray(seal)
            changed[at] ^= 0x01
            _, (_, _, data) = sealed_record(item, bytes(changed))
            assert data not in expected, f"byte {at} of the seal changed nothing"
        for name, value in item.attributes.items():
            if name.startswith("ai_audit."):
                continue  # not in the event's attributes (the spec); the seal is above
            altered = replace(item, attributes={**item.attributes, name: f"{value}!"})
            covered = case["content"] == "full" or name not in content
            assert (rebuild(altered, seal)[2] not in expected) == covered, name
        changes: dict[str, Any] = {"end_ns": item.end_ns + 1, "scope_version": "9",
                                   **({"name": "other"} if item.signal == "span"
                                      else {"severity_text": "WARN"})}
        for field, value in changes.items():
            assert rebuild(replace(item, **{field: value}), seal)[2] not in expected, field


def single_spans(case: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The case's export split into one OTLP/JSON document per span (resource and scope
    kept), so each span's fate in the exporter is its own."""
    for document in export_lines(case):
        for signal, resource_entry, scope_entry, span in walk(document):
            if signal == "span":
                yield {"resourceSpans": [{**resource_entry, "scopeSpans": [
                    {**scope_entry, "spans": [span]}]}]}


def holds(value: Any, kind: str, texts: tuple[str, ...] = ()) -> bool:
    """Whether an OTLP/JSON attribute value (or a value inside it) is of `kind` (and, when
    `texts` are given, one of them)."""
    if isinstance(value, dict):
        return any((key == kind and (not texts or item in texts)) or holds(item, kind, texts)
                   for key, item in value.items())
    if isinstance(value, list):
        return any(holds(item, kind, texts) for item in value)
    return False


@pytest.mark.parametrize("case", [case for case in CASES if case["signal"] == "traces"],
                         ids=lambda case: case["name"])
def test_every_sealed_span_rebuilds_from_the_elasticsearch_exporters_document(
        case: dict[str, Any]) -> None:
    """Through `span_documents` (the exporter's shape, tests/unit/test_gateway_mapping.py) and
    JSON, as Elasticsearch returns `_source`: what survives rebuilds exactly; a bytes value
    comes back as hex and no longer matches; a NaN/Inf double makes no document at all."""
    expected = sealed_records(case)
    rebuilt = 0
    for document in single_spans(case):
        (span,) = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
        values = [pair["value"] for pair in span.get("attributes", []) if pair["key"] != SEAL]
        if SEAL not in attributes(span.get("attributes")):
            continue
        if holds(values, "doubleValue", ("NaN", "Infinity", "-Infinity")):
            with pytest.raises(ValueError, match="writes no JSON value"):
                list(span_documents(otlp_request(document)))
            continue
        ((_, written),) = span_documents(otlp_request(document))
        item = span_telemetry(json.loads(json.dumps(written)))
        _, (chain_id, seq, data) = sealed_record(item, item.attributes[SEAL])
        assert (data == expected[(chain_id, seq)]) != holds(values, "bytesValue"), (chain_id, seq)
        rebuilt += 1
    assert rebuilt


def test_every_value_type_but_bytes_and_non_finite_doubles_survives_the_document() -> None:
    """Value by value, for the sealed spans' attributes whose span as a whole cannot be
    indexed: what the record holds of each, from the span and from its document, is equal."""
    compared = set()
    for case in CASES:
        for document in single_spans(case):
            (span,) = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
            typed = attributes(span.get("attributes"))
            if SEAL not in typed:
                continue
            kept = [pair for pair in span.get("attributes", []) if pair["key"] != SEAL
                    and not holds(pair["value"], "bytesValue")
                    and not holds(pair["value"], "doubleValue", ("NaN", "Infinity", "-Infinity"))]
            (( _, written),) = span_documents(otlp_request({"resourceSpans": [{
                **document["resourceSpans"][0], "scopeSpans": [{
                    **document["resourceSpans"][0]["scopeSpans"][0],
                    "spans": [{**span, "attributes": kept}]}]}]}))
            read = span_telemetry(json.loads(json.dumps(written))).attributes
            for pair in kept:
                name = pair["key"]
                assert canonical_json(json_value(read[name])) == canonical_json(
                    json_value(typed[name])), name
                compared.add(next(iter(pair["value"]), ""))
    # The vectors' one array holds a NaN: arrays are compared inside the map (an empty one).
    assert compared >= {"stringValue", "intValue", "doubleValue", "boolValue", "kvlistValue"}


def _ids_to_base64(value: Any) -> Any:
    """OTLP/JSON's hex ids as protobuf JSON's base64."""
    if isinstance(value, dict):
        return {key: base64.b64encode(bytes.fromhex(item)).decode()
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str)
                else _ids_to_base64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ids_to_base64(item) for item in value]
    return value


def otlp_request(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """OTLP/JSON spans as the protobuf request the gateway's exporter receives."""
    request = ExportTraceServiceRequest()
    json_format.ParseDict({"resourceSpans": _ids_to_base64(document.get("resourceSpans") or [])},
                          request)
    return request


def otlp_logs_request(document: dict[str, Any]) -> ExportLogsServiceRequest:
    """OTLP/JSON log records as the protobuf request the gateway's exporter receives."""
    request = ExportLogsServiceRequest()
    json_format.ParseDict({"resourceLogs": _ids_to_base64(document.get("resourceLogs") or [])},
                          request)
    return request


@pytest.mark.parametrize("case", [case for case in CASES if case["signal"] == "logs"],
                         ids=lambda case: case["name"])
def test_every_sealed_log_record_rebuilds_from_the_elasticsearch_exporters_document(
        case: dict[str, Any]) -> None:
    """As for spans: every record rebuilds exactly from its document and JSON, but where a
    bytes value (hex in the document) is held as it is: a bytes body under the full policy
    (under hash and none the body's value is not in the record)."""
    expected = sealed_records(case)
    rebuilt = 0
    for document in export_lines(case):
        entries = [entry for signal, *_, entry in walk(document) if signal == "log"]
        written = [doc for _, doc in log_documents(otlp_logs_request(document))]
        for entry, doc in zip(entries, written, strict=True):
            item = log_telemetry(json.loads(json.dumps(doc)))
            if SEAL not in item.attributes:
                continue
            _, (chain_id, seq, data) = sealed_record(item, item.attributes[SEAL])
            lost = holds([pair["value"] for pair in entry.get("attributes", [])
                          if pair["key"] != SEAL], "bytesValue") or (
                case["content"] == "full" and holds(entry.get("body"), "bytesValue"))
            assert (data == expected[(chain_id, seq)]) != lost, (chain_id, seq)
            rebuilt += 1
    assert rebuilt == len(expected)


def key_pem(case: dict[str, Any]) -> str:
    """The processor's public key (PEM), from the key span of the case's export."""
    for entry in _entries(case):
        values = attributes(entry.get("attributes"))
        if values.get("ai_audit.kind") == "key":
            return str(values["ai_audit.key.pem"])
    raise AssertionError("no key span")


def trusted_key(case: dict[str, Any]) -> dict[str, Any]:
    public = load_public_key_pem(key_pem(case))
    return {key_id(public): public}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_each_cases_export_verifies_intact(tmp_path: Path, case: dict[str, Any]) -> None:
    """chain_open, the sealed records rebuilt and the signed checkpoints: a closed chain."""
    report = Verifier(trusted_key(case)).verify(
        read_otlp_export(write_export(tmp_path, export_lines(case))))
    assert report.ok, report.findings
    assert report.record_count == len(case["records"]) + 1


def _first_sealed(document: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(signal, scope entry, item) of the document's first sealed item."""
    return next((signal, scope_entry, entry) for signal, _, scope_entry, entry in walk(document)
                if SEAL in attributes(entry.get("attributes")))


def _alter_attribute(document: dict[str, Any]) -> None:
    _, _, entry = _first_sealed(document)
    entry["attributes"].append({"key": "added.after.sealing", "value": {"boolValue": True}})


def _delete_item(document: dict[str, Any]) -> None:
    signal, scope_entry, entry = _first_sealed(document)
    scope_entry["spans" if signal == "span" else "logRecords"].remove(entry)


def _damage_seal(document: dict[str, Any]) -> None:
    _, _, entry = _first_sealed(document)
    for pair in entry["attributes"]:
        if pair["key"] == SEAL:
            seal = base64.b64decode(pair["value"]["bytesValue"])
            pair["value"]["bytesValue"] = base64.b64encode(seal[:-1]).decode()


@pytest.mark.parametrize("case", CASES[:1] + [case for case in CASES
                                               if case["signal"] == "logs"][:1],
                         ids=lambda case: case["name"])
@pytest.mark.parametrize(("attack", "kinds"), [
    (_alter_attribute, {"record_modified"}),
    (_delete_item, {"gap"}),
    (_damage_seal, {"malformed_record"}),
], ids=["altered", "deleted", "damaged seal"])
def test_a_changed_or_deleted_sealed_item_is_reported_at_its_seq(
        tmp_path: Path, case: dict[str, Any], attack: Any, kinds: set[str]) -> None:
    documents = json.loads(json.dumps(export_lines(case)))
    attack(documents[0])
    report = Verifier(trusted_key(case)).verify(read_otlp_export(write_export(tmp_path, documents)))
    first = min(record["seq"] for record in case["records"])
    found = {(finding.seq, finding.kind.value) for finding in report.findings}
    assert not report.ok and any(seq == first and kind in kinds for seq, kind in found), found


def test_verify_and_import_read_a_sealed_export_from_the_command_line(tmp_path: Path) -> None:
    """`verify --otlp-export` and `import` (then `verify` of the store), as an auditor runs
    them on the gateway's archive: the rebuilt records are the records."""
    case = next(case for case in CASES if case["signal"] == "logs")
    export = write_export(tmp_path, export_lines(case))
    key = tmp_path / "gateway.pub.pem"
    key.write_text(key_pem(case), encoding="utf-8")
    verified = CliRunner().invoke(main, ["verify", "--otlp-export", str(export),
                                         "--public-key", str(key)])
    assert verified.exit_code == 0, verified.output
    store = tmp_path / "imported.db"
    imported = CliRunner().invoke(main, ["import", str(store), "--otlp-export", str(export)])
    assert imported.exit_code == 0, imported.output
    with AuditStore(store, create=False, readonly=True) as kept:
        assert {(chain_id, seq): data for chain_id in kept.chain_ids()
                for seq, data in kept.records(chain_id)}.items() >= sealed_records(case).items()
    again = CliRunner().invoke(main, ["verify", str(store), "--public-key", str(key)])
    assert again.exit_code == 0, again.output


def test_log_documents_are_the_exporters_own_test_cases() -> None:
    """`log_documents` against TestSerializeLog (the contrib exporter's
    internal/serializer/otelserializer/logs_test.go): text and map bodies, event_name over the
    `event.name` attribute, the timestamp; and read back by `log_telemetry`."""
    def only(record: dict[str, Any]) -> dict[str, Any]:
        request = otlp_logs_request({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
        ((_, document),) = log_documents(request)
        return dict(json.loads(json.dumps(document)))

    empty = {"@timestamp": "0.0", "observed_timestamp": "0.0", "resource": {}, "scope": {}}
    assert only({"body": {"stringValue": "foo"}}) == {**empty, "body": {"text": "foo"}}
    assert only({"body": {"kvlistValue": {"values": [
        {"key": "foo.bar", "value": {"stringValue": "baz"}}]}}}) == {
        **empty, "body": {"structured": {"foo.bar": "baz"}}}
    named = only({"eventName": "bar", "attributes": [
        {"key": "event.name", "value": {"stringValue": "foo"}}]})
    assert named == {**empty, "event_name": "bar", "attributes": {"event.name": "foo"}}
    assert log_telemetry(named).event_name == "bar"
    legacy = only({"attributes": [{"key": "event.name", "value": {"stringValue": "foo"}}]})
    assert legacy["event_name"] == "foo" and log_telemetry(legacy).event_name == ""
    timed = only({"timeUnixNano": "1721314113467654123"})
    assert timed == {**empty, "@timestamp": "1721314113467.654123"}
    assert log_telemetry(timed).end_ns == 1721314113467654123
    wrapped = only({"body": {"arrayValue": {"values": [{"intValue": "1"}]}}})
    assert wrapped["body"] == {"structured": {"value": [1]}}
    assert log_telemetry(wrapped).body == [1]


def test_a_span_document_keeps_the_exact_nanoseconds() -> None:
    """`@timestamp` is "<ms>.<ns>" with the nanoseconds not zero-padded: 5 ns is ".5"."""
    document = chat_span()
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"], span["endTimeUnixNano"] = "1721314113467000005", "1721314113468"
    ((_, written),) = span_documents(otlp_request(document))
    assert written["@timestamp"] == "1721314113467.5"
    item = span_telemetry(json.loads(json.dumps(written)))
    assert (item.start_ns, item.end_ns) == (1721314113467000005, 1721314113468)
    assert (item.kind, item.status_code, item.service) == (3, 2, "chat")


@given(st.binary(max_size=200) | st.builds(
    lambda seal, at, byte: seal[:at] + bytes([byte]) + seal[at + 1:],
    st.sampled_from([make_seal(), make_seal(policy=b"f", flags=0b111)]),
    st.integers(0, 120), st.integers(0, 255)))
def test_any_bytes_as_a_seal_give_a_record_or_a_seal_error(seal: bytes) -> None:
    """Never a crash: whatever the attribute holds, the reader has an item for the verifier."""
    item = Telemetry("span", {"gen_ai.prompt": "hi", SEAL: seal})
    kind, (chain_id, seq, data) = sealed_record(item, seal)
    assert kind == "record" and isinstance(chain_id, str) and isinstance(seq, int)
    assert isinstance(data, bytes)
