"""scikit-learn instrumentation against real models on the real UCI Adult data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sparse
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.instrumentation import model_call
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.runtime import register_model
from tests.instrumentation_fixtures import AuditedProcess, audited_process, instrumented
from tests.unit.profiles import property_settings

FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[AuditedProcess]:
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        yield process


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_split("train").frame, load_split("test").frame


def test_adult_pipeline_records_training_and_one_decision_per_row(
        audited: AuditedProcess, adult: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = adult
    model = adult_pipeline().fit(train[FEATURES], train[TARGET])
    register_model(model, name="adult-income", version="2.1.0")
    batch = test[FEATURES].head(200)
    probabilities = model.predict_proba(batch)
    single = model.predict(batch.head(1))

    training = audited.events("training")
    decisions = audited.events("inference")
    assert len(training) == 1, "a Pipeline fit is one training record, not one per step"
    assert training[0]["training"]["data"]["features"]["shape"] == [len(train), len(FEATURES)]
    assert training[0]["training"]["hyperparameters"]["classify__max_iter"] == 1000
    assert len(decisions) == 201, "one decision per row, nested steps not recorded"
    first = decisions[0]
    assert first["model"]["name"] == "adult-income" and first["model"]["version"] == "2.1.0"
    assert first["model"]["fingerprint"] == training[0]["model"]["fingerprint"]
    assert first["operation"] == "predict_proba"
    capture = audited.runtime.capture
    for index in (0, 57, 199):
        row = to_json_data(batch.iloc[index].to_dict())
        assert decisions[index]["input"] == {"policy": "hash",
                                             "hmac_sha256": capture.keyed_hash(row)}
        assert decisions[index]["output"]["value"] == pytest.approx(list(probabilities[index]))
        assert decisions[index]["batch"] == {"size": 200, "index": index}
    assert decisions[-1]["operation"] == "predict"
    assert decisions[-1]["output"]["value"] == int(single[0])
    assert audited.verify().ok


def test_refit_changes_the_fingerprint(audited: AuditedProcess) -> None:
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    model = LogisticRegression().fit(features, labels)
    model.predict(features[:1])
    model.fit(features, 1 - labels)
    model.predict(features[:1])
    first, second = audited.events("inference")
    assert first["model"]["fingerprint"] != second["model"]["fingerprint"]


@pytest.fixture(scope="module")
def boosting() -> HistGradientBoostingClassifier:
    """Fitted once per module: the tests only predict, and on a busy machine each fit of its
    OpenMP trees takes seconds."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    features[rng.random(features.shape) < 0.1] = np.nan
    return HistGradientBoostingClassifier(max_iter=20).fit(features, rng.integers(0, 3, 200))


@property_settings(0.25)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(4)),
              elements=st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")))))
def test_results_are_identical_with_and_without_instrumentation(
        boosting: HistGradientBoostingClassifier, features: np.ndarray) -> None:
    expected = boosting.predict_proba(features)
    with instrumented(Path(_tmp()), SklearnInstrumentor) as process:
        audited_result = boosting.predict_proba(features)
        assert np.array_equal(expected, audited_result)
        assert len(process.events("inference")) == len(features)


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="otel-ai-audit-prop-")


def test_a_failure_inside_the_instrumentation_never_reaches_the_caller(
        audited: AuditedProcess, monkeypatch: pytest.MonkeyPatch,
        boosting: HistGradientBoostingClassifier) -> None:
    features = np.ones((3, 4))
    expected = boosting.predict(features)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(model_call, "new_decision_ids", broken)
    before = model_call.InstrumentationErrors.count
    assert np.array_equal(boosting.predict(features), expected)
    assert model_call.InstrumentationErrors.count == before + 1
    assert audited.runtime.writer.stats().failed == 1, "the lost decision is counted"


def test_a_model_error_is_recorded_and_re_raised_unchanged(
        audited: AuditedProcess, boosting: HistGradientBoostingClassifier) -> None:
    with pytest.raises(ValueError, match="features"):
        boosting.predict(np.ones((2, 7)))
    (decision,) = audited.events("inference")
    assert decision["error"]["type"] == "ValueError"
    assert audited.verify().ok


def test_sparse_lists_nan_and_odd_objects_are_recorded(
        audited: AuditedProcess, boosting: HistGradientBoostingClassifier) -> None:
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(40, 6))
    labels = (dense[:, 0] > 0).astype(int)
    sparse_model = LogisticRegression().fit(sparse.csr_matrix(dense), labels)
    sparse_model.predict(sparse.csr_matrix(dense[:3]))
    LogisticRegression().fit(dense, labels).predict(dense[:2].tolist())
    boosting.predict(np.array([[np.nan, 1.0, np.inf * 0, 2.0]]))

    class Opaque:
        pass

    frame = pd.DataFrame({"x": [1.0, 2.0], "tag": [Opaque(), Opaque()]})
    pipeline = make_pipeline(ColumnTransformer([("x", "passthrough", ["x"])]),
                             LogisticRegression()).fit(frame, [0, 1])
    pipeline.predict(frame)
    decisions = audited.events("inference")
    assert [d["batch"]["size"] for d in decisions] == [3, 3, 3, 2, 2, 1, 2, 2]
    assert all(d["input"]["policy"] == "hash" for d in decisions)
    assert audited.verify().ok


def test_full_capture_caps_huge_inputs(tmp_path: Path) -> None:
    with instrumented(tmp_path, SklearnInstrumentor, capture_inputs="full",
                      capture_max_bytes=2048) as process:
        rng = np.random.default_rng(4)
        # A row of 500 floats is ~10 KB of JSON, five times the cap. (Wider data only costs the
        # reference profile the fit builds on the writer thread: seconds for 5000 features.)
        wide = rng.normal(size=(10, 500))
        model = LogisticRegression(max_iter=50).fit(wide, np.arange(10) % 2)
        model.predict(wide[:1])
        model.predict(wide[:1, :500])
        narrow = LogisticRegression().fit(wide[:, :3], np.arange(10) % 2)
        narrow.predict(wide[:1, :3])
        decisions = process.events("inference")
        assert decisions[0]["input"]["truncated"] is True
        assert decisions[0]["input"]["bytes"] > 2048
        assert decisions[-1]["input"]["value"] == pytest.approx(list(wide[0, :3]))


def test_third_party_estimators_defined_later_are_audited(audited: AuditedProcess) -> None:
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ThresholdClassifier(ClassifierMixin, BaseEstimator):
        """Stands for XGBoost/LightGBM: a class that follows the sklearn API, defined after
        instrumentation started."""

        def __init__(self, threshold: float = 0.0) -> None:
            self.threshold = threshold

        def fit(self, features: np.ndarray, labels: np.ndarray) -> ThresholdClassifier:
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, features: np.ndarray) -> np.ndarray:
            return (np.asarray(features)[:, 0] > self.threshold).astype(int)

    model = ThresholdClassifier(0.5).fit(np.zeros((2, 1)), np.array([0, 1]))
    assert list(model.predict(np.array([[0.2], [0.9]]))) == [0, 1]
    decisions = audited.events("inference")
    assert [d["output"]["value"] for d in decisions] == [0, 1]
    assert decisions[0]["model"]["class"] == "ThresholdClassifier"
    assert len(audited.events("training")) == 1


def test_uninstrument_restores_the_original_methods(tmp_path: Path) -> None:
    for process in audited_process(tmp_path):
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=process.provider)
        instrumentor.uninstrument()
        LogisticRegression().fit(np.eye(2), [0, 1]).predict(np.eye(2))
        assert process.events() == []


def test_each_method_is_wrapped_exactly_once(audited: AuditedProcess) -> None:
    from sklearn.linear_model._base import LinearClassifierMixin

    wrapped = LinearClassifierMixin.__dict__["predict"]
    assert hasattr(wrapped, "__wrapped__")
    assert not hasattr(wrapped.__wrapped__, "__wrapped__"), "a method was wrapped twice"


def test_fingerprint_is_the_same_for_a_pickled_copy(
        adult: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Deployed copies of a model must carry the fingerprint of the model that was fitted."""
    import pickle

    from otel_ai_audit.instrumentation.sklearn.identity import fingerprint

    train, _ = adult
    model = adult_pipeline().fit(train[FEATURES].head(3000), train[TARGET].head(3000))
    assert fingerprint(pickle.loads(pickle.dumps(model))) == fingerprint(model)
