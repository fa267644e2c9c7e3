"""OpenTelemetry metrics of the pipeline, read through a real SDK MeterProvider, against what the
writer did and what the store and its signed checkpoints hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_ai_audit
from otel_ai_audit.pipeline.metrics import METER_NAME, SINK_NAME, pipeline_metrics
from otel_ai_audit.runtime import register_model
from tests.pipeline_fixtures import audited_sklearn, risk_of, signed_checkpoints, trained_model

Points = dict[str, dict[tuple[tuple[str, Any], ...], int]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, str]]:
    """Data points by metric name and attributes, and each metric's unit."""
    points: Points = {}
    units: dict[str, str] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == METER_NAME
            for metric in scope.metrics:
                units[metric.name] = metric.unit
                points[metric.name] = {tuple(sorted(point.attributes.items())): point.value
                                       for point in metric.data.data_points}
    return points, units


def test_pipeline_metrics_match_the_writer_the_store_and_the_checkpoints(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with audited_sklearn(tmp_path, meter_provider=provider, sampling_rate=0.3) as process:
        writer = process.runtime.writer
        model, rows = trained_model(9)
        register_model(model, name="credit", risk_fn=risk_of)
        for start in range(0, 500, 50):
            model.predict_proba(rows[start:start + 50])
        decision = otel_ai_audit.last_decision_ids()[0]
        otel_ai_audit.record_oversight(decision, reviewer="analyst-2", action="accepted")
        assert writer.flush()
        points, units = collect(reader)
        stats = writer.stats()
        report = process.verify()
    assert report.ok, report.findings

    assert points["ai_audit.pipeline.queued"] == {(): stats.queued}
    assert stats.queued == 1 + 10 + 1  # the fit, ten batch calls, the oversight action
    assert points["ai_audit.pipeline.persisted"] == {(): report.record_count}
    assert points["ai_audit.pipeline.failed"] == {(): 0}
    assert points["ai_audit.pipeline.spilled"] == {(): 0}
    signed = signed_checkpoints(process.store)[-1].counters["sampled_out"]
    assert signed and sum(signed.values()) > 100
    assert points["ai_audit.pipeline.sampled_out"] == {
        (("ai_audit.model.name", "credit"), ("ai_audit.risk.level", key.split("|")[1])): count
        for key, count in signed.items()}
    assert units["ai_audit.pipeline.persisted"] == "{record}"
    assert units["ai_audit.pipeline.sampled_out"] == "{decision}"


def test_shippers_count_per_sink_through_the_same_instruments() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = pipeline_metrics(provider)
    assert pipeline_metrics(provider) is metrics, "one set of instruments per provider"
    metrics.shipped("elasticsearch", 500)
    metrics.shipped("elasticsearch", 12)
    metrics.shipped("splunk", 3)
    metrics.retried("elasticsearch", 12)
    metrics.failed("splunk", 1)
    points, units = collect(reader)
    assert points["ai_audit.sink.shipped"] == {((SINK_NAME, "elasticsearch"),): 512,
                                               ((SINK_NAME, "splunk"),): 3}
    assert points["ai_audit.sink.retried"] == {((SINK_NAME, "elasticsearch"),): 12}
    assert points["ai_audit.sink.failed"] == {((SINK_NAME, "splunk"),): 1}
    assert units["ai_audit.sink.shipped"] == "{record}"
    # No writer observed by these instruments: the pipeline counters read zero.
    assert points["ai_audit.pipeline.queued"] == {(): 0}
