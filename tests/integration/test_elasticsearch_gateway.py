"""The gateway's Elasticsearch route, on the real test Elasticsearch: the index template makes
the exporter's index a data stream, and `verify --elasticsearch --gateway-index` reads the
documents the contrib elasticsearchexporter writes in `otel` mode.

The exporter itself cannot be built here (the Go module proxy does not serve it), so the
documents are built from the spans the OTLP sink really emits (a real `Shipper` draining a
real store into an `OtlpSink` whose SDK exporter keeps the spans instead of sending them),
encoded by the SDK's OTLP encoder as they go on the wire, then shaped by
`otel_mapping.span_documents` (checked field by field in tests/unit/test_gateway_mapping.py)
and indexed as the exporter does: `create` bulk actions under the spans' document ids, with
`require_data_stream=true`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_ai_audit.backends.elasticsearch.otel_mapping import (
    gateway_index,
    log_documents,
    span_documents,
)
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.backends.otlp import layout as otlp
from otel_ai_audit.backends.otlp.sealed import SEAL, decode_seal
from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.backends.otlp.source import attributes
from otel_ai_audit.cli import main
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper
from tests.audit_fixtures import chain_ids, edit_event, inference_event, saved_key
from tests.services.elasticsearch import ElasticsearchService
from tests.unit.test_gateway_seals import (
    CASES,
    export_lines,
    holds,
    key_pem,
    otlp_logs_request,
    otlp_request,
    single_spans,
    walk,
)

EVENTS = 20
"""Decisions in the store: with chain_open, records seq 0..20, checkpoints every 4."""


class _KeptSpans(SpanExporter):
    """The SDK exporter's place in the OTLP sink: keeps what the sink exports."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[ReadableSpan]]:
    """(store, public key file, the spans the OTLP sink emits for it) of a closed chain of
    EVENTS decisions."""
    directory = tmp_path_factory.mktemp("gateway")
    signing, public = saved_key(directory)
    writer = AuditWriter(str(directory / "audit.db"), signing, checkpoint_every=4,
                         checkpoint_interval=3600.0)
    for i in range(EVENTS):
        writer.submit(inference_event(i))
    assert writer.close()
    kept = _KeptSpans()
    shipper = Shipper(str(directory / "audit.db"), OtlpSink(kept, "kept"))
    assert shipper.drain(timeout=60), shipper.stats
    shipper.close()
    return directory / "audit.db", public, kept.spans


def bulk_body(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """The exporter's bulk request for the spans: a `create` under each document id."""
    body: list[dict[str, Any]] = []
    for doc_id, document in span_documents(encode_spans(spans)):
        body += [{"create": {"_id": doc_id}}, document]
    return body


def index_as_the_exporter(client: Elasticsearch, index: str,
                          spans: list[ReadableSpan]) -> dict[str, Any]:
    return dict(client.bulk(index=index, operations=bulk_body(spans), require_data_stream=True,
                            refresh=True))


def verify_gateway(url: str, prefix: str, public_key: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, [
        "verify", "--elasticsearch", url, "--index-prefix", prefix, "--gateway-index",
        "--public-key", str(public_key), "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def installed(url: str) -> tuple[Elasticsearch, str, str]:
    """(client, prefix, gateway index) with the templates put by the sink's real install."""
    prefix = f"g{uuid.uuid4().hex[:12]}"
    client = Elasticsearch(url, request_timeout=30)
    ElasticsearchSink(client, index_prefix=prefix).install()
    return client, prefix, gateway_index(prefix)


def test_without_the_template_require_data_stream_refuses_every_document(
        store: tuple[Path, Path, list[ReadableSpan]], elasticsearch: ElasticsearchService) -> None:
    """What the gateway met before: a plain name is no data stream, each document fails."""
    client = Elasticsearch(elasticsearch.url, request_timeout=30)
    spans = store[2][:3]
    response = index_as_the_exporter(client, f"plain-{uuid.uuid4().hex[:8]}", spans)
    assert response["errors"]
    statuses = {item["create"]["status"] for item in response["items"]}
    assert statuses == {404}, response["items"][0]


def test_the_gateways_documents_land_in_a_data_stream_and_verify(
        store: tuple[Path, Path, list[ReadableSpan]], elasticsearch: ElasticsearchService) -> None:
    client, prefix, index = installed(elasticsearch.url)
    spans = store[2]
    response = index_as_the_exporter(client, index, spans)
    assert not response["errors"], [item for item in response["items"]
                                     if item["create"].get("error")][:2]
    assert {item["create"]["status"] for item in response["items"]} == {201}
    # A data stream: the documents are in its backing indices (`.ds-<name>-...`).
    backing = {hit["_index"] for hit in client.search(index=index, size=100)["hits"]["hits"]}
    assert backing and all(name.startswith(f".ds-{index}-") for name in backing), backing
    # A repeat (at-least-once delivery) is the same documents: refused as conflicts, kept once.
    again = index_as_the_exporter(client, index, spans)
    assert {item["create"]["status"] for item in again["items"]} == {409}
    assert client.count(index=index)["count"] == len(spans)

    code, report = verify_gateway(elasticsearch.url, prefix, store[1])
    assert code == 0 and report["ok"], report["findings"]
    assert report["records"] == EVENTS + 1
    assert {span.attributes[otlp.KIND] for span in spans} == {"record", "checkpoint", "key"}
    assert report["chain_summaries"][0]["closed"]


def _locate(client: Elasticsearch, index: str, doc_id: str) -> dict[str, Any]:
    (hit,) = client.search(index=index, query={"ids": {"values": [doc_id]}},
                           seq_no_primary_term=True)["hits"]["hits"]
    return dict(hit)


def _alter(client: Elasticsearch, index: str, doc_id: str) -> None:
    """Rewrite the record text in place, as an insider with write access to the backing index."""
    hit = _locate(client, index, doc_id)
    source = hit["_source"]
    data = source["attributes"][otlp.RECORD].encode()
    source["attributes"][otlp.RECORD] = edit_event(data, risk={"level": "low"}).decode()
    client.index(index=hit["_index"], id=doc_id, document=source, if_seq_no=hit["_seq_no"],
                 if_primary_term=hit["_primary_term"], refresh=True)


def _delete(client: Elasticsearch, index: str, doc_id: str) -> None:
    client.delete(index=_locate(client, index, doc_id)["_index"], id=doc_id, refresh=True)


@pytest.mark.parametrize(("attack", "seq", "kind"), [
    (_alter, 8, "record_modified"),
    (_delete, 8, "gap"),
], ids=["altered", "deleted"])
def test_an_altered_or_deleted_document_is_located(
        store: tuple[Path, Path, list[ReadableSpan]], elasticsearch: ElasticsearchService,
        attack: Any, seq: int, kind: str) -> None:
    client, prefix, index = installed(elasticsearch.url)
    index_as_the_exporter(client, index, store[2])
    (chain,) = chain_ids(store[0])
    attack(client, index, otlp.record_id(chain, seq))
    code, report = verify_gateway(elasticsearch.url, prefix, store[1])
    assert code == 1 and not report["ok"]
    assert {(f["chain_id"], f["seq"], f["kind"]) for f in report["findings"]} >= {
        (chain, seq, kind)}


def test_a_missing_index_is_one_line(
        elasticsearch: ElasticsearchService,
        store: tuple[Path, Path, list[ReadableSpan]]) -> None:
    result = CliRunner().invoke(main, [
        "verify", "--elasticsearch", elasticsearch.url, "--gateway-index", "no-such-otlp",
        "--public-key", str(store[1])])
    assert result.exit_code == 2, result.output
    assert "no-such-otlp" in result.output


def test_gateway_index_needs_elasticsearch(store: tuple[Path, Path, list[ReadableSpan]]) -> None:
    result = CliRunner().invoke(main, ["verify", str(store[0]), "--gateway-index"])
    assert result.exit_code == 2 and "--gateway-index" in result.output


def test_an_index_without_audit_spans_is_an_error_not_an_empty_success(
        elasticsearch: ElasticsearchService,
        store: tuple[Path, Path, list[ReadableSpan]]) -> None:
    client, prefix, index = installed(elasticsearch.url)
    client.bulk(index=index, require_data_stream=True, refresh=True, operations=[
        {"create": {}}, {"@timestamp": "1721314113467.654123", "name": "GET /",
                         "resource": {"attributes": {"service.name": "web"}}}])
    result = CliRunner().invoke(main, [
        "verify", "--elasticsearch", elasticsearch.url, "--index-prefix", prefix,
        "--gateway-index", "--public-key", str(store[1])])
    assert result.exit_code == 2 and "holds no audit spans" in result.output, result.output


# --- telemetry sealed at the gateway (chain.records: attached) --------------------------------
#
# The Go processor's vectors (tests/vectors/gateway_seals.json): each case's export holds the
# chain's key, chain_open record and checkpoints as audit spans, and the chained spans with
# their `ai_audit.seal`, whose records exist nowhere but rebuilt from span + seal.

SEALED_CASES = [case for case in CASES if case["signal"] == "traces"]


def sealed_bulk(case: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    """The exporter's bulk request for every span of the case (audit spans under their
    document ids, the others under ids Elasticsearch picks), and the seqs of the sealed spans
    that get no document: those with a NaN/Inf double, for which the exporter writes no JSON."""
    body: list[dict[str, Any]] = []
    unwritten = []
    for document in single_spans(case):
        try:
            written = list(span_documents(otlp_request(document)))
        except ValueError:
            (span,) = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
            unwritten.append(decode_seal(attributes(span["attributes"])[SEAL]).seq)
            continue
        for doc_id, source in written:
            body += [{"create": {"_id": doc_id} if doc_id else {}}, source]
    return body, unwritten


def index_sealed(url: str, case: dict[str, Any],
                 tmp_path: Path) -> tuple[Elasticsearch, str, str, Path, list[int]]:
    """(client, prefix, index, public key file, seqs of the sealed spans left unwritten) after
    indexing the case as the exporter does."""
    client, prefix, index = installed(url)
    body, unwritten = sealed_bulk(case)
    response = client.bulk(index=index, operations=body, require_data_stream=True, refresh=True)
    assert not response["errors"], [item for item in response["items"]
                                     if item["create"].get("error")][:2]
    key = tmp_path / "gateway.pub.pem"
    key.write_text(key_pem(case), encoding="utf-8")
    return client, prefix, index, key, unwritten


@pytest.mark.parametrize("case", SEALED_CASES, ids=lambda case: case["name"])
def test_sealed_spans_in_the_exporters_documents_verify(
        elasticsearch: ElasticsearchService, tmp_path: Path, case: dict[str, Any]) -> None:
    """Every sealed span the exporter can write rebuilds its record from its document; one it
    cannot (a NaN/Inf attribute) is a record the verifier reports missing, never a pass."""
    _, prefix, _, key, unwritten = index_sealed(elasticsearch.url, case, tmp_path)
    code, report = verify_gateway(elasticsearch.url, prefix, key)
    if not unwritten:
        assert code == 0 and report["ok"], report["findings"]
        assert report["records"] == len(case["records"]) + 1
    else:
        assert code == 1
        assert {(finding["seq"], finding["kind"]) for finding in report["findings"]} == {
            (seq, "gap") for seq in unwritten}, report["findings"]


def _sealed_document(client: Elasticsearch, index: str) -> dict[str, Any]:
    """The first sealed span's document (by its span id: `ai_audit.seal` is not indexed)."""
    (document,) = [span for span in single_spans(SEALED_CASES[0])
                   if SEAL in attributes(span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
                                         .get("attributes"))][:1]
    span_id = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    (hit,) = client.search(index=index, query={"term": {"span_id": span_id}},
                           seq_no_primary_term=True)["hits"]["hits"]
    return dict(hit)


def _alter_sealed(client: Elasticsearch, index: str) -> None:
    """An attribute of the sealed span changed in place, by someone with write access."""
    hit = _sealed_document(client, index)
    source = hit["_source"]
    source["attributes"]["gen_ai.request.model"] = "another-model"
    client.index(index=hit["_index"], id=hit["_id"], document=source, if_seq_no=hit["_seq_no"],
                 if_primary_term=hit["_primary_term"], refresh=True)


def _delete_sealed(client: Elasticsearch, index: str) -> None:
    hit = _sealed_document(client, index)
    client.delete(index=hit["_index"], id=hit["_id"], refresh=True)


@pytest.mark.parametrize(("attack", "kinds"), [
    (_alter_sealed, {"record_modified"}),
    (_delete_sealed, {"gap"}),
], ids=["altered", "deleted"])
def test_an_altered_or_deleted_sealed_span_is_located(
        elasticsearch: ElasticsearchService, tmp_path: Path, attack: Any,
        kinds: set[str]) -> None:
    case = SEALED_CASES[0]
    client, prefix, index, key, unwritten = index_sealed(elasticsearch.url, case, tmp_path)
    assert not unwritten
    attack(client, index)
    code, report = verify_gateway(elasticsearch.url, prefix, key)
    first = min(record["seq"] for record in case["records"])
    assert code == 1 and not report["ok"]
    found = {(finding["seq"], finding["kind"]) for finding in report["findings"]}
    assert any(seq == first and kind in kinds for seq, kind in found), found


@pytest.mark.parametrize("case", [case for case in CASES if case["signal"] == "logs"],
                         ids=lambda case: case["name"])
def test_sealed_log_records_in_the_exporters_documents_verify(
        elasticsearch: ElasticsearchService, tmp_path: Path, case: dict[str, Any]) -> None:
    """The log pipeline's copy (audit log records and sealed ones) in the same data stream:
    intact, but a bytes body under the full policy, which the document holds as hex: that
    record is reported as modified, never passed."""
    client, prefix, index = installed(elasticsearch.url)
    body: list[dict[str, Any]] = []
    lost = set()
    for document in export_lines(case):
        for doc_id, source in log_documents(otlp_logs_request(document)):
            body += [{"create": {"_id": doc_id} if doc_id else {}}, source]
        for signal, _, _, entry in walk(document):
            values = attributes(entry.get("attributes"))
            if (signal == "log" and SEAL in values and case["content"] == "full"
                    and holds(entry.get("body"), "bytesValue")):
                lost.add(decode_seal(values[SEAL]).seq)
    response = client.bulk(index=index, operations=body, require_data_stream=True, refresh=True)
    assert not response["errors"], [item for item in response["items"]
                                     if item["create"].get("error")][:2]
    key = tmp_path / "gateway.pub.pem"
    key.write_text(key_pem(case), encoding="utf-8")
    code, report = verify_gateway(elasticsearch.url, prefix, key)
    found = {(finding["seq"], finding["kind"]) for finding in report["findings"]}
    assert found == {(seq, "record_modified") for seq in lost}, report["findings"]
    assert code == (1 if lost else 0) and report["records"] == len(case["records"]) + 1
