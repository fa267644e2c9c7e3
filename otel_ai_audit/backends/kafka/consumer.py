"""From Kafka onwards: a consumer group that indexes the trail's topics into the other sinks
(`otel-ai-audit ship --from-kafka`, docs/kafka.md).

Each consumer of the group reads its share of the partitions of `<prefix>.records`,
`.checkpoints` and `.keys`, in batches of up to `batch_size` messages, and hands every batch
to each sink with the sinks' own code (Elasticsearch's document ids make a repeat a no-op, so
delivery there is exactly once; Splunk's is at least once, repeats identical). Offsets are
committed by hand (`enable.auto.commit=false`), synchronously, only once every sink took the
whole batch. A destination that is down or refuses is retried, with backoff, without fetching
further: nothing is skipped, and whatever was fetched but not delivered when the consumer
stops (a signal, a crash, SIGKILL) is read again by the group's next consumer of that
partition. A batch's keys go first, then its records, then its checkpoints.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from otel_ai_audit.backends.kafka import layout
from otel_ai_audit.backends.kafka.client import ClientErrors, KafkaSettings, describe
from otel_ai_audit.backends.kafka.source import METADATA_TIMEOUT, topic_metadata
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.sinks.shipper import DeliveryError, Sink
from otel_ai_audit.verify.export_source import record_position, signed_checkpoint

logger = logging.getLogger(__name__)

KINDS = (layout.RECORDS, layout.CHECKPOINTS, layout.KEYS)
"""The topics a consumer reads (anchors are trusted from their WORM copies, not indexed
from Kafka)."""
Item = TypeVar("Item")

POLL_TIMEOUT = 0.2
"""Seconds `consume` waits to fill a batch: at a trickle, a message waits at most this long."""
MAX_BACKOFF = 30.0


@dataclass
class ForwarderStats:
    """Counters of what reached every sink, and of failed attempts."""

    records: int = 0
    checkpoints: int = 0
    keys: int = 0
    failed_attempts: int = 0
    batches: int = 0
    first_batch_at: float = 0.0
    """Unix time the first batch was taken (0 before), and the last one committed."""
    last_commit_at: float = 0.0


@dataclass
class _Batch:
    """One consumed batch, by kind, and the offsets to commit once it is delivered."""

    records: list[SealedRecord]
    checkpoints: list[SignedCheckpoint]
    keys: dict[str, str]
    offsets: list[TopicPartition]


class KafkaForwarder:
    """One member of the consumer group `settings.group`, delivering to `sinks`."""

    def __init__(self, settings: KafkaSettings, sinks: Sequence[Sink], *,
                 max_backoff: float = MAX_BACKOFF) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.max_backoff = max_backoff
        self.name = f"kafka:{settings.bootstrap_servers}/{settings.topic_prefix}"
        self.stats = ForwarderStats()
        self.stop = threading.Event()
        """Set it (a signal handler does) to stop after the batch in hand: delivered and
        committed, or left uncommitted if its delivery is still failing."""
        self._errors = ClientErrors()
        self._consumer = Consumer({**settings.group_consumer(), "error_cb": self._errors})
        self._topics = [layout.topic(settings.topic_prefix, kind) for kind in KINDS]
        self._kinds = dict(zip(self._topics, KINDS, strict=True))

    def install(self) -> None:
        """Fail fast, in one line (`KafkaSourceError`), on unreachable brokers or missing
        topics; then join the group."""
        for topic in self._topics:
            topic_metadata(self._consumer, topic, self.settings.bootstrap_servers, self._errors)
        self._consumer.subscribe(self._topics)

    def run(self, *, once: bool = False, timeout: float = float("inf")) -> bool:
        """Consume, deliver and commit until `stop` is set, or with `once` until the
        partitions this consumer was assigned are read to their end; False if `once` ran out
        of `timeout` seconds first, or the last batch is left undelivered."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            if time.monotonic() >= deadline:
                return False
            messages = self._consumer.consume(self.settings.batch_size, POLL_TIMEOUT)
            batch = self._batch(messages)
            if batch is None:
                if once and self._caught_up():
                    return True
                continue
            self.stats.first_batch_at = self.stats.first_batch_at or time.time()
            if not self._deliver(batch, deadline):
                return False
            self._commit(batch.offsets)
            self.stats.last_commit_at = time.time()
        return True

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once) and close the
        sinks; nothing is committed here."""
        self._consumer.close()
        for sink in self.sinks:
            sink.close()

    # --- one batch -------------------------------------------------------------------------

    def _batch(self, messages: list[Any]) -> _Batch | None:
        batch = _Batch([], [], {}, [])
        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("otel-ai-audit: consuming from %s: %s", self.name,
                                   describe(error))
                continue
            topic, value = message.topic(), message.value() or b""
            ends[(topic, message.partition())] = message.offset() + 1
            kind = self._kinds.get(topic)
            if kind == layout.RECORDS:
                batch.records.append(_record(message, value))
            elif kind == layout.CHECKPOINTS:
                batch.checkpoints.append(signed_checkpoint(layout.checkpoint_fields(value)))
            elif kind == layout.KEYS:
                key_id = (message.key() or b"").decode("utf-8", errors="replace")
                batch.keys[key_id] = value.decode("utf-8", errors="replace")
        if not ends:
            return None
        batch.offsets = [TopicPartition(topic, partition, offset)
                         for (topic, partition), offset in ends.items()]
        return batch

    def _deliver(self, batch: _Batch, deadline: float) -> bool:
        """Every sink takes the whole batch (keys, records, checkpoints), records and
        checkpoints one chain at a time, as a shipper sends them (a sink may rely on it, as
        Elasticsearch's does to look repeats up); False if stopped or out of time first."""
        records = _by_chain(batch.records, lambda record: record.chain_id)
        checkpoints = _by_chain(batch.checkpoints, lambda signed: signed.chain_id)
        for sink in self.sinks:
            sends: list[tuple[str, Callable[[list[Any]], None], list[Any]]] = [
                (layout.KEYS, _keys_to(sink), list(batch.keys.items()))]
            sends += [(layout.RECORDS, sink.send_records, part) for part in records]
            sends += [(layout.CHECKPOINTS, sink.send_checkpoints, part) for part in checkpoints]
            for kind, send, items in sends:
                if items and not self._send(sink, kind, send, items, deadline):
                    return False
        self.stats.records += len(batch.records)
        self.stats.checkpoints += len(batch.checkpoints)
        self.stats.keys += len(batch.keys)
        self.stats.batches += 1
        return True

    def _send(self, sink: Sink, kind: str, send: Callable[[list[Any]], None], items: list[Any],
              deadline: float) -> bool:
        """Send `items`, retrying only the failed ones, with backoff, until all are taken."""
        pending = items
        failures = 0
        while True:
            try:
                send(pending)
                if failures:
                    logger.warning("otel-ai-audit: delivery to %s resumed after %d failed "
                                   "attempt(s)", sink.name, failures)
                return True
            except DeliveryError as error:
                if error.failed is not None:
                    pending = [pending[i] for i in error.failed]
                problem = str(error) + (" (refused: fix the target; retrying)" if error.rejected
                                        else " (retrying)")
            except Exception as error:  # noqa: BLE001 - a sink's own bug must not lose data
                problem = repr(error)
            failures += 1
            self.stats.failed_attempts += 1
            logger.warning("otel-ai-audit: delivering %d %s from %s to %s failed: %s; the "
                           "batch stays uncommitted in Kafka", len(pending), kind, self.name,
                           sink.name, problem)
            delay = min(self.max_backoff, 0.25 * 2 ** min(failures, 30))
            wait = min(random.uniform(delay / 2, delay), max(deadline - time.monotonic(), 0.0))
            if self.stop.wait(wait) or time.monotonic() >= deadline:
                return False

    def _commit(self, offsets: list[TopicPartition]) -> None:
        """Commit synchronously. A failed commit (the group rebalanced meanwhile) loses
        nothing: the partition's next owner reads the batch again, and the sinks take the
        repeat as a no-op (Elasticsearch) or an identical copy (Splunk)."""
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            logger.warning("otel-ai-audit: committing offsets to %s failed: %s; the batch "
                           "will be delivered again", self.name, describe(error.args[0]))

    def _caught_up(self) -> bool:
        """Every assigned partition is read to its high watermark (False before the group
        assigned any, or while the brokers cannot say)."""
        assigned = self._consumer.assignment()
        if not assigned:
            return False
        try:
            for partition in self._consumer.position(assigned):
                low, high = self._consumer.get_watermark_offsets(
                    partition, timeout=METADATA_TIMEOUT, cached=False)
                offset = partition.offset
                if offset < 0:  # nothing fetched yet: it starts at the committed offset
                    (committed,) = self._consumer.committed([partition],
                                                            timeout=METADATA_TIMEOUT)
                    offset = committed.offset if committed.offset >= 0 else low
                if offset < high:
                    return False
        except KafkaException as error:  # e.g. the group coordinator is still loading
            logger.debug("otel-ai-audit: no offsets from %s yet: %s", self.name, error)
            return False
        return True


def _keys_to(sink: Sink) -> Callable[[list[tuple[str, str]]], None]:
    """`send_keys` taking (key id, PEM) pairs, so that failed ones can be picked out."""
    return lambda pairs: sink.send_keys(dict(pairs))


def _by_chain(items: list[Item], chain: Callable[[Item], str]) -> list[list[Item]]:
    """`items` split by chain, each chain's in their order."""
    chains: dict[str, list[Item]] = {}
    for item in items:
        chains.setdefault(chain(item), []).append(item)
    return list(chains.values())


def _record(message: Any, value: bytes) -> SealedRecord:
    """A record message as the sinks take it: its stored position (headers, else its own
    bytes), and its time and type from the headers (the sinks' fallbacks for bytes that are
    not a record)."""
    headers = message.headers()
    chain_id = layout.header_text(headers, "chain.id")
    if chain_id is None and message.key() is not None:
        chain_id = message.key().decode("utf-8", errors="replace")
    chain, seq = record_position(value, chain_id, layout.header_text(headers, "chain.seq"))
    return SealedRecord(chain, seq, layout.header_text(headers, "event.time") or "",
                        layout.header_text(headers, "event.type") or "", "", value)
