"""Verifying the copy a Collector gateway wrote to Elasticsearch: the documents of the contrib
`elasticsearchexporter` in `otel` mapping mode (`otel_mapping`), one per audit span.

The spans are the OTLP sink's (`otel_ai_audit.backends.otlp.layout`), so their attributes, read
back from each document's `attributes` (and the `ai_audit.pipeline` mark from
`resource.attributes`), rebuild the trail exactly as a Collector file export does
(`otlp.source.trail_items`): records from `ai_audit.record`, checkpoints and keys beside them.
One point-in-time snapshot of the index is read whole, so the verifier sees one state while the
gateway keeps writing; a span indexed twice under one `_id` is one document, and identical
repeats under different ids collapse as in any export.
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
from otel_ai_audit.backends.otlp.source import trail_items
from otel_ai_audit.verify.export_source import ExportSource, export_source


def read_gateway_index(client: Elasticsearch, index: str, *, page_size: int = 5000,
                       keep_alive: str = "10m") -> ExportSource:
    """The trail in the exporter's documents in `index`; `ElasticsearchSourceError` if it
    cannot be read or holds no audit span."""
    description = f"{describe(client)} {index} (Collector elasticsearchexporter, otel mode)"
    spans = list(_audit_attributes(client, index, page_size, keep_alive))
    if not spans:
        raise ElasticsearchSourceError(f"{description} holds no audit spans (none whose "
                                       f"resource has {otlp.PIPELINE}={otlp.PIPELINE_VALUE})")
    return export_source(description, trail_items(spans))


def _audit_attributes(client: Elasticsearch, index: str, page_size: int,
                      keep_alive: str) -> Iterator[dict[str, Any]]:
    """The span attributes of every document whose resource is marked as the audit
    pipeline's, read page by page from one snapshot."""
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
                    source_includes=[otel_mapping.ATTRIBUTES,
                                     f"{otel_mapping.RESOURCE}.{otel_mapping.ATTRIBUTES}"])
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                for hit in hits:
                    document = hit.get("_source") or {}
                    resource = _flatten((document.get(otel_mapping.RESOURCE) or {}).get(
                        otel_mapping.ATTRIBUTES) or {})
                    if resource.get(otlp.PIPELINE) == otlp.PIPELINE_VALUE:
                        yield _flatten(document.get(otel_mapping.ATTRIBUTES) or {})
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
