"""Verifying the trail where it lives in Elasticsearch: a `RecordSource` over the sink's indices.

Reads one point-in-time snapshot of the records and checkpoints data streams (opened by
`with`), so a verification sees one consistent state while shippers keep writing. A record's
stored position is its document's indexed `chain.seq`; records come sorted by it (ties in
shard order), so the verifier finds gaps, duplicates and reordering as in the embedded store.

The chain proves the canonical bytes; people search the indexed fields beside them. A
document whose `risk.level` was edited while its `canonical` bytes were kept passes the chain
and misleads every dashboard. So each document's fields are derived again from its bytes
(`layout.record_fields`, as the sink did) and compared, and `field_mismatches` hands the differences
to the verifier, which reports them as INDEX_MISMATCH.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otel_ai_audit.backends.elasticsearch import layout
from otel_ai_audit.backends.elasticsearch.client import (
    ApiError,
    AuthorizationException,
    Elasticsearch,
    TransportError,
    describe,
    explain,
)
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX
from otel_ai_audit.errors import SourceError
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.verify.export_source import decode_base64

_LONG_MAX = 2**63 - 1


class ElasticsearchSourceError(SourceError):
    """Elasticsearch cannot be read: unreachable, credentials refused, or no such index."""


class ElasticsearchSource:
    """The records, checkpoints and keys an `ElasticsearchSink` wrote under one prefix."""

    def __init__(self, client: Elasticsearch, *,
                 index_prefix: str = ELASTICSEARCH_INDEX_PREFIX, page_size: int = 5000,
                 keep_alive: str = "10m") -> None:
        self.client = client
        self.records_index, self.checkpoints_index, self.keys_index = layout.index_names(
            index_prefix)
        self.page_size = page_size
        self.keep_alive = keep_alive
        self.url = describe(client)
        self.description = f"{self.url} {self.records_index}"
        self._pits: dict[str, str] = {}
        self._mismatches: dict[str, list[tuple[int, str]]] = {}

    def __enter__(self) -> ElasticsearchSource:
        self._refresh()
        self._pits[self.records_index] = self._open(self.records_index, required=True)
        checkpoints = self._open(self.checkpoints_index, required=False)
        if checkpoints:
            self._pits[self.checkpoints_index] = checkpoints
        return self

    def __exit__(self, *exc: object) -> None:
        for pit in self._pits.values():
            try:
                self.client.close_point_in_time(id=pit)
            except (ApiError, TransportError):
                pass  # it expires by itself after keep_alive
        self._pits.clear()

    # --- RecordSource ------------------------------------------------------------------------

    def chain_ids(self) -> list[str]:
        ids: set[str] = set()
        for index in self._pits:
            after: dict[str, Any] | None = None
            while True:
                composite: dict[str, Any] = {
                    "size": 1000, "sources": [{"id": {"terms": {"field": "chain.id"}}}]}
                if after:
                    composite["after"] = after
                chains = self._search(index, size=0, aggs={"chains": {"composite": composite}},
                                      track_total_hits=False)["aggregations"]["chains"]
                ids.update(str(bucket["key"]["id"]) for bucket in chains["buckets"])
                after = chains.get("after_key")
                if not chains["buckets"] or after is None:
                    break
        return sorted(ids)

    def records(self, chain_id: str) -> Iterator[tuple[int, bytes]]:
        """(indexed chain.seq, canonical bytes) in chain.seq order; checks the fields too."""
        mismatches: list[tuple[int, str]] = []
        for hit in self._scan(self.records_index, chain_id, "chain.seq"):
            fields = _flatten(hit.get("_source") or {})
            data = decode_base64(fields.pop("canonical", None))
            indexed = hit["sort"][0]
            position = indexed if isinstance(indexed, int) and indexed < _LONG_MAX else -1
            mismatch = _disagreement(hit["_id"], fields, data, position)
            if mismatch is not None:
                mismatches.append(mismatch)
            yield position, data
        self._mismatches[chain_id] = mismatches

    def record_at(self, chain_id: str, seq: int) -> bytes | None:
        hits = self._search(
            self.records_index, size=1, source=["canonical"], sort=[{"_shard_doc": "asc"}],
            query={"bool": {"filter": [{"term": {"chain.id": chain_id}},
                                       {"term": {"chain.seq": seq}}]}})["hits"]["hits"]
        if not hits:
            return None
        return decode_base64(_flatten(hits[0].get("_source") or {}).get("canonical"))

    def checkpoints(self, chain_id: str) -> list[SignedCheckpoint]:
        if self.checkpoints_index not in self._pits:
            return []
        signed = []
        for hit in self._scan(self.checkpoints_index, chain_id, "checkpoint.index"):
            fields = _flatten(hit.get("_source") or {})
            signed.append(SignedCheckpoint(
                decode_base64(fields.get("payload")), decode_base64(fields.get("signature")),
                str(fields.get("key_id", "")), chain_id, _integer(fields.get("checkpoint.index")),
                _integer(fields.get("checkpoint.size"))))
        return signed

    def public_keys(self) -> dict[str, str]:
        with self._reading(self.keys_index):
            response = self.client.search(index=self.keys_index, size=10_000,
                                          ignore_unavailable=True, source=["key_id", "pem"])
        keys = {}
        for hit in response["hits"]["hits"]:
            fields = _flatten(hit.get("_source") or {})
            keys[str(fields.get("key_id"))] = str(fields.get("pem"))
        return keys

    # --- the indexed-field check (see the module docstring) ----------------------------------

    def field_mismatches(self, chain_id: str) -> list[tuple[int, str]]:
        """(seq, what differs) of the chain's documents whose indexed fields disagree with
        their canonical bytes; found while `records` was read (read here if it was not)."""
        if chain_id not in self._mismatches:
            for _ in self.records(chain_id):
                pass
        return self._mismatches.pop(chain_id)

    # --- reading -----------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Make everything acknowledged searchable, so the snapshot holds all of it: else a
        checkpoint refreshed a moment before the records it covers reads as truncation. Needs
        the `maintenance` privilege; without it the snapshot may miss the last second."""
        try:
            self.client.indices.refresh(index=f"{self.records_index},{self.checkpoints_index}",
                                        ignore_unavailable=True)
        except AuthorizationException:
            pass
        except (ApiError, TransportError):
            pass  # reading reports the problem in words

    def _open(self, index: str, required: bool) -> str:
        try:
            with self._reading(index):
                return str(self.client.open_point_in_time(index=index,
                                                          keep_alive=self.keep_alive)["id"])
        except ElasticsearchSourceError:
            if required or self._exists(index):
                raise
            return ""

    def _exists(self, index: str) -> bool:
        with self._reading(index):
            return bool(self.client.indices.exists(index=index))

    def _search(self, index: str, **body: Any) -> Any:
        """A search in the snapshot of `index`."""
        with self._reading(index):
            response = self.client.search(pit={"id": self._pits[index],
                                               "keep_alive": self.keep_alive}, **body)
        self._pits[index] = response.get("pit_id", self._pits[index])
        return response

    def _scan(self, index: str, chain_id: str, field: str) -> Iterator[dict[str, Any]]:
        """Every document of one chain in `field` order, page by page (search_after)."""
        after: list[Any] | None = None
        while True:
            hits = self._search(index, query={"term": {"chain.id": chain_id}},
                                sort=[{field: "asc"}, {"_shard_doc": "asc"}],
                                size=self.page_size, search_after=after,
                                track_total_hits=False)["hits"]["hits"]
            yield from hits
            if len(hits) < self.page_size:
                return
            after = hits[-1]["sort"]

    @contextmanager
    def _reading(self, index: str) -> Iterator[None]:
        """Elasticsearch's errors as one line a user can act on."""
        try:
            yield
        except (ApiError, TransportError) as error:
            raise ElasticsearchSourceError(explain(
                error, self.client, f"reading {index}", missing=f"has no {index}: nothing was "
                "shipped there, or the index prefix is wrong")) from error


def _disagreement(doc_id: str, fields: dict[str, Any], data: bytes,
                  position: int) -> tuple[int, str] | None:
    """(seq, detail) if the document's indexed fields and id are not what its bytes say."""
    expected = layout.record_fields(data)
    if expected is None:
        return None  # not a record at all: the verifier reports the bytes themselves
    seq = expected.get("chain.seq")
    differ = [(name, fields.get(name), expected.get(name))
              for name in sorted(expected.keys() | fields.keys())
              if fields.get(name) != expected.get(name)]
    expected_id = layout.document_id(str(expected.get("chain.id")), seq)
    if doc_id != expected_id:
        differ.insert(0, ("_id", doc_id, expected_id))
    if not differ:
        return None
    shown = "; ".join(f"{name} is {actual!r}, the record says {wanted!r}"
                      for name, actual, wanted in differ[:3])
    more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
    return (seq if isinstance(seq, int) else position,
            f"indexed fields disagree with the record's canonical bytes: {shown}{more}")


def _flatten(source: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"risk": {"level": "x"}}` and `{"risk.level": "x"}` alike, as `{"risk.level": "x"}`."""
    flat: dict[str, Any] = {}
    for key, value in source.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _integer(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
