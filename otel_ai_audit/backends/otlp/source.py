"""Verifying records that travelled through an OpenTelemetry Collector, from its file export.

`read_otlp_export` reads OTLP/JSON lines as the Collector's file exporter writes them (one
`{"resourceSpans": [...]}` or `{"resourceLogs": [...]}` document per line) and rebuilds the
trail from two kinds of item:

* spans and log records whose resource is marked `ai_audit.pipeline` = "audit" (the OTLP
  sink's, and the gateway processor's chain_open, checkpoints, keys and `separate` records):
  records from `ai_audit.record` (their position from `ai_audit.chain.id`/`.seq`),
  checkpoints and keys from their attributes;
* spans and log records of any resource that carry an `ai_audit.seal` (chained at the gateway
  with `chain.records: attached`): each record rebuilt from the item and its seal
  (`otel_ai_audit.backends.otlp.sealed`).

`export_items` yields those items line by line (for a caller that wants them in file order);
`trail_items` does the first for attributes already decoded (the splunkhecexporter's span
events in a Splunk export). Spans sent twice (at-least-once) collapse; anything else is the
verifier's to judge.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from otel_ai_audit.backends.otlp import layout
from otel_ai_audit.backends.otlp.sealed import SEAL, SealError, Telemetry, Value, rebuild
from otel_ai_audit.verify.export_source import (
    ExportError,
    ExportSource,
    Item,
    decode_base64,
    export_source,
    record_position,
    signed_checkpoint,
)

_SIGNALS = (("resourceSpans", "scopeSpans", "spans"), ("resourceLogs", "scopeLogs", "logRecords"))


def read_otlp_export(*paths: str | Path) -> ExportSource:
    """The trail in a Collector file exporter's output: one file, or several (the current file
    and the backups its `rotation` left, in any order); `ExportError` if one is not."""
    items: list[Item] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ExportError(f"cannot read the OTLP export {path}: {error}") from error
        items.extend(export_items(lines, str(path)))
    files = str(paths[0]) if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more files"
    return export_source(f"{files} (OTLP export)", items)


def trail_items(spans: Iterable[Mapping[str, Any]]) -> Iterator[Item]:
    """The trail's items in spans' attributes (decoded to plain values)."""
    for attributes in spans:
        kind = attributes.get(layout.KIND)
        if kind == "record":
            if layout.RECORD in attributes:
                data = str(attributes[layout.RECORD]).encode("utf-8")
            else:
                data = decode_base64(attributes.get(layout.RECORD_BASE64))
            yield "record", (*record_position(data, attributes.get(layout.CHAIN_ID),
                                              attributes.get(layout.CHAIN_SEQ)), data)
        elif kind == "checkpoint":
            yield "checkpoint", signed_checkpoint({
                "chain_id": attributes.get(layout.CHAIN_ID),
                "index": attributes.get(layout.CHECKPOINT_INDEX),
                "size": attributes.get(layout.CHECKPOINT_SIZE),
                "key_id": attributes.get(layout.CHECKPOINT_KEY_ID),
                "payload": attributes.get(layout.CHECKPOINT_PAYLOAD),
                "signature": attributes.get(layout.CHECKPOINT_SIGNATURE)})
        elif kind == "key":
            yield "key", (str(attributes.get(layout.KEY_ID)), str(attributes.get(layout.KEY_PEM)))


def sealed_record(item: Telemetry, seal: Any) -> Item:
    """The record `seal` attached to `item`. A seal that cannot be decoded is kept as bytes
    that are no record, where it says it belongs (or at chain "", seq -1), so the verifier
    reports it as it reports any unreadable record: a finding, never a crash."""
    try:
        return "record", rebuild(item, seal)
    except SealError as error:
        kept = bytes(seal) if isinstance(seal, (bytes, bytearray)) else str(seal).encode()
        return "record", (error.chain_id, error.seq, kept)


def export_items(lines: list[str], path: str) -> Iterator[Item]:
    """The trail's items in OTLP/JSON lines (a file exporter's output read as lines; `path`
    names it in errors), in file order, repeats included; `ExportError` if it is none."""
    found = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as error:
            raise ExportError(f"{path} is not an OTLP export: line {number} is not JSON "
                              f"({error})") from error
        if not isinstance(document, dict) or not any(key in document for key, _, _ in _SIGNALS):
            raise ExportError(f"{path} is not an OTLP export: line {number} has no "
                              "resourceSpans or resourceLogs")
        found = True
        for resources, scopes, entries in _SIGNALS:
            for resource_entry in document.get(resources) or []:
                resource = attributes((resource_entry.get("resource") or {}).get("attributes"))
                audit = resource.get(layout.PIPELINE) == layout.PIPELINE_VALUE
                service = resource.get("service.name")
                for scope_entry in resource_entry.get(scopes) or []:
                    scope = scope_entry.get("scope") or {}
                    for entry in scope_entry.get(entries) or []:
                        values = attributes(entry.get("attributes"))
                        if audit:
                            yield from trail_items([values])
                        elif SEAL in values:
                            item = telemetry("span" if entries == "spans" else "log", entry,
                                             values, scope,
                                             service if isinstance(service, str) else "")
                            yield sealed_record(item, values[SEAL])
    if not found:
        raise ExportError(f"{path} holds no OTLP spans or logs")


def telemetry(signal: str, entry: Mapping[str, Any], values: dict[str, Value],
              scope: Mapping[str, Any], service: str) -> Telemetry:
    """An OTLP/JSON span or log record (`signal` "span" or "log"), its attributes already
    decoded (`values`), with its scope and its resource's service.name."""
    return (_span if signal == "span" else _log)(entry, values, scope, service)


def _span(span: Mapping[str, Any], values: dict[str, Value], scope: Mapping[str, Any],
          service: str) -> Telemetry:
    status = span.get("status") or {}
    return Telemetry(
        "span", values, str(scope.get("name", "")), str(scope.get("version", "")), service,
        trace_id=_id(span.get("traceId")), span_id=_id(span.get("spanId")),
        name=str(span.get("name", "")), kind=_int(span.get("kind")),
        status_code=_int(status.get("code")), status_message=str(status.get("message", "")),
        parent_span_id=_id(span.get("parentSpanId")),
        start_ns=_int(span.get("startTimeUnixNano")), end_ns=_int(span.get("endTimeUnixNano")))


def _log(record: Mapping[str, Any], values: dict[str, Value], scope: Mapping[str, Any],
         service: str) -> Telemetry:
    body = record.get("body")
    return Telemetry(
        "log", values, str(scope.get("name", "")), str(scope.get("version", "")), service,
        trace_id=_id(record.get("traceId")), span_id=_id(record.get("spanId")),
        end_ns=_int(record.get("timeUnixNano")),
        observed_ns=_int(record.get("observedTimeUnixNano")),
        severity_text=str(record.get("severityText", "")),
        severity_number=_int(record.get("severityNumber")),
        event_name=str(record.get("eventName", "")),
        body=value(body) if isinstance(body, dict) else None,
        has_body=isinstance(body, dict) and bool(body))


def attributes(pairs: Any) -> dict[str, Value]:
    """OTLP/JSON `[{"key": k, "value": {...}}]` as `{k: typed value}` (`value`)."""
    return {str(pair.get("key")): value(pair.get("value")) for pair in pairs or []}


def value(any_value: Any) -> Value:
    """An OTLP/JSON AnyValue as a typed Python value: int64 from its decimal string, doubles
    from a number or "NaN"/"Infinity"/"-Infinity", bytes from base64; None when empty."""
    if not isinstance(any_value, dict) or not any_value:
        return None
    kind, content = next(iter(any_value.items()))
    if kind == "stringValue":
        return str(content)
    if kind == "boolValue":
        return bool(content)
    if kind == "intValue":
        return _int(content)
    if kind == "doubleValue":
        try:
            return float(content)
        except (TypeError, ValueError):
            return str(content)
    if kind == "bytesValue":
        try:
            return base64.b64decode(str(content), validate=True)
        except (binascii.Error, ValueError):
            return str(content)
    if kind == "arrayValue":
        return [value(item) for item in (content or {}).get("values") or []]
    if kind == "kvlistValue":
        return attributes((content or {}).get("values"))
    return None


def _int(text: Any) -> int:
    """OTLP/JSON integers: numbers, or decimal strings (64-bit ones always are); enums may be
    given by number only here (the file exporter writes them so)."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _id(text: Any) -> bytes:
    """A trace or span id from its hex (b"" when absent or not hex)."""
    try:
        return bytes.fromhex(str(text or ""))
    except ValueError:
        return b""
