"""HTTP bodies under the capture policy, observed as they pass and never changed.

`hash` is HMAC-SHA256 with the policy's key over the body bytes as the application reads them,
so it can be recomputed from any copy of the exchange whatever the content type. `full` keeps a
JSON body as its value (other text as a string), with `redact_fields` applied, up to
`capture_max_bytes`; a larger or binary body is recorded as `truncated`, with its size and keyed
hash. A body within the cap is kept by reference and hashed later on the writer thread; only
bytes beyond the cap are hashed as they pass, so memory stays bounded whatever the body size.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from otel_ai_audit.capture import CapturePolicy

DISCLOSURE = ("full", "hash", "redact", "none")  # from most to least revealing
_BINARY = object()


def response_mode(policy: CapturePolicy, status: int | None) -> str:
    """The outputs policy for a successful response; for an error, the stricter of inputs and
    outputs, because error bodies often echo the request (FastAPI's 422 lists the input)."""
    if status is not None and status < 400:
        return policy.outputs
    return max(policy.inputs, policy.outputs, key=DISCLOSURE.index)


class BodyCapture:
    """One body, fed chunk by chunk with `update`, turned into its record by `record`."""

    __slots__ = ("policy", "mode", "content_type", "size", "_full", "_chunks", "_mac")

    def __init__(self, policy: CapturePolicy, mode: str, full: Callable[[Any], dict[str, Any]],
                 content_type: str | None) -> None:
        self.policy = policy
        self.mode = mode
        self.content_type = content_type
        self.size = 0
        self._full = full
        self._chunks: list[bytes] = []
        self._mac: Any = None

    @classmethod
    def request(cls, policy: CapturePolicy, content_type: str | None) -> BodyCapture:
        return cls(policy, policy.inputs, policy.capture_input, content_type)

    @classmethod
    def response(cls, policy: CapturePolicy, status: int | None,
                 content_type: str | None) -> BodyCapture:
        # `full` results only when the outputs policy is `full`, so capture_output applies.
        return cls(policy, response_mode(policy, status), policy.capture_output, content_type)

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.mode not in ("hash", "full"):
            return
        if self._mac is None:
            if self.size <= self.policy.max_bytes:
                self._chunks.append(chunk)
                return
            self._mac = hmac.new(self.policy.hmac_key, digestmod="sha256")
            for kept in self._chunks:
                self._mac.update(kept)
            self._chunks = []
        self._mac.update(chunk)

    def record(self) -> dict[str, Any]:
        """The body as the record holds it (on the writer thread: parsing and hashing)."""
        if self.mode == "none":
            return {"policy": "none"}
        if self.mode == "redact":
            return {"policy": "redact", "bytes": self.size}
        if self._mac is None:
            data = b"".join(self._chunks)
            if self.mode == "full":
                value = _decode(data, self.content_type)
                if value is not _BINARY:
                    return {**self._full(value), "bytes": self.size}
            digest = hmac.new(self.policy.hmac_key, data, "sha256").hexdigest()
        else:
            digest = self._mac.hexdigest()
        result: dict[str, Any] = {"policy": self.mode, "bytes": self.size, "hmac_sha256": digest}
        if self.mode == "full":
            result["truncated"] = True
        return result


def _decode(data: bytes, content_type: str | None) -> Any:
    """A JSON body as its value, other UTF-8 text as a string, anything else as binary."""
    if content_type is not None and "json" in content_type.lower():
        try:
            return json.loads(data)
        except ValueError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _BINARY


class UnseenBody:
    """A body streamed between the library and the caller, which is not ours to read."""

    __slots__ = ("mode",)

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def record(self) -> dict[str, Any]:
        return {"policy": self.mode, "streamed": True}
