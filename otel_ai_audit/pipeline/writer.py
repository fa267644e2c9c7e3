"""Sealing and persisting records off the hot path.

`AuditWriter.submit` is all the calling thread pays: take a lock, stamp a monotonic time,
append to a queue. A background thread owns the process's chain: it samples, canonicalises,
hashes, links and persists records in batches, signs a checkpoint every N records or T seconds,
and a final `closed` checkpoint at shutdown. After `fork()` the child starts a chain of its own
(the parent's queue is not the child's to write). No SQLite connection crosses a fork: the
writer closes it just before and reopens it on its next write. SQLite keeps the lock state of
every open file in process memory, which a child inherits while it does not inherit the
parent's POSIX locks; a child writing the same store through that state lost whole commits.

Nothing is dropped silently. A full queue blocks the submitting thread (`queue_full="block"`,
the default) or, with `"spill"`, sends the caller's events to a spill file that the writer
drains back in order (see `spill`). A store that fails is retried with backoff while records
wait. What is lost anyway (an event that cannot be built or sealed, a spill disk that is full)
is logged and counted in the `failed` counter of the next signed checkpoint; a process killed
before persisting shows in verification as a chain that was never closed.

Durability (`submit(..., durability=)`): `async` returns at once (a process killed before the
next write loses what is queued); `process` returns once the entry's records are in the chain's
journal (`otel_ai_audit.store.journal`: survives SIGKILL, not a power loss); `fsync` once that
append is fsynced too. A durable caller seals, in its own thread and under the batch lock,
everything queued by then (its entry included) and appends it to the journal in one write:
callers waiting at the same time share that append (group commit), and a lone caller pays no
hand-over to the writer thread, whose wake-ups cost more CPU than the append. The writer thread
commits what the journal holds to the store with its next batch (within `flush_interval`) and
empties it; a journal left by a killed process is committed by the next writer that opens the
store (or `otel-ai-audit recover`). Without a usable journal, the caller commits to the store
itself. Until the chain is open, and while the store fails, durable callers leave the work to
the writer thread (which retries) and wait. Whatever the level, the
first entry of a chain waits until the chain's `chain_open` record is committed, so a process
that made a decision always has a chain a verifier can see. A wait that outlasts
`durable_timeout` (a store that keeps failing) returns anyway, logged and counted as
`unconfirmed` in the signed checkpoints: the model is never held hostage by the trail.

Sampling (see `sampling`): a sampled-out decision goes to the store's holding table in the same
transaction as the records around it, counted per model and risk level in the checkpoints
(`counters.sampled_out`). A dispute promotes its held decision into the chain just before the
dispute record, which says whether its decision is on the record (`decision_on_record`).

Why one module: the writer thread, the durable callers' group commit, the spill drain and the
fork handling share one lock, one queue and one chain, whose invariants (order, nothing lost
in silence, one chain per process) are reasoned about together; split, each part would reach
into the others' private state.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from otel_ai_audit.integrity.chain import Chain, new_chain_id
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline import forks
from otel_ai_audit.pipeline.sampling import SamplingPolicy, counter_key, promoted_event
from otel_ai_audit.pipeline.spill import SpillFile
from otel_ai_audit.record.canonical import CanonicalizationError, canonical_json, to_json_data
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.journal import Journal, Unit, journal_path, recover
from otel_ai_audit.store.sqlite import AuditStore, HeldRecord, SealedRecord, StoreError

logger = logging.getLogger(__name__)

CountersProvider = Callable[[], dict[str, Any]]
Durability = Literal["async", "process", "fsync"]
LossCause = Literal["instrumentation", "build", "serialisation", "spill"]
"""Why a decision never reached the chain: the instrumentation failed around the model call,
its records could not be built or serialised, or a full queue could not spill to disk."""
DURABILITY_LEVELS: tuple[Durability, ...] = ("async", "process", "fsync")
QUEUE_FULL_POLICIES = ("block", "spill")
DURABLE_TIMEOUT = 10.0
"""Seconds a durable submit waits for its commit before returning unconfirmed."""
FORK_WAIT = 2.0
"""Seconds `fork()` waits at most for the parent's `chain_fork` record to be committed."""
HOLD_PURGE_INTERVAL = 60.0
"""Seconds between purges of expired held decisions (and one at close)."""
_DISPUTE = EventType.DISPUTE.value
_Result = TypeVar("_Result")


class DeferredEvents(Protocol):
    """Events whose expensive parts (hashing inputs, one record per batch row) are built on
    the writer thread, not on the thread that made the decision."""

    def build(self) -> list[dict[str, Any]]: ...


class SpannedEvents(DeferredEvents, Protocol):
    """Deferred events with a span (`otel_ai_audit.processor.AuditSpan`): a durable caller
    builds the records and leaves the span to the writer thread."""

    def build_records(self) -> list[dict[str, Any]]: ...

    def emit(self) -> None: ...


class WriterStats(NamedTuple):
    """What the writer did in this chain so far (read by `otel_ai_audit.pipeline.metrics`)."""

    queued: int
    """Entries accepted (an event, or a model call however many rows it has)."""
    spilled: int
    """Of those, entries that went through the spill file."""
    persisted: int
    """Records written to the chain."""
    sampled_out: dict[str, int]
    """Decisions held instead of chained, by `<model>|<risk>`."""
    failed: int
    """Events lost before sealing (also in the signed checkpoints)."""


class _ChainOpen:
    """Queued marker: the first record of the chain, sequenced before the first event."""

    __slots__ = ()


class _KeyRotation:
    """Queued marker: rotate to `key` at this point of the chain."""

    __slots__ = ("key",)

    def __init__(self, key: SigningKey) -> None:
        self.key = key


class _LeftToWriter(Exception):
    """A caller's own commit met a failing store: the writer thread takes over (and retries)."""


class _Built:
    """Events built already: by a caller that spilled, or read back from the spill file."""

    __slots__ = ("events",)

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def build(self) -> list[dict[str, Any]]:
        return self.events


class AuditWriter:
    """Owns this process's chain and writes it to an `AuditStore`."""

    def __init__(
        self,
        store_path: str,
        key: SigningKey,
        *,
        service_name: str = "unknown_service",
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 5.0,
        flush_interval: float = 0.1,
        max_queue: int = 100_000,
        queue_full: str = "block",
        batch_size: int = 2048,
        counters: CountersProvider | None = None,
        policy_hash: str = "",
        sampling: SamplingPolicy | None = None,
        durable_timeout: float = DURABLE_TIMEOUT,
    ) -> None:
        if queue_full not in QUEUE_FULL_POLICIES:
            raise ValueError(f"queue-full policy must be one of {QUEUE_FULL_POLICIES}, "
                             f"not {queue_full!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self.store_path = store_path
        self.service_name = service_name
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.queue_full = queue_full
        self.batch_size = batch_size
        self.counters_provider = counters
        self.policy_hash = policy_hash
        self.sampling = sampling
        self.durable_timeout = durable_timeout
        self.hold_purge_interval = HOLD_PURGE_INTERVAL
        self._key = key
        self._parent_chain_id: str | None = None
        self._reset()
        forks.track(self)

    def _reset(self, chain_id: str | None = None) -> None:
        """Fresh state: at construction and in a forked child (whose chain id its parent
        chose, when the parent recorded the fork)."""
        self._lock = threading.Lock()
        self._batch_lock = threading.Lock()
        """Held while a batch is taken from the queue, sealed and written: by the writer thread,
        or by a durable caller committing what is queued (see `_commit`)."""
        self._not_full = threading.Condition(self._lock)
        self._persisted_cv = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._pending: deque[tuple[Any, int]] = deque()
        self._spill: SpillFile | None = None
        """Set while entries wait on disk: every new entry goes there too, until drained."""
        self._last_logged = 0
        self._persisted = 0
        """Entries committed to the store (what `flush()` waits for)."""
        self._acknowledged = 0
        """Entries durable: committed to the store, or appended to the journal."""
        self._journal: Journal | None = None
        self._journal_usable = True
        self._journaled = (0, 0, 0, 0)
        """How much of `_unwritten`, `_held`, `_released`, `_checkpoints` is in the journal."""
        self._journal_synced = False
        """An `fsync` caller's append is in the journal: the commit that empties it fsyncs."""
        self._spans: list[SpannedEvents] = []
        """Spans of records durable callers built, for the writer thread to emit."""
        self._sync_requested = False
        """A waiting caller asked for `fsync`: the next commit is fsynced."""
        self.unconfirmed = 0
        """Durable submits that returned before their commit was confirmed (timeout)."""
        self._thread: threading.Thread | None = None
        self.store_lock = threading.Lock()
        """Held while the store is used, and by `fork()` while it closes the connection."""
        self._store: AuditStore | None = None
        self._registered_key = ""
        self._stopping = False
        self._closed = False
        self.chain = Chain(chain_id)
        self._store_failing = False
        self._chain_opened = threading.Event()
        """Set once the chain's chain_open record is committed."""
        self._child_chain_id: str | None = None
        self.queued = 0
        self.spilled = 0
        self.persisted_records = 0
        self.sampled_out: dict[str, int] = {}
        self.failed = 0
        self.failed_by_cause: dict[str, int] = {}
        self.late = 0
        self.store_errors = 0
        # Written by the next `_persist`, in one transaction: records sealed, decisions held
        # and promoted, and the number of queue entries they complete.
        self._unwritten: list[SealedRecord] = []
        self._held: list[HeldRecord] = []
        self._released: list[str] = []
        self._checkpoints: list[SignedCheckpoint] = []
        self._processed = 0
        self._signed_counters: dict[str, Any] | None = None
        self._last_checkpoint_at = time.monotonic()
        self._last_purge = time.monotonic()

    @property
    def key(self) -> SigningKey:
        return self._key

    def stats(self) -> WriterStats:
        return WriterStats(self.queued, self.spilled, self.persisted_records,
                           self.sampled_out.copy(), self.failed)

    # --- hot path --------------------------------------------------------------------------

    def submit(self, event: dict[str, Any] | DeferredEvents,
               durability: Durability = "async") -> None:
        """Queue an event (or a deferred batch of them) for sealing, and with `process` or
        `fsync` durability wait until it is committed (see the module docstring). With the
        `block` policy, also blocks while the queue is full; with `spill`, never for room."""
        ticket, opened = self._enqueue(event, durability == "fsync")
        if not ticket or (durability == "async" and not opened):
            return
        deadline = time.monotonic() + self.durable_timeout
        if opened or not self._commit(ticket, deadline):
            self._wait_persisted(ticket, max(deadline - time.monotonic(), 0.0))

    def _commit(self, ticket: int, deadline: float) -> bool:
        """Write what is queued, entry `ticket` included, in the calling thread; whether it is
        committed. False leaves it to the writer thread: the chain is not open yet, entries
        wait in the spill file, the store fails, or the batch lock stays busy to `deadline`."""
        if self._store_failing or self._spill is not None or not self._chain_opened.is_set():
            return False
        if not self._batch_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        try:
            if self._acknowledged < ticket and not self._store_failing:
                self._write_queue(retry=False)
        except Exception:  # noqa: BLE001 - the trail never raises into the model's caller
            logger.exception("otel-ai-audit: committing queued audit entries failed")
            return False
        finally:
            self._batch_lock.release()
        return self._acknowledged >= ticket

    def rotate_key(self, key: SigningKey) -> None:
        """Switch to `key`; the rotation is recorded in the chain and signed by the old key."""
        self._enqueue(_KeyRotation(key), False)

    def _enqueue(self, item: dict[str, Any] | DeferredEvents | _KeyRotation,
                 sync: bool) -> tuple[int, bool]:
        """Queue `item`; its ticket (the `queued` count it completes; 0 if it was not queued)
        and whether it opened the chain."""
        with self._lock:
            opened = self._thread is None
            if sync:
                self._sync_requested = True
            if not self._spills(item):
                return (self.queued if self._append(item) else 0), opened
        return self._spill_entry(item), opened  # type: ignore[arg-type]

    def _wait_persisted(self, ticket: int, timeout: float | None = None) -> bool:
        """Wake the writer and wait until entry `ticket` is committed, or `timeout` (default
        `durable_timeout`); whether it was."""
        self._wake.set()
        timeout = self.durable_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._persisted_cv:
            while self._persisted < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._persisted_cv.wait(remaining)
            else:
                return True
        with self._lock:
            self.unconfirmed += 1
        logger.error("otel-ai-audit: a decision waited %.0fs for its commit to %s and was "
                     "returned unconfirmed (%d so far); it stays queued, and the signed "
                     "checkpoints count it", timeout, self.store_path,
                     self.unconfirmed)
        return False

    def _spills(self, item: object) -> bool:
        """Does `item` go to the spill file? (Hold `_lock`.) Once an entry is spilled, all
        later ones are too until the writer has drained the file, so order holds. A key
        rotation never is: a private key is not written to disk."""
        return (self.queue_full == "spill" and not self._closed
                and not isinstance(item, _KeyRotation)
                and (self._spill is not None or len(self._pending) >= self.max_queue))

    def _append(self, item: dict[str, Any] | DeferredEvents | _KeyRotation) -> bool:
        """Queue `item` in memory (hold `_lock`), waiting while the queue is full or entries
        wait in the spill file (only a key rotation can meet the latter); False if the chain
        was closed meanwhile."""
        while ((len(self._pending) >= self.max_queue or self._spill is not None)
               and not self._stopping):
            self._not_full.wait(0.5)
        if self._closed:
            self.late += 1
            logger.error("otel-ai-audit: event submitted after the audit chain was closed; "
                         "it is not recorded (late events so far: %d)", self.late)
            return False
        logged = self._stamp()
        if self._thread is None:
            self._pending.append((_ChainOpen(), logged))
            self._start_thread()
        self._pending.append((item, logged))
        self.queued += 1
        if len(self._pending) >= self.batch_size:
            self._wake.set()
        return True

    def _spill_entry(self, item: dict[str, Any] | DeferredEvents) -> int:
        """Build `item`'s events on the caller's thread and append them to the spill file (or
        to the queue, if the writer drained the file and made room meanwhile); its ticket."""
        events = to_json_data(self._expand(item))
        if not events:
            return 0
        with self._lock:
            if self._closed or (self._spill is None and len(self._pending) < self.max_queue):
                return self.queued if self._append(_Built(events)) else 0
            logged = self._stamp()
            try:
                if self._spill is None:
                    self._spill = SpillFile(f"{self.store_path}.{self.chain.chain_id}.spill")
                self._spill.append(logged, events)
            except (OSError, ValueError) as error:
                self.failed += len(events)
                self.failed_by_cause["spill"] = self.failed_by_cause.get("spill", 0) + len(events)
                logger.error("otel-ai-audit: the queue is full and %d audit events could not be "
                             "spilled to disk (%s); they are lost and counted as failed in the "
                             "next checkpoint", len(events), error)
                return 0
            self.queued += 1
            self.spilled += 1
            return self.queued

    def _stamp(self) -> int:
        """The entry's `logged` time, never before the previous entry's (hold `_lock`)."""
        now = time.time_ns()
        if now < self._last_logged:
            now = self._last_logged
        self._last_logged = now
        return now

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-ai-audit-writer",
                                        daemon=True)
        self._thread.start()

    # --- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is persisted; False on timeout."""
        with self._lock:
            target = self.queued
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._persisted_cv:
            while self._persisted < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._persisted_cv.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Persist everything, sign the closing checkpoint, stop. Idempotent."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            self._stopping = True
            thread = self._thread
            self._not_full.notify_all()
        if thread is None:
            return True  # nothing was ever recorded: no chain was opened
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            logger.critical("otel-ai-audit: could not persist the audit chain %s within %.0fs; "
                            "it stays open and verification will report it",
                            self.chain.chain_id, timeout)
            return False
        return True

    # --- background thread -----------------------------------------------------------------

    def _run(self) -> None:
        if not self._open_store():
            return
        try:
            while True:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                with self._batch_lock:
                    self._emit_spans()
                    stopping = self._write_queue(retry=True)
                    self._drain_spill()
                    self._purge_expired_holds(now=stopping)
                    if stopping:
                        with self._lock:
                            done = not self._pending and self._spill is None
                        if done:
                            self._persist(self._checkpoint(closed=True))
                            self._remove_journal()
                            return
        finally:
            with self.store_lock:
                self.close_store()

    def _write_queue(self, *, retry: bool) -> bool:
        """Seal and write everything queued (hold `_batch_lock`); whether the chain is
        closing. Without `retry`, a failing store leaves what was sealed for the writer thread."""
        with self._lock:
            batch, self._pending = self._pending, deque()
            stopping = self._stopping
            sync, self._sync_requested = self._sync_requested, False
            self._not_full.notify_all()
        self._write_batch(batch, sync, retry=retry)
        return stopping

    def _open_store(self) -> bool:
        """Open the store, retrying with backoff, and recover the journals killed processes
        left; False if the store was still unusable at close."""
        delay = 0.1
        while True:
            try:
                with self.store_lock:
                    recover(self._connect(), self.store_path)
                return True
            except StoreError as error:
                self.store_errors += 1
                logger.error("otel-ai-audit: cannot open audit store: %s (retrying)", error)
                if self._stopping:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _connect(self) -> AuditStore:
        """The open store, with the signing key's public half in it; hold `store_lock`.

        Opens the store if no connection is open (at start, and after a fork closed it), and
        registers the current key before anything it signs is written (after a rotation too).
        """
        if self._store is None:
            self._store = AuditStore(self.store_path)
            self._registered_key = ""
        if self._registered_key != self._key.key_id:
            self._store.put_public_key(self._key.key_id, self._key.public_pem)
            self._registered_key = self._key.key_id
        return self._store

    def close_store(self) -> None:
        """Close the connection (hold `store_lock`); the next write reopens it."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _use_store(self, action: Callable[[AuditStore], _Result], what: str, *,
                   retry: bool = True) -> _Result:
        """`action` on the open store, retried with backoff (up to 5 s) while the store fails:
        records wait in memory meanwhile, an audit trail does not give up on them. The cause is
        logged once when the failure starts (and again only if it changes), and the recovery
        once when it ends. Without `retry` (a caller's own commit), the first failure raises
        `_LeftToWriter`."""
        delay = 0.05
        failing_since: float | None = None
        last_error = ""
        while True:
            try:
                with self.store_lock:
                    result = action(self._connect())
            except StoreError as error:
                self.store_errors += 1
                already_failing, self._store_failing = self._store_failing, True
                if not retry:
                    if not already_failing:
                        logger.error("otel-ai-audit: %s failed: %s; left to the writer thread, "
                                     "which retries", what, error)
                    raise _LeftToWriter from error
                if str(error) != last_error:
                    with self._lock:
                        waiting, policy = len(self._pending), self.queue_full
                    logger.error(
                        "otel-ai-audit: %s failed: %s; %d entries waiting in memory, retried "
                        "every %.0f s at most; meanwhile a full queue %s", what, error, waiting,
                        5.0, "blocks the callers" if policy == "block" else "spills to disk")
                    last_error = str(error)
                failing_since = failing_since or time.monotonic()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing_since is not None:
                logger.warning("otel-ai-audit: %s succeeded again after %.0f s", what,
                               time.monotonic() - failing_since)
            self._store_failing = False
            return result

    def _chain_open_event(self) -> dict[str, Any]:
        return new_event(
            EventType.CHAIN_OPEN,
            process={"pid": os.getpid(), "host": socket.gethostname()},
            service={"name": self.service_name},
            parent_chain_id=self._parent_chain_id,
            key_id=self._key.key_id,
            policy_hash=self.policy_hash,
        )

    def _write_batch(self, batch: Iterable[tuple[Any, int]], sync: bool = False, *,
                     retry: bool = True) -> None:
        """Seal `batch` and commit it (fsynced if `sync`: a caller waits for `fsync`)."""
        for item, logged in batch:
            if isinstance(item, _ChainOpen):
                self._seal(self._chain_open_event(), logged)
                continue  # the chain's own record, not a submitted entry
            if isinstance(item, _KeyRotation):
                self._seal(self._rotation_event(item.key), logged)
                self._processed += 1
                self._persist(self._checkpoint(closed=False), retry=retry)
                self._key = item.key
                continue
            for event in self._expand(item, spans_later=not retry):
                self._route(event, logged, retry)
            self._processed += 1
        due = time.monotonic() - self._last_checkpoint_at >= self.checkpoint_interval
        self._persist(self._checkpoint(closed=False) if due and self._unsigned() else None,
                      sync=sync, retry=retry)

    def _emit_spans(self) -> None:
        """Emit the spans durable callers left (hold `_batch_lock`), before their records are
        committed: a `flush()` that sees them committed sees their spans emitted."""
        spans, self._spans = self._spans, []
        for span in spans:
            span.emit()

    def _drain_spill(self) -> None:
        """Seal what waits in the spill file, oldest first; remove the file once empty.

        Entries still in the memory queue were queued before the spill began (once it has,
        every entry spills): they are sealed first, so `logged` never goes backwards.
        """
        while True:
            with self._lock:
                spill = self._spill
                if spill is None:
                    return
                earlier, self._pending = self._pending, deque()
                self._not_full.notify_all()
            if earlier:
                self._write_batch(earlier)
                continue
            with self._lock:
                if spill.drained:  # removed under the lock: the next spill starts a new file
                    self._spill = None
                    self._not_full.notify_all()
                    try:
                        spill.remove()
                    except OSError as error:  # its entries are persisted: only a file is left
                        logger.warning("otel-ai-audit: could not remove the drained spill file "
                                       "%s: %s", spill.path, error)
                    return
            self._write_batch([(_Built(events), logged) for events, logged in spill.read()])

    def _expand(self, item: dict[str, Any] | DeferredEvents, *,
                spans_later: bool = False) -> list[dict[str, Any]]:
        """`item`'s events; with `spans_later` (a durable caller), its span is left to the
        writer thread."""
        if isinstance(item, dict):
            return [item]
        try:
            build_records = getattr(item, "build_records", None) if spans_later else None
            if build_records is None:
                return item.build()
            events: list[dict[str, Any]] = build_records()
            self._spans.append(item)  # type: ignore[arg-type]
            return events
        except Exception:  # noqa: BLE001 - one bad batch must not stop the chain
            self.count_failed(cause="build")
            logger.exception("otel-ai-audit: building deferred audit events failed; counted as "
                             "failed in the next checkpoint")
            return []

    def _route(self, event: dict[str, Any], logged: int, retry: bool = True) -> None:
        """Seal `event`: after promoting the decision it disputes, or into the holding table
        if sampling leaves it out of the chain."""
        if event.get("type") == _DISPUTE:
            event = self._resolve_dispute(event, logged)
        elif self.sampling is not None:
            kept = self.sampling.sample(event)
            if kept is None:
                self._hold(event, logged, logged + self.sampling.hold_ns)
                return
            event = kept
        self._seal(event, logged)
        if self.chain.size - self.chain.last_checkpoint_size >= self.checkpoint_every:
            self._persist(self._checkpoint(closed=False), retry=retry)

    def _hold(self, event: dict[str, Any], logged: int, expires: int) -> None:
        data = self._converted(canonical_json, event)
        if data is None:
            return
        self._held.append(HeldRecord(str(event["id"]), self.chain.chain_id, logged, expires,
                                     data))
        key = counter_key(event)
        self.sampled_out[key] = self.sampled_out.get(key, 0) + 1

    def _resolve_dispute(self, event: dict[str, Any], logged: int) -> dict[str, Any]:
        """Promote the disputed decision into the chain if it is held; the dispute says whether
        its decision is on the record (chained here or by another process sharing the store)."""
        decision_id = str(event.get("decision_id"))
        self._persist(None)  # the decision may be among the records or holds not yet written

        def find(store: AuditStore) -> tuple[bool, HeldRecord | None]:
            if store.find_record(decision_id) is not None:
                return True, None
            return False, store.held_record(decision_id, time.time_ns())

        on_record, held = self._use_store(find, "looking up a disputed decision")
        if held is not None:
            self._seal(promoted_event(held), logged)
            self._released.append(held.record_id)
            on_record = True
        return {**event, "decision_on_record": on_record}

    def _rotation_event(self, new_key: SigningKey) -> dict[str, Any]:
        return new_event(EventType.KEY_ROTATION, old_key_id=self._key.key_id,
                         new_key_id=new_key.key_id, new_public_key=new_key.public_pem)

    def _seal(self, event: dict[str, Any], logged: int) -> None:
        record = self._converted(lambda data: self.chain.seal(data, logged), event)
        if record is not None:
            self._unwritten.append(record)

    def _converted(self, action: Callable[[dict[str, Any]], _Result],
                   event: dict[str, Any]) -> _Result | None:
        """`action(event)`; if the event is not JSON data, `action` on it converted by the
        documented rules; None (counted as failed) if even that fails."""
        try:
            return action(event)
        except (CanonicalizationError, KeyError, TypeError, ValueError) as error:
            # The instrumentation converts payloads with to_json_data; reaching here means a
            # caller handed raw data. Convert by the documented rules rather than lose it.
            try:
                return action(to_json_data(event))
            except (CanonicalizationError, KeyError, TypeError, ValueError):
                self.count_failed(cause="serialisation")
                logger.error("otel-ai-audit: event could not be sealed and is counted as "
                             "failed in the next checkpoint: %s", error)
                return None

    def count_failed(self, count: int = 1, cause: LossCause = "instrumentation") -> None:
        """Count events lost before they could be sealed, by cause: the signed checkpoints
        carry it, so a loss is on the record even when the record itself is not."""
        with self._lock:  # callers that spill, and instrumentations, count here too
            self.failed += count
            self.failed_by_cause[cause] = self.failed_by_cause.get(cause, 0) + count

    def _counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = {"failed": self.failed,
                                    "sampled_out": dict(sorted(self.sampled_out.items()))}
        if self.failed_by_cause:
            counters["failed_by_cause"] = dict(sorted(self.failed_by_cause.items()))
        if self.unconfirmed:
            counters["unconfirmed"] = self.unconfirmed
        if self.counters_provider is not None:
            try:
                counters.update(to_json_data(self.counters_provider()))
            except Exception:  # noqa: BLE001 - counters must never stop a checkpoint
                logger.exception("otel-ai-audit: counters provider failed")
        return counters

    def _unsigned(self) -> bool:
        """Happened since the last checkpoint: records, or only counts (decisions sampled out,
        events lost), which a checkpoint must sign too."""
        return (self.chain.size > self.chain.last_checkpoint_size
                or self._counters() != self._signed_counters)

    def _checkpoint(self, closed: bool) -> SignedCheckpoint:
        counters = self._counters()
        self._signed_counters = counters
        self._last_checkpoint_at = time.monotonic()
        return self.chain.checkpoint(self._key, time.time_ns(), closed=closed,
                                     counters=counters, policy_hash=self.policy_hash)

    def _persist(self, checkpoint: SignedCheckpoint | None, *, sync: bool = False,
                 retry: bool = True) -> None:
        """Write what was sealed, held and promoted since the last write (with `checkpoint`;
        fsynced if `sync`), then let waiting callers and `flush()` know the entries behind it
        are persisted. Without `retry` (a durable caller), append it to the journal instead,
        or, with no usable journal, commit it unless the store fails (then it is all left for
        the next write)."""
        if checkpoint is not None:
            self._checkpoints.append(checkpoint)
        if not retry and self._append_journal(sync):
            return
        records, held, released = self._unwritten, self._held, self._released
        checkpoints = self._checkpoints
        if records or held or released or checkpoints:
            if not retry and self._store_failing:
                return
            sync = sync or self._journal_synced
            try:
                self._use_store(lambda store: store.write(records, checkpoints, hold=held,
                                                          release=released, sync=sync),
                                f"writing {len(records)} records to {self.store_path}",
                                retry=retry)
            except _LeftToWriter:
                return
            self.persisted_records += len(records)
            self._unwritten, self._held, self._released, self._checkpoints = [], [], [], []
            self._clear_journal()
            if records:
                self._chain_opened.set()
        if self._processed:
            self._mark_persisted(self._processed)
            self._processed = 0

    def _append_journal(self, sync: bool) -> bool:
        """Append to the journal what was sealed since its last append, and acknowledge the
        entries behind it; False if there is no usable journal (then the store is used)."""
        if not self._journal_usable:
            return False
        records, held, released, checkpoints = self._journaled
        unit = Unit(self._unwritten[records:], self._held[held:], self._released[released:],
                    self._checkpoints[checkpoints:])
        if unit.records or unit.held or unit.released or unit.checkpoints:
            try:
                if self._journal is None:
                    self._journal = Journal(journal_path(self.store_path, self.chain.chain_id))
                self._journal.append(unit, sync=sync)
            except OSError as error:  # until the store has what it holds (see _clear_journal)
                self._journal_usable = False
                logger.error("otel-ai-audit: the journal beside %s is unusable (%s); durable "
                             "decisions are committed to the store one by one meanwhile",
                             self.store_path, error)
                return False
            self._journaled = (len(self._unwritten), len(self._held), len(self._released),
                               len(self._checkpoints))
            self._journal_synced = self._journal_synced or sync
        with self._persisted_cv:
            self._acknowledged = max(self._acknowledged, self._persisted + self._processed)
        return True

    def _clear_journal(self) -> None:
        """Everything sealed is in the store: empty the journal (hold `_batch_lock`)."""
        self._journaled = (0, 0, 0, 0)
        self._journal_synced = False
        if self._journal is not None:
            try:
                self._journal.clear()
            except OSError as error:  # replaying it later is harmless: records are kept once
                logger.warning("otel-ai-audit: could not empty the journal %s: %s",
                               self._journal.path, error)
                return
            self._journal_usable = True  # emptied: a failed append (disk full) left nothing

    def _remove_journal(self) -> None:
        """The chain is closed and all of it stored: its journal has no further use."""
        if self._journal is not None:
            try:
                self._journal.remove()
            except OSError as error:
                logger.warning("otel-ai-audit: could not remove the journal %s: %s",
                               self._journal.path, error)
            self._journal = None

    def _purge_expired_holds(self, now: bool) -> None:
        """Every `hold_purge_interval` seconds (and `now`, at close): delete held decisions
        past their expiry (a dispute never promotes an expired one, purged or not), and recover
        the journals of processes that ended meanwhile (a forked child killed, say)."""
        if not now and time.monotonic() - self._last_purge < self.hold_purge_interval:
            return
        self._last_purge = time.monotonic()
        self._use_store(lambda store: recover(store, self.store_path),
                        "recovering journals of ended processes")
        purged = self._use_store(lambda store: store.purge_held(time.time_ns()),
                                 "purging expired held decisions")
        if purged:
            logger.info("otel-ai-audit: purged %d held decisions past their hold period", purged)

    def _mark_persisted(self, count: int) -> None:
        with self._persisted_cv:
            self._persisted += count
            self._acknowledged = max(self._acknowledged, self._persisted)
            self._persisted_cv.notify_all()

    # --- fork ------------------------------------------------------------------------------

    def before_fork(self) -> None:
        """A parent with an open chain records the child's chain id (`chain_fork`), committed
        before the child exists: a child chain that later disappears is then a finding."""
        self._child_chain_id = None
        with self._lock:
            active = self._thread is not None and not self._closed
        if not active:
            return
        if self._store_failing or not os.path.exists(self.store_path):
            logger.error("otel-ai-audit: a fork of chain %s is not recorded: its store %s is "
                         "failing or gone", self.chain.chain_id, self.store_path)
            return
        child = new_chain_id()
        ticket, _ = self._enqueue(new_event(EventType.CHAIN_FORK, child_chain_id=child), False)
        if ticket and self._wait_persisted(ticket, min(self.durable_timeout, FORK_WAIT)):
            self._child_chain_id = child

    def after_fork_in_child(self) -> None:
        """The child's own chain, under the id its parent recorded, opened at once (and closed
        at the child's exit, including a multiprocessing worker's `os._exit`)."""
        if self._spill is not None:
            self._spill.close()  # the parent's file: the parent drains it
        if self._journal is not None:
            self._journal.close()  # the parent's, locked by it: its lock must die with it
        child, self._child_chain_id = self._child_chain_id, None
        self._parent_chain_id = self.chain.chain_id
        self._reset(child)
        if child is None:
            return
        with self._lock:
            self._pending.append((_ChainOpen(), self._stamp()))
            self._start_thread()
        self._wake.set()
        wait = min(self.durable_timeout, FORK_WAIT)
        if not self._chain_opened.wait(wait):
            logger.error("otel-ai-audit: the forked child's chain %s could not be opened in "
                         "%s within %.0fs", child, self.store_path, wait)
        if "multiprocessing" in sys.modules:
            from multiprocessing import util

            util.Finalize(self, AuditWriter.close, args=(self,), exitpriority=10)
