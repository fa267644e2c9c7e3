"""`otel-ai-audit keygen`: create an Ed25519 key pair for signing checkpoints."""

from __future__ import annotations

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.integrity.keys import SigningKey


@click.command()
@click.option("--out", "prefix", required=True,
              help="Path prefix: writes PREFIX.key.pem (mode 0600) and PREFIX.pub.pem.")
def keygen(prefix: str) -> None:
    """Create a signing key pair. Give the private key to the service through
    OTEL_AI_AUDIT_SIGNING_KEY, and the public key to whoever verifies."""
    key = SigningKey.generate()
    private_path, public_path = f"{prefix}.key.pem", f"{prefix}.pub.pem"
    try:
        key.save(private_path, public_path)
    except FileExistsError:
        fail(f"{private_path} already exists; refusing to overwrite a signing key")
    except OSError as error:
        fail(f"cannot write the key pair: {error}")
    click.echo(f"private key: {private_path}\npublic key:  {public_path}\n"
               f"key id:      {key.key_id}")
