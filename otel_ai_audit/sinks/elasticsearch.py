"""The Elasticsearch sink: records, checkpoints and keys by direct bulk, with idempotent ids.

Layout, named from a prefix (default `otel-ai-audit`; never `logs-*-*`, which Elasticsearch
9.x turns into logsdb indices with synthetic `_source`):

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

Mappings are explicit with `dynamic: false`, so free-form event fields never grow the mapping.
The data stream lifecycle keeps records and checkpoints for `retention` (default 190 days: the
six months of EU AI Act Art. 19 and 26(6), and a margin).

Every document is written with op_type `create`. Per bulk item: 201 is delivered, and so is
409 (the document is already there: a retry); 429 and 5xx are retried; anything else (a
mapping or validation error) is a rejection, which the shipper reports loudly and keeps
retrying, never skips. A create is only idempotent within one backing index: after a rollover
a repeat would land in the new one as a duplicate. So a batch that may have been sent before
(the first of each chain after a start, and any after a failed request whose outcome is
unknown) is first looked up by id across the whole data stream.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import json
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX, ELASTICSEARCH_RETENTION, AuditSettings
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import parse_record
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import SealedRecord, StoredAnchor

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DOUBLE = {"type": "double"}

RECORD_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date_nanos"},
    "chain.id": _KEYWORD,
    "chain.seq": {"type": "long"},
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
    "fairness.count": {"type": "long"},
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
    "checkpoint.index": {"type": "long"},
    "checkpoint.size": {"type": "long"},
    "checkpoint.closed": {"type": "boolean"},
    "counters.sampled_out": {"type": "long"},
    "counters.failed": {"type": "long"},
    "key_id": _KEYWORD,
    "payload": {"type": "binary"},
    "signature": {"type": "binary"},
}

ANCHOR_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date_nanos"},
    "anchor.seq": {"type": "long"},
    "anchor.store_id": _KEYWORD,
    "anchor.daily": {"type": "boolean"},
    "anchor.chains": {"type": "long"},
    "anchor.key_id": _KEYWORD,
    "anchor.timestamped": {"type": "boolean"},
    "published": {"type": "binary"},
}
"""Mapping of the anchors data stream (`anchor_fields`, and the published object as bytes)."""

KEY_FIELDS: dict[str, dict[str, Any]] = {
    "key_id": _KEYWORD,
    "pem": {"type": "keyword", "index": False, "doc_values": False},
}

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
_ERRNO = re.compile(r"\[Errno -?\d+\][^)'\"]*")
_RETRYABLE = 429
_BULK_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"


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
    return f"{prefix}-anchors"


def record_fields(data: bytes) -> dict[str, Any] | None:
    """The indexed fields of a record (dotted names, as sent), or None if the bytes are not a
    record. The one derivation: the sink writes these, the verifier checks them."""
    try:
        record = parse_record(data)
    except ValueError:
        return None
    chain, event = record.get("chain"), record["event"]
    if not isinstance(chain, dict):
        return None
    fields = {"@timestamp": _timestamp(event.get("time"), chain.get("logged")),
              "chain.id": _keyword(chain.get("id")),
              "chain.seq": _number(chain.get("seq"))}
    for name, path in _EVENT_KEYWORDS.items():
        fields[name] = _keyword(_lookup(event, path))
    for name, paths in _EVENT_NUMBERS.items():
        fields[name] = next((value for path in paths
                             if (value := _number(_lookup(event, path))) is not None), None)
    for name, path in _EVENT_FLAGS.items():
        flag = _lookup(event, path)
        fields[name] = flag if isinstance(flag, bool) else None
    for name, path in _EVENT_DATES.items():
        fields[name] = _timestamp(_lookup(event, path), None)
    if event.get("type") == "oversight" and isinstance(event.get("action"), str):
        fields["oversight.overridden"] = int(event["action"] in OVERRIDING_ACTIONS)
    return {name: value for name, value in fields.items() if value is not None}


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
    if isinstance(text, str) and (match := _RFC3339.fullmatch(text)):
        try:
            if 1970 <= _dt.datetime(*map(int, match.groups())).year <= 2261:
                return text
        except ValueError:
            pass
    try:
        nanos = int(logged)
    except (TypeError, ValueError):
        return None
    return rfc3339_from_ns(nanos) if 0 <= nanos < 2**63 else None


def connect(settings: AuditSettings, *, request_timeout: float = 10.0) -> Elasticsearch:
    """A client for `settings.elasticsearch_url` (comma-separated nodes) with its credentials.

    An API key is the encoded form or "id:key"; TLS certificates are verified unless
    `elasticsearch_verify_certs` is off, against `elasticsearch_ca_certs` when given.
    """
    if not settings.elasticsearch_url:
        raise ValueError("no Elasticsearch URL configured")
    hosts = [url.strip() for url in settings.elasticsearch_url.split(",") if url.strip()]
    options: dict[str, Any] = {"request_timeout": request_timeout}
    api_key = settings.elasticsearch_api_key
    if api_key:
        options["api_key"] = tuple(api_key.split(":", 1)) if ":" in api_key else api_key
    if settings.elasticsearch_username:
        options["basic_auth"] = (settings.elasticsearch_username,
                                 settings.elasticsearch_password or "")
    if settings.elasticsearch_ca_certs:
        options["ca_certs"] = settings.elasticsearch_ca_certs
    if not settings.elasticsearch_verify_certs:
        options["verify_certs"] = False
    return Elasticsearch(hosts, **options)


def describe(client: Elasticsearch) -> str:
    """The client's node URLs, sorted (the client shuffles them); never with credentials."""
    return ",".join(sorted(node.base_url for node in client.transport.node_pool.all()))


class ElasticsearchSink:
    """Writes to the indices of one prefix; installs their templates on first use."""

    kind = "elasticsearch"

    def __init__(self, client: Elasticsearch, *, index_prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                 retention: str = ELASTICSEARCH_RETENTION,
                 index_settings: Mapping[str, Any] | None = None, bulk_size: int = 2000,
                 concurrency: int = 3) -> None:
        self.client = client
        self.bulk_size = bulk_size
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self.records_index, self.checkpoints_index, self.keys_index = index_names(index_prefix)
        self.anchors_index = anchors_index(index_prefix)
        self.retention = retention
        self.index_settings = dict(index_settings or {})
        """Settings of the data streams' backing indices (shards, replicas, ...)."""
        self.name = f"elasticsearch:{describe(client)}/{index_prefix}"
        self._installed = False
        self._confirmed: set[tuple[str, str]] = set()
        """(index, chain id) pairs whose sends all had an answer: nothing of theirs can be in
        the index unconfirmed, so no lookup before sending."""

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> ElasticsearchSink:
        return cls(connect(settings), index_prefix=settings.elasticsearch_index_prefix,
                   retention=settings.elasticsearch_retention)

    def install(self) -> None:
        """Put the four index templates (idempotent: each start puts them again, so changed
        settings reach the next backing index). Raises `DeliveryError` if Elasticsearch
        refuses them or cannot be reached."""
        lifecycle = {"data_retention": self.retention}
        templates = (
            (self.records_index, RECORD_FIELDS, True),
            (self.checkpoints_index, CHECKPOINT_FIELDS, True),
            (self.anchors_index, ANCHOR_FIELDS, True),
            (self.keys_index, KEY_FIELDS, False),
        )
        for name, fields, stream in templates:
            template: dict[str, Any] = {"mappings": {"dynamic": False,
                                                     "properties": _properties(fields)}}
            if stream:
                template["lifecycle"] = lifecycle
                if self.index_settings:
                    template["settings"] = self.index_settings
            _call(f"installing the index template {name}", self.client.indices.put_index_template,
                  name=name, index_patterns=[name], priority=500, template=template,
                  data_stream={} if stream else None, meta={"managed_by": "otel-ai-audit"})
        self._installed = True

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._bulk(self.records_index, batch[0].chain_id if batch else "",
                   [f"{record.chain_id}:{record.seq}" for record in batch],
                   lambda i: _record_document(batch[i]))

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._bulk(self.checkpoints_index, batch[0].chain_id if batch else "",
                   [f"{signed.chain_id}:{signed.index}" for signed in batch],
                   lambda i: _checkpoint_document(batch[i]))

    def send_keys(self, keys: Mapping[str, str]) -> None:
        ids = list(keys)
        self._bulk(self.keys_index, "", ids, lambda i: {"key_id": ids[i], "pem": keys[ids[i]]})

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        documents = [_anchor_document(anchor) for anchor in batch]
        self._bulk(self.anchors_index, "",
                   [f"{document['anchor.store_id']}:{document['anchor.seq']}"
                    for document in documents], lambda i: documents[i])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.client.close()

    # --- bulk ------------------------------------------------------------------------------

    def _bulk(self, index: str, chain_id: str, ids: list[str],
              document: Callable[[int], dict[str, Any]]) -> None:
        """Create document i under ids[i]; raise `DeliveryError` naming those not written.

        Requests of `bulk_size` documents, `concurrency` of them in flight: the next request
        is built while Elasticsearch indexes the last ones (measured on one node of two
        cores: 2,000 x 3 ships about 35,000 records/s, one request at a time about 24,000).
        """
        if not ids:
            return
        if not self._installed:
            self.install()
        positions = list(range(len(ids)))
        if index != self.keys_index and (index, chain_id) not in self._confirmed:
            present = self._present(index, ids)
            positions = [i for i in positions if ids[i] not in present]
        outcome = _Outcome(index, ids)
        in_flight: deque[tuple[list[int], Future[Any]]] = deque()
        try:
            for start in range(0, len(positions), self.bulk_size):
                chunk = positions[start:start + self.bulk_size]
                body: list[bytes] = []
                for i in chunk:
                    body.append(b'{"create":{"_id":%s}}' % json.dumps(ids[i]).encode())
                    body.append(json.dumps(document(i), separators=(",", ":")).encode())
                in_flight.append((chunk, self._send(index, body)))
                if len(in_flight) >= self.concurrency:
                    outcome.settle(*in_flight.popleft())
        finally:
            while in_flight:
                outcome.settle(*in_flight.popleft())
        if outcome.answered:
            self._confirmed.add((index, chain_id))
        else:
            self._confirmed.discard((index, chain_id))
        outcome.raise_if_failed()

    def _send(self, index: str, body: list[bytes]) -> Future[Any]:
        """One bulk request, in the pool; in this thread once the interpreter is exiting (the
        shipper's last delivery runs at exit, when pools accept no more work)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, "otel-ai-audit-elasticsearch")
        try:
            return self._pool.submit(self.client.bulk, index=index, operations=body,
                                     filter_path=_BULK_FILTER)
        except RuntimeError:
            request: Future[Any] = Future()
            try:
                request.set_result(self.client.bulk(index=index, operations=body,
                                                    filter_path=_BULK_FILTER))
            except (ApiError, TransportError) as error:
                request.set_exception(error)
            return request

    def _present(self, index: str, ids: list[str]) -> set[str]:
        """Which of `ids` the data stream already holds, in any backing index: looked up by
        a realtime multi-get, which also sees documents no refresh has made searchable yet."""
        try:
            resolved = self.client.indices.resolve_index(name=index)
        except NotFoundError:
            return set()  # not created yet: nothing can be in it
        except (ApiError, TransportError) as error:
            raise _delivery_error(f"resolving {index}", error) from error
        backing = [name for stream in resolved.get("data_streams", [])
                   for name in stream["backing_indices"]]
        if not backing:
            return set()
        response = _call(f"looking up documents in {index}", self.client.mget,
                         docs=[{"_index": name, "_id": doc_id} for name in backing
                               for doc_id in ids],
                         source=False, realtime=True, filter_path="docs._id,docs.found")
        return {doc["_id"] for doc in response.get("docs", []) if doc.get("found")}


class _Outcome:
    """What the bulk requests of one batch achieved, item by item."""

    def __init__(self, index: str, ids: list[str]) -> None:
        self.index = index
        self.ids = ids
        self.failed: list[int] = []
        self.rejected = False
        self.answered = True
        """Every request was answered: no item's fate is unknown."""
        self.first = ""

    def settle(self, chunk: list[int], request: Future[Any]) -> None:
        try:
            response = request.result()
        except (ApiError, TransportError) as error:
            problem = _delivery_error(f"bulk request to {self.index}", error)
            self.failed.extend(chunk)
            self.rejected = self.rejected or problem.rejected
            self.answered = False
            self.first = self.first or str(problem)
            return
        if not response.get("errors"):
            return
        for i, item in zip(chunk, response["items"], strict=True):
            (result,) = item.values()
            status = int(result.get("status", 0))
            if 200 <= status < 300 or status == 409:
                continue
            self.failed.append(i)
            self.rejected = self.rejected or (status != _RETRYABLE and status < 500)
            if not self.first:
                error = result.get("error", {})
                self.first = (f"{self.ids[i]}: HTTP {status} {error.get('type')}: "
                              f"{error.get('reason')}")

    def raise_if_failed(self) -> None:
        if self.failed:
            raise DeliveryError(f"{len(self.failed)} of {len(self.ids)} document(s) not written "
                                f"to {self.index} (first: {self.first})", sorted(self.failed),
                                rejected=self.rejected)


def _record_document(record: SealedRecord) -> dict[str, Any]:
    fields = record_fields(record.data) or {
        # Not a record (a write torn by a crash): shipped as stored, for the verifier to see.
        "@timestamp": _timestamp(record.time, 0), "chain.id": record.chain_id,
        "chain.seq": record.seq}
    fields["canonical"] = base64.b64encode(record.data).decode("ascii")
    return fields


def _anchor_document(anchor: StoredAnchor) -> dict[str, Any]:
    fields = anchor_fields(anchor)
    return {**fields, "@timestamp": _timestamp(None, fields["anchor.issued_at_ns"]) or _EPOCH,
            "published": base64.b64encode(published_body(anchor)).decode("ascii")}


def _checkpoint_document(signed: SignedCheckpoint) -> dict[str, Any]:
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


def _call(what: str, request: Callable[..., Any], **arguments: Any) -> Any:
    try:
        return request(**arguments)
    except (ApiError, TransportError) as error:
        raise _delivery_error(what, error) from error


def _delivery_error(what: str, error: ApiError | TransportError) -> DeliveryError:
    """429 and 5xx, and no answer at all, are worth retrying; other answers need a person."""
    if isinstance(error, ApiError):
        status = error.meta.status
        return DeliveryError(f"{what}: HTTP {status} {error.message}",
                             rejected=status != _RETRYABLE and status < 500)
    return DeliveryError(f"{what}: {transport_reason(error)}")


def transport_reason(error: TransportError) -> str:
    """The operating system's reason ("[Errno 111] Connection refused") rather than the
    client's nested wrappers, when there is one."""
    match = _ERRNO.search(str(error))
    return match.group(0).strip() if match else str(error)


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
