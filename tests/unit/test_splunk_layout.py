"""The Splunk layout's indexed fields: strings only, spelled as the record's `_raw` spells
them, present whatever the record's size (HEC keeps only string values; Splunk's automatic
JSON extraction stops after the first 5000 bytes)."""

from __future__ import annotations

from typing import Any

from otel_ai_audit.backends.splunk_hec.layout import RECORD_FIELDS, record_fields
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event


def record(**fields: Any) -> bytes:
    return canonical_json({"chain": {"id": "c", "seq": 3},
                           "event": new_event(EventType.DRIFT, **fields)})


def test_scalars_become_the_strings_raw_spells() -> None:
    data = record(model={"name": "m", "version": 2},
                  drift={"feature": "age", "score": 1e-7, "drifted": True, "threshold": None,
                         "psi": 0.5})
    fields = record_fields(data)
    assert {name: fields[name] for name in ("event.type", "event.model.name",
                                            "event.model.version", "event.drift.score",
                                            "event.drift.drifted")} == {
        "event.type": "drift", "event.model.name": "m", "event.model.version": "2",
        "event.drift.score": "1e-7", "event.drift.drifted": "true"}
    assert all(f'"{value}"'.encode() in data or value.encode() in data
               for value in fields.values())
    assert "event.drift.threshold" not in fields  # null: no value to index
    assert set(fields) <= set(RECORD_FIELDS)
    assert all(isinstance(value, str) for value in fields.values())


def test_a_large_record_keeps_its_fields() -> None:
    data = record(model={"name": "wide", "version": "1"},
                  monitor={"features": {f"x{i}": i for i in range(3000)}})
    assert len(data) > 20_000 and data.index(b'"type":"drift"') > 5000
    assert record_fields(data)["event.type"] == "drift"


def test_bytes_that_are_no_record_have_no_fields() -> None:
    assert record_fields(b"not json") == {} and record_fields(b"[1]") == {}


def test_every_field_path_is_read() -> None:
    values: dict[str, Any] = {}
    event: dict[str, Any] = {}
    for number, path in enumerate(RECORD_FIELDS):
        _, key, *below = path.split(".")
        values[path] = f"v{number}"
        if below:
            event.setdefault(key, {})[below[0]] = f"v{number}"
        else:
            event[key] = f"v{number}"
    assert record_fields(canonical_json({"chain": {"id": "c", "seq": 0}, "event": event})) == values


def test_a_record_orjson_refuses_is_read_by_the_json_module() -> None:
    data = b'{"chain":{"id":"c","seq":0},"event":{"drift":{"score":NaN},"type":"drift"}}'
    assert record_fields(data) == {"event.type": "drift"}  # NaN is no JSON number: not indexed
