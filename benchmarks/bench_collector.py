"""The audit processor's cost in a real gateway Collector, side by side with the plain one.

The real `Shipper` and `OtlpSink` (gRPC) ship the same store of decisions into a gateway
Collector (the `otelcol-ai-audit` build) that forwards to an archive Collector, as in
`bench_delivery`. The gateway runs collector_config/otelcol-audit-e2e-gateway.yaml: once as it
is (the `audit` processor verifying every record, its chain state saved in file_storage with
fsync after every batch, the verdict attribute on), and once with the processor taken out of
the pipeline (the plain gateway). The runs alternate, best of `REPEATS` each; the ratio is
audited / plain. No target yet (first measurements).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Result
from benchmarks.bench_core import inference_events
from benchmarks.bench_delivery import REPEATS, _best
from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from tests.services.base import REPO_ROOT
from tests.services.collector import CollectorService, distinct_free_ports

RECORDS = 20_000
GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-gateway.yaml"
PLAIN: dict[str, Any] = {"service": {"pipelines": {"traces/audit": {"processors": []}}}}
"""Merged over the gateway config: the same pipeline without the processor (lists replace)."""


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-collector-") as directory:
        work = Path(directory)
        store = work / "audit.db"
        key = SigningKey.generate()
        key.save(work / "key.pem", work / "key.pub.pem")
        writer = AuditWriter(str(store), key, checkpoint_every=1000)
        for event in inference_events(RECORDS, time.time_ns()):
            writer.submit(event)
        assert writer.close()
        rates: dict[str, float] = {"plain": 0.0, "audit": 0.0}
        for _ in range(REPEATS):
            for variant in rates:
                rates[variant] = max(rates[variant], _gateway_rate(store, work, variant))
    ratio = rates["audit"] / rates["plain"]
    return [
        Result("collector: records acknowledged, plain gateway", rates["plain"], "records/s",
               note=f"{RECORDS:,} records by OTLP/gRPC, persistent queue, into a 2nd Collector"),
        Result("collector: records acknowledged, gateway with the audit processor",
               rates["audit"], "records/s",
               note="verifying every record, chain state in file_storage (fsync), verdict on"),
        Result("collector: audit processor / plain gateway throughput", ratio, "ratio",
               note=f"best of {REPEATS} alternating runs each"),
    ]


def _gateway_rate(store: Path, work: Path, variant: str) -> float:
    run_dir = work / f"{variant}-{time.monotonic_ns()}"
    archive = CollectorService(run_dir / "archive")
    (metrics_port,) = distinct_free_ports(1)
    gateway = CollectorService(
        run_dir / "gateway", config_file=GATEWAY,
        extra_config=PLAIN if variant == "plain" else None,
        environment={"ARCHIVE_OTLP_ENDPOINT": archive.otlp_grpc_endpoint,
                     "AUDIT_PUBLIC_KEY_FILE": str(work / "key.pub.pem"),
                     "AUDIT_GAP_TIMEOUT": "5s", "METRICS_PORT": str(metrics_port)})
    archive.start()
    try:
        gateway.start()
        return _best(store, lambda: OtlpSink.connect(gateway.otlp_grpc_endpoint), lambda: None)
    finally:
        gateway.stop()
        archive.stop()
