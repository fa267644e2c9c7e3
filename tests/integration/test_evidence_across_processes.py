"""An evidence bundle of a `predict_proba` model whose outcomes and drift were written by other
processes under other service names, as they are in production: the scoring service decides,
an outcome feed records the true labels later, a monitoring job records drift. Three real
Python processes on one store, real scikit-learn, the bundle built by the real CLI.

The bundle's accuracy, TPR and FPR must be scikit-learn's on the same decisions, with the
documented rule: positive when the positive class's probability is at least the threshold
(0.5 unless `evidence --threshold` says otherwise; here it does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import parse_record
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import saved_key

CLI = str(Path(sys.executable).parent / "otel-ai-audit")
SYSTEM = "credit-scoring"
MODEL = "credit-risk"
THRESHOLD = 0.4

DECIDE = """
import json, sys
from opentelemetry.sdk.trace import TracerProvider
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
import otel_ai_audit
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

store, key, out = sys.argv[1:4]
provider = TracerProvider()
otel_ai_audit.configure(provider, store=store, signing_key=key, capture_inputs="full")
SklearnInstrumentor().instrument(tracer_provider=provider)
X, y = make_classification(n_samples=1600, n_features=5, n_informative=3, flip_y=0.15,
                           random_state=11)
model = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
otel_ai_audit.register_model(model, name="credit-risk", version="1.0.0")
live = X[1000:] + [0.8, 0, 0, 0, 0]  # the population moved: the first feature drifts
probabilities = model.predict_proba(live)
ids = otel_ai_audit.last_decision_ids()
json.dump({"ids": ids, "truth": y[1000:].tolist(), "positive": probabilities[:, 1].tolist()},
          open(out, "w"))
otel_ai_audit.shutdown()
"""

RECORD_OUTCOMES = """
import json, sys
import otel_ai_audit

store, key, decided = sys.argv[1:4]
otel_ai_audit.configure(install_processor=False, store=store, signing_key=key)
data = json.load(open(decided))
for index, (decision_id, label) in enumerate(zip(data["ids"], data["truth"])):
    if index % 5:  # four in five outcomes are known by now
        otel_ai_audit.record_outcome(decision_id, label=label)
otel_ai_audit.shutdown()
"""


def run(arguments: list[str], service: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OTEL_SERVICE_NAME": service}
    return subprocess.run(arguments, capture_output=True, text=True, timeout=600, check=False,
                          env=environment, cwd=Path(__file__).parents[2])


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("processes")
    _, public = saved_key(folder)
    key, store, decided = folder / "audit.key.pem", folder / "audit.db", folder / "decided.json"
    start = rfc3339_from_ns(time.time_ns())
    for script, service in ((DECIDE, SYSTEM), (RECORD_OUTCOMES, "outcome-feed")):
        result = run([sys.executable, "-c", script, str(store), str(key), str(decided)], service)
        assert result.returncode == 0, result.stderr[-3000:]
    drift_end = rfc3339_from_ns(time.time_ns())
    result = run([CLI, "drift", str(store), "--model", MODEL, "--from", start,
                  "--to", drift_end, "--record", "--signing-key", str(key)], "drift-monitor")
    assert result.returncode == 0, result.stderr[-3000:]
    end = rfc3339_from_ns(time.time_ns() + 1_000_000_000)
    bundle = folder / "bundle"
    result = run([CLI, "evidence", str(store), "--system", SYSTEM, "--from", start,
                  "--to", end, "--out", str(bundle), "--signing-key", str(key),
                  "--public-key", str(public), "--positive-label", "1",
                  "--threshold", str(THRESHOLD)], "auditor")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return {"store": store, "bundle": bundle, "public": public,
            "decided": json.loads(decided.read_text())}


def store_events(store: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(service of the writing chain, event) of every record of a type, read independently."""
    with AuditStore(store, create=False, readonly=True) as audit_store:
        found = []
        for chain in audit_store.chain_ids():
            events = [parse_record(data)["event"] for _, data in audit_store.records(chain)]
            service = events[0]["service"]["name"]
            found += [(service, event) for event in events if event["type"] == kind]
    return found


def test_performance_of_a_predict_proba_model_is_scikit_learns(trail: dict[str, Any]) -> None:
    decided = trail["decided"]
    outcomes = store_events(trail["store"], "outcome")
    assert {service for service, _ in outcomes} == {"outcome-feed"}
    known = {event["decision_id"] for _, event in outcomes}
    rows = [(truth, int(positive >= THRESHOLD)) for decision_id, truth, positive
            in zip(decided["ids"], decided["truth"], decided["positive"], strict=True)
            if decision_id in known]
    truth, predicted = [t for t, _ in rows], [p for _, p in rows]
    true_negatives, false_positives, _, _ = confusion_matrix(truth, predicted).ravel()

    performance = json.loads((trail["bundle"] / "sections/performance.json").read_text())
    assert performance["decisions_with_outcome"] == len(rows) == len(known) > 0
    assert performance["probability_decisions"] == len(rows)
    assert performance["threshold"] == THRESHOLD
    [overall] = [s for s in performance["versions"][0]["slices"] if s["attribute"] == "(all)"]
    assert overall["accuracy"]["value"] == pytest.approx(accuracy_score(truth, predicted))
    assert overall["positive"]["tpr"]["value"] == pytest.approx(recall_score(truth, predicted))
    assert overall["positive"]["fpr"]["value"] == pytest.approx(
        false_positives / (false_positives + true_negatives))
    assert 0.5 < overall["accuracy"]["value"] < 1  # a real model on noisy labels

    html = (trail["bundle"] / "report.html").read_text()
    assert f"{overall['positive']['fpr']['value']:.3f}" in html
    assert f"at least {THRESHOLD:g}" in html


def test_outcomes_of_another_process_are_joined_to_the_decision_log(
        trail: dict[str, Any]) -> None:
    labels = {event["decision_id"]: str(event["label"])
              for _, event in store_events(trail["store"], "outcome")}
    lines = (trail["bundle"] / "decisions.jsonl").read_text().splitlines()
    joined = {line["event"]["id"]: line["outcome"] for line in map(json.loads, lines)}
    assert len(joined) == len(trail["decided"]["ids"])
    assert {key: str(value) for key, value in joined.items() if value is not None} == labels


def test_drift_of_another_process_is_in_the_bundle(trail: dict[str, Any]) -> None:
    recorded = store_events(trail["store"], "drift")
    assert recorded and {service for service, _ in recorded} == {"drift-monitor"}
    drift = json.loads((trail["bundle"] / "sections/drift.json").read_text())
    assert sorted(r["event"]["id"] for r in drift["records"]) == sorted(
        event["id"] for _, event in recorded)
    assert not any(r["in_extracts"] for r in drift["records"])
    assert drift["drifted"] == sum(event["drift"]["drifted"] for _, event in recorded) > 0
    assert {f["feature"] for f in drift["features"]} == {
        event["drift"]["feature"] for _, event in recorded}
    assert (trail["bundle"] / "charts/drift.svg").exists()


def test_the_bundle_still_verifies(trail: dict[str, Any]) -> None:
    result = subprocess.run([CLI, "verify-bundle", str(trail["bundle"]), "--public-key",
                             str(trail["public"])], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout
