"""Shipping to Elasticsearch: sustained throughput, and what an outage costs the hot path.

Starts its own single node (the tests' integ-test-zip distribution: `make services-prepare`).

1. Throughput: records per second from the store into the node, by the real `Shipper` and
   `ElasticsearchSink` (store reads, documents, bulk requests, per-item checks, cursor
   commits). A cold JVM indexes at about half speed, so one shipment warms it up first, and
   the best of the measured repeats counts. Target: >= 20,000 records/s.
2. Hot path with the node up, then stopped, then up again: each `AuditWriter.submit` timed at
   a steady rate of decisions, with a shipper running in the same process as the runtime runs
   it (busy delivering while the node is up; failing and backing off while it is down).
   Target: p99 while down <= 1.2 x p99 while up: an outage must not reach the caller.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch

from benchmarks import Result
from benchmarks.bench_core import inference_events
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper
from tests.services.elasticsearch import ElasticsearchService

RECORDS = 200_000
REPEATS = 3
THROUGHPUT_TARGET = 20_000.0
PHASE_SECONDS = 8.0
PAUSE = 0.0002
"""Seconds between two decisions (a few thousand a second, a busy service)."""
RATIO_TARGET = 1.2


def run() -> list[Result]:
    service = ElasticsearchService()
    service.start()
    try:
        with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-es-") as directory:
            key = SigningKey.generate()
            rate = _throughput(service, Path(directory), key)
            up, down = _hot_path(service, Path(directory), key)
    finally:
        service.stop()
        service.remove_data()
    p99_up, p99_down = float(np.percentile(up, 99)), float(np.percentile(down, 99))
    return [
        Result("elasticsearch: records shipped to one node", rate, "records/s",
               THROUGHPUT_TARGET, note=f"{RECORDS:,} records, best of {REPEATS} after a "
                                       "warm-up shipment"),
        Result("submit p99, elasticsearch up", p99_up, "µs",
               note=f"p50 {np.percentile(up, 50):.1f} µs, {len(up):,} calls"),
        Result("submit p99, elasticsearch down", p99_down, "µs",
               note=f"p50 {np.percentile(down, 50):.1f} µs, {len(down):,} calls"),
        Result("submit p99 down / up", p99_down / p99_up, "x", RATIO_TARGET,
               higher_is_better=False),
    ]


def _throughput(service: ElasticsearchService, directory: Path, key: SigningKey) -> float:
    store = directory / "throughput.db"
    writer = AuditWriter(str(store), key)
    for event in inference_events(RECORDS, time.time_ns()):
        writer.submit(event)
    assert writer.close()
    rates = []
    for repeat in range(REPEATS + 1):
        shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(service.url),
                                                        index_prefix=f"bench-{repeat}"))
        started = time.perf_counter()
        assert shipper.drain(timeout=600), shipper.stats
        elapsed = time.perf_counter() - started
        shipper.close()
        if repeat:  # the first one warms the node up
            rates.append(shipper.stats.shipped_records / elapsed)
    return max(rates)


def _hot_path(service: ElasticsearchService, directory: Path,
              key: SigningKey) -> tuple[list[float], list[float]]:
    """Submit latencies (µs) while the node is up (before and after), and while it is down."""
    store = directory / "hot-path.db"
    writer = AuditWriter(str(store), key)
    shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(service.url),
                                                    index_prefix="bench-hot-path"))
    shipper.start()
    events = iter(inference_events(int(3 * PHASE_SECONDS / PAUSE) + 50_000, time.time_ns()))
    gc.collect()
    shipping_log = logging.getLogger("otel_ai_audit.sinks")
    level = shipping_log.level
    shipping_log.setLevel(logging.ERROR)  # the outage's retry warnings are expected here
    try:
        _submit_for(writer, events, 2.0)  # the shipper is busy from here on
        up = _submit_for(writer, events, PHASE_SECONDS)
        service.stop()
        down = _submit_for(writer, events, PHASE_SECONDS)
        service.start()
        up += _submit_for(writer, events, PHASE_SECONDS)
    finally:
        writer.close()
        shipper.close(timeout=60)
        shipping_log.setLevel(level)
    return up, down


def _submit_for(writer: AuditWriter, events: Any, seconds: float) -> list[float]:
    latencies = []
    clock = time.perf_counter_ns
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = next(events)
        started = clock()
        writer.submit(event)
        latencies.append((clock() - started) / 1000)
        time.sleep(PAUSE)
    return latencies
