"""How the instrumentations reach the audit runtime, and what `shutdown()` forgets.

Real scikit-learn models on the real UCI Adult data, a real store per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from otel_ai_audit import register_reference
from otel_ai_audit.datasets.adult import NUMERIC, TARGET, load_split
from otel_ai_audit.instrumentation import model_call
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.monitoring.profile import references
from otel_ai_audit.runtime import AuditRuntime
from tests.instrumentation_fixtures import AuditedProcess, audited_process


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return load_split("train").frame.head(2000)


@pytest.fixture
def process(tmp_path: Path) -> Iterator[AuditedProcess]:
    yield from audited_process(tmp_path)


def fit_and_predict(process: AuditedProcess, train: pd.DataFrame, **instrument: Any) -> None:
    """Fit and call a model with the scikit-learn instrumentation given `instrument`."""
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=process.provider, **instrument)
    try:
        model = LogisticRegression(max_iter=500).fit(train[NUMERIC], train[TARGET])
        assert len(model.predict(train[NUMERIC].head(5))) == 5
    finally:
        instrumentor.uninstrument()


def test_the_instrumentation_records_to_the_runtime_it_is_given(
        process: AuditedProcess, train: pd.DataFrame) -> None:
    fit_and_predict(process, train, audit_runtime=process.runtime)
    assert len(process.events("inference")) == 5
    assert len(process.events("training")) == 1


def test_a_runtime_source_saying_none_records_nothing_though_one_is_configured(
        process: AuditedProcess, train: pd.DataFrame) -> None:
    asked = []

    def nothing() -> AuditRuntime | None:
        asked.append(True)
        return None

    fit_and_predict(process, train, audit_runtime=nothing)
    assert asked, "the source is asked on each call"
    assert process.events("inference") == [] and process.events("training") == []


def test_a_failing_runtime_source_is_counted_and_never_reaches_the_caller(
        process: AuditedProcess, train: pd.DataFrame) -> None:
    def broken() -> AuditRuntime | None:
        raise RuntimeError("no runtime here")

    before = model_call.InstrumentationErrors.count
    fit_and_predict(process, train, audit_runtime=broken)
    assert model_call.InstrumentationErrors.count >= before + 2, "the fit and the predict"
    assert process.events("inference") == []


def test_register_reference_uses_the_fingerprint_the_instrumentation_registered(
        process: AuditedProcess, train: pd.DataFrame) -> None:
    fit_and_predict(process, train)
    model = LogisticRegression(max_iter=500).fit(train[NUMERIC], train[TARGET])
    register_reference(model, train[NUMERIC], model.predict(train[NUMERIC]))
    with pytest.raises(ValueError, match="instrument its framework or pass fingerprint="):
        register_reference(object(), train[NUMERIC])
    (training,) = process.events("training")
    at_fit, registered = process.events("reference")
    assert training["model"]["fingerprint"] == at_fit["model"]["fingerprint"]
    assert registered["model"]["fingerprint"] == at_fit["model"]["fingerprint"], \
        "the same fitted state, fitted without the instrumentation"


def test_shutdown_forgets_reference_profiles_and_the_feature_selection(
        tmp_path: Path, train: pd.DataFrame) -> None:
    for process in audited_process(tmp_path / "first", monitor_features=("age",)):
        fit_and_predict(process, train)
        assert references.profiles and references.selection == {"age"}
        assert [set(d["monitor"]["features"]) for d in process.events("inference")] == \
            [{"age"}] * 5
    assert references.profiles == {} and references.selection is None
    for process in audited_process(tmp_path / "second"):
        model = LogisticRegression(max_iter=500).fit(train[NUMERIC], train[TARGET])
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=process.provider)
        try:
            model.predict(train[NUMERIC].head(5))
        finally:
            instrumentor.uninstrument()
        decisions = process.events("inference")
        assert len(decisions) == 5 and all("monitor" not in d for d in decisions), \
            "the first process's profile of the same fitted model is forgotten"
