"""Shipping to Apache Kafka and verifying the trail from its topics, against a real broker.

The broker is `tests.services.kafka` (Kafka 4.4 in KRaft mode, one node, automatic topic
creation off, as production clusters usually run). Each test writes under its own topic prefix.
Stores are written by the real `AuditWriter` and shipped by the real `Shipper` (in process or
through `otel-ai-audit ship`); the topics are verified with `otel-ai-audit verify --kafka` and
compared with the store's findings as exact sets of (chain, seq, kind).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import KafkaSettings
from otel_ai_audit.backends.kafka.sink import KafkaSink
from otel_ai_audit.backends.kafka.source import read_topic
from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import DeliveryError, Shipper
from otel_ai_audit.sinks.shipper import RECORDS
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import (
    SMALL_STORE_EVENTS,
    chain_ids,
    edit_event,
    inference_event,
    rows,
    tamper,
)
from tests.services.base import free_port
from tests.services.kafka import SASL_PASSWORD, SASL_USERNAME, KafkaService

EVENTS = SMALL_STORE_EVENTS


@pytest.fixture
def prefix() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


def settings(kafka: KafkaService, prefix: str, **overrides: Any) -> KafkaSettings:
    return KafkaSettings(kafka.bootstrap_servers, prefix, **overrides)


def run(*arguments: str) -> Any:
    return CliRunner().invoke(main, list(arguments))


def verify(kafka: KafkaService, prefix: str, public_key: Path) -> tuple[int, dict[str, Any]]:
    result = run("verify", "--kafka", kafka.bootstrap_servers, "--topic-prefix", prefix,
                 "--public-key", str(public_key), "--json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def verify_store(store: Path, public_key: Path) -> dict[str, Any]:
    result = run("verify", str(store), "--public-key", str(public_key), "--json")
    assert result.exit_code in (0, 1), result.output
    return dict(json.loads(result.stdout))


def located(report: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(f["chain_id"], f["seq"], f["kind"]) for f in report["findings"]}


def messages(kafka: KafkaService, topic: str) -> list[Any]:
    consumer = Consumer(KafkaSettings(kafka.bootstrap_servers).consumer())
    try:
        return read_topic(consumer, topic, kafka.bootstrap_servers)
    finally:
        consumer.close()


def produce(kafka: KafkaService, topic: str, items: list[tuple[bytes, bytes, Any]]) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all"})
    for message_key, value, headers in items:
        producer.produce(topic, value, message_key, headers=headers)
    assert producer.flush(30) == 0


def ship_once(store: Path, kafka: KafkaService, prefix: str, *flags: str) -> Any:
    return run("ship", str(store), "--once", "--timeout", "30", "--kafka",
               kafka.bootstrap_servers, "--topic-prefix", prefix, *flags)


def cursor(store: Path, sink_name: str) -> int:
    with AuditStore(str(store), create=False, readonly=True) as opened:
        (chain,) = opened.chain_ids()
        return opened.ship_cursor(sink_name, chain, RECORDS)


# --- settings (no broker) ------------------------------------------------------------------


def test_settings_come_from_the_variables_with_the_flags_on_top(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_TOPIC_PREFIX", "from-env")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_SASL_USERNAME", "shipper")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD", "secret")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_CREATE_TOPICS", "TRUE")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_DELIVERY_TIMEOUT", "2.5")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_GROUP", "indexers")
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_BATCH_SIZE", "500")
    configured = KafkaSettings.from_env(topic_prefix="from-flag", ca_certs=None,
                                        compression="zstd")
    assert (configured.bootstrap_servers, configured.topic_prefix) == ("k1:9092,k2:9092",
                                                                       "from-flag")
    assert configured.create_topics and configured.delivery_timeout == 2.5
    producer = configured.producer()
    assert producer["security.protocol"] == "SASL_SSL"  # a username and no protocol: TLS
    assert producer["sasl.mechanism"] == "SCRAM-SHA-512" and producer["sasl.username"] == "shipper"
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["message.timeout.ms"] == 2500 and producer["compression.type"] == "zstd"
    consumer = configured.group_consumer()
    assert consumer["group.id"] == "indexers" and consumer["enable.auto.commit"] is False
    assert configured.batch_size == 500
    assert KafkaSettings("k:1", ca_certs="ca.pem").protocol == "SSL"
    assert KafkaSettings("k:1").protocol == "PLAINTEXT"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SECURITY_PROTOCOL", "TLS", "OTEL_AI_AUDIT_KAFKA_SECURITY_PROTOCOL is 'TLS'"),
    ("SASL_MECHANISM", "GSSAPI", "OTEL_AI_AUDIT_KAFKA_SASL_MECHANISM is 'GSSAPI'"),
    ("SASL_USERNAME", "shipper", "OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD is not"),
    ("CREATE_TOPICS", "maybe", "OTEL_AI_AUDIT_KAFKA_CREATE_TOPICS is 'maybe'"),
    ("DELIVERY_TIMEOUT", "-1", "OTEL_AI_AUDIT_KAFKA_DELIVERY_TIMEOUT is '-1'"),
    ("COMPRESSION", "brotli", "OTEL_AI_AUDIT_KAFKA_COMPRESSION is 'brotli'"),
    ("BATCH_SIZE", "lots", "OTEL_AI_AUDIT_KAFKA_BATCH_SIZE is 'lots'"),
    ("BATCH_SIZE", "0", "OTEL_AI_AUDIT_KAFKA_BATCH_SIZE is 0"),
])
def test_a_bad_setting_is_one_line_naming_its_variable(
        small_store: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
        message: str) -> None:
    monkeypatch.setenv(f"OTEL_AI_AUDIT_KAFKA_{variable}", value)
    result = run("ship", str(small_store), "--once", "--kafka", "127.0.0.1:9")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert message in line, line


# --- the whole path -------------------------------------------------------------------------


def test_a_shipped_store_arrives_once_keyed_by_chain_and_verifies_from_the_topics(
        small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    result = ship_once(small_store, kafka, prefix, "--kafka-create-topics")
    assert result.exit_code == 0, result.output
    assert f"shipped {EVENTS + 1} record(s), 6 checkpoint(s) and 1 key(s)" in result.output
    (chain,) = chain_ids(small_store)
    stored = {row["seq"]: row["data"] for row in rows(small_store, chain)}
    records = messages(kafka, layout.topic(prefix, layout.RECORDS))
    seqs = Counter(int(layout.header_text(m.headers(), "chain.seq") or -1) for m in records)
    assert seqs == Counter(list(stored))  # each exactly once
    for message in records:  # the contract consumers rely on
        seq = int(layout.header_text(message.headers(), "chain.seq") or -1)
        assert message.value() == stored[seq]
        assert message.key() == chain.encode()
        assert layout.header_text(message.headers(), "chain.id") == chain
    assert {layout.header_text(m.headers(), "event.type") for m in records[1:]} == {"inference"}
    assert len({m.partition() for m in records}) == 1  # one chain, one partition, in order
    assert [int(layout.header_text(m.headers(), "chain.seq") or -1) for m in records] == sorted(
        stored)
    # Shipping again sends nothing: the durable cursor is past everything.
    again = ship_once(small_store, kafka, prefix)
    assert again.exit_code == 0 and "shipped 0 record(s)" in again.output, again.output
    code, report = verify(kafka, prefix, key[1])
    expected = verify_store(small_store, key[1])
    assert code == 0 and report["ok"], report["findings"]
    assert report["records"] == expected["records"] == EVENTS + 1
    assert report["chain_summaries"] == expected["chain_summaries"]


def test_kafka_selected_by_its_variable_is_shipped_to_once(
        small_store: Path, kafka: KafkaService, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable turns Kafka on for `ship` as for the model's process: one destination,
    not one from the variable and another from the settings of the others."""
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_TOPIC_PREFIX", prefix)
    result = run("ship", str(small_store), "--once", "--timeout", "30",
                 "--kafka-create-topics")
    assert result.exit_code == 0, result.output
    assert result.output.count(" to kafka:") == 1, result.output
    seqs = Counter(int(layout.header_text(m.headers(), "chain.seq") or -1)
                   for m in messages(kafka, layout.topic(prefix, layout.RECORDS)))
    assert set(seqs.values()) == {1} and len(seqs) == EVENTS + 1


def test_a_message_produced_again_with_other_bytes_is_found(
        small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    assert ship_once(small_store, kafka, prefix, "--kafka-create-topics").exit_code == 0
    topic = layout.topic(prefix, layout.RECORDS)
    original = next(m for m in messages(kafka, topic)
                    if layout.header_text(m.headers(), "chain.seq") == "7")
    altered = edit_event(original.value(), output={"score": 0.99})
    produce(kafka, topic, [(original.key(), altered, original.headers())])
    code, report = verify(kafka, prefix, key[1])
    (chain,) = chain_ids(small_store)
    assert code == 1 and not report["ok"]
    assert {(c, s) for c, s, _ in located(report)} == {(chain, 7)}, report["findings"]


def test_a_topic_recreated_without_a_message_is_found_as_in_the_store(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    assert ship_once(small_store, kafka, prefix, "--kafka-create-topics").exit_code == 0
    copy_prefix = f"{prefix}-copy"
    sink = KafkaSink(settings(kafka, copy_prefix, create_topics=True))
    sink.install()
    sink.close()
    for kind in (layout.RECORDS, layout.CHECKPOINTS, layout.KEYS):
        kept = [(m.key(), m.value(), m.headers())
                for m in messages(kafka, layout.topic(prefix, kind))
                if not (kind == layout.RECORDS
                        and layout.header_text(m.headers(), "chain.seq") == "12")]
        produce(kafka, layout.topic(copy_prefix, kind), kept)
    code, report = verify(kafka, copy_prefix, key[1])
    # The same damage done to a copy of the store is found the same way.
    copy = tmp_path / "copy.db"
    shutil.copy(small_store, copy)
    tamper(copy, "DELETE FROM records WHERE seq = 12")
    expected = verify_store(copy, key[1])
    (chain,) = chain_ids(small_store)
    assert code == 1 and not report["ok"]
    assert located(report) == located(expected)
    assert (chain, 12) in {(c, s) for c, s, _ in located(report)}


# --- outages and bad configuration ----------------------------------------------------------


def test_unreachable_brokers_keep_everything_in_the_store_until_kafka_is_back(
        small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    """Brokers down (nothing listens at the address): each batch fails after the delivery
    timeout, the cursor stays; the same store then ships whole to a running broker."""
    down = KafkaSink(KafkaSettings(f"127.0.0.1:{free_port()}", prefix, delivery_timeout=1.0))
    shipper = Shipper(str(small_store), down, max_backoff=0.2)
    assert not shipper.drain(timeout=4)
    shipper.close(timeout=0)
    assert shipper.stats.failed_attempts > 0 and shipper.stats.shipped_records == 0
    assert cursor(small_store, down.name) == -1
    up = KafkaSink(settings(kafka, prefix, create_topics=True))
    up.install()
    shipper = Shipper(str(small_store), up, max_backoff=0.2)
    assert shipper.drain(timeout=60)
    shipper.close()
    assert shipper.stats.shipped_records == EVENTS + 1
    code, report = verify(kafka, prefix, key[1])
    assert code == 0, report["findings"]


def test_an_unknown_broker_is_one_line_and_loses_nothing(
        small_store: Path, kafka: KafkaService, prefix: str) -> None:
    unknown = f"127.0.0.1:{free_port()}"
    result = run("ship", str(small_store), "--once", "--kafka", unknown, "--topic-prefix", prefix)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"otel-ai-audit: error: cannot ship to kafka:{unknown}/{prefix}: "
                           f"cannot connect to Kafka at {unknown}: "), line
    assert "check OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS" in line
    assert cursor(small_store, f"kafka:{unknown}/{prefix}") == -1
    verified = run("verify", "--kafka", unknown, "--topic-prefix", prefix)
    assert verified.exit_code == 2 and len(verified.stderr.splitlines()) == 1, verified.stderr
    assert f"cannot connect to Kafka at {unknown}" in verified.stderr


def test_sasl_ships_with_the_right_password_and_refuses_a_wrong_one_in_one_line(
        small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sasl = ("--kafka", kafka.sasl_bootstrap_servers, "--topic-prefix", prefix,
            "--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-mechanism", "PLAIN",
            "--kafka-sasl-username", SASL_USERNAME)
    flags = ("ship", str(small_store), "--once", "--timeout", "30", "--kafka-create-topics",
             *sasl)
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD", "not-the-password")
    refused = run(*flags)
    assert refused.exit_code == 2
    (line,) = refused.stderr.splitlines()
    assert "Authentication failed" in line and "OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD" in line, line
    assert cursor(small_store, f"kafka:{kafka.sasl_bootstrap_servers}/{prefix}") == -1
    verified = run("verify", *sasl)
    assert verified.exit_code == 2
    (line,) = verified.stderr.splitlines()
    assert "Authentication failed" in line, line
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    shipped = run(*flags)
    assert shipped.exit_code == 0, shipped.output
    code, report = verify(kafka, prefix, key[1])
    assert code == 0 and report["records"] == EVENTS + 1, report["findings"]


def test_missing_topics_with_auto_creation_off_are_one_line_and_lose_nothing(
        small_store: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    result = ship_once(small_store, kafka, prefix)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert f"has no topic {prefix}.records, {prefix}.checkpoints" in line
    assert "--kafka-create-topics" in line
    # The shipper in an application (no install step) checks the topics on its first send:
    # refused in the same clear error, nothing delivered, the records kept.
    sink = KafkaSink(settings(kafka, prefix, delivery_timeout=5.0))
    (chain,) = chain_ids(small_store)
    with pytest.raises(DeliveryError) as refused:
        sink.send_records([AuditStore(str(small_store), create=False).records_after(
            chain, -1, 1)[0]])
    sink.close()
    assert refused.value.rejected and refused.value.failed is None  # none arrived
    assert f"{prefix}.records" in str(refused.value) and "--kafka-create-topics" in str(
        refused.value)
    assert cursor(small_store, sink.name) == -1
    created = ship_once(small_store, kafka, prefix, "--kafka-create-topics")
    assert created.exit_code == 0, created.output
    code, report = verify(kafka, prefix, key[1])
    assert code == 0 and report["records"] == EVENTS + 1, report["findings"]


def test_a_broker_restarted_mid_stream_loses_nothing_while_the_writer_goes_on(
        tmp_path: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    """The broker is stopped and started again while decisions are written (each round
    committed to the store, broker or not) and shipped in the background: every record reaches
    the topic and the trail verifies from it. A batch retried after an unknown outcome may
    repeat identical records (the verifier collapses them), so the topic is checked for loss,
    not for repeats. (Last in the file: it restarts the session's broker.)"""
    store = tmp_path / "audit.db"
    sink = KafkaSink(settings(kafka, prefix, create_topics=True, delivery_timeout=3.0))
    sink.install()
    writer = AuditWriter(str(store), key[0], checkpoint_every=100, checkpoint_interval=3600.0,
                         flush_interval=0.05)
    shipper = Shipper(str(store), sink, batch_size=50, poll_interval=0.05, max_backoff=0.5)
    shipper.start()
    decisions = 0
    for round_ in range(30):
        for _ in range(50):
            writer.submit(inference_event(decisions))
            decisions += 1
        assert writer.flush()
        if round_ == 10:
            kafka.restart(down_for=2.0)
    assert writer.close()
    assert shipper.close(timeout=120), shipper.stats
    assert shipper.stats.shipped_records == decisions + 1
    (chain,) = chain_ids(store)
    records = messages(kafka, layout.topic(prefix, layout.RECORDS))
    seqs = Counter(int(layout.header_text(m.headers(), "chain.seq") or -1) for m in records)
    assert set(seqs) == set(range(decisions + 1))
    code, report = verify(kafka, prefix, key[1])
    assert code == 0 and report["records"] == decisions + 1, report["findings"]


def test_verifying_from_a_time_reads_each_chain_from_then_with_the_same_findings(
        tmp_path: Path, key: tuple[SigningKey, Path], kafka: KafkaService,
        prefix: str) -> None:
    """A chain shipped in two rounds, a time between them: `--since` that time verifies the
    second round alone (from its first seq); messages altered afterwards are found as reading
    the whole topic finds them."""
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), key[0], checkpoint_every=100, checkpoint_interval=3600.0)
    sink = KafkaSink(settings(kafka, prefix, create_topics=True))
    sink.install()
    shipper = Shipper(str(store), sink)
    for i in range(250):
        writer.submit(inference_event(i))
    assert writer.flush() and shipper.drain(timeout=60)
    time.sleep(1.5)  # message timestamps are in ms: a clear second between the rounds
    since = datetime.now(UTC).isoformat()
    time.sleep(1.5)
    for i in range(250, 500):
        writer.submit(inference_event(i))
    assert writer.close() and shipper.drain(timeout=60)
    shipper.close()
    first = min(int(layout.header_text(m.headers(), "chain.seq") or -1)
                for m in messages(kafka, layout.topic(prefix, layout.RECORDS))
                if m.timestamp()[1] >= int(datetime.fromisoformat(since).timestamp() * 1000))
    assert first == 251
    window = run("verify", "--kafka", kafka.bootstrap_servers, "--topic-prefix", prefix,
                 "--public-key", str(key[1]), "--since", since, "--json")
    assert window.exit_code == 0, window.output
    report = json.loads(window.stdout)
    assert report["records"] == 501 - first
    assert any(f"from {first}" in notice for notice in report["notices"])
    topic = layout.topic(prefix, layout.RECORDS)
    originals = {layout.header_text(m.headers(), "chain.seq"): m for m in messages(kafka, topic)}
    produce(kafka, topic, [(m.key(), edit_event(m.value(), output={"score": 0.99}), m.headers())
                           for m in (originals["100"], originals["400"])])
    code, whole = verify(kafka, prefix, key[1])
    (chain,) = chain_ids(store)
    assert code == 1 and {(c, s) for c, s, _ in located(whole)} == {(chain, 100), (chain, 400)}
    window = run("verify", "--kafka", kafka.bootstrap_servers, "--topic-prefix", prefix,
                 "--public-key", str(key[1]), "--since", since, "--json")
    assert window.exit_code == 1, window.output
    # Both alterations were produced since then: the one claiming a seq before the window is
    # found as reading the whole topic finds it.
    assert located(json.loads(window.stdout)) == located(whole)


# --- shipping from the model's process -----------------------------------------------------


def test_an_audited_process_ships_to_kafka_when_configured(
        tmp_path: Path, kafka: KafkaService, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS` (here `configure(kafka_bootstrap_servers=)`)
    turns on a shipper in the model's own process, with the other KAFKA_* variables."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
    from tests.instrumentation_fixtures import instrumented

    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("OTEL_AI_AUDIT_KAFKA_CREATE_TOPICS", "true")
    features = np.random.default_rng(5).normal(size=(40, 3))
    model = LogisticRegression().fit(features, features[:, 0] > 0)
    with instrumented(tmp_path, SklearnInstrumentor,
                      kafka_bootstrap_servers=kafka.bootstrap_servers) as audited:
        for start in range(0, 40, 4):
            model.predict(features[start:start + 4])
        store = audited.store
    exit_code, report = verify(kafka, prefix, Path(f"{store}.pub.pem"))
    assert exit_code == 0, report["findings"]
    assert report["records"] == verify_store(store, Path(f"{store}.pub.pem"))["records"]
