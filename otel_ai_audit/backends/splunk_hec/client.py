"""Talking to Splunk's HTTP Event Collector: the base URL, the token, TLS, and HEC's answers
in words (its codes explained, with what to do).

Answers: 503 and 429 (server busy, queues full) and no answer are retried; 400, 401, 403 and
404 need a person (bad token, index not allowed, acknowledgement misconfigured) and are
rejections. An invalid event (HEC code 6 with `invalid-event-number`) names that event: those
before it were indexed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from otel_ai_audit.sinks.shipper import DeliveryError

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


class HecClient:
    """Requests to one HEC endpoint with one token (and, with acknowledgement, one channel)."""

    def __init__(self, url: str, token: str, *, channel: str | None = None,
                 timeout: float = 30.0, ca_certs: str | None = None,
                 verify_certs: bool = True) -> None:
        if not token:
            raise ValueError("no Splunk HEC token configured (OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN)")
        self.base_url = base_url(url)
        self.channel = channel
        headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        if channel:
            headers["X-Splunk-Request-Channel"] = channel
        options: dict[str, Any] = {"headers": headers, "retries": False,
                                   "timeout": urllib3.Timeout(connect=10.0, read=timeout)}
        if urlsplit(self.base_url).scheme == "https":
            options["cert_reqs"] = "CERT_REQUIRED" if verify_certs else "CERT_NONE"
            if ca_certs:
                options["ca_certs"] = ca_certs
        self._http = urllib3.PoolManager(**options)

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        """POST to HEC; its JSON answer, or `DeliveryError` explaining HEC's code. `failed`
        holds the first refused event when HEC names one (events before it were indexed)."""
        url = self.base_url + path
        if self.channel:
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

    def close(self) -> None:
        self._http.clear()


def _reason(error: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error)
