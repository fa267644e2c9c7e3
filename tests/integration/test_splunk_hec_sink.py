"""Shipping to Splunk's HTTP Event Collector, and verifying the trail from a Splunk export.

The peer is the loopback HEC of `tests.services.splunk_hec` (the documented protocol: tokens,
concatenated events, channels and acks, error codes, injected 503s): neither Splunk nor the
Collector's splunkhecreceiver can run here (see that module). Stores are written by the real
`AuditWriter` or the sklearn instrumentation and shipped by the real `Shipper`; exports are
verified with `otel-ai-audit verify --splunk-export`, and compared with the store's findings
as exact sets of (chain, seq, kind).
"""

from __future__ import annotations

import calendar
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.backends.otlp.sink import checkpoint_span, record_span
from otel_ai_audit.backends.splunk_hec import layout
from otel_ai_audit.backends.splunk_hec.client import EVENT_PATH, HecClient
from otel_ai_audit.backends.splunk_hec.sink import SplunkHecSink
from otel_ai_audit.cli import main
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.sinks import DeliveryError, Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import (
    SMALL_STORE_EVENTS,
    chain_ids,
    edit_event,
    rows,
    set_data,
    tamper,
)
from tests.instrumentation_fixtures import instrumented
from tests.services.splunk_hec import SplunkHec, Token, serve

TOKEN = "00000000-0000-0000-0000-00000000c0de"
ACK_TOKEN = "00000000-0000-0000-0000-0000000000ac"
EVENTS = SMALL_STORE_EVENTS


@pytest.fixture
def hec() -> Iterator[SplunkHec]:
    with serve(SplunkHec(tokens={TOKEN: Token(), ACK_TOKEN: Token(ack=True)})) as server:
        yield server


def ship(store: Path, sink: SplunkHecSink, timeout: float = 60) -> Shipper:
    shipper = Shipper(str(store), sink, max_backoff=0.5)
    delivered = shipper.drain(timeout=timeout)
    shipper.close()
    assert delivered, shipper.stats
    return shipper


def verify(*arguments: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", *arguments, "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def located(report: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(f["chain_id"], f["seq"], f["kind"]) for f in report["findings"]}


def seqs(hec: SplunkHec) -> Counter[int]:
    return Counter(int(event["fields"]["chain.seq"]) for event in hec.records())


# --- the whole path -------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_thousand_decisions_arrive_complete_and_verify_from_the_export(
        tmp_path: Path, hec: SplunkHec) -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(1000, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    hec.busy(2)  # HEC busy at the start: the runtime's shipper retries
    with instrumented(tmp_path, SklearnInstrumentor, splunk_hec_url=hec.url,
                      splunk_hec_token=TOKEN, splunk_hec_index="audit") as process:
        assert [type(s.sink) for s in process.runtime.shippers] == [SplunkHecSink]
        for _ in range(10):
            model.predict(features)
        process.close()
    (chain,) = chain_ids(process.store)
    stored = {row["seq"]: row["data"] for row in rows(process.store, chain)}
    assert len(stored) == 10_001  # chain_open and 10,000 decisions
    assert seqs(hec) == Counter(list(stored))  # each exactly once
    for event in hec.records():  # the contract the Splunk searches rely on
        assert event["event"].encode() == stored[int(event["fields"]["chain.seq"])]
        assert event["index"] == "audit" and event["source"] == "otel-ai-audit"
        assert isinstance(event["time"], float)
    assert Counter(e["sourcetype"] for e in hec.indexed)["otel_ai_audit:key"] == 1
    public_key = f"{process.store}.pub.pem"
    _, from_store = verify(str(process.store), "--public-key", public_key)
    for export in (hec.export(tmp_path / "export.json"), hec.payload(tmp_path / "hec.json")):
        code, report = verify("--splunk-export", str(export), "--public-key", public_key)
        assert code == 0 and report["ok"], report["findings"]
        assert report["records"] == from_store["records"] == 10_001
        assert report["chain_summaries"] == from_store["chain_summaries"]


def test_tampered_and_deleted_events_are_found_as_in_the_store(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], hec: SplunkHec) -> None:
    ship(small_store, SplunkHecSink(hec.url, TOKEN))
    export = hec.export(tmp_path / "export.json")
    lines = export.read_text().splitlines()
    results = [json.loads(line)["result"] for line in lines]
    edited = next(i for i, r in enumerate(results) if r.get("chain.seq") == "7")
    deleted = next(i for i, r in enumerate(results) if r.get("chain.seq") == "12")
    results[edited]["_raw"] = edit_event(results[edited]["_raw"].encode(),
                                         output={"score": 0.99}).decode()
    export.write_text("".join(json.dumps({"preview": False, "result": r}) + "\n"
                              for i, r in enumerate(results) if i != deleted))
    code, report = verify("--splunk-export", str(export), "--public-key", str(key[1]))
    # The same damage done to a copy of the store is found the same way.
    copy = tmp_path / "copy.db"
    shutil.copy(small_store, copy)
    (chain,) = chain_ids(copy)
    set_data(copy, chain, 7, edit_event(rows(copy, chain)[7]["data"], output={"score": 0.99}))
    tamper(copy, "DELETE FROM records WHERE seq = 12")
    _, expected = verify(str(copy), "--public-key", str(key[1]))
    assert code == 1 and not report["ok"]
    assert located(report) == located(expected)
    assert {(chain, 7), (chain, 12)} <= {(c, s) for c, s, _ in located(report)}


@pytest.mark.parametrize("shape", ["as indexed", "multi-valued", "integers"])
def test_exports_verify_whatever_the_shape_of_the_indexed_position(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], hec: SplunkHec,
        shape: str) -> None:
    """Strings as HEC indexed them; two equal values each, as an export of an app with
    `KV_MODE = json` beside the indexed fields has them; integers, as the sink sent before
    HEC's strings-only rule was followed."""
    ship(small_store, SplunkHecSink(hec.url, TOKEN))
    if shape == "integers":
        for event in hec.indexed:
            event["fields"] = {name: int(value) if name in ("chain.seq", "checkpoint.index")
                               else value for name, value in event["fields"].items()}
        export = hec.payload(tmp_path / "hec.json")
    else:
        export = hec.export(tmp_path / "export.json")
        if shape == "multi-valued":
            lines = [json.loads(line) for line in export.read_text().splitlines()]
            for line in lines:
                for name in ("chain.id", "chain.seq"):
                    if name in line["result"]:
                        line["result"][name] = [line["result"][name]] * 2
            export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, report = verify("--splunk-export", str(export), "--public-key", str(key[1]))
    assert code == 0 and report["records"] == EVENTS + 1, report["findings"]


def test_hec_busy_and_throttling_lose_nothing_and_duplicate_nothing(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], hec: SplunkHec) -> None:
    hec.busy(3)
    hec.throttle(2)
    shipper = ship(small_store, SplunkHecSink(hec.url, TOKEN, max_bytes=2000))
    assert shipper.stats.retried > 0 and shipper.stats.rejected == 0
    assert seqs(hec) == Counter(range(EVENTS + 1))
    checkpoint_events = [e for e in hec.indexed if e["sourcetype"] == "otel_ai_audit:checkpoint"]
    assert len(checkpoint_events) == len({e["event"] for e in checkpoint_events}) == 6
    code, report = verify("--splunk-export", str(hec.export(tmp_path / "e.json")),
                          "--public-key", str(key[1]))
    assert code == 0, report["findings"]
    assert not any("more than once" in notice for notice in report["notices"])


def test_indexer_acknowledgement_waits_for_the_acks_and_resends_the_lost(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], hec: SplunkHec) -> None:
    sink = SplunkHecSink(hec.url, ACK_TOKEN, ack=True, max_bytes=2000, ack_timeout=1.0,
                         ack_poll_interval=0.05)
    original = hec.handle

    def forgetting(*args: Any) -> Any:
        answer = original(*args)
        hec.lose_acks()  # the indexer "restarts" after accepting: no ack ever comes
        return answer

    hec.handle = forgetting  # type: ignore[method-assign]
    with pytest.raises(DeliveryError) as lost:
        sink.send_keys({"a": "x", "b": "y", "c": "z"})
    hec.handle = original  # type: ignore[method-assign]
    assert list(lost.value.failed or []) == [0, 1, 2] and not lost.value.rejected
    assert "did not confirm 3 event(s) as indexed" in str(lost.value)
    with pytest.raises(DeliveryError, match="without an ackId: is indexer acknowledgement on "
                                            "for this token") as unacknowledged:
        SplunkHecSink(hec.url, TOKEN, ack=True).send_keys({"a": "x"})
    assert unacknowledged.value.rejected
    hec.indexed.clear()
    ship(small_store, sink)
    assert seqs(hec) == Counter(range(EVENTS + 1))
    code, report = verify("--splunk-export", str(hec.payload(tmp_path / "hec.json")),
                          "--public-key", str(key[1]))
    assert code == 0, report["findings"]


def test_unknown_outcomes_are_resent_and_the_copies_collapse_in_verification(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path], hec: SplunkHec) -> None:
    # The first record request is indexed, then the connection closes unanswered, twice:
    # the sink cannot know, and must send it again.
    hec.drop(2, after=1)
    ship(small_store, SplunkHecSink(hec.url, TOKEN))
    assert seqs(hec) == Counter({seq: 3 for seq in range(EVENTS + 1)})  # sent, resent twice
    code, report = verify("--splunk-export", str(hec.export(tmp_path / "e.json")),
                          "--public-key", str(key[1]))
    assert code == 0, report["findings"]
    assert any("delivered more than once" in notice for notice in report["notices"])


@pytest.mark.parametrize(("token", "options", "expected"), [
    ("wrong-token", {}, "HTTP 403 code 4: Invalid token: check OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN"),
    (TOKEN, {"index": "secret"}, "HTTP 400 code 7: Incorrect index"),
    (ACK_TOKEN, {}, "HTTP 400 code 10: Data channel is missing: the token has indexer "
                    "acknowledgement on; set OTEL_AI_AUDIT_SPLUNK_HEC_ACK=true"),
])
def test_refusals_are_explained_and_hold_the_chain_until_fixed(
        small_store: Path, hec: SplunkHec, caplog: pytest.LogCaptureFixture, token: str,
        options: dict[str, Any], expected: str) -> None:
    shipper = Shipper(str(small_store), SplunkHecSink(hec.url, token, **options),
                      max_backoff=0.2)
    assert not shipper.drain(timeout=1.5)
    shipper.close()
    assert shipper.stats.rejected >= 1 and shipper.stats.shipped_records == 0
    assert expected in caplog.text
    assert not hec.records()
    ship(small_store, SplunkHecSink(hec.url, TOKEN))  # fixed: all of it, from the start
    assert seqs(hec) == Counter(range(EVENTS + 1))


def test_events_carry_the_record_time_and_the_configured_fields(
        small_store: Path, hec: SplunkHec) -> None:
    ship(small_store, SplunkHecSink(hec.url + "/services/collector/event", TOKEN,
                                    index="audit", source="churn-api", host="node-7"))
    (chain,) = chain_ids(small_store)
    stored = {row["seq"]: row for row in rows(small_store, chain)}
    for event in hec.records():
        row = stored[int(event["fields"]["chain.seq"])]
        record = json.loads(row["data"])
        whole, _, fraction = record["event"]["time"].rstrip("Z").partition(".")
        expected = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        assert abs(event["time"] - expected - int(fraction[:6]) / 1e6) < 2e-6
        assert (event["index"], event["source"], event["host"]) == ("audit", "churn-api",
                                                                    "node-7")
        # Indexed fields are strings (HEC drops other values): the position, and the
        # record's search fields as `_raw` spells them.
        assert event["fields"] == {"chain.id": chain, "chain.seq": str(row["seq"]),
                                   **layout.record_fields(row["data"])}
        assert event["fields"]["event.type"] == record["event"]["type"]
        if record["event"]["type"] == "inference":
            assert (event["fields"]["event.model.name"],
                    event["fields"]["event.model.version"]) == ("adult-income", "3")
    for event in hec.indexed:
        assert all(isinstance(value, str) for value in event["fields"].values()), event


def test_the_stand_in_keeps_only_string_indexed_fields_as_splunk_documents(
        hec: SplunkHec) -> None:
    """"Only strings can be used as field values" (arrays of strings are multi-valued): a
    number is dropped, a nested object refused with code 15; the sink's fields pass."""
    client = HecClient(hec.url, TOKEN)
    client.post(EVENT_PATH, json.dumps({"event": "x", "fields": {
        "text": "a", "many": ["a", "b"], "number": 7, "flag": True, "none": None}}).encode())
    assert hec.indexed[-1]["fields"] == {"text": "a", "many": ["a", "b"]}
    with pytest.raises(DeliveryError, match="HTTP 400 code 15: Error in handling indexed "
                                            "fields") as refused:
        client.post(EVENT_PATH, json.dumps({"event": "y", "fields": {
            "nested": {"a": "b"}}}).encode())
    assert refused.value.rejected and len(hec.indexed) == 1
    client.close()


@pytest.mark.parametrize("content", ["not json at all\n", "", "[1, 2]\n"])
def test_a_file_that_is_no_export_is_one_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "export.json"
    path.write_text(content)
    for target in (path, tmp_path / "missing.json"):
        result = CliRunner().invoke(main, ["verify", "--splunk-export", str(target)])
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
        assert result.stderr.startswith("otel-ai-audit: error: ")


def test_settings_turn_shipping_to_hec_on(hec: SplunkHec) -> None:
    from otel_ai_audit.config import AuditSettings
    from otel_ai_audit.sinks import configured_sinks

    settings = AuditSettings.from_env({"OTEL_AI_AUDIT_SPLUNK_HEC_URL": hec.url,
                                       "OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN": TOKEN,
                                       "OTEL_AI_AUDIT_SPLUNK_HEC_ACK": "true",
                                       "OTEL_AI_AUDIT_SPLUNK_HEC_INDEX": "audit"})
    (sink,) = configured_sinks(settings)
    assert isinstance(sink, SplunkHecSink) and sink.ack and sink.index == "audit"
    assert TOKEN not in sink.name


def test_span_events_from_the_collectors_hec_exporter_verify(
        tmp_path: Path, small_store: Path, key: tuple[SigningKey, Path]) -> None:
    """The Collector route to Splunk: splunkhecexporter (v0.161.0) sends each span as an event
    object `{"trace_id", "span_id", "name", "attributes": {...}, ...}` (its
    testdata/hec_span_event.json), sourcetype `otel_ai_audit:span` in the gateway config. The
    spans are the ones `OtlpSink` makes of the store; the exporter itself cannot be built here."""
    with AuditStore(small_store, create=False, readonly=True) as store:
        (chain,) = store.chain_ids()
        spans = [record_span(record) for record in store.records_after(chain, -1, 100)]
        spans += [checkpoint_span(signed) for signed in store.checkpoints(chain)]
    lines = [json.dumps({
        "time": span.start_time / 1e9, "host": "gateway", "source": "otel-ai-audit",
        "sourcetype": "otel_ai_audit:span", "index": "audit",
        "event": {"trace_id": f"{span.context.trace_id:032x}",
                  "span_id": f"{span.context.span_id:016x}", "name": span.name,
                  "start_time": span.start_time, "end_time": span.end_time,
                  "kind": "SPAN_KIND_INTERNAL", "attributes": dict(span.attributes or {})},
        "fields": dict(span.resource.attributes)}) for span in spans]
    export = tmp_path / "spans.json"
    export.write_text("\n".join(lines))
    code, report = verify("--splunk-export", str(export), "--public-key", str(key[1]))
    assert code == 0 and report["records"] == EVENTS + 1, report["findings"]
    del lines[5]  # one record lost on the way
    export.write_text("\n".join(lines))
    code, report = verify("--splunk-export", str(export), "--public-key", str(key[1]))
    assert code == 1 and {(f["chain_id"], f["seq"]) for f in report["findings"]} == {(chain, 5)}


def test_ship_command_delivers_a_store_to_hec_once(small_store: Path, hec: SplunkHec,
                                                   key: tuple[SigningKey, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN", TOKEN)
    arguments = ["ship", str(small_store), "--splunk-hec", hec.url, "--once",
                 "--timeout", "30"]
    first = CliRunner().invoke(main, arguments)
    again = CliRunner().invoke(main, arguments)
    assert first.exit_code == 0, first.output
    assert f"shipped {EVENTS + 1} record(s)" in first.output
    assert again.exit_code == 0 and "shipped 0 record(s)" in again.output  # durable cursor
    assert seqs(hec) == Counter(range(EVENTS + 1))
    code, report = verify("--splunk-export", str(hec.export(small_store.parent / "e.json")),
                          "--public-key", str(key[1]))
    assert code == 0 and report["records"] == EVENTS + 1


def test_ship_command_without_a_destination_is_a_usage_error(small_store: Path) -> None:
    result = CliRunner().invoke(main, ["ship", str(small_store), "--once"], env={
        "OTEL_AI_AUDIT_ELASTICSEARCH_URL": "", "OTEL_AI_AUDIT_SPLUNK_HEC_URL": "",
        "OTEL_AI_AUDIT_OTLP_ENDPOINT": ""})
    assert result.exit_code == 2
    assert "nowhere to ship" in result.output
