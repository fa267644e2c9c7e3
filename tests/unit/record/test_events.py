"""Whole records, as the write path builds them and a verifier reads them back.

test_canonical.py compares `canonical_json` with the `rfc8785` reference value by value. Here:
events made by `new_event` from converted Python fields are sealed and compared with the
reference over the whole envelope; a sealed record parsed back canonicalises to its own bytes
(what the verifier's non-canonical check relies on); and one value without a reproducible
form anywhere in otherwise good data is always refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.record.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_json,
    to_json_data,
)
from otel_ai_audit.record.schema import (
    SCHEMA_VERSION,
    ChainHeader,
    EventType,
    Record,
    new_event,
    parse_header,
    parse_record,
    seal,
)
from tests.unit.profiles import property_settings
from tests.unit.record.strategies import json_data, json_scalars, keys, texts

RESERVED = {"event_type", "event_id", "time_ns"}
"""`new_event`'s own keywords: a field of that name cannot be passed through it."""

fields = st.dictionaries(keys.filter(lambda key: key not in RESERVED), json_data, max_size=4)
headers = st.fixed_dictionaries({
    "chain_id": st.text("0123456789abcdef", min_size=32, max_size=32),
    "seq": st.integers(0, MAX_SAFE_INTEGER),
    "prev": st.text("0123456789abcdef", min_size=64, max_size=64),
    "logged_ns": st.integers(0, 2**64 - 1),
})


@property_settings(0.5)
@given(st.sampled_from(EventType), st.integers(0, 2**63 - 1), fields, headers)
def test_sealed_events_are_the_reference_bytes_of_the_envelope(
        kind: EventType, time_ns: int, extra: dict[str, Any], header: dict[str, Any]) -> None:
    event = new_event(kind, time_ns=time_ns, **to_json_data(extra))
    data = seal(event, **header)
    envelope = Record(chain=ChainHeader(id=header["chain_id"], logged=str(header["logged_ns"]),
                                        prev=header["prev"], seq=header["seq"],
                                        v=SCHEMA_VERSION), event=event)
    assert data == rfc8785.dumps(envelope)
    parsed = parse_header(data)
    assert parsed is not None and (parsed.chain_id, parsed.seq) == (header["chain_id"],
                                                                   header["seq"])
    assert parse_record(data)["event"]["type"] == kind.value


@property_settings()
@given(json_data)
def test_canonical_bytes_parsed_back_canonicalise_to_themselves(value: Any) -> None:
    """Unless they hold an integral float of 2**53 or more: JCS writes it as an integer
    literal, which parses back as an int beyond I-JSON and is refused, never re-encoded
    differently."""
    data = canonical_json(value)
    parsed = json.loads(data)
    try:
        assert canonical_json(parsed) == data
    except CanonicalizationError as error:
        assert "outside the I-JSON range" in str(error)
        assert any(isinstance(number, float) and number.is_integer()
                   and abs(number) > MAX_SAFE_INTEGER for number in _numbers(value))


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return [value] if isinstance(value, (int, float)) else []


unreproducible = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(MAX_SAFE_INTEGER + 1) | st.integers(max_value=-MAX_SAFE_INTEGER - 1),
    st.tuples(texts, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), texts).map(
        "".join),
    st.tuples(json_scalars) | st.binary(max_size=4) | st.sets(st.integers(), max_size=2),
    st.dictionaries(st.integers() | st.none(), json_scalars, min_size=1, max_size=2),
)


def _inside(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A list or object of good values with one bad child somewhere (scalars beside it: the
    nesting comes from the recursion, and the check is the same at any depth)."""
    return st.one_of(
        st.tuples(st.lists(json_scalars, max_size=3), children, st.lists(json_scalars, max_size=3))
        .map(lambda parts: [*parts[0], parts[1], *parts[2]]),
        st.tuples(st.dictionaries(keys, json_scalars, max_size=3), keys, children)
        .map(lambda parts: {**parts[0], parts[1]: parts[2]}),
    )


@property_settings()
@given(st.recursive(unreproducible, _inside, max_leaves=4))
def test_one_unreproducible_value_anywhere_is_refused(value: Any) -> None:
    try:
        canonical_json(value)
    except CanonicalizationError:
        pass
    else:
        raise AssertionError(f"accepted {value!r}")
