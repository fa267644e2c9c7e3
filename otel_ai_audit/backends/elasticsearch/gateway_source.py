"""Verifying the copy a Collector gateway wrote to Elasticsearch: the documents of the contrib
`elasticsearchexporter` in `otel` mapping mode (`otel_mapping`), one per span or log record.

Two kinds of document hold the trail, as in a Collector file export (`otlp.source`):

* audit spans (the OTLP sink's, `otel_ai_audit.backends.otlp.layout`, and the gateway
  processor's chain_open, checkpoints and keys), marked `ai_audit.pipeline` = "audit" in
  `resource.attributes`: their `attributes` give records, checkpoints and keys
  (`otlp.source.trail_items`);
* spans and log records of any resource chained at the gateway (`chain.records: attached`),
  which carry `ai_audit.seal`: each is read back as the item it was written from
  (`otel_mapping.span_telemetry`, `.log_telemetry`) and its record rebuilt (`otlp.sealed`).

`index` may name several indices or patterns, comma-separated, when the sealed telemetry (or
the log records) is written beside the audit spans' index rather than into it. One
point-in-time snapshot is read whole, so the verifier sees one state while the gateway keeps
writing; a span indexed twice under one `_id` is one document, and identical repeats under
different ids collapse as in any export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from otel_ai_audit.backends.elasticsearch import otel_mapping
from otel_ai_audit.backends.elasticsearch.client import (
    ApiError,
    AuthorizationException,
    Elasticsearch,
    TransportError,
    describe,
    explain,
)
from otel_ai_audit.backends.elasticsearch.source import ElasticsearchSourceError, _flatten
from otel_ai_audit.backends.otlp import layout as otlp
from otel_ai_audit.backends.otlp.sealed import SEAL
from otel_ai_audit.backends.otlp.source import sealed_record, trail_items
from otel_ai_audit.verify.export_source import ExportSource, Item, export_source


def read_gateway_index(client: Elasticsearch, index: str, *, page_size: int = 5000,
                       keep_alive: str = "10m") -> ExportSource:
    """The trail in the exporter's documents in `index`; `ElasticsearchSourceError` if it
    cannot be read or holds neither an audit span nor a sealed one."""
    description = f"{describe(client)} {index} (Collector elasticsearchexporter, otel mode)"
    items = list(_trail_items(client, index, page_size, keep_alive))
    if not items:
        raise ElasticsearchSourceError(
            f"{description} holds no audit spans (none whose resource has "
            f"{otlp.PIPELINE}={otlp.PIPELINE_VALUE}, none with {SEAL})")
    return export_source(description, items)


def _trail_items(client: Elasticsearch, index: str, page_size: int,
                 keep_alive: str) -> Iterator[Item]:
    """The trail's items in the documents of audit spans and of sealed spans, read page by
    page from one snapshot."""
    try:
        try:
            client.indices.refresh(index=index)
        except AuthorizationException:
            pass  # without `maintenance` the snapshot may miss the last second
        pit = str(client.open_point_in_time(index=index, keep_alive=keep_alive)["id"])
        try:
            after: list[Any] | None = None
            while True:
                response = client.search(
                    pit={"id": pit, "keep_alive": keep_alive}, size=page_size,
                    sort=[{"_shard_doc": "asc"}], search_after=after, track_total_hits=False,
                    source_excludes=["links"])
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                for hit in hits:
                    document = hit.get("_source") or {}
                    resource = _flatten((document.get(otel_mapping.RESOURCE) or {}).get(
                        otel_mapping.ATTRIBUTES) or {})
                    attributes = document.get(otel_mapping.ATTRIBUTES) or {}
                    if resource.get(otlp.PIPELINE) == otlp.PIPELINE_VALUE:
                        yield from trail_items([_flatten(attributes)])
                    elif SEAL in attributes:
                        # Only log records' documents have an observed time.
                        item = (otel_mapping.log_telemetry(document)
                                if "observed_timestamp" in document
                                else otel_mapping.span_telemetry(document))
                        yield sealed_record(item, item.attributes[SEAL])
                if len(hits) < page_size:
                    return
                after = hits[-1]["sort"]
        finally:
            try:
                client.close_point_in_time(id=pit)
            except (ApiError, TransportError):
                pass  # it expires by itself after keep_alive
    except (ApiError, TransportError) as error:
        raise ElasticsearchSourceError(explain(
            error, client, f"reading {index}", missing=f"has no {index}: the gateway wrote "
            "nothing there, or the index name is wrong")) from error
