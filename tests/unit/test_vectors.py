"""The shared vectors (tests/vectors/) hold for the Python side: RFC 8785 canonical forms, ES6
numbers and RFC 9162 leaf hashes that the Go `auditprocessor` checks too (`go test`), and the
OTLP trail fixture the Go tests verify is a trail `otel-ai-audit verify` finds intact."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from otel_ai_audit.backends.otlp.source import read_otlp_export
from otel_ai_audit.integrity.keys import load_trusted_keys
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.record.canonical import canonical_json, es6_number
from otel_ai_audit.verify.verifier import Verifier
from tests.vectors import generate

VECTORS: dict[str, Any] = json.loads(generate.CANONICAL.read_text(encoding="utf-8"))


def test_the_vector_files_are_up_to_date() -> None:
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: case["name"])
def test_canonical_form_and_leaf_hash(case: dict[str, Any]) -> None:
    canonical = canonical_json(json.loads(case["input"]))
    assert canonical == case["canonical"].encode("utf-8")
    assert leaf_hash(canonical).hex() == case["leaf_hash"]


@pytest.mark.parametrize("number", VECTORS["numbers"], ids=lambda number: number["ieee_hex"])
def test_es6_number_form(number: dict[str, str]) -> None:
    value = struct.unpack(">d", bytes.fromhex(number["ieee_hex"]))[0]
    assert es6_number(value) == number["canonical"]
    assert canonical_json(value) == number["canonical"].encode("ascii")


def test_the_otlp_trail_fixture_verifies_intact() -> None:
    keys = load_trusted_keys([generate.TRAIL_KEY])
    report = Verifier(keys).verify(read_otlp_export(generate.TRAIL))
    assert report.ok, report.findings
    assert report.record_count == generate.TRAIL_RECORDS
