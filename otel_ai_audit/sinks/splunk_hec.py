"""The Splunk HTTP Event Collector sink: records, checkpoints and keys as HEC events.

One HEC event per item, posted to `/services/collector/event` with `Authorization: Splunk
<token>`, events concatenated (HEC takes no JSON array) in requests of at most `max_bytes`.

The record contract (what searches and dashboards rely on):

* sourcetype `otel_ai_audit:record`: `event` is the record's canonical JSON *as a string*, so
  Splunk's `_raw` is the exact bytes that were hashed and an export verifies; its fields come
  from KV_MODE=json (`chain.id`, `chain.seq`, `event.type`, `event.risk.level`,
  `event.model.name`, ...). `time` is the record's time (epoch seconds, microseconds).
* sourcetype `otel_ai_audit:checkpoint`: `{"checkpoint": {chain_id, index, size, key_id,
  payload, signature}}` (payload and signature base64, the exact signed bytes).
* sourcetype `otel_ai_audit:key`: `{"key": {key_id, pem}}`, so an export is verifiable alone.

Each event also carries the indexed fields `chain.id` and `chain.seq` (checkpoints:
`checkpoint.index`), which a verifier takes as the stored position, as Elasticsearch's.

Splunk has no document ids, so delivery is at least once: a repeat of an event is a second
copy, which the export verifier collapses by (chain, seq) when the bytes are identical. A
repeat only happens when an outcome is unknown (the connection dropped after sending, or an
acknowledgement never came): an HTTP 503 or 429 means HEC refused the whole request, so the
retry that follows duplicates nothing.

Answers: 503 and 429 (server busy, queues full) and no answer are retried; 400, 401, 403 and
404 need a person (bad token, index not allowed, acknowledgement misconfigured) and are
rejections with HEC's own code explained. An invalid event (HEC code 6 with
`invalid-event-number`) rejects that event: those before it were indexed.

With indexer acknowledgement (`ack=True`; the token must have it on), requests carry a
channel, HTTP 200 only means "accepted", and a batch is delivered once
`/services/collector/ack` says each of its requests is indexed; requests not acknowledged
within `ack_timeout` are sent again.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint
from otel_ai_audit.record.schema import parse_header
from otel_ai_audit.sinks.shipper import DeliveryError
from otel_ai_audit.store.sqlite import SealedRecord, StoredAnchor

RECORD_SOURCETYPE = "otel_ai_audit:record"
CHECKPOINT_SOURCETYPE = "otel_ai_audit:checkpoint"
KEY_SOURCETYPE = "otel_ai_audit:key"
ANCHOR_SOURCETYPE = "otel_ai_audit:anchor"

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"

HEC_CODES: dict[int, str] = {
    0: "Success",
    1: "Token disabled: enable the token in Splunk (Settings > Data inputs > HTTP Event "
       "Collector)",
    2: "Token is required: set OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN",
    3: "Invalid authorization: the Authorization header is malformed",
    4: "Invalid token: check OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN",
    5: "No data",
    6: "Invalid data format",
    7: "Incorrect index: the token may not write to OTEL_AI_AUDIT_SPLUNK_HEC_INDEX",
    8: "Internal server error",
    9: "Server is busy",
    10: "Data channel is missing: the token has indexer acknowledgement on; set "
        "OTEL_AI_AUDIT_SPLUNK_HEC_ACK=true",
    11: "Invalid data channel",
    12: "Event field is required",
    13: "Event field cannot be blank",
    14: "ACK is disabled: the token has indexer acknowledgement off; unset "
        "OTEL_AI_AUDIT_SPLUNK_HEC_ACK",
    15: "Error in handling indexed fields",
    16: "Query string authorization is not enabled",
    17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full",
    19: "HEC is unhealthy, ack service unavailable",
    20: "HEC is unhealthy, queues are full",
}
"""HEC's answer codes (Splunk docs, "Troubleshoot HTTP Event Collector"), with what to do."""

_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")


class SplunkHecSink:
    """Posts to one HEC endpoint with one token."""

    kind = "splunk_hec"

    def __init__(self, url: str, token: str, *, index: str | None = None,
                 source: str = "otel-ai-audit", host: str | None = None, ack: bool = False,
                 max_bytes: int = 1_000_000, timeout: float = 30.0, ack_timeout: float = 60.0,
                 ack_poll_interval: float = 0.2, ca_certs: str | None = None,
                 verify_certs: bool = True) -> None:
        if not token:
            raise ValueError("no Splunk HEC token configured (OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN)")
        self.base_url = base_url(url)
        self.index = index
        self.source = source
        self.host = host or socket.gethostname()
        self.ack = ack
        self.max_bytes = max_bytes
        self.ack_timeout = ack_timeout
        self.ack_poll_interval = ack_poll_interval
        self.channel = str(uuid.uuid4())
        self.name = f"splunk_hec:{self.base_url}/{index or ''}"
        headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        if ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        options: dict[str, Any] = {"headers": headers, "retries": False,
                                   "timeout": urllib3.Timeout(connect=10.0, read=timeout)}
        if urlsplit(self.base_url).scheme == "https":
            options["cert_reqs"] = "CERT_REQUIRED" if verify_certs else "CERT_NONE"
            if ca_certs:
                options["ca_certs"] = ca_certs
        self._http = urllib3.PoolManager(**options)

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
        self._post([record_event(record, self._envelope) for record in batch])

    def send_checkpoints(self, batch: Sequence[SignedCheckpoint]) -> None:
        self._post([checkpoint_event(signed, self._envelope) for signed in batch])

    def send_keys(self, keys: Mapping[str, str]) -> None:
        self._post([self._envelope(KEY_SOURCETYPE, time.time(),
                                   json.dumps({"key": {"key_id": key_id, "pem": pem}},
                                              sort_keys=True), {})
                    for key_id, pem in keys.items()])

    def send_anchors(self, batch: Sequence[StoredAnchor]) -> None:
        """Each anchor as its published object, with its search fields as indexed fields."""
        events = []
        for anchor in batch:
            fields = anchor_fields(anchor)
            events.append(self._envelope(
                ANCHOR_SOURCETYPE, _decimal_seconds(fields["anchor.issued_at_ns"]),
                published_body(anchor).decode("utf-8"),
                {name: str(value).lower() if isinstance(value, bool) else str(value)
                 for name, value in fields.items()}))
        self._post(events)

    def close(self) -> None:
        self._http.clear()

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
                answer = self._request(EVENT_PATH, b"".join(events[i] for i in positions))
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
                answer = self._request(ACK_PATH, json.dumps({"acks": sorted(pending)}).encode())
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

    def _request(self, path: str, body: bytes) -> dict[str, Any]:
        """POST to HEC; its JSON answer, or `DeliveryError` explaining HEC's code. `failed`
        holds the first refused event when HEC names one (events before it were indexed)."""
        url = self.base_url + path
        if self.ack:
            url += f"?channel={self.channel}"
        try:
            response = self._http.request("POST", url, body=body)
        except urllib3.exceptions.HTTPError as error:
            raise DeliveryError(f"cannot reach Splunk HEC at {self.base_url}: "
                                f"{_reason(error)}") from error
        try:
            answer = json.loads(response.data or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if response.status == 200:
            return answer
        code = answer.get("code")
        text = HEC_CODES.get(code, str(answer.get("text") or response.reason)) \
            if isinstance(code, int) else str(answer.get("text") or response.reason)
        invalid = answer.get("invalid-event-number")
        where = f" (event {invalid} of the request)" if isinstance(invalid, int) else ""
        raise DeliveryError(
            f"Splunk HEC at {self.base_url} answered HTTP {response.status}"
            f"{f' code {code}' if code is not None else ''}: {text}{where}",
            [invalid] if isinstance(invalid, int) else None,
            rejected=response.status not in _RETRYABLE)


def base_url(url: str) -> str:
    """The HEC base URL (scheme, host, port, any proxy prefix), without the endpoint path."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Splunk HEC URL {url!r} is not an http(s) URL")
    path = parts.path.rstrip("/")
    for suffix in (EVENT_PATH, "/services/collector"):
        if path.endswith(suffix):
            path = path[:-len(suffix)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def record_event(record: SealedRecord, envelope: Callable[..., bytes]) -> bytes:
    """The HEC event of a record (see the module docstring for the contract)."""
    header = parse_header(record.data)
    text = record.data.decode("utf-8", errors="replace")
    return envelope(RECORD_SOURCETYPE, _epoch_seconds(record.time, header),
                    text, {"chain.id": record.chain_id, "chain.seq": record.seq})


def checkpoint_event(signed: SignedCheckpoint, envelope: Callable[..., bytes]) -> bytes:
    try:
        issued = _decimal_seconds(Checkpoint.from_payload(signed.payload).issued_at_ns)
    except ValueError:
        issued = "0"  # shipped as stored: the verifier reports it as malformed
    body = {"chain_id": signed.chain_id, "index": signed.index, "size": signed.size,
            "key_id": signed.key_id,
            "payload": base64.b64encode(signed.payload).decode("ascii"),
            "signature": base64.b64encode(signed.signature).decode("ascii")}
    return envelope(CHECKPOINT_SOURCETYPE, issued, json.dumps({"checkpoint": body},
                                                              sort_keys=True),
                    {"chain.id": signed.chain_id, "checkpoint.index": signed.index})


def _epoch_seconds(text: str, header: Any) -> str:
    """The record's time as epoch seconds with microseconds: `event.time` (RFC 3339), else
    its sequencing time."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return _decimal_seconds(header.logged_ns if header is not None else 0)
    *whole, fraction = match.groups()
    try:
        seconds = calendar.timegm(tuple(map(int, whole)))  # type: ignore[arg-type]
    except (OverflowError, ValueError):
        return _decimal_seconds(header.logged_ns if header is not None else 0)
    return f"{seconds}.{(fraction or '').ljust(6, '0')[:6]}"


def _decimal_seconds(nanos: int) -> str:
    seconds, rest = divmod(nanos, 1_000_000_000)
    return f"{seconds}.{rest // 1000:06d}"


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


def _reason(error: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error)
