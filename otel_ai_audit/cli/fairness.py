"""`otel-ai-audit fairness`: fairness per slice of a window's decisions, once outcomes arrived."""

from __future__ import annotations

import json
from typing import Any

import click

from otel_ai_audit.cli import _monitoring
from otel_ai_audit.cli._common import fail, table
from otel_ai_audit.cli._monitoring import (
    event_source,
    flush_metrics,
    monitoring_options,
    per_window,
    windows,
)


@click.command()
@monitoring_options
@click.option("--attribute", "attributes", multiple=True, required=True,
              help="Sensitive attribute (a profiled feature), repeatable: --attribute sex "
                   "--attribute race.")
@click.option("--positive-label", default="1", show_default=True,
              help="The favourable outcome / predicted class.")
def fairness(store: str | None, model: str, model_version: str | None, start: str | None,
             end: str | None, last: str | None, every: str | None, as_json: bool, record: bool,
             signing_key: str | None, attributes: tuple[str, ...], positive_label: str,
             **elasticsearch: Any) -> None:
    """Selection rate, TPR and FPR per slice, and demographic-parity and equalized-odds
    differences per attribute, of the decisions in a window that have an outcome
    (`record_outcome`), read from STORE or Elasticsearch. Exit 0: computed; 2: bad input, no
    decisions, none with an outcome, or unreadable source."""
    bounds = windows(start, end, last, every)
    from otel_ai_audit.monitoring.fairness_window import fairness as compute
    from otel_ai_audit.monitoring.records import parse_time
    from otel_ai_audit.monitoring.telemetry import monitoring_metrics

    with event_source(store, **elasticsearch) as source:
        reports = per_window(lambda low, high: compute(
            source, model, low, high, attributes, version=model_version,
            positive_label=positive_label), bounds, source, model)
    if not any(report.labelled for report in reports):
        fail(f"none of the {sum(report.decisions for report in reports)} decisions of model "
             f"{model!r} in the window has an outcome: record them as they become known with "
             f"otel_ai_audit.record_outcome(decision_id, label=...)")
    metrics = monitoring_metrics()
    for report in reports:
        metrics.fairness(report)
    flush_metrics()
    if record:
        record_events = [event for report in reports
                         for event in report.events(parse_time(report.window["end"]))]
        _monitoring.record(record_events, store, signing_key)
    if as_json:
        click.echo(json.dumps([report.to_json() for report in reports], indent=2))
        return
    for report in reports:
        click.echo(f"{report.window['start']} .. {report.window['end']}  "
                   f"model {report.model['name']} version {report.model['version']}: "
                   f"{report.decisions} decisions, {report.labelled} with an outcome")
        click.echo(table([("attribute", "slice", "labelled", "positives", "selection rate",
                           "TPR", "FPR", "DP difference", "EO difference")] + [
            (row["attribute"], row["slice"], row["count"], row["positives"],
             row["selection_rate"], row["tpr"], row["fpr"], row["dp_difference"],
             row["eo_difference"]) for row in report.rows()]))

