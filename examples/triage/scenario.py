"""The "48-hour evidence bundle" scenario: a high-risk triage model in service, on the record.

A national authority asks for the audit trail of a triage system (EU AI Act Annex III 5(d))
over a 48-hour window. This module plays those 48 hours through the public API, with the
scikit-learn instrumentation recording every decision:

* hour 0: model v1 (trained under the instrumentation on synthetic triage data) is deployed;
* every hour: patients are triaged; urgency 1-2 is high risk and reviewed by a nurse, who
  accepts the model's urgency or overrides it (Art. 14); true urgency becomes known for part
  of the patients an hour later (outcomes, for performance per subgroup, Art. 72);
* every 6 hours: input drift against the training data, one record per feature
  (`otel_ai_audit.monitoring.drift`, against the reference profile taken at `fit`);
* hour 16: a flu wave shifts the population (older, more breathless): the drift records show it;
* hour 20: v2, a "simplified" model trained without age band and arrival mode, is rolled out;
* hour 26: a patient disputes an under-triage by v2; hour 27: a serious incident is declared
  (Art. 73: awareness, causal link, notification deadlines, frozen snapshot of the trail);
* hour 28: v2 is rolled back to v1.

Time: the trail's clock is never faked. The 48 simulated hours are played in seconds of real
time, so every record carries the real time it was made, and an evidence window is chosen in
real time (the scenario returns the start and end of its run). Each record also carries the
time it is about, `described_time` (`otel_ai_audit.record.schema.describing`): the middle of its
simulated hour, the 48 hours that ended at the last full hour before the run. The report's
charts read as those 48 hours; the bundle's window and proofs stay on the real times. A
simulated hour is also recorded on the lifecycle events as `scenario.hour`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from opentelemetry.sdk.trace import TracerProvider
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import otel_ai_audit
from otel_ai_audit.evidence import Bundle, BundleRequest, Window, build_bundle
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.instrumentation.sklearn.identity import identity
from otel_ai_audit.integrity.keys import SigningKey, load_trusted_keys
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.monitoring.drift import drift
from otel_ai_audit.monitoring.records import StoreEvents, record_time
from otel_ai_audit.record.canonical import rfc3339_from_ns, to_json_data
from otel_ai_audit.record.schema import EventType, describing, new_event
from otel_ai_audit.store.sqlite import AuditStore

from .data import (
    CATEGORICAL,
    FEATURES,
    HIGH_URGENCY,
    NUMERIC,
    SUBGROUPS,
    TARGET,
    patients,
)

SYSTEM = "triage-assist"
MODEL_NAME = "triage-urgency"
HOURS = 48
DRIFT_EVERY = 6
FLU_WAVE_HOUR, ROLLOUT_HOUR, DISPUTE_HOUR, INCIDENT_HOUR, ROLLBACK_HOUR = 16, 20, 26, 27, 28
OUTCOME_SHARE = 0.6
HOUR_NS = 3_600_000_000_000
NURSES = ("nurse-017", "nurse-042", "nurse-101")


@dataclass
class TriageScenario:
    """What a run produced: the store, its keys, the run window and the notable decisions."""

    store: Path
    public_key: Path
    signing_key: Path
    training_data: Path
    start: str
    end: str
    decisions: int
    overrides: int
    disputed_decision: str
    overridden_decision: str
    incident_id: str
    lifecycle: dict[str, str] = field(default_factory=dict)
    """Record time of each lifecycle event (deploy_v1, rollout_v2, incident, rollback)."""


def triage_model(features: list[str]) -> Pipeline:
    categorical = [column for column in CATEGORICAL if column in features]
    return Pipeline([
        ("encode", ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("vitals", StandardScaler(), [column for column in NUMERIC if column in features])])),
        ("classify", LogisticRegression(max_iter=1000)),
    ])


def run_triage_scenario(out_dir: str | Path, *, patients_per_hour: int = 30,
                        hour_seconds: float = 0.05, seed: int = 7,
                        store: Path | None = None,
                        keys: tuple[Path, Path] | None = None) -> TriageScenario:
    """Play the 48 hours and return what was recorded: into `store` signed with `keys`
    (private, public) when given, else into `out_dir/audit.db` (replaced) with a new key.

    Each simulated hour lasts at least `hour_seconds` of real time, so the hours are evenly
    spread over the run window and the report's charts over time read like the 48 hours.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = out / "audit.db"
        for stale in out.glob("audit.db*"):
            stale.unlink()
    if keys is None:
        keys = out / "triage-signing.key.pem", out / "triage-signing.pub.pem"
        keys[0].unlink(missing_ok=True)
        SigningKey.generate().save(*keys)
    private_key, public_key = keys
    rng = np.random.default_rng(seed)
    training = patients(rng, 4000)
    training_data = out / "triage-training.csv"
    training.to_csv(training_data, index=False)

    otel_ai_audit.shutdown()
    service_before = os.environ.get("OTEL_SERVICE_NAME")
    os.environ["OTEL_SERVICE_NAME"] = SYSTEM  # the system's name on its chain and spans
    provider = TracerProvider()
    instrumentor = SklearnInstrumentor()
    try:
        # Inputs in full: the features carry no direct identifier, and performance per
        # subgroup (age band, sex) needs them on the record.
        runtime = otel_ai_audit.configure(
            provider, store=str(store), signing_key=str(private_key),
            capture_inputs="full", checkpoint_interval=1.0)
        instrumentor.instrument(tracer_provider=provider)
        play = _Play(rng, training, runtime, patients_per_hour, hour_seconds)
        play.run()
    finally:
        instrumentor.uninstrument()
        otel_ai_audit.shutdown()
        provider.shutdown()
        if service_before is None:
            os.environ.pop("OTEL_SERVICE_NAME", None)
        else:
            os.environ["OTEL_SERVICE_NAME"] = service_before
    return TriageScenario(
        store=store, public_key=public_key, signing_key=private_key,
        training_data=training_data, start=play.start, end=rfc3339_from_ns(time.time_ns()),
        decisions=play.decisions, overrides=play.overrides,
        disputed_decision=play.disputed, overridden_decision=play.overridden,
        incident_id=play.incident_id, lifecycle=play.lifecycle)


def _risk(output: Any) -> str:
    return "high" if int(output) in HIGH_URGENCY else "low"


class _Play:
    """The 48 hours, one method per kind of event."""

    def __init__(self, rng: np.random.Generator, training: pd.DataFrame, runtime: Any,
                 patients_per_hour: int, hour_seconds: float) -> None:
        self.rng, self.training, self.runtime = rng, training, runtime
        self.patients_per_hour, self.hour_seconds = patients_per_hour, hour_seconds
        self.start = rfc3339_from_ns(time.time_ns())
        self.decisions = self.overrides = 0
        self.disputed = self.overridden = self.incident_id = ""
        self.lifecycle: dict[str, str] = {}
        self.window_start = time.time_ns()
        self.described_start = self.window_start // HOUR_NS * HOUR_NS - HOURS * HOUR_NS
        """The 48 hours the run replays: those that ended at the last full hour."""
        self.pending_outcomes: list[tuple[str, int]] = []
        self.under_triaged: list[tuple[str, int, int]] = []

    def run(self) -> None:
        v1 = triage_model(FEATURES).fit(self.training[FEATURES], self.training[TARGET])
        reduced = [column for column in FEATURES if column not in ("age_band", "arrival_mode")]
        # v2 ignores two columns (its ColumnTransformer drops them), so the application still
        # passes the whole patient record and every decision carries age band and sex.
        v2 = triage_model(reduced).fit(self.training[FEATURES], self.training[TARGET])
        otel_ai_audit.register_model(v1, name=MODEL_NAME, version="1.0.0", risk_fn=_risk)
        otel_ai_audit.register_model(v2, name=MODEL_NAME, version="2.0.0", risk_fn=_risk)
        serving = v1
        with describing(self.described_start):
            self._lifecycle(EventType.DEPLOY, "deploy_v1", 0, v1, "1.0.0",
                            change="initial deployment after validation")
        for hour in range(HOURS):
            began = time.monotonic()
            # The records of this hour say which simulated hour they are about (the patients'
            # arrival), next to the real time they are recorded at.
            with describing(self.described_start + hour * HOUR_NS + HOUR_NS // 2):
                if hour == ROLLOUT_HOUR:
                    self._lifecycle(EventType.DEPLOY, "rollout_v2", hour, v2, "2.0.0",
                                    change="rollout: simplified model without age band and "
                                           "arrival mode", previous={"version": "1.0.0"})
                    serving = v2
                if hour == ROLLBACK_HOUR:
                    self._lifecycle(EventType.ROLLBACK, "rollback", hour, v1, "1.0.0",
                                    change=f"rollback of 2.0.0 after incident "
                                           f"{self.incident_id}", previous={"version": "2.0.0"})
                    serving = v1
                self._record_outcomes()
                self._hour(hour, serving)
                if (hour + 1) % DRIFT_EVERY == 0:
                    self._drift()
            time.sleep(max(0.0, self.hour_seconds - (time.monotonic() - began)))

    def _hour(self, hour: int, model: Pipeline) -> None:
        model_version = otel_ai_audit.configure().model_info(model).version
        shift = 1.0 if hour >= FLU_WAVE_HOUR else 0.0
        arrivals = patients(self.rng, self.patients_per_hour, shift=shift)
        predicted = model.predict(arrivals[FEATURES])
        ids = otel_ai_audit.last_decision_ids()
        self.decisions += len(ids)
        for decision_id, (_, patient), urgency in zip(ids, arrivals.iterrows(), predicted,
                                                      strict=True):
            truth = int(patient[TARGET])
            if int(urgency) in HIGH_URGENCY or truth in HIGH_URGENCY and urgency - truth >= 2:
                # high risk, or a patient the nurse sees is far worse than the model says
                self._review(decision_id, int(urgency), truth)
            if self.rng.random() < OUTCOME_SHARE:
                self.pending_outcomes.append((decision_id, truth))
            if model_version == "2.0.0" and patient["age_band"] == "65+" and urgency > truth:
                self.under_triaged.append((decision_id, int(urgency), truth))
        if hour == DISPUTE_HOUR and self.under_triaged:
            self.disputed, urgency, truth = max(self.under_triaged, key=lambda d: d[1] - d[2])
            otel_ai_audit.record_dispute(
                self.disputed, raised_by="patient-representative",
                reason=f"assessed as urgency {urgency}; deteriorated in the waiting room and "
                       f"was treated as urgency {truth}")
        if hour == INCIDENT_HOUR:
            self._incident(hour)

    def _review(self, decision_id: str, urgency: int, truth: int) -> None:
        """A nurse reviews a high-risk (or visibly under-triaged) decision before acting."""
        reviewer = str(self.rng.choice(NURSES))
        under = truth in HIGH_URGENCY and urgency not in HIGH_URGENCY
        over = urgency in HIGH_URGENCY and truth - urgency >= 2
        if (under or over) and self.rng.random() < 0.9:
            otel_ai_audit.record_oversight(
                decision_id, reviewer=reviewer, role="triage nurse", action="overridden",
                reason=f"clinical assessment: urgency {truth}, model said {urgency}")
            self.overrides += 1
            self.overridden = self.overridden or decision_id
        else:
            otel_ai_audit.record_oversight(decision_id, reviewer=reviewer, role="triage nurse",
                                           action="accepted")

    def _record_outcomes(self) -> None:
        """The true urgency of earlier patients, known an hour later (discharge coding)."""
        for decision_id, truth in self.pending_outcomes:
            otel_ai_audit.record_outcome(decision_id, label=truth)
        self.pending_outcomes = []

    def _lifecycle(self, kind: EventType, name: str, hour: int, model: Pipeline, version: str,
                   **details: Any) -> None:
        self._submit(kind, model=identity(model, MODEL_NAME, version), scenario={"hour": hour},
                     deployment={"environment": "production",
                                 "approved_by": "clinical-safety-board", **details})
        self.lifecycle[name] = rfc3339_from_ns(time.time_ns())

    def _incident(self, hour: int) -> None:
        """A serious incident (Art. 3(49)(a), harm to health) and its Art. 73 clocks."""
        writer = self.runtime.writer
        writer.flush()
        with AuditStore(writer.store_path, create=False, readonly=True) as store:
            chain_id = writer.chain.chain_id
            seq = writer.chain.size - 1
            frozen = store.record_at(chain_id, seq)
        aware = time.time_ns()
        causal = aware + 30_000_000  # the causal link is established just after awareness
        self.incident_id = "INC-TRIAGE-0001"
        day = int(timedelta(days=1).total_seconds() * 1e9)
        self._submit(EventType.INCIDENT, scenario={"hour": hour}, incident={
            "id": self.incident_id, "severity": "serious",
            "title": "Under-triage of patients aged 65+ by model 2.0.0",
            "description": "Model 2.0.0 assigns lower urgency to older patients; a disputed "
                           "decision shows a patient deteriorating while waiting.",
            "decisions": [self.disputed], "model": {"name": MODEL_NAME, "version": "2.0.0"},
            "awareness_time": rfc3339_from_ns(aware),
            "causal_link_time": rfc3339_from_ns(causal),
            "notification": {
                "authority": "national market surveillance authority", "status": "pending",
                "deadlines": {"art73_2_serious_incident": rfc3339_from_ns(aware + 15 * day),
                              "art73_4_death": rfc3339_from_ns(aware + 10 * day),
                              "art73_3_widespread": rfc3339_from_ns(aware + 2 * day)},
                "applicable": "art73_2_serious_incident"},
            "snapshot": {"chain_id": chain_id, "seq": seq,
                         "leaf_hash": leaf_hash(frozen or b"").hex(),
                         "note": "the trail up to this record is frozen: the signed checkpoints "
                                 "after it commit to it"}})
        self.lifecycle["incident"] = rfc3339_from_ns(aware)

    def _drift(self) -> None:
        """Drift of the last window's decisions from their model's reference profile (taken at
        `fit` by the instrumentation), one `drift` record per feature, by the monitoring API."""
        writer = self.runtime.writer
        writer.flush()
        now = time.time_ns()
        with AuditStore(writer.store_path, create=False, readonly=True) as store:
            reports = drift(StoreEvents(store), MODEL_NAME, record_time(self.window_start),
                            record_time(now))
        for report in reports:
            for event in report.events(now):
                self.runtime.processor.submit_event(event)
        self.window_start = now

    @staticmethod
    def _submit(kind: EventType, **fields: Any) -> None:
        otel_ai_audit.configure().processor.submit_event(new_event(kind, **to_json_data(fields)))


def answer_request(scenario: TriageScenario, out: str | Path) -> Bundle:
    """The authority's request for the run's 48 hours: the evidence bundle in `out` (new),
    naming the disputed and an overridden decision, signed with the trail's key (in
    production: the key of whoever answers the request)."""
    return build_bundle(BundleRequest(
        store=str(scenario.store), system=SYSTEM, window=Window.parse(scenario.start, scenario.end),
        out=Path(out), signing_key=SigningKey.load(scenario.signing_key),
        trusted_keys=load_trusted_keys([scenario.public_key]),
        decisions=(scenario.disputed_decision, scenario.overridden_decision),
        subgroups=SUBGROUPS, positive_labels=tuple(str(label) for label in HIGH_URGENCY),
        datasets=(str(scenario.training_data),)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="triage-demo", help="folder for the store and keys")
    parser.add_argument("--patients-per-hour", type=int, default=30)
    parser.add_argument("--hour-seconds", type=float, default=0.05,
                        help="real seconds each simulated hour lasts at least")
    parser.add_argument("--bundle", help="also answer the request: the evidence bundle here")
    args = parser.parse_args()
    scenario = run_triage_scenario(args.out, patients_per_hour=args.patients_per_hour,
                                   hour_seconds=args.hour_seconds)
    print(json.dumps({key: str(value) for key, value in vars(scenario).items()}, indent=2))
    if args.bundle:
        bundle = answer_request(scenario, args.bundle)
        print(f"evidence bundle: {bundle.path} ({bundle.decisions} decisions); check it with "
              f"otel-ai-audit verify-bundle {bundle.path} --public-key {scenario.public_key}")


if __name__ == "__main__":
    main()
