"""The runtime's anchoring thread: one `Anchorer` run every `interval` seconds and a last one
at shutdown (after the writer's closing checkpoint), off the model's hot path.

A failure (TSA or S3 down) is logged once when it starts and once when it ends, counted in
`failures`, and retried on the next run; the outbox keeps every anchor built meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from otel_ai_audit.anchor.publish import Anchorer, AnchorRun
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.errors import AuditError
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline import forks
from otel_ai_audit.store.sqlite import AuditStore, StoreError

logger = logging.getLogger(__name__)


class AnchoringThread:
    def __init__(self, store_path: str, key: Callable[[], SigningKey],
                 bucket: Callable[[], AnchorBucket | None], *, tsa_url: str | None,
                 retention_days: int, interval: float) -> None:
        self.store_path = store_path
        self.key = key
        self._bucket_factory = bucket
        self.tsa_url = tsa_url
        self.retention_days = retention_days
        self.interval = interval
        self.runs = 0
        self.failures = 0
        self.published = 0
        self._published_at = time.monotonic()
        self.last: AnchorRun | None = None
        self._failing = False
        self._reset()
        forks.track(self)

    def _reset(self) -> None:
        self._store: AuditStore | None = None
        self._anchorer: Anchorer | None = None
        self.store_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="otel-ai-audit-anchor",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop after one last run, which anchors the chain's closing checkpoint."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None
        with self.store_lock:
            self.close_store()

    def run_once(self) -> AnchorRun:
        with self.store_lock:
            try:
                anchorer = self._connect()
                result = anchorer.run()
            except (AuditError, StoreError, OSError) as error:
                result = AnchorRun(error=str(error))
        self.runs += 1
        self.last = result
        if result.published:
            self.published += result.published
            self._published_at = time.monotonic()
        if result.error is not None:
            self.failures += 1
            if not self._failing:
                logger.warning("otel-ai-audit: anchoring failed, retrying every %.0f s "
                               "(anchors wait in the store): %s", self.interval, result.error)
            self._failing = True
        elif self._failing:
            logger.warning("otel-ai-audit: anchoring resumed; %d anchor(s) pending",
                           result.pending)
            self._failing = False
        return result

    def age(self) -> float:
        """Seconds since an anchor was last published (since start, before the first)."""
        return time.monotonic() - self._published_at

    def _loop(self) -> None:
        while True:
            # Only a run begun after close() was called has seen the closing checkpoint.
            stopping = self._stopping
            started = time.monotonic()
            self.run_once()
            if stopping:
                return
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - started)))
            self._wake.clear()

    def _connect(self) -> Anchorer:
        """The anchorer, signing with the writer's current key (it follows a rotation)."""
        if self._anchorer is None:
            self._store = AuditStore(self.store_path)
            self._anchorer = Anchorer(self._store, self.key(), self._bucket_factory(),
                                      tsa_url=self.tsa_url, retention_days=self.retention_days)
        self._anchorer.key = self.key()
        return self._anchorer

    # --- fork safety (see otel_ai_audit.pipeline.forks) ---------------------------------------

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None
        self._anchorer = None

    def before_fork(self) -> None:
        return None

    def after_fork_in_child(self) -> None:
        """A forked child does not anchor: the parent's thread anchors the shared store."""
        self._reset()
