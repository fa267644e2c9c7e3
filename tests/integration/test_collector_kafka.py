"""The Collector's Kafka path with the real otelcol-ai-audit binary and a real Kafka broker.

An instrumented scikit-learn model ships its trail by OTLP to a gateway running
collector_config/otelcol-kafka-gateway.yaml (the `audit` processor verifying in flight, the
contrib Kafka exporter producing OTLP protobuf), and an archive Collector running
otelcol-kafka-archive.yaml consumes the topic into a file that `otel-ai-audit verify
--otlp-export` reads.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.cli import main
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper
from tests.audit_fixtures import chain_ids, inference_event, key_beside, rows
from tests.collector_fixtures import CollectorPair, archived_spans
from tests.fleet_fixtures import (
    PROCESSES,
    RECORDS,
    public_keys,
    replica_folders,
    run_replicas,
)
from tests.instrumentation_fixtures import instrumented
from tests.services.base import REPO_ROOT, wait_until
from tests.services.collector import CollectorService, distinct_free_ports
from tests.services.kafka import KafkaService

GATEWAY = REPO_ROOT / "collector_config" / "otelcol-kafka-gateway.yaml"
ARCHIVE = REPO_ROOT / "collector_config" / "otelcol-kafka-archive.yaml"
NO_METRICS_ENDPOINT = {"service": {"telemetry": {"metrics": {"level": "none"}}}}
"""Both Collectors would otherwise serve their metrics on the same port (8888)."""


class KafkaRoute(CollectorPair):
    """The shipped Kafka gateway and archive configs, on free ports and a topic of their own."""

    def __init__(self, workdir: Path, kafka: KafkaService, topic: str,
                 trusted_keys: Sequence[Path]) -> None:
        (port,) = distinct_free_ports(1)
        self.audit_endpoint = f"http://127.0.0.1:{port}"
        self.archived = workdir / "archive" / "audit-spans.jsonl"
        brokers = {"KAFKA_BROKERS": kafka.bootstrap_servers, "KAFKA_AUDIT_TOPIC": topic}
        self.archive = CollectorService(
            workdir / "archive", config_file=ARCHIVE, extra_config=NO_METRICS_ENDPOINT,
            environment={**brokers, "KAFKA_GROUP_ID": f"{topic}.archive",
                         "ARCHIVE_PATH": str(self.archived)})
        self.gateway = CollectorService(
            workdir / "gateway", config_file=GATEWAY, extra_config=NO_METRICS_ENDPOINT,
            environment={**brokers, "AUDIT_GRPC_ENDPOINT": f"127.0.0.1:{port}",
                         "AUDIT_TRUSTED_KEYS": json.dumps([str(key) for key in trusted_keys]),
                         "OTELCOL_STATE_DIR": str(workdir / "gateway")})

    def record_spans(self) -> list[dict[str, Any]]:
        """Attributes of every record span in the archive, repeats included."""
        return [attributes for _, attributes in archived_spans(self.archived)
                if attributes.get("ai_audit.kind") == "record"]

    def verified(self, public_keys: Sequence[Path], timeout: float = 30) -> dict[str, Any]:
        """`verify --otlp-export` on the archive once it passes with every chain closed (the
        closing checkpoint follows the last record), or its last report after `timeout`."""
        report: dict[str, Any] = {}
        keys = [argument for key in public_keys for argument in ("--public-key", str(key))]

        def closed() -> bool:
            nonlocal report
            result = CliRunner().invoke(main, ["verify", "--otlp-export", str(self.archived),
                                               *keys, "--json"])
            if result.exit_code not in (0, 1):
                return False  # e.g. a line the file exporter is still writing
            report = json.loads(result.stdout)
            return result.exit_code == 0 and all(summary["closed"]
                                                 for summary in report["chain_summaries"])

        wait_until(closed, timeout)
        return report


def create_topic(kafka: KafkaService, topic: str, partitions: int) -> None:
    """The broker creates no topic on first use (as in production): make the gateway's."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=60)


def test_audit_records_through_kafka_arrive_once_each_and_verify(
        tmp_path: Path, kafka: KafkaService) -> None:
    topic = f"otel-ai-audit-{uuid.uuid4().hex[:8]}.otlp-spans"
    create_topic(kafka, topic, partitions=3)
    store = tmp_path / "app" / "audit.db"
    store.parent.mkdir()
    key_beside(store)  # the app's signing key, made first so the gateway can trust it
    public_key = Path(f"{store}.pub.pem")
    rng = np.random.default_rng(14)
    features = rng.normal(size=(1000, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))

    with KafkaRoute(tmp_path / "route", kafka, topic, [public_key]) as route:
        with instrumented(store.parent, SklearnInstrumentor,
                          otlp_endpoint=route.audit_endpoint) as process:
            for _ in range(3):
                model.predict(features)
            process.close()
        (chain,) = chain_ids(store)
        stored = {row["seq"]: row["data"] for row in rows(store, chain)}
        seen: Counter[int] = Counter()

        def all_arrived() -> bool:
            nonlocal seen
            seen = Counter(int(span["ai_audit.chain.seq"]) for span in route.record_spans())
            return set(seen) == set(stored)

        assert wait_until(all_arrived, 120), (len(seen), route.gateway.log_tail(),
                                              route.archive.log_tail())
        report = route.verified([public_key])
        gateway_log = route.gateway.log_tail(2000)

    assert report["ok"] and report["chain_summaries"][0]["closed"], report["findings"]
    assert len(stored) == report["records"] == 3001
    assert seen == Counter(list(stored))  # each exactly once
    for span in route.record_spans():
        assert span["ai_audit.record"].encode() == stored[int(span["ai_audit.chain.seq"])]
    assert "audit finding" not in gateway_log  # the processor found the trail intact in flight


def test_a_killed_gateway_and_a_broker_outage_lose_nothing(
        tmp_path: Path, kafka: KafkaService) -> None:
    """The gateway SIGKILLed mid-stream (what it acknowledged is only in its queue on disk),
    then the broker SIGKILLed and down for 3 s: every record still reaches the archive once
    the broker is back, and verifies."""
    topic = f"otel-ai-audit-{uuid.uuid4().hex[:8]}.otlp-spans"
    create_topic(kafka, topic, partitions=3)
    signing = SigningKey.generate()
    signing.save(tmp_path / "key.pem", tmp_path / "key.pub.pem")
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), signing, checkpoint_every=500, checkpoint_interval=1.0)

    def decide() -> None:
        """5,000 decisions at about 1,000 a second, across both faults."""
        for i in range(5000):
            writer.submit(inference_event(i))
            if i % 100 == 99:
                time.sleep(0.1)

    with KafkaRoute(tmp_path / "route", kafka, topic, [tmp_path / "key.pub.pem"]) as route:
        shipper = Shipper(str(store), OtlpSink.connect(route.audit_endpoint, timeout=2.0),
                          batch_size=500, poll_interval=0.05, max_backoff=1.0)
        shipper.start()
        producer = threading.Thread(target=decide)
        producer.start()
        time.sleep(1)
        route.gateway.kill()
        shipped_before_the_kill = shipper.stats.shipped_records
        time.sleep(1)
        route.gateway.start()
        time.sleep(1)
        kafka.kill()
        time.sleep(3)
        kafka.start()
        producer.join()
        assert writer.close()
        assert shipper.close(timeout=120)
        (chain,) = chain_ids(store)
        total = len(rows(store, chain))
        assert wait_until(lambda: {int(span["ai_audit.chain.seq"])
                                   for span in route.record_spans()} == set(range(total)),
                          120), route.gateway.log_tail()
        report = route.verified([tmp_path / "key.pub.pem"])

    # Mid-stream: the OTLP exporter's own retries may hide the outage from the shipper.
    assert 0 < shipped_before_the_kill < total
    assert report["ok"], report["findings"]
    assert report["records"] == total == 5001 and report["chain_summaries"][0]["closed"]


@pytest.mark.slow
def test_a_fleet_through_one_gateway_arrives_once_each_and_verifies(
        tmp_path: Path, kafka: KafkaService) -> None:
    """8 processes × 10,000 decisions (tests/fleet_fixtures.py), each shipping its trail by
    OTLP (`OTEL_AI_AUDIT_OTLP_ENDPOINT`) to one gateway, which checks the 8 chains in flight
    with the 8 public keys: every record of every chain reaches the archive exactly once, with
    its stored bytes, and the archive verifies.

    With `-s` it prints the fleet's seconds (decide, store and ship to the gateway) and how
    long after it the archive had everything."""
    topic = f"otel-ai-audit-{uuid.uuid4().hex[:8]}.otlp-spans"
    create_topic(kafka, topic, partitions=6)
    folders = replica_folders(tmp_path)
    keys = public_keys(folders)
    with KafkaRoute(tmp_path / "route", kafka, topic, keys) as route:
        started = time.monotonic()
        run_replicas(folders, {"OTEL_AI_AUDIT_OTLP_ENDPOINT": route.audit_endpoint})
        fleet_seconds = time.monotonic() - started
        seen: Counter[tuple[str, int]] = Counter()

        def all_arrived() -> bool:
            nonlocal seen
            seen = Counter((span["ai_audit.chain.id"], int(span["ai_audit.chain.seq"]))
                           for span in route.record_spans())
            return len(seen) >= RECORDS

        assert wait_until(all_arrived, 300, interval=5), (len(seen), route.gateway.log_tail(),
                                                          route.archive.log_tail())
        lag_seconds = time.monotonic() - started - fleet_seconds
        report = route.verified(keys, timeout=120)
        gateway_log = route.gateway.log_tail(2000)

    stores = [folder / "audit.db" for folder in folders]
    stored = {(chain, row["seq"]): row["data"]
              for store in stores for chain in chain_ids(store) for row in rows(store, chain)}
    assert len(stored) == report["records"] == RECORDS and report["chains"] == PROCESSES
    assert report["ok"] and all(summary["closed"] for summary in report["chain_summaries"]), (
        report["findings"])
    assert seen == Counter(list(stored))  # each exactly once
    for span in route.record_spans():
        key = (span["ai_audit.chain.id"], int(span["ai_audit.chain.seq"]))
        assert span["ai_audit.record"].encode() == stored[key]
    assert "audit finding" not in gateway_log
    print(f"\nfleet through the Collector: {RECORDS} records from {PROCESSES} processes to the "
          f"gateway in {fleet_seconds:.1f} s ({RECORDS / fleet_seconds:.0f} rec/s), all in the "
          f"archive {lag_seconds:.1f} s later")
