"""What `drift` and `fairness` share: the window, the source of records, and writing results
into the trail (through the normal writer: chained, checkpointed and signed) and as metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from otel_ai_audit.cli._common import (
    command_line,
    fail,
    progress,
    read_store,
    store_argument,
)
from otel_ai_audit.cli._elasticsearch import elasticsearch_options, settings_from
from otel_ai_audit.cli._window import duration_ns, window_bounds, window_options
from otel_ai_audit.monitoring.records import (
    ElasticsearchEvents,
    EventSource,
    StoreEvents,
    parse_time,
    record_time,
)
from otel_ai_audit.store.sqlite import StoreError

Command = TypeVar("Command", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--model", required=True, help="Model name (as in the records)."),
    click.option("--version", "model_version", help="Only this model version."),
    click.option("--every", metavar="DURATION",
                 help="Split the window into consecutive windows of this length (30m, 6h, "
                      "1d, 1w): one result per window, for a trend over time."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
    click.option("--record", is_flag=True,
                 help="Write the results as records into the trail (STORE, else "
                      "$OTEL_AI_AUDIT_STORE), chained and signed like every record."),
    click.option("--signing-key", metavar="FILE", type=click.Path(dir_okay=False),
                 help="Key that signs the records' checkpoints with --record "
                      "($OTEL_AI_AUDIT_SIGNING_KEY)."),
)


def monitoring_options(command: Command) -> Command:
    """STORE (read-only), or Elasticsearch with its options, and the window and model."""
    for option in reversed(_OPTIONS):
        command = option(command)
    command = window_options("ISO 8601 (UTC unless a zone is given)")(command)
    return store_argument()(elasticsearch_options(command))


def windows(start: str | None, end: str | None, last: str | None,
            every: str | None) -> list[tuple[str, str]]:
    """The windows' bounds in the records' time form; one clear line if they are wrong."""
    start, end = window_bounds(start, end, last)
    try:
        low, high = parse_time(start), parse_time(end)
    except ValueError as error:
        fail(str(error))
    if low >= high:
        fail(f"--from {start} is not before --to {end}")
    if every is None:
        return [(record_time(low), record_time(high))]
    bounds = list(range(low, high, duration_ns(every, "--every"))) + [high]
    return [(record_time(a), record_time(b)) for a, b in zip(bounds, bounds[1:], strict=False)]


def per_window(compute: Callable[[str, str], list[Any]], bounds: list[tuple[str, str]],
               source: EventSource, model: str) -> list[Any]:
    """`compute` for each window; with several, windows without decisions are skipped (a
    trend has gaps), and only none at all is an error."""
    from otel_ai_audit.monitoring.drift import MonitoringError

    reports: list[Any] = []
    with progress(f"{len(bounds)} windows", total=len(bounds) if len(bounds) > 1 else None) \
            as advance:
        for low, high in bounds:
            try:
                reports.extend(compute(low, high))
            except MonitoringError as error:
                if len(bounds) == 1 or "no decisions" not in str(error):
                    fail(explain(str(error), source, model, bounds))
            advance(1)
    if not reports:
        fail(explain(f"no decisions with a monitoring view between {bounds[0][0]} and "
                     f"{bounds[-1][1]}", source, model, bounds))
    return reports


def explain(error: str, source: EventSource, model: str, bounds: list[tuple[str, str]]) -> str:
    """A "no decisions" error completed with what the store does hold: the models that exist,
    or, when the model's decisions in the window carry no monitoring view, how to give them
    one. Other errors, and sources other than a store, are left as they are."""
    if "no decisions" not in error or not isinstance(source, StoreEvents):
        return error
    from otel_ai_audit.store.query import DecisionFilter, decisions, model_names

    names = model_names(source.store)
    if model not in names:
        return f"{error}; models in {source.description}: {', '.join(names) or 'none'}"
    window = DecisionFilter(model=model, since=bounds[0][0], until=bounds[-1][1], limit=1)
    if next(decisions(source.store, window), None) is None:
        return (f"{error}; model {model!r} has no decisions in this window: list them with "
                f"`{command_line('decisions', source.description, '--model', model)}`")
    return (f"{error}; the model's decisions carry no monitoring view: record its reference "
            f"data with otel_ai_audit.register_reference(model, data) (scikit-learn models get "
            f"one at fit)")


@contextmanager
def event_source(store: str | None, **elasticsearch: Any) -> Iterator[EventSource]:
    """STORE, else Elasticsearch at --elasticsearch (or its variable)."""
    if store is not None:
        with read_store(store) as opened:
            yield StoreEvents(opened)
        return
    settings = settings_from(**elasticsearch)
    if not settings.elasticsearch_url:
        fail("no source of decisions: give a STORE or --elasticsearch URL")
    from otel_ai_audit.backends.elasticsearch.layout import index_names
    from otel_ai_audit.cli._elasticsearch import connect

    try:
        client = connect(settings)
        records_index = index_names(settings.elasticsearch_index_prefix)[0]
    except ValueError as error:
        fail(str(error))
    try:
        yield ElasticsearchEvents(client, records_index)
    except StoreError as error:
        fail(str(error))
    finally:
        client.close()


def record(events: list[dict[str, Any]], store: str | None, signing_key: str | None) -> None:
    """Append `events` to this process's own chain in the store, and close it (signed)."""
    from otel_ai_audit import runtime

    try:
        audit = runtime.configure(install_processor=False, store=store, signing_key=signing_key)
        for event in events:
            audit.processor.submit_event(event)
    except (StoreError, ValueError, OSError) as error:
        fail(f"cannot record the results: {error}")
    finally:
        runtime.shutdown()


def flush_metrics() -> None:
    """Export the gauges now if the process has an SDK MeterProvider (e.g. under
    `opentelemetry-instrument`)."""
    from opentelemetry import metrics

    flush = getattr(metrics.get_meter_provider(), "force_flush", None)
    if callable(flush):
        flush()
