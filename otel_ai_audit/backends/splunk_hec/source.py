"""Verifying the trail where it lives in Splunk: an export file read as a `RecordSource`.

Two forms are accepted, told apart object by object:

* Splunk's search export (`/services/search/jobs/export?output_mode=json`, or "Export" as
  JSON in the UI): one `{"preview": false, "result": {"_raw": ..., "sourcetype": ...}}` per
  line. For a complete export search everything, e.g.
  `search index=audit sourcetype=otel_ai_audit:* | fields _raw sourcetype chain.id chain.seq`.
* The HEC payload itself (what `SplunkHecSink` posts, kept by a proxy or a test peer): events
  `{"time": ..., "sourcetype": ..., "fields": {...}, "event": "..."}` concatenated.

Records are the `_raw` (or `event`) text of sourcetype `otel_ai_audit:record`; checkpoints and
keys come from `otel_ai_audit:checkpoint` and `otel_ai_audit:key`; events of sourcetype
`otel_ai_audit:span` are audit spans that came through the Collector (their attributes, as
the OTLP sink set them). Without a sourcetype an event is recognised by its shape. Other
sourcetypes are not part of the trail and are skipped. A record's position is its indexed
`chain.id`/`chain.seq` when the export has them, else what its own bytes say. Repeats of one
event (HEC delivers at least once) are collapsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from otel_ai_audit.backends.otlp.source import trail_items
from otel_ai_audit.backends.splunk_hec.layout import (
    CHECKPOINT_SOURCETYPE,
    KEY_SOURCETYPE,
    RECORD_SOURCETYPE,
    SOURCETYPE_PREFIX,
    SPAN_SOURCETYPE,
)
from otel_ai_audit.verify.export_source import (
    ExportError,
    ExportSource,
    Item,
    export_source,
    record_position,
    signed_checkpoint,
)

_SHAPES = ((b'{"chain":', RECORD_SOURCETYPE), (b'{"checkpoint":', CHECKPOINT_SOURCETYPE),
           (b'{"key":', KEY_SOURCETYPE))


def read_splunk_export(path: str | Path) -> ExportSource:
    """The trail in a Splunk export file; `ExportError` if it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"cannot read the Splunk export {path}: {error}") from error
    items: list[Item] = []
    events = 0
    for raw, sourcetype, fields in _events(text, str(path)):
        events += 1
        data = raw.encode("utf-8")
        kind = sourcetype or next((kind for prefix, kind in _SHAPES
                                   if data.startswith(prefix)), RECORD_SOURCETYPE)
        if kind == RECORD_SOURCETYPE:
            items.append(("record", (*record_position(data, fields.get("chain.id"),
                                                      fields.get("chain.seq")), data)))
        elif kind == CHECKPOINT_SOURCETYPE:
            items.append(("checkpoint",
                          signed_checkpoint(_object(raw).get("checkpoint") or {})))
        elif kind == KEY_SOURCETYPE:
            key = _object(raw).get("key") or {}
            items.append(("key", (str(key.get("key_id")), str(key.get("pem")))))
        elif kind == SPAN_SOURCETYPE:
            items.extend(trail_items([_object(raw).get("attributes") or {}]))
    if not events:
        raise ExportError(f"{path} holds no Splunk events: neither search export results "
                          "nor HEC events")
    return export_source(f"{path} (Splunk export)", items)


def _events(text: str, path: str) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(raw text, sourcetype or None, indexed fields) of each audit event in the file."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError as error:
            line = text.count("\n", 0, position) + 1
            raise ExportError(f"{path} is not a Splunk export: line {line} is not JSON "
                              f"({error.msg})") from error
        if not isinstance(item, dict):
            raise ExportError(f"{path} is not a Splunk export: it holds a JSON "
                              f"{type(item).__name__} where events are objects")
        if isinstance(result := item.get("result"), dict):
            raw, fields = result.get("_raw"), result
        elif "event" in item:
            raw, fields = item["event"], item.get("fields") or {}
        else:
            continue  # a search export's preview, message or last-row line
        if not isinstance(raw, str):
            # Not as sent (an event object where the text was): re-serialised, the verifier
            # finds its bytes are not the ones hashed.
            raw = json.dumps(raw, separators=(",", ":"))
        sourcetype = (result if isinstance(result, dict) else item).get("sourcetype")
        if isinstance(sourcetype, list):
            sourcetype = sourcetype[0] if sourcetype else None
        if sourcetype is not None and not str(sourcetype).startswith(SOURCETYPE_PREFIX):
            continue
        yield raw, sourcetype, fields if isinstance(fields, dict) else {}


def _object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
