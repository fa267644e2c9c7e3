"""Canonical record bytes: RFC 8785 conformance, strictness, the to_json_data rules, and the
record header verifiers read from the canonical prefix.

Every record hash depends on these bytes, so `canonical_json` is compared byte for byte with
the `rfc8785` reference over generated data, not only over hand-picked examples.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import json
import math
import struct
import uuid
from collections import OrderedDict
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.record import canonical
from otel_ai_audit.record.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_json,
    es6_number,
    to_json_data,
)
from otel_ai_audit.record.schema import (
    SCHEMA_VERSION,
    EventType,
    Header,
    new_event,
    new_event_id,
    parse_header,
    parse_record,
    seal,
)
from tests.unit.profiles import property_settings
from tests.unit.record.strategies import finite_floats, json_data, json_objects

PROPERTY = property_settings()


# --- RFC 8785 conformance ------------------------------------------------------------------

@PROPERTY
@given(json_data)
def test_canonical_json_is_byte_identical_to_the_reference(value: Any) -> None:
    data = canonical_json(value)
    assert data == rfc8785.dumps(value)
    assert json.loads(data, parse_int=float) == value  # reads back as the same numbers


@property_settings(0.25)
@given(json_data)
def test_the_pure_python_encoder_fallback_gives_the_same_bytes(value: Any) -> None:
    """Interpreters without the C accelerator of `json` take JSONEncoder.encode instead."""
    expected = canonical_json(value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(canonical, "_encode_chunks", None)
        assert canonical_json(value) == expected


@property_settings(5)
@given(finite_floats)
def test_numbers_are_written_in_their_es6_form(number: float) -> None:
    assert canonical_json(number) == rfc8785.dumps(number)
    assert es6_number(number).encode() == canonical_json(number)
    assert float(canonical_json(number)) == number


@PROPERTY
@given(st.dictionaries(st.text(st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF,
                                             codec="utf-8")
                               | st.characters(min_codepoint=0x10000), max_size=3),
                       finite_floats, min_size=2))
def test_keys_sort_by_utf16_code_units(value: dict[str, float]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"\U0001f600": "astral key", "\uffff": "last BMP key", "a": 1},
    {"text": "\U0001f600 astral value", "\u00e9": "\u00e9"},
    {"ok": 0.5, "integral": 2.0, "tiny": 1e-7, "huge": 1e21, "nested": [{"n": -0.0}]},
])
def test_objects_of_exact_types_match_the_reference(value: dict[str, Any]) -> None:
    """The orjson path for such objects hands astral keys and floats orjson would print in
    another form to the full path."""
    assert canonical_json(value) == rfc8785.dumps(value)


# IEEE 754 bit patterns and their expected forms, from RFC 8785 Appendix B.
RFC_8785_NUMBERS = {
    "0000000000000000": "0",
    "8000000000000000": "0",
    "0000000000000001": "5e-324",
    "8000000000000001": "-5e-324",
    "7fefffffffffffff": "1.7976931348623157e+308",
    "ffefffffffffffff": "-1.7976931348623157e+308",
    "4340000000000000": "9007199254740992",
    "c340000000000000": "-9007199254740992",
    "4430000000000000": "295147905179352830000",
    "44b52d02c7e14af5": "9.999999999999997e+22",
    "44b52d02c7e14af6": "1e+23",
    "44b52d02c7e14af7": "1.0000000000000001e+23",
    "444b1ae4d6e2ef4e": "999999999999999700000",
    "444b1ae4d6e2ef4f": "999999999999999900000",
    "444b1ae4d6e2ef50": "1e+21",
    "3eb0c6f7a0b5ed8c": "9.999999999999997e-7",
    "3eb0c6f7a0b5ed8d": "0.000001",
    "41b3de4355555553": "333333333.3333332",
    "41b3de4355555554": "333333333.33333325",
    "41b3de4355555555": "333333333.3333333",
    "41b3de4355555556": "333333333.3333334",
    "41b3de4355555557": "333333333.33333343",
    "becbf647612f3696": "-0.0000033333333333333333",
    "43143ff3c1cb0959": "1424953923781206.2",
}


@pytest.mark.parametrize(("bits", "expected"), RFC_8785_NUMBERS.items())
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    number = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json(number) == expected.encode()


@pytest.mark.parametrize(("number", "expected"), [
    (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-7, "1e-7"), (0.000001, "0.000001"),
    (333333333.3333333, "333333333.3333333"), (5e-324, "5e-324"), (-0.0, "0"), (1.0, "1"),
    (9007199254740992.0, "9007199254740992"), (1e16, "10000000000000000"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (0.8734512, "0.8734512"),
])
def test_es6_number_examples(number: float, expected: str) -> None:
    assert canonical_json(number) == expected.encode()
    assert canonical_json({"x": [number]}) == b'{"x":[' + expected.encode() + b"]}"


def test_rfc8785_serialisation_example() -> None:
    source = r'''{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }'''
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(source)) == expected.encode()


def test_rfc8785_sorting_example() -> None:
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return",
             "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
             "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
             "\u00f6": "Latin Small Letter O With Diaeresis"}
    order = list(json.loads(canonical_json(value)))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


# --- strictness ----------------------------------------------------------------------------

class Colour(enum.Enum):
    RED = 1


@pytest.mark.parametrize(("value", "message"), [
    (math.nan, "has no JSON form"),
    (math.inf, "has no JSON form"),
    (-math.inf, "has no JSON form"),
    ({"score": [1.0, math.nan]}, "has no JSON form"),
    (MAX_SAFE_INTEGER + 1, "outside the I-JSON range"),
    (-MAX_SAFE_INTEGER - 1, "outside the I-JSON range"),
    ([{"time_unix_nano": 1_700_000_000_000_000_000}], "outside the I-JSON range"),
    ("\ud800", "lone surrogate"),
    (["a\udfffb"], "lone surrogate"),
    ("\ud83d\ude00", "lone surrogate"),  # a surrogate pair as two code points is not UTF-8
    ("\udc001e-7", "lone surrogate"),
    ({"\ud800": 1}, "lone surrogate"),
    ({"\ufb33\udc00": 1}, "lone surrogate"),
    ({1: "a"}, "is not a string"),
    ({None: "a"}, "is not a string"),
    ({"ok": {(1, 2): "a"}}, "is not a string"),
    ({b"k": "a"}, "is not a string"),
    ((1, 2), "tuple is not JSON data"),
    ({"a": {1, 2}}, "set is not JSON data"),
    # Objects whose values are all of exact JSON types take orjson's strict path first.
    ({"id": "a", "n": MAX_SAFE_INTEGER + 1}, "outside the I-JSON range"),
    ({"id": "a", "nested": {"text": "x\udc00"}}, "lone surrogate"),
    ({"id": "a", "nested": {2: "b"}}, "is not a string"),
    ({"id": "a", "label": EventType.INFERENCE}, "EventType is not JSON data"),
    ({"id": "a", "pair": (1, 2)}, "tuple is not JSON data"),
    (b"bytes", "bytes is not JSON data"),
    (decimal.Decimal("1.5"), "Decimal is not JSON data"),
    (dt.datetime(2024, 1, 1), "datetime is not JSON data"),
    (np.float64(0.5), "float64 is not JSON data"),
    (np.int64(1), "int64 is not JSON data"),
    (EventType.INFERENCE, "EventType is not JSON data"),
    (Colour.RED, "Colour is not JSON data"),
    (OrderedDict(a=1), "OrderedDict is not JSON data"),
    (object(), "object is not JSON data; convert it with to_json_data"),
])
def test_values_without_a_reproducible_form_are_rejected(value: Any, message: str) -> None:
    with pytest.raises(CanonicalizationError, match=message):
        canonical_json(value)


def test_largest_safe_integers_are_accepted() -> None:
    assert canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[9007199254740991,-9007199254740991]")


def test_a_value_that_contains_itself_is_rejected_clearly() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CanonicalizationError, match="nested too deeply or contains itself"):
        canonical_json({"a": loop})


@pytest.mark.parametrize("value", [
    "\x00jcs-number:1",
    ["\x00jcs-number:1e-7", 1e-7],
    {"\x00jcs-number:": 1e21, "b": "\x00jcs-number:1e+21"},
    '"\x00jcs-number:5"',
    "\\u0000jcs-number:5",
])
def test_strings_cannot_pose_as_numbers(value: Any) -> None:
    """No string is confused with the internal marker of a rewritten number."""
    assert canonical_json(value) == rfc8785.dumps(value)


def test_canonicalization_error_is_a_value_error() -> None:
    assert issubclass(CanonicalizationError, ValueError)


# --- to_json_data --------------------------------------------------------------------------

class Plain(enum.Enum):
    THREE = 3


class Level(enum.IntEnum):
    HIGH = 2


class Opaque:
    pass


UTC = dt.timezone.utc
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(("value", "expected"), [
    (math.nan, "NaN"),
    (math.inf, "Infinity"),
    (-math.inf, "-Infinity"),
    (MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    (2**53, "9007199254740992"),
    (-(2**64), "-18446744073709551616"),
    (1.0, 1.0),
    (b"\x00\xff", "AP8="),
    (bytearray(b"audit"), base64.b64encode(b"audit").decode()),
    (memoryview(b"audit"), base64.b64encode(b"audit").decode()),
    (np.float32(0.5), 0.5),
    (np.float64(math.nan), "NaN"),
    (np.int64(7), 7),
    (np.int64(2**62), str(2**62)),
    (np.bool_(True), True),
    (np.array(3.5), 3.5),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (np.array([1.5, math.nan, -math.inf]), [1.5, "NaN", "-Infinity"]),
    (np.str_("text"), "text"),
    (dt.datetime(2024, 2, 29, 12, 30, 5, 123456, tzinfo=PLUS_TWO), "2024-02-29T10:30:05.123456Z"),
    (dt.datetime(2024, 2, 29, 12, 30, 5), "2024-02-29T12:30:05.000000Z"),
    (dt.datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02T03:04:05.000000Z"),
    (dt.datetime(1, 1, 1, tzinfo=PLUS_TWO), "0001-01-01T00:00:00+02:00"),
    (dt.date(2024, 2, 29), "2024-02-29"),
    (dt.time(12, 30), "12:30:00"),
    (pd.Timestamp("2024-02-29T12:30:05.123456789+01:00"), "2024-02-29T11:30:05.123456789Z"),
    (pd.Timestamp("2024-02-29"), "2024-02-29T00:00:00.000000000Z"),
    (pd.NaT, "NaT"),
    (decimal.Decimal("1.10"), "1.10"),
    (decimal.Decimal("NaN"), "NaN"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (PurePosixPath("models/v3"), "models/v3"),
    (Plain.THREE, 3),
    (Level.HIGH, 2),
    (EventType.INFERENCE, "inference"),
    ({3, 1, 2}, [1, 2, 3]),
    ({10, 9}, [10, 9]),  # by canonical bytes: "10" < "9"
    (frozenset({"b", "a", 1, None}), ["a", "b", 1, None]),
    ((1, (2, 3)), [1, [2, 3]]),
    ({1: {None: (1, 2)}, (1, 2): "t", 1.5: math.nan}, {"1": {"None": [1, 2]}, "(1, 2)": "t",
                                                        "1.5": "NaN"}),
    (MappingProxyType({"a": b"\x01"}), {"a": "AQ=="}),
    (OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
    ("a\ud800b", "a\ufffdb"),
    ({"k\udfff": "\ud83d\ude00"}, {"k\ufffd": "\U0001f600"}),
    (Opaque(), f"<unserializable {Opaque.__module__}.Opaque>"),
    (1 + 2j, "<unserializable builtins.complex>"),
])
def test_to_json_data_follows_the_documented_rules(value: Any, expected: Any) -> None:
    converted = to_json_data(value)
    assert converted == expected
    assert type(converted) is type(expected)
    canonical_json(converted)


def test_sets_are_sorted_whatever_their_iteration_order() -> None:
    words = [f"w{i}" for i in range(50)]
    forwards = to_json_data(set(words))
    backwards = to_json_data(set(reversed(words)))
    assert forwards == backwards == sorted(words)


hashables = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()),
    lambda children: st.tuples(children, children) | st.frozensets(children, max_size=3),
    max_leaves=6,
)
surrogate_texts = st.text(st.characters(codec="utf-8") | st.characters(min_codepoint=0xD800,
                                                                       max_codepoint=0xDFFF))
timezones = st.none() | st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59),
                                      max_value=dt.timedelta(hours=23, minutes=59)
                                      ).map(dt.timezone)
python_scalars = st.one_of(
    hashables,
    surrogate_texts,
    st.datetimes(timezones=timezones),
    st.dates(),
    st.times(),
    st.decimals(),
    st.uuids(),
    st.floats().map(np.float64),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.booleans().map(np.bool_),
    st.sampled_from([Plain.THREE, Level.HIGH, EventType.INFERENCE, pd.NaT, Opaque(), 1j]),
    st.integers(-(10**17), 10**17).map(lambda ns: pd.Timestamp(ns, unit="ns")),
)
python_values = st.recursive(
    python_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashables, children, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.lists(st.floats(), max_size=4).map(np.array),
    ),
    max_leaves=20,
)


@PROPERTY
@given(python_values)
@example({"\x00jcs-number:": {b"\xff": [math.nan, 10**30, "\ud800"]}})
def test_any_python_value_converts_to_canonicalisable_data(value: Any) -> None:
    data = to_json_data(value)
    canonical = canonical_json(data)
    assert canonical == rfc8785.dumps(data)
    assert to_json_data(data) == data  # JSON data converts to itself


# --- the record and its header -------------------------------------------------------------

hex_digits = "0123456789abcdef"
chain_ids = st.text(hex_digits, min_size=32, max_size=32)
prevs = st.text(hex_digits, min_size=64, max_size=64)
seqs = st.integers(0, MAX_SAFE_INTEGER)
logged = st.integers(0, 10**20 - 1)


@PROPERTY
@given(json_objects, chain_ids, seqs, prevs, logged)
def test_parse_header_reads_back_what_seal_wrote(event: dict[str, Any], chain_id: str,
                                                  seq: int, prev: str, logged_ns: int) -> None:
    data = seal(event, chain_id, seq, prev, logged_ns)
    header = {"id": chain_id, "logged": str(logged_ns), "prev": prev, "seq": seq,
              "v": SCHEMA_VERSION}
    assert data == canonical_json({"chain": header, "event": event})
    assert parse_header(data) == Header(chain_id, logged_ns, prev, seq, SCHEMA_VERSION)
    assert parse_record(data)["chain"] == header


@pytest.mark.parametrize(("chain_id", "seq", "prev"), [
    ('chain "quoted"', 1, "00" * 32),
    ("k\u00e9y", 1, "00" * 32),
    ("a" * 32, -1, "00" * 32),
    ("a" * 32, 1, ""),
])
def test_seal_writes_unusual_headers_canonically(chain_id: str, seq: int, prev: str) -> None:
    event = {"id": "e", "score": 1e-7}
    header = {"id": chain_id, "logged": "5", "prev": prev, "seq": seq, "v": SCHEMA_VERSION}
    data = seal(event, chain_id, seq, prev, 5)
    assert data == rfc8785.dumps({"chain": header, "event": event})
    assert parse_header(data) is None


@pytest.mark.parametrize("chain_id", ["a" * 32, 'chain "quoted"', "k\u00e9y"])
def test_a_chain_seals_what_seal_writes(chain_id: str) -> None:
    """`Chain.seal` writes the usual header directly; any other goes through `seal`."""
    chain = Chain(chain_id)
    event = {"id": "e", "type": "inference", "time": "t", "score": 0.25}
    first, second = chain.seal(event, 5), chain.seal(event, 6)
    assert first.data == seal(event, chain_id, 0, "00" * 32, 5)
    assert second.data == seal(event, chain_id, 1, leaf_hash(first.data).hex(), 6)


def test_seal_rejects_what_canonical_json_rejects() -> None:
    with pytest.raises(CanonicalizationError, match="has no JSON form"):
        seal({"score": math.nan}, "a" * 32, 0, "0" * 64, 1)


CHAIN_ID, PREV = "0123456789abcdef" * 2, "89abcdef01234567" * 4
SEALED = seal(new_event(EventType.INFERENCE, output={"score": 0.8734512}), CHAIN_ID, 7, PREV,
              1_700_000_000_123_456_789)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _variants() -> dict[str, bytes]:
    record = json.loads(SEALED)
    chain, event = record["chain"], record["event"]
    return {
        "spaces after separators": json.dumps(record, sort_keys=True).encode(),
        "indented": json.dumps(record, sort_keys=True, indent=1).encode(),
        "leading whitespace": b" " + SEALED,
        "event before chain": _compact({"event": event, "chain": chain}),
        "header keys reversed": _compact({"chain": dict(reversed(list(chain.items()))),
                                          "event": event}),
        "seq as a string": SEALED.replace(b'"seq":7', b'"seq":"7"'),
        "seq with a leading zero": SEALED.replace(b'"seq":7', b'"seq":07'),
        "logged as a number": SEALED.replace(b'"logged":"1700000000123456789"',
                                             b'"logged":1700000000123456789'),
        "upper-case prev": SEALED.replace(PREV.encode(), PREV.upper().encode()),
        "escaped character": SEALED.replace(b'"id":"0', b'"id":"\\u0030', 1),
    }


def test_parse_header_reads_a_sealed_record() -> None:
    assert parse_header(SEALED) == Header(CHAIN_ID, 1_700_000_000_123_456_789, PREV, 7,
                                          SCHEMA_VERSION)


@pytest.mark.parametrize("variant", _variants())
def test_parse_header_rejects_non_canonical_variants(variant: str) -> None:
    data = _variants()[variant]
    assert data != SEALED
    assert parse_header(data) is None


def test_new_event_ids_are_uuid7_in_time_order() -> None:
    event = new_event(EventType.INFERENCE, time_ns=1_700_000_000_123_456_789, risk="high")
    assert event["time"] == "2023-11-14T22:13:20.123456789Z"
    assert (event["type"], event["risk"]) == ("inference", "high")
    parsed = uuid.UUID(event["id"])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == 1_700_000_000_123
    ids = [new_event_id(1_700_000_000_000_000_000 + step * 1_000_000) for step in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
    assert new_event("dispute", event_id="given")["id"] == "given"


_numbers = st.one_of(st.floats(), st.integers(min_value=-2**60, max_value=2**60), st.booleans())


@given(st.lists(_numbers, max_size=12))
def test_lists_of_numbers_convert_as_item_by_item(items: list[Any]) -> None:
    """The bulk path for rows of numeric arrays gives what the per-item rules give."""
    assert to_json_data(items) == [to_json_data(item) for item in items]
    array = np.array([item for item in items if type(item) is float], dtype=float)
    assert to_json_data(array) == [to_json_data(float(item)) for item in array]
