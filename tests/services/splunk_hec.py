"""A loopback Splunk HTTP Event Collector, to the documented protocol, for the HEC sink's tests.

Why not the real thing: Splunk Enterprise cannot be installed here (no registry ships it), and
the Collector's `splunkhecreceiver` cannot be built: the Go module proxy refuses modules it
imports (internal/splunk, pkg/translator/splunk, extension/ackextension at v0.161.0; see
collector_config/builder-config.yaml). So this peer implements what Splunk documents
("Format events for HTTP Event Collector", "HTTP Event Collector indexer acknowledgment",
"Troubleshoot HTTP Event Collector") and nothing more:

* `POST /services/collector/event` with `Authorization: Splunk <token>`: a missing header is
  401 code 2, a malformed one 401 code 3, an unknown token 403 code 4, a disabled one 403
  code 1. The body is events concatenated (optionally gzip); an empty body is 400 code 5, an
  event that is not JSON 400 code 6, one without `event` 400 code 12, a blank one code 13,
  an index the token may not use 400 code 7; each with `invalid-event-number`, and the events
  before it are indexed (as Splunk does).
* Indexed fields (the event's `fields` object): "only strings can be used as field values"
  (Splunk, "Indexed field extractions with HEC"; arrays of strings are multi-valued fields).
  A value of another type is dropped (issue 18 says Splunk drops numbers silently; not seen
  against a running Splunk); a nested object is refused with 400, which vectordotdev/vector
  issue 24152 reports from Splunk, here as code 15 ("Error in handling indexed fields").
* Tokens with indexer acknowledgement need a channel (header `X-Splunk-Request-Channel` or
  `?channel=`): missing 400 code 10, not a GUID 400 code 11; answers carry an `ackId`, and
  `POST /services/collector/ack` answers `{"acks": {"<id>": true|false}}`. Without ack on the
  token, `/ack` is 400 code 14.
* Faults to inject: `busy(n)` answers the next n event requests 503 code 9 without indexing;
  `throttle(n)` 429; `drop(n, after)` indexes the n requests after the next `after` and
  closes the connection unanswered (the client cannot know they arrived); `lose_acks()`
  forgets every pending ack (an indexer restart), so they read false forever.

`indexed` keeps every event as received (its `fields` as indexed), `index_times` when each
was indexed (`clock()`, which a test may move to deliver late); `results()` is what a search
sees of each (`_raw`, `_time`, `_indextime`, sourcetype..., the indexed fields: search-time
extraction is off for the app's sourcetype), `export(path)` writes them as Splunk's search
export (`{"preview":false,"result":{...}}` lines, newest first) and `payload(path)` the
concatenated HEC events.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.services.base import json_http_server

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")


@dataclass
class Token:
    ack: bool = False
    enabled: bool = True
    indexes: tuple[str, ...] = ("main", "audit")
    default_index: str = "main"


@dataclass
class SplunkHec:
    """The server's state; `serve()` runs it on a free loopback port."""

    tokens: dict[str, Token] = field(default_factory=dict)
    indexed: list[dict[str, Any]] = field(default_factory=list)
    index_times: list[float] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _faults: list[tuple[str, int]] = field(default_factory=list)
    _acks: dict[str, dict[int, bool]] = field(default_factory=dict)
    _next_ack: dict[str, int] = field(default_factory=dict)

    def busy(self, requests: int) -> None:
        self._faults.append(("busy", requests))

    def throttle(self, requests: int) -> None:
        self._faults.append(("throttle", requests))

    def drop(self, requests: int, after: int = 0) -> None:
        if after:
            self._faults.append(("pass", after))
        self._faults.append(("drop", requests))

    def lose_acks(self) -> None:
        with self._lock:
            self._acks.clear()

    def records(self) -> list[dict[str, Any]]:
        return [e for e in self.indexed if e.get("sourcetype") == "otel_ai_audit:record"]

    def results(self) -> list[dict[str, Any]]:
        """Each indexed event as a search result, in the order indexed."""
        return [{"_raw": event["event"], "_time": float(event.get("time", at)),
                 "_indextime": at, "sourcetype": event.get("sourcetype"),
                 "source": event.get("source"), "host": event.get("host"),
                 "index": event.get("index"), **(event.get("fields") or {})}
                for event, at in zip(self.indexed, self.index_times, strict=True)]

    def export(self, path: Path) -> Path:
        """Splunk's search export (output_mode=json) of everything indexed, newest first."""
        lines = [json.dumps({"preview": False, "offset": offset, "result": result})
                 for offset, result in enumerate(reversed(self.results()))]
        path.write_text("\n".join(lines) + "\n")
        return path

    def payload(self, path: Path) -> Path:
        """Every indexed event as HEC events concatenated (what the sink posted)."""
        path.write_text("".join(json.dumps(event, separators=(",", ":"))
                                for event in self.indexed))
        return path

    # --- the protocol ----------------------------------------------------------------------

    def _fault(self) -> str | None:
        with self._lock:
            if not self._faults:
                return None
            kind, left = self._faults[0]
            if left <= 1:
                self._faults.pop(0)
            else:
                self._faults[0] = (kind, left - 1)
            return kind

    def handle(self, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, Any] | None]:
        """(status, JSON answer); None as the answer means: close without answering."""
        self.requests += 1
        if path == "/services/collector/health":
            return 200, {"text": "HEC is healthy", "code": 17}
        authorization = headers.get("Authorization")
        if authorization is None:
            return 401, {"text": "Token is required", "code": 2}
        scheme, _, secret = authorization.partition(" ")
        if scheme != "Splunk" or not secret:
            return 401, {"text": "Invalid authorization", "code": 3}
        token = self.tokens.get(secret)
        if token is None:
            return 403, {"text": "Invalid token", "code": 4}
        if not token.enabled:
            return 403, {"text": "Token disabled", "code": 1}
        channel = headers.get("X-Splunk-Request-Channel") or (query.get("channel") or [None])[0]
        if path == "/services/collector/ack":
            return self._ack(token, channel, body)
        if path not in ("/services/collector/event", "/services/collector",
                        "/services/collector/event/1.0"):
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}
        if token.ack:
            if not channel:
                return 400, {"text": "Data channel is missing", "code": 10}
            if not _GUID.fullmatch(channel):
                return 400, {"text": "Invalid data channel", "code": 11}
        fault = self._fault()
        if fault == "busy":
            return 503, {"text": "Server is busy", "code": 9}
        if fault == "throttle":
            return 429, {"text": "Server is busy", "code": 9}
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events, problem = _parse(body.decode("utf-8", errors="replace"), token)
        with self._lock:
            self.indexed.extend(events)
            self.index_times.extend([self.clock()] * len(events))
            if problem is None and token.ack:
                ack_id = self._next_ack.get(channel, 0)
                self._next_ack[channel] = ack_id + 1
                self._acks.setdefault(channel, {})[ack_id] = False
                answer: dict[str, Any] = {"text": "Success", "code": 0, "ackId": ack_id}
            else:
                answer = {"text": "Success", "code": 0}
        if problem is not None:
            return 400, problem
        if fault == "drop":
            return 200, None
        return 200, answer

    def _ack(self, token: Token, channel: str | None, body: bytes,
             ) -> tuple[int, dict[str, Any]]:
        if not token.ack:
            return 400, {"text": "ACK is disabled", "code": 14}
        if not channel:
            return 400, {"text": "Data channel is missing", "code": 10}
        try:
            ids = json.loads(body)["acks"]
        except (ValueError, KeyError, TypeError):
            return 400, {"text": "Invalid data format", "code": 6}
        with self._lock:
            known = self._acks.get(channel, {})
            answer = {str(i): known.get(i, False) for i in ids}
            for i in ids:
                if known.get(i):
                    del known[i]  # Splunk forgets an ack once it has reported it true
                elif i in known:
                    known[i] = True  # indexed by the next poll
            return 200, {"acks": answer}


def _parse(text: str, token: Token) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The events of a body up to the first bad one, and the error for that one."""
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        number = len(events)
        try:
            event, position = decoder.raw_decode(text, position)
        except ValueError:
            return events, {"text": "Invalid data format", "code": 6,
                            "invalid-event-number": number}
        if not isinstance(event, dict) or "event" not in event:
            return events, {"text": "Event field is required", "code": 12,
                            "invalid-event-number": number}
        if event["event"] in ("", None):
            return events, {"text": "Event field cannot be blank", "code": 13,
                            "invalid-event-number": number}
        index = event.setdefault("index", token.default_index)
        if index not in token.indexes:
            return events, {"text": "Incorrect index", "code": 7,
                            "invalid-event-number": number}
        if "fields" in event:
            fields = event["fields"]
            if not isinstance(fields, dict) or any(isinstance(value, dict)
                                                   for value in fields.values()):
                return events, {"text": "Error in handling indexed fields", "code": 15,
                                "invalid-event-number": number}
            event["fields"] = {name: value for name, value in fields.items()
                               if isinstance(value, str) or (
                                   isinstance(value, list) and value
                                   and all(isinstance(item, str) for item in value))}
        events.append(event)
    if not events:
        return events, {"text": "No data", "code": 5}
    return events, None


@contextmanager
def serve(hec: SplunkHec) -> Iterator[SplunkHec]:
    """Run `hec` on a free loopback port (its `url` is set) until the block ends."""

    def answer(method: str, target: str, headers: Any,
               body: bytes) -> tuple[int, dict[str, Any]] | None:
        parts = urlsplit(target)
        status, content = hec.handle(parts.path, parse_qs(parts.query), headers, body)
        return None if content is None else (status, content)

    with json_http_server(answer) as url:
        hec.url = url
        yield hec
