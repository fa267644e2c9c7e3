"""`otel-ai-audit ship`: deliver what a store holds to Elasticsearch, from any process.

An application with OTEL_AI_AUDIT_ELASTICSEARCH_URL ships while it runs. This command ships a
store from outside: after a crash left records undelivered, from a sidecar, or on a schedule.
It continues from the same durable cursors, so nothing is shipped twice or skipped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail
from otel_ai_audit.cli._elasticsearch import elasticsearch_options, settings_from
from otel_ai_audit.sinks import DeliveryError, Shipper
from otel_ai_audit.store.sqlite import STORE_ENV, AuditStore, StoreError


@click.command()
@click.option("--store", required=True, envvar=STORE_ENV, type=click.Path(dir_okay=False),
              help=f"The store to ship (${STORE_ENV}).")
@elasticsearch_options
@click.option("--retention", "elasticsearch_retention", metavar="AGE",
              help="Retention of new data streams, e.g. 400d (default 190d; "
                   "$OTEL_AI_AUDIT_ELASTICSEARCH_RETENTION).")
@click.option("--once", is_flag=True,
              help="Ship what the store holds now, then exit. Default: keep shipping until "
                   "SIGTERM or Ctrl-C.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to keep retrying with --once, and to finish after a signal.")
def ship(store: str, once: bool, timeout: float, **elasticsearch: Any) -> None:
    """Ship a store's records, checkpoints and keys to Elasticsearch.

    The URL comes from --elasticsearch or $OTEL_AI_AUDIT_ELASTICSEARCH_URL. Exit 0: everything
    in the store is delivered; 1: some remains (it stays in the store: run again); 2: usage
    error, or Elasticsearch unreachable or refusing the credentials.
    """
    from otel_ai_audit.sinks.elasticsearch import ElasticsearchSink  # imports the client

    settings = settings_from(**elasticsearch)
    if not settings.elasticsearch_url:
        fail("no Elasticsearch URL: pass --elasticsearch URL or set "
             "OTEL_AI_AUDIT_ELASTICSEARCH_URL")
    try:
        AuditStore(store, create=False).close()
        sink = ElasticsearchSink.from_settings(settings)
    except (StoreError, ValueError) as error:
        fail(str(error))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    try:
        sink.install()
    except DeliveryError as error:
        fail(f"cannot ship to {sink.name}: {error}")
    shipper = Shipper(store, sink, create_store=False)
    if once:
        delivered = shipper.drain(timeout)
        shipper.close()
    else:
        delivered = _ship_until_signalled(shipper, timeout)
    stats = shipper.stats
    click.echo(f"{store}: shipped {stats.shipped_records} record(s), "
               f"{stats.shipped_checkpoints} checkpoint(s) and {stats.shipped_keys} key(s) to "
               f"{sink.name}" + ("" if delivered else "; some remain undelivered: run again"))
    sys.exit(EXIT_OK if delivered else EXIT_FAILED)


def _ship_until_signalled(shipper: Shipper, timeout: float) -> bool:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    shipper.start()
    while not stop.wait(1.0):
        pass
    return shipper.close(timeout)
