"""Verifying the trail where it lives in Kafka: the topics read from the beginning as a
`RecordSource` (`verify --kafka BOOTSTRAP --topic-prefix P`).

Every partition of the records, checkpoints and keys topics is assigned by hand (no consumer
group, nothing committed) and read from its first retained offset up to the high watermark
seen at the start. A record's position is its `chain.id`/`chain.seq` headers when present,
else what its own bytes say, so a message produced again with the same key and other bytes
is a second record at one position (the verifier reports it), and one that is gone (deleted,
compacted away, a topic recreated without it) is a gap or a truncated chain. Identical
repeats (a batch retried after an unknown outcome) are collapsed and counted.

From a time (`--since`), the records partitions start at the offsets `offsets_for_times`
gives for it (the messages' timestamps: when they were produced), and only the chains with
records since then are verified, each from its first record read: the window. Their
checkpoints are read whole (a few per thousand records), for the checkpoints' own chain. The
window's records are checked as always (links, gaps, duplicates, checkpoint heads, truncation,
closing), except what needs the records before it: the Merkle roots the checkpoints signed
(they commit to the whole chain) and the window's first link. `window_findings` drops the
one finding that only says the window starts after seq 0, and reports records produced in
the window that claim a seq before its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import ClientErrors, KafkaSettings, describe
from otel_ai_audit.errors import SourceError
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.verify.export_source import (
    ExportSource,
    Item,
    record_position,
    signed_checkpoint,
)
from otel_ai_audit.verify.findings import Finding, Kind, Report
from otel_ai_audit.verify.source import RecordSource

METADATA_TIMEOUT = 10.0
POLL_TIMEOUT = 1.0
READ_TIMEOUT = 120.0
"""Seconds reading one topic may stall (no message) before the source gives up."""


class KafkaSourceError(SourceError):
    """The topics cannot be read: brokers unreachable, a topic missing, access refused."""


@dataclass
class Window:
    """Where each chain's records since a time start (its first record read, in offset
    order), and the records produced since then that claim an earlier seq."""

    starts: dict[str, int]
    earlier: list[tuple[str, int]]


class KafkaSource(ExportSource):
    """The topics' items; `window` when read from a time."""

    def __init__(self, description: str, items: list[Item], window: Window | None) -> None:
        super().__init__(description, [value for kind, value in items if kind == "record"],
                         [value for kind, value in items if kind == "checkpoint"],
                         dict(value for kind, value in items if kind == "key"))
        self.window = window


def read_kafka(settings: KafkaSettings, since_ns: int | None = None) -> KafkaSource:
    """The trail in the topics under `settings.topic_prefix`; with `since_ns` (Unix ns), the
    window of what was produced since then (see the module docstring)."""
    errors = ClientErrors()
    consumer = Consumer({**settings.consumer(), "error_cb": errors})
    since_ms = None if since_ns is None else since_ns // 1_000_000
    try:
        items: list[Item] = []
        for kind in (layout.RECORDS, layout.CHECKPOINTS, layout.KEYS):
            topic = layout.topic(settings.topic_prefix, kind)
            for message in read_topic(consumer, topic, settings.bootstrap_servers, errors,
                                      since_ms=since_ms if kind == layout.RECORDS else None):
                items.append(_item(kind, message))
    finally:
        consumer.close()
    description = f"kafka:{settings.bootstrap_servers}/{settings.topic_prefix}"
    if since_ns is None:
        return KafkaSource(description, items, None)
    window = Window({}, [])
    kept: list[Item] = []
    for kind, value in items:
        if kind == "record":
            chain_id, seq = value[0], value[1]
            if seq < window.starts.setdefault(chain_id, seq):
                window.earlier.append((chain_id, seq))
                continue
        elif kind == "checkpoint" and value.chain_id not in window.starts:
            continue  # a chain with no records since then is not in the window
        kept.append((kind, value))
    return KafkaSource(f"{description} since {rfc3339_from_ns(since_ns)}", kept, window)


def window_findings(report: Report, source: RecordSource) -> None:
    """Read from a time, a chain starts at its first record since then: drop the gap before
    it (the only finding at seq 0 such a chain can have), report each record produced since
    then that claims a seq before it (inserted, as reading the whole topic finds it), and say
    where each chain starts."""
    window = source.window if isinstance(source, KafkaSource) else None
    if window is None:
        return
    report.findings = [finding for finding in report.findings
                       if not (finding.kind is Kind.GAP and finding.seq == 0
                               and window.starts.get(finding.chain_id or "", 0) > 0)]
    for chain_id, seq in window.earlier:
        report.findings.append(Finding(
            chain_id, seq, Kind.INSERTED,
            f"a record produced since the window's start claims seq {seq}, before the chain's "
            f"first record in the window (seq {window.starts[chain_id]})"))
    late = {chain_id: start for chain_id, start in window.starts.items() if start > 0}
    if late:
        report.notices.append(
            f"read from a time: {len(late)} chain(s) verified from a later seq than 0 "
            f"({', '.join(f'{chain} from {start}' for chain, start in sorted(late.items()))})"
            "; the records before are not read, and the checkpoints' Merkle roots, which "
            "commit to them, are not checked")


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
        return "checkpoint", signed_checkpoint(layout.checkpoint_fields(value))
    key_id = (message.key() or b"").decode("utf-8", errors="replace")
    return "key", (key_id, value.decode("utf-8", errors="replace"))


def read_topic(consumer: Consumer, topic: str, bootstrap: str,
               errors: ClientErrors | None = None, since_ms: int | None = None) -> list[Any]:
    """Every message of `topic` up to the high watermarks seen now, from the first retained
    one or the first produced at or after `since_ms` (Unix ms) (`errors`: the consumer's
    `error_cb`, to name the cause of a failure)."""
    found = topic_metadata(consumer, topic, bootstrap, errors)
    partitions = sorted(found.partitions)
    firsts: list[int | None] = [None] * len(partitions)
    if since_ms is not None:
        firsts = [located.offset for located in consumer.offsets_for_times(
            [TopicPartition(topic, partition, since_ms) for partition in partitions],
            timeout=METADATA_TIMEOUT)]
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition, first in zip(partitions, firsts, strict=True):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                   timeout=METADATA_TIMEOUT)
        start = low if first is None else (high if first < 0 else max(first, low))
        if high > start:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, start))
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


def topic_metadata(consumer: Consumer, topic: str, bootstrap: str,
                   errors: ClientErrors | None = None) -> Any:
    """The metadata of `topic`; `KafkaSourceError` in one line if the brokers do not answer or
    have no such topic."""
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
    return found
