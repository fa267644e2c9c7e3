"""Connecting to Kafka: the settings (`OTEL_AI_AUDIT_KAFKA_*`, the same names as the Python
API's arguments and the CLI's flags), librdkafka's configuration for producer, consumer and
admin client, and Kafka's errors in words.

librdkafka logs every failed connection attempt; those lines go to the `DEBUG` level of this
module's logger, and the sink or source reports what failed once, in one line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import Any

from otel_ai_audit.backends._extras import MissingExtraError
from otel_ai_audit.backends.kafka.layout import DEFAULT_TOPIC_PREFIX

try:
    import confluent_kafka
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("the Kafka sink and source", "kafka") from error

logger = logging.getLogger(__name__)

ENV_PREFIX = "OTEL_AI_AUDIT_KAFKA_"
DEFAULT_GROUP = "otel-ai-audit-ship"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION_TYPES = ("lz4", "zstd", "gzip", "snappy", "none")
LINGER_MS = 20
BATCH_BYTES = 1_000_000
"""The producer's batching: a shipper hands it thousands of records at once, so waiting
20 ms fills batches of up to 1 MB per partition (docs/kafka.md has the measurements)."""

REJECTED = frozenset({
    confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED,
    confluent_kafka.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    confluent_kafka.KafkaError.SASL_AUTHENTICATION_FAILED,
    confluent_kafka.KafkaError._AUTHENTICATION,
    confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE,
    confluent_kafka.KafkaError.INVALID_RECORD,
    confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
    confluent_kafka.KafkaError._UNKNOWN_TOPIC,
})
"""Errors a person must fix (credentials, ACLs, topics, message size): rejections."""

HINTS = {
    confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
        "create the topics (docs/kafka.md) or ship with --kafka-create-topics",
    confluent_kafka.KafkaError._UNKNOWN_TOPIC:
        "create the topics (docs/kafka.md) or ship with --kafka-create-topics",
    confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED:
        "grant the principal WRITE/DESCRIBE on the topics (and IDEMPOTENT_WRITE)",
    confluent_kafka.KafkaError.SASL_AUTHENTICATION_FAILED:
        "check OTEL_AI_AUDIT_KAFKA_SASL_USERNAME, OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD and "
        "OTEL_AI_AUDIT_KAFKA_SASL_MECHANISM",
    confluent_kafka.KafkaError._AUTHENTICATION:
        "check OTEL_AI_AUDIT_KAFKA_SASL_USERNAME, OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD and "
        "OTEL_AI_AUDIT_KAFKA_SASL_MECHANISM",
    confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE:
        "raise the topic's max.message.bytes above the largest record",
    confluent_kafka.KafkaError._ALL_BROKERS_DOWN:
        "check OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS and that the brokers run",
    confluent_kafka.KafkaError._TRANSPORT:
        "check OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS and that the brokers run",
    confluent_kafka.KafkaError._MSG_TIMED_OUT:
        "the brokers did not confirm in time; the records stay in the store and are retried",
}


@dataclass(frozen=True)
class KafkaSettings:
    """Where and how to reach Kafka. Each field is also `OTEL_AI_AUDIT_KAFKA_<FIELD>`."""

    bootstrap_servers: str
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    security_protocol: str | None = None
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: SASL_SSL with a username, SSL with
    a CA or client certificate, else PLAINTEXT)."""
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ca_certs: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    compression: str = "lz4"
    """The producer's `compression.type` (lz4, zstd, gzip, snappy or none); lz4 produced the
    most records/s in `benchmarks/bench_kafka.py` on a quiet machine (docs/kafka.md)."""
    create_topics: bool = False
    """Create missing topics (broker defaults for partitions and replicas) instead of failing."""
    delivery_timeout: float = 300.0
    """Seconds a message may wait for the brokers' acknowledgement before the batch fails
    (and is retried from the store). librdkafka's own default: within it, the idempotent
    producer's retries never write a record twice; a batch re-sent after it may (an outage of
    a whole cluster for 30 s with a 30 s timeout left 25 of 16,404 records twice)."""
    group: str = DEFAULT_GROUP
    """The consumer group of `ship --from-kafka`: its members share the partitions."""
    batch_size: int = 10_000
    """Messages `ship --from-kafka` consumes, delivers and commits at a time."""
    session_timeout: float = 45.0
    """Seconds after which the group gives a silent member's partitions (a killed
    `ship --from-kafka`) to the others; the brokers allow 6 to 300 by default."""

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ValueError("no Kafka bootstrap servers (OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS)")
        if self.security_protocol and self.security_protocol.upper() not in SECURITY_PROTOCOLS:
            raise ValueError(f"OTEL_AI_AUDIT_KAFKA_SECURITY_PROTOCOL is "
                             f"{self.security_protocol!r}: expected one of "
                             f"{', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism.upper() not in SASL_MECHANISMS:
            raise ValueError(f"OTEL_AI_AUDIT_KAFKA_SASL_MECHANISM is {self.sasl_mechanism!r}: "
                             f"expected one of {', '.join(SASL_MECHANISMS)}")
        if self.compression.lower() not in COMPRESSION_TYPES:
            raise ValueError(f"OTEL_AI_AUDIT_KAFKA_COMPRESSION is {self.compression!r}: "
                             f"expected one of {', '.join(COMPRESSION_TYPES)}")
        if not self.group.strip():
            raise ValueError("OTEL_AI_AUDIT_KAFKA_GROUP is empty: name the consumer group")
        if self.batch_size < 1:
            raise ValueError(f"OTEL_AI_AUDIT_KAFKA_BATCH_SIZE is {self.batch_size}: expected a "
                             "number of messages above 0")
        if self.sasl_username and not self.sasl_password:
            raise ValueError("OTEL_AI_AUDIT_KAFKA_SASL_USERNAME is set but "
                             "OTEL_AI_AUDIT_KAFKA_SASL_PASSWORD is not")

    @classmethod
    def from_env(cls, **overrides: Any) -> KafkaSettings:
        """Settings from `OTEL_AI_AUDIT_KAFKA_*`, with `overrides` (CLI flags, not None) on
        top."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            text = os.environ.get(ENV_PREFIX + field.name.upper())
            if text is None or text == "":
                continue
            if field.name == "create_topics":
                values[field.name] = _boolean(ENV_PREFIX + field.name.upper(), text)
            elif field.name in ("delivery_timeout", "session_timeout"):
                values[field.name] = _seconds(ENV_PREFIX + field.name.upper(), text)
            elif field.name == "batch_size":
                values[field.name] = _count(ENV_PREFIX + field.name.upper(), text)
            else:
                values[field.name] = text
        values.update({name: value for name, value in overrides.items() if value is not None})
        if not values.get("bootstrap_servers"):
            raise ValueError("no Kafka bootstrap servers: pass --kafka HOST:PORT or set "
                             "OTEL_AI_AUDIT_KAFKA_BOOTSTRAP_SERVERS")
        return cls(**values)

    @property
    def protocol(self) -> str:
        if self.security_protocol:
            return self.security_protocol.upper()
        tls = bool(self.ca_certs or self.client_cert)
        if self.sasl_username:
            return "SASL_SSL"
        return "SSL" if tls else "PLAINTEXT"

    def common(self) -> dict[str, Any]:
        """librdkafka settings every client shares: brokers, security, logging."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.protocol,
            "client.id": "otel-ai-audit",
            "logger": _LIBRDKAFKA_LOG,
        }
        if self.sasl_username:
            config.update({"sasl.mechanism": self.sasl_mechanism.upper(),
                           "sasl.username": self.sasl_username,
                           "sasl.password": self.sasl_password})
        for option, value in (("ssl.ca.location", self.ca_certs),
                              ("ssl.certificate.location", self.client_cert),
                              ("ssl.key.location", self.client_key)):
            if value:
                config[option] = value
        return config

    def producer(self) -> dict[str, Any]:
        """Idempotent, `acks=all`: a retried send is written once, in order, on every in-sync
        replica."""
        return {**self.common(), "enable.idempotence": True, "acks": "all",
                "linger.ms": LINGER_MS, "batch.size": BATCH_BYTES,
                "compression.type": self.compression.lower(),
                "message.timeout.ms": int(self.delivery_timeout * 1000)}

    def group_consumer(self) -> dict[str, Any]:
        """A member of `group` that commits by hand, only what was delivered; a group without
        committed offsets starts at the oldest retained message."""
        return {**self.common(), "group.id": self.group, "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": int(self.session_timeout * 1000)}

    def consumer(self) -> dict[str, Any]:
        """Reads partitions assigned by hand from the beginning; commits nothing."""
        return {**self.common(), "group.id": "otel-ai-audit-verify",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest", "enable.partition.eof": True}


class _LibrdkafkaLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """librdkafka's log lines, all at DEBUG: their substance reaches the user once, as the
    sink's or the source's error."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


_LIBRDKAFKA_LOG = _LibrdkafkaLog(logging.getLogger(f"{__name__}.librdkafka"), {})


class ClientErrors:
    """librdkafka's `error_cb`: keeps the error that explains a failed call best (a rejection,
    such as failed authentication, over the generic "transport failure" that follows it)."""

    def __init__(self) -> None:
        self.error: confluent_kafka.KafkaError | None = None

    def __call__(self, error: confluent_kafka.KafkaError) -> None:
        if self.error is None or (error.code() in REJECTED
                                  and self.error.code() not in REJECTED):
            self.error = error

    def cause(self, error: confluent_kafka.KafkaError) -> confluent_kafka.KafkaError:
        """What caused `error`: the rejection seen before it, if any, else `error`. (librdkafka
        reports errors when the client is polled: poll it before asking.)"""
        if self.error is not None and self.error.code() in REJECTED:
            return self.error
        return error


def describe(error: confluent_kafka.KafkaError) -> str:
    """Kafka's error with what to do about it."""
    hint = HINTS.get(error.code())
    return f"{error.str()} ({error.name()})" + (f": {hint}" if hint else "")


def _boolean(variable: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable} is {text!r}: expected true or false")


def _count(variable: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{variable} is {text!r}: expected a whole number") from None


def _seconds(variable: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{variable} is {text!r}: expected a number of seconds above 0")
    return value
