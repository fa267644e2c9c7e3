"""A fleet through Kafka into Elasticsearch: 8 model-server processes × 10,000 decisions of a
real instrumented scikit-learn model, each shipping its own store to Kafka from its `Shipper`
thread while it decides, and two `otel-ai-audit ship --from-kafka` consumers of one group
indexing the topics into Elasticsearch meanwhile. Every record arrives exactly once (in the
topic: each chain in one partition, in order; in Elasticsearch: one document each) and the
whole trail verifies from the topics and from Elasticsearch.

The broker is the one-node `tests.services.kafka` service; the topics are created here with 6
partitions (as docs/kafka.md shows), so 8 chains share partitions by key and the two consumers
share the partitions. Each process signs with its own key, as replicas with their own secrets
would.

With `-s` it prints what docs/scale.md sizes with: the fleet's records/s into Kafka (decide,
seal, store and ship, all 8 processes on this machine), how long after the last process the
consumers had everything in Elasticsearch, verification records/s from the topics and from
Elasticsearch, and bytes per record in the records topic's log segments and in the stores.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from elasticsearch import Elasticsearch

from otel_ai_audit.backends.elasticsearch.layout import index_names
from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import KafkaSettings
from otel_ai_audit.backends.kafka.source import read_topic
from tests.fleet_fixtures import (
    DECISIONS,
    PROCESSES,
    RECORDS,
    launch,
    public_key_arguments,
    replica_folders,
    run_replicas,
    succeeded,
)
from tests.services.base import wait_until
from tests.services.elasticsearch import ElasticsearchService
from tests.services.kafka import KafkaService

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PARTITIONS = 6
CONSUMERS = 2


def create_topics(kafka: KafkaService, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1)
                                   for name in layout.topics(prefix)])
    for future in futures.values():
        future.result(timeout=60)


@contextmanager
def consumers(kafka: KafkaService, prefix: str, url: str, folder: Path,
              ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`CONSUMERS` members of one group indexing the topics into Elasticsearch until the
    block ends; then SIGTERM, and each must exit 0 (everything it consumed committed)."""
    command = [str(BIN / "otel-ai-audit"), "ship", "--from-kafka", kafka.bootstrap_servers,
               "--topic-prefix", prefix, "--group", f"{prefix}-indexers",
               "--elasticsearch", url, "--index-prefix", prefix]
    logs = [folder / f"consumer{index}.log" for index in range(CONSUMERS)]
    started = [launch(command, log) for log in logs]
    try:
        yield started
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process, log in zip(started, logs, strict=True):
            succeeded(process, log, timeout=120)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()


def assert_each_chain_once_in_one_partition_in_order(kafka: KafkaService, prefix: str) -> None:
    consumer = Consumer(KafkaSettings(kafka.bootstrap_servers).consumer())
    try:
        messages = read_topic(consumer, layout.topic(prefix, layout.RECORDS),
                              kafka.bootstrap_servers)
    finally:
        consumer.close()
    by_chain: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for message in messages:
        chain = layout.header_text(message.headers(), "chain.id") or ""
        assert message.key() == chain.encode()
        seq = int(layout.header_text(message.headers(), "chain.seq") or -1)
        by_chain[chain].append((message.partition(), seq))
    assert len(by_chain) == PROCESSES
    for chain, placed in by_chain.items():
        assert len({partition for partition, _ in placed}) == 1, f"{chain} spans partitions"
        # In offset order: the chain is in order and each record is there once.
        assert [seq for _, seq in placed] == list(range(DECISIONS + 1)), chain
    assert len({placed[0][0] for placed in by_chain.values()}) > 1  # spread over partitions


def verify(*arguments: str) -> tuple[dict[str, Any], float]:
    """`otel-ai-audit verify ... --json`: its report (it must pass) and its seconds."""
    started = time.monotonic()
    verified = subprocess.run([str(BIN / "otel-ai-audit"), "verify", *arguments, "--json"],
                              capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"], report["findings"]
    assert report["records"] == RECORDS and report["chains"] == PROCESSES
    assert all(summary["closed"] for summary in report["chain_summaries"])
    return report, seconds


def test_eight_processes_80_thousand_decisions_through_kafka_into_elasticsearch_once_each(
        tmp_path: Path, kafka: KafkaService, elasticsearch: ElasticsearchService) -> None:
    prefix = f"fleet-{uuid.uuid4().hex[:12]}"
    create_topics(kafka, prefix)
    client = Elasticsearch(elasticsearch.url)
    records_index = index_names(prefix)[0]

    def indexed() -> int:
        client.indices.refresh(index=records_index)
        return int(client.count(index=records_index)["count"])

    with consumers(kafka, prefix, elasticsearch.url, tmp_path) as running:
        folders = replica_folders(tmp_path)
        started = time.monotonic()
        run_replicas(folders, {"OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                               "OTEL_AI_AUDIT_KAFKA_TOPIC_PREFIX": prefix})
        fleet_seconds = time.monotonic() - started

        def done() -> bool:
            if any(process.poll() is not None for process in running):
                return True  # a consumer gave up: its exit is checked below
            return indexed() >= RECORDS

        assert wait_until(done, timeout=600, interval=1.0)
        lag_seconds = time.monotonic() - started - fleet_seconds
    assert indexed() == RECORDS  # one document each
    assert_each_chain_once_in_one_partition_in_order(kafka, prefix)
    _, topic_seconds = verify("--kafka", kafka.bootstrap_servers, "--topic-prefix", prefix,
                              *public_key_arguments(folders))
    _, es_seconds = verify("--elasticsearch", elasticsearch.url, "--index-prefix", prefix,
                           *public_key_arguments(folders))

    in_topic = sum(segment.stat().st_size
                   for segment in (kafka.workdir / "data").glob(f"{prefix}.records-*/*.log"))
    in_stores = sum((tmp_path / f"replica{replica}" / "audit.db").stat().st_size
                    for replica in range(PROCESSES))
    print(f"\nfleet: {RECORDS} records from {PROCESSES} processes into Kafka in "
          f"{fleet_seconds:.1f} s ({RECORDS / fleet_seconds:.0f} rec/s), all in Elasticsearch "
          f"{lag_seconds:.1f} s later ({CONSUMERS} consumers); verify --kafka {topic_seconds:.1f} "
          f"s ({RECORDS / topic_seconds:.0f} rec/s), --elasticsearch {es_seconds:.1f} s "
          f"({RECORDS / es_seconds:.0f} rec/s); {in_topic / RECORDS:.0f} bytes/record in the "
          f"records topic, {in_stores / RECORDS:.0f} in the stores")
