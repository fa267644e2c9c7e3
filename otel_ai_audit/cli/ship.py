"""`otel-ai-audit ship`: deliver what a store holds to its sinks, from any process.

An application with OTEL_AI_AUDIT_ELASTICSEARCH_URL (or _SPLUNK_HEC_URL, _OTLP_ENDPOINT) ships
while it runs. This command ships a store from outside: after a crash left records
undelivered, from a sidecar, or on a schedule. It continues from the same durable cursors, so
nothing is shipped twice or skipped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail, progress, store_argument
from otel_ai_audit.cli._elasticsearch import elasticsearch_options, settings_from
from otel_ai_audit.cli._kafka import kafka_options, kafka_ship_options, pop_kafka_settings
from otel_ai_audit.sinks import DeliveryError, Shipper, Sink, configured_sinks
from otel_ai_audit.sinks.shipper import RECORDS
from otel_ai_audit.store.sqlite import STORE_ENV, AuditStore, StoreError


@click.command()
@store_argument(default=lambda: os.environ.get(STORE_ENV))
@elasticsearch_options
@click.option("--retention", "elasticsearch_retention", metavar="AGE",
              help="Retention of new data streams, e.g. 400d (default 190d; "
                   "$OTEL_AI_AUDIT_ELASTICSEARCH_RETENTION).")
@click.option("--splunk-hec", "splunk_hec_url", metavar="URL",
              help="Splunk HTTP Event Collector base URL ($OTEL_AI_AUDIT_SPLUNK_HEC_URL); the "
                   "token comes from $OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN.")
@click.option("--splunk-index", "splunk_hec_index", metavar="NAME",
              help="Splunk index ($OTEL_AI_AUDIT_SPLUNK_HEC_INDEX; default: the token's).")
@click.option("--otlp-endpoint", "otlp_endpoint", metavar="URL",
              help="OpenTelemetry Collector OTLP endpoint for the audit pipeline "
                   "($OTEL_AI_AUDIT_OTLP_ENDPOINT).")
@kafka_options
@kafka_ship_options
@click.option("--once", is_flag=True,
              help="Ship what the store holds now, then exit. Default: keep shipping until "
                   "SIGTERM or Ctrl-C.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to keep retrying with --once, and to finish after a signal.")
def ship(store: str | None, once: bool, timeout: float, **destinations: Any) -> None:
    """Ship STORE's records, checkpoints and keys (default: $OTEL_AI_AUDIT_STORE) to
    Elasticsearch, Splunk HEC, an OpenTelemetry Collector and/or Kafka: every destination
    given by a flag or its variable. With --from-kafka, ship what Kafka's topics hold instead.

    Exit 0: everything in the store is delivered everywhere (--from-kafka: stopped by a
    signal, or with --once read to the end); 1: some remains (it stays in the store, or
    uncommitted in Kafka: run again); 2: usage error, or a destination unreachable or refusing
    the credentials.
    """
    from_kafka = destinations.pop("from_kafka")
    if from_kafka is not None:
        _ship_from_kafka(from_kafka, once, timeout, destinations)
    if store is None:
        fail(f"give the STORE to ship (or set ${STORE_ENV})")
    try:
        kafka = pop_kafka_settings(destinations)
        settings = settings_from(**destinations, kafka_bootstrap_servers=_FROM_FLAGS)
        AuditStore(store, create=False).close()
        sinks = configured_sinks(settings)
        if kafka is not None:
            from otel_ai_audit.backends.kafka.sink import KafkaSink

            sinks.append(KafkaSink(kafka))
    except (StoreError, ValueError) as error:
        fail(str(error))
    if not sinks:
        fail("nowhere to ship: pass --elasticsearch URL, --splunk-hec URL, --otlp-endpoint "
             "URL or --kafka BOOTSTRAP (or set their OTEL_AI_AUDIT_* variables)")
    _prepare(sinks)
    shippers = [Shipper(store, sink, create_store=False) for sink in sinks]
    if once:
        delivered = _ship_once(store, shippers, timeout)
        for shipper in shippers:
            shipper.close()
    else:
        delivered = _ship_until_signalled(shippers, timeout)
    for shipper, sink in zip(shippers, sinks, strict=True):
        stats = shipper.stats
        click.echo(f"{store}: shipped {stats.shipped_records} record(s), "
                   f"{stats.shipped_checkpoints} checkpoint(s) and {stats.shipped_keys} key(s) "
                   f"to {sink.name}")
    if not delivered:
        click.echo("some records remain undelivered: run again")
    sys.exit(EXIT_OK if delivered else EXIT_FAILED)


_FROM_FLAGS = ""
"""`kafka_bootstrap_servers` for the other destinations' settings: unset, since `ship` takes
Kafka's settings, flags and variables, apart (`pop_kafka_settings`): Kafka is then shipped to
once, and never shipped to by `--from-kafka`, which reads it."""


def _prepare(sinks: list[Sink]) -> None:
    """Log progress in one line a message, and install each destination (failing fast)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # The client logs each retry with its traceback; the shipper says what failed in one line.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    for sink in sinks:
        _install(sink)


def _install(sink: Sink) -> None:
    """Prepare the destination where it needs it (Elasticsearch index templates), failing fast
    on a wrong URL or credentials."""
    install = getattr(sink, "install", None)
    if install is None:
        return
    try:
        install()
    except DeliveryError as error:
        fail(f"cannot ship to {sink.name}: {error}")


def _ship_once(store: str, shippers: list[Shipper], timeout: float) -> bool:
    """Deliver what the store holds now; on a terminal, a bar of the records shipped out of
    those pending when it began. The shippers drain in a worker thread, this one reads their
    counters (only their thread writes them)."""
    with AuditStore(store, create=False, readonly=True) as opened:
        pending = sum(_pending_records(opened, shipper.sink.name) for shipper in shippers)
    results: list[bool] = []
    worker = threading.Thread(
        target=lambda: results.extend([shipper.drain(timeout) for shipper in shippers]),
        name="otel-ai-audit-ship", daemon=True)
    with progress(f"shipping {store}: records", total=pending) as advance:
        worker.start()
        shown = 0
        while worker.is_alive():
            worker.join(0.2)
            shipped = sum(shipper.stats.shipped_records for shipper in shippers)
            advance(shipped - shown)
            shown = shipped
    return len(results) == len(shippers) and all(results)


def _pending_records(store: AuditStore, sink: str) -> int:
    """Records past `sink`'s cursors (a chain's seqs run from 0 without gaps)."""
    return store.record_count() - sum(store.ship_cursor(sink, chain_id, RECORDS) + 1
                                      for chain_id in store.chain_ids())


def _ship_until_signalled(shippers: list[Shipper], timeout: float) -> bool:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for shipper in shippers:
        shipper.start()
    while not stop.wait(1.0):
        pass
    return all([shipper.close(timeout) for shipper in shippers])


def _ship_from_kafka(bootstrap: str, once: bool, timeout: float,
                     destinations: dict[str, Any]) -> None:
    """Consume the topics at `bootstrap` as a member of the consumer group and index them into
    the destinations; exits."""
    from otel_ai_audit.backends.kafka.consumer import KafkaForwarder
    from otel_ai_audit.backends.kafka.source import KafkaSourceError

    if destinations["kafka_bootstrap_servers"] is not None:
        fail("--from-kafka and --kafka: Kafka is the source here, not a destination")
    destinations["kafka_bootstrap_servers"] = bootstrap or None
    try:
        kafka = pop_kafka_settings(destinations)
        if kafka is None:
            fail("--from-kafka needs BOOTSTRAP (or $OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS)")
        sinks = configured_sinks(settings_from(**destinations, kafka_bootstrap_servers=_FROM_FLAGS))
    except ValueError as error:
        fail(str(error))
    if not sinks:
        fail("nowhere to ship from Kafka: pass --elasticsearch URL and/or --splunk-hec URL (or "
             "set their OTEL_AI_AUDIT_* variables)")
    _prepare(sinks)
    forwarder = KafkaForwarder(kafka, sinks)
    try:
        forwarder.install()
    except KafkaSourceError as error:
        forwarder.close()
        fail(f"cannot ship from {forwarder.name}: {error}")
    handlers = {signum: signal.signal(signum, lambda *_: forwarder.stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        delivered = forwarder.run(once=once, timeout=timeout if once else float("inf"))
    finally:
        forwarder.close()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    stats = forwarder.stats
    for sink in sinks:
        click.echo(f"{forwarder.name} (group {kafka.group}): shipped {stats.records} record(s), "
                   f"{stats.checkpoints} checkpoint(s) and {stats.keys} key(s) to {sink.name}")
    if not delivered and not forwarder.stop.is_set():
        click.echo("some messages remain undelivered, uncommitted in Kafka: run again")
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)
