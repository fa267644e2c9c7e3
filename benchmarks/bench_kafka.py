"""Kafka: producing from one process, consuming into Elasticsearch, and end-to-end latency.

Starts its own Kafka broker (one KRaft node, `tests.services.kafka`) and Elasticsearch node.

1. Producer: records per second from a store into Kafka by the real `Shipper` and `KafkaSink`
   (idempotent, `acks=all`; store reads, headers, produce, every acknowledgement awaited,
   cursor commits), for each compression, best of two rounds. The broker's idempotence
   coordinator is warmed up first (its first producer id takes seconds) and a small shipment
   warms the path. Target: >= 50,000 records/s with the default compression.
2. Consumer -> Elasticsearch: records per second that `ship --from-kafka` consumers index
   (consume, the Elasticsearch sink's bulk requests, offset commits), with one consumer and
   with three in one group over three partitions (12 chains), each a separate process.
   Counted from the first batch any consumer took to the last one done.
3. End to end, decision -> searchable in Elasticsearch: one writer's decisions at a steady
   rate, shipped both directly (`Shipper` -> Elasticsearch) and through Kafka (`Shipper` ->
   Kafka -> a `ship --from-kafka` process -> Elasticsearch) in the same run, from the same
   store; a poller notes when each record first answers a search in each index.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from elasticsearch import Elasticsearch

from benchmarks import Result
from benchmarks.bench_core import inference_events
from otel_ai_audit.backends.elasticsearch.layout import index_names
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import KafkaSettings
from otel_ai_audit.backends.kafka.consumer import KafkaForwarder
from otel_ai_audit.backends.kafka.sink import KafkaSink
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.services.base import free_port
from tests.services.elasticsearch import ElasticsearchService
from tests.services.kafka import KafkaService

PRODUCED = 100_000
ROUNDS = 2
COMPRESSIONS = ("lz4", "zstd", "none")
"""The default first: the target is held to it."""
PRODUCER_TARGET = 50_000.0
CHAINS = 12
CONSUMED = 120_000
"""Records the consumers index: `CHAINS` chains of 10,000, over 3 partitions."""
RATE = 500
"""Decisions per second in the latency run (a busy service)."""
LATENCY_SECONDS = 20.0
POLL = 0.05
"""Seconds between two searches of the latency poller."""


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-kafka-") as directory:
        kafka = KafkaService(Path(directory) / "kafka")
        elasticsearch = ElasticsearchService()
        kafka.start()
        try:
            elasticsearch.start()
            try:
                key = SigningKey.generate()
                produced = _producer(kafka, Path(directory), key)
                building = _thread_cost(Path(directory) / "produce.db")
                consumed = _consumers(kafka, elasticsearch, Path(directory), key)
                direct, through = _latency(kafka, elasticsearch, Path(directory), key)
            finally:
                elasticsearch.stop()
                elasticsearch.remove_data()
        finally:
            kafka.stop()
    results = [
        Result(f"kafka: records produced from one process ({compression})", rate, "records/s",
               PRODUCER_TARGET if compression == COMPRESSIONS[0] else None,
               note=f"{PRODUCED:,} records, best of {ROUNDS}, Shipper + KafkaSink, acks=all, "
                    f"idempotent, linger.ms 20, {compression}")
        for compression, rate in produced.items()]
    results.append(Result(
        "kafka: shipping thread's CPU per record", building, "µs",
        note="store read, message and headers built, produced to librdkafka's queue (no "
             "broker: its threads idle); thread CPU time, best of 3"))
    results += [
        Result(f"kafka -> elasticsearch: {count} consumer(s)", rate, "records/s",
               note=f"{CONSUMED:,} records of {CHAINS} chains, 3 partitions, one process each")
        for count, rate in consumed.items()]
    for name, latencies in (("direct shipper", direct), ("through kafka", through)):
        results.append(Result(
            f"decision -> searchable p99, {name}", float(np.percentile(latencies, 99)), "ms",
            note=f"p50 {np.percentile(latencies, 50):.0f} ms, {len(latencies):,} decisions at "
                 f"{RATE}/s, the same run"))
    return results


# --- 1. producer ---------------------------------------------------------------------------


def _write(path: Path, key: SigningKey, records: int, start_ns: int) -> None:
    writer = AuditWriter(str(path), key)
    for event in inference_events(records - 1, start_ns):
        writer.submit(event)
    assert writer.close()


def _producer(kafka: KafkaService, directory: Path, key: SigningKey) -> dict[str, float]:
    store = directory / "produce.db"
    _write(store, key, PRODUCED, time.time_ns())
    warm = directory / "warm.db"
    _write(warm, key, 2_000, time.time_ns())
    rates = dict.fromkeys(COMPRESSIONS, 0.0)
    for round_ in range(ROUNDS):  # compressions in turn: a change of load hits each alike
        for compression in COMPRESSIONS:
            settings = KafkaSettings(kafka.bootstrap_servers, f"bench-{compression}-{round_}",
                                     compression=compression, create_topics=True)
            sink = KafkaSink(settings)
            sink.install()
            assert Shipper(str(warm), sink, create_store=False).drain(60)
            shipper = Shipper(str(store), sink, create_store=False)
            started = time.perf_counter()
            assert shipper.drain(600), shipper.stats
            rate = shipper.stats.shipped_records / (time.perf_counter() - started)
            rates[compression] = max(rates[compression], rate)
            shipper.close()
    return rates


def _thread_cost(store: Path) -> float:
    """Microseconds of this thread's CPU per record to read, build and produce it (what
    bounds one process when librdkafka and the brokers have other cores)."""
    with AuditStore(str(store), create=False, readonly=True) as opened:
        (chain,) = opened.chain_ids()
        config = {**KafkaSettings(f"127.0.0.1:{free_port()}").producer(), "log_level": 0,
                  "queue.buffering.max.messages": 2 * PRODUCED}
        best = float("inf")
        for _ in range(3):
            producer = Producer(config)
            started = time.thread_time()
            for key, value, headers in map(layout.record_message,
                                           opened.records_after(chain, -1, PRODUCED)):
                producer.produce("cost", value, key, headers=headers, on_delivery=_ignore)
            best = min(best, time.thread_time() - started)
            producer.purge()
            producer.flush(0)
    return best / PRODUCED * 1e6


def _ignore(_error: Any, _message: Any) -> None:
    pass


# --- 2. consumers ---------------------------------------------------------------------------


def _consumers(kafka: KafkaService, elasticsearch: ElasticsearchService, directory: Path,
               key: SigningKey) -> dict[int, float]:
    prefix = "bench-consume"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, 3, 1)
                                       for name in layout.topics(prefix)]).values():
        future.result(timeout=60)
    settings = KafkaSettings(kafka.bootstrap_servers, prefix)
    for chain in range(CHAINS):
        store = directory / f"chain-{chain}.db"
        _write(store, key, CONSUMED // CHAINS, time.time_ns())
        shipper = Shipper(str(store), KafkaSink(settings), create_store=False)
        assert shipper.drain(300)
        shipper.close()
    rates = {}
    for count in (1, 3):
        group = f"bench-{count}"
        command = [sys.executable, "-m", "benchmarks.bench_kafka", kafka.bootstrap_servers,
                   prefix, group, elasticsearch.url, f"{prefix}-{count}"]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                     for _ in range(count)]
        reports = [json.loads(process.communicate(timeout=900)[0]) for process in processes]
        assert sum(report["records"] for report in reports) == CONSUMED, reports
        first = min(report["first"] for report in reports if report["records"])
        last = max(report["last"] for report in reports if report["records"])
        rates[count] = CONSUMED / (last - first)
    return rates


def _consume(bootstrap: str, prefix: str, group: str, url: str, index_prefix: str) -> None:
    """One consumer of `group` until its partitions are read: prints when its first batch
    was taken, when its last was committed, and the records it delivered."""
    forwarder = KafkaForwarder(KafkaSettings(bootstrap, prefix, group=group),
                               [ElasticsearchSink(Elasticsearch(url), index_prefix=index_prefix)])
    forwarder.install()
    try:
        assert forwarder.run(once=True, timeout=600)
    finally:
        forwarder.close()
    stats = forwarder.stats
    print(json.dumps({"records": stats.records, "first": stats.first_batch_at,
                      "last": stats.last_commit_at}))


# --- 3. end-to-end latency ------------------------------------------------------------------


def _latency(kafka: KafkaService, elasticsearch: ElasticsearchService, directory: Path,
             key: SigningKey) -> tuple[list[float], list[float]]:
    """Milliseconds from submit to searchable, per decision, directly and through Kafka."""
    run_id = uuid.uuid4().hex[:8]
    direct_prefix, kafka_prefix = f"bench-direct-{run_id}", f"bench-through-{run_id}"
    store = directory / "latency.db"
    writer = AuditWriter(str(store), key)
    settings = KafkaSettings(kafka.bootstrap_servers, kafka_prefix, create_topics=True)
    to_kafka = KafkaSink(settings)
    to_kafka.install()
    direct = ElasticsearchSink(Elasticsearch(elasticsearch.url), index_prefix=direct_prefix)
    direct.install()
    shippers = [Shipper(str(store), sink, poll_interval=0.05) for sink in (direct, to_kafka)]
    for shipper in shippers:
        shipper.start()
    consumer = subprocess.Popen(
        [str(Path(sys.executable).parent / "otel-ai-audit"), "ship", "--from-kafka",
         kafka.bootstrap_servers, "--topic-prefix", kafka_prefix, "--group", f"latency-{run_id}",
         "--elasticsearch", elasticsearch.url, "--index-prefix", kafka_prefix],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    submitted: dict[int, float] = {}
    seen: dict[str, dict[int, float]] = {direct_prefix: {}, kafka_prefix: {}}
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(elasticsearch.url, seen, stop))
    poller.start()
    try:
        events = inference_events(int(RATE * LATENCY_SECONDS), time.time_ns())
        started = time.monotonic()
        for number, event in enumerate(events, 1):
            time.sleep(max(0.0, started + number / RATE - time.monotonic()))
            submitted[number] = time.time()  # the chain_open record is seq 0
            writer.submit(event)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and min(len(found) for found in seen.values()) < len(
                submitted):
            time.sleep(0.5)
    finally:
        stop.set()
        poller.join()
        writer.close()
        for shipper in shippers:
            shipper.close(timeout=30)
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
    return tuple(  # type: ignore[return-value]
        [(seen[prefix][seq] - at) * 1000 for seq, at in submitted.items() if seq in seen[prefix]]
        for prefix in (direct_prefix, kafka_prefix))


def _poll(url: str, seen: dict[str, dict[int, float]], stop: threading.Event) -> None:
    """Note when each record of each prefix's records index first answers a search."""
    client = Elasticsearch(url)
    while not stop.is_set():
        for prefix, found in seen.items():
            after = max(found, default=-1)
            try:
                response = client.search(index=index_names(prefix)[0], size=5000,
                                         query={"range": {"chain.seq": {"gt": after}}},
                                         sort=[{"chain.seq": "asc"}], source_includes=["chain.seq"],
                                         ignore_unavailable=True)
            except Exception:  # noqa: BLE001 - the index may not exist yet
                continue
            now = time.time()
            for hit in response["hits"]["hits"]:
                found.setdefault(int(hit["_source"]["chain"]["seq"]
                                     if "chain" in hit["_source"]
                                     else hit["_source"]["chain.seq"]), now)
        stop.wait(POLL)
    client.close()


if __name__ == "__main__":  # one consumer process of `_consumers`
    _consume(*sys.argv[1:])
