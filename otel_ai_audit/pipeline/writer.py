"""Sealing and persisting records off the hot path.

`AuditWriter.submit` is all the calling thread pays: take a lock, stamp a monotonic time,
append to a queue. A background thread owns the process's chain: it canonicalises, hashes,
links and persists records in batches, signs a checkpoint every N records or T seconds, and a
final `closed` checkpoint at shutdown. After `fork()` the child starts a chain of its own
(the parent's queue is not the child's to write). No SQLite connection crosses a fork: the
writer closes it just before and reopens it on its next write. SQLite keeps the lock state of
every open file in process memory, which a child inherits while it does not inherit the
parent's POSIX locks; a child writing the same store through that state lost whole commits.

A full queue blocks the submitting thread (never drops); a store that fails is retried with
backoff while records wait in memory. What is still lost (a process killed before
persisting) shows in verification as a chain that was never closed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import CanonicalizationError, to_json_data
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore, SealedRecord, StoreError

logger = logging.getLogger(__name__)

CountersProvider = Callable[[], dict[str, Any]]


class DeferredEvents(Protocol):
    """Events whose expensive parts (hashing inputs, one record per batch row) are built on
    the writer thread, not on the thread that made the decision."""

    def build(self) -> list[dict[str, Any]]: ...


class _ChainOpen:
    """Queued marker: the first record of the chain, sequenced before the first event."""

    __slots__ = ()


class _KeyRotation:
    """Queued marker: rotate to `key` at this point of the chain."""

    __slots__ = ("key",)

    def __init__(self, key: SigningKey) -> None:
        self.key = key


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
        batch_size: int = 2048,
        counters: CountersProvider | None = None,
        policy_hash: str = "",
    ) -> None:
        self.store_path = store_path
        self.service_name = service_name
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.counters_provider = counters
        self.policy_hash = policy_hash
        self._key = key
        self._parent_chain_id: str | None = None
        self._reset()
        _track_for_fork(self)

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._persisted_cv = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._pending: deque[tuple[Any, int]] = deque()
        self._last_logged = 0
        self._submitted = 0
        self._persisted = 0
        self._thread: threading.Thread | None = None
        self._store_lock = threading.Lock()
        """Held while the store is used, and by `fork()` while it closes the connection."""
        self._store: AuditStore | None = None
        self._registered_key = ""
        self._stopping = False
        self._closed = False
        self.chain = Chain()
        self.failed = 0
        self.late = 0
        self.store_errors = 0
        self._last_checkpoint_at = time.monotonic()

    @property
    def key(self) -> SigningKey:
        return self._key

    # --- hot path --------------------------------------------------------------------------

    def submit(self, event: dict[str, Any] | DeferredEvents) -> None:
        """Queue an event (or a deferred batch of them) for sealing. Blocks only while the
        queue is full."""
        self._enqueue(event)

    def rotate_key(self, key: SigningKey) -> None:
        """Switch to `key`; the rotation is recorded in the chain and signed by the old key."""
        self._enqueue(_KeyRotation(key))

    def _enqueue(self, item: dict[str, Any] | DeferredEvents | _KeyRotation) -> None:
        with self._lock:
            if self._closed:
                self.late += 1
                logger.error("otel-ai-audit: event submitted after the audit chain was closed; "
                             "it is not recorded (late events so far: %d)", self.late)
                return
            while len(self._pending) >= self.max_queue and not self._stopping:
                self._not_full.wait(0.5)
            now = time.time_ns()
            if now < self._last_logged:
                now = self._last_logged
            self._last_logged = now
            if self._thread is None:
                self._pending.append((_ChainOpen(), now))
                self._submitted += 1
                self._start_thread()
            self._pending.append((item, now))
            self._submitted += 1
            queued = len(self._pending)
        if queued >= self.batch_size:
            self._wake.set()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-ai-audit-writer",
                                        daemon=True)
        self._thread.start()

    # --- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is persisted; False on timeout."""
        with self._lock:
            target = self._submitted
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
                with self._lock:
                    batch, self._pending = self._pending, deque()
                    stopping = self._stopping
                    self._not_full.notify_all()
                self._write_batch(batch, closing=stopping)
                if stopping:
                    with self._lock:
                        if not self._pending:
                            return
        finally:
            with self._store_lock:
                self._close_store()

    def _open_store(self) -> bool:
        """Open the store, retrying with backoff; False if it was still unusable at close."""
        delay = 0.1
        while True:
            try:
                with self._store_lock:
                    self._connect()
                return True
            except StoreError as error:
                self.store_errors += 1
                logger.error("otel-ai-audit: cannot open audit store: %s (retrying)", error)
                if self._stopping:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _connect(self) -> AuditStore:
        """The open store, with the signing key's public half in it; hold `_store_lock`.

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

    def _close_store(self) -> None:
        """Close the connection (hold `_store_lock`); the next write reopens it."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _chain_open_event(self) -> dict[str, Any]:
        return new_event(
            EventType.CHAIN_OPEN,
            process={"pid": os.getpid(), "host": socket.gethostname()},
            service={"name": self.service_name},
            parent_chain_id=self._parent_chain_id,
            key_id=self._key.key_id,
            policy_hash=self.policy_hash,
        )

    def _write_batch(self, batch: deque[tuple[Any, int]], closing: bool) -> None:
        sealed: list[SealedRecord] = []
        for item, logged in batch:
            if isinstance(item, _ChainOpen):
                item = self._chain_open_event()
            if isinstance(item, _KeyRotation):
                sealed.append(self._seal_event(self._rotation_event(item.key), logged))
                self._persist(sealed, self._checkpoint(closed=False))
                sealed = []
                self._key = item.key
                continue
            for event in self._expand(item):
                record = self._seal_event(event, logged)
                if record is not None:
                    sealed.append(record)
                if self.chain.size - self.chain.last_checkpoint_size >= self.checkpoint_every:
                    self._persist(sealed, self._checkpoint(closed=False))
                    sealed = []
        due = time.monotonic() - self._last_checkpoint_at >= self.checkpoint_interval
        uncovered = self.chain.size > self.chain.last_checkpoint_size
        if closing or (due and uncovered):
            self._persist(sealed, self._checkpoint(closed=closing))
        elif sealed:
            self._persist(sealed, None)
        self._mark_persisted(len(batch))

    def _expand(self, item: dict[str, Any] | DeferredEvents) -> list[dict[str, Any]]:
        if isinstance(item, dict):
            return [item]
        try:
            return item.build()
        except Exception:  # noqa: BLE001 - one bad batch must not stop the chain
            self.failed += 1
            logger.exception("otel-ai-audit: building deferred audit events failed; counted as "
                             "failed in the next checkpoint")
            return []

    def _rotation_event(self, new_key: SigningKey) -> dict[str, Any]:
        return new_event(EventType.KEY_ROTATION, old_key_id=self._key.key_id,
                         new_key_id=new_key.key_id, new_public_key=new_key.public_pem)

    def _seal_event(self, event: dict[str, Any], logged: int) -> SealedRecord | None:
        try:
            return self.chain.seal(event, logged)
        except (CanonicalizationError, KeyError, TypeError, ValueError) as error:
            # The instrumentation converts payloads with to_json_data; reaching here means a
            # caller handed raw data. Convert by the documented rules rather than lose it.
            try:
                return self.chain.seal(to_json_data(event), logged)
            except (CanonicalizationError, KeyError, TypeError, ValueError):
                self.failed += 1
                logger.error("otel-ai-audit: event could not be sealed and is counted as "
                             "failed in the next checkpoint: %s", error)
                return None

    def _checkpoint(self, closed: bool) -> SignedCheckpoint:
        counters: dict[str, Any] = {"failed": self.failed}
        if self.counters_provider is not None:
            try:
                counters.update(to_json_data(self.counters_provider()))
            except Exception:  # noqa: BLE001 - counters must never stop a checkpoint
                logger.exception("otel-ai-audit: counters provider failed")
        self._last_checkpoint_at = time.monotonic()
        return self.chain.checkpoint(self._key, time.time_ns(), closed=closed,
                                     counters=counters, policy_hash=self.policy_hash)

    def _persist(self, records: list[SealedRecord], checkpoint: SignedCheckpoint | None) -> None:
        delay = 0.05
        while True:
            try:
                with self._store_lock:
                    self._connect().write(records, checkpoint)
                return
            except StoreError as error:
                self.store_errors += 1
                logger.error("otel-ai-audit: writing %d records to %s failed: %s (retrying)",
                             len(records), self.store_path, error)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _mark_persisted(self, count: int) -> None:
        with self._persisted_cv:
            self._persisted += count
            self._persisted_cv.notify_all()

    # --- fork ------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._parent_chain_id = self.chain.chain_id
        self._reset()


_writers: weakref.WeakSet[AuditWriter] = weakref.WeakSet()


def _track_for_fork(writer: AuditWriter) -> None:
    _writers.add(writer)


_forking: list[AuditWriter] = []
"""The writers whose store lock `_close_stores_before_fork` holds until the fork is done."""


def _close_stores_before_fork() -> None:
    """Wait for writes in progress, close the connections, and hold them closed over fork."""
    _forking[:] = list(_writers)
    for writer in _forking:
        writer._store_lock.acquire()
        writer._close_store()


def _reopen_stores_in_parent() -> None:
    for writer in _forking:
        writer._store_lock.release()
    _forking.clear()


def _reset_writers_in_child() -> None:
    _forking.clear()
    for writer in list(_writers):
        writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_stores_before_fork,
                        after_in_parent=_reopen_stores_in_parent,
                        after_in_child=_reset_writers_in_child)
