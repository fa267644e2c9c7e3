"""Kafka faults while a real instrumented model decides: a broker of three killed (SIGKILL)
mid-stream and restarted, the whole cluster down for 30 s.

The cluster is `tests.services.kafka.KafkaCluster` (three KRaft nodes, replication factor 3,
`min.insync.replicas=2`). A scikit-learn model instrumented by `SklearnInstrumentor` scores one
row every `INTERVAL` seconds in the test's thread, into the audit store, while the store is
shipped to Kafka: by `otel-ai-audit ship --kafka` in its own process (the sidecar a fleet runs),
and by the `Shipper` thread inside the model's process (the strictest place for the hot path).
Afterwards every record is in the topic exactly once and `verify --kafka` finds the trail
intact and complete.

The hot path: each call's latency is filed under the phase it ran in; the p99 while brokers are
down over the p99 before is printed (`-s`) and asserted within `P99_RATIO` only when
`OTEL_AI_AUDIT_TEST_ASSERT_P99=1`: on the shared two-core machine these tests were written on,
the other jobs' load moves it more than the fault does (measured figures: docs/scale.md). The
restart phase (brokers' JVMs starting on the same cores) is printed, never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import KafkaSettings
from otel_ai_audit.backends.kafka.sink import KafkaSink
from otel_ai_audit.backends.kafka.source import read_topic
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.sinks import Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.instrumentation_fixtures import AuditedProcess, instrumented
from tests.services.kafka import KafkaCluster

pytestmark = pytest.mark.slow

INTERVAL = 0.005
"""Seconds between two decisions: 200 a second (an audited call costs about 1 ms of CPU here,
writer thread included; a faster pace would measure the shared machine, not the fault)."""
P99_RATIO = 1.2
BIN = Path(sys.executable).parent


class PacedModel:
    """A real instrumented scikit-learn model scoring one row every `INTERVAL` seconds in the
    calling thread; each call's latency (s) is filed under `phase`."""

    def __init__(self) -> None:
        rng = np.random.default_rng(11)
        features = rng.normal(size=(500, 4))
        self.model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
        self.rows = rng.normal(size=(1024, 1, 4))
        self.phase = "warm-up"
        self.latencies: dict[str, list[float]] = defaultdict(list)

    @property
    def decisions(self) -> int:
        return sum(map(len, self.latencies.values()))

    def score_while(self, busy: Callable[[], bool]) -> None:
        latencies = self.latencies[self.phase]
        next_call = time.perf_counter()
        while busy():
            row = self.rows[len(latencies) % len(self.rows)]
            started = time.perf_counter()
            self.model.predict(row)
            latencies.append(time.perf_counter() - started)
            # A call that ran late starts the next interval: no burst to catch up.
            next_call = max(next_call + INTERVAL, time.perf_counter())
            time.sleep(max(0.0, next_call - time.perf_counter()))

    def score_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        self.score_while(lambda: time.monotonic() < deadline)

    def score_during(self, fault: Callable[[], None]) -> None:
        """Score until `fault`, run in another thread, returns."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fault()
            except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        self.score_while(thread.is_alive)
        thread.join()
        if errors:
            raise errors[0]

    def p99_ratios(self, name: str) -> dict[str, float]:
        """Each phase's p99 over the p99 before the fault; printed for the report."""
        before = float(np.percentile(self.latencies["before"], 99))
        ratios = {phase: float(np.percentile(values, 99)) / before
                  for phase, values in self.latencies.items()
                  if phase not in ("warm-up", "before")}
        counts = {phase: len(values) for phase, values in self.latencies.items()}
        print(f"\n{name}: p99 before {before * 1e6:.0f} us; ratios {ratios}; calls {counts}")
        return ratios


def check_hot_path(model: PacedModel, name: str, phase: str) -> None:
    ratio = model.p99_ratios(name)[phase]
    if os.environ.get("OTEL_AI_AUDIT_TEST_ASSERT_P99") == "1":
        assert ratio <= P99_RATIO, f"{name}: p99 while {phase} is {ratio:.2f}x the p99 before"


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[AuditedProcess]:
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        yield process


@pytest.fixture
def prefix(kafka_cluster: KafkaCluster) -> str:
    """A fresh topic prefix whose four topics exist with the cluster's defaults (3 partitions,
    3 replicas, min.insync.replicas=2)."""
    name = f"faults-{uuid.uuid4().hex[:12]}"
    sink = KafkaSink(KafkaSettings(kafka_cluster.bootstrap_servers, name, create_topics=True))
    sink.install()
    sink.close()
    return name


def leader_of_chain(cluster: KafkaCluster, prefix: str) -> int:
    """The node leading the records partition the (one) chain is keyed to, once shipped."""
    topic = layout.topic(prefix, layout.RECORDS)
    deadline = time.monotonic() + 60
    while not (found := records(cluster, prefix)):
        assert time.monotonic() < deadline, "nothing reached the records topic"
        time.sleep(0.5)
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(
        topic, timeout=10)
    partition = metadata.topics[topic].partitions[found[0].partition()]
    assert len(partition.replicas) == 3
    return int(partition.leader)


def records(cluster: KafkaCluster, prefix: str) -> list[Any]:
    consumer = Consumer(KafkaSettings(cluster.bootstrap_servers).consumer())
    try:
        return read_topic(consumer, layout.topic(prefix, layout.RECORDS),
                          cluster.bootstrap_servers)
    finally:
        consumer.close()


def stored(store: Path) -> Counter[tuple[str | None, int]]:
    """(chain, seq) of every record in the store."""
    with AuditStore(store, create=False, readonly=True) as opened:
        return Counter((chain, seq) for chain in opened.chain_ids()
                       for seq, _ in opened.records(chain))


def assert_exactly_once_and_verified(cluster: KafkaCluster, prefix: str, store: Path) -> float:
    """Every record of the store is in the topic once, and the topics verify intact and
    complete from Kafka alone. Returns (and prints) the longest pause in shipping: seconds
    between the produce times of two records in a row."""
    expected = stored(store)
    messages = records(cluster, prefix)
    found = Counter((layout.header_text(m.headers(), "chain.id"),
                     int(layout.header_text(m.headers(), "chain.seq") or -1))
                    for m in messages)
    assert found == expected, (f"{sum(found.values())} messages for {len(expected)} records: "
                               f"missing {len(expected - found)}, repeated {len(found - expected)}")
    verified = subprocess.run(
        [str(BIN / "otel-ai-audit"), "verify", "--kafka", cluster.bootstrap_servers,
         "--topic-prefix", prefix, "--public-key", f"{store}.pub.pem", "--json"],
        capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"], report["findings"]
    assert report["records"] == len(expected)
    assert all(summary["closed"] for summary in report["chain_summaries"])
    produced = sorted(int(m.timestamp()[1]) for m in messages)
    pause = max(later - earlier for earlier, later in zip(produced, produced[1:], strict=False))
    print(f"\nlongest pause in shipping: {pause / 1000:.1f} s")
    return pause / 1000


def test_a_broker_killed_mid_stream_and_restarted_loses_and_repeats_nothing(
        kafka_cluster: KafkaCluster, prefix: str, audited: AuditedProcess) -> None:
    """`ship --kafka` runs beside the model; the node leading the chain's partition is
    SIGKILLed, the other two elect a new leader (min.insync.replicas=2 still met) and the
    shipper goes on; the node comes back and catches up."""
    model = PacedModel()
    log = audited.store.with_name("ship.log")
    with open(log, "wb") as output:  # a file: retry warnings never fill a pipe and block it
        ship = subprocess.Popen(
            [str(BIN / "otel-ai-audit"), "ship", str(audited.store), "--kafka",
             kafka_cluster.bootstrap_servers, "--topic-prefix", prefix, "--timeout", "120"],
            stdout=output, stderr=subprocess.STDOUT)
    try:
        model.score_for(1.0)  # the chain is open and on its way to the topic
        leader = leader_of_chain(kafka_cluster, prefix)
        model.phase = "before"
        model.score_for(8.0)
        model.phase = "down"
        kafka_cluster.kill(leader)
        model.score_for(8.0)
        model.phase = "restart"
        model.score_during(lambda: kafka_cluster.restart(leader))
        model.phase = "after"
        model.score_for(2.0)
        audited.close()  # the chain's closing record and checkpoint
        ship.send_signal(signal.SIGTERM)
        ship.wait(timeout=180)
    finally:
        if ship.poll() is None:
            ship.kill()
    assert ship.returncode == 0, log.read_text()[-3000:]
    assert_exactly_once_and_verified(kafka_cluster, prefix, audited.store)
    check_hot_path(model, "broker killed", "down")


def test_the_whole_cluster_down_for_30_seconds_loses_and_repeats_nothing(
        kafka_cluster: KafkaCluster, prefix: str, audited: AuditedProcess) -> None:
    """The `Shipper` thread in the model's own process; all three nodes SIGKILLed, down for
    30 s, then started together. The store is the spool: the model never waits, the backlog
    ships once the quorum is back.

    The default delivery timeout (300 s, librdkafka's own) outlasts the outage and the
    restart: the idempotent producer retries the batch that was in flight at the kill with its
    sequence numbers, and the brokers drop what they already had. With a 30 s timeout a
    batch the brokers persisted but never acknowledged times out and is produced again as new
    messages: identical repeats (25 of 16,404 records in one run), which `verify --kafka`
    collapses but this test would count."""
    model = PacedModel()
    sink = KafkaSink(KafkaSettings(kafka_cluster.bootstrap_servers, prefix))
    shipper = Shipper(str(audited.store), sink, batch_size=500, poll_interval=0.1,
                      max_backoff=2.0)
    shipper.start()
    try:
        model.score_for(2.0)
        model.phase = "before"
        model.score_for(8.0)
        model.phase = "down"
        for node in kafka_cluster.nodes:
            kafka_cluster.kill(node)
        model.score_for(30.0)
        model.phase = "restart"
        model.score_during(lambda: kafka_cluster.restart(*kafka_cluster.nodes))
        model.phase = "after"
        model.score_for(2.0)
        audited.close()
    finally:
        delivered = shipper.close(timeout=180)
    assert delivered, shipper.stats
    assert shipper.stats.shipped_records == len(stored(audited.store))
    pause = assert_exactly_once_and_verified(kafka_cluster, prefix, audited.store)
    assert pause >= 30.0, "the outage never held shipping up"
    check_hot_path(model, "cluster down", "down")
