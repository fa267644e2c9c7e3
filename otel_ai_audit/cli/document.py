"""`otel-ai-audit document`: model cards whose facts come from the audit trail."""

from __future__ import annotations

from pathlib import Path

import click

from otel_ai_audit.cli._common import fail


@click.group()
def document() -> None:
    """Write model cards (Mitchell et al. 2019), recorded on the audit trail."""


@document.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              help="Folder with adult.data and adult.test (default: $OTEL_AI_AUDIT_ADULT_DATA, "
                   "else the copy shipped with otel-ai-audit).")
@click.option("--out", default="model-card", show_default=True, type=click.Path(file_okay=False),
              help="Folder for model-card.md/.html/.json and the model (model.pkl).")
@click.option("--store", type=click.Path(dir_okay=False),
              help="Audit store to record training and card in (default: OUT/audit.db).")
@click.option("--signing-key", metavar="FILE",
              help="Ed25519 private key that signs the records, as 'otel-ai-audit keygen' "
                   "writes, or 'ephemeral' for a throwaway one ($OTEL_AI_AUDIT_SIGNING_KEY).")
def adult(data_dir: str | None, out: str, store: str | None, signing_key: str | None) -> None:
    """Train the UCI Adult income classifier with its training recorded, evaluate it on
    adult.test, and write its model card with fairness by sex and race.

    Exit 0: card written and recorded; 2: bad data, store or installation.
    """
    try:
        from otel_ai_audit.document.adult import document_adult
        from otel_ai_audit.document.render import METRIC_NAMES, format_estimate, format_number
        from otel_ai_audit.runtime import EPHEMERAL_SIGNING_KEY
    except ImportError as error:
        fail(f"model cards need the ml extra: pip install 'otel-ai-audit[ml]' ({error})")
    folder = Path(out)
    store_path = Path(store) if store else folder / "audit.db"
    documented = document_adult(data_dir, folder, store_path, signing_key)
    card = documented.card
    for path in documented.files.values():
        click.echo(f"wrote {path}")
    click.echo(f"{card.details.name} {card.details.version}: " + ", ".join(
        f"{METRIC_NAMES[name]} {format_estimate(estimate)}"
        for name, estimate in card.metrics.items()))
    for attribute in card.fairness:
        click.echo(f"{attribute.attribute}: demographic-parity difference "
                   f"{format_number(attribute.demographic_parity_difference)}, equalized-odds "
                   f"difference {format_number(attribute.equalized_odds_difference)}")
    click.echo(f"recorded as model_card {documented.record_id} in {store_path}")
    key = documented.signing_key
    public_key = Path(key.removesuffix(".key.pem") + ".pub.pem")
    check = (f"--public-key {public_key}" if key.endswith(".key.pem") and public_key.is_file()
             else "--allow-self-asserted" if key == EPHEMERAL_SIGNING_KEY
             else "--public-key YOUR-PUBLIC-KEY.pem")
    click.echo(f"check it: otel-ai-audit verify {store_path} {check}")
