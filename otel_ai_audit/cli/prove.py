"""`otel-ai-audit prove` and `verify-proof`: one decision, proven on its own."""

from __future__ import annotations

import json
import sys

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.integrity.keys import KeyFileError, load_trusted_keys
from otel_ai_audit.integrity.proof import ProofError, build_proof, check_proof
from otel_ai_audit.store.sqlite import AuditStore, StoreError


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.argument("record_id")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the proof here (default: stdout).")
def prove(store: str, record_id: str, out: str | None) -> None:
    """Write an inclusion proof for the decision RECORD_ID in STORE."""
    try:
        with AuditStore(store, create=False, readonly=True) as source:
            proof = build_proof(source, record_id)
    except (StoreError, ProofError) as error:
        fail(str(error))
    text = json.dumps(proof, indent=2)
    if out:
        with open(out, "w") as handle:
            handle.write(text + "\n")
        click.echo(f"proof for {record_id} written to {out}", err=True)
    else:
        click.echo(text)


@click.command("verify-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False))
@click.option("--public-key", "public_keys", multiple=True, required=True,
              type=click.Path(dir_okay=False), help="PEM public key to trust; repeatable.")
def verify_proof(proof_file: str, public_keys: tuple[str, ...]) -> None:
    """Check an inclusion proof offline. Exit 0: proven; 1: not proven; 2: usage error."""
    try:
        trusted = load_trusted_keys(public_keys)
        with open(proof_file) as handle:
            proof = json.load(handle)
    except (KeyFileError, OSError, ValueError) as error:
        fail(str(error))
    problems = check_proof(proof, trusted)
    for problem in problems:
        click.echo(f"FAIL {problem}")
    if problems:
        sys.exit(EXIT_FAILED)
    click.echo(f"OK: record seq {proof['leaf_index']} of chain {proof['chain_id']} is included "
               f"in the signed checkpoint of size {proof['tree_size']}")
    sys.exit(EXIT_OK)
