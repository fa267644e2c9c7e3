"""Verifying records that travelled as spans (the OTLP sink) through an OpenTelemetry Collector.

`read_otlp_export` reads OTLP/JSON lines as the Collector's file exporter writes them
(`{"resourceSpans": [...]}` per line) and rebuilds the trail from the spans whose resource is
marked `ai_audit.pipeline` = "audit": records from `ai_audit.record` (their position from
`ai_audit.chain.id`/`.seq`), checkpoints and keys from their attributes. `trail_items` does
the same for attributes already decoded (the splunkhecexporter's span events in a Splunk
export). Spans sent twice (at-least-once) collapse; anything else is the verifier's to judge.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from otel_ai_audit.backends.otlp import layout
from otel_ai_audit.verify.export_source import (
    ExportError,
    ExportSource,
    Item,
    decode_base64,
    export_source,
    record_position,
    signed_checkpoint,
)


def read_otlp_export(path: str | Path) -> ExportSource:
    """The trail in a Collector file exporter's output; `ExportError` if it is not one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"cannot read the OTLP export {path}: {error}") from error
    items = list(trail_items(_span_attributes(lines, str(path))))
    return export_source(f"{path} (OTLP export)", items)


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


def _span_attributes(lines: list[str], path: str) -> Iterator[dict[str, Any]]:
    """Attributes of each audit span in OTLP/JSON lines."""
    found = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as error:
            raise ExportError(f"{path} is not an OTLP export: line {number} is not JSON "
                              f"({error})") from error
        if not isinstance(document, dict) or "resourceSpans" not in document:
            raise ExportError(f"{path} is not an OTLP export: line {number} has no "
                              "resourceSpans")
        found = True
        for resource_spans in document["resourceSpans"] or []:
            resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
            if resource.get(layout.PIPELINE) != layout.PIPELINE_VALUE:
                continue
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for span in scope_spans.get("spans") or []:
                    yield _attributes(span.get("attributes"))
    if not found:
        raise ExportError(f"{path} holds no OTLP spans")


def _attributes(pairs: Any) -> dict[str, Any]:
    """OTLP/JSON `[{"key": k, "value": {"stringValue": v}}]` as `{k: v}` (int64 values are
    decimal strings in OTLP/JSON: made ints)."""
    attributes: dict[str, Any] = {}
    for pair in pairs or []:
        value = pair.get("value") or {}
        if "stringValue" in value:
            attributes[pair.get("key")] = value["stringValue"]
        elif "intValue" in value:
            attributes[pair.get("key")] = int(value["intValue"])
        elif value:
            attributes[pair.get("key")] = next(iter(value.values()))
    return attributes
