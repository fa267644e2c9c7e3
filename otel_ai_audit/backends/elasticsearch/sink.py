"""The Elasticsearch sink: records, checkpoints, anchors and keys by direct bulk, with
idempotent ids, into the indices of `layout`.

Every document is written with op_type `create`. Per bulk item: 201 is delivered, and so is
409 (the document is already there: a retry); 429 and 5xx are retried; anything else (a
mapping or validation error) is a rejection, which the shipper reports loudly and keeps
retrying, never skips. A create is only idempotent within one backing index: after a rollover
a repeat would land in the new one as a duplicate. So a batch that may have been sent before
(the first of each chain after a start, and any after a failed request whose outcome is
unknown) is first looked up by id across the whole data stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from otel_ai_audit.backends.elasticsearch import layout, otel_mapping
from otel_ai_audit.backends.elasticsearch.client import (
    ApiError,
    Elasticsearch,
    NotFoundError,
    TransportError,
    connect,
    describe,
    transport_reason,
)
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX, ELASTICSEARCH_RETENTION, AuditSettings
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import StoredAnchor

BULK_SIZE = 2000
"""Documents per bulk request."""
CONCURRENCY = 3
"""Bulk requests in flight: the next is built while Elasticsearch indexes the last ones."""
_RETRYABLE = 429
_BULK_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"


class ElasticsearchSink:
    """Writes to the indices of one prefix; installs their templates on first use."""

    kind = "elasticsearch"

    def __init__(self, client: Elasticsearch, *, index_prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                 retention: str = ELASTICSEARCH_RETENTION,
                 index_settings: Mapping[str, Any] | None = None, bulk_size: int = BULK_SIZE,
                 concurrency: int = CONCURRENCY) -> None:
        self.client = client
        self.bulk_size = bulk_size
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self.index_prefix = index_prefix
        self.records_index, self.checkpoints_index, self.keys_index = layout.index_names(
            index_prefix)
        self.anchors_index = layout.anchors_index(index_prefix)
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
        """Put the four index templates, and the data stream template of a Collector
        gateway's index (`otel_mapping.gateway_template`), so the gateway can write beside
        (idempotent: each start puts them again, so changed settings reach the next backing
        index). Raises `DeliveryError` if Elasticsearch refuses them or cannot be reached."""
        templates = layout.index_templates(self.index_prefix, retention=self.retention,
                                           index_settings=self.index_settings)
        templates[otel_mapping.gateway_index(self.index_prefix)] = \
            otel_mapping.gateway_template(self.index_prefix, retention=self.retention)
        for name, template in templates.items():
            _call(f"installing the index template {name}", self.client.indices.put_index_template,
                  name=name, **template)
        self._installed = True

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._bulk(self.records_index, batch[0].chain_id if batch else "",
                   [layout.document_id(record.chain_id, record.seq) for record in batch],
                   lambda i: layout.record_lines(batch[i]))

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        ids = [layout.document_id(signed.chain_id, signed.index) for signed in batch]
        self._bulk(self.checkpoints_index, batch[0].chain_id if batch else "", ids,
                   lambda i: layout.create_lines(ids[i], layout.checkpoint_document(batch[i])))

    def send_keys(self, keys: Mapping[str, str]) -> None:
        ids = list(keys)
        self._bulk(self.keys_index, "", ids, lambda i: layout.create_lines(
            ids[i], {"key_id": ids[i], "pem": keys[ids[i]]}))

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        documents = [layout.anchor_document(anchor) for anchor in batch]
        ids = [layout.document_id(document["anchor.store_id"], document["anchor.seq"])
               for document in documents]
        self._bulk(self.anchors_index, "", ids,
                   lambda i: layout.create_lines(ids[i], documents[i]))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.client.close()

    # --- bulk ------------------------------------------------------------------------------

    def _bulk(self, index: str, chain_id: str, ids: list[str],
              lines: Callable[[int], tuple[bytes, bytes]]) -> None:
        """Create document i under ids[i] (its bulk `lines(i)`); raise `DeliveryError` naming
        those not written.

        Requests of `bulk_size` documents, `concurrency` of them in flight: the next request
        is built while Elasticsearch indexes the last ones (`benchmarks.bench_elasticsearch`,
        one node sharing two cores: 19,945 records/s from the store, 0.95x the client's
        `parallel_bulk` of the same documents from memory, 1.47x its `helpers.bulk`).
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
                body = [line for i in chunk for line in lines(i)]
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
