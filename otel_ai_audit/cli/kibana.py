"""`otel-ai-audit kibana install --url URL`: the dashboards and alert rules, into Kibana."""

from __future__ import annotations

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX, ENV_PREFIX


@click.group()
def kibana() -> None:
    """Kibana dashboards and alert rules for the audit indices."""


@kibana.command()
@click.option("--url", required=True, envvar=f"{ENV_PREFIX}KIBANA_URL", metavar="URL",
              help=f"Kibana base URL (${ENV_PREFIX}KIBANA_URL).")
@click.option("--api-key", envvar=f"{ENV_PREFIX}KIBANA_API_KEY", metavar="KEY",
              help=f"API key, encoded or id:key (${ENV_PREFIX}KIBANA_API_KEY).")
@click.option("--username", envvar=f"{ENV_PREFIX}KIBANA_USERNAME", metavar="NAME",
              help=f"Basic-auth user (${ENV_PREFIX}KIBANA_USERNAME).")
@click.option("--password", envvar=f"{ENV_PREFIX}KIBANA_PASSWORD", metavar="PASSWORD",
              help=f"Basic-auth password (${ENV_PREFIX}KIBANA_PASSWORD).")
@click.option("--ca-certs", type=click.Path(dir_okay=False), metavar="FILE",
              help="CA bundle to verify Kibana's TLS certificate.")
@click.option("--space", default="default", show_default=True, help="Kibana space.")
@click.option("--index-prefix", envvar=f"{ENV_PREFIX}ELASTICSEARCH_INDEX_PREFIX",
              default=ELASTICSEARCH_INDEX_PREFIX, show_default=True, metavar="NAME",
              help="Prefix of the audit indices the data views and rules read.")
@click.option("--connector-id", metavar="ID",
              help="Connector every rule notifies (e.g. a Slack or server-log connector); "
                   "without it the rules only show alerts in Kibana.")
def install(url: str, api_key: str | None, username: str | None, password: str | None,
            ca_certs: str | None, space: str, index_prefix: str,
            connector_id: str | None) -> None:
    """Import the data views, Lens panels and dashboards, and create (or update) the rules."""
    from otel_ai_audit.dashboards.install import KibanaInstaller

    try:
        installer = KibanaInstaller(url, api_key=api_key, username=username, password=password,
                                    ca_certs=ca_certs, space=space)
        result = installer.install(index_prefix=index_prefix, connector_id=connector_id)
    except ValueError as error:
        fail(str(error))
    click.echo(f"imported {result.imported} saved object(s) into Kibana at {installer.url} "
               f"(space {installer.space})")
    for name in result.created:
        click.echo(f"created rule: {name}")
    for name in result.updated:
        click.echo(f"updated rule: {name}")
