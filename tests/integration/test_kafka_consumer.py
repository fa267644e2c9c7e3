"""From Kafka onwards: `otel-ai-audit ship --from-kafka` indexing the topics into a real
Elasticsearch node, as a consumer group that commits only what was delivered.

Stores are written by the real `AuditWriter` and shipped to the real broker with `ship
--kafka`; the consumer runs as the command (in process, or as a subprocess to be signalled and
killed); Elasticsearch is checked by document counts and by `verify --elasticsearch`, which
must find the trail intact, with the store's chain summaries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch

from otel_ai_audit.backends.elasticsearch.layout import index_names
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import KafkaSettings
from otel_ai_audit.backends.kafka.consumer import KafkaForwarder
from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from tests.audit_fixtures import inference_event
from tests.services.base import free_port, wait_until
from tests.services.elasticsearch import ElasticsearchService
from tests.services.kafka import KafkaService

DECISIONS = 3_000
"""Decisions in the killed consumer's store: at 250 messages a batch, a dozen batches."""


def run(*arguments: str) -> Any:
    return CliRunner().invoke(main, list(arguments))


def write(path: Path, key: SigningKey, decisions: int) -> int:
    """A closed store of `decisions` (one chain); its record count."""
    writer = AuditWriter(str(path), key, checkpoint_every=500, checkpoint_interval=3600.0)
    for i in range(decisions):
        writer.submit(inference_event(i))
    assert writer.close()
    return decisions + 1


def to_kafka(store: Path, kafka: KafkaService, prefix: str) -> None:
    result = run("ship", str(store), "--once", "--kafka", kafka.bootstrap_servers,
                 "--topic-prefix", prefix, "--kafka-create-topics")
    assert result.exit_code == 0, result.output


def from_kafka(kafka: KafkaService, prefix: str, group: str, url: str,
               *flags: str) -> list[str]:
    return ["ship", "--from-kafka", kafka.bootstrap_servers, "--topic-prefix", prefix,
            "--group", group, "--elasticsearch", url, "--index-prefix", prefix, *flags]


def indexed(url: str, prefix: str) -> int:
    """Record documents in the records data stream (refreshed first)."""
    client = Elasticsearch(url)
    records = index_names(prefix)[0]
    try:
        client.indices.refresh(index=records)
        return int(client.count(index=records)["count"])
    finally:
        client.close()


def committed(kafka: KafkaService, group: str, prefix: str) -> int:
    """The group's committed offset on the records topic (one partition), 0 if none (asked
    until the group coordinator answers: a fresh broker creates it on first use)."""
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    offsets: list[int] = []

    def ask() -> bool:
        (position,) = consumer.committed(
            [TopicPartition(layout.topic(prefix, layout.RECORDS), 0)], timeout=10)
        offsets.append(max(position.offset, 0))
        return True

    try:
        assert wait_until(ask, timeout=60), "the group coordinator did not answer"
        return offsets[-1]
    finally:
        consumer.close()


def verify_es(url: str, prefix: str, public_key: Path) -> dict[str, Any]:
    result = run("verify", "--elasticsearch", url, "--index-prefix", prefix, "--public-key",
                 str(public_key), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def verify_store(store: Path, public_key: Path) -> dict[str, Any]:
    result = run("verify", str(store), "--public-key", str(public_key), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_records_shipped_through_kafka_arrive_once_and_verify_from_elasticsearch(
        tmp_path: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        elasticsearch: ElasticsearchService) -> None:
    prefix, group = f"audit-{uuid.uuid4().hex[:12]}", f"group-{uuid.uuid4().hex[:8]}"
    store = tmp_path / "audit.db"
    records = write(store, key[0], 1_500)
    to_kafka(store, kafka, prefix)
    result = run(*from_kafka(kafka, prefix, group, elasticsearch.url, "--once"))
    assert result.exit_code == 0, result.output
    assert f"shipped {records} record(s), 4 checkpoint(s) and 1 key(s)" in result.stdout
    assert indexed(elasticsearch.url, prefix) == records
    assert committed(kafka, group, prefix) == records
    report = verify_es(elasticsearch.url, prefix, key[1])
    assert report["chain_summaries"] == verify_store(store, key[1])["chain_summaries"]
    # The group's offsets are committed: a second run has nothing left to ship.
    again = run(*from_kafka(kafka, prefix, group, elasticsearch.url, "--once"))
    assert again.exit_code == 0 and "shipped 0 record(s)" in again.stdout, again.output


def test_a_consumer_stopped_then_killed_mid_batch_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        elasticsearch: ElasticsearchService) -> None:
    """SIGTERM: the consumer commits what it delivered and exits 0. SIGKILL while it indexes:
    what it delivered but did not commit is read again by the next run, whose repeats are
    no-ops by document id: Elasticsearch ends with each record once."""
    prefix, group = f"audit-{uuid.uuid4().hex[:12]}", f"group-{uuid.uuid4().hex[:8]}"
    store = tmp_path / "audit.db"
    records = write(store, key[0], DECISIONS)
    to_kafka(store, kafka, prefix)
    command = [str(Path(sys.executable).parent / "otel-ai-audit"),
               *from_kafka(kafka, prefix, group, elasticsearch.url)]
    # A killed member's partitions wait out the session timeout before the next run gets them.
    environment = {**os.environ, "OTEL_AI_AUDIT_KAFKA_BATCH_SIZE": "250",
                   "OTEL_AI_AUDIT_KAFKA_SESSION_TIMEOUT": "6"}

    def consumer_indexing() -> subprocess.Popen[str]:
        before = indexed(elasticsearch.url, prefix) if committed(kafka, group, prefix) else 0
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert wait_until(lambda: indexed(elasticsearch.url, prefix) > before, timeout=60,
                          interval=0.05)
        return process

    stopped = consumer_indexing()
    stopped.send_signal(signal.SIGTERM)
    out, err = stopped.communicate(timeout=60)
    assert stopped.returncode == 0, err
    shipped = int(out.split("shipped ")[1].split(" record")[0])
    assert 0 < shipped < records and committed(kafka, group, prefix) == shipped

    killed = consumer_indexing()
    killed.kill()
    killed.wait(timeout=30)
    left = committed(kafka, group, prefix)
    assert shipped <= left < records  # stopped mid-stream

    finished = subprocess.run([*command, "--once", "--timeout", "120"], env=environment,
                              capture_output=True, text=True, timeout=180, check=False)
    assert finished.returncode == 0, finished.stderr
    assert indexed(elasticsearch.url, prefix) == records  # none lost, none twice
    assert committed(kafka, group, prefix) == records
    report = verify_es(elasticsearch.url, prefix, key[1])
    assert report["records"] == records


def test_a_destination_down_holds_the_offsets_until_it_is_back(
        tmp_path: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        elasticsearch: ElasticsearchService) -> None:
    """Elasticsearch unreachable: the consumer retries the batch in hand and commits nothing;
    the group's next consumer, with Elasticsearch back, delivers everything."""
    prefix, group = f"audit-{uuid.uuid4().hex[:12]}", f"group-{uuid.uuid4().hex[:8]}"
    store = tmp_path / "audit.db"
    records = write(store, key[0], 200)
    to_kafka(store, kafka, prefix)
    settings = KafkaSettings(kafka.bootstrap_servers, prefix, group=group)
    down = KafkaForwarder(settings, [ElasticsearchSink(
        Elasticsearch(f"http://127.0.0.1:{free_port()}", request_timeout=2))], max_backoff=0.5)
    down.install()
    worker = threading.Thread(target=down.run)
    worker.start()
    try:
        assert wait_until(lambda: down.stats.failed_attempts >= 3, timeout=60)
    finally:
        down.stop.set()
        worker.join(30)
        down.close()
    assert down.stats.records == 0 and committed(kafka, group, prefix) == 0
    up = KafkaForwarder(settings, [ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                     index_prefix=prefix)])
    up.install()
    try:
        assert up.run(once=True, timeout=120)
    finally:
        up.close()
    assert up.stats.records == records and indexed(elasticsearch.url, prefix) == records
    assert verify_es(elasticsearch.url, prefix, key[1])["records"] == records


def test_bad_sources_are_one_line(kafka: KafkaService,
                                  elasticsearch: ElasticsearchService) -> None:
    unknown = f"127.0.0.1:{free_port()}"
    for bootstrap, expected in ((unknown, f"cannot connect to Kafka at {unknown}"),
                                (kafka.bootstrap_servers, "has no topic nothing-here.records")):
        result = run("ship", "--from-kafka", bootstrap, "--topic-prefix", "nothing-here",
                     "--elasticsearch", elasticsearch.url, "--index-prefix", "nothing-here",
                     "--once")
        assert result.exit_code == 2
        (line,) = result.stderr.splitlines()
        assert expected in line, line
    nowhere = run("ship", "--from-kafka", kafka.bootstrap_servers)
    assert nowhere.exit_code == 2 and "nowhere to ship from Kafka" in nowhere.stderr
    both = run("ship", "--from-kafka", kafka.bootstrap_servers, "--kafka", unknown)
    assert both.exit_code == 2 and "--from-kafka and --kafka" in both.stderr
