"""The audit processor in the real `otelcol-ai-audit` binary, end to end.

A Python process's audit trail goes through a gateway Collector running the `audit` processor
(collector_config/otelcol-audit-e2e-gateway.yaml) into an archive Collector that writes what
arrives to a file. A small OTLP/HTTP proxy between the process and the gateway tampers with the
trail in transit. The processor must report each tampering as the right finding, on the
Collector's Prometheus endpoint and in its log, within seconds; it must pass everything on, so
that `otel-ai-audit verify --otlp-export` reports the same on the archive; and with its state in
file_storage it must go on where it stopped after SIGTERM and after SIGKILL.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.otlp.sink import OtlpSink
from otel_ai_audit.cli import main
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import key_beside, write_store
from tests.collector_fixtures import CollectorPair, archived_spans
from tests.instrumentation_fixtures import instrumented
from tests.services.base import REPO_ROOT, wait_until
from tests.services.collector import CollectorService, distinct_free_ports

GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-gateway.yaml"
FINDING_LINE = re.compile(r"audit finding: (chain \S+(?: seq \d+)?: \w+: [^\t\"\n]*)")
METRIC_LINE = re.compile(r"^(otelcol_audit_\w+?)(?:\{([^}]*)\})? (\S+)$", re.MULTILINE)


class AuditRoute(CollectorPair):
    """A gateway Collector with the audit processor, feeding an archive Collector."""

    def __init__(self, workdir: Path, public_key: Path, gap_timeout: str = "2s") -> None:
        self.archive = CollectorService(workdir / "archive", extra_config={
            "exporters": {"file/traces": {"append": True}}})
        (self.metrics_port,) = distinct_free_ports(1)
        self.gateway = CollectorService(workdir / "gateway", config_file=GATEWAY, environment={
            "ARCHIVE_OTLP_ENDPOINT": self.archive.otlp_grpc_endpoint,
            "AUDIT_PUBLIC_KEY_FILE": str(public_key),
            "AUDIT_GAP_TIMEOUT": gap_timeout,
            "METRICS_PORT": str(self.metrics_port)})


    def metrics(self) -> dict[tuple[str, str], float]:
        """The processor's metrics now: (name, kind label or "") -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {(name, _kind(labels)): float(value)
                for name, labels, value in METRIC_LINE.findall(text)}

    def findings(self) -> Counter[str]:
        """`otelcol_audit_findings` by kind."""
        return Counter({kind: int(value) for (name, kind), value in self.metrics().items()
                        if name == "otelcol_audit_findings"})

    def finding_lines(self) -> list[str]:
        """The finding lines of the gateway's log, over all its runs."""
        assert self.gateway.process is not None
        return FINDING_LINE.findall(self.gateway.process.log_path.read_text())

    def archived(self) -> list[dict[str, Any]]:
        """The attributes of every record span in the archive, repeats included."""
        return [attributes for _, attributes in archived_spans(self.archive.traces_path)
                if attributes.get("ai_audit.kind") == "record"]

    def archived_records(self) -> Counter[int]:
        """The seq of every record span in the archive, repeats counted."""
        return Counter(int(span["ai_audit.chain.seq"]) for span in self.archived())


def _kind(labels: str) -> str:
    match = re.search(r'kind="([^"]*)"', labels)
    return match.group(1) if match else ""


Tampering = Callable[[Span], list[Span]]


class TamperingProxy:
    """OTLP/HTTP between the process and the gateway, rewriting spans as an attacker on the
    network would; each tampering applies once, to the item it names, and the process is told
    its export succeeded."""

    def __init__(self, upstream: str, tamperings: dict[tuple[str, int], Tampering]) -> None:
        self.upstream = upstream.rstrip("/") + "/v1/traces"
        self.tamperings = dict(tamperings)
        self.applied: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                forwarded = urllib.request.Request(
                    proxy.upstream, data=proxy.rewrite(body),
                    headers={"Content-Type": "application/x-protobuf"})
                with urllib.request.urlopen(forwarded, timeout=10) as response:
                    status, answer = response.status, response.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def rewrite(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    spans: list[Span] = []
                    for span in scope.spans:
                        target = _target(span)
                        tampering = self.tamperings.pop(target, None) if target else None
                        if tampering is None:
                            spans.append(span)
                        else:
                            self.applied.append(target)  # type: ignore[arg-type]
                            spans.extend(tampering(span))
                    del scope.spans[:]
                    scope.spans.extend(spans)
        return bytes(request.SerializeToString())

    def __enter__(self) -> TamperingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(span: Span) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def _target(span: Span) -> tuple[str, int] | None:
    """("record", seq) or ("checkpoint", index) of an audit span."""
    attributes = _attributes(span)
    kind = attributes.get("ai_audit.kind")
    if kind == "record":
        return "record", int(attributes["ai_audit.chain.seq"])
    if kind == "checkpoint":
        return "checkpoint", int(attributes["ai_audit.checkpoint.index"])
    return None


def _set(span: Span, key: str, value: str) -> None:
    for attribute in span.attributes:
        if attribute.key == key:
            attribute.value.string_value = value


def alter_record(span: Span) -> list[Span]:
    """The record's event says something else (still canonical JSON)."""
    record = json.loads(_attributes(span)["ai_audit.record"])
    record["event"]["altered_in_transit"] = True
    _set(span, "ai_audit.record", canonical_json(record).decode())
    return [span]


def drop(span: Span) -> list[Span]:
    return []


def duplicate(span: Span) -> list[Span]:
    copy = Span()
    copy.CopyFrom(span)
    return [span, copy]


def break_signature(span: Span) -> list[Span]:
    signature = bytearray(base64.b64decode(_attributes(span)["ai_audit.checkpoint.signature"]))
    signature[0] ^= 0x01
    _set(span, "ai_audit.checkpoint.signature", base64.b64encode(signature).decode())
    return [span]


def verify_archive(route: AuditRoute, public_key: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["verify", "--otlp-export", str(route.archive.traces_path),
                                       "--public-key", str(public_key), "--json"])
    assert result.exit_code in (0, 1), result.output
    return dict(json.loads(result.stdout))


def finding_line(finding: dict[str, Any]) -> str:
    """A finding of `verify --json` as the line the processor logs."""
    where = f"chain {finding['chain_id']}" if finding.get("chain_id") else "store"
    if finding.get("seq") is not None:
        where += f" seq {finding['seq']}"
    return f"{where}: {finding['kind']}: {finding['detail']}"


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    """The audited process's directory, its signing key made first (the gateway trusts it)."""
    (tmp_path / "app").mkdir()
    key_beside(tmp_path / "app" / "audit.db")
    return tmp_path / "app"


@pytest.mark.slow
def test_tampering_in_transit_is_reported_by_the_gateway_within_seconds(
        tmp_path: Path, app_dir: Path) -> None:
    public_key = app_dir / "audit.db.pub.pem"
    tamperings: dict[tuple[str, int], Tampering] = {
        ("record", 3): alter_record, ("record", 6): drop, ("record", 9): duplicate,
        ("checkpoint", 1): break_signature}
    rng = np.random.default_rng(5)
    features = rng.normal(size=(200, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    with AuditRoute(tmp_path / "collectors", public_key) as route, \
            TamperingProxy(route.gateway.otlp_http_endpoint, tamperings) as proxy:
        with instrumented(app_dir, SklearnInstrumentor, otlp_endpoint=proxy.url,
                          otlp_protocol="http/protobuf", checkpoint_every=4) as process:
            for row in range(20):
                model.predict(features[row:row + 1])
            process.close()  # seals, signs the closing checkpoint and ships everything
        assert sorted(proxy.applied) == sorted(tamperings)
        with AuditStore(process.store, create=False, readonly=True) as store:
            (chain,) = store.chain_ids()
            total = sum(1 for _ in store.records(chain))
        # Within 10 s of the last export (gap_timeout is 2 s here), on the Prometheus endpoint.
        expected = {"record_modified", "gap", "duplicate", "bad_signature"}
        assert wait_until(lambda: expected <= set(route.findings()), 10, 0.2), \
            (route.findings(), route.gateway.log_tail())
        lines = route.finding_lines()
        for kind, seq in [("record_modified", 3), ("gap", 6), ("duplicate", 9)]:
            assert any(line.startswith(f"chain {chain} seq {seq}: {kind}: ") for line in lines), \
                lines
        assert any(": bad_signature: " in line for line in lines), lines
        assert sum(route.findings().values()) == len(lines)
        # Each record that arrived is checked once: 6 never came, 9 came twice.
        assert route.metrics()[("otelcol_audit_records_verified", "")] == total - 1

        # Nothing dropped, nothing changed: the archive has what the gateway received.
        assert wait_until(lambda: sum(route.archived_records().values()) == total, 30), \
            route.archived_records()
        assert route.archived_records() == Counter({**{seq: 1 for seq in range(total)
                                                       if seq != 6}, 9: 2})
        # The verdict each record carries says what the gateway knew as it passed: the repeat
        # of 9 is a duplicate; 7 and those that came with it waited for the 6 that never came;
        # the altered 3 looked fine until 4 arrived (that is in the log and the metrics).
        verdicts = Counter((int(span["ai_audit.chain.seq"]), span["ai_audit.verdict"])
                           for span in route.archived())
        assert verdicts[9, "duplicate"] == 1 and verdicts[7, "pending"] == 1, verdicts
        assert all(verdict == "ok" or (verdict == "pending" and seq > 6)
                   for seq, verdict in verdicts if (seq, verdict) != (9, "duplicate")), verdicts
        time.sleep(1)  # the checkpoints follow their records
        report = verify_archive(route, public_key)
        assert not report["ok"]
        # The archive shows what the gateway said in flight, line for line; an identical
        # repeat is one item to `verify --otlp-export`, so only the processor reports it.
        archive_lines = sorted(finding_line(f) for f in report["findings"])
        assert archive_lines == sorted(line for line in lines if ": duplicate: " not in line)


@pytest.mark.slow
def test_the_gateway_goes_on_where_it_stopped_after_sigterm_and_sigkill(
        tmp_path: Path, app_dir: Path) -> None:
    """Each restart comes right after a record that never arrived: the gap across the restart
    is found only if the processor kept the chain's state; nothing else is found."""
    store = app_dir / "audit.db"
    signing = SigningKey.load(key_beside(store))
    write_store(store, signing, records=29, checkpoint_every=5)
    with AuditStore(store, create=False, readonly=True) as audit:
        (chain,) = audit.chain_ids()
        records = audit.records_after(chain, -1, 1000)
        checkpoints = audit.checkpoints(chain)
    assert len(records) == 30
    lost = {10, 20}

    def send(first: int, last: int) -> None:
        sink.send_records([r for r in records[first:last] if r.seq not in lost])
        sink.send_checkpoints([c for c in checkpoints if first < c.size <= last])

    with AuditRoute(tmp_path / "collectors", Path(f"{store}.pub.pem")) as route:
        sink = OtlpSink.connect(route.gateway.otlp_grpc_endpoint)
        try:
            send(0, 11)  # 10 lost, then SIGTERM
            route.gateway.stop()
            route.gateway.start()
            send(11, 21)  # 11 follows the lost 10; 20 lost, then SIGKILL
            assert wait_until(lambda: route.metrics()[
                ("otelcol_audit_records_verified", "")] == 9, 10, 0.2)
            route.gateway.kill()
            route.gateway.start()
            send(21, 30)
        finally:
            sink.close()
        assert wait_until(lambda: route.metrics().get(("otelcol_audit_chains_open", "")) == 0,
                          10, 0.2), route.metrics()
        assert wait_until(lambda: len(route.finding_lines()) >= 2, 10, 0.2)
        time.sleep(1)
        lines = route.finding_lines()
        assert [line.split(": ")[:2] for line in lines] == [
            [f"chain {chain} seq 10", "gap"], [f"chain {chain} seq 20", "gap"]], lines
        assert route.metrics()[("otelcol_audit_records_verified", "")] == 9
        assert wait_until(lambda: len(route.archived_records()) == 28, 30)
        time.sleep(1)
        report = verify_archive(route, Path(f"{store}.pub.pem"))
        assert sorted(finding_line(f) for f in report["findings"]) == lines
