"""Risk-based sampling: what is kept, what is held, how it is counted, promoted and purged.

Decisions come from real scikit-learn models through the instrumentation (per-row risk from
`risk_fn`, so sampling sees what the writer thread sees); every scenario ends with a clean
verification of the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import otel_ai_audit
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.integrity.checkpoint import combined_policy_hash
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.proof import build_proof, check_proof
from otel_ai_audit.pipeline.sampling import SamplingConfigError, SamplingPolicy, keeps
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.runtime import register_model
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier
from tests.audit_fixtures import key_beside
from tests.pipeline_fixtures import (
    audited_sklearn,
    held_rows,
    risk_of,
    signed_checkpoints,
    trained_model,
)

REPO = Path(__file__).resolve().parents[2]


def test_sampled_out_decisions_add_up_with_kept_ones_in_signed_checkpoints(
        tmp_path: Path) -> None:
    policy_file = tmp_path / "sampling.json"
    policy_file.write_text(json.dumps({"rate": 0.25, "models": {"triage": 0.5}}))
    made: Counter[tuple[str, str]] = Counter()
    with audited_sklearn(tmp_path, sampling_policy=str(policy_file),
                         checkpoint_every=100) as process:
        credit, credit_rows = trained_model(1)
        triage, triage_rows = trained_model(2)
        register_model(credit, name="credit", risk_fn=risk_of)
        register_model(triage, name="triage", risk="low")
        for start in range(0, 1000, 50):  # batch calls: one decision per row, risk per row
            for scores in credit.predict_proba(credit_rows[start:start + 50]):
                made["credit", risk_of(scores)] += 1
        for row in triage_rows[:300]:  # single-row calls
            triage.predict(row.reshape(1, -1))
            made["triage", "low"] += 1
        with pytest.raises(ValueError):
            triage.predict(np.zeros((1, 2)))  # an error decision of a low-risk model
        sampling = SamplingPolicy.from_settings(process.runtime.settings)
        capture_hash = process.runtime.capture.policy_hash
        report = process.verify()
    assert report.ok, report.findings

    inference = [e for e in process.events("inference") if "error" not in e]
    (error,) = [e for e in process.events("inference") if "error" in e]
    assert error["model"]["name"] == "triage" and error["sampling"]["kept"] == "error"
    kept = Counter((e["model"]["name"], e["risk"]["level"]) for e in inference)
    checkpoints = signed_checkpoints(process.store)
    closing = checkpoints[-1]
    assert closing.closed
    sampled_out = closing.counters["sampled_out"]
    assert closing.counters["failed"] == 0
    assert set(made) >= {("credit", level) for level in ("low", "high", "critical")}
    for (model, risk), count in made.items():
        assert kept[model, risk] + sampled_out.get(f"{model}|{risk}", 0) == count, (model, risk)
    assert not [key for key in sampled_out if key.endswith(("|high", "|critical"))]
    assert sum(sampled_out.values()) > 300, "low-risk decisions at rates 0.25 and 0.5"

    # Each kept decision says why it is on the record; the draw is the documented rule.
    for event in inference:
        rate = 0.5 if event["model"]["name"] == "triage" else 0.25
        reason = "risk" if event["risk"]["level"] in ("high", "critical") else "rate"
        assert event["sampling"] == {"rate": rate, "kept": reason}
        if reason == "rate":
            assert keeps(event["id"], rate)
    held = held_rows(process.store)
    assert len(held) == sum(sampled_out.values())
    assert not set(held) & {event["id"] for event in inference}
    for decision_id, row in held.items():
        event = json.loads(row.data)
        assert not keeps(decision_id, 0.5 if event["model"]["name"] == "triage" else 0.25)
        assert row.expires - row.held_at == 72 * 3600 * 10**9

    # Counters only grow from checkpoint to checkpoint, and all of them sign the policy.
    assert len(checkpoints) > 3
    for earlier, later in zip(checkpoints, checkpoints[1:], strict=False):
        for key, count in earlier.counters["sampled_out"].items():
            assert later.counters["sampled_out"][key] >= count
    expected_hash = combined_policy_hash({"capture": capture_hash,
                                          "sampling": sampling.policy_hash})
    assert {checkpoint.policy_hash for checkpoint in checkpoints} == {expected_hash}
    assert expected_hash != capture_hash
    (chain_open,) = process.events("chain_open")
    assert chain_open["policy_hash"] == expected_hash


def test_high_risk_error_and_non_inference_events_are_never_sampled_out(tmp_path: Path) -> None:
    with audited_sklearn(tmp_path, sampling_rate=0.0) as process:
        model, rows = trained_model(3)  # the fit is a training record
        register_model(model, name="triage", risk_fn=risk_of)
        scores = model.predict_proba(rows[:400])
        decision_ids = otel_ai_audit.last_decision_ids()
        with pytest.raises(ValueError):
            model.predict_proba(np.zeros((5, 3)))
        otel_ai_audit.record_oversight(decision_ids[0], reviewer="nurse-3", action="accepted")
        otel_ai_audit.record_outcome(decision_ids[0], label=1)
        report = process.verify()
    assert report.ok, report.findings
    levels = [risk_of(row) for row in scores]
    must_keep = {i for i, level in enumerate(levels) if level in ("high", "critical")}
    assert must_keep and len(must_keep) < len(levels)
    events = process.events()
    chained = {event["id"] for event in events if event["type"] == "inference"}
    assert chained >= {decision_ids[i] for i in must_keep}
    assert not chained & {decision_ids[i] for i in set(range(400)) - must_keep}
    assert [event for event in events if "error" in event]
    assert {event["type"] for event in events} >= {"training", "oversight", "outcome"}
    assert sum(signed_checkpoints(process.store)[-1].counters["sampled_out"].values()) == (
        400 - len(must_keep))


def test_a_disputed_sampled_out_decision_is_promoted_before_the_dispute(tmp_path: Path) -> None:
    with audited_sklearn(tmp_path, sampling_rate=0.0) as process:
        loans, rows = trained_model(4)
        triage, _ = trained_model(5)
        register_model(loans, name="loans", risk="low")
        register_model(triage, name="triage", risk="high")
        loans.predict(rows[:20])
        sampled_out = otel_ai_audit.last_decision_ids()
        triage.predict(rows[:1])
        (kept,) = otel_ai_audit.last_decision_ids()
        assert process.runtime.writer.flush()
        held = held_rows(process.store)
        assert set(held) == set(sampled_out)

        disputed = sampled_out[7]
        first = otel_ai_audit.record_dispute(disputed, reason="applicant contests",
                                             raised_by="applicant")
        second = otel_ai_audit.record_dispute(disputed, reason="contests again")
        of_kept = otel_ai_audit.record_dispute(kept, reason="patient contests")
        unknown = otel_ai_audit.record_dispute("f" * 32, reason="no such decision")
        assert process.runtime.writer.flush()
        assert set(held_rows(process.store)) == set(sampled_out) - {disputed}
        report = process.verify()
    assert report.ok, report.findings

    events = process.events()
    (promoted,) = [event for event in events if "promoted" in event]
    position = events.index(promoted)
    assert events[position + 1]["id"] == first, "promoted right before its dispute"
    original = held[disputed]
    assert {k: v for k, v in promoted.items() if k != "promoted"} == json.loads(original.data)
    assert promoted["promoted"] == {"from_hold": True, "chain_id": original.chain_id,
                                    "sampled_out_at": rfc3339_from_ns(original.held_at)}
    disputes = {event["id"]: event for event in events if event["type"] == "dispute"}
    assert disputes[first]["decision_id"] == disputed
    assert [disputes[i]["decision_on_record"] for i in (first, second, of_kept, unknown)] == [
        True, True, True, False]
    # Promotion does not rewrite history: the decision was sampled out, and stays counted.
    assert signed_checkpoints(process.store)[-1].counters["sampled_out"] == {"loans|low": 20}
    # The promoted decision is provable on its own against a signed checkpoint.
    key = SigningKey.load(key_beside(process.store))
    with AuditStore(process.store, create=False, readonly=True) as store:
        proof = build_proof(store, disputed)
    assert check_proof(proof, {key.key_id: key.public_key}) == []


def test_expired_holds_are_never_promoted_and_are_purged(tmp_path: Path) -> None:
    hold_seconds = 0.5
    with audited_sklearn(tmp_path, sampling_rate=0.0,
                         sampling_hold_hours=hold_seconds / 3600) as process:
        model, rows = trained_model(6)
        register_model(model, name="churn", risk="low")
        model.predict(rows[:30])
        expired = otel_ai_audit.last_decision_ids()
        assert process.runtime.writer.flush()
        assert set(held_rows(process.store)) == set(expired)
        time.sleep(hold_seconds + 0.1)
        # Past its hold, a decision is gone for disputes even before the purge ran.
        dispute = otel_ai_audit.record_dispute(expired[0], reason="too late")
        model.predict(rows[30:40])
        fresh = otel_ai_audit.last_decision_ids()
        process.runtime.writer.hold_purge_interval = 0.0  # purge on the next round
        deadline = time.monotonic() + 10
        while set(held_rows(process.store)) != set(fresh) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(held_rows(process.store)) == set(fresh), "the writer purged expired holds"
        time.sleep(hold_seconds + 0.1)
        report = process.verify()  # closing purges what expired since
    assert report.ok, report.findings
    assert held_rows(process.store) == {}
    (dispute_event,) = process.events("dispute")
    assert dispute_event["id"] == dispute and dispute_event["decision_on_record"] is False
    assert not [event for event in process.events() if "promoted" in event]
    assert signed_checkpoints(process.store)[-1].counters["sampled_out"] == {"churn|low": 40}


def test_sampling_is_deterministic_by_decision_id() -> None:
    # The documented rule: first 8 bytes of SHA-256(id), big-endian, below rate * 2^64.
    assert [i for i in range(20) if keeps(f"decision-{i}", 0.5)] == [0, 4, 7, 9, 17, 19]
    assert keeps("decision-0", 0.254) and not keeps("decision-0", 0.253)
    assert all(keeps(f"decision-{i}", 1.0) for i in range(1000))
    assert not any(keeps(f"decision-{i}", 0.0) for i in range(1000))
    share = sum(keeps(os.urandom(16).hex(), 0.1) for _ in range(20_000)) / 20_000
    assert abs(share - 0.1) < 0.015  # > 7 standard deviations


def sample_fixed_decisions(store: str) -> tuple[list[str], list[str]]:
    """(chained, held) decision ids when a writer samples 500 fixed decisions at rate 0.3."""
    writer = AuditWriter(store, SigningKey.generate(), sampling=SamplingPolicy(rate=0.3))
    for index in range(500):
        writer.submit(new_event(EventType.INFERENCE, event_id=f"fixed-{index}",
                                model={"name": "credit"}, risk={"level": "low"}))
    assert writer.close()
    with AuditStore(store, create=False, readonly=True) as audit_store:
        chained = [json.loads(data)["event"]["id"] for chain in audit_store.chain_ids()
                   for _, data in audit_store.records(chain)]
    return ([i for i in chained if i.startswith("fixed-")],
            sorted(held_rows(Path(store)), key=lambda i: int(i.split("-")[1])))


def test_the_same_decisions_are_kept_in_another_run(tmp_path: Path) -> None:
    here = sample_fixed_decisions(str(tmp_path / "here.db"))
    script = ("import json, sys; "
              "from tests.integration.test_sampling import sample_fixed_decisions; "
              "print(json.dumps(sample_fixed_decisions(sys.argv[1])))")
    other = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "other.db")], cwd=REPO, check=True,
        capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "4242"})
    assert json.loads(other.stdout) == list(map(list, here))
    assert 100 < len(here[0]) < 200 and len(here[0]) + len(here[1]) == 500


def test_policy_from_environment_and_file(tmp_path: Path) -> None:
    default = SamplingPolicy.from_settings(AuditSettings.from_env({}))
    assert default == SamplingPolicy() and default.rate == 1.0
    assert default.keep_risk == ("high", "critical") and default.hold_hours == 72.0
    event = new_event(EventType.INFERENCE, model={"name": "m"}, risk={"level": "low"})
    assert default.sample(event) is event, "rate 1 keeps everything and marks nothing"

    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"rate": 0.2, "keep_risk": ["critical"],
                                       "models": {"churn": 0.05}}))
    from_file = SamplingPolicy.from_settings(AuditSettings.from_env(
        {"OTEL_AI_AUDIT_SAMPLING_POLICY": str(policy_file)}))
    assert (from_file.rate, from_file.keep_risk) == (0.2, ("critical",))
    assert from_file.rate_for("churn") == 0.05 and from_file.rate_for("other") == 0.2
    overridden = SamplingPolicy.from_settings(AuditSettings.from_env({
        "OTEL_AI_AUDIT_SAMPLING_POLICY": str(policy_file),
        "OTEL_AI_AUDIT_SAMPLING_RATE": "0.5",
        "OTEL_AI_AUDIT_SAMPLING_KEEP_RISK": "high, critical,unacceptable",
        "OTEL_AI_AUDIT_SAMPLING_HOLD_HOURS": "24"}))
    assert overridden.rate == 0.5 and overridden.rate_for("churn") == 0.05
    assert overridden.keep_risk == ("high", "critical", "unacceptable")
    assert overridden.hold_hours == 24.0
    assert len({default.policy_hash, from_file.policy_hash, overridden.policy_hash}) == 3

    for document, message in (({"rate": 0.1, "model": {}}, "expected an object with keys"),
                              ({"models": {"churn": 2}}, "from 0 to 1"),
                              ({"keep_risk": "high"}, "list of risk levels")):
        policy_file.write_text(json.dumps(document))
        with pytest.raises(SamplingConfigError, match=message):
            SamplingPolicy.from_settings(AuditSettings.from_env(
                {"OTEL_AI_AUDIT_SAMPLING_POLICY": str(policy_file)}))
    with pytest.raises(SamplingConfigError, match="from 0 to 1"):
        SamplingPolicy.from_settings(AuditSettings(sampling_rate=1.5))
    with pytest.raises(SamplingConfigError, match="does-not-exist"):
        SamplingPolicy.from_settings(AuditSettings(sampling_policy="does-not-exist.json"))


def test_a_checkpoint_is_signed_when_only_the_counts_changed(tmp_path: Path) -> None:
    """Decisions sampled out while nothing is chained still reach a signed checkpoint within
    the checkpoint interval, not only at shutdown."""
    key = SigningKey.generate()
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), key, checkpoint_interval=0.2,
                         sampling=SamplingPolicy(rate=0.0))
    for _ in range(3):
        writer.submit(new_event(EventType.INFERENCE, model={"name": "churn"},
                                risk={"level": "low"}))
        time.sleep(0.5)
        assert writer.flush()
    assert writer.close()
    checkpoints = signed_checkpoints(store)
    assert [(c.size, c.counters["sampled_out"], c.closed) for c in checkpoints] == [
        (1, {"churn|low": 1}, False), (1, {"churn|low": 2}, False),
        (1, {"churn|low": 3}, False), (1, {"churn|low": 3}, True)]
    with AuditStore(store, create=False, readonly=True) as audit_store:
        report = Verifier({key.key_id: key.public_key}).verify(audit_store)
    assert report.ok, report.findings
