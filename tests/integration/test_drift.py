"""Drift monitoring on the real UCI Adult pipeline: reference profile at fit, monitoring views on
the decisions, drift against scipy's own statistics, drift records in the chain, Elasticsearch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from elasticsearch import Elasticsearch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from otel_ai_audit.backends.elasticsearch.layout import index_names
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.monitoring.drift import DriftPolicy, DriftReport, compare, drift, ks_binned
from otel_ai_audit.monitoring.profile import OTHER, ReferenceProfile, profile_feature
from otel_ai_audit.monitoring.records import ElasticsearchEvents, StoreEvents, record_time
from otel_ai_audit.monitoring.telemetry import monitoring_metrics
from otel_ai_audit.runtime import register_model
from otel_ai_audit.sinks import Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import key_beside
from tests.instrumentation_fixtures import instrumented
from tests.services.elasticsearch import ElasticsearchService

FEATURES = NUMERIC + CATEGORICAL
SHIFTED = {"age", "hours_per_week", "sex"}
SECOND = 1_000_000_000
CLI = str(Path(sys.executable).parent / "otel-ai-audit")


@dataclass
class Trail:
    store: Path
    train: pd.DataFrame
    test: pd.DataFrame
    shifted: pd.DataFrame
    test_window: tuple[str, str]
    shifted_window: tuple[str, str]
    profile: ReferenceProfile


def shift(frame: pd.DataFrame) -> pd.DataFrame:
    """Age +15, hours per week x1.5, sex swapped; every other column as it was."""
    shifted = frame.copy()
    shifted["age"] = shifted["age"] + 15
    shifted["hours_per_week"] = shifted["hours_per_week"] * 1.5
    shifted["sex"] = shifted["sex"].map({"Male": "Female", "Female": "Male"})
    return shifted


def _now() -> int:
    time.sleep(0.002)
    return time.time_ns()


def _sleep_until(moment: int) -> int:
    assert time.time_ns() < moment, "scoring the split took longer than its window"
    time.sleep((moment - time.time_ns()) / 1e9)
    return moment


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    train, test = load_split("train").frame, load_split("test").frame
    shifted = shift(test)
    with instrumented(tmp_path_factory.mktemp("drift"), SklearnInstrumentor) as process:
        model = adult_pipeline().fit(train[FEATURES], train[TARGET])
        # Asynchronous: each split (16,281 rows) must be scored within its one-second window,
        # and a `process` durable call would wait for its 16,281 records to be committed.
        register_model(model, name="adult-income", version="2.1.0", durability="async")
        # Two one-second windows, so that `--every 1s` sees the trend.
        start = _now()
        model.predict_proba(test[FEATURES])
        middle = _sleep_until(start + SECOND)
        model.predict_proba(shifted[FEATURES])
        end = _sleep_until(middle + SECOND)
        (reference,) = process.events("reference")
    yield Trail(process.store, train, test, shifted, (record_time(start), record_time(middle)),
                (record_time(middle), record_time(end)),
                ReferenceProfile.from_json(reference["reference"]))


def store_drift(trail: Trail, window: tuple[str, str]) -> DriftReport:
    with AuditStore(trail.store, create=False, readonly=True) as store:
        (report,) = drift(StoreEvents(store), "adult-income", *window)
    return report


def test_reference_profile_is_recorded_at_fit_and_tied_to_the_fingerprint(trail: Trail) -> None:
    with AuditStore(trail.store, create=False, readonly=True) as store:
        events = list(StoreEvents(store).events(["training", "reference", "inference"]))
    training = next(e for e in events if e["type"] == "training")
    reference = next(e for e in events if e["type"] == "reference")
    decision = next(e for e in events if e["type"] == "inference")
    assert reference["model"]["fingerprint"] == training["model"]["fingerprint"] \
        == decision["model"]["fingerprint"]
    assert [f.name for f in trail.profile.features] == FEATURES
    assert trail.profile.rows == len(trail.train)
    assert len(json.dumps(reference)) < 16_384, "bounded by bins x features, not by the data"
    age = trail.profile.feature("age")
    assert age is not None and sum(age.counts) == len(trail.train)
    assert list(age.edges) == sorted(set(np.quantile(trail.train["age"], np.arange(1, 20) / 20))
                                     | {trail.train["age"].max()})
    # The view holds bins and categories, never the raw values.
    view = decision["monitor"]
    assert view["profile"] == trail.profile.id
    row = trail.test.iloc[0]
    assert view["features"]["age"] == int(np.searchsorted(age.edges, row["age"], side="right"))
    assert view["features"]["sex"] == row["sex"]
    assert view["prediction"] in ("0", "1")
    assert decision["input"]["policy"] == "hash"


def test_test_split_does_not_drift(trail: Trail) -> None:
    report = store_drift(trail, trail.test_window)
    assert report.decisions == len(trail.test)
    assert report.drifted == [] and not report.dataset_drifted
    assert {f.feature for f in report.features} == set(FEATURES) | {"prediction"}
    assert all(f.method == ("psi" if f.kind == "numeric" else "jensenshannon")
               for f in report.features), "a 32,561-row reference picks PSI / Jensen-Shannon"


def test_shifted_copy_drifts_on_exactly_the_shifted_features(trail: Trail) -> None:
    report = store_drift(trail, trail.shifted_window)
    drifted = {f.feature for f in report.features if f.drifted and f.kind != "prediction"}
    assert drifted == SHIFTED
    assert report.share == pytest.approx(len(SHIFTED) / len(FEATURES))


def test_statistics_match_scipy_on_the_same_data(trail: Trail) -> None:
    report = store_drift(trail, trail.shifted_window)
    results = {f.feature: f for f in report.features}
    for name in ("age", "hours_per_week", "fnlwgt"):
        profile = trail.profile.feature(name)
        reference, current = trail.train[name].to_numpy(), trail.shifted[name].to_numpy()
        # PSI as Evidently computes it from the raw values on the reference deciles.
        edges = np.concatenate(([-np.inf], profile.psi_edges, [np.inf]))
        expected = np.maximum(np.histogram(reference, edges)[0] / len(reference), 1e-4)
        actual = np.maximum(np.histogram(current, edges)[0] / len(current), 1e-4)
        # np.histogram's bins are [a, b) like ours, except the last, closed: no value sits
        # on +inf, so they agree.
        assert results[name].psi == pytest.approx(
            np.sum((expected - actual) * np.log(expected / actual)), rel=1e-9)
        # Binned KS is a lower bound of scipy's raw-value statistic, by at most a bin's share.
        exact = ks_2samp(reference, current).statistic
        binned, _ = ks_binned(np.asarray(profile.counts[:-1]),
                              np.bincount(profile.codes(list(current)),
                                          minlength=profile.size)[:-1])
        largest = max(np.max(profile.counts) / len(reference),
                      np.max(np.bincount(profile.codes(list(current)))) / len(current))
        assert binned <= exact + 1e-12 and exact - binned <= largest
    for name in ("race", "sex", "relationship"):
        reference = trail.train[name].value_counts()
        current = trail.shifted[name].value_counts().reindex(reference.index, fill_value=0)
        assert set(trail.shifted[name]) <= set(reference.index)
        table = np.vstack((reference.to_numpy(), current.to_numpy()))
        assert results[name].p_value == pytest.approx(chi2_contingency(table).pvalue,
                                                      rel=1e-9, abs=1e-300)
        assert results[name].score == pytest.approx(
            jensenshannon(reference / reference.sum(), current / current.sum()), rel=1e-9)


def test_binned_ks_is_exact_when_every_value_has_its_own_bin() -> None:
    rng = np.random.default_rng(7)
    reference = rng.integers(0, 5, 800)
    current = rng.choice(5, 600, p=[0.15, 0.2, 0.2, 0.2, 0.25])
    profile = profile_feature("grade", reference)
    current_counts = np.bincount(profile.codes(list(current)), minlength=profile.size)
    result = compare(profile, current_counts, DriftPolicy())
    scipy_result = ks_2samp(reference, current, method="asymp")
    assert result.method == "ks", "a reference of at most 1,000 rows is tested with KS"
    statistic, _ = ks_binned(np.asarray(profile.counts[:-1]), current_counts[:-1])
    assert statistic == pytest.approx(scipy_result.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(scipy_result.pvalue, rel=1e-9)
    assert result.drifted == (scipy_result.pvalue < 0.05)


def test_small_categorical_reference_uses_chi_squared_and_rare_values_are_other() -> None:
    rng = np.random.default_rng(3)
    reference = rng.choice(["a", "b", "c"], 600, p=[0.5, 0.3, 0.2]).tolist() + ["rare"] * 3
    current = rng.choice(["a", "b", "c", "new"], 400, p=[0.2, 0.3, 0.4, 0.1]).tolist()
    profile = profile_feature("plan", np.asarray(reference, dtype=object))
    assert "rare" not in profile.categories and profile.categories[-2] == OTHER
    codes = profile.codes(current)
    result = compare(profile, np.bincount(codes, minlength=profile.size), DriftPolicy())
    table = np.vstack((np.asarray(profile.counts), np.bincount(codes, minlength=profile.size)))
    table = table[:, table.sum(axis=0) > 0]
    assert result.method == "chi2" and result.drifted
    assert result.p_value == pytest.approx(chi2_contingency(table).pvalue, rel=1e-9)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


def test_cli_records_drift_into_the_chain_and_verify_passes(trail: Trail) -> None:
    window = ["--from", trail.shifted_window[0], "--to", trail.shifted_window[1]]
    result = _run("drift", str(trail.store), "--model", "adult-income", *window,
                  "--json", "--record", "--signing-key", str(key_beside(trail.store)))
    assert result.returncode == 0, result.stderr
    (printed,) = json.loads(result.stdout)
    assert {f["feature"] for f in printed["features"] if f["drifted"]} >= SHIFTED
    failing = _run("drift", str(trail.store), "--model", "adult-income", *window,
                   "--fail-on-drift")
    assert failing.returncode == 1 and "hours_per_week" in failing.stdout
    verify = _run("verify", str(trail.store), "--public-key", f"{trail.store}.pub.pem")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with AuditStore(trail.store, create=False, readonly=True) as store:
        records = list(StoreEvents(store).events(["drift"]))
    assert len(records) == len(FEATURES) + 1
    age = next(r for r in records if r["drift"]["feature"] == "age")
    assert age["window"] == {"start": trail.shifted_window[0], "end": trail.shifted_window[1]}
    assert age["time"] == trail.shifted_window[1]
    assert age["model"]["name"] == "adult-income" and age["model"]["version"] == "2.1.0"
    assert set(age["drift"]) == {"feature", "kind", "method", "score", "threshold", "drifted",
                                 "psi", "p_value", "reference_count", "current_count"}
    assert age["drift"]["drifted"] is True and age["drift"]["method"] == "psi"


@pytest.mark.parametrize("window, message", [
    (("2026-01-01", "2026-01-02"), "no such store file"),
    (("yesterday", "2026-01-02"), "not an ISO 8601 time"),
    (("2026-01-02", "2026-01-01"), "is not before"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, window: tuple[str, str],
                                               message: str) -> None:
    result = _run("drift", str(tmp_path / "missing.db"), "--model", "m",
                  "--from", window[0], "--to", window[1])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_every_gives_one_result_per_window(trail: Trail) -> None:
    result = _run("drift", str(trail.store), "--model", "adult-income", "--from",
                  trail.test_window[0], "--to", trail.shifted_window[1], "--every", "1s",
                  "--json")
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert (first["window"]["end"], second["window"]["start"]) == (trail.test_window[1],) * 2
    assert not first["dataset_drifted"] and [f for f in first["features"] if f["drifted"]] == []
    assert {f["feature"] for f in second["features"]
            if f["drifted"] and f["kind"] != "prediction"} == SHIFTED
    bad = _run("drift", str(trail.store), "--model", "adult-income", "--from",
               trail.test_window[0], "--to", trail.shifted_window[1], "--every", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_no_decisions_in_the_window_is_exit_2(trail: Trail) -> None:
    result = _run("drift", str(trail.store), "--model", "adult-income",
                  "--from", "2001-01-01", "--to", "2001-01-02")
    assert result.returncode == 2 and "no decisions" in result.stderr


def test_drift_from_elasticsearch_equals_drift_from_the_store(
        trail: Trail, elasticsearch: ElasticsearchService) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    recorded = _run("drift", str(trail.store), "--model", "adult-income", "--from",
                    trail.shifted_window[0], "--to", trail.shifted_window[1], "--record",
                    "--signing-key", str(key_beside(trail.store)))
    assert recorded.returncode == 0, recorded.stderr
    shipper = Shipper(str(trail.store), ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                          index_prefix=prefix))
    assert shipper.drain(timeout=300), shipper.stats
    shipper.close()
    client = Elasticsearch(elasticsearch.url)
    source = ElasticsearchEvents(client, index_names(prefix)[0])
    for window in (trail.test_window, trail.shifted_window):
        (from_es,) = drift(source, "adult-income", *window)
        assert from_es == store_drift(trail, window)
    client.indices.refresh(index=index_names(prefix)[0])
    drifted = client.search(index=index_names(prefix)[0], size=0, query={"bool": {"filter": [
        {"term": {"event.type": "drift"}}, {"term": {"drift.drifted": True}},
        {"range": {"window.end": {"lte": trail.shifted_window[1]}}}]}})
    assert drifted["hits"]["total"]["value"] >= len(SHIFTED), "drift fields are indexed"
    verify = _run("verify", "--elasticsearch", elasticsearch.url, "--index-prefix", prefix,
                  "--public-key", f"{trail.store}.pub.pem")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    result = _run("drift", "--elasticsearch", elasticsearch.url, "--index-prefix", prefix,
                  "--model", "adult-income", "--from", trail.test_window[0],
                  "--to", trail.test_window[1], "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["features"] == store_drift(
        trail, trail.test_window).to_json()["features"]


def test_drift_gauges(trail: Trail) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monitoring_metrics(provider).drift(store_drift(trail, trail.shifted_window))
    points = {(metric.name, point.attributes.get("ai_audit.drift.feature")): point.value
              for resource in reader.get_metrics_data().resource_metrics
              for scope in resource.scope_metrics for metric in scope.metrics
              for point in metric.data.data_points}
    assert points[("ai_audit.drift.drifted", "age")] == 1
    assert points[("ai_audit.drift.drifted", "race")] == 0
    assert points[("ai_audit.drift.score", "age")] > 0.25
    assert points[("ai_audit.drift.share", None)] == pytest.approx(3 / 14)
    provider.shutdown()


@pytest.mark.parametrize("setting, kept", [("none", None), ("sex,race", {"sex", "race"})])
def test_monitor_features_setting(tmp_path: Path, setting: str, kept: set[str] | None) -> None:
    train = load_split("train").frame.head(2000)
    with instrumented(tmp_path, SklearnInstrumentor,
                      monitor_features=tuple(setting.split(","))) as process:
        model = adult_pipeline().fit(train[FEATURES], train[TARGET])
        model.predict(train[FEATURES].head(3))
        decisions = process.events("inference")
        references = process.events("reference")
    if kept is None:
        assert all("monitor" not in decision for decision in decisions)
        assert references == []  # no profile of the training data is taken either
    else:
        assert all(set(d["monitor"]["features"]) == kept for d in decisions)
        assert len(references) == 1


def test_register_reference_for_a_torch_model(tmp_path: Path) -> None:
    import torch

    from otel_ai_audit import register_reference
    from otel_ai_audit.instrumentation.torch import TorchInstrumentor

    train, test = load_split("train").frame, load_split("test").frame.head(3000)
    mean, std = train[NUMERIC].mean(), train[NUMERIC].std()

    def tensor(frame: pd.DataFrame) -> torch.Tensor:
        return torch.tensor(((frame[NUMERIC] - mean) / std).to_numpy(), dtype=torch.float32)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(len(NUMERIC), 2)).eval()
    with instrumented(tmp_path, TorchInstrumentor) as process:
        register_model(model, name="adult-torch", version="1")
        with torch.no_grad():
            scores = model(tensor(train)).softmax(dim=1)
        profile_id = register_reference(model, tensor(train), scores, classes=(0, 1))
        start = _now()
        with torch.no_grad():
            model(tensor(test))
            middle = _now()
            model(tensor(test.assign(capital_gain=test["capital_gain"] + 20_000)))
        end = _now()
        process.close()
    with AuditStore(process.store, create=False, readonly=True) as store:
        source = StoreEvents(store)
        (reference,) = list(source.events(["reference"]))
        (calm,) = drift(source, "adult-torch", record_time(start), record_time(middle))
        (shifted,) = drift(source, "adult-torch", record_time(middle), record_time(end))
    assert reference["reference"]["id"] == profile_id
    assert reference["model"]["name"] == "adult-torch"
    assert calm.drifted == [] and calm.decisions == len(test)
    capital_gain = f"x{NUMERIC.index('capital_gain')}"
    assert {f for f in shifted.drifted if f != "prediction"} == {capital_gain}


def test_a_failing_monitoring_view_costs_the_view_never_the_decision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_ai_audit.monitoring import profile as profile_module

    def broken(*args: object) -> None:
        raise RuntimeError("monitoring bug")

    train = load_split("train").frame.head(2000)
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        model = adult_pipeline().fit(train[FEATURES], train[TARGET])
        expected = model.predict_proba(train[FEATURES].head(5))
        assert process.runtime.writer.flush()
        monkeypatch.setattr(profile_module, "_views", broken)
        assert np.array_equal(model.predict_proba(train[FEATURES].head(5)), expected)
        decisions = process.events("inference")
        assert process.verify().ok
    assert len(decisions) == 10
    assert all("monitor" in d for d in decisions[:5])
    assert not any("monitor" in d for d in decisions[5:])
