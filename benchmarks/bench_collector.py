"""The audit processor's cost beside the Collector pipeline it runs in, on one core.

The measured figures come from the Go benchmark `BenchmarkPipeline`
(collector/auditprocessor/bench_test.go). It feeds the same OTLP/protobuf requests through what
a Collector does with each request without the processor (the receiver unmarshals it, the batch
takes its spans, the exporter marshals the batch and compresses it with gzip, the otlp
exporter's default) and through the same with the processor in front of the exporter:

- `trail`: the Python side's trail (records of about 400 bytes, a signed checkpoint every 1000,
  requests of 1000 spans as `OtlpSink` sends them), verified with the chain state saved in the
  real file_storage extension after every request and the verdict attribute on;
- `genai`: a service's GenAI chat spans (requests of 512, an SDK batch), every one chained:
  mapped to an event, its prompt and answer HMAC-hashed, sealed, a checkpoint signed every 1000.

The test binary is built once and run `ROUNDS` times with GOMAXPROCS=1 (`-test.cpu 1`), so the
variants alternate; each variant's best round counts. The figures are per CPU second of the
benchmark process, not per wall second: the machines this runs on are shared, and a process
that waits for the core is not slower. The processor's cost is (CPU time with it - CPU time
without it) / CPU time without it, held to <= 0.25.

The end-to-end figure runs the real binaries: the real `Shipper` and `OtlpSink` (gRPC) ship
20,000 records into a gateway Collector (collector_config/otelcol-audit-e2e-gateway.yaml, the
`audit` processor verifying with file_storage and fsync) that forwards them to an archive
Collector. There the Python shipper sets the pace, so it is a plain figure with no target.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import Result
from benchmarks.bench_core import inference_events
from benchmarks.bench_delivery import _best
from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from tests.services.base import REPO_ROOT
from tests.services.collector import CollectorService, distinct_free_ports, go_executable

PROCESSOR = REPO_ROOT / "collector" / "auditprocessor"
ROUNDS = 5
BENCHTIME = "40x"
"""Requests per variant and round: 40,000 trail records, 20,480 GenAI spans."""
TARGET = 0.25
RECORDS = 20_000
GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-gateway.yaml"

_LINE = re.compile(r"^BenchmarkPipeline/(\w+)/(\w+)(?:-\d+)?\s+\d+\s+(.*)$")


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-collector-") as directory:
        work = Path(directory)
        best = pipeline_cpu(work)
        end_to_end = gateway_rate(work)
    results = []
    for workload, mode, verb in (("trail", "verify", "verified"), ("genai", "chain", "chained")):
        plain, audited = best[workload, "plain"], best[workload, mode]
        results += [
            Result(f"collector pipeline ({workload}): records/s, plain", plain["records/cpu-s"],
                   "records/s",
                   note="per CPU second on one core: OTLP unmarshal, batch, marshal, gzip"),
            Result(f"collector pipeline ({workload}): records/s {verb} by the processor",
                   audited["records/cpu-s"], "records/s",
                   note=f"the same pipeline with the audit processor ({mode} mode)"),
            Result(f"collector: audit processor cost / pipeline cost ({mode})",
                   (audited["cpu-ns/op"] - plain["cpu-ns/op"]) / plain["cpu-ns/op"], "ratio",
                   target=TARGET, higher_is_better=False,
                   note=f"CPU time, best of {ROUNDS} alternating rounds of {BENCHTIME}"),
        ]
    results.append(Result(
        "collector end to end: records acknowledged by the gateway with the processor",
        end_to_end, "records/s",
        note=f"{RECORDS:,} records from the Python shipper by OTLP/gRPC, real binaries"))
    return results


def pipeline_cpu(work: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The best (lowest CPU time) round of each BenchmarkPipeline variant, by (workload,
    variant): its metrics by unit."""
    binary = work / "auditprocessor.test"
    subprocess.run([go_executable(), "test", "-c", "-o", str(binary), "."], cwd=PROCESSOR,
                   check=True, capture_output=True, timeout=900)
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(ROUNDS):
        output = subprocess.run(
            [str(binary), "-test.run", "^$", "-test.bench", "^BenchmarkPipeline$",
             "-test.cpu", "1", "-test.benchtime", BENCHTIME],
            cwd=PROCESSOR, check=True, capture_output=True, text=True, timeout=900).stdout
        for key, metrics in parse(output).items():
            if key not in best or metrics["cpu-ns/op"] < best[key]["cpu-ns/op"]:
                best[key] = metrics
    return best


def parse(output: str) -> dict[tuple[str, str], dict[str, float]]:
    """`go test -bench` lines (`BenchmarkPipeline/trail/plain  40  1e6 ns/op  2e5 records/s
    ...`) as metrics by unit, by (workload, variant)."""
    parsed = {}
    for line in output.splitlines():
        match = _LINE.match(line.strip())
        if match:
            fields = match.group(3).split()
            parsed[match.group(1), match.group(2)] = {
                unit: float(value) for value, unit in zip(fields[::2], fields[1::2], strict=True)}
    if len(parsed) != 4:
        raise RuntimeError(f"BenchmarkPipeline printed {len(parsed)} of 4 results:\n{output}")
    return parsed


def gateway_rate(work: Path) -> float:
    """Records/s the real gateway (processor on, file_storage with fsync) acknowledges from the
    real Python shipper, forwarding to an archive Collector; best of 2 runs (`_best`)."""
    store = work / "audit.db"
    key = SigningKey.generate()
    key.save(work / "key.pem", work / "key.pub.pem")
    writer = AuditWriter(str(store), key, checkpoint_every=1000)
    for event in inference_events(RECORDS, time.time_ns()):
        writer.submit(event)
    assert writer.close()
    archive = CollectorService(work / "archive")
    (metrics_port,) = distinct_free_ports(1)
    gateway = CollectorService(
        work / "gateway", config_file=GATEWAY,
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
