"""Human oversight, disputes and outcomes, linked to the decisions they concern."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import otel_ai_audit
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from tests.instrumentation_fixtures import instrumented


def test_oversight_dispute_and_outcome_reference_the_decision(tmp_path: Path) -> None:
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        rng = np.random.default_rng(5)
        features = rng.normal(size=(50, 3))
        model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
        model.predict(features[:2])
        first, second = otel_ai_audit.last_decision_ids()
        otel_ai_audit.record_oversight(first, reviewer="nurse-17", role="triage nurse",
                                       action="overridden", reason="symptoms escalated")
        otel_ai_audit.record_dispute(second, reason="patient contests", raised_by="patient")
        otel_ai_audit.record_outcome(first, label=np.int64(1))
        with pytest.raises(ValueError, match="action must be one of"):
            otel_ai_audit.record_oversight(first, reviewer="x", action="ignored")
        decisions = {event["id"] for event in process.events("inference")}
        assert {first, second} <= decisions
        (oversight,) = process.events("oversight")
        assert oversight["decision_id"] == first
        assert oversight["reviewer"] == {"id": "nurse-17", "role": "triage nurse"}
        assert oversight["action"] == "overridden"
        assert process.events("dispute")[0]["decision_id"] == second
        assert process.events("outcome")[0]["label"] == 1
        assert process.verify().ok
