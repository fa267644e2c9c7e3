"""The capture policy's `full` mode: a value is kept whole up to `max_bytes` of canonical JSON,
else replaced by its size and keyed hash. The size check skips serialising what is surely small
(`_surely_within`); whatever it skips must really fit."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.capture import CapturePolicy, _surely_within
from otel_ai_audit.record.canonical import canonical_json
from tests.unit.record.strategies import json_data


@given(json_data, st.integers(min_value=0, max_value=400))
def test_what_the_bound_skips_fits(value: Any, limit: int) -> None:
    if _surely_within(value, limit):
        assert len(canonical_json(value)) <= limit


@given(json_data, st.integers(min_value=1, max_value=400))
def test_full_capture_keeps_a_value_only_when_it_fits(value: Any, limit: int) -> None:
    captured = CapturePolicy(outputs="full", max_bytes=limit, hmac_key=b"k").capture_output(value)
    size = len(canonical_json(value))
    if size <= limit:
        assert captured == {"policy": "full", "value": value}
    else:
        assert captured["truncated"] is True and captured["bytes"] == size


def test_the_longest_numbers_and_escapes_are_bounded() -> None:
    row = [-1.2345678901234567e-6] * 3
    assert len(canonical_json(row)) == 3 * 26 + 1 and _surely_within(row, 3 * 26 + 2)
    control = "\x01" * 5
    assert len(canonical_json(control)) == 6 * 5 + 2 and _surely_within(control, 32)
    assert not _surely_within(control, 31)
