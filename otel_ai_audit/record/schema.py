"""The audit record: a chain header and one event, hashed over its canonical bytes.

    {"chain": {"id": "<32 hex>", "logged": "<unix ns>", "prev": "<64 hex>", "seq": N, "v": 1},
     "event": {"id": "...", "type": "inference", "time": "...Z", ...}}

RFC 8785 sorts keys, so the canonical bytes always start with the chain header in a fixed
layout. Verifiers read chain id, sequence and previous hash from that prefix without parsing
the whole record, which keeps verification at hundreds of thousands of records per second.
`logged` is the time the record was sequenced, made monotonic per chain, so time running
backwards inside a chain is itself evidence of tampering.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from otel_ai_audit.record.canonical import canonical_json, rfc3339_from_ns

SCHEMA_VERSION = 1


class EventType(str, Enum):
    """What a record is about (the `event.type` field)."""

    INFERENCE = "inference"
    TRAINING = "training"
    OVERSIGHT = "oversight"
    DISPUTE = "dispute"
    OUTCOME = "outcome"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    ALERT = "alert"
    INCIDENT = "incident"
    DRIFT = "drift"
    SAMPLING = "sampling"
    CHAIN_OPEN = "chain_open"
    KEY_ROTATION = "key_rotation"


HEADER_PATTERN = re.compile(
    rb'\{"chain":\{"id":"([0-9a-f]{32})","logged":"([0-9]{1,20})","prev":"([0-9a-f]{64})",'
    rb'"seq":(0|[1-9][0-9]{0,15}),"v":([1-9][0-9]{0,3})\},"event":\{'
)


@dataclass(frozen=True, slots=True)
class Header:
    """The chain fields of a sealed record, read from its canonical bytes."""

    chain_id: str
    logged_ns: int
    prev: str
    seq: int
    version: int


def new_event(event_type: EventType | str, *, event_id: str | None = None,
              time_ns: int | None = None, **fields: Any) -> dict[str, Any]:
    """An event body with the fields every record carries (id, type, time)."""
    return {
        "id": event_id or uuid.uuid4().hex,
        "type": EventType(event_type).value,
        "time": rfc3339_from_ns(time_ns if time_ns is not None else time.time_ns()),
        **fields,
    }


def seal(event: dict[str, Any], chain_id: str, seq: int, prev: str, logged_ns: int) -> bytes:
    """Canonical bytes of `event` placed at `seq` of a chain after the record hashed `prev`."""
    header = {"id": chain_id, "logged": str(logged_ns), "prev": prev, "seq": seq,
              "v": SCHEMA_VERSION}
    return canonical_json({"chain": header, "event": event})


def parse_header(data: bytes) -> Header | None:
    """The chain header of canonical record bytes, or None if the prefix is not canonical."""
    match = HEADER_PATTERN.match(data)
    if match is None:
        return None
    chain_id, logged, prev, seq, version = match.groups()
    return Header(chain_id.decode(), int(logged), prev.decode(), int(seq), int(version))


def parse_record(data: bytes) -> dict[str, Any]:
    """The whole record as Python data (raises ValueError on bytes that are not JSON)."""
    record = json.loads(data)
    if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
        raise ValueError("not an audit record: no event object")
    return record
