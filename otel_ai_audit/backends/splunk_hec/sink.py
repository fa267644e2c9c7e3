"""The Splunk HTTP Event Collector sink: records, checkpoints, anchors and keys as HEC events
(`layout`).

One HEC event per item, posted to `/services/collector/event` with `Authorization: Splunk
<token>`, events concatenated (HEC takes no JSON array) in requests of at most `max_bytes`.

Splunk has no document ids, so delivery is at least once: a repeat of an event is a second
copy, which the export verifier collapses by (chain, seq) when the bytes are identical. A
repeat only happens when an outcome is unknown (the connection dropped after sending, or an
acknowledgement never came): an HTTP 503 or 429 means HEC refused the whole request, so the
retry that follows duplicates nothing.

With indexer acknowledgement (`ack=True`; the token must have it on), requests carry a
channel, HTTP 200 only means "accepted", and a batch is delivered once
`/services/collector/ack` says each of its requests is indexed; requests not acknowledged
within `ack_timeout` are sent again.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from otel_ai_audit.backends.splunk_hec import layout
from otel_ai_audit.backends.splunk_hec.client import ACK_PATH, EVENT_PATH, HecClient
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import StoredAnchor


class SplunkHecSink:
    """Posts to one HEC endpoint with one token."""

    kind = "splunk_hec"

    def __init__(self, url: str, token: str, *, index: str | None = None,
                 source: str = "otel-ai-audit", host: str | None = None, ack: bool = False,
                 max_bytes: int = 1_000_000, timeout: float = 30.0, ack_timeout: float = 60.0,
                 ack_poll_interval: float = 0.2, ca_certs: str | None = None,
                 verify_certs: bool = True) -> None:
        self.channel = str(uuid.uuid4())
        self._client = HecClient(url, token, channel=self.channel if ack else None,
                                 timeout=timeout, ca_certs=ca_certs, verify_certs=verify_certs)
        self.base_url = self._client.base_url
        self.index = index
        self.source = source
        self.host = host or socket.gethostname()
        self.ack = ack
        self.max_bytes = max_bytes
        self.ack_timeout = ack_timeout
        self.ack_poll_interval = ack_poll_interval
        self.name = f"splunk_hec:{self.base_url}/{index or ''}"

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> SplunkHecSink:
        if not settings.splunk_hec_url:
            raise ValueError("no Splunk HEC URL configured")
        return cls(settings.splunk_hec_url, settings.splunk_hec_token or "",
                   index=settings.splunk_hec_index, source=settings.splunk_hec_source,
                   host=settings.splunk_hec_host, ack=settings.splunk_hec_ack,
                   ca_certs=settings.splunk_hec_ca_certs,
                   verify_certs=settings.splunk_hec_verify_certs)

    # --- Sink ------------------------------------------------------------------------------

    def send_records(self, batch: Sequence[SealedRecord]) -> None:
        self._post([layout.record_event(record, self._envelope) for record in batch])

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._post([layout.checkpoint_event(signed, self._envelope) for signed in batch])

    def send_keys(self, keys: Mapping[str, str]) -> None:
        self._post([layout.key_event(key_id, pem, time.time(), self._envelope)
                    for key_id, pem in keys.items()])

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        self._post([layout.anchor_event(anchor, self._envelope) for anchor in batch])

    def close(self) -> None:
        self._client.close()

    # --- events ----------------------------------------------------------------------------

    def _envelope(self, sourcetype: str, seconds: float | str, event: str,
                  fields: Mapping[str, Any]) -> bytes:
        """One HEC event. `seconds` goes in as written: a decimal string keeps its digits."""
        head = {"host": self.host, "source": self.source, "sourcetype": sourcetype}
        if self.index:
            head["index"] = self.index
        return b"".join((b'{"time":', str(seconds).encode("ascii"), b",",
                         json.dumps(head, separators=(",", ":"))[1:-1].encode(),
                         b',"fields":', json.dumps(dict(fields), separators=(",", ":")).encode(),
                         b',"event":', json.dumps(event).encode(), b"}"))

    # --- HTTP ------------------------------------------------------------------------------

    def _post(self, events: list[bytes]) -> None:
        """Send `events` in requests of at most `max_bytes`; raise `DeliveryError` naming the
        positions not delivered. Requests go in order and stop at the first failure, so what
        was delivered is a prefix plus, with acknowledgement, what the indexer confirmed."""
        if not events:
            return
        requests = list(_chunks(events, self.max_bytes))
        pending: dict[int, range] = {}
        """ack id to the positions of its request, awaiting the indexer's confirmation."""
        failed: list[int] = []
        error: DeliveryError | None = None
        for positions in requests:
            try:
                answer = self._client.post(EVENT_PATH,
                                           b"".join(events[i] for i in positions))
            except DeliveryError as problem:
                error = problem
                done = positions.start + (problem.failed[0] if problem.failed else 0)
                failed.extend(range(done, len(events)))
                break
            if self.ack:
                ack_id = answer.get("ackId")
                if not isinstance(ack_id, int):
                    error = DeliveryError(f"Splunk HEC at {self.base_url} accepted a request "
                                          "without an ackId: is indexer acknowledgement on "
                                          "for this token?", rejected=True)
                    failed.extend(range(positions.start, len(events)))
                    break
                pending[ack_id] = positions
        if pending:
            unconfirmed = self._await_acks(pending)
            if unconfirmed:
                failed = sorted({*failed, *unconfirmed})
                error = error or DeliveryError(
                    f"Splunk HEC at {self.base_url} did not confirm {len(unconfirmed)} event(s) "
                    f"as indexed within {self.ack_timeout:.0f}s (channel {self.channel})")
        if error is not None:
            raise DeliveryError(str(error), failed, rejected=error.rejected)

    def _await_acks(self, pending: dict[int, range]) -> list[int]:
        """Poll the ack endpoint until every request is indexed or `ack_timeout` passes;
        the positions of the requests still unconfirmed."""
        deadline = time.monotonic() + self.ack_timeout
        while pending:
            try:
                answer = self._client.post(ACK_PATH,
                                           json.dumps({"acks": sorted(pending)}).encode())
            except DeliveryError as error:
                if error.rejected:
                    raise
                answer = {}
            for ack_id, indexed in (answer.get("acks") or {}).items():
                if indexed is True:
                    pending.pop(int(ack_id), None)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(self.ack_poll_interval)
        return [i for positions in pending.values() for i in positions]


def _chunks(events: list[bytes], max_bytes: int) -> list[range]:
    """Positions of consecutive events, grouped into requests of at most `max_bytes` (an
    event larger than that goes alone: HEC answers for it)."""
    chunks: list[range] = []
    start, size = 0, 0
    for i, event in enumerate(events):
        if i > start and size + len(event) > max_bytes:
            chunks.append(range(start, i))
            start, size = i, 0
        size += len(event)
    chunks.append(range(start, len(events)))
    return chunks
