"""`otel-ai-audit drift`: production decisions of a window against the model's reference."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from otel_ai_audit.cli import _monitoring
from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail, table
from otel_ai_audit.cli._elasticsearch import settings_from
from otel_ai_audit.cli._monitoring import (
    event_source,
    flush_metrics,
    monitoring_options,
    per_window,
    windows,
)


@click.command()
@monitoring_options
@click.option("--numeric-method", "drift_numeric_method", type=click.Choice(["auto", "psi", "ks"]),
              help="Statistic for numeric features (default auto: KS for a reference of at most "
                   "1,000 rows, else PSI; $OTEL_AI_AUDIT_DRIFT_NUMERIC_METHOD).")
@click.option("--categorical-method", "drift_categorical_method",
              type=click.Choice(["auto", "psi", "chi2", "jensenshannon"]),
              help="Statistic for categorical features (default auto: chi-squared, else "
                   "Jensen-Shannon; $OTEL_AI_AUDIT_DRIFT_CATEGORICAL_METHOD).")
@click.option("--psi-threshold", "drift_psi_threshold", type=float,
              help="PSI at or above which a feature drifted (default 0.1).")
@click.option("--js-threshold", "drift_js_threshold", type=float,
              help="Jensen-Shannon distance at or above which a feature drifted (default 0.1).")
@click.option("--p-value", "drift_p_value", type=float,
              help="p-value below which a KS or chi-squared test says drifted (default 0.05).")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when any feature drifted.")
def drift(store: str | None, model: str, model_version: str | None, start: str | None,
          end: str | None, last: str | None, every: str | None, as_json: bool, record: bool,
          signing_key: str | None, fail_on_drift: bool, **options: Any) -> None:
    """Drift of a model's decisions in a time window from its reference profile, read from
    STORE or Elasticsearch.

    Per feature and for the prediction: the statistic, its threshold and whether it drifted,
    from the decisions' monitoring views (docs/monitoring.md). Exit 0: computed (1 with
    --fail-on-drift if anything drifted); 2: bad input, nothing to compare, or unreadable source.
    """
    bounds = windows(start, end, last, every)
    from otel_ai_audit.monitoring.drift import DriftPolicy
    from otel_ai_audit.monitoring.drift import drift as compute
    from otel_ai_audit.monitoring.telemetry import monitoring_metrics

    policy_options = {k: v for k, v in options.items() if k.startswith("drift_")}
    elasticsearch = {k: v for k, v in options.items() if k.startswith("elasticsearch_")}
    try:
        policy = DriftPolicy.from_settings(settings_from(**policy_options))
    except ValueError as error:
        fail(str(error))
    with event_source(store, **elasticsearch) as source:
        reports = per_window(lambda low, high: compute(
            source, model, low, high, version=model_version, policy=policy), bounds, source,
            model)
    metrics = monitoring_metrics()
    for report in reports:
        metrics.drift(report)
    flush_metrics()
    if record:
        _record(reports, store, signing_key)
    if as_json:
        click.echo(json.dumps([report.to_json() for report in reports], indent=2))
    else:
        for report in reports:
            click.echo(f"{report.window['start']} .. {report.window['end']}  "
                       f"model {report.model['name']} version {report.model['version']}: "
                       f"{report.decisions} decisions, {len(report.drifted)} drifted "
                       f"(share of features {report.share:.0%}"
                       f"{', dataset drift' if report.dataset_drifted else ''})")
            click.echo(table([("feature", "kind", "method", "score", "threshold", "drifted",
                               "psi", "p-value", "reference", "current")] + [
                (f.feature, f.kind, f.method, f.score, f.threshold, f.drifted, f.psi,
                 f.p_value, f.reference_count, f.current_count) for f in report.features]))
    drifted = any(report.drifted for report in reports)
    sys.exit(EXIT_FAILED if fail_on_drift and drifted else EXIT_OK)


def _record(reports: list[Any], store: str | None, signing_key: str | None) -> None:
    from otel_ai_audit.monitoring.records import parse_time

    events = [event for report in reports
              for event in report.events(parse_time(report.window["end"]))]
    _monitoring.record(events, store, signing_key)
