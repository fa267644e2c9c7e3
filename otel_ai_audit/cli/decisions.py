"""`otel-ai-audit decisions STORE [DECISION_ID]`: find decisions, and everything about one."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from otel_ai_audit.cli._common import command_line, fail, read_store, table
from otel_ai_audit.monitoring.records import parse_time, record_time
from otel_ai_audit.store import query
from otel_ai_audit.store.query import DecisionFilter, label_text
from otel_ai_audit.store.sqlite import AuditStore

DEFAULT_LIMIT = 50


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.argument("decision_id", required=False)
@click.option("--model", help="Only this model's decisions (see `otel-ai-audit models`).")
@click.option("--version", "model_version", help="Only this model version.")
@click.option("--since", metavar="TIME", help="Decided at or after TIME (ISO 8601, UTC unless "
                                              "a zone is given).")
@click.option("--until", metavar="TIME", help="Decided before TIME.")
@click.option("--risk", help="Only decisions of this risk level (e.g. high).")
@click.option("--outcome", metavar="has|none|LABEL",
              help="With an outcome recorded (has), without (none), or with this label.")
@click.option("--oversight", metavar="has|none|ACTION",
              help="With a human-oversight record (has), without (none), or with this action "
                   "(e.g. override).")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, show_default=True,
              help="At most this many decisions, oldest first; 0 for all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def decisions(store: str, decision_id: str | None, model: str | None,
              model_version: str | None, since: str | None, until: str | None,
              risk: str | None, outcome: str | None, oversight: str | None, limit: int,
              as_json: bool) -> None:
    """List the decisions in STORE that match the filters, oldest first: id, time, model,
    risk, outcome, oversight and chain position. With DECISION_ID, show that decision: its
    record, its place in its chain, the command that proves it, and the oversight, outcome and
    dispute records about it.

    Exit 0: listed or shown (none matching is an empty list); 2: bad input, unknown decision
    or model, or not a readable store."""
    where = DecisionFilter(model=model, version=model_version, risk=risk,
                           since=_bound("--since", since), until=_bound("--until", until),
                           outcome=outcome, oversight=oversight, limit=limit)
    with read_store(store) as opened:
        if decision_id is not None:
            _show(opened, store, decision_id, as_json)
            return
        # One more than asked for, to say whether the limit cut the list.
        found = list(query.decisions(opened, replace(where, limit=limit and limit + 1)))
        if not found and model is not None and model not in query.model_names(opened):
            fail(f"no decisions of model {model!r} in {store}; models: "
                 f"{', '.join(query.model_names(opened)) or 'none'}")
    more = bool(limit) and len(found) > limit
    found = found[:limit] if limit else found
    if as_json:
        click.echo(json.dumps([decision.to_json() for decision in found], indent=2))
        return
    if not found:
        click.echo("no decisions match")
        return
    click.echo(table([("decision", "time", "model", "version", "risk", "outcome", "oversight",
                       "chain", "seq")] + [
        (decision.id, decision.time, decision.model, decision.version, decision.risk,
         label_text(decision.outcome) if decision.has_outcome else None,
         ",".join(decision.oversight_actions) or None, decision.chain_id[:12], decision.seq)
        for decision in found]))
    if more:
        click.echo(f"\nfirst {limit} shown: narrow the filters, or --limit 0 for all")
    click.echo(f"\nshow one: {command_line('decisions', store, 'DECISION_ID')}")


def _bound(option: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return record_time(parse_time(text))
    except ValueError as error:
        fail(f"{option}: {error}")


def _show(store: AuditStore, path: str, decision_id: str, as_json: bool) -> None:
    decision = query.find_decision(store, decision_id)
    if decision is None:
        fail(_not_a_decision(store, path, decision_id))
    prove = command_line("prove", path, decision.id)
    if as_json:
        click.echo(json.dumps({**decision.to_json(), "prove": prove}, indent=2))
        return
    model = decision.event.get("model", {}) if decision.event else {}
    lines: list[tuple[str, Any]] = [
        ("decision", decision.id), ("time", decision.time),
        ("model", f"{decision.model} version {decision.version}"
                  f" ({model.get('framework', '-')} {model.get('class', '-')})"),
        ("risk", decision.risk), ("service", decision.service),
        ("chain", f"{decision.chain_id} seq {decision.seq}"),
        ("prove", prove)]
    for record in decision.linked:
        lines.append((record.type, f"{_summary(record.event)}  [record {record.id}, chain "
                                   f"{record.chain_id[:12]} seq {record.seq}, {record.time}]"))
    if not decision.linked:
        lines.append(("linked", "no oversight, outcome or dispute records"))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {'-' if value is None else value}")
    if decision.event is not None:
        click.echo("\nrecord:")
        click.echo(json.dumps(decision.event, indent=2))


def _summary(event: dict[str, Any]) -> str:
    """One line for a linked record: what it says about the decision."""
    kind = event.get("type")
    if kind == "outcome":
        return f"label {label_text(event.get('label'))}"
    if kind == "oversight":
        reviewer = event.get("reviewer") or {}
        role = f" ({reviewer['role']})" if reviewer.get("role") else ""
        reason = f": {event['reason']}" if event.get("reason") else ""
        return f"{event.get('action')} by {reviewer.get('id')}{role}{reason}"
    raised = f" by {event['raised_by']}" if event.get("raised_by") else ""
    return f"disputed{raised}: {event.get('reason')}"


def _not_a_decision(store: AuditStore, path: str, record_id: str) -> str:
    """Why `record_id` is not shown: absent, or a record of another type (then which
    decision it is about, if any)."""
    found = query.record_type(store, record_id)
    listing = command_line("decisions", path)
    if found is None:
        return f"no decision {record_id} in {path}: list them with `{listing}`"
    kind, about = found
    article = "an" if kind[:1] in "aeiou" else "a"
    if about is not None:
        return (f"{record_id} is {article} {kind} record about decision {about}: "
                f"`{command_line('decisions', path, about)}`")
    return f"{record_id} is {article} {kind} record, not a decision: list them with `{listing}`"
