"""The Kafka sink: records, checkpoints, keys and anchors as messages on the trail's topics
(`layout`), through one idempotent `acks=all` producer.

A batch is produced whole, then flushed: `send_*` returns once every message is acknowledged
by all in-sync replicas, and otherwise raises `DeliveryError` naming the positions that were
not. The shipper keeps those in the store (its spool) and retries them, so a broker outage
only delays shipping: the model's hot path never waits for Kafka. The idempotent producer
writes a message retried inside librdkafka once; a batch the shipper sends again after a
timeout (outcome unknown) may add identical copies, which `verify --kafka` counts as repeats
and collapses, as it does for Splunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import (
    REJECTED,
    ClientErrors,
    KafkaSettings,
    describe,
)
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import StoredAnchor

METADATA_TIMEOUT = 10.0
"""Seconds `install` waits for the cluster's metadata before calling it unreachable."""
CLOSE_TIMEOUT = 5.0
"""Seconds `close` waits for acknowledgements still due: the process is stopping, and what
the brokers have not acknowledged stays in the store for the next shipper."""


class KafkaSink:
    """Produces to the topics `<topic_prefix>.records|checkpoints|keys|anchors`."""

    kind = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.name = f"kafka:{settings.bootstrap_servers}/{settings.topic_prefix}"
        self._errors = ClientErrors()
        self._producer = self._new_producer()
        self._installed = False

    def install(self) -> None:
        """Fail fast, in one line, on unreachable brokers or missing topics (creating them
        when `create_topics` is on). `ship` calls it first; a shipper in the model's process
        meets it on its first send."""
        errors = ClientErrors()
        config: dict[str, Any] = {**self.settings.common(), "error_cb": errors}
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=METADATA_TIMEOUT)
        except KafkaException as error:
            admin.poll(0)
            raise DeliveryError(f"cannot connect to Kafka at {self.settings.bootstrap_servers}: "
                                f"{describe(errors.cause(error.args[0]))}",
                                rejected=True) from error
        missing = [name for name in layout.topics(self.settings.topic_prefix)
                   if name not in metadata.topics or metadata.topics[name].error is not None]
        if not missing:
            self._installed = True
            return
        if not self.settings.create_topics:
            raise DeliveryError(self._missing(missing), rejected=True)
        futures = admin.create_topics([NewTopic(name) for name in missing])
        for name, future in futures.items():
            try:
                future.result(timeout=METADATA_TIMEOUT)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise DeliveryError(f"cannot create Kafka topic {name}: "
                                        f"{describe(error.args[0])}", rejected=True) from error
        self._installed = True

    # --- Sink ------------------------------------------------------------------------------

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._produce(layout.RECORDS, map(layout.record_message, batch))

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._produce(layout.CHECKPOINTS, map(layout.checkpoint_message, batch))

    def send_keys(self, keys: Mapping[str, str]) -> None:
        self._produce(layout.KEYS, [layout.key_message(key_id, pem)
                                    for key_id, pem in keys.items()])

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        self._produce(layout.ANCHORS, map(layout.anchor_message, batch))

    def close(self) -> None:
        self._producer.flush(min(self.settings.delivery_timeout, CLOSE_TIMEOUT))

    # --- producing -------------------------------------------------------------------------

    def _produce(self, kind: str, batch: Iterable[layout.Message]) -> None:
        """Produce the messages of `batch` to the topic of `kind` and wait for each
        acknowledgement.

        Each message is produced as soon as it is built, so librdkafka sends the first ones
        while the rest are built. One delivery callback serves the whole batch and keeps only
        the failures (a closure per message cost about as much as producing it); a failed
        message is mapped back to its positions by its key and value."""
        if not self._installed:
            self.install()
        topic = layout.topic(self.settings.topic_prefix, kind)
        self._errors.error = None
        failures: list[tuple[KafkaError, Any]] = []

        def report(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                failures.append((error, message))

        refused: list[tuple[int, KafkaError]] = []
        produce, poll = self._producer.produce, self._producer.poll
        messages: list[layout.Message] = []
        for position, message in enumerate(batch):
            messages.append(message)
            key, value, headers = message
            while True:
                try:
                    produce(topic, value, key, headers=headers, on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    poll(0.1)
                except KafkaException as error:
                    refused.append((position, error.args[0]))
                    break
        if not messages:
            return
        # Every message ends in a report within message.timeout.ms; the margin covers the
        # last in-flight request.
        unreported = self._producer.flush(self.settings.delivery_timeout + 5.0)
        if not failures and not refused and not unreported:
            return
        errors = [error for error, _ in failures] + [error for _, error in refused]
        if unreported:
            failed = list(range(len(messages)))  # which ones arrived is unknown
        else:
            failed = sorted({position for position, _ in refused}
                            | _positions(messages, [message for _, message in failures]))
        first = self._errors.cause(errors[0]) if errors else self._errors.error
        if any(error.fatal() for error in [*errors, *filter(None, [self._errors.error])]):
            # A fatal idempotence error leaves the producer unusable: the retry gets a new one.
            self._producer = self._new_producer()
        if first is not None and first.code() == KafkaError._MSG_TIMED_OUT and self._absent(topic):
            # librdkafka waits for an unknown topic to appear until the messages time out.
            raise DeliveryError(self._missing([topic]), failed, rejected=True)
        reason = describe(first) if first else "no acknowledgement in time"
        raise DeliveryError(
            f"Kafka at {self.settings.bootstrap_servers} did not take {len(failed)} of "
            f"{len(messages)} message(s) for {topic}: {reason}", failed,
            rejected=first is not None and first.code() in REJECTED)

    def _new_producer(self) -> Producer:
        return Producer({**self.settings.producer(), "error_cb": self._errors})

    def _absent(self, topic: str) -> bool:
        """The brokers answer that `topic` does not exist (False when they don't answer)."""
        try:
            metadata = self._producer.list_topics(topic, timeout=METADATA_TIMEOUT)
        except KafkaException:
            return False
        found = metadata.topics.get(topic)
        return found is None or (found.error is not None and found.error.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC))

    def _missing(self, topics: list[str]) -> str:
        return (f"Kafka at {self.settings.bootstrap_servers} has no topic {', '.join(topics)}"
                " and does not create topics on first use: create them (docs/kafka.md) or pass "
                "--kafka-create-topics (OTEL_AI_AUDIT_KAFKA_CREATE_TOPICS=true)")


def _positions(messages: list[layout.Message], failed: list[Any]) -> set[int]:
    """The positions in `messages` of the delivery reports `failed` (a message sent twice in
    one batch maps to both: both are retried)."""
    wanted = {(message.key(), message.value()) for message in failed}
    return {position for position, (key, value, _) in enumerate(messages)
            if (key, value) in wanted}
