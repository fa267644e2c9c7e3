"""`otel-ai-audit verify STORE` (or `--elasticsearch URL`): is the trail intact, complete and
signed by a trusted key?"""

from __future__ import annotations

import json
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import click

from otel_ai_audit.anchor.timestamp import load_certificate_chain
from otel_ai_audit.anchor.verify import read_anchor_history
from otel_ai_audit.cli._anchors import anchor_bucket, anchor_check_options
from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail, progress
from otel_ai_audit.cli._elasticsearch import (
    elasticsearch_options,
    elasticsearch_source,
    settings_from,
)
from otel_ai_audit.cli._kafka import SINCE, kafka_options, pop_kafka_settings, since_ns
from otel_ai_audit.integrity.keys import load_trusted_keys
from otel_ai_audit.store.journal import unrecovered
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Finding, Kind, Report
from otel_ai_audit.verify.parallel import JOBS_ENV, PARALLEL_MIN, resolve_jobs
from otel_ai_audit.verify.verifier import RecordSource, Verifier

if TYPE_CHECKING:
    from otel_ai_audit.backends.kafka.client import KafkaSettings

TRUSTED_KEYS_ENV = "OTEL_AI_AUDIT_TRUSTED_KEYS"


@click.command()
@click.argument("store", required=False, type=click.Path(dir_okay=False))
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM public key (or a trust file of several) to trust; repeatable. "
                   f"Default: the files listed in ${TRUSTED_KEYS_ENV} (os.pathsep-separated).")
@click.option("--allow-self-asserted", is_flag=True,
              help="Accept the keys the store itself holds (integrity only, not authenticity).")
@click.option("--allow-lost", "allowed_losses", type=click.IntRange(min=0), default=0,
              metavar="N", help="Accept up to N decisions per chain that the signed "
                                "checkpoints count as lost (reported as a notice); default 0: "
                                "any loss fails verification.")
@click.option("--jobs", type=click.IntRange(min=1), metavar="N",
              help=f"Processes that read the store (default: ${JOBS_ENV}, else the number of "
                   "CPUs); 1 reads it in this process. Stores under "
                   f"{PARALLEL_MIN:,} records are always read in one.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--publish-findings", is_flag=True,
              help="Write each finding and a summary of this run into <index prefix>-findings "
                   "in Elasticsearch, for the integrity alert rules and dashboards.")
@click.option("--publish-to", metavar="URL",
              help="With --publish-findings, when the trail is not read from Elasticsearch: "
                   "the Elasticsearch to publish into (default: $OTEL_AI_AUDIT_ELASTICSEARCH_URL;"
                   " credentials from the options below).")
@click.option("--splunk-export", metavar="FILE", type=click.Path(dir_okay=False),
              help="Verify a Splunk export: search results as JSON lines "
                   "(/services/search/jobs/export?output_mode=json) or the HEC events sent.")
@click.option("--otlp-export", metavar="FILE", type=click.Path(dir_okay=False), multiple=True,
              help="Verify the audit spans, and the telemetry a gateway sealed (ai_audit.seal), "
                   "in a Collector file exporter's output (OTLP/JSON, traces or logs). Repeat "
                   "for the backups of a rotated file: together they are one archive.")
@click.option("--gateway-index", metavar="NAME", is_flag=False,
              flag_value="", default=None,
              help="With --elasticsearch: verify the documents a Collector gateway's "
                   "elasticsearchexporter (otel mode) wrote to index NAME (alone: "
                   "<index prefix>-otlp) instead of the indices the direct shipper writes.")
@anchor_check_options(
    "Also check the trail against its external anchors there: rollback, "
    "deleted chains, truncation and rewritten history since each anchor.")
@elasticsearch_options
@kafka_options
@SINCE
def verify(store: str | None, public_keys: tuple[str, ...], allow_self_asserted: bool,
           allowed_losses: int, jobs: int | None, as_json: bool, publish_findings: bool,
           publish_to: str | None,
           splunk_export: str | None, otlp_export: tuple[str, ...], gateway_index: str | None,
           anchors_at: str | None,
           tsa_cert: str | None, min_retention_days: int, s3_endpoint: str | None,
           s3_region: str | None, **elasticsearch: Any) -> None:
    """Verify every chain in STORE, in Elasticsearch with --elasticsearch URL, or in an export
    file from Splunk (--splunk-export) or a Collector (--otlp-export).

    Exit 0: intact and complete; 1: tampered, incomplete or untrusted; 2: usage or I/O error.
    """
    key_files = list(public_keys) or [
        path for path in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if path]
    trusted = load_trusted_keys(key_files)
    try:
        jobs = resolve_jobs(jobs)
    except ValueError as error:
        fail(str(error))
    since = since_ns(elasticsearch.pop("since"))
    try:
        kafka = pop_kafka_settings(elasticsearch, env_selects=False)
    except ValueError as error:
        fail(str(error))
    if since is not None and kafka is None:
        fail("--since goes with --kafka BOOTSTRAP")
    sources = [store, elasticsearch["elasticsearch_url"], splunk_export, otlp_export or None,
               kafka]
    if sources.count(None) != len(sources) - 1:
        fail("give one of a STORE file, --elasticsearch URL, --splunk-export FILE, "
             "--otlp-export FILE or --kafka BOOTSTRAP")
    from_elasticsearch = elasticsearch["elasticsearch_url"] is not None
    if gateway_index is not None and not from_elasticsearch:
        fail("--gateway-index goes with --elasticsearch URL")
    if publish_to and (from_elasticsearch or not publish_findings):
        fail("--publish-to goes with --publish-findings, for a trail not read from "
             "Elasticsearch (which publishes where it reads)")
    if (tsa_cert or s3_endpoint) and not anchors_at:
        fail("--tsa-cert and --s3-endpoint go with --anchors s3://BUCKET/PREFIX")
    with _open(store, elasticsearch, splunk_export, otlp_export, gateway_index,
               kafka, since) as source:
        history = None
        if anchors_at is not None:
            history = read_anchor_history(
                anchor_bucket(anchors_at, s3_endpoint, s3_region), trusted or
                _store_keys(source), tsa_chain=load_certificate_chain(tsa_cert)
                if tsa_cert else None, min_retention_days=min_retention_days,
                store_id=getattr(source, "known_store_id", lambda: None)())
        total = getattr(source, "record_count", lambda: None)()
        with progress(f"verifying {source.description}", total=total) as advance:
            report = Verifier(trusted, allow_self_asserted=allow_self_asserted,
                              anchors=history, allowed_losses=allowed_losses, jobs=jobs,
                              ).verify(source, advance)
        _note_repeats(report, source)
        if since is not None:
            from otel_ai_audit.backends.kafka.source import window_findings

            window_findings(report, source)
    if store is not None:
        _note_journals(report, store)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    if publish_findings:
        _publish(report, elasticsearch if from_elasticsearch
                 else {**elasticsearch, "elasticsearch_url": publish_to})
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _open(store: str | None, elasticsearch: dict[str, Any], splunk_export: str | None = None,
          otlp_export: tuple[str, ...] = (), gateway_index: str | None = None,
          kafka: KafkaSettings | None = None,
          since: int | None = None) -> AbstractContextManager[RecordSource]:
    if kafka is not None:
        from otel_ai_audit.backends.kafka.source import read_kafka

        return nullcontext(read_kafka(kafka, since))
    if splunk_export is not None:
        from otel_ai_audit.backends.splunk_hec.source import read_splunk_export

        return nullcontext(read_splunk_export(splunk_export))
    if otlp_export:
        from otel_ai_audit.backends.otlp.source import read_otlp_export

        return nullcontext(read_otlp_export(*otlp_export))
    if store is None:
        return elasticsearch_source(gateway_index, **elasticsearch)
    source = AuditStore(store, create=False, readonly=True)
    source.description = store
    return source


def _store_keys(source: RecordSource) -> dict[str, Any]:
    """The keys a trail holds for itself: self-asserted, and reported so by the verifier."""
    from otel_ai_audit.integrity.keys import load_public_key_pem

    return {key_id: load_public_key_pem(pem) for key_id, pem in source.public_keys().items()}


def _publish(report: Report, elasticsearch: dict[str, Any]) -> None:
    from otel_ai_audit.backends.elasticsearch.layout import findings_index
    from otel_ai_audit.cli._elasticsearch import publish_findings

    settings = settings_from(**elasticsearch)
    if not settings.elasticsearch_url:
        fail("--publish-findings needs an Elasticsearch to publish into: --publish-to URL or "
             "$OTEL_AI_AUDIT_ELASTICSEARCH_URL")
    run_id = publish_findings(report, settings)
    click.echo(f"published {len(report.findings)} finding(s) and the summary of run {run_id} "
               f"to {findings_index(settings.elasticsearch_index_prefix)}", err=True)


def _note_repeats(report: Report, source: RecordSource) -> None:
    """Say how many repeats of a delivered event an export held (kept once, see
    `otel_ai_audit.verify.export_source`)."""
    repeats = getattr(source, "repeats", 0)
    if repeats:
        report.notices.append(f"{repeats} event(s) were delivered more than once, identical; "
                              "each was verified once")


def _note_journals(report: Report, store: str) -> None:
    """Acknowledged records that a killed process left in its journal are not in the store
    yet: a finding until they are recovered."""
    for journal in unrecovered(store):
        report.findings.append(Finding(
            None, None, Kind.UNRECOVERED_JOURNAL,
            f"{journal.records} acknowledged record(s) wait in {journal.path}, left by a process "
            f"that ended before committing them; `otel-ai-audit recover {store}` (or starting "
            f"the service again) commits them"))


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
