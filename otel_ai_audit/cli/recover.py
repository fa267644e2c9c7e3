"""`otel-ai-audit recover STORE`: commit the journals that killed processes left beside STORE."""

from __future__ import annotations

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.store.journal import recover as recover_journals
from otel_ai_audit.store.journal import unrecovered
from otel_ai_audit.store.sqlite import AuditStore


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
def recover(store: str) -> None:
    """Commit to STORE the acknowledged decisions that a killed process left in its journal
    (`STORE.<chain>.journal`), as the next process opening STORE for writing would. Journals of
    running processes are left to them. Exit 0: recovered, or nothing to recover; 2: STORE
    cannot be written."""
    left = unrecovered(store)
    if not left:
        click.echo(f"{store}: no journal to recover")
        return
    with AuditStore(store, create=False) as opened:
        count = recover_journals(opened, store)
    still = unrecovered(store)
    click.echo(f"{store}: recovered {count} records from {len(left) - len(still)} journals")
    if still:
        fail(f"{len(still)} journal(s) could not be recovered (see the lines above): "
             + ", ".join(each.path for each in still))
