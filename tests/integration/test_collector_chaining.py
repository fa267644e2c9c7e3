"""Telemetry of a non-Python service chained into audit records at the gateway, end to end.

A small Go program (collector/auditprocessor/testdata/genai-producer) emits GenAI
semantic-convention chat spans by OTLP/HTTP to a gateway Collector, the real `otelcol-ai-audit`
binary running the `audit` processor with `chain` (collector_config/otelcol-audit-e2e-chain.yaml).
The gateway seals the selected spans into one chain signed with its own key and passes
everything on to an archive Collector. `otel-ai-audit verify --otlp-export --public-key <gateway
key>` must find the archive intact and closed, and must catch one archived record altered.
"""

from __future__ import annotations

import base64
import hmac
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import canonical_json
from tests.collector_fixtures import CollectorPair, archived_spans, attribute_map
from tests.services.base import REPO_ROOT, wait_until
from tests.services.collector import CollectorService, go_executable

GATEWAY = REPO_ROOT / "collector_config" / "otelcol-audit-e2e-chain.yaml"
PROCESSOR = REPO_ROOT / "collector" / "auditprocessor"
CALLS = 25


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
            workdir / "gateway", config_file=GATEWAY, extra_config=extra_config, environment={
                "ARCHIVE_OTLP_ENDPOINT": self.archive.otlp_grpc_endpoint,
                "GATEWAY_SIGNING_KEY_FILE": str(private), "GATEWAY_HMAC_KEY_FILE": str(hmac_key)})


    def produce(self, producer: Path, calls: int) -> None:
        subprocess.run([str(producer), "-endpoint", self.gateway.otlp_http_endpoint,
                        "-calls", str(calls)], check=True, capture_output=True, timeout=60)

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The attributes of the archived audit items of `kind`."""
        return [attributes for _, attributes in spans(self.archive.traces_path)
                if attributes.get("ai_audit.kind") == kind]

    def closing_checkpoints(self) -> list[dict[str, Any]]:
        payloads = [json.loads(base64.b64decode(attributes["ai_audit.checkpoint.payload"]))
                    for attributes in self.items("checkpoint")]
        return [payload for payload in payloads if payload["closed"]]

    def wait_for(self, records: int, chains: int) -> None:
        assert wait_until(lambda: len(self.items("record")) == records
                          and len(self.closing_checkpoints()) == chains, 30), \
            (len(self.items("record")), self.gateway.log_tail())


@pytest.mark.slow
def test_go_service_genai_spans_chained_at_the_gateway_verify(
        tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    public = keys[1]
    producer = build_producer(tmp_path)
    with ChainingRoute(tmp_path, keys) as route:
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
    records = route.items("record")

    # Every span of the service passed on (2 per call); only the chat spans were chained.
    service_spans = [a for owner, a in spans(archive.traces_path)
                     if owner.get("service.name") == "loan-assistant"]
    assert len(service_spans) == 2 * (CALLS + 3)
    first = json.loads(records[0]["ai_audit.record"])
    chains = {json.loads(r["ai_audit.record"])["chain"]["id"] for r in records}
    assert len(chains) == 2
    event = first["event"]
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
    assert all("can I borrow" not in r["ai_audit.record"] for r in records)

    report = verify(archive.traces_path, public)
    assert report["ok"], report["findings"]
    assert report["records"] == CALLS + 3

    # One archived record altered: the gateway's chain and signed checkpoints catch it.
    text = archive.traces_path.read_text()
    record = records[4]["ai_audit.record"]
    altered = record.replace('"loan-model-2026-11"', '"other-model"')
    assert altered != record
    encoded, changed = json.dumps(record)[1:-1], json.dumps(altered)[1:-1]
    assert text.count(encoded) == 1
    archive.traces_path.write_text(text.replace(encoded, changed))
    report = verify(archive.traces_path, public)
    assert not report["ok"]
    seq = json.loads(record)["chain"]["seq"]
    assert {(f["kind"], f["seq"]) for f in report["findings"]} >= {("record_modified", seq)}, \
        report["findings"]


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
def test_a_killed_gateway_leaves_its_chain_not_closed(
        tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    """SIGKILL: no closing checkpoint, which `verify` reports; the records it signed verify."""
    producer = build_producer(tmp_path)
    with ChainingRoute(tmp_path, keys) as route:
        route.produce(producer, 12)  # a checkpoint after 10 records, 2 records after it
        assert wait_until(lambda: len(route.items("record")) == 12
                          and len(route.items("checkpoint")) == 1, 30)
        route.gateway.kill()
        route.gateway.start()
    report = verify(route.archive.traces_path, keys[1])
    assert [(f["kind"], f["seq"]) for f in report["findings"]] == [("chain_not_closed", 11)], \
        report["findings"]
    assert report["records"] == 12
