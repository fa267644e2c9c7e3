"""Reading the records monitoring needs, from the embedded store or from Elasticsearch.

Both sources give the same events (parsed from each record's canonical bytes, never from the
indexed copies of its fields), so drift and fairness computed from either are the same numbers.
Windows are half-open, [start, end), on the event time.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from otel_ai_audit.errors import SourceError
from otel_ai_audit.record.canonical import ns_from_rfc3339, rfc3339_from_ns
from otel_ai_audit.record.schema import EventType, parse_record
from otel_ai_audit.store.sqlite import AuditStore


class MonitoringSourceError(SourceError):
    """The records cannot be read (the message says why, in one line)."""


class EventSource(Protocol):
    """Events of some types in a time window (bounds in the records' RFC 3339 form)."""

    description: str

    def events(self, types: Sequence[str], start: str | None = None,
               end: str | None = None) -> Iterator[dict[str, Any]]: ...


def parse_time(text: str) -> int:
    """An ISO 8601 / RFC 3339 time (a date alone is midnight; no zone is UTC) as Unix ns,
    keeping all nine fraction digits records have."""
    try:
        return ns_from_rfc3339(text)
    except ValueError as error:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-27T09:00:00Z)") \
            from error


def record_time(unix_ns: int) -> str:
    """A bound in the form the records' `time` has, so that text order is time order."""
    return rfc3339_from_ns(unix_ns)


class StoreEvents:
    """Events from an embedded store (read-only)."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.description = store.path

    def events(self, types: Sequence[str], start: str | None = None,
               end: str | None = None) -> Iterator[dict[str, Any]]:
        for data in self.store.records_of_type(types, start, end):
            yield parse_record(data)["event"]


class ElasticsearchEvents:
    """Events from the records data stream an Elasticsearch sink writes (`<prefix>-records`),
    selected by their indexed `event.type` and `@timestamp`, read from their canonical bytes."""

    def __init__(self, client: Any, records_index: str, page_size: int = 5000) -> None:
        self.client = client
        self.index = records_index
        self.page_size = page_size
        self.description = records_index

    def events(self, types: Sequence[str], start: str | None = None,
               end: str | None = None) -> Iterator[dict[str, Any]]:
        from elasticsearch import ApiError, TransportError, helpers

        window: dict[str, str] = {}
        if start is not None:
            window["gte"] = start
        if end is not None:
            window["lt"] = end
        filters: list[dict[str, Any]] = [{"terms": {"event.type": list(types)}}]
        if window:
            filters.append({"range": {"@timestamp": window}})
        try:
            self.client.indices.refresh(index=self.index, ignore_unavailable=True)
            hits = helpers.scan(self.client, index=self.index, size=self.page_size,
                                query={"query": {"bool": {"filter": filters}},
                                       "_source": ["canonical"]},
                                preserve_order=False)
            for hit in hits:
                data = base64.b64decode((hit.get("_source") or {}).get("canonical", ""))
                yield parse_record(data)["event"]
        except (ApiError, TransportError) as error:
            raise MonitoringSourceError(f"cannot read {self.index}: {error}") from error


INFERENCE = EventType.INFERENCE.value
REFERENCE = EventType.REFERENCE.value
OUTCOME = EventType.OUTCOME.value
