"""Shipping to a real Elasticsearch, and verifying the trail where it lands.

Every test writes stores with the real `AuditWriter` (or the sklearn instrumentation), ships
them with the real `Shipper` and `ElasticsearchSink`, and verifies with `otel-ai-audit verify
--elasticsearch`, comparing findings as exact sets of (chain, seq, kind) like the attack suite.
Each test uses its own index prefix on the shared node; the fault tests start their own node.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.elasticsearch.layout import RECORD_FIELDS, index_names, record_fields
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.cli import main
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.sinks import Shipper, configured_sinks
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import chain_ids, edit_event, inference_event, rows, tamper
from tests.instrumentation_fixtures import instrumented
from tests.integration.test_zero_code import APP, BIN, run_environment
from tests.services.base import free_port, http_server, wait_until
from tests.services.elasticsearch import ElasticsearchService

EVENTS = 20
"""Events in the small store: the chain_open record and 20 decisions, seq 0..20, checkpoints
of sizes 4, 8, ..., 20 and a closing one of 21 (as in the attack suite)."""


def decision(i: int) -> dict[str, Any]:
    return {**inference_event(i), "risk": {"level": "high" if i % 3 else "low"}}


def write(path: Path, key: SigningKey, events: int, *, checkpoint_every: int = 4) -> None:
    writer = AuditWriter(str(path), key, checkpoint_every=checkpoint_every,
                         checkpoint_interval=3600.0)
    for i in range(events):
        writer.submit(decision(i))
    assert writer.close()


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def ship(store: Path, url: str | list[str], prefix: str, **sink_options: Any) -> Shipper:
    shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(url), index_prefix=prefix,
                                                    **sink_options))
    assert shipper.drain(timeout=120), shipper.stats
    shipper.close()
    return shipper


def count(client: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index, query=query)["count"])


def store_counts(store: Path) -> tuple[int, int]:
    with sqlite3.connect(store) as db:
        return (db.execute("SELECT count(*) FROM records").fetchone()[0],
                db.execute("SELECT count(*) FROM checkpoints").fetchone()[0])


def verify_es(url: str, prefix: str, public_key: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", "--elasticsearch", url, "--index-prefix", prefix,
                                       "--public-key", str(public_key), "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def verify_store(store: Path, public_key: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["verify", str(store), "--public-key", str(public_key),
                                       "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def located(report: dict[str, Any]) -> set[tuple[str, int, str]]:
    found = {(f["chain_id"], f["seq"], f["kind"]) for f in report["findings"]}
    assert len(found) == len(report["findings"]), report["findings"]
    return found


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory, key: tuple[SigningKey, Path]) -> Path:
    path = tmp_path_factory.mktemp("small") / "audit.db"
    write(path, key[0], EVENTS)
    return path


# --- the whole path: instrumentation, runtime shipper, verification -------------------------


@pytest.mark.slow
def test_ten_thousand_decisions_arrive_complete_and_verify(
        tmp_path: Path, elasticsearch: ElasticsearchService) -> None:
    prefix = new_prefix()
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1000, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    with instrumented(tmp_path, SklearnInstrumentor, elasticsearch_url=elasticsearch.url,
                      elasticsearch_index_prefix=prefix) as process:
        assert [type(s.sink) for s in process.runtime.shippers] == [ElasticsearchSink]
        for _ in range(10):
            model.predict(features)
        process.close()  # the writer's closing checkpoint, then the shipper's final delivery
    records, checkpoints = store_counts(process.store)
    assert records == 10_001  # chain_open and 10,000 decisions
    client = Elasticsearch(elasticsearch.url)
    records_index, checkpoints_index, keys_index = index_names(prefix)
    assert count(client, records_index) == records
    assert count(client, checkpoints_index) == checkpoints
    assert count(client, keys_index) == 1
    assert count(client, records_index, {"term": {"event.type": "inference"}}) == 10_000
    assert count(client, records_index, {"term": {"risk.level": "high"}}) == 10_000
    code, report = verify_es(elasticsearch.url, prefix, Path(f"{process.store}.pub.pem"))
    assert code == 0 and report["ok"], report["findings"]
    assert report["records"] == records and report["chain_summaries"][0]["closed"]


def test_layout_is_explicit_and_keeps_the_canonical_bytes(
        small_store: Path, elasticsearch: ElasticsearchService) -> None:
    prefix = new_prefix()
    ship(small_store, elasticsearch.url, prefix)
    client = Elasticsearch(elasticsearch.url)
    records_index, checkpoints_index, keys_index = index_names(prefix)
    templates = {t["name"]: t["index_template"] for t in client.indices.get_index_template(
        name=f"{prefix}-*")["index_templates"]}
    assert templates[records_index]["template"]["lifecycle"]["data_retention"] == "190d"
    assert templates[checkpoints_index]["template"]["lifecycle"]["data_retention"] == "190d"
    assert "lifecycle" not in templates[keys_index]["template"]  # keys outlive the records
    assert "data_stream" in templates[records_index]
    (mapping,) = client.indices.get_mapping(index=records_index).values()
    mapping = mapping["mappings"]
    assert mapping["dynamic"] == "false"
    assert mapping["properties"]["@timestamp"]["type"] == "date_nanos"
    assert mapping["properties"]["canonical"]["type"] == "binary"
    assert mapping["properties"]["chain"]["properties"]["seq"]["type"] == "long"
    assert mapping["properties"]["risk"]["properties"]["level"]["type"] == "keyword"
    assert "input" not in mapping["properties"]  # free-form fields never grow the mapping
    (chain,) = chain_ids(small_store)
    stored = {row["seq"]: row["data"] for row in rows(small_store, chain)}
    client.indices.refresh(index=records_index)
    hits = client.search(index=records_index, size=100)["hits"]["hits"]
    assert len(hits) == EVENTS + 1
    for hit in hits:
        data = base64.b64decode(hit["_source"]["canonical"])
        assert hit["_id"] == f"{chain}:{hit['_source']['chain.seq']}"
        assert data == stored[hit["_source"]["chain.seq"]]
        assert {k: v for k, v in hit["_source"].items() if k != "canonical"} == \
            record_fields(data)


def test_indexed_fields_of_an_instrumented_record() -> None:
    event = new_event(EventType.INFERENCE, model={"name": "churn", "version": 3,
                                                  "fingerprint": "ab"},
                      output={"policy": "full", "value": 0.83}, risk={"level": "high"},
                      latency_ms=6.5, trace={"trace_id": "0af7", "span_id": "b7ad"},
                      service={"name": "churn-api"}, input={"policy": "hash"})
    record = {"chain": {"id": "c" * 32, "logged": "1795761161123456789", "prev": "0" * 64,
                        "seq": 7, "v": 1}, "event": event}
    assert record_fields(canonical_json(record)) == {
        "@timestamp": event["time"], "chain.id": "c" * 32, "chain.seq": 7,
        "event.id": event["id"], "event.type": "inference", "model.name": "churn",
        "model.version": "3", "model.fingerprint": "ab", "risk.level": "high",
        "service.name": "churn-api", "trace.trace_id": "0af7", "output.score": 0.83,
        "latency_ms": 6.5}
    # A time date_nanos cannot hold falls back to the record's own sequencing time.
    record["event"] = {**event, "time": "1969-12-31T23:59:59Z", "output": {"value": [0.1]}}
    fields = record_fields(canonical_json(record))
    assert fields is not None
    assert fields["@timestamp"] == "2026-11-27T06:32:41.123456789Z"
    assert "output.score" not in fields
    assert record_fields(b'{"chain":{"id":') is None


def test_logs_names_are_refused() -> None:
    with pytest.raises(ValueError, match="logsdb"):
        index_names("logs-audit")


# --- tampering in Elasticsearch --------------------------------------------------------------


def _locate(client: Elasticsearch, index: str, doc_id: str) -> dict[str, Any]:
    client.indices.refresh(index=index)
    (hit,) = client.search(index=index, query={"ids": {"values": [doc_id]}},
                           seq_no_primary_term=True)["hits"]["hits"]
    return hit


def _overwrite(client: Elasticsearch, index: str, doc_id: str, source: dict[str, Any]) -> None:
    """Rewrite a document in place, as an insider with write access to the backing index."""
    hit = _locate(client, index, doc_id)
    client.index(index=hit["_index"], id=doc_id, document=source, if_seq_no=hit["_seq_no"],
                 if_primary_term=hit["_primary_term"], refresh=True)


def _edit_bytes(client: Elasticsearch, index: str, doc_id: str) -> None:
    """Change a field inside the canonical bytes, and the indexed fields to match (careful)."""
    source = _locate(client, index, doc_id)["_source"]
    data = edit_event(base64.b64decode(source["canonical"]), risk={"level": "low"})
    fields = record_fields(data)
    assert fields is not None
    _overwrite(client, index, doc_id,
               {**fields, "canonical": base64.b64encode(data).decode()})


def _edit_indexed_field(client: Elasticsearch, index: str, doc_id: str) -> None:
    """Change the indexed risk level only: the bytes, and so the chain, stay intact."""
    source = _locate(client, index, doc_id)["_source"]
    assert source["risk.level"] == "high"
    _overwrite(client, index, doc_id, {**source, "risk.level": "low"})


def _delete(client: Elasticsearch, index: str, doc_id: str) -> None:
    client.delete(index=_locate(client, index, doc_id)["_index"], id=doc_id, refresh=True)


@pytest.mark.parametrize(("attack", "seq", "kind"), [
    (_edit_bytes, 8, "record_modified"),
    (_edit_indexed_field, 8, "index_mismatch"),
    (_delete, 8, "gap"),
    (_delete, EVENTS, "truncated"),
], ids=["bytes-changed", "indexed-field-changed", "deleted-middle", "deleted-tail"])
def test_tampering_in_elasticsearch_is_located(
        small_store: Path, key: tuple[SigningKey, Path], elasticsearch: ElasticsearchService,
        attack: Any, seq: int, kind: str) -> None:
    prefix = new_prefix()
    ship(small_store, elasticsearch.url, prefix)
    (chain,) = chain_ids(small_store)
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 0 and report["ok"], report["findings"]
    attack(Elasticsearch(elasticsearch.url), index_names(prefix)[0], f"{chain}:{seq}")
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 1
    assert located(report) == {(chain, seq, kind)}


# --- delivery guarantees --------------------------------------------------------------------


def test_a_rejected_record_holds_its_chain_back_and_is_never_lost(
        tmp_path: Path, key: tuple[SigningKey, Path], elasticsearch: ElasticsearchService) -> None:
    """An operator's template maps risk.level as a number: every decision is refused."""
    store = tmp_path / "audit.db"
    write(store, key[0], EVENTS)
    prefix = new_prefix()
    records_index = index_names(prefix)[0]
    client = Elasticsearch(elasticsearch.url)
    client.indices.put_index_template(
        name=f"{prefix}-conflicting", index_patterns=[records_index], priority=1000,
        data_stream={}, template={"mappings": {"dynamic": False, "properties": {
            **RECORD_FIELDS, "risk.level": {"type": "long"}}}})
    sink = ElasticsearchSink(Elasticsearch(elasticsearch.url), index_prefix=prefix)
    shipper = Shipper(str(store), sink, max_backoff=0.5)
    assert not shipper.drain(timeout=3)
    assert shipper.stats.rejected >= 2 and shipper.stats.shipped_records == 1
    assert count(client, records_index) == 1  # the chain_open record has no risk level
    (chain,) = chain_ids(store)
    with AuditStore(store) as opened:
        assert opened.ship_cursor(sink.name, chain, "records") == 0
        assert opened.ship_cursor(sink.name, chain, "checkpoints") == -1
    # The operator fixes the template; the next backing index takes the right mapping.
    client.indices.delete_index_template(name=f"{prefix}-conflicting")
    client.indices.rollover(alias=records_index)
    assert shipper.drain(timeout=60)
    shipper.close()
    assert count(client, records_index) == store_counts(store)[0]
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 0, report["findings"]


def test_resending_after_a_rollover_creates_no_duplicate(
        tmp_path: Path, key: tuple[SigningKey, Path], elasticsearch: ElasticsearchService) -> None:
    """A crash between Elasticsearch's answer and the cursor's commit resends the batch; a
    create only fails with 409 within one backing index, so the sink looks the ids up."""
    store = tmp_path / "audit.db"
    write(store, key[0], EVENTS)
    prefix = new_prefix()
    ship(store, elasticsearch.url, prefix)
    client = Elasticsearch(elasticsearch.url)
    records_index, checkpoints_index, _ = index_names(prefix)
    client.indices.rollover(alias=records_index)
    client.indices.rollover(alias=checkpoints_index)
    tamper(store, "DELETE FROM ship_cursors")  # as if the cursors had never been committed
    shipper = ship(store, elasticsearch.url, prefix)
    assert shipper.stats.shipped_records == EVENTS + 1  # delivered: already there
    assert count(client, records_index) == store_counts(store)[0]
    assert count(client, checkpoints_index) == store_counts(store)[1]
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 0, report["findings"]


def test_cursors_survive_old_stores_and_never_move_back(tmp_path: Path) -> None:
    store = tmp_path / "audit.db"
    AuditStore(store).close()
    tamper(store, "DROP TABLE ship_cursors")  # a store written before shipping existed
    with AuditStore(store) as opened:
        assert opened.ship_cursor("sink", "c", "records") == -1
        opened.set_ship_cursor("sink", "c", "records", 7)
        opened.set_ship_cursor("sink", "c", "records", 3)
        assert opened.ship_cursor("sink", "c", "records") == 7


def test_a_forked_worker_chain_is_shipped_by_the_parent(
        tmp_path: Path, key: tuple[SigningKey, Path], elasticsearch: ElasticsearchService) -> None:
    """The worker writes its own chain into the shared store and ships nothing itself; the
    parent's shipper, whose connection was closed around the fork, delivers both chains."""
    store = tmp_path / "audit.db"
    prefix = new_prefix()
    writer = AuditWriter(str(store), key[0], checkpoint_interval=3600.0)
    shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                    index_prefix=prefix), poll_interval=0.05)
    shipper.start()
    for i in range(200):
        writer.submit(decision(i))
    assert writer.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for i in range(300):
                writer.submit(decision(i))
            code = 0 if writer.close() and shipper.close() else 1
        finally:
            os._exit(code)
    for i in range(200, 400):
        writer.submit(decision(i))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert writer.close()
    assert shipper.close(timeout=60)
    records, checkpoints = store_counts(store)
    assert records == 401 + 1 + 301  # the parent's chain also records the fork (chain_fork)
    records_index, checkpoints_index, _ = index_names(prefix)
    client = Elasticsearch(elasticsearch.url)
    assert count(client, records_index) == records
    assert count(client, checkpoints_index) == checkpoints
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 0 and report["chains"] == 2, report["findings"]


@pytest.mark.slow
def test_elasticsearch_down_for_30_seconds_loses_and_duplicates_nothing(
        tmp_path: Path, key: tuple[SigningKey, Path]) -> None:
    service = ElasticsearchService()
    service.start()
    try:
        store = tmp_path / "audit.db"
        prefix = new_prefix()
        writer = AuditWriter(str(store), key[0])
        shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(service.url),
                                                        index_prefix=prefix), max_backoff=2.0)
        shipper.start()
        outage = threading.Thread(target=service.restart, args=(30.0,))
        written = 0

        def write_for(seconds: float) -> None:
            nonlocal written
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                writer.submit(decision(written))
                written += 1
                time.sleep(0.005)

        write_for(3.0)
        outage.start()
        down_at = time.monotonic()
        while outage.is_alive():
            write_for(1.0)
        assert time.monotonic() - down_at >= 30.0
        write_for(3.0)
        assert writer.close()
        assert shipper.close(timeout=120), shipper.stats
        assert shipper.stats.failed_attempts > 0, "the outage was never noticed"
        records, checkpoints = store_counts(store)
        assert records == written + 1
        client = Elasticsearch(service.url)
        records_index, checkpoints_index, _ = index_names(prefix)
        assert count(client, records_index) == records  # none lost, none twice
        assert count(client, checkpoints_index) == checkpoints
        code, report = verify_es(service.url, prefix, key[1])
        assert code == 0, report["findings"]
    finally:
        service.stop()
        service.remove_data()


@pytest.mark.slow
def test_killed_app_is_shipped_exactly_once_and_its_loss_window_reported(
        tmp_path: Path, elasticsearch: ElasticsearchService) -> None:
    store, ready = tmp_path / "audit.db", tmp_path / "ready"
    prefix = new_prefix()
    records_index = index_names(prefix)[0]
    env = run_environment(store, OTEL_AI_AUDIT_ELASTICSEARCH_URL=elasticsearch.url,
                          OTEL_AI_AUDIT_ELASTICSEARCH_INDEX_PREFIX=prefix)
    client = Elasticsearch(elasticsearch.url)

    def shipped() -> int:
        return count(client, records_index) if client.indices.exists(index=records_index) else 0

    app = subprocess.Popen([str(BIN / "opentelemetry-instrument"), "python", str(APP), "20",
                            "--forever", str(ready)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(ready.exists, timeout=120), "the app never became ready"
        assert wait_until(lambda: shipped() >= 300, timeout=60), "nothing reached Elasticsearch"
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
    (killed,) = chain_ids(store)
    # Restarted, the app ships what its predecessor persisted but never delivered.
    rerun = subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(APP), "20"],
                           env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    records, checkpoints = store_counts(store)
    assert count(client, records_index) == records
    assert count(client, index_names(prefix)[1]) == checkpoints
    public_key = Path(f"{store}.pub.pem")
    code, report = verify_es(elasticsearch.url, prefix, public_key)
    with sqlite3.connect(store) as db:
        last = db.execute("SELECT max(seq) FROM records WHERE chain_id = ?", (killed,)).fetchone()
    assert code == 1 and located(report) == {(killed, last[0], "chain_not_closed")}
    assert located(verify_store(store, public_key)) == located(report)
    assert sorted(c["closed"] for c in report["chain_summaries"]) == [False, True]


@pytest.mark.slow
def test_records_spread_over_shards_and_nodes_verify_the_same(
        tmp_path: Path, key: tuple[SigningKey, Path],
        elasticsearch_cluster: ElasticsearchService) -> None:
    store = tmp_path / "audit.db"
    for _ in range(3):
        write(store, key[0], 1500, checkpoint_every=100)
    prefix = new_prefix()
    ship(store, elasticsearch_cluster.urls, prefix,
         index_settings={"number_of_shards": 3, "number_of_replicas": 1})
    client = Elasticsearch(elasticsearch_cluster.urls)
    records_index = index_names(prefix)[0]
    client.cluster.health(index=records_index, wait_for_status="green", timeout="60s")
    assert count(client, records_index) == store_counts(store)[0]
    stats = client.indices.stats(index=records_index, level="shards")
    shards = [copy for index in stats["indices"].values() for copies in index["shards"].values()
              for copy in copies if copy["routing"]["primary"]]
    assert len(shards) == 3 and all(shard["docs"]["count"] > 0 for shard in shards)
    assert len({shard["routing"]["node"] for shard in shards}) > 1
    urls = ",".join(elasticsearch_cluster.urls)
    code, report = verify_es(urls, prefix, key[1])
    assert code == 0 and (report["chains"], report["records"]) == (3, 4503)
    # The same deletion in both places is the same finding in both places.
    chain = chain_ids(store)[1]
    _delete(client, records_index, f"{chain}:700")
    tamper(store, "DELETE FROM records WHERE chain_id = ? AND seq = 700", (chain,))
    code, report = verify_es(urls, prefix, key[1])
    assert located(report) == located(verify_store(store, key[1])) == {(chain, 700, "gap")}


# --- the command line ------------------------------------------------------------------------


def test_ship_command_delivers_a_store_and_resumes(
        small_store: Path, key: tuple[SigningKey, Path], elasticsearch: ElasticsearchService,
        tmp_path: Path) -> None:
    store = tmp_path / "audit.db"
    store.write_bytes(small_store.read_bytes())
    prefix = new_prefix()
    arguments = ["ship", str(store), "--elasticsearch", elasticsearch.url,
                 "--index-prefix", prefix, "--once"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert f"shipped {EVENTS + 1} record(s), 6 checkpoint(s) and 1 key(s)" in result.stdout
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "shipped 0 record(s), 0 checkpoint(s)" in result.stdout
    code, report = verify_es(elasticsearch.url, prefix, key[1])
    assert code == 0, report["findings"]


class _Refusing(BaseHTTPRequestHandler):
    """An Elasticsearch that refuses every credential, as a secured cluster does."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.dumps({"error": {"type": "security_exception",
                                     "reason": "unable to authenticate user"},
                           "status": 401}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    with http_server(_Refusing) as url:
        yield url


def test_unusable_elasticsearch_is_a_one_line_error(
        small_store: Path, elasticsearch: ElasticsearchService, refusing_server: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["verify", "--elasticsearch", down], f"cannot reach Elasticsearch at {down}: "),
        (["verify", "--elasticsearch", elasticsearch.url, "--index-prefix", "nothing-here"],
         "has no nothing-here-records: nothing was shipped there"),
        (["verify", "--elasticsearch", refusing_server, "--api-key", "id:wrong"],
         "refused the credentials (HTTP 401)"),
        (["verify", str(small_store), "--elasticsearch", elasticsearch.url],
         "give one of a STORE file, --elasticsearch URL"),
        (["ship", str(small_store), "--elasticsearch", down, "--once"],
         "Connection refused"),
        (["ship", str(small_store), "--elasticsearch", refusing_server,
          "--username", "u", "--password", "wrong", "--once"], "HTTP 401"),
    ]
    for arguments, message in cases:
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert result.stderr.startswith("otel-ai-audit: error: "), result.output
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_settings_turn_shipping_on(tmp_path: Path) -> None:
    settings = AuditSettings.from_env({
        "OTEL_AI_AUDIT_ELASTICSEARCH_URL": "http://127.0.0.1:9200,http://127.0.0.1:9201",
        "OTEL_AI_AUDIT_ELASTICSEARCH_INDEX_PREFIX": "audit",
        "OTEL_AI_AUDIT_ELASTICSEARCH_RETENTION": "400d"})
    (sink,) = configured_sinks(settings)
    assert isinstance(sink, ElasticsearchSink)
    assert sink.name == "elasticsearch:http://127.0.0.1:9200,http://127.0.0.1:9201/audit"
    assert (sink.records_index, sink.retention) == ("audit-records", "400d")
    assert configured_sinks(AuditSettings.from_env({})) == []
    secret = AuditSettings.from_env({}, elasticsearch_url="http://u:secret@127.0.0.1:9200")
    assert "secret" not in configured_sinks(secret)[0].name  # cursors never hold credentials


def test_shipping_to_a_dead_address_is_one_clean_line(small_store: Path) -> None:
    """Nothing listens there: the command says so once, without the client's tracebacks."""
    from tests.services.base import free_port

    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "ship", str(small_store),
         "--elasticsearch", f"http://127.0.0.1:{free_port()}", "--once"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [next(
        line for line in result.stderr.splitlines() if line.startswith("otel-ai-audit: error:"))]
    assert "Connection refused" in result.stderr
