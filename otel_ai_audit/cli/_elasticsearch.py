"""Elasticsearch connection options shared by `verify`, `ship`, `drift` and `fairness`, and the
connections they open.

Each flag sets the `AuditSettings` field of the same name and falls back to its
`OTEL_AI_AUDIT_ELASTICSEARCH_*` variable, so secrets can stay out of the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import RecordSource

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Command = TypeVar("Command", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--elasticsearch", "elasticsearch_url", metavar="URL",
                 help="Elasticsearch node URL(s), comma-separated."),
    click.option("--index-prefix", "elasticsearch_index_prefix", metavar="NAME",
                 help="Prefix of the index names (default: otel-ai-audit; "
                      "$OTEL_AI_AUDIT_ELASTICSEARCH_INDEX_PREFIX)."),
    click.option("--api-key", "elasticsearch_api_key", metavar="KEY",
                 help="API key, encoded or id:key ($OTEL_AI_AUDIT_ELASTICSEARCH_API_KEY)."),
    click.option("--username", "elasticsearch_username", metavar="NAME",
                 help="Basic-auth user ($OTEL_AI_AUDIT_ELASTICSEARCH_USERNAME)."),
    click.option("--password", "elasticsearch_password", metavar="PASSWORD",
                 help="Basic-auth password ($OTEL_AI_AUDIT_ELASTICSEARCH_PASSWORD)."),
    click.option("--ca-certs", "elasticsearch_ca_certs", metavar="FILE",
                 type=click.Path(dir_okay=False),
                 help="CA bundle to verify the server's certificate "
                      "($OTEL_AI_AUDIT_ELASTICSEARCH_CA_CERTS)."),
    click.option("--no-verify-certs", "elasticsearch_verify_certs", flag_value=False,
                 default=None, help="Do not verify the server's TLS certificate (tests only)."),
)


def elasticsearch_options(command: Command) -> Command:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def settings_from(**options: Any) -> AuditSettings:
    """Settings from the environment, with the flags that were given on top; a bad one is a
    `ConfigurationError` naming its variable, which `Commands` reports in one line."""
    return AuditSettings.from_env(**options)


def connect(settings: AuditSettings) -> Elasticsearch:
    """A client for the settings. The client library is imported here, at the call, so that
    without the `elasticsearch` extra the command ends with one line (`MissingExtraError`, a
    `ConfigurationError`), as it does for a bad setting."""
    from otel_ai_audit.backends.elasticsearch.client import connect as open_client

    return open_client(settings)


@contextmanager
def elasticsearch_source(gateway_index: str | None = None,
                         **options: Any) -> Iterator[RecordSource]:
    """The verifier's view of Elasticsearch at `--elasticsearch URL` (a snapshot in time): the
    sink's indices, or with `gateway_index` the documents a Collector gateway wrote there
    ("": the default `<prefix>-otlp`)."""
    settings = settings_from(**options)
    try:
        client = connect(settings)
    except ValueError as error:
        fail(str(error))
    from otel_ai_audit.backends.elasticsearch.gateway_source import read_gateway_index
    from otel_ai_audit.backends.elasticsearch.otel_mapping import gateway_index as default_index
    from otel_ai_audit.backends.elasticsearch.source import ElasticsearchSource

    prefix = settings.elasticsearch_index_prefix
    try:
        try:
            source: Any = (ElasticsearchSource(client, index_prefix=prefix)
                           if gateway_index is None else nullcontext(read_gateway_index(
                               client, gateway_index or default_index(prefix))))
        except ValueError as error:
            fail(str(error))
        with source as opened:
            yield opened
    finally:
        client.close()


def publish_findings(report: Report, settings: AuditSettings) -> str:
    """Publish the report into the findings index of `settings`; the run id. Any problem (no
    extra, a bad setting, Elasticsearch refusing) ends the command with one line."""
    try:
        client = connect(settings)
        from otel_ai_audit.backends.elasticsearch.publish import publish_findings

        try:
            return publish_findings(client, report,
                                    index_prefix=settings.elasticsearch_index_prefix)
        finally:
            client.close()
    except ValueError as error:
        fail(str(error))
