"""`otel-ai-audit verify STORE` (or `--elasticsearch URL`): is the trail intact, complete and
signed by a trusted key?"""

from __future__ import annotations

import json
import os
import sys
from contextlib import AbstractContextManager
from typing import Any

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.cli._elasticsearch import elasticsearch_options, elasticsearch_source
from otel_ai_audit.integrity.keys import KeyFileError, load_trusted_keys
from otel_ai_audit.store.sqlite import AuditStore, StoreError
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import RecordSource, Verifier

TRUSTED_KEYS_ENV = "OTEL_AI_AUDIT_TRUSTED_KEYS"


@click.command()
@click.argument("store", required=False, type=click.Path(dir_okay=False))
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key (or a trust file of several) to trust; repeatable. "
                   f"Default: the files listed in ${TRUSTED_KEYS_ENV} (os.pathsep-separated).")
@click.option("--allow-self-asserted", is_flag=True,
              help="Accept the keys the store itself holds (integrity only, not authenticity).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@elasticsearch_options
def verify(store: str | None, public_keys: tuple[str, ...], allow_self_asserted: bool,
           as_json: bool, **elasticsearch: Any) -> None:
    """Verify every chain in STORE, or in Elasticsearch with --elasticsearch URL.

    Exit 0: intact and complete; 1: tampered, incomplete or untrusted; 2: usage or I/O error.
    """
    key_files = list(public_keys) or [
        path for path in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path]
    try:
        trusted = load_trusted_keys(key_files)
    except KeyFileError as error:
        fail(str(error))
    if (store is None) == (elasticsearch["elasticsearch_url"] is None):
        fail("give either a STORE file or --elasticsearch URL")
    try:
        with _open(store, elasticsearch) as source:
            report = Verifier(trusted, allow_self_asserted=allow_self_asserted).verify(source)
    except StoreError as error:
        fail(str(error))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _open(store: str | None, elasticsearch: dict[str, Any],
          ) -> AbstractContextManager[RecordSource]:
    if store is None:
        return elasticsearch_source(**elasticsearch)
    source = AuditStore(store, create=False, readonly=True)
    source.description = store
    return source


def print_report(report: Report) -> None:
    closed = sum(1 for chain in report.chains if chain.closed)
    click.echo(f"{report.source}: {len(report.chains)} chain(s), {report.record_count} "
               f"record(s), {closed} closed; trust: {report.trust}")
    for notice in report.notices:
        click.echo(f"note: {notice}")
    for finding in report.findings:
        click.echo(f"FAIL {finding}")
    if report.ok:
        click.echo("OK: intact and complete")
    else:
        click.echo(f"FAILED: {len(report.findings)} finding(s)")
