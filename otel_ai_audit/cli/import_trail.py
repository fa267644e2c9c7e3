"""`otel-ai-audit import STORE --otlp-export FILE`: a trail that reached its archive through an
OpenTelemetry Collector, copied into a store, so that the commands that read a store (`prove`,
`evidence`, `decisions`, `models`) work on it as on a store the Python writer filled. The
records are copied as they are: their bytes, positions, checkpoints and keys do not change, so
`verify` on the new store finds what it finds on the export."""

from __future__ import annotations

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.errors import AuditError
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.record.schema import parse_record, record_columns
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.export_source import ExportSource


@click.command("import")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--otlp-export", metavar="FILE", type=click.Path(dir_okay=False), multiple=True,
              help="The audit spans, and the telemetry a gateway sealed (ai_audit.seal), in a "
                   "Collector file exporter's output (OTLP/JSON, traces or logs). Repeat for "
                   "the backups of a rotated file.")
@click.option("--splunk-export", metavar="FILE", type=click.Path(dir_okay=False),
              help="A Splunk export (search results as JSON lines, or the HEC events sent).")
def import_trail(store: str, otlp_export: tuple[str, ...], splunk_export: str | None) -> None:
    """Copy the trail of an export into STORE (created if missing), for `prove`, `evidence`
    and the other commands that read a store. Chains STORE already holds are refused."""
    if bool(otlp_export) == (splunk_export is not None):
        fail("give one of --otlp-export FILE or --splunk-export FILE")
    try:
        if otlp_export:
            from otel_ai_audit.backends.otlp.source import read_otlp_export

            source = read_otlp_export(*otlp_export)
        else:
            from otel_ai_audit.backends.splunk_hec.source import read_splunk_export

            source = read_splunk_export(str(splunk_export))
        with AuditStore(store) as target:
            records = copy_trail(source, target)
    except AuditError as error:
        fail(str(error))
    click.echo(f"imported {records} record(s) of {len(source.chain_ids())} chain(s) from "
               f"{source.description} into {store}")


def copy_trail(source: ExportSource, target: AuditStore) -> int:
    """Write the source's keys, then each chain's records with its checkpoints (one
    transaction per chain), into `target`; the number of records written."""
    held = set(target.chain_ids()) & set(source.chain_ids())
    if held:
        fail(f"{target.path} already holds chain(s) {', '.join(sorted(held))}")
    for key_id, pem in source.public_keys().items():
        target.put_public_key(key_id, pem)
    count = 0
    for chain_id in source.chain_ids():
        records = [SealedRecord(chain_id, seq, *_columns(data), data)
                   for seq, data in source.records(chain_id)]
        if len({record.seq for record in records}) != len(records):
            fail(f"chain {chain_id} has two records at one position: run `otel-ai-audit "
                 "verify` on the export to see which")
        target.write(records, source.checkpoints(chain_id))
        count += len(records)
    return count


def _columns(data: bytes) -> tuple[str, str, str]:
    """The event time, type and id a store indexes a record by (empty for bytes that are not
    a record: they are imported as they are, for `verify` to report)."""
    try:
        return record_columns(parse_record(data)["event"])
    except ValueError:
        return "", "", ""
