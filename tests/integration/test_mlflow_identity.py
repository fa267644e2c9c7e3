"""Model identity from a real (local, file-backed) MLflow model registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from otel_ai_audit.instrumentation.mlflow import MLflowInstrumentor
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.runtime import register_model
from tests.instrumentation_fixtures import AuditedProcess, instrumented


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A model registered twice (versions 1 and 2, alias `champion` on 1) in a local MLflow."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("audit")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    for flip in (False, True):
        labels = (features[:, 0] > 0).astype(int)
        model = LogisticRegression().fit(features, 1 - labels if flip else labels)
        with mlflow.start_run():
            mlflow.sklearn.log_model(model, name="model", registered_model_name="churn")
    mlflow.MlflowClient().set_registered_model_alias("churn", "champion", "1")
    yield "churn"
    mlflow.set_tracking_uri(None)


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[AuditedProcess]:
    with instrumented(tmp_path / "audit", SklearnInstrumentor, MLflowInstrumentor) as process:
        yield process


def test_registry_name_and_version_reach_the_decision_records(
        registry: str, audited: AuditedProcess) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    row = np.zeros((1, 3))
    mlflow.sklearn.load_model(f"models:/{registry}/2").predict(row)
    mlflow.pyfunc.load_model(f"models:/{registry}@champion").predict(row)
    explicit = mlflow.sklearn.load_model(f"models:/{registry}/1")
    register_model(explicit, name="churn-eu", version="7")
    explicit.predict(row)

    first, second, third = audited.events("inference")
    assert (first["model"]["name"], first["model"]["version"]) == ("churn", "2")
    assert first["model"]["source"]["registry"] == "mlflow"
    assert first["model"]["source"]["run_id"]
    assert (second["model"]["name"], second["model"]["version"]) == ("churn", "1")
    assert second["model"]["source"]["model_uri"] == "models:/churn@champion"
    assert (third["model"]["name"], third["model"]["version"]) == ("churn-eu", "7"), \
        "the explicit API outranks the registry"
    assert audited.verify().ok


def test_environment_outranks_the_registry(registry: str, tmp_path: Path) -> None:
    import mlflow.sklearn

    os.environ["OTEL_AI_AUDIT_MODEL_NAME"] = "from-env"
    try:
        with instrumented(tmp_path / "env", SklearnInstrumentor, MLflowInstrumentor) as process:
            mlflow.sklearn.load_model(f"models:/{registry}/2").predict(np.zeros((1, 3)))
            (decision,) = process.events("inference")
            assert (decision["model"]["name"], decision["model"]["version"]) == ("from-env", "2")
    finally:
        del os.environ["OTEL_AI_AUDIT_MODEL_NAME"]
