"""The anchoring job: build the next anchor in the store's outbox, time-stamp it, publish it.

Run by the runtime's anchoring thread (every `anchor_interval` seconds and after the closing
checkpoint) and by `otel-ai-audit anchor` (cron or a sidecar, for stores whose writers are gone).
Each step is retried on the next run: an anchor built while the TSA or S3 is down waits in the
outbox and is stamped and published, in order, once they answer. Nothing here is on the hot
path: the model's calls never wait for it.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from otel_ai_audit.anchor.document import (
    GENESIS,
    Anchor,
    AnchoredChain,
    anchor_hash,
    sign_anchor,
)
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.timestamp import request_timestamp
from otel_ai_audit.errors import AuditError
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.store.sqlite import AuditStore, StoredAnchor

logger = logging.getLogger(__name__)

PUBLISHED_FORMAT = "otel-ai-audit/published-anchor/v1"
DEFAULT_RETENTION_DAYS = 190
"""Six months (EU AI Act Art. 19, 26(6)) and a margin for a late request."""
_NS_PER_DAY = 86_400 * 10**9
HEARTBEAT_NS = 3600 * 10**9
"""An anchor at least every hour, even when nothing changed: its absence then means anchoring
stalled (the `anchoring stalled` alert), not an idle service."""


@dataclass
class AnchorRun:
    """What one run did: the anchor it built (None when nothing changed), and how many anchors
    it stamped and published; `error` says what failed (retried next run)."""

    built: int | None = None
    stamped: int = 0
    published: int = 0
    pending: int = 0
    error: str | None = None


def published_body(anchor: StoredAnchor) -> bytes:
    """The object an anchor is published as: its signed bytes, signature and token."""
    return canonical_json({
        "format": PUBLISHED_FORMAT,
        "key_id": anchor.key_id,
        "payload": anchor.payload.decode("utf-8"),
        "signature": base64.b64encode(anchor.signature).decode("ascii"),
        "timestamp": base64.b64encode(anchor.token).decode("ascii") if anchor.token else None,
    })


def anchor_fields(anchor: StoredAnchor) -> dict[str, Any]:
    """The fields the sinks index an anchor by (Elasticsearch, Splunk, OTLP): enough to search
    and alert on (`anchoring stalled`), beside the published object itself."""
    parsed = Anchor.from_payload(anchor.payload)
    return {"anchor.seq": anchor.seq, "anchor.store_id": parsed.store_id,
            "anchor.issued_at_ns": parsed.issued_at_ns, "anchor.daily": parsed.daily,
            "anchor.chains": len(parsed.chains), "anchor.key_id": anchor.key_id,
            "anchor.timestamped": anchor.token is not None}


class Anchorer:
    """Anchors one store. `bucket` None keeps anchors in the outbox only (nothing external:
    useful for tests of the format, worthless as evidence, and said so by `verify`)."""

    def __init__(self, store: AuditStore, key: SigningKey, bucket: AnchorBucket | None, *,
                 tsa_url: str | None = None, retention_days: int = DEFAULT_RETENTION_DAYS,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.key = key
        self.bucket = bucket
        self.tsa_url = tsa_url
        self.retention_days = retention_days
        self._now_ns = now_ns
        self._witnessed: dict[str, AnchoredChain] = {}
        self._seen_anchor = 0

    @property
    def target(self) -> str:
        return str(self.bucket.location) if self.bucket is not None else ""

    def run(self) -> AnchorRun:
        """One round: build an anchor if anything changed (or a day began), then stamp and
        publish everything pending. Errors are returned, not raised: the next run retries."""
        result = AnchorRun()
        try:
            result.built = self.build()
            if self.tsa_url:
                result.stamped = self._stamp_pending()
            if self.bucket is not None:
                result.published = self._publish_pending()
        except AuditError as error:
            result.error = str(error)
        if self.bucket is not None:
            result.pending = len(self.store.unpublished_anchors(self.target))
        return result

    def build(self) -> int | None:
        """Append the next anchor to the outbox; its number, or None when nothing changed
        since the last anchor, no new UTC day began and the last is under an hour old."""
        self._catch_up()
        store_id = self.store.store_id()
        latest = self.store.latest_checkpoints()

        def make(previous: StoredAnchor | None) -> tuple[str, bytes, bytes]:
            last = Anchor.from_payload(previous.payload) if previous is not None else None
            if previous is not None and previous.seq != self._seen_anchor:
                raise _Retry  # another process anchored meanwhile: re-read its anchors first
            now = max(self._now_ns(), last.issued_at_ns if last else 0)
            daily = last is None or now // _NS_PER_DAY != last.issued_at_ns // _NS_PER_DAY
            current = {chain_id: AnchoredChain.of(chain_id, signed)
                       for chain_id, signed in latest.items()}
            changed = [chain for chain_id, chain in sorted(current.items())
                       if self._witnessed.get(chain_id) != chain]
            due = last is None or now - last.issued_at_ns >= HEARTBEAT_NS
            if not changed and not daily and not due:
                raise _Unchanged
            listed = sorted(current.values(), key=lambda c: c.chain_id) if daily else changed
            anchor = Anchor(
                seq=previous.seq + 1 if previous is not None else 1,
                prev=anchor_hash(previous.payload) if previous is not None else GENESIS,
                store_id=store_id, issued_at_ns=now, key_id=self.key.key_id, daily=daily,
                retention_days=self.retention_days, chains=tuple(listed),
                opened=tuple(c for c in sorted(current) if c not in self._witnessed),
                closed=tuple(c.chain_id for c in changed if c.closed))
            payload = anchor.payload()
            return self.key.key_id, payload, sign_anchor(self.key, payload)

        for _ in range(3):
            try:
                stored = self.store.append_anchor(make)
            except _Unchanged:
                return None
            except _Retry:
                self._catch_up()
                continue
            self._remember(Anchor.from_payload(stored.payload))
            self._seen_anchor = stored.seq
            return stored.seq
        return None

    def _catch_up(self) -> None:
        """Fold the anchors written since this object last looked (by it or another process)
        into what has been witnessed."""
        for stored in self.store.anchors(after=self._seen_anchor):
            self._remember(Anchor.from_payload(stored.payload))
            self._seen_anchor = stored.seq

    def _remember(self, anchor: Anchor) -> None:
        for chain in anchor.chains:
            self._witnessed[chain.chain_id] = chain

    def _stamp_pending(self) -> int:
        assert self.tsa_url is not None
        stamped = 0
        for anchor in self.store.unstamped_anchors():
            self.store.set_anchor_token(anchor.seq, request_timestamp(self.tsa_url, anchor.payload))
            stamped += 1
        return stamped

    def _publish_pending(self) -> int:
        assert self.bucket is not None
        published = 0
        for anchor in self.store.unpublished_anchors(self.target):
            if self.tsa_url and anchor.token is None:
                break  # publish in order: an unstamped anchor holds back the ones after it
            issued = Anchor.from_payload(anchor.payload).issued_at_ns
            retain_until = (datetime.fromtimestamp(issued / 1e9, tz=timezone.utc)
                            + timedelta(days=self.retention_days))
            version = self.bucket.put(anchor.seq, published_body(anchor), retain_until)
            self.store.mark_anchor_published(anchor.seq, self.target, version)
            published += 1
        return published


class _Unchanged(Exception):
    """Nothing to anchor: raised inside the outbox transaction to leave it unchanged."""


class _Retry(Exception):
    """Another process appended an anchor since this one last read the outbox."""
