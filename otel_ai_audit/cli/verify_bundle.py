"""`otel-ai-audit verify-bundle DIR`: check an evidence bundle offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otel_ai_audit.anchor.timestamp import load_certificate_chain
from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.integrity.keys import load_trusted_keys


@click.command("verify-bundle")
@click.argument("folder", type=click.Path())
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key you trust (the bundle signer's, the trail's); repeatable.")
@click.option("--allow-self-asserted", is_flag=True,
              help="Accept the keys the bundle itself carries (integrity only, not "
                   "authenticity).")
@click.option("--tsa-cert", type=click.Path(dir_okay=False),
              help="The time-stamping authority's certificate chain (PEM), to check the RFC "
                   "3161 time-stamp of every anchor the bundle carries.")
def verify_bundle(folder: str, public_keys: tuple[str, ...], allow_self_asserted: bool,
                  tsa_cert: str | None) -> None:
    """Check every file of the bundle in FOLDER against its signed manifest, its records
    against the signed checkpoints, and that it holds the whole window (against the anchors it
    carries). Exit 0: intact and complete; 1: not, or not signed by keys you trust; 2: usage
    or I/O error."""
    from otel_ai_audit.evidence.verify import verify_bundle as check_bundle

    if not Path(folder).is_dir():
        fail(f"{folder}: no such folder")
    trusted = load_trusted_keys(public_keys)
    tsa_chain = load_certificate_chain(tsa_cert) if tsa_cert else None
    check = check_bundle(folder, trusted, allow_self_asserted=allow_self_asserted,
                         tsa_chain=tsa_chain)
    for notice in check.notices:
        click.echo(f"note: {notice}")
    for problem in check.problems:
        click.echo(f"FAIL {problem}")
    if not check.ok:
        click.echo(f"FAILED: {len(check.problems)} problem(s)")
        sys.exit(EXIT_FAILED)
    click.echo(check.summary())
    sys.exit(EXIT_OK)
