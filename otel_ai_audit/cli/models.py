"""`otel-ai-audit models STORE`: which models made decisions, and when."""

from __future__ import annotations

import json

import click

from otel_ai_audit.cli._common import command_line, read_store, table
from otel_ai_audit.store.query import models as model_summaries


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(store: str, as_json: bool) -> None:
    """List the models whose decisions STORE holds: name, version, risk levels, number of
    decisions, first and last decision time, and the chains (processes) that recorded them.
    Exit 0: listed (none is an empty list); 2: not a readable store."""
    with read_store(store) as opened:
        found = model_summaries(opened)
    if as_json:
        click.echo(json.dumps([summary.to_json() for summary in found], indent=2))
        return
    if not found:
        click.echo(f"{store} holds no decisions")
        return
    click.echo(table([("model", "version", "risk", "decisions", "first", "last", "chains")] + [
        (summary.name, summary.version, ",".join(summary.risks) or None, summary.decisions,
         summary.first, summary.last, len(summary.chains)) for summary in found]))
    click.echo(f"\nlist a model's decisions: {command_line('decisions', store, '--model', 'NAME')}")
