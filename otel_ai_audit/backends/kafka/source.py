"""Verifying the trail where it lives in Kafka: the topics read from the beginning as a
`RecordSource` (`verify --kafka BOOTSTRAP --topic-prefix P`).

Every partition of the records, checkpoints and keys topics is assigned by hand (no consumer
group, nothing committed) and read from its first retained offset up to the high watermark
seen at the start. A record's position is its `chain.id`/`chain.seq` headers when present,
else what its own bytes say, so a message produced again with the same key and other bytes
is a second record at one position (the verifier reports it), and one that is gone (deleted,
compacted away, a topic recreated without it) is a gap or a truncated chain. Identical
repeats (a batch retried after an unknown outcome) are collapsed and counted.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import ClientErrors, KafkaSettings, describe
from otel_ai_audit.errors import SourceError
from otel_ai_audit.verify.export_source import (
    ExportSource,
    Item,
    export_source,
    record_position,
    signed_checkpoint,
)

METADATA_TIMEOUT = 10.0
POLL_TIMEOUT = 1.0
READ_TIMEOUT = 120.0
"""Seconds reading one topic may stall (no message) before the source gives up."""


class KafkaSourceError(SourceError):
    """The topics cannot be read: brokers unreachable, a topic missing, access refused."""


def read_kafka(settings: KafkaSettings) -> ExportSource:
    """The trail in the topics under `settings.topic_prefix`."""
    errors = ClientErrors()
    consumer = Consumer({**settings.consumer(), "error_cb": errors})
    try:
        items: list[Item] = []
        for kind in (layout.RECORDS, layout.CHECKPOINTS, layout.KEYS):
            topic = layout.topic(settings.topic_prefix, kind)
            for message in read_topic(consumer, topic, settings.bootstrap_servers, errors):
                items.append(_item(kind, message))
    finally:
        consumer.close()
    return export_source(f"kafka:{settings.bootstrap_servers}/{settings.topic_prefix}", items)


def _item(kind: str, message: Any) -> Item:
    value: bytes = message.value() or b""
    headers = message.headers()
    if kind == layout.RECORDS:
        chain_id = layout.header_text(headers, "chain.id")
        if chain_id is None and message.key() is not None:
            chain_id = message.key().decode("utf-8", errors="replace")
        return "record", (*record_position(value, chain_id,
                                           layout.header_text(headers, "chain.seq")), value)
    if kind == layout.CHECKPOINTS:
        return "checkpoint", signed_checkpoint(_object(value).get("checkpoint") or {})
    key_id = (message.key() or b"").decode("utf-8", errors="replace")
    return "key", (key_id, value.decode("utf-8", errors="replace"))


def read_topic(consumer: Consumer, topic: str, bootstrap: str,
               errors: ClientErrors | None = None) -> list[Any]:
    """Every message of `topic` up to the high watermarks seen now (`errors`: the consumer's
    `error_cb`, to name the cause of a failure)."""
    try:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT)
    except KafkaException as error:
        cause = error.args[0]
        if errors is not None:
            consumer.poll(0)  # serves error_cb: the cause, e.g. failed authentication
            cause = errors.cause(cause)
        raise KafkaSourceError(f"cannot connect to Kafka at {bootstrap}: "
                               f"{describe(cause)}") from error
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        reason = describe(found.error) if found is not None and found.error else "missing"
        raise KafkaSourceError(f"Kafka at {bootstrap} has no topic {topic}: {reason}")
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in sorted(found.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                   timeout=METADATA_TIMEOUT)
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, low))
    if not starts:
        return []
    consumer.assign(starts)
    messages: list[Any] = []
    stalled = 0.0
    while ends:
        message = consumer.poll(POLL_TIMEOUT)
        if message is None:
            stalled += POLL_TIMEOUT
            if stalled >= READ_TIMEOUT:
                raise KafkaSourceError(f"reading {topic} from Kafka at {bootstrap} stalled "
                                       f"for {READ_TIMEOUT:.0f}s")
            continue
        stalled = 0.0
        problem, partition, offset = message.error(), message.partition(), message.offset()
        if problem is not None:
            if problem.code() == KafkaError._PARTITION_EOF:
                ends.pop(partition or 0, None)
                continue
            raise KafkaSourceError(f"reading {topic} from Kafka at {bootstrap}: "
                                   f"{describe(problem)}")
        if partition is None or offset is None or partition not in ends:
            continue
        if offset < ends[partition]:
            messages.append(message)
        if offset + 1 >= ends[partition]:
            ends.pop(partition)
    consumer.unassign()
    return messages


def _object(value: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
