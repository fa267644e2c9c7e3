"""Audit records as spans through real OpenTelemetry Collectors, and verified where they land.

The gateway runs the shipped collector_config/otelcol-gateway.yaml (an audit receiver and
pipeline of their own, the audit processor, a persistent sending_queue on file_storage) with the
otelcol-ai-audit build, on the test's ports; its exporter feeds a second Collector, standing in
for the backends Collector, that archives what arrives to a JSON lines file, which
`otel-ai-audit verify --otlp-export` reads. The elasticsearch and splunk_hec exporters of the
shipped backends Collector (otelcol-backends.yaml) cannot be built here (the Go module proxy
refuses modules they import), so that config is checked for its structure and validated with
those two exporters swapped for ones the build has.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.cli import main
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper, configured_sinks
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import (
    chain_ids,
    edit_event,
    inference_event,
    rows,
    set_data,
    tamper,
    write_store,
)
from tests.collector_fixtures import CollectorPair, archived_spans
from tests.instrumentation_fixtures import instrumented
from tests.services.base import REPO_ROOT, wait_until
from tests.services.collector import CollectorService, collector_binary, distinct_free_ports

GATEWAY = REPO_ROOT / "collector_config" / "otelcol-gateway.yaml"
BACKENDS = REPO_ROOT / "collector_config" / "otelcol-backends.yaml"
TEST_GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-test.yaml"


class Route(CollectorPair):
    """The shipped gateway (otelcol-gateway.yaml, the audit processor on) into an archiving
    Collector that stands in for the backends Collector."""

    def __init__(self, workdir: Path) -> None:
        # Appending: a restarted archive keeps what it wrote before (the default truncates).
        self.archive = CollectorService(workdir / "archive", extra_config={
            "exporters": {"file/traces": {"append": True}}})
        (port,) = distinct_free_ports(1)
        self.audit_endpoint = f"http://127.0.0.1:{port}"
        gateway = workdir / "gateway"
        # As shipped, but on this test's ports and directories (the Collector merges this
        # second config over the file), and no metrics endpoint on the shared port 8888.
        on_test_ports = {
            "receivers": {
                "otlp": {"protocols": {"grpc": {"endpoint": "${env:OTELCOL_GRPC_ENDPOINT}"},
                                       "http": {"endpoint": "${env:OTELCOL_HTTP_ENDPOINT}"}}},
                "otlp/audit": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
            "extensions": {"health_check": {"endpoint": "${env:OTELCOL_HEALTH_ENDPOINT}"},
                           "file_storage/audit": {"directory": str(gateway / "audit-state")},
                           "file_storage/queue": {"directory": str(gateway / "queue")}},
            "service": {"telemetry": {"metrics": {"level": "none"}}}}
        self.gateway = CollectorService(
            gateway, config_file=GATEWAY, extra_config=on_test_ports,
            environment={"BACKENDS_AUDIT_ENDPOINT": self.archive.otlp_grpc_endpoint,
                         "BACKENDS_TRACES_ENDPOINT": self.archive.otlp_grpc_endpoint,
                         # Each test signs with a key of its own; the trail carries it.
                         "AUDIT_ALLOW_SELF_ASSERTED": "true"})


    @property
    def archived(self) -> Path:
        return self.archive.traces_path

    def record_spans(self) -> list[dict[str, Any]]:
        """Attributes of every record span the archive holds (repeats included)."""
        return [{"resource": resource, **attributes}
                for resource, attributes in archived_spans(self.archived)
                if attributes.get("ai_audit.kind") == "record"]

    def wait_for(self, records: int, timeout: float = 120) -> Counter[int]:
        """The archived record seqs, once `records` distinct ones arrived."""
        seen: Counter[int] = Counter()

        def arrived() -> bool:
            nonlocal seen
            seen = Counter(int(span["ai_audit.chain.seq"]) for span in self.record_spans())
            return len(seen) >= records

        assert wait_until(arrived, timeout), (len(seen), self.gateway.log_tail())
        time.sleep(0.5)  # the checkpoints follow their records
        return seen


@pytest.fixture(scope="module")
def route(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route]:
    route = Route(tmp_path_factory.mktemp("otlp")).start()
    yield route
    route.stop()


def verify(*arguments: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", *arguments, "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.slow
def test_ten_thousand_decisions_through_the_collector_verify(tmp_path: Path,
                                                             route: Route) -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(1000, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    with instrumented(tmp_path, SklearnInstrumentor,
                      otlp_endpoint=route.audit_endpoint) as process:
        assert [type(s.sink) for s in process.runtime.shippers] == [OtlpSink]
        for _ in range(10):
            model.predict(features)
        process.close()
    (chain,) = chain_ids(process.store)
    stored = {row["seq"]: row["data"] for row in rows(process.store, chain)}
    assert len(stored) == 10_001
    assert route.wait_for(10_001) == Counter(list(stored))  # each exactly once
    for span in route.record_spans():
        seq = int(span["ai_audit.chain.seq"])
        assert span["ai_audit.record"].encode() == stored[seq]
        assert span["elasticsearch.document_id"] == f"{chain}:{seq}"
        assert {"key": "ai_audit.pipeline", "value": {"stringValue": "audit"}} in \
            span["resource"]["attributes"]
    public_key = f"{process.store}.pub.pem"
    _, from_store = verify(str(process.store), "--public-key", public_key)
    code, report = verify("--otlp-export", str(route.archived), "--public-key", public_key)
    assert code == 0 and report["ok"], report["findings"]
    assert report["chain_summaries"] == from_store["chain_summaries"]
    assert report["records"] == 10_001
    # The gateway's audit processor checked the trail in flight and found it intact.
    assert "audit finding" not in route.gateway.log_tail(100_000)


@pytest.mark.slow
def test_collectors_killed_and_down_mid_stream_lose_nothing(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    route = Route(tmp_path_factory.mktemp("restart")).start()
    signing = SigningKey.generate()
    signing.save(tmp_path / "key.pem", tmp_path / "key.pub.pem")
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), signing, checkpoint_every=500, checkpoint_interval=1.0)
    shipper = Shipper(str(store), OtlpSink.connect(route.audit_endpoint, timeout=2.0),
                      batch_size=500, poll_interval=0.05, max_backoff=1.0)
    shipper.start()
    stop = threading.Event()

    def decide() -> None:
        i = 0
        while not stop.is_set():
            writer.submit(inference_event(i))
            i += 1
            if i % 200 == 0:
                time.sleep(0.05)

    producer = threading.Thread(target=decide)
    try:
        producer.start()
        time.sleep(2)
        route.gateway.kill()  # a crash: what it acknowledged is only in its queue on disk
        time.sleep(2)
        route.gateway.start()
        time.sleep(2)
        route.archive.stop()  # the backend down: the gateway's queue holds and retries
        time.sleep(2)
        route.archive.start()
        time.sleep(1)
        stop.set()
        producer.join()
        assert writer.close()
        assert shipper.close(timeout=120)
        assert shipper.stats.failed_attempts > 0  # the gateway was down for a while
        with AuditStore(store, create=False, readonly=True) as audit:
            (chain,) = audit.chain_ids()
            total = sum(1 for _ in audit.records(chain))
        arrived = route.wait_for(total)
        assert set(arrived) == set(range(total))
        code, report = verify("--otlp-export", str(route.archived),
                              "--public-key", str(tmp_path / "key.pub.pem"))
        assert code == 0 and report["ok"], report["findings"]
        assert report["records"] == total and report["chain_summaries"][0]["closed"]
    finally:
        stop.set()
        route.stop()


def test_http_protobuf_and_settings(tmp_path: Path, route: Route) -> None:
    settings = AuditSettings.from_env({
        "OTEL_AI_AUDIT_OTLP_ENDPOINT": route.archive.otlp_http_endpoint,
        "OTEL_AI_AUDIT_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_AI_AUDIT_OTLP_HEADERS": "x-audit-tenant=bank-7"})
    (sink,) = configured_sinks(settings)
    assert isinstance(sink, OtlpSink) and sink.name.endswith("/v1/traces")
    signing = SigningKey.generate()
    signing.save(tmp_path / "key.pem", tmp_path / "key.pub.pem")
    write_store(tmp_path / "audit.db", signing, 20)
    shipper = Shipper(str(tmp_path / "audit.db"), sink)
    assert shipper.drain(timeout=60)
    shipper.close()
    (chain,) = chain_ids(tmp_path / "audit.db")
    assert wait_until(lambda: {int(s["ai_audit.chain.seq"]) for s in route.record_spans()
                               if s["elasticsearch.document_id"].startswith(chain)}
                      == set(range(21)), 60)


def test_spans_tampered_or_lost_after_the_collector_are_found_as_in_the_store(
        tmp_path: Path, route: Route) -> None:
    signing = SigningKey.generate()
    signing.save(tmp_path / "key.pem", tmp_path / "key.pub.pem")
    store = tmp_path / "audit.db"
    write_store(store, signing, 20)
    shipper = Shipper(str(store), OtlpSink.connect(route.audit_endpoint))
    assert shipper.drain(timeout=60)
    shipper.close()
    (chain,) = chain_ids(store)
    assert wait_until(lambda: {int(s["ai_audit.chain.seq"]) for s in route.record_spans()
                               if s["ai_audit.chain.id"] == chain} == set(range(21)), 60)
    time.sleep(0.5)  # the checkpoints follow their records
    lines = []
    for line in route.archived.read_text().splitlines():
        document = json.loads(line)
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                kept = []
                for span in scope["spans"]:
                    values = {a["key"]: a["value"] for a in span["attributes"]}
                    if values.get("ai_audit.chain.id", {}).get("stringValue") not in (None,
                                                                                      chain):
                        continue  # only this test's chain (and the keys)
                    seq = values.get("ai_audit.chain.seq", {}).get("intValue")
                    if values["ai_audit.kind"] == {"stringValue": "record"} and seq == "12":
                        continue  # lost
                    if values["ai_audit.kind"] == {"stringValue": "record"} and seq == "7":
                        record = values["ai_audit.record"]
                        record["stringValue"] = edit_event(record["stringValue"].encode(),
                                                           output={"score": 0.99}).decode()
                    kept.append(span)
                scope["spans"] = kept
        lines.append(json.dumps(document))
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")
    public_key = str(tmp_path / "key.pub.pem")
    code, report = verify("--otlp-export", str(export), "--public-key", public_key)
    set_data(store, chain, 7, edit_event(rows(store, chain)[7]["data"], output={"score": 0.99}))
    tamper(store, "DELETE FROM records WHERE seq = 12")
    _, expected = verify(str(store), "--public-key", public_key)
    found = {(f["chain_id"], f["seq"], f["kind"]) for f in report["findings"]}
    assert code == 1 and found == {(f["chain_id"], f["seq"], f["kind"])
                                   for f in expected["findings"]}
    assert {(chain, 7), (chain, 12)} <= {(c, s) for c, s, _ in found}


def test_a_down_collector_is_retried_not_skipped(tmp_path: Path) -> None:
    signing = SigningKey.generate()
    write_store(tmp_path / "audit.db", signing, 4)
    (port,) = distinct_free_ports(1)
    shipper = Shipper(str(tmp_path / "audit.db"),
                      OtlpSink.connect(f"http://127.0.0.1:{port}", timeout=0.5),
                      max_backoff=0.2)
    assert not shipper.drain(timeout=2)
    shipper.close()
    assert shipper.stats.failed_attempts > 0 and shipper.stats.shipped_records == 0
    assert shipper.stats.rejected == 0


# --- the shipped gateway and backends configs -----------------------------------------------


def audit_queues_are_persistent(config: dict[str, Any], exporters: list[str]) -> None:
    for name in exporters:
        queue = config["exporters"][name]["sending_queue"]
        assert queue["enabled"] and queue["block_on_overflow"]
        assert queue["storage"] in config["service"]["extensions"]
        assert queue["storage"].startswith("file_storage")
        assert config["extensions"][queue["storage"]]["fsync"] is True


def test_gateway_verifies_audit_spans_on_their_own_lossless_pipeline() -> None:
    """The gateway (our build) checks the trail with the audit processor and queues it on disk
    for the backends Collector (the contrib image), which queues it again for each backend."""
    config = yaml.safe_load(GATEWAY.read_text())
    pipelines = config["service"]["pipelines"]
    audit = pipelines["traces/audit"]
    # No batch (acks early), no sampling; the processor keeps its chain state on disk.
    assert audit["processors"] == ["memory_limiter", "audit"]
    assert config["processors"]["audit"]["storage"] in config["service"]["extensions"]
    assert audit["exporters"] == ["otlp_grpc/audit"]
    assert not set(audit["receivers"]) & set(pipelines["traces"]["receivers"])
    audit_queues_are_persistent(config, audit["exporters"])
    assert config["exporters"]["otlp_grpc/audit"]["retry_on_failure"]["max_elapsed_time"] == 0
    assert config["exporters"]["otlp_grpc/audit"]["endpoint"].endswith(":4319}")

    backends = yaml.safe_load(BACKENDS.read_text())
    pipelines = backends["service"]["pipelines"]
    audit = pipelines["traces/audit"]
    assert audit["processors"] == ["memory_limiter"]
    assert set(audit["exporters"]) == {"elasticsearch/audit", "splunk_hec/audit"}
    assert backends["receivers"]["otlp/audit"]["protocols"]["grpc"]["endpoint"].endswith(":4319")
    assert not set(audit["receivers"]) & set(pipelines["traces"]["receivers"])
    audit_queues_are_persistent(backends, audit["exporters"])
    elasticsearch = backends["exporters"]["elasticsearch/audit"]
    assert elasticsearch["traces_dynamic_id"]["enabled"] is True
    assert elasticsearch["mapping"]["mode"] == "otel"
    assert backends["exporters"]["splunk_hec/audit"]["retry_on_failure"]["max_elapsed_time"] == 0
    assert backends["exporters"]["splunk_hec/audit"]["sourcetype"] == "otel_ai_audit:span"
    # The test variant has the same structure.
    variant = yaml.safe_load(TEST_GATEWAY.read_text())
    assert variant["service"]["pipelines"]["traces/audit"]["processors"] == ["memory_limiter"]
    assert variant["exporters"]["otlp/audit"]["sending_queue"]["storage"] == "file_storage/audit"


def validate(config: dict[str, Any], path: Path) -> None:
    """`otelcol validate` with the real otelcol-ai-audit binary, file_storage under `path`."""
    for name, extension in config["extensions"].items():
        if name.startswith("file_storage"):
            extension["directory"] = str(path.parent / name.replace("/", "_"))
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(collector_binary()), "validate", f"--config=file:{path}"], capture_output=True,
        text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_gateway_config_validates_with_the_real_collector(tmp_path: Path) -> None:
    """The gateway runs on our build: `otelcol validate` on it as shipped (default environment)."""
    validate(yaml.safe_load(GATEWAY.read_text()), tmp_path / "gateway.yaml")


def test_backends_config_validates_with_the_real_collector(tmp_path: Path) -> None:
    """`otelcol validate` on the shipped backends Collector, each exporter our build lacks
    swapped for an otlp exporter that keeps its sending_queue and retry_on_failure (everything
    else as shipped), so the queue settings are checked by the real Collector too."""
    config = yaml.safe_load(BACKENDS.read_text())
    renamed = {}
    for name in ("elasticsearch/audit", "splunk_hec/audit", "elasticsearch/traces"):
        original = config["exporters"].pop(name)
        renamed[name] = f"otlp/{name.replace('/', '_')}"
        config["exporters"][renamed[name]] = {
            "endpoint": "127.0.0.1:4317", "tls": {"insecure": True},
            **{key: original[key] for key in ("sending_queue", "retry_on_failure")
               if key in original}}
    for pipeline in config["service"]["pipelines"].values():
        pipeline["exporters"] = [renamed.get(name, name) for name in pipeline["exporters"]]
    validate(config, tmp_path / "backends.yaml")
