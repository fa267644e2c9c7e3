"""The audit processor's cost beside the Collector pipeline it runs in, on one core.

Two measurements, each comparing the same work with and without the processor:

- The real gateway (`gateway_cpu`), which the target (<= 0.25) is held to: the
  `otelcol-ai-audit` binary with GOMAXPROCS=1, its CPU time read from /proc while real clients
  send through it to an archive Collector. `trail`: the Python shipper's records (OTLP/gRPC)
  through the deployed audit pipeline (no batch, a persistent queue with fsync), plain and with
  the processor verifying. `genai`: the Go GenAI producer's spans (OTLP/HTTP) through an
  ordinary traces pipeline (batch, otlp exporter with gzip), plain and with the processor
  chaining every span (records attached as seals, the default).
- The minimal pipeline (`pipeline_cpu`), printed beside it: the Go benchmark `BenchmarkPipeline`
  (collector/auditprocessor/bench_test.go), which does only what a Collector cannot skip per
  request (unmarshal, batch, marshal, gzip), so the processor's share of it is larger.
  `trail`: requests of 1000 Python records, verified with file_storage and the verdict on;
  `genai`: requests of 512 GenAI chat spans, each chained (`chain`: attached, `separate`: each
  record a span of its own), and `floor`: each span's event only written canonically and
  hashed, what any design with a record per span pays at least. Run `ROUNDS` times, variants
  alternating, best round each.

Both count CPU time, not wall time: the machines this runs on are shared, and a process that
waits for the core is not slower. The processor's cost is (CPU time with it - CPU time without
it) / CPU time without it.

The end-to-end figure runs the real binaries: the real `Shipper` and `OtlpSink` (gRPC) ship
20,000 records into a gateway Collector (collector_config/otelcol-audit-e2e-gateway.yaml, the
`audit` processor verifying with file_storage and fsync) that forwards them to an archive
Collector. There the Python shipper sets the pace, so it is a plain figure with no target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
from otel_ai_audit.sinks import Shipper
from tests.services.base import REPO_ROOT
from tests.services.collector import CollectorService, distinct_free_ports, go_executable

PROCESSOR = REPO_ROOT / "collector" / "auditprocessor"
ROUNDS = 5
BENCHTIME = "40x"
"""Requests per variant and round: 40,000 trail records, 20,480 GenAI spans."""
TARGET = 0.25
RECORDS = 20_000
GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-gateway.yaml"

VARIANTS = (("trail", "plain"), ("trail", "verify"), ("genai", "plain"), ("genai", "floor"),
            ("genai", "chain"), ("genai", "separate"))
"""BenchmarkPipeline's variants: `chain` attaches each record as a seal on its span (the
default), `separate` sends it as a span of its own; `floor` only writes each span's event in
canonical form and hashes it, the least a record per span costs."""
_LINE = re.compile(r"^BenchmarkPipeline/(\w+)/(\w+)(?:-\d+)?\s+\d+\s+(.*)$")


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-collector-") as directory:
        work = Path(directory)
        best = pipeline_cpu(work)
        real = gateway_cpu(work)
        end_to_end = gateway_rate(work)
    results = []
    for workload, mode, verb in (("trail", "verify", "verified"), ("genai", "chain", "chained")):
        plain, audited = real[workload, "plain"], real[workload, mode]
        results += [
            Result(f"collector gateway ({workload}): records/s, plain", 1e9 / plain,
                   "records/s", note="per CPU second of the real otelcol-ai-audit on one core"),
            Result(f"collector gateway ({workload}): records/s {verb} by the processor",
                   1e9 / audited, "records/s",
                   note=f"the same gateway with the audit processor ({mode} mode)"),
            Result(f"collector: audit processor cost / gateway pipeline cost ({mode})",
                   (audited - plain) / plain, "ratio", target=TARGET, higher_is_better=False,
                   note=f"gateway CPU time, best of {GATEWAY_ROUNDS} alternating runs"),
        ]
        plain_go, audited_go = best[workload, "plain"], best[workload, mode]
        results.append(Result(
            f"collector: audit processor cost / minimal pipeline cost ({mode})",
            (audited_go["cpu-ns/op"] - plain_go["cpu-ns/op"]) / plain_go["cpu-ns/op"], "ratio",
            note=f"Go BenchmarkPipeline, unmarshal + batch + marshal + gzip only: "
                 f"{audited_go['records/cpu-s']:,.0f} vs {plain_go['records/cpu-s']:,.0f} "
                 f"records/CPU-s, best of {ROUNDS}"))
    plain_go, separate, floor = (best["genai", "plain"], best["genai", "separate"],
                                 best["genai", "floor"])
    results.append(Result(
        "collector: per-span record floor / minimal pipeline cost",
        (floor["cpu-ns/op"] - plain_go["cpu-ns/op"]) / plain_go["cpu-ns/op"], "ratio",
        note="each span's event written canonically and leaf-hashed, nothing else: no "
             "content HMAC, link, Merkle tree, checkpoint or seal (Go BenchmarkPipeline)"))
    results.append(Result(
        "collector: audit processor cost / minimal pipeline cost (chain, records: separate)",
        (separate["cpu-ns/op"] - plain_go["cpu-ns/op"]) / plain_go["cpu-ns/op"], "ratio",
        note="each record a ~1 KB span of its own beside the original, for comparison"))
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
    if len(parsed) != len(VARIANTS):
        raise RuntimeError(f"BenchmarkPipeline printed {len(parsed)} of {len(VARIANTS)} "
                           f"results:\n{output}")
    return parsed


def gateway_rate(work: Path) -> float:
    """Records/s the real gateway (processor on, file_storage with fsync) acknowledges from the
    real Python shipper, forwarding to an archive Collector; best of 2 runs (`_best`)."""
    store = trail_store(work)
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


def trail_store(work: Path) -> Path:
    """A store of `RECORDS` inference records signed by `work/key.pem` (made once)."""
    store = work / "audit.db"
    if not store.exists():
        key = SigningKey.generate()
        key.save(work / "key.pem", work / "key.pub.pem")
        writer = AuditWriter(str(store), key, checkpoint_every=1000)
        for event in inference_events(RECORDS, time.time_ns()):
            writer.submit(event)
        assert writer.close()
    return store


GATEWAY_ROUNDS = 5
GENAI_CALLS = 10_240
"""Chat calls the Go producer sends per run, two spans each (a server span and its chat span),
in requests of 512 spans: 20,480 spans, every one chained (`attribute_prefixes: []`)."""


def gateway_cpu(work: Path) -> dict[tuple[str, str], float]:
    """CPU nanoseconds per span of the real `otelcol-ai-audit` gateway process, on one core
    (GOMAXPROCS=1), by (workload, variant): the best of `GATEWAY_ROUNDS` alternating runs.

    `trail`: the real Python shipper sends `RECORDS` records by OTLP/gRPC to the deployed audit
    pipeline (otelcol-audit-e2e-gateway.yaml: no batch, a persistent queue with fsync), without
    the processor (`plain`) and with it verifying (`verify`). `genai`: the Go GenAI producer
    sends chat spans by OTLP/HTTP to an ordinary traces pipeline (batch, otlp exporter with
    gzip), without the processor and with it chaining every span (`chain`). Each run's CPU is
    counted from when the gateway is up and idle until the archive holds every span and the
    gateway is idle again, so start-up is not counted."""
    producer = work / "genai-producer"
    subprocess.run([go_executable(), "build", "-o", str(producer), "./testdata/genai-producer"],
                   cwd=PROCESSOR, check=True, capture_output=True, timeout=900)
    store = trail_store(work)
    private = work / "gateway.pem"
    SigningKey.generate().save(private, work / "gateway.pub.pem")
    (work / "hmac.key").write_text("bench-hmac-key\n")
    archive = _Archive(work / "archive-cpu")
    archive.service.start()
    best: dict[tuple[str, str], float] = {}
    try:
        for round_ in range(GATEWAY_ROUNDS):
            for workload, variant in (("trail", "plain"), ("trail", "verify"),
                                      ("genai", "plain"), ("genai", "chain")):
                config = _gateway_config(workload, variant, work)
                path = work / f"gateway-{workload}-{variant}.yaml"
                path.write_text(json.dumps(config, indent=1))
                gateway = CollectorService(
                    work / f"gateway-{round_}-{workload}-{variant}", config_file=path,
                    environment={"GOMAXPROCS": "1",
                                 "ARCHIVE_OTLP_ENDPOINT": archive.service.otlp_grpc_endpoint})
                gateway.start()
                try:
                    if workload == "trail":
                        spans = _ship_trail(store, gateway, archive)
                    else:
                        spans = _send_genai(producer, gateway, archive)
                finally:
                    gateway.stop()
                key = (workload, variant)
                best[key] = min(best.get(key, float("inf")), spans)
    finally:
        archive.service.stop()
    return best


def _gateway_config(workload: str, variant: str, work: Path) -> dict[str, object]:
    """The gateway's config for one run (endpoints from the environment CollectorService
    sets)."""
    extensions: dict[str, object] = {"health_check": {"endpoint": "${env:OTELCOL_HEALTH_ENDPOINT}"}}
    exporter: dict[str, object] = {"endpoint": "${env:ARCHIVE_OTLP_ENDPOINT}",
                                   "tls": {"insecure": True}}
    processors: dict[str, object] = {}
    if workload == "trail":
        extensions["file_storage/queue"] = {"directory": "${env:OTELCOL_WORKDIR}/queue",
                                            "create_directory": True, "fsync": True}
        exporter["sending_queue"] = {"enabled": True, "storage": "file_storage/queue",
                                     "block_on_overflow": True, "sizer": "items",
                                     "queue_size": 1_000_000}
        if variant == "verify":
            extensions["file_storage/audit"] = {"directory": "${env:OTELCOL_WORKDIR}/audit-state",
                                                "create_directory": True, "fsync": True}
            processors["audit"] = {"trusted_keys": [str(work / "key.pub.pem")],
                                   "storage": "file_storage/audit", "verdict": True}
    else:
        processors["batch"] = {}
        if variant == "chain":
            processors["audit"] = {"chain": {
                "signing_key": str(work / "gateway.pem"),
                "hmac_key_file": str(work / "hmac.key"), "attribute_prefixes": [],
                "content": "hash", "checkpoint_every": 1000, "checkpoint_interval": "1s"}}
    order = [name for name in ("audit", "batch") if name in processors]
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": "${env:OTELCOL_GRPC_ENDPOINT}"},
            "http": {"endpoint": "${env:OTELCOL_HTTP_ENDPOINT}"}}}},
        "processors": processors, "exporters": {"otlp/archive": exporter},
        "extensions": extensions,
        "service": {"extensions": list(extensions),
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": order,
                                             "exporters": ["otlp/archive"]}},
                    "telemetry": {"metrics": {"level": "none"}}}}


def _ship_trail(store: Path, gateway: CollectorService, archive: _Archive) -> float:
    """Ship a fresh copy of the trail through `gateway`: its CPU ns per record."""
    copy = store.with_name(f"ship-{time.monotonic_ns()}.db")
    shutil.copy(store, copy)
    expected = archive.count() + RECORDS
    before = _idle_cpu(gateway)
    shipper = Shipper(str(copy), OtlpSink.connect(gateway.otlp_grpc_endpoint), create_store=False)
    try:
        assert shipper.drain(timeout=600), shipper.stats
    finally:
        shipper.close()
        copy.unlink()
    return (_cpu_after(gateway, archive, expected) - before) / RECORDS


def _send_genai(producer: Path, gateway: CollectorService, archive: _Archive) -> float:
    """Send the producer's chat spans through `gateway`: its CPU ns per span."""
    spans = 2 * GENAI_CALLS
    expected = archive.count() + spans
    before = _idle_cpu(gateway)
    subprocess.run([str(producer), "-endpoint", gateway.otlp_http_endpoint, "-calls",
                    str(GENAI_CALLS), "-batch", "256"], check=True, capture_output=True,
                   timeout=600)
    return (_cpu_after(gateway, archive, expected) - before) / spans


def _process_cpu_ns(pid: int) -> int:
    """User and system CPU time of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _idle_cpu(gateway: CollectorService) -> int:
    """The gateway's CPU time once it has gone idle: no clock tick used for 0.5 s, twice."""
    assert gateway.process is not None and gateway.process.process is not None
    pid = gateway.process.process.pid
    quiet, last = 0, _process_cpu_ns(pid)
    while quiet < 2:
        time.sleep(0.5)
        now = _process_cpu_ns(pid)
        quiet = quiet + 1 if now == last else 0
        last = now
    return last


def _cpu_after(gateway: CollectorService, archive: _Archive, expected: int) -> int:
    """The gateway's CPU time once the archive holds `expected` spans and the gateway idles."""
    deadline = time.monotonic() + 600
    while archive.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the archive got {archive.count()} of {expected} spans")
        time.sleep(0.25)
    return _idle_cpu(gateway)


class _Archive:
    """The archive Collector, and the spans its OTLP/JSON file holds so far, read as it grows
    (each complete line once)."""

    def __init__(self, work: Path) -> None:
        # A whole batch (8,192 spans, the batch processor's default) exceeds gRPC's 4 MiB.
        self.service = CollectorService(work, extra_config={"receivers": {"otlp": {"protocols": {
            "grpc": {"max_recv_msg_size_mib": 256}}}}})
        self.offset = 0
        self.spans = 0

    def count(self) -> int:
        path = self.service.traces_path
        if path.exists():
            with path.open("rb") as file:
                file.seek(self.offset)
                text = file.read()
            text = text[:text.rfind(b"\n") + 1]
            self.offset += len(text)
            self.spans += sum(len(scope["spans"]) for line in text.splitlines() if line.strip()
                              for resource in json.loads(line)["resourceSpans"]
                              for scope in resource["scopeSpans"])
        return self.spans
