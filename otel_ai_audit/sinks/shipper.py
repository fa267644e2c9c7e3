"""Shipping the embedded store to a sink, off the hot path, without losing anything.

The store is the write-ahead spool: the writer persists every record there first. One
`Shipper` per sink (a background thread, or `drain()` in the caller's thread) reads what lies
after that sink's durable cursor (per chain, in the store's `ship_cursors` table), hands it to
the sink in batches, and moves the cursor only after the sink confirmed delivery. Delivery is
at least once; sinks derive document ids from (chain id, seq) so a repeat is a no-op in the
target, which makes it exactly once there.

Nothing is dropped. Items that fail are retried (only those) with exponential backoff and
jitter, until they are delivered or the shipper is stopped; whatever is undelivered then stays
in the store behind the cursor, and the next shipper (the process restarted, or
`otel-ai-audit ship`) carries on from there. An item the target refuses for good (say, an
operator's mapping change conflicts with it) is logged as an error on every retry and counted
in `stats.rejected`; it holds its chain's cursor back, so once the target is fixed it is
delivered with everything after it. Other chains keep shipping meanwhile.

Per chain, records are shipped before the checkpoints that cover them, so a verifier reading
the target mid-flight sees a chain that is behind, never checkpoints over missing records.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from otel_ai_audit.errors import BackendError
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.pipeline import forks
from otel_ai_audit.pipeline.metrics import PipelineMetrics
from otel_ai_audit.store.sqlite import AuditStore, SealedRecord, StoredAnchor, StoreError

logger = logging.getLogger(__name__)

RECORDS = "records"
CHECKPOINTS = "checkpoints"
ANCHORS = "anchors"
"""Cursor kinds: the last delivered record seq, and the last delivered checkpoint index."""

_ROUNDS_PER_CHAIN = 16
"""Batches one chain may ship in a pass before the other chains get their turn."""

Item = TypeVar("Item")


class DeliveryError(BackendError):
    """Some or all items of a batch did not reach the target.

    `failed` holds the positions (in the batch) of the items not delivered, ascending; None
    means none is known to have arrived. `rejected` says the target refused an item as
    invalid: retrying it unchanged cannot succeed until someone fixes the target.
    """

    def __init__(self, message: str, failed: Sequence[int] | None = None, *,
                 rejected: bool = False) -> None:
        super().__init__(message)
        self.failed = failed
        self.rejected = rejected


class Sink(Protocol):
    """Where a shipper delivers. Each `send_*` returns once every item is durably in the
    target (a repeat of an item already there counts as delivered) and raises `DeliveryError`
    otherwise."""

    name: str
    """Stable name of the target, free of secrets: the shipper's cursors are filed under it."""
    kind: str
    """What the target is ("elasticsearch"): the sink attribute of the shipping metrics."""

    def send_records(self, batch: Sequence[SealedRecord]) -> None: ...

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None: ...

    def send_keys(self, keys: Mapping[str, str]) -> None:
        """Public keys (key id to PEM) the checkpoints are signed with."""
        ...

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        """External anchors (`otel_ai_audit.anchor`), for search and alerting beside the
        records; their trust is in the WORM copies, not here."""
        ...

    def close(self) -> None: ...


@dataclass
class ShipperStats:
    """Counters for metrics; only the shipper's thread writes them."""

    shipped_records: int = 0
    shipped_checkpoints: int = 0
    shipped_keys: int = 0
    shipped_anchors: int = 0
    retried: int = 0
    """Items sent again after a failed attempt."""
    failed_attempts: int = 0
    """Sends that did not deliver every item."""
    rejected: int = 0
    """Items the target refused as invalid (each refusal counts; see the module docstring)."""


class Shipper:
    """Delivers one store's records, checkpoints and keys to one sink."""

    def __init__(self, store_path: str, sink: Sink, *, batch_size: int = 10_000,
                 poll_interval: float = 0.5, max_backoff: float = 30.0,
                 create_store: bool = True, metrics: PipelineMetrics | None = None) -> None:
        self.store_path = store_path
        self.sink = sink
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.create_store = create_store
        self.stats = ShipperStats()
        self.metrics = metrics
        """OpenTelemetry counters of shipped, retried and failed records, if given."""
        self._keys_sent: set[str] = set()
        self._failures = 0
        self._rejections: dict[str, int] = {}
        self._held_until: dict[str, float] = {}
        self._reset()
        forks.track(self)

    def _reset(self) -> None:
        """Fresh thread state: at construction and in a forked child (which never ships: the
        parent's shipper delivers the child's chain from the shared store)."""
        self._store: AuditStore | None = None
        self.store_lock = threading.Lock()
        """Held while the store is used, and by `fork()` while it closes the connection."""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._deadline = math.inf
        self._caught_up = False
        """The thread's last pass delivered everything it found."""
        self._closed = False

    # --- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Ship in a background thread until `close()`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="otel-ai-audit-shipper",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what the store holds now (close the writer first), then stop; False if
        something was still undelivered after `timeout` seconds (it stays in the store).
        Idempotent; in a forked child it does nothing (the sink is the parent's)."""
        if self._closed:
            return True
        self._closed = True
        thread = self._thread
        delivered = True
        if thread is not None:
            self._deadline = time.monotonic() + timeout
            self._stopping = True
            self._wake.set()
            thread.join(timeout + 5.0)
            delivered = not thread.is_alive() and self._caught_up
            self._thread = None
        with self.store_lock:
            self.close_store()
        self.sink.close()
        if not delivered:
            logger.warning("otel-ai-audit: shipping to %s stopped with records still "
                           "undelivered; they stay in %s and are shipped by the next shipper "
                           "(or `otel-ai-audit ship`)", self.sink.name, self.store_path)
        return delivered

    def drain(self, timeout: float = math.inf) -> bool:
        """Ship in the calling thread until everything in the store is delivered; False on
        timeout. For `otel-ai-audit ship --once`, tests and benchmarks (not with `start()`)."""
        self._deadline = time.monotonic() + timeout
        try:
            while not self._step():
                if self._expired():
                    return False
            return True
        finally:
            self._deadline = math.inf

    # --- shipping --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # Only a pass begun after close() was called has seen the writer's last records.
            stopping = self._stopping
            self._caught_up = self._step()
            if stopping and (self._caught_up or self._expired()):
                return
            if self._caught_up:
                self._pause(self.poll_interval)

    def _step(self) -> bool:
        """One pass; if it left work undone without progress, wait a poll interval."""
        before = self.stats.shipped_records + self.stats.shipped_checkpoints
        try:
            caught_up = self._pass()
        except Exception:  # noqa: BLE001 - the shipper must outlive any one failure
            logger.exception("otel-ai-audit: shipping to %s failed; retrying", self.sink.name)
            self._backoff()
            return False
        if not caught_up and before == self.stats.shipped_records + self.stats.shipped_checkpoints:
            self._pause(self.poll_interval)
        return caught_up

    def _pass(self) -> bool:
        """Ship everything the store holds now; True if all of it was delivered."""
        try:
            with self.store_lock:
                store = self._connect()
                keys = store.public_keys()
                chains = store.unshipped_chains(self.sink.name)
        except StoreError as error:
            logger.error("otel-ai-audit: shipper cannot read %s: %s", self.store_path, error)
            self._backoff()
            return False
        caught_up = True
        fresh = [(key_id, pem) for key_id, pem in keys.items() if key_id not in self._keys_sent]
        if fresh and self._ready("keys"):
            caught_up = self._deliver(
                "keys", "keys", lambda batch: self.sink.send_keys(dict(batch)), fresh,
                lambda done: self._keys_sent.update(key_id for key_id, _ in done))
        elif fresh:
            caught_up = False
        caught_up = self._ship_anchors() and caught_up
        for chain_id in chains:
            if self._expired():
                return False
            if self._ready(chain_id):
                caught_up = self._ship_chain(chain_id) and caught_up
            else:
                caught_up = False
        return caught_up

    def _ship_anchors(self) -> bool:
        """The anchors built since this sink's anchor cursor, in order."""
        with self.store_lock:
            store = self._connect()
            anchors = store.anchors(after=store.ship_cursor(self.sink.name, "", ANCHORS))
        if not anchors:
            return True
        if not self._ready(ANCHORS):
            return False
        return self._deliver(ANCHORS, ANCHORS, self.sink.send_anchors, anchors,
                             lambda done: self._advance("", ANCHORS, done[-1].seq))

    def _ship_chain(self, chain_id: str) -> bool:
        name = self.sink.name
        with self.store_lock:
            store = self._connect()
            cursor = store.ship_cursor(name, chain_id, RECORDS)
            # Read before the records: the writer commits a checkpoint with the records it
            # covers, so every checkpoint read now covers records the loop below will ship.
            checkpoints = store.checkpoints(chain_id, store.ship_cursor(name, chain_id,
                                                                        CHECKPOINTS))
        covered = checkpoints[-1].size - 1 if checkpoints else -1
        caught_up = True
        rounds = 0
        while True:
            with self.store_lock:
                batch = self._connect().records_after(chain_id, cursor, self.batch_size)
            if batch:
                if not self._deliver(chain_id, RECORDS, self.sink.send_records, batch,
                                     lambda done: self._advance(chain_id, RECORDS,
                                                                done[-1].seq)):
                    return False
                cursor = batch[-1].seq
                rounds += 1
            if len(batch) < self.batch_size:
                break
            if cursor >= covered and rounds >= _ROUNDS_PER_CHAIN:
                caught_up = False  # give the other chains a turn; the next pass goes on
                break
        if checkpoints and not self._deliver(
                chain_id, CHECKPOINTS, self.sink.send_checkpoints, checkpoints,
                lambda done: self._advance(chain_id, CHECKPOINTS, done[-1].index)):
            return False
        return caught_up

    def _deliver(self, key: str, kind: str, send: Callable[[list[Item]], None],
                 items: list[Item], advance: Callable[[list[Item]], None]) -> bool:
        """Send `items`, retrying only the failed ones, and `advance` past each delivered
        prefix. False when the retries stop: an item was rejected (`key`, its chain, waits out
        a backoff while the others ship) or the deadline passed."""
        pending = list(range(len(items)))
        while True:
            try:
                send([items[i] for i in pending])
            except DeliveryError as error:
                failed = (pending if error.failed is None
                          else [pending[i] for i in error.failed])
                rejected, message = error.rejected, str(error)
            except Exception as error:  # noqa: BLE001 - a sink's own bug must not lose data
                failed, rejected, message = pending, False, repr(error)
            else:
                advance(items)
                self._count(kind, len(pending))
                resumed = self._rejections.pop(key, 0) + self._failures
                if resumed:
                    logger.warning("otel-ai-audit: delivery to %s resumed after %d failed "
                                   "attempt(s)", self.sink.name, resumed)
                self._failures = 0
                self._held_until.pop(key, None)
                return True
            self._count(kind, len(pending) - len(failed))
            if failed and failed[0] > 0:
                advance(items[:failed[0]])
            self.stats.failed_attempts += 1
            if self.metrics is not None and kind == RECORDS:
                self.metrics.failed(self.sink.kind, len(failed))
            if rejected:
                self.stats.rejected += 1
                count = self._rejections[key] = self._rejections.get(key, 0) + 1
                self._held_until[key] = time.monotonic() + self._delay(count)
                logger.error("otel-ai-audit: %s refused audit %s of %s: %s. They stay in %s, "
                             "undelivered, and what follows waits behind them: fix the target "
                             "(mapping, template) and they are delivered on a later retry",
                             self.sink.name, kind, key, message, self.store_path)
                return False
            logger.warning("otel-ai-audit: delivering %d %s to %s failed: %s (retrying)",
                           len(failed), kind, self.sink.name, message)
            if not self._backoff():
                return False
            self.stats.retried += len(failed)
            if self.metrics is not None and kind == RECORDS:
                self.metrics.retried(self.sink.kind, len(failed))
            pending = failed

    def _count(self, kind: str, delivered: int) -> None:
        field = f"shipped_{kind}"
        setattr(self.stats, field, getattr(self.stats, field) + delivered)
        if self.metrics is not None and kind == RECORDS and delivered:
            self.metrics.shipped(self.sink.kind, delivered)

    def _ready(self, key: str) -> bool:
        """Not waiting out the backoff of a rejection."""
        return self._held_until.get(key, 0.0) <= time.monotonic()

    def _advance(self, chain_id: str, kind: str, seq: int) -> None:
        with self.store_lock:
            self._connect().set_ship_cursor(self.sink.name, chain_id, kind, seq)

    # --- waiting ---------------------------------------------------------------------------

    def _delay(self, failures: int) -> float:
        """Exponential backoff with jitter: 0.25 s doubling up to `max_backoff`."""
        delay = min(self.max_backoff, 0.25 * 2 ** min(failures, 30))
        return random.uniform(delay / 2, delay)

    def _backoff(self) -> bool:
        """Wait before a retry; False if the deadline passed (stop retrying)."""
        self._failures += 1
        self._pause(self._delay(self._failures))
        return not self._expired()

    def _pause(self, seconds: float) -> None:
        """Sleep, cut short by the deadline or by `close()`."""
        seconds = min(seconds, max(self._deadline - time.monotonic(), 0.0))
        if self._wake.wait(seconds):
            self._wake.clear()

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    # --- store connection ------------------------------------------------------------------

    def _connect(self) -> AuditStore:
        """The open store (hold `store_lock`); opened again after a fork closed it."""
        if self._store is None:
            self._store = AuditStore(self.store_path, create=self.create_store)
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def before_fork(self) -> None:
        return None

    def after_fork_in_child(self) -> None:
        """A forked child never ships: the parent ships the child's chain too."""
        self._reset()
        self._closed = True
