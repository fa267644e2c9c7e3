"""The Elasticsearch layout: index names, mappings and the documents' fields.

Named from a prefix (default `otel-ai-audit`; never `logs-*-*`, which Elasticsearch 9.x turns
into logsdb indices with synthetic `_source`):

* `<prefix>-records`: a data stream, one document per record, `_id` = "<chain id>:<seq>".
  The exact canonical bytes are kept in `canonical` (binary: stored, never indexed), so a
  verifier hashes what was written and never depends on how `_source` is rendered. Beside
  them, the fields people search and chart are indexed (`RECORD_FIELDS`), derived from the
  bytes by `record_fields`, which the verifier uses again to check that they still agree.
* `<prefix>-checkpoints`: a data stream of the signed checkpoints, `_id` = "<chain id>:<index>".
* `<prefix>-anchors`: a data stream of the external anchors (`otel_ai_audit.anchor`), `_id` =
  "<store id>:<seq>", for search and the `anchoring stalled` rule; the published, retention-
  locked copies are the trusted ones.
* `<prefix>-keys`: an index of the public keys, `_id` = key id, with no retention: a key must
  outlive every record it verifies.
* `<prefix>-findings`: what `otel-ai-audit verify --publish-findings` found (`publish`).

Mappings are explicit with `dynamic: false`, so free-form event fields never grow the mapping.
The data stream lifecycle keeps records and checkpoints for `retention` (default 190 days: the
six months of EU AI Act Art. 19 and 26(6), and a margin).

No client library here: the sink, the verifier's source, the dashboards and the CLI all take
their names and fields from this one module.

Why one module: the mappings and the derivation of each indexed field from the record's bytes
must change together (a field added to `RECORD_FIELDS` without its derivation, or the other
way round, makes every verification report a disagreement), and the index names with them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import functools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX, ELASTICSEARCH_RETENTION
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import parse_record
from otel_ai_audit.store.sqlite import StoredAnchor

if TYPE_CHECKING:
    from otel_ai_audit.verify.findings import Report

MANAGED_BY = {"managed_by": "otel-ai-audit"}
"""The `_meta` of every index template this package puts."""

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DOUBLE = {"type": "double"}
_LONG = {"type": "long"}

RECORD_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date_nanos"},
    "chain.id": _KEYWORD,
    "chain.seq": _LONG,
    "event.id": _KEYWORD,
    "event.type": _KEYWORD,
    "event.decision_id": _KEYWORD,
    "model.name": _KEYWORD,
    "model.version": _KEYWORD,
    "model.fingerprint": _KEYWORD,
    "risk.level": _KEYWORD,
    "service.name": _KEYWORD,
    "trace.trace_id": _KEYWORD,
    "action": _KEYWORD,
    "reviewer.id": _KEYWORD,
    "oversight.overridden": {"type": "byte"},
    "output.score": _DOUBLE,
    "latency_ms": _DOUBLE,
    "drift.feature": _KEYWORD,
    "drift.kind": _KEYWORD,
    "drift.method": _KEYWORD,
    "drift.score": _DOUBLE,
    "drift.threshold": _DOUBLE,
    "drift.psi": _DOUBLE,
    "drift.p_value": _DOUBLE,
    "drift.drifted": {"type": "boolean"},
    "window.start": {"type": "date_nanos"},
    "window.end": {"type": "date_nanos"},
    "fairness.attribute": _KEYWORD,
    "fairness.slice": _KEYWORD,
    "fairness.count": _LONG,
    "fairness.selection_rate": _DOUBLE,
    "fairness.tpr": _DOUBLE,
    "fairness.fpr": _DOUBLE,
    "fairness.dp_difference": _DOUBLE,
    "fairness.eo_difference": _DOUBLE,
    "canonical": {"type": "binary"},
}
"""Mapping of the records data stream: every field but `canonical` comes from `record_fields`."""

CHECKPOINT_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date_nanos"},
    "chain.id": _KEYWORD,
    "checkpoint.index": _LONG,
    "checkpoint.size": _LONG,
    "checkpoint.closed": {"type": "boolean"},
    "counters.sampled_out": _LONG,
    "counters.failed": _LONG,
    "key_id": _KEYWORD,
    "payload": {"type": "binary"},
    "signature": {"type": "binary"},
}

ANCHOR_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date_nanos"},
    "anchor.seq": _LONG,
    "anchor.store_id": _KEYWORD,
    "anchor.daily": {"type": "boolean"},
    "anchor.chains": _LONG,
    "anchor.key_id": _KEYWORD,
    "anchor.timestamped": {"type": "boolean"},
    "published": {"type": "binary"},
}
"""Mapping of the anchors data stream (`anchor_fields`, and the published object as bytes)."""

KEY_FIELDS: dict[str, dict[str, Any]] = {
    "key_id": _KEYWORD,
    "pem": {"type": "keyword", "index": False, "doc_values": False},
}

FINDINGS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "type": _KEYWORD,
        "run": {"properties": {
            "id": _KEYWORD, "source": _KEYWORD, "trust": _KEYWORD, "ok": {"type": "boolean"},
            "findings": _LONG, "chains": _LONG, "closed_chains": _LONG, "records": _LONG}},
        "chain": {"properties": {"id": _KEYWORD, "seq": _LONG}},
        "finding": {"properties": {
            "kind": _KEYWORD, "detail": {"type": "keyword", "index": False, "doc_values": False}}},
    },
}
"""Mapping of the findings index (`finding_documents`)."""

_EVENT_KEYWORDS = {
    "event.id": ("id",),
    "event.type": ("type",),
    "event.decision_id": ("decision_id",),
    "model.name": ("model", "name"),
    "model.version": ("model", "version"),
    "model.fingerprint": ("model", "fingerprint"),
    "risk.level": ("risk", "level"),
    "service.name": ("service", "name"),
    "trace.trace_id": ("trace", "trace_id"),
    "action": ("action",),
    "reviewer.id": ("reviewer", "id"),
    "drift.feature": ("drift", "feature"),
    "drift.kind": ("drift", "kind"),
    "drift.method": ("drift", "method"),
    "fairness.attribute": ("fairness", "attribute"),
    "fairness.slice": ("fairness", "slice"),
}
_EVENT_NUMBERS = {
    # A score is `output.score`, or the whole captured output when that is one number
    # (`{"policy": "full", "value": 0.83}`).
    "output.score": (("output", "score"), ("output", "value")),
    "latency_ms": (("latency_ms",),),
    **{f"drift.{name}": (("drift", name),) for name in ("score", "threshold", "psi", "p_value")},
    **{f"fairness.{name}": (("fairness", name),) for name in (
        "count", "selection_rate", "tpr", "fpr", "dp_difference", "eo_difference")},
}
_EVENT_FLAGS = {"drift.drifted": ("drift", "drifted")}
OVERRIDING_ACTIONS = ("overridden", "reversed")
"""Oversight actions that replace the model's decision: an oversight record is indexed with
`oversight.overridden` 1 for these and 0 for the others, so the override rate is its average."""
_EVENT_DATES = {"window.start": ("window", "start"), "window.end": ("window", "end")}
"""Monitoring records (docs/monitoring.md): booleans as booleans, RFC 3339 times as dates (a
time `date_nanos` cannot hold is left out, never sent to be rejected)."""
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?Z")
_EPOCH = "1970-01-01T00:00:00Z"


def index_names(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> tuple[str, str, str]:
    """(records, checkpoints, keys) names for `prefix`."""
    names = (f"{prefix}-records", f"{prefix}-checkpoints", f"{prefix}-keys")
    if any(fnmatch.fnmatchcase(name, "logs-*-*") for name in names):
        raise ValueError(f"index prefix {prefix!r} makes `logs-*-*` names, which Elasticsearch "
                         "9.x stores as logsdb with synthetic _source: choose another prefix")
    return names


def anchors_index(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> str:
    """The data stream of the external anchors: for search and the `anchoring stalled` rule;
    the trust is in the WORM copies (`otel_ai_audit.anchor`)."""
    index_names(prefix)
    return f"{prefix}-anchors"


def findings_index(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> str:
    """`<prefix>-findings`, for a prefix the other indices accept."""
    index_names(prefix)
    return f"{prefix}-findings"


def index_templates(prefix: str = ELASTICSEARCH_INDEX_PREFIX, *,
                    retention: str = ELASTICSEARCH_RETENTION,
                    index_settings: Mapping[str, Any] | None = None,
                    ) -> dict[str, dict[str, Any]]:
    """{name: arguments of `put_index_template`} of the sink's four indices: the three data
    streams with their lifecycle and `index_settings` (shards, replicas, ...), and the keys."""
    records, checkpoints, keys = index_names(prefix)
    templates = {}
    for name, fields, stream in ((records, RECORD_FIELDS, True),
                                 (checkpoints, CHECKPOINT_FIELDS, True),
                                 (anchors_index(prefix), ANCHOR_FIELDS, True),
                                 (keys, KEY_FIELDS, False)):
        template: dict[str, Any] = {"mappings": {"dynamic": False,
                                                 "properties": _properties(fields)}}
        if stream:
            template["lifecycle"] = {"data_retention": retention}
            if index_settings:
                template["settings"] = dict(index_settings)
        templates[name] = {"index_patterns": [name], "priority": 500, "template": template,
                           "data_stream": {} if stream else None, "meta": MANAGED_BY}
    return templates


def findings_template(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> dict[str, Any]:
    """Arguments of `put_index_template` for the findings index."""
    index = findings_index(prefix)
    return {"name": index, "index_patterns": [index], "priority": 500,
            "template": {"mappings": FINDINGS_MAPPING}, "meta": MANAGED_BY}


# --- documents ----------------------------------------------------------------------------


def record_fields(data: bytes) -> dict[str, Any] | None:
    """The indexed fields of a record (dotted names, as sent), or None if the bytes are not a
    record. The one derivation: the sink writes these, the verifier checks them.

    Read by orjson first (a third of the json module's time, and the shipper reads every
    record): it reads JSON as `parse_record` does, except integers beyond 64 bits, which it
    makes floats; fields that may hold one are read again by `parse_record`, as is whatever
    orjson refuses (NaN, lone surrogates)."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _fields_of(data)
    if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
        return None
    fields = _fields(record)
    if fields is None or not any(map(_maybe_wide_integer, fields.values())):
        return fields
    return _fields_of(data)


def _fields_of(data: bytes) -> dict[str, Any] | None:
    """`record_fields` by the json module's reading."""
    try:
        record = parse_record(data)
    except ValueError:
        return None
    return _fields(record)


def _maybe_wide_integer(value: Any) -> bool:
    """Could `value` come from an integer orjson read as a float (beyond 64 bits), as a
    number or as a keyword made from one?"""
    if type(value) is float:
        return abs(value) >= 2.0**63 and value.is_integer()
    return type(value) is str and "e+" in value


def _fields(record: dict[str, Any]) -> dict[str, Any] | None:
    chain, event = record.get("chain"), record["event"]
    if not isinstance(chain, dict):
        return None
    fields = {name: value for name, value in (
        ("@timestamp", _timestamp(event.get("time"), chain.get("logged"))),
        ("chain.id", _keyword(chain.get("id"))),
        ("chain.seq", _number(chain.get("seq")))) if value is not None}
    # By the event's top-level fields: an event holds a few of the ones indexed.
    for top, extractors in _EXTRACTORS.items():
        value = event.get(top)
        if value is None:
            continue
        for name, paths, convert in extractors:
            for path in paths:
                converted = convert(_lookup(value, path) if path else value)
                if converted is not None:
                    fields[name] = converted
                    break
    if event.get("type") == "oversight" and isinstance(event.get("action"), str):
        fields["oversight.overridden"] = int(event["action"] in OVERRIDING_ACTIONS)
    return fields


def document_id(owner: str, position: object) -> str:
    """A document's `_id`: "<chain id>:<seq>" (records), "<chain id>:<index>" (checkpoints),
    "<store id>:<seq>" (anchors), so a repeat is the same document."""
    return f"{owner}:{position}"


def record_lines(record: SealedRecord) -> tuple[bytes, bytes]:
    """The two bulk NDJSON lines that create a record's document: `record_fields` and the
    canonical bytes in `canonical` (base64, which needs no JSON escaping: spliced in, not
    encoded a second time)."""
    fields = record_fields(record.data) or {
        # Not a record (a write torn by a crash): shipped as stored, for the verifier to see.
        "@timestamp": _timestamp(record.time, 0), "chain.id": record.chain_id,
        "chain.seq": record.seq}
    source = _json(fields)
    return (_create_line(document_id(record.chain_id, record.seq)),
            b'%b%b"canonical":"%b"}' % (source[:-1], b"," if fields else b"",
                                        base64.b64encode(record.data)))


def anchor_document(anchor: StoredAnchor) -> dict[str, Any]:
    """An anchor's document: `anchor_fields` and the published object."""
    fields = anchor_fields(anchor)
    return {**fields, "@timestamp": _timestamp(None, fields["anchor.issued_at_ns"]) or _EPOCH,
            "published": base64.b64encode(published_body(anchor)).decode("ascii")}


def checkpoint_document(signed: SignedCheckpoint) -> dict[str, Any]:
    """A checkpoint's document: the signed bytes, and what a dashboard charts from them."""
    fields: dict[str, Any] = {
        "@timestamp": _EPOCH, "chain.id": signed.chain_id, "checkpoint.index": signed.index,
        "checkpoint.size": signed.size, "key_id": signed.key_id,
        "payload": base64.b64encode(signed.payload).decode("ascii"),
        "signature": base64.b64encode(signed.signature).decode("ascii")}
    try:
        checkpoint = Checkpoint.from_payload(signed.payload)
    except ValueError:
        return fields  # shipped as stored: the verifier reports it as malformed
    fields["@timestamp"] = _timestamp(None, checkpoint.issued_at_ns) or _EPOCH
    fields["checkpoint.closed"] = checkpoint.closed
    fields.update(_counter_fields(checkpoint.counters))
    return fields


def finding_documents(report: Report, *, run_id: str, time: _dt.datetime,
                      ) -> list[dict[str, Any]]:
    """The findings index's documents of one verification: its summary (`type: "run"`:
    `run.ok`, `run.findings`, `run.chains`, `run.closed_chains`, `run.records`, `run.trust`)
    first, then one per finding (`type: "finding"`: `chain.id`, `chain.seq`, `finding.kind`,
    `finding.detail`). Both carry `@timestamp` (when the run ended), `run.id` and
    `run.source` (what was verified)."""
    common = {"@timestamp": time.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds"),
              "run": {"id": run_id, "source": report.source}}
    summary = {**common, "type": "run", "run": {
        **common["run"], "ok": report.ok, "trust": report.trust,
        "findings": len(report.findings), "chains": len(report.chains),
        "closed_chains": sum(1 for chain in report.chains if chain.closed),
        "records": report.record_count}}
    documents = [summary]
    for finding in report.findings:
        document: dict[str, Any] = {**common, "type": "finding",
                                    "finding": {"kind": finding.kind.value,
                                                "detail": finding.detail}}
        chain = {"id": finding.chain_id, "seq": finding.seq}
        if any(value is not None for value in chain.values()):
            document["chain"] = {k: v for k, v in chain.items() if v is not None}
        documents.append(document)
    return documents


def create_lines(doc_id: str, document: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The two bulk NDJSON lines that create `document` under `doc_id` (`create`: a document
    already there is never overwritten)."""
    return _create_line(doc_id), _json(document)


def _create_line(doc_id: str) -> bytes:
    return b'{"create":{"_id":%b}}' % _json(doc_id)


def _json(value: Any) -> bytes:
    """Compact JSON: by orjson, or by the json module for what orjson refuses (integers beyond
    64 bits, lone surrogates: only in bytes that are not a sealed record)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def _counter_fields(counters: Mapping[str, Any]) -> dict[str, int]:
    """The signed loss accounting as numbers a dashboard can chart: decisions sampled out
    (summed over their `<model>|<risk>` keys) and events that failed before sealing."""
    fields = {}
    sampled_out = counters.get("sampled_out")
    if isinstance(sampled_out, Mapping):
        fields["counters.sampled_out"] = sum(
            value for value in sampled_out.values() if _number(value) is not None)
    if _number(failed := counters.get("failed")) is not None:
        fields["counters.failed"] = failed
    return fields


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _date(value: Any) -> str | None:
    return _timestamp(value, None)


def _extractors() -> dict[str, list[tuple[str, tuple[tuple[str, ...], ...], Any]]]:
    """{top-level event field: [(indexed name, paths below it, conversion)]} of the indexed
    event fields (the first path whose value converts is taken)."""
    table: dict[str, list[tuple[str, tuple[tuple[str, ...], ...], Any]]] = {}
    named = [*((name, (path,), _keyword) for name, path in _EVENT_KEYWORDS.items()),
             *((name, paths, _number) for name, paths in _EVENT_NUMBERS.items()),
             *((name, (path,), _flag) for name, path in _EVENT_FLAGS.items()),
             *((name, (path,), _date) for name, path in _EVENT_DATES.items())]
    for name, paths, convert in named:
        tops = {path[0] for path in paths}
        (top,) = tops  # every field's paths start at one top-level field
        table.setdefault(top, []).append((name, tuple(path[1:] for path in paths), convert))
    return table


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _keyword(value: Any) -> str | None:
    """Strings as they are, numbers and booleans in their JSON form, nothing else (an object
    where a keyword is mapped would be rejected)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _timestamp(text: Any, logged: Any) -> str | None:
    """`event.time` when `date_nanos` can hold it (1970 to 2262), else the record's own
    sequencing time (`chain.logged`, Unix ns), so a record's timestamp never blocks it."""
    if isinstance(text, str) and _RFC3339.fullmatch(text) and _indexable_second(text[:19]):
        return text
    try:
        nanos = int(logged)
    except (TypeError, ValueError):
        return None
    return rfc3339_from_ns(nanos) if 0 <= nanos < 2**63 else None


@functools.lru_cache(maxsize=64)
def _indexable_second(second: str) -> bool:
    """Is "YYYY-MM-DDTHH:MM:SS" a real time that `date_nanos` can hold? (Cached: the records of
    a batch share their seconds.)"""
    try:
        moment = _dt.datetime(int(second[:4]), int(second[5:7]), int(second[8:10]),
                              int(second[11:13]), int(second[14:16]), int(second[17:19]))
    except ValueError:
        return False
    return 1970 <= moment.year <= 2261


def _properties(fields: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Nested mapping properties from dotted field names."""
    properties: dict[str, Any] = {}
    for name, mapping in fields.items():
        *parents, leaf = name.split(".")
        node = properties
        for parent in parents:
            node = node.setdefault(parent, {"properties": {}})["properties"]
        node[leaf] = mapping
    return properties


_EXTRACTORS = _extractors()
