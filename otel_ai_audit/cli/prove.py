"""`otel-ai-audit prove` and `verify-proof`: one decision proven on its own, or a later
checkpoint proven to extend an earlier one."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.integrity.keys import load_trusted_keys
from otel_ai_audit.integrity.proof import (
    CONSISTENCY_PROOF_FORMAT,
    build_consistency_proof,
    build_proof,
    check_consistency_proof,
    check_proof,
)
from otel_ai_audit.store.sqlite import AuditStore


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.argument("record_id", required=False)
@click.option("--consistency", "chain_id", metavar="CHAIN_ID",
              help="Prove instead that a later checkpoint of CHAIN_ID extends an earlier one.")
@click.option("--from", "old_index", type=click.IntRange(min=0), metavar="INDEX",
              help="With --consistency: the earlier checkpoint's index.")
@click.option("--to", "new_index", type=click.IntRange(min=0), metavar="INDEX",
              help="With --consistency: the later checkpoint's index (default: the newest).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the proof here (default: stdout).")
def prove(store: str, record_id: str | None, chain_id: str | None, old_index: int | None,
          new_index: int | None, out: str | None) -> None:
    """Write an inclusion proof for the decision RECORD_ID in STORE, or with
    `--consistency CHAIN_ID --from INDEX [--to INDEX]` a consistency proof between two of the
    chain's signed checkpoints."""
    if record_id is not None:
        if chain_id is not None:
            fail("give a RECORD_ID or --consistency, not both")
        if old_index is not None or new_index is not None:
            fail("--from and --to go with --consistency")
        build = functools.partial(build_proof, record_id=record_id)
        done = f"proof for {record_id}"
    elif chain_id is None:
        fail("give a RECORD_ID, or --consistency CHAIN_ID --from INDEX")
    elif old_index is None:
        fail("--consistency needs --from INDEX, the earlier checkpoint")
    else:
        build = functools.partial(build_consistency_proof, chain_id=chain_id,
                                  old_index=old_index, new_index=new_index)
        done = f"consistency proof for chain {chain_id}"
    with AuditStore(store, create=False, readonly=True) as source:
        proof = build(source)
    text = json.dumps(proof, indent=2)
    if out:
        with open(out, "w") as handle:
            handle.write(text + "\n")
        click.echo(f"{done} written to {out}", err=True)
    else:
        click.echo(text)


@click.command("verify-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False))
@click.option("--public-key", "public_keys", multiple=True, required=True,
              type=click.Path(dir_okay=False), help="PEM public key to trust; repeatable.")
def verify_proof(proof_file: str, public_keys: tuple[str, ...]) -> None:
    """Check an inclusion or consistency proof offline. Exit 0: proven; 1: not proven;
    2: usage error."""
    trusted = load_trusted_keys(public_keys)
    with open(proof_file) as handle:
        try:
            proof: Any = json.load(handle)
        except ValueError as error:
            fail(str(error))
    consistency = isinstance(proof, dict) and proof.get("format") == CONSISTENCY_PROOF_FORMAT
    if not isinstance(proof, dict):
        problems = ["proof is malformed: not a JSON object"]
    elif consistency:
        problems = check_consistency_proof(proof, trusted)
    else:
        problems = check_proof(proof, trusted)
    for problem in problems:
        click.echo(f"FAIL {problem}")
    if problems:
        sys.exit(EXIT_FAILED)
    if consistency:
        click.echo(f"OK: the signed checkpoint of size {proof['new_size']} of chain "
                   f"{proof['chain_id']} extends the one of size {proof['old_size']}")
    else:
        click.echo(f"OK: record seq {proof['leaf_index']} of chain {proof['chain_id']} is "
                   f"included in the signed checkpoint of size {proof['tree_size']}")
    sys.exit(EXIT_OK)
