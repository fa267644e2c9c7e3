"""`otel-ai-audit verify-bundle DIR`: check an evidence bundle offline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.integrity.keys import KeyFileError, load_trusted_keys


@click.command("verify-bundle")
@click.argument("folder", type=click.Path())
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key you trust (the bundle signer's, the trail's); repeatable.")
def verify_bundle(folder: str, public_keys: tuple[str, ...]) -> None:
    """Check every file of the bundle in FOLDER against its signed manifest, and its records
    against the signed checkpoints. Exit 0: intact; 1: not; 2: usage or I/O error."""
    from otel_ai_audit.evidence.verify import verify_bundle as check_bundle

    if not Path(folder).is_dir():
        fail(f"{folder}: no such folder")
    try:
        trusted = load_trusted_keys(public_keys)
    except KeyFileError as error:
        fail(str(error))
    check = check_bundle(folder, trusted)
    for notice in check.notices:
        click.echo(f"note: {notice}")
    for problem in check.problems:
        click.echo(f"FAIL {problem}")
    if not check.ok:
        click.echo(f"FAILED: {len(check.problems)} problem(s)")
        sys.exit(EXIT_FAILED)
    manifest = check.manifest or {}
    click.echo(f"OK: {len(manifest.get('files', []))} files match the signed manifest; "
               f"{sum(c.get('records', 0) for c in manifest.get('chains', []))} records and "
               f"{len(manifest.get('proven_decisions', []))} named decision(s) proven against "
               "signed checkpoints")
    sys.exit(EXIT_OK)
