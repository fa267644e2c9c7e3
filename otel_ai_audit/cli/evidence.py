"""`otel-ai-audit evidence`: answer an authority's request for a system's records in a window."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from otel_ai_audit.anchor.timestamp import load_certificate_chain
from otel_ai_audit.cli._anchors import anchor_bucket, anchor_check_options
from otel_ai_audit.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    fail,
    progress,
    read_store,
    store_argument,
)
from otel_ai_audit.cli._window import window_bounds, window_options
from otel_ai_audit.cli.verify import TRUSTED_KEYS_ENV
from otel_ai_audit.config import ENV_PREFIX
from otel_ai_audit.errors import AuditError
from otel_ai_audit.integrity.keys import KeyFileError, SigningKey, load_trusted_keys
from otel_ai_audit.store.sqlite import StoreError, default_store_path

SIGNING_KEY_ENV = f"{ENV_PREFIX}SIGNING_KEY"


@click.command()
@store_argument(default=default_store_path)
@click.option("--system", required=True, help="The system: service.name of its processes.")
@window_options("RFC 3339")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="New folder for the bundle.")
@click.option("--decision", "decisions", multiple=True,
              help="Decision id named in the request: its inclusion proof goes in; repeatable.")
@click.option("--signing-key", type=click.Path(dir_okay=False),
              help=f"Ed25519 PEM key signing the manifest (default: ${SIGNING_KEY_ENV}).")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key the trail is verified with; repeatable (default: "
                   f"${TRUSTED_KEYS_ENV}, else the keys the store holds).")
@click.option("--subgroup", "subgroups", multiple=True,
              help="Input field to break performance down by (e.g. age_band); repeatable.")
@click.option("--positive-label", "positive_labels", multiple=True,
              help="Outcome label counted as positive (e.g. high urgency); repeatable.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="A predict_proba decision counts as positive when the positive label's "
                   "probability is at least this (binary models; default 0.5).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(dir_okay=False),
              help="Training data file whose SHA-256 goes into the lineage; repeatable.")
@anchor_check_options(
    "The store's external anchors: the bundle carries those of the window and "
    "proves against them that no chain or record of it is left out.")
def evidence(store: str, system: str, start: str | None, end: str | None, last: str | None,
             out: str, decisions: tuple[str, ...],
             signing_key: str | None, public_keys: tuple[str, ...], subgroups: tuple[str, ...],
             positive_labels: tuple[str, ...], threshold: float | None,
             datasets: tuple[str, ...], anchors_at: str | None, tsa_cert: str | None,
             min_retention_days: int, s3_endpoint: str | None, s3_region: str | None) -> None:
    """Build a signed evidence bundle for SYSTEM's records in STORE (default:
    $OTEL_AI_AUDIT_STORE, else otel-ai-audit.db) from --from to --to, or over the --last
    DURATION.

    Exit 0: bundle written and the trail verified; 1: bundle written but the trail failed
    verification (the report says why); 2: nothing written (bad input).
    """
    start, end = window_bounds(start, end, last)
    from otel_ai_audit.evidence import BundleError, BundleRequest, Window, build_bundle

    key_path = signing_key or os.environ.get(SIGNING_KEY_ENV)
    if not key_path:
        fail(f"give --signing-key PEM (or set {SIGNING_KEY_ENV}): the manifest must be signed")
    key_files = list(public_keys) or [
        path for path in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path]
    for dataset in datasets:
        if not Path(dataset).is_file():
            fail(f"--dataset {dataset}: no such file")
    if (tsa_cert or s3_endpoint) and not anchors_at:
        fail("--tsa-cert and --s3-endpoint go with --anchors s3://BUCKET/PREFIX")
    try:
        request = BundleRequest(
            store=store, system=system, window=Window.parse(start, end), out=Path(out),
            signing_key=SigningKey.load(key_path), trusted_keys=load_trusted_keys(key_files),
            decisions=decisions, subgroups=subgroups, positive_labels=positive_labels,
            datasets=datasets,
            anchors=anchor_bucket(anchors_at, s3_endpoint, s3_region) if anchors_at else None,
            tsa_chain=load_certificate_chain(tsa_cert) if tsa_cert else None,
            min_retention_days=min_retention_days,
            **({} if threshold is None else {"threshold": threshold}))
        with progress(f"evidence bundle of {system}"):
            bundle = build_bundle(request)
    except BundleError as error:
        fail(_with_systems(str(error), store, system))
    except (KeyFileError, StoreError, AuditError, ValueError, OSError) as error:
        fail(str(error))
    click.echo(f"evidence bundle written to {bundle.path}: {bundle.decisions} decision(s), "
               f"{len(bundle.manifest['files'])} files, manifest signed by key "
               f"{bundle.manifest['signing_key_id'][:16]}")
    for notice in bundle.notices:
        click.echo(f"note: {notice}")
    if not bundle.verified:
        click.echo("FAILED: the trail did not verify: see integrity/verification.json")
        sys.exit(EXIT_FAILED)
    click.echo(f"check it offline: otel-ai-audit verify-bundle {bundle.path} --public-key KEY.pem")
    sys.exit(EXIT_OK)


def _with_systems(error: str, store: str, system: str) -> str:
    """The error, with the systems the store does hold when SYSTEM is not one of them."""
    from otel_ai_audit.evidence.collect import system_chains

    with read_store(store) as opened:
        attribution = system_chains(opened, system)
    if attribution.chains:
        return error
    systems = ", ".join(sorted(set(attribution.others.values()))) or "none"
    return f"{error}; systems in {store}: {systems}"
