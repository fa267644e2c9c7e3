"""The Kafka options `ship` and `verify` share: each flag mirrors an `OTEL_AI_AUDIT_KAFKA_*`
variable and a `KafkaSettings` field (the SASL password only comes from its variable)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.cli._window import duration_ns
from otel_ai_audit.monitoring.records import parse_time

if TYPE_CHECKING:
    from otel_ai_audit.backends.kafka.client import KafkaSettings

_OPTIONS = (
    click.option("--kafka", "kafka_bootstrap_servers", metavar="BOOTSTRAP",
                 help="Kafka bootstrap servers, host:port[,host:port...] "
                      "($OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS)."),
    click.option("--topic-prefix", "kafka_topic_prefix", metavar="PREFIX",
                 help="Kafka topics are PREFIX.records, .checkpoints, .keys, .anchors (default "
                      "otel-ai-audit; $OTEL_AI_AUDIT_KAFKA_TOPIC_PREFIX)."),
    click.option("--kafka-security-protocol", "kafka_security_protocol",
                 type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                                   case_sensitive=False),
                 help="$OTEL_AI_AUDIT_KAFKA_SECURITY_PROTOCOL (default: from the settings "
                      "below)."),
    click.option("--kafka-sasl-mechanism", "kafka_sasl_mechanism",
                 type=click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                                   case_sensitive=False),
                 help="$OTEL_AI_AUDIT_KAFKA_SASL_MECHANISM (default SCRAM-SHA-512)."),
    click.option("--kafka-sasl-username", "kafka_sasl_username", metavar="NAME",
                 help="$OTEL_AI_AUDIT_KAFKA_SASL_USERNAME; the password comes from "
                      "$OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD."),
    click.option("--kafka-ca-certs", "kafka_ca_certs", metavar="PEM",
                 type=click.Path(dir_okay=False),
                 help="CA bundle for TLS ($OTEL_AI_AUDIT_KAFKA_CA_CERTS)."),
    click.option("--kafka-client-cert", "kafka_client_cert", metavar="PEM",
                 type=click.Path(dir_okay=False),
                 help="Client certificate for mutual TLS ($OTEL_AI_AUDIT_KAFKA_CLIENT_CERT)."),
    click.option("--kafka-client-key", "kafka_client_key", metavar="PEM",
                 type=click.Path(dir_okay=False),
                 help="Its private key ($OTEL_AI_AUDIT_KAFKA_CLIENT_KEY)."),
)

_SHIP_OPTIONS = (
    click.option("--kafka-create-topics", "kafka_create_topics", is_flag=True, default=None,
                 help="Create missing Kafka topics with the brokers' defaults "
                      "($OTEL_AI_AUDIT_KAFKA_CREATE_TOPICS)."),
    click.option("--kafka-compression", "kafka_compression",
                 type=click.Choice(["lz4", "zstd", "gzip", "snappy", "none"],
                                   case_sensitive=False),
                 help="Compression of the messages produced to Kafka (default lz4; "
                      "$OTEL_AI_AUDIT_KAFKA_COMPRESSION)."),
    click.option("--from-kafka", "from_kafka", metavar="BOOTSTRAP", is_flag=False,
                 flag_value="", default=None,
                 help="Ship from Kafka instead of a store: join a consumer group on the topics "
                      "at BOOTSTRAP (alone: $OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS) and index "
                      "them into --elasticsearch and/or --splunk-hec, committing offsets once "
                      "delivered."),
    click.option("--group", "kafka_group", metavar="NAME",
                 help="With --from-kafka: the consumer group (default otel-ai-audit-ship; "
                      "$OTEL_AI_AUDIT_KAFKA_GROUP)."),
)


def kafka_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def kafka_ship_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options only `ship` has: producing (`--kafka`) and consuming (`--from-kafka`)."""
    for option in reversed(_SHIP_OPTIONS):
        command = option(command)
    return command


def pop_kafka_settings(options: dict[str, Any], *, env_selects: bool = True,
                       ) -> KafkaSettings | None:
    """Take the `kafka_*` flags out of `options`; the settings they and the environment give,
    or None when Kafka is not selected: by `--kafka`, or (`env_selects`, for shipping to every
    configured destination) by $OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS. A bad value raises
    `ValueError` (or `MissingExtraError` without the `kafka` extra) for the caller to report
    in one line."""
    flags = {name[len("kafka_"):]: options.pop(name)
             for name in [name for name in options if name.startswith("kafka_")]}
    selected = flags.get("bootstrap_servers") or (
        env_selects and os.environ.get("OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS"))
    if not selected:
        return None
    from otel_ai_audit.backends.kafka.client import KafkaSettings

    return KafkaSettings.from_env(**flags)


SINCE = click.option(
    "--since", "since", metavar="TIME",
    help="With --kafka: verify what was produced since TIME (ISO 8601, e.g. "
         "2026-12-01T00:00:00Z, or a duration such as 6h or 1d for that long ago), each chain "
         "from its first record since then.")


def since_ns(text: str | None) -> int | None:
    """--since as Unix nanoseconds (None when not given); one line if it is neither a time nor
    a duration."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as error:
        if text.strip()[:-1].isdigit():
            return time.time_ns() - duration_ns(text, "--since")
        fail(f"--since: {error}, or a duration such as 6h")
