"""The Elasticsearch documents of records, built without a node: `record_fields` reads records
with orjson for speed, and must index exactly what the json module's reading gives (the
verifier compares the two); `record_lines` splices the canonical bytes into the document."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.backends.elasticsearch import layout
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.record.canonical import canonical_json
from tests.unit.profiles import property_settings
from tests.unit.record.strategies import json_data, json_objects

# Values where the indexed fields look: every type, so each conversion meets what it refuses.
indexed_events = st.fixed_dictionaries({}, optional={
    "id": json_data, "type": st.sampled_from(["inference", "oversight", "drift"]) | json_data,
    "time": st.sampled_from(["2026-12-07T07:44:33.049704852Z", "1969-12-31T23:59:59Z",
                             "2026-02-30T00:00:00Z", "2262-01-01T00:00:00Z"]) | json_data,
    "model": st.fixed_dictionaries({}, optional={"name": json_data, "version": json_data}),
    "output": st.fixed_dictionaries({}, optional={"score": json_data, "value": json_data}),
    "latency_ms": json_data, "action": st.sampled_from(["overridden", "approved"]) | json_data,
    "drift": st.fixed_dictionaries({}, optional={"drifted": json_data, "psi": json_data}),
    "window": st.fixed_dictionaries({}, optional={"start": json_data}),
    "risk": json_data,
}).flatmap(lambda known: json_objects.map(lambda extra: {**extra, **known}))
chains = st.fixed_dictionaries({"id": st.text("0123456789abcdef", min_size=1, max_size=32),
                                "logged": st.sampled_from(["1796630192744527763", "-1", "x"]),
                                "seq": st.integers(0, 2**53 - 1)})


@property_settings()
@given(chains, indexed_events)
def test_fields_read_by_orjson_are_those_the_json_module_reads(chain: dict[str, Any],
                                                                event: dict[str, Any]) -> None:
    data = canonical_json({"chain": chain, "event": event})
    assert layout.record_fields(data) == layout._fields_of(data)


@pytest.mark.parametrize("data", [
    # Bytes no sealer writes, which orjson reads differently from json or refuses.
    b'{"chain":{"id":"c","seq":100000000000000000000000},"event":{"id":"e"}}',
    b'{"chain":{"id":"c","seq":1},"event":{"id":-100000000000000000000,"latency_ms":'
    b'18446744073709551616}}',
    b'{"chain":{"id":"c","seq":1},"event":{"model":{"name":1e400},"output":{"score":NaN}}}',
    b'{"chain":{"id":"c","seq":1},"event":{"id":"\\ud800","type":"oversight","action":"x"}}',
    b'{"chain":{"id":"c","seq":1},"event":{"latency_ms":1e+30,"id":"1e+30"}}',
    b'{"chain":[],"event":{}}', b'{"event":[]}', b"[]", b"\xff", b'{"chain":{"id":',
])
def test_fields_of_unusual_bytes_are_those_the_json_module_reads(data: bytes) -> None:
    assert layout.record_fields(data) == layout._fields_of(data)


@pytest.mark.parametrize("data", [
    canonical_json({"chain": {"id": "c" * 32, "logged": "1796630192744527763", "seq": 3},
                    "event": {"id": "e", "time": "2026-12-07T07:44:33Z", "type": "inference",
                              "model": {"name": "m\u00e9"}, "output": {"score": 0.25}}}),
    b"torn", b"{}",
])
def test_record_lines_create_the_fields_and_the_canonical_bytes(data: bytes) -> None:
    record = SealedRecord("c" * 32, 3, "2026-12-07T07:44:33Z", "inference", "e", data)
    action, source = layout.record_lines(record)
    fields = layout.record_fields(data) or {"@timestamp": "2026-12-07T07:44:33Z",
                                            "chain.id": "c" * 32, "chain.seq": 3}
    assert json.loads(action) == {"create": {"_id": f"{'c' * 32}:3"}}
    assert json.loads(source) == {**fields, "canonical": base64.b64encode(data).decode()}
