"""The Splunk layout: the sourcetypes and events of the trail (what searches, dashboards and
the export verifier rely on).

* sourcetype `otel_ai_audit:record`: `event` is the record's canonical JSON *as a string*, so
  Splunk's `_raw` is the exact bytes that were hashed and an export verifies. Its search
  fields are HEC indexed fields (`RECORD_FIELDS`, below), not search-time JSON extraction:
  automatic extraction stops at `[spath] extraction_cutoff` (5000 bytes by default) and
  canonical JSON sorts `event.type` after `event.model`, `event.input`, `event.monitor`..., so
  a large record would lose exactly the fields the alerts filter on. `time` is the record's
  time (epoch seconds, microseconds).
* sourcetype `otel_ai_audit:checkpoint`: `{"checkpoint": {chain_id, index, size, key_id,
  payload, signature}}` (payload and signature base64, the exact signed bytes).
* sourcetype `otel_ai_audit:key`: `{"key": {key_id, pem}}`, so an export is verifiable alone.
* sourcetype `otel_ai_audit:anchor`: the published anchor object, its search fields indexed.
* sourcetype `otel_ai_audit:span`: audit spans the Collector's splunkhecexporter sent
  (collector_config/otelcol-gateway.yaml): the span as JSON, the record in its
  `ai_audit.record` attribute.

Each event also carries the indexed fields `chain.id` and `chain.seq` (checkpoints:
`checkpoint.index`), which a verifier takes as the stored position, as Elasticsearch's.
Indexed field values are strings: Splunk documents "only strings can be used as field values"
in the HEC `fields` object; other values are not indexed.
"""

from __future__ import annotations

import base64
import calendar
import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import parse_header, parse_record
from otel_ai_audit.store.sqlite import StoredAnchor

SOURCETYPE_PREFIX = "otel_ai_audit:"
"""Every sourcetype of the trail starts so; an export's other events are not part of it."""
RECORD_SOURCETYPE = f"{SOURCETYPE_PREFIX}record"
CHECKPOINT_SOURCETYPE = f"{SOURCETYPE_PREFIX}checkpoint"
KEY_SOURCETYPE = f"{SOURCETYPE_PREFIX}key"
ANCHOR_SOURCETYPE = f"{SOURCETYPE_PREFIX}anchor"
SPAN_SOURCETYPE = f"{SOURCETYPE_PREFIX}span"

RECORD_FIELDS: tuple[str, ...] = (
    "event.type", "event.time", "event.service.name", "event.model.name",
    "event.model.version", "event.risk.level", "event.latency_ms", "event.action",
    "event.reviewer.id", "event.decision_id", "event.drift.feature", "event.drift.score",
    "event.drift.threshold", "event.drift.drifted", "event.fairness.attribute",
    "event.fairness.slice", "event.fairness.count", "event.fairness.selection_rate",
    "event.fairness.tpr", "event.fairness.fpr", "event.fairness.dp_difference")
"""Record paths sent as HEC indexed fields (besides `chain.id`, `chain.seq`), when the record
has them with a scalar value: what the Splunk app searches, and the few fields a person
filters on first. Every other field is read with `spath` (see docs/splunk.md)."""


def _field_tree(paths: tuple[str, ...]) -> dict[str, str | dict[str, str]]:
    """`paths` (`event.<key>` or `event.<key>.<name>`) as a tree under `event`: a key maps to
    its path, or to the names below it and their paths."""
    tree: dict[str, str | dict[str, str]] = {}
    for path in paths:
        _, key, *below = path.split(".")
        if below:
            (name,) = below
            branch = tree.setdefault(key, {})
            assert isinstance(branch, dict)
            branch[name] = path
        else:
            tree[key] = path
    return tree


_FIELD_TREE = _field_tree(RECORD_FIELDS)
"""`{"type": "event.type", "model": {"name": "event.model.name", ...}, ...}`"""

Envelope = Callable[[str, "float | str", str, dict[str, Any]], bytes]
"""Wraps (sourcetype, time in epoch seconds, event text, indexed fields) into one HEC event."""

_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


def record_event(record: SealedRecord, envelope: Envelope) -> bytes:
    """The HEC event of a record (see the module docstring for the contract)."""
    header = parse_header(record.data)
    text = record.data.decode("utf-8", errors="replace")
    return envelope(RECORD_SOURCETYPE, _epoch_seconds(record.time, header), text,
                    {"chain.id": record.chain_id, "chain.seq": str(record.seq),
                     **record_fields(record.data)})


def record_fields(data: bytes) -> dict[str, str]:
    """The `RECORD_FIELDS` a record has, as the strings HEC indexes: text as is, numbers as
    their JSON text, booleans `true`/`false` (as `_raw` spells them); {} for bytes that are
    not a record (shipped as stored, for the verifier to report).

    Computed for every record a sink ships (the Kafka sink's headers too), so the record is
    parsed by orjson (the `json` module only for what orjson refuses, such as integers beyond
    64 bits) and only the keys the event has are looked at (`_FIELD_TREE`)."""
    try:
        event = orjson.loads(data).get("event")
    except (ValueError, AttributeError):
        try:
            event = parse_record(data)["event"]
        except ValueError:
            return {}
    if not isinstance(event, dict):
        return {}
    fields: dict[str, str] = {}
    for key, target in _FIELD_TREE.items():
        value = event.get(key)
        if value is None:
            continue
        if isinstance(target, str):
            _put(fields, target, value)
        elif isinstance(value, dict):
            for name, path in target.items():
                if (below := value.get(name)) is not None:
                    _put(fields, path, below)
    return fields


def _put(fields: dict[str, str], path: str, value: Any) -> None:
    """`value` at `path` as its text in the record, if it is a scalar JSON has."""
    if isinstance(value, str):
        fields[path] = value
    elif isinstance(value, bool):
        fields[path] = "true" if value else "false"
    elif isinstance(value, int):
        fields[path] = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        fields[path] = canonical_json(value).decode("ascii")


def checkpoint_event(signed: SignedCheckpoint, envelope: Envelope) -> bytes:
    try:
        issued = decimal_seconds(Checkpoint.from_payload(signed.payload).issued_at_ns)
    except ValueError:
        issued = "0"  # shipped as stored: the verifier reports it as malformed
    body = {"chain_id": signed.chain_id, "index": signed.index, "size": signed.size,
            "key_id": signed.key_id,
            "payload": base64.b64encode(signed.payload).decode("ascii"),
            "signature": base64.b64encode(signed.signature).decode("ascii")}
    return envelope(CHECKPOINT_SOURCETYPE, issued, json.dumps({"checkpoint": body},
                                                              sort_keys=True),
                    {"chain.id": signed.chain_id, "checkpoint.index": str(signed.index)})


def key_event(key_id: str, pem: str, seconds: float, envelope: Envelope) -> bytes:
    return envelope(KEY_SOURCETYPE, seconds,
                    json.dumps({"key": {"key_id": key_id, "pem": pem}}, sort_keys=True), {})


def anchor_event(anchor: StoredAnchor, envelope: Envelope) -> bytes:
    """An anchor as its published object, with its search fields as indexed fields."""
    fields = anchor_fields(anchor)
    return envelope(ANCHOR_SOURCETYPE, decimal_seconds(fields["anchor.issued_at_ns"]),
                    published_body(anchor).decode("utf-8"),
                    {name: str(value).lower() if isinstance(value, bool) else str(value)
                     for name, value in fields.items()})


def decimal_seconds(nanos: int) -> str:
    """Unix nanoseconds as the decimal seconds HEC takes, to the microsecond."""
    seconds, rest = divmod(nanos, 1_000_000_000)
    return f"{seconds}.{rest // 1000:06d}"


def _epoch_seconds(text: str, header: Any) -> str:
    """The record's time as epoch seconds with microseconds: `event.time` (RFC 3339), else
    its sequencing time."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return decimal_seconds(header.logged_ns if header is not None else 0)
    *whole, fraction = match.groups()
    try:
        seconds = calendar.timegm(tuple(map(int, whole)))  # type: ignore[arg-type]
    except (OverflowError, ValueError):
        return decimal_seconds(header.logged_ns if header is not None else 0)
    return f"{seconds}.{(fraction or '').ljust(6, '0')[:6]}"
