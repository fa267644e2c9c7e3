"""Fairness over time: UCI Adult decisions joined with their outcomes by decision id, per slice
of sex and race, checked against a pandas groupby of the same rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from elasticsearch import Elasticsearch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ai_audit import last_decision_ids, record_outcome
from otel_ai_audit.backends.elasticsearch.layout import index_names
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.monitoring.drift import references_by_id
from otel_ai_audit.monitoring.fairness_window import FairnessReport, fairness
from otel_ai_audit.monitoring.records import ElasticsearchEvents, StoreEvents, record_time
from otel_ai_audit.monitoring.telemetry import monitoring_metrics
from otel_ai_audit.runtime import register_model
from otel_ai_audit.sinks import Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import key_beside
from tests.instrumentation_fixtures import instrumented
from tests.services.elasticsearch import ElasticsearchService

FEATURES = NUMERIC + CATEGORICAL
LABELLED = 4000
CLI = str(Path(sys.executable).parent / "otel-ai-audit")


@dataclass
class Scored:
    store: Path
    rows: pd.DataFrame
    """The scored test rows with their prediction; the first LABELLED have an outcome."""
    window: tuple[str, str]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scored]:
    train, test = load_split("train").frame, load_split("test").frame.head(8000)
    with instrumented(tmp_path_factory.mktemp("fairness"), SklearnInstrumentor) as process:
        model = adult_pipeline().fit(train[FEATURES], train[TARGET])
        register_model(model, name="adult-income", version="2.1.0")
        start = time.time_ns()
        predicted = model.predict(test[FEATURES])
        end = time.time_ns() + 1
        ids = last_decision_ids()
        for decision_id, label in zip(ids[:LABELLED], test[TARGET][:LABELLED], strict=True):
            record_outcome(decision_id, label=int(label))
        process.close()
    rows = test.assign(predicted=predicted)
    yield Scored(process.store, rows, (record_time(start), record_time(end)))


def store_fairness(scored: Scored) -> FairnessReport:
    with AuditStore(scored.store, create=False, readonly=True) as store:
        (report,) = fairness(StoreEvents(store), "adult-income", *scored.window, ["sex", "race"])
    return report


def expected(rows: pd.DataFrame, attribute: str) -> pd.DataFrame:
    labelled = rows.head(LABELLED)
    grouped = labelled.groupby(attribute)
    table = pd.DataFrame({
        "count": grouped.size(),
        "positives": grouped[TARGET].sum(),
        "selection_rate": grouped["predicted"].mean(),
        "tpr": labelled[labelled[TARGET] == 1].groupby(attribute)["predicted"].mean(),
        "fpr": labelled[labelled[TARGET] == 0].groupby(attribute)["predicted"].mean(),
    })
    return table


def test_fairness_per_slice_matches_a_pandas_groupby(scored: Scored) -> None:
    report = store_fairness(scored)
    assert report.decisions == len(scored.rows) and report.labelled == LABELLED
    rows = report.rows()
    for attribute in ("sex", "race"):
        table = expected(scored.rows, attribute)
        mine = {row["slice"]: row for row in rows if row["attribute"] == attribute}
        assert set(mine) == set(table.index)
        for value, truth in table.iterrows():
            row = mine[value]
            assert row["count"] == truth["count"] and row["positives"] == truth["positives"]
            assert row["selection_rate"] == pytest.approx(truth["selection_rate"])
            assert row["tpr"] == pytest.approx(truth["tpr"])
            assert row["fpr"] == pytest.approx(truth["fpr"])
            assert row["decisions"] == int((scored.rows[attribute] == value).sum())
            assert row["dp_difference"] == pytest.approx(
                table["selection_rate"].max() - table["selection_rate"].min())
            assert row["eo_difference"] == pytest.approx(max(
                table["tpr"].max() - table["tpr"].min(), table["fpr"].max() - table["fpr"].min()))


def test_numeric_slices_are_named_by_their_interval(scored: Scored) -> None:
    """A numeric attribute's slices are the reference bins, named by their interval of values
    (pandas' `cut` on the recorded edges), not by the bin's index."""
    with AuditStore(scored.store, create=False, readonly=True) as store:
        source = StoreEvents(store)
        (report,) = fairness(source, "adult-income", *scored.window, ["age"])
        [profile] = references_by_id(source.events(["reference"])).values()
    edges = profile.feature("age").edges
    bins = pd.cut(scored.rows["age"].head(LABELLED), [-math.inf, *edges, math.inf],
                  right=False)
    named = {interval: (f"< {interval.right:.4g}" if interval.left == -math.inf else
                        f">= {interval.left:.4g}" if interval.right == math.inf else
                        f"[{interval.left:.4g}, {interval.right:.4g})")
             for interval in bins.cat.categories}
    counts = bins.map(named).value_counts()
    rows = {row["slice"]: row["count"] for row in report.rows()}
    assert rows == {label: int(count) for label, count in counts.items() if count}
    assert len(rows) > 5


def test_cli_records_fairness_into_the_chain(scored: Scored) -> None:
    command = [CLI, "fairness", str(scored.store), "--model", "adult-income",
               "--attribute", "sex", "--attribute", "race", "--from", scored.window[0],
               "--to", scored.window[1], "--record", "--json"]
    keyless = {k: v for k, v in os.environ.items() if k != "OTEL_AI_AUDIT_SIGNING_KEY"}
    keys = sorted(scored.store.parent.glob("*.pem"))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300, env=keyless)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "OTEL_AI_AUDIT_SIGNING_KEY is not set" in line and "otel-ai-audit keygen" in line
    assert sorted(scored.store.parent.glob("*.pem")) == keys, "no key was created"
    result = subprocess.run([*command, "--signing-key", str(key_beside(scored.store))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (printed,) = json.loads(result.stdout)
    assert printed["slices"] == store_fairness(scored).rows()
    verify = subprocess.run([CLI, "verify", str(scored.store), "--public-key",
                             f"{scored.store}.pub.pem"], capture_output=True, text=True,
                            timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with AuditStore(scored.store, create=False, readonly=True) as store:
        records = list(StoreEvents(store).events(["fairness"]))
    female = next(r for r in records if r["fairness"]["slice"] == "Female")
    assert female["type"] == "fairness" and female["window"]["end"] == scored.window[1]
    assert female["fairness"]["attribute"] == "sex"
    assert {"attribute", "slice", "count", "positives", "selection_rate", "tpr", "fpr",
            "dp_difference", "eo_difference"} <= set(female["fairness"])
    assert len(records) == len(printed["slices"])


def test_cli_table_and_bad_window(scored: Scored) -> None:
    result = subprocess.run(
        [CLI, "fairness", str(scored.store), "--model", "adult-income",
         "--attribute", "sex", "--from", "2026-01-01", "--to", "2026-01-01"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "is not before" in result.stderr
    result = subprocess.run(
        [CLI, "fairness", str(scored.store), "--model", "adult-income",
         "--attribute", "sex", "--from", scored.window[0], "--to", scored.window[1]],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Female" in result.stdout


def test_fairness_gauges(scored: Scored) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    report = store_fairness(scored)
    monitoring_metrics(provider).fairness(report)
    points = {(metric.name, point.attributes.get("ai_audit.fairness.attribute"),
               point.attributes.get("ai_audit.fairness.slice")): point.value
              for resource in reader.get_metrics_data().resource_metrics
              for scope in resource.scope_metrics for metric in scope.metrics
              for point in metric.data.data_points}
    female = next(r for r in report.rows() if r["slice"] == "Female")
    assert points[("ai_audit.fairness.selection_rate", "sex", "Female")] == \
        pytest.approx(female["selection_rate"])
    assert points[("ai_audit.fairness.dp_difference", "sex", None)] == \
        pytest.approx(female["dp_difference"])
    provider.shutdown()


def test_fairness_from_elasticsearch_equals_fairness_from_the_store(
        scored: Scored, elasticsearch: ElasticsearchService) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    shipper = Shipper(str(scored.store), ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                           index_prefix=prefix))
    assert shipper.drain(timeout=300), shipper.stats
    shipper.close()
    client = Elasticsearch(elasticsearch.url)
    (from_es,) = fairness(ElasticsearchEvents(client, index_names(prefix)[0]), "adult-income",
                          *scored.window, ["sex", "race"])
    assert from_es.rows() == store_fairness(scored).rows()
    assert from_es.labelled == LABELLED
