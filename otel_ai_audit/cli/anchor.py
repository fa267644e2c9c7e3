"""`otel-ai-audit anchor STORE --to s3://BUCKET/PREFIX`: publish an external anchor of the store
now (from cron or a sidecar, for stores whose writers are gone or run without anchoring)."""

from __future__ import annotations

import sys

import click

from otel_ai_audit.anchor.publish import DEFAULT_RETENTION_DAYS, Anchorer
from otel_ai_audit.cli._anchors import anchor_bucket, s3_options
from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.store.sqlite import AuditStore


@click.command()
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--to", "location", envvar="OTEL_AI_AUDIT_ANCHOR_S3", required=True,
              metavar="s3://BUCKET/PREFIX",
              help="Bucket with Object Lock, and a prefix for this store's anchors "
                   "(default: $OTEL_AI_AUDIT_ANCHOR_S3).")
@click.option("--signing-key", envvar="OTEL_AI_AUDIT_SIGNING_KEY", required=True,
              type=click.Path(dir_okay=False),
              help="Ed25519 private key (PEM) that signs the anchor "
                   "(default: $OTEL_AI_AUDIT_SIGNING_KEY).")
@click.option("--tsa-url", envvar="OTEL_AI_AUDIT_TSA_URL", metavar="URL",
              help="RFC 3161 time-stamping authority (default: $OTEL_AI_AUDIT_TSA_URL).")
@click.option("--retention-days", envvar="OTEL_AI_AUDIT_ANCHOR_RETENTION_DAYS", type=int,
              default=DEFAULT_RETENTION_DAYS, show_default=True,
              help="Compliance-mode retention of the anchor.")
@s3_options
def anchor(store: str, location: str, signing_key: str, tsa_url: str | None,
           retention_days: int, s3_endpoint: str | None, s3_region: str | None) -> None:
    """Anchor STORE: sign a statement of every chain's latest checkpoint, time-stamp it, and
    publish it (with every anchor still pending) to S3 under Object Lock.

    Exit 0: published; 1: built but not yet published (retried by the next run); 2: usage,
    key, store or bucket error.
    """
    key = SigningKey.load(signing_key)
    bucket = anchor_bucket(location, s3_endpoint, s3_region)
    bucket.check_object_lock()
    with AuditStore(store, create=False) as opened:
        result = Anchorer(opened, key, bucket, tsa_url=tsa_url,
                          retention_days=retention_days).run()
    built = f"anchor {result.built} built" if result.built else "nothing new to anchor"
    click.echo(f"{built}; {result.stamped} time-stamped, {result.published} published to "
               f"{bucket.location}; {result.pending} pending")
    if result.error is not None:
        click.echo(f"otel-ai-audit: anchoring incomplete: {result.error}", err=True)
    sys.exit(EXIT_OK if result.error is None and result.pending == 0 else EXIT_FAILED)
