"""Delivery beyond Elasticsearch: records per second through Splunk HEC and through OTLP.

1. HEC: the real `Shipper` and `SplunkHecSink` (store reads, HEC events, 1 MB requests,
   cursor commits) into the loopback HEC of the tests (`tests.services.splunk_hec`, which
   parses every event as Splunk would), with and without indexer acknowledgement.
2. OTLP: the real `Shipper` and `OtlpSink` (gRPC) into the gateway Collector of
   collector_config/otelcol-audit-test.yaml (persistent queue with fsync on file_storage),
   which forwards to a second Collector: the rate at which the gateway acknowledges.

Best of `REPEATS`; no targets yet (these are first measurements).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import Result
from benchmarks.bench_core import inference_events
from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.backends.splunk_hec.sink import SplunkHecSink
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.sinks import Shipper, Sink
from tests.services.base import REPO_ROOT
from tests.services.collector import CollectorService, distinct_free_ports
from tests.services.splunk_hec import SplunkHec, Token, serve

RECORDS = 50_000
REPEATS = 2
TOKEN = "00000000-0000-0000-0000-0000000bench"


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-delivery-") as directory:
        work = Path(directory)
        store = work / "audit.db"
        writer = AuditWriter(str(store), SigningKey.generate(), checkpoint_every=1000)
        for event in inference_events(RECORDS, time.time_ns()):
            writer.submit(event)
        assert writer.close()
        results = []
        with serve(SplunkHec(tokens={TOKEN: Token(), TOKEN[:-5] + "acked": Token(ack=True)})
                   ) as hec:
            hec_rate = _best(store, lambda: SplunkHecSink(hec.url, TOKEN), hec.indexed.clear)
            ack_rate = _best(store, lambda: SplunkHecSink(hec.url, TOKEN[:-5] + "acked",
                                                          ack=True, ack_poll_interval=0.01),
                             hec.indexed.clear)
        results.append(Result("splunk hec: records shipped (loopback HEC)", hec_rate,
                              "records/s", note=f"{RECORDS:,} records, best of {REPEATS}"))
        results.append(Result("splunk hec with indexer ack: records shipped", ack_rate,
                              "records/s", note="acks polled every 10 ms"))
        results.append(Result("otlp: records acknowledged by the gateway Collector",
                              _otlp(store, work), "records/s",
                              note="gRPC, persistent queue with fsync, into a 2nd Collector"))
    return results


def _best(store: Path, make_sink: Callable[[], Sink], reset: Callable[[], None]) -> float:
    rates = []
    for repeat in range(REPEATS):
        reset()
        copy = store.with_name(f"repeat-{time.monotonic_ns()}-{repeat}.db")
        shutil.copy(store, copy)  # nothing shipped from it yet: every cursor at the start
        shipper = Shipper(str(copy), make_sink(), create_store=False)
        started = time.perf_counter()
        assert shipper.drain(timeout=600), shipper.stats
        rates.append(shipper.stats.shipped_records / (time.perf_counter() - started))
        shipper.close()
        copy.unlink()
    return max(rates)


def _otlp(store: Path, work: Path) -> float:
    archive = CollectorService(work / "archive")
    (port,) = distinct_free_ports(1)
    gateway = CollectorService(
        work / "gateway", config_file=REPO_ROOT / "collector_config" / "otelcol-audit-test.yaml",
        environment={"AUDIT_GRPC_ENDPOINT": f"127.0.0.1:{port}",
                     "ARCHIVE_OTLP_ENDPOINT": archive.otlp_grpc_endpoint})
    archive.start()
    try:
        gateway.start()
        return _best(store, lambda: OtlpSink.connect(f"http://127.0.0.1:{port}"), lambda: None)
    finally:
        gateway.stop()
        archive.stop()
