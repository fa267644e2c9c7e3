"""Telemetry of a non-Python service chained into audit records at the gateway, end to end.

A small Go program (collector/auditprocessor/testdata/genai-producer) emits GenAI
semantic-convention chat spans by OTLP/HTTP to a gateway Collector, the real `otelcol-ai-audit`
binary running the `audit` processor with `chain` (collector_config/otelcol-audit-e2e-chain.yaml).
The gateway seals the selected spans into one chain per start, signed with its own key, each
chain opened by a `chain_open` record that names the chain of the previous start (kept in
file_storage), and passes everything on to an archive Collector. `otel-ai-audit verify
--otlp-export --public-key <gateway key>` must find the archive intact and closed, and must
catch one archived record altered, a chain left open by SIGKILL and a chain removed.
"""

from __future__ import annotations

import base64
import hmac
import json
import subprocess
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otel_ai_audit.backends.otlp.sealed import SEAL, decode_seal
from otel_ai_audit.backends.otlp.source import export_items
from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import canonical_json
from tests.collector_fixtures import CollectorPair, archived_spans, attribute_map
from tests.services.base import REPO_ROOT, wait_until
from tests.services.collector import CollectorService, go_executable

GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-chain.yaml"
PROCESSOR = REPO_ROOT / "collector" / "auditprocessor"
CALLS = 25
STORAGE: dict[str, Any] = {
    "extensions": {"file_storage/audit": {"directory": "${env:OTELCOL_WORKDIR}/audit-state",
                                          "create_directory": True, "fsync": True}},
    "processors": {"audit": {"storage": "file_storage/audit"}},
    "service": {"extensions": ["health_check", "file_storage/queue", "file_storage/audit"]}}
"""Merged over the gateway config: the processor keeps the id of its last chain in file_storage,
so that the next start's chain_open names it."""


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, maps merged key by key (as the Collector merges its configs)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def build_producer(directory: Path) -> Path:
    binary = directory / "genai-producer"
    subprocess.run([go_executable(), "build", "-o", str(binary), "./testdata/genai-producer"],
                   cwd=PROCESSOR, check=True, capture_output=True, timeout=600)
    return binary


def spans(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span attributes) of every span of an OTLP/JSON lines file."""
    for resource, attributes in archived_spans(path):
        yield attribute_map(resource["attributes"]), attributes


def verify(archive: Path, public_key: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["verify", "--otlp-export", str(archive),
                                       "--public-key", str(public_key), "--json"])
    assert result.exit_code in (0, 1), result.output
    return dict(json.loads(result.stdout))


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The gateway's signing key, its public half, and the HMAC key of content hashes."""
    SigningKey.generate().save(tmp_path / "gateway.key.pem", tmp_path / "gateway.pub.pem")
    (tmp_path / "gateway.hmac").write_text("gateway-hmac-key-for-the-test\n")
    return tmp_path / "gateway.key.pem", tmp_path / "gateway.pub.pem", tmp_path / "gateway.hmac"


class ChainingRoute(CollectorPair):
    """The chaining gateway (real binary) feeding an archive Collector."""

    def __init__(self, workdir: Path, keys: tuple[Path, Path, Path],
                 extra_config: dict[str, Any] | None = None) -> None:
        private, _, hmac_key = keys
        self.archive = CollectorService(workdir / "archive")
        self.gateway = CollectorService(
            workdir / "gateway", config_file=GATEWAY,
            extra_config=merged(STORAGE, extra_config or {}), environment={
                "ARCHIVE_OTLP_ENDPOINT": self.archive.otlp_grpc_endpoint,
                "GATEWAY_SIGNING_KEY_FILE": str(private), "GATEWAY_HMAC_KEY_FILE": str(hmac_key)})

    def produce(self, producer: Path, calls: int, service: str = "loan-assistant") -> None:
        subprocess.run([str(producer), "-endpoint", self.gateway.otlp_http_endpoint,
                        "-calls", str(calls), "-service", service], check=True,
                       capture_output=True, timeout=60)

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The attributes of the archived audit items of `kind`."""
        return [attributes for _, attributes in spans(self.archive.traces_path)
                if attributes.get("ai_audit.kind") == kind]

    def record_texts(self) -> list[str]:
        """The archived records' canonical text, in archive order (repeats included): the
        record spans' `ai_audit.record`, and the records rebuilt from spans sealed with
        `records: attached`, as `verify` reads them."""
        path = self.archive.traces_path
        lines = path.read_text().splitlines() if path.exists() else []
        if not any(line.strip() for line in lines):
            return []  # nothing archived yet
        return [value[2].decode() for kind, value in export_items(lines, str(path))
                if kind == "record"]

    def records(self) -> list[dict[str, Any]]:
        """The archived records, parsed, in archive order (repeats included)."""
        return [json.loads(text) for text in self.record_texts()]

    def chained(self) -> list[dict[str, Any]]:
        """The events of the archived records that chain the service's telemetry (not the
        chain_open records)."""
        return [r["event"] for r in self.records() if r["event"]["type"] != "chain_open"]

    def opened(self) -> dict[str, Any]:
        """The parent each chain's chain_open names, by chain id, in archive order."""
        return {r["chain"]["id"]: r["event"]["parent_chain_id"] for r in self.records()
                if r["event"]["type"] == "chain_open"}

    def closing_checkpoints(self) -> list[dict[str, Any]]:
        payloads = [json.loads(base64.b64decode(attributes["ai_audit.checkpoint.payload"]))
                    for attributes in self.items("checkpoint")]
        return [payload for payload in payloads if payload["closed"]]

    def wait_for_more(self, chained: int) -> None:
        """Until `chained` more records of the service are archived than now."""
        target = len(self.chained()) + chained
        assert wait_until(lambda: len(self.chained()) >= target, 30), self.gateway.log_tail()

    def wait_for(self, chained: int, chains: int) -> None:
        """Until the archive holds `chained` records of the service and `chains` closed chains."""
        assert wait_until(lambda: len(self.chained()) == chained
                          and len(self.closing_checkpoints()) == chains, 30), \
            (len(self.chained()), self.gateway.log_tail())


@pytest.mark.slow
@pytest.mark.parametrize("records", ["attached", "separate"])
def test_go_service_genai_spans_chained_at_the_gateway_verify(
        tmp_path: Path, keys: tuple[Path, Path, Path], records: str) -> None:
    """With `records: attached` (the default) each chat span carries its record's seal and
    the verifier rebuilds the record from the archived span; with `separate` the record
    travels as a span of its own beside it. The same checks hold for both."""
    public = keys[1]
    producer = build_producer(tmp_path)
    mode = {"processors": {"audit": {"chain": {"records": records}}}}
    with ChainingRoute(tmp_path, keys, extra_config=mode) as route:
        route.produce(producer, CALLS)
        route.gateway.stop()  # SIGTERM: the processor signs the closing checkpoint
        route.gateway.start()  # a new Collector process starts a new chain
        route.produce(producer, 3)
        route.gateway.stop()
        # The persistent queue keeps what the exporter had not sent at shutdown (here the
        # closing checkpoint) for the next start; that start, with no traffic, starts no chain.
        route.gateway.start()
        route.wait_for(CALLS + 3, chains=2)
    archive = route.archive

    # Every span of the service passed on (2 per call); only the chat spans were chained.
    service_spans = [a for owner, a in spans(archive.traces_path)
                     if owner.get("service.name") == "loan-assistant"]
    assert len(service_spans) == 2 * (CALLS + 3)
    sealed = [a for a in service_spans if SEAL in a]
    assert len(sealed) == (CALLS + 3 if records == "attached" else 0)
    assert len(route.items("record")) == (2 if records == "attached" else CALLS + 3 + 2)
    # Two chains, the second opened naming the first, which names none. (The archive holds
    # them in the order the exporter's concurrent consumers delivered them: go by the chains.)
    first_chain, _ = linked(route.opened())
    # The first call's chat span: the record after the first chain's chain_open.
    event = next(r["event"] for r in route.records()
                 if r["chain"]["id"] == first_chain and r["chain"]["seq"] == 1)
    assert event["type"] == "inference"
    assert event["model"] == {"name": "loan-model-2026-11", "provider": "vllm"}
    assert event["operation"] == "chat" and event["service"] == {"name": "loan-assistant"}
    assert event["attributes"]["gen_ai.usage.input_tokens"] == 40
    assert "http.route" not in event["attributes"]
    # The prompt is in the record only as its keyed hash, which the key's holder recomputes.
    prompt = ('[{"role":"user","parts":[{"type":"text","content":'
              '"Applicant 0 asks: can I borrow 1000 euros?"}]}]')
    expected = hmac.new(b"gateway-hmac-key-for-the-test",
                        canonical_json({"gen_ai.input.messages": prompt}), "sha256").hexdigest()
    assert event["input"] == {"policy": "hash", "hmac_sha256": expected}
    assert all("can I borrow" not in text for text in route.record_texts())

    report = verify(archive.traces_path, public)
    assert report["ok"], report["findings"]
    assert report["records"] == CALLS + 3 + 2  # and the two chain_open records
    prove_and_build_evidence(archive.traces_path, route.chained()[3]["id"], public, tmp_path)

    # One archived record altered (with `attached`: the chat span its seal is on): the
    # gateway's chain and signed checkpoints catch it.
    seq = (alter_sealed_span if records == "attached" else alter_record_span)(
        archive.traces_path, 5)
    report = verify(archive.traces_path, public)
    assert not report["ok"]
    assert {(f["kind"], f["seq"]) for f in report["findings"]} >= {("record_modified", seq)}, \
        report["findings"]


def alter_record_span(archive: Path, index: int) -> int:
    """Put another model name into the `index`-th chained record span's record; its seq."""
    text = archive.read_text()
    record = next(attributes["ai_audit.record"] for attributes in islice(
        (a for _, a in spans(archive) if a.get("ai_audit.kind") == "record"
         and '"chain_open"' not in a["ai_audit.record"]), index, None))
    altered = record.replace('"loan-model-2026-11"', '"other-model"')
    assert altered != record
    encoded, changed = json.dumps(record)[1:-1], json.dumps(altered)[1:-1]
    assert text.count(encoded) == 1
    archive.write_text(text.replace(encoded, changed))
    return int(json.loads(record)["chain"]["seq"])


def alter_sealed_span(archive: Path, index: int) -> int:
    """Put another model name into the `index`-th sealed chat span; the seq of its record."""
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    span = list(islice((span for line in lines for resource in line["resourceSpans"]
                        for scope in resource["scopeSpans"] for span in scope["spans"]
                        if span["name"].startswith("chat")), index, index + 1))[0]
    attributes = {pair["key"]: pair["value"] for pair in span["attributes"]}
    assert attributes["gen_ai.response.model"] == {"stringValue": "loan-model-2026-11"}
    attributes["gen_ai.response.model"]["stringValue"] = "other-model"
    archive.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return decode_seal(base64.b64decode(attributes[SEAL]["bytesValue"])).seq


def prove_and_build_evidence(archive: Path, decision: str, public: Path, work: Path) -> None:
    """`prove` and `evidence` read a store: the archive imported into one, both work on the
    gateway's records as on the Python writer's, and their outputs check out offline."""
    store = work / "imported.db"
    cli = CliRunner()
    result = cli.invoke(main, ["import", str(store), "--otlp-export", str(archive)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(main, ["verify", str(store), "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    proof = work / "proof.json"
    result = cli.invoke(main, ["prove", str(store), decision, "--out", str(proof)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(main, ["verify-proof", str(proof), "--public-key", str(public)])
    assert result.exit_code == 0, result.output

    SigningKey.generate().save(work / "officer.key.pem", work / "officer.pub.pem")
    bundle = work / "bundle"
    result = cli.invoke(main, [
        "evidence", str(store), "--system", "otel-ai-audit-gateway", "--last", "1d",
        "--out", str(bundle), "--decision", decision, "--signing-key",
        str(work / "officer.key.pem"), "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    assert f"{CALLS + 3} decision(s)" in result.output, result.output
    result = cli.invoke(main, ["verify-bundle", str(bundle), "--public-key", str(public),
                               "--public-key", str(work / "officer.pub.pem")])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_gateway_sampling_keeps_what_it_chains_and_signs_what_it_drops(
        tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    """With every ordinary span sampled out, the chat spans (chained) and the failed calls
    (keep_errors) still pass, and the closing checkpoint signs how many spans were dropped."""
    producer = build_producer(tmp_path)
    sampling = {"processors": {"audit": {"sampling": {"rate": 0.0, "keep_errors": True}}}}
    with ChainingRoute(tmp_path, keys, extra_config=sampling) as route:
        route.produce(producer, 10)
        route.gateway.stop()
        route.gateway.start()  # sends the closing checkpoint kept in the persistent queue
        route.wait_for(10, chains=1)
    passed = [(attributes.get("gen_ai.operation.name"), attributes.get("error.type"))
              for owner, attributes in spans(route.archive.traces_path)
              if owner.get("service.name") == "loan-assistant"]
    # The producer's call 8 fails; its chat span carries the error, its server span does not.
    assert sorted(passed, key=str) == sorted([("chat", None)] * 9 + [("chat", "timeout")], key=str)
    (closing,) = route.closing_checkpoints()
    assert closing["counters"] == {"sampled_out": {"loan-assistant": 10}}
    report = verify(route.archive.traces_path, keys[1])
    assert report["ok"], report["findings"]


@pytest.mark.slow
def test_gateway_restarts_mid_stream_link_the_chains(
        tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    """While the Go service streams, the gateway is stopped with SIGTERM, later killed with
    SIGKILL, each time restarted. Each start opens a chain whose chain_open names the one
    before. `verify` finds what it finds for a crashed Python process, and nothing else:
    `chain_not_closed` at the killed chain's last record. A whole chain removed from the
    archive is then `missing_chain`, named by its successor's chain_open."""
    producer = build_producer(tmp_path)
    calls = 40
    with ChainingRoute(tmp_path, keys) as route:
        stream = subprocess.Popen(
            [str(producer), "-endpoint", route.gateway.otlp_http_endpoint, "-calls", str(calls),
             "-batch", "2", "-interval", "150ms", "-retry", "60s"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for restart in (route.gateway.stop, route.gateway.kill):
                route.wait_for_more(8)
                restart()
                route.gateway.start()
            output, _ = stream.communicate(timeout=120)
            assert stream.returncode == 0, output
        finally:
            stream.kill()
        route.gateway.stop()  # the last chain's closing checkpoint waits in the queue...
        route.gateway.start()  # ...and is sent at this start, which chains nothing
        assert wait_until(lambda: len(route.closing_checkpoints()) == 2, 30), \
            route.gateway.log_tail()
        # Every chat call is chained at least once (a request whose answer the restart cut
        # off is sent again, and chained again in the next chain).
        assert wait_until(lambda: {e["trace"]["span_id"] for e in route.chained()} ==
                          set(chat_span_ids(route)), 30)
    first, killed, last = linked(route.opened())

    archive = route.archive.traces_path
    last_of_killed = max(r["chain"]["seq"] for r in route.records() if r["chain"]["id"] == killed)
    report = verify(archive, keys[1])
    assert [(f["kind"], f["chain_id"], f["seq"]) for f in report["findings"]] == \
        [("chain_not_closed", killed, last_of_killed)], report["findings"]

    # The first chain removed from the archive: its successor's chain_open names it.
    lines = [without_chain(json.loads(line), first)
             for line in archive.read_text().splitlines()]
    archive.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = verify(archive, keys[1])
    assert sorted((f["kind"], f["chain_id"]) for f in report["findings"]) == \
        [("chain_not_closed", killed), ("missing_chain", first)], report["findings"]


@pytest.mark.slow
def test_one_processor_per_service_gives_each_system_its_own_chain_and_evidence(
        tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    """A gateway in front of several services, with an `audit/<name>` processor per service in
    one pipeline (each selecting its service): each service's telemetry is sealed into a chain
    of its own whose chain_open names the service, so `evidence --system` answers for one
    system. The second processor also verifies in flight what the first sealed (its key is
    trusted), and finds nothing wrong."""
    _, public, _ = keys
    producer = build_producer(tmp_path)

    def chaining(service: str) -> dict[str, Any]:
        return {"chain": {"signing_key": "${env:GATEWAY_SIGNING_KEY_FILE}",
                          "hmac_key_file": "${env:GATEWAY_HMAC_KEY_FILE}",
                          "services": [service], "attribute_prefixes": ["gen_ai."],
                          "checkpoint_every": 10, "checkpoint_interval": "1s"},
                "storage": "file_storage/audit", "trusted_keys": [str(public)]}

    per_service = {
        "processors": {"audit/loans": chaining("loan-assistant"),
                       "audit/support": chaining("support-bot")},
        "service": {"pipelines": {"traces": {"processors": ["audit/loans", "audit/support"]}}}}
    with ChainingRoute(tmp_path, keys, extra_config=per_service) as route:
        route.produce(producer, 12)
        route.produce(producer, 8, service="support-bot")
        route.gateway.stop()
        route.gateway.start()  # sends the closing checkpoints kept in the persistent queue
        route.wait_for(20, chains=2)
        assert route.gateway.process is not None
        log = route.gateway.process.log_path.read_text(errors="replace")  # both starts
        assert "audit finding" not in log, route.gateway.log_tail()
    archive = route.archive.traces_path

    systems = {r["chain"]["id"]: r["event"]["service"]["name"] for r in route.records()
               if r["event"]["type"] == "chain_open"}
    assert sorted(systems.values()) == ["loan-assistant", "support-bot"]
    for owner, attributes in spans(archive):
        if SEAL in attributes:
            assert systems[str(chain_of(attributes))] == owner["service.name"]
    report = verify(archive, public)
    assert report["ok"], report["findings"]
    assert report["records"] == 20 + 2

    store = tmp_path / "imported.db"
    cli = CliRunner()
    result = cli.invoke(main, ["import", str(store), "--otlp-export", str(archive)])
    assert result.exit_code == 0, result.output
    SigningKey.generate().save(tmp_path / "officer.key.pem", tmp_path / "officer.pub.pem")
    for system, decisions in (("loan-assistant", 12), ("support-bot", 8)):
        result = cli.invoke(main, [
            "evidence", str(store), "--system", system, "--last", "1d",
            "--out", str(tmp_path / system), "--signing-key", str(tmp_path / "officer.key.pem"),
            "--public-key", str(public)])
        assert result.exit_code == 0 and f"{decisions} decision(s)" in result.output, \
            result.output


def linked(opened: dict[str, Any]) -> list[str]:
    """The chains in the order each names the one before as its parent, from the one that
    names none; every chain opened is in it once. (The archive holds them in the order the
    exporter's concurrent consumers delivered them, which need not be that.)"""
    order = [chain for chain, parent in opened.items() if parent is None]
    assert len(order) == 1, opened
    while len(order) < len(opened):
        (child,) = [chain for chain, parent in opened.items() if parent == order[-1]]
        order.append(child)
    return order


def chat_span_ids(route: ChainingRoute) -> list[str]:
    """The span ids of the chat spans the service sent (archived as they passed)."""
    return [span["spanId"] for line in route.archive.traces_path.read_text().splitlines()
            for resource in json.loads(line)["resourceSpans"]
            for scope in resource["scopeSpans"] for span in scope["spans"]
            if span["name"].startswith("chat")]


def without_chain(document: dict[str, Any], chain_id: str) -> dict[str, Any]:
    """An OTLP/JSON line without the audit spans of one chain, nor the spans sealed into it."""
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            scope["spans"] = [span for span in scope["spans"]
                              if chain_of(attribute_map(span.get("attributes", []))) != chain_id]
    return document


def chain_of(attributes: dict[str, Any]) -> str | None:
    """The chain an archived span's record belongs to: its own, or its seal's."""
    if SEAL in attributes:
        return decode_seal(base64.b64decode(attributes[SEAL])).chain_id.hex()
    return attributes.get("ai_audit.chain.id")
