"""Drift and fairness as OpenTelemetry gauges, so dashboards and alert rules read them like any
metric (instruments of meter `otel_ai_audit`, documented in docs/semantic-conventions.md):

==============================  ========  =====================================================
name                            unit      attributes
==============================  ========  =====================================================
ai_audit.drift.score            1         model name, version, drift feature, drift method
ai_audit.drift.drifted          1         the same (1 drifted, 0 not)
ai_audit.drift.share            1         model name, version (share of drifted features)
ai_audit.fairness.selection_rate  1       model name, version, fairness attribute, slice
ai_audit.fairness.tpr / .fpr    1         the same (slices without positives/negatives: none)
ai_audit.fairness.dp_difference 1         model name, version, fairness attribute
ai_audit.fairness.eo_difference 1         the same
==============================  ========  =====================================================
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from otel_ai_audit import semconv
from otel_ai_audit.monitoring.drift import DriftReport
from otel_ai_audit.monitoring.fairness_window import FairnessReport
from otel_ai_audit.pipeline.metrics import METER_NAME, PerMeterProvider
from otel_ai_audit.version import __version__


class MonitoringMetrics:
    """The gauges on one MeterProvider; `drift`/`fairness` set them from reports."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
        self._gauges = {name: meter.create_gauge(f"ai_audit.{name}", "1", description)
                        for name, description in (
            ("drift.score", "drift statistic of a feature (drift.method says which)"),
            ("drift.drifted", "1 when the feature's drift crossed its threshold"),
            ("drift.share", "share of a model version's input features that drifted"),
            ("fairness.selection_rate", "share of a slice's decisions predicted positive"),
            ("fairness.tpr", "true-positive rate of a slice"),
            ("fairness.fpr", "false-positive rate of a slice"),
            ("fairness.dp_difference", "demographic-parity difference of an attribute"),
            ("fairness.eo_difference", "equalized-odds difference of an attribute"))}

    def _set(self, name: str, value: float | None, attributes: dict[str, Any]) -> None:
        if value is not None:
            self._gauges[name].set(value, attributes)

    def drift(self, report: DriftReport) -> None:
        model = _model(report.model)
        self._set("drift.share", report.share, model)
        for item in report.features:
            attributes = {**model, semconv.DRIFT_FEATURE: item.feature,
                          semconv.DRIFT_METHOD: item.method}
            self._set("drift.score", item.score, attributes)
            self._set("drift.drifted", int(item.drifted), attributes)

    def fairness(self, report: FairnessReport) -> None:
        model = _model(report.model)
        for row in report.rows():
            attribute = {**model, semconv.FAIRNESS_ATTRIBUTE: row["attribute"]}
            slice_ = {**attribute, semconv.FAIRNESS_SLICE: row["slice"]}
            for name in ("selection_rate", "tpr", "fpr"):
                self._set(f"fairness.{name}", row[name], slice_)
            for name in ("dp_difference", "eo_difference"):
                self._set(f"fairness.{name}", row[name], attribute)


def _model(model: dict[str, Any]) -> dict[str, Any]:
    return {semconv.MODEL_NAME: str(model.get("name")),
            semconv.MODEL_VERSION: str(model.get("version"))}


_monitoring = PerMeterProvider(MonitoringMetrics)


def monitoring_metrics(meter_provider: MeterProvider | None = None) -> MonitoringMetrics:
    """The gauges on `meter_provider` (default: the global one), made once per provider."""
    return _monitoring.get(meter_provider)
