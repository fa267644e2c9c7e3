"""What of a decision's inputs and outputs goes into the record, field by field.

Modes: `hash` (keyed HMAC-SHA256 of the canonical JSON: proves what the model saw without
storing it; the default for inputs), `full` (the canonical JSON value, capped in size, with
fields matching `redact_fields` replaced), `redact` (only that a value existed), `none`.
Whoever holds the HMAC key can recompute the hash of a person's data and find their decisions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from otel_ai_audit.config import CaptureMode
from otel_ai_audit.errors import ConfigurationError
from otel_ai_audit.record.canonical import canonical_json, to_json_data

MODES: tuple[CaptureMode, ...] = get_args(CaptureMode)
REDACTED = "[redacted]"


class CaptureConfigError(ConfigurationError):
    """A capture setting is invalid."""


def load_hmac_key(key: str | None, key_file: str | None, store_path: str) -> bytes:
    """The HMAC key: given, from a file, or created once beside the store (mode 0600).

    A key file that is missing, a folder, unreadable or empty is a `ConfigurationError` naming
    `OTEL_AI_AUDIT_HMAC_KEY_FILE` (an empty key would make the keyed hashes guessable), as is
    a key beside the store that cannot be read or created.
    """
    import time

    from otel_ai_audit.config import read_setting_file, variable
    from otel_ai_audit.errors import ConfigurationError

    if key:
        return key.encode("utf-8")
    if key_file:
        return read_setting_file("hmac_key_file", key_file, "the HMAC key").strip()
    path = Path(f"{store_path}.hmac-key")
    beside = f"the HMAC key beside the store, {path}"
    if path.exists():
        return read_setting_file("store", str(path), beside, value=store_path).strip()
    material = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process is creating it: give it time to write the key
        deadline = time.monotonic() + 2.0
        while path.is_file() and not path.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.01)
        return read_setting_file("store", str(path), beside, value=store_path).strip()
    except OSError as error:
        raise ConfigurationError(
            f"{variable('store')}={store_path!r}: cannot create the HMAC key {path} beside the "
            f"store ({error.strerror}); set OTEL_AI_AUDIT_HMAC_KEY_FILE",
            variable=variable("store")) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(material)
    return material


@dataclass(frozen=True)
class CapturePolicy:
    inputs: str = "hash"
    outputs: str = "full"
    max_bytes: int = 16_384
    redact_fields: tuple[str, ...] = ()
    hmac_key: bytes = b""
    _keyed: Any = field(init=False, repr=False, compare=False)
    """HMAC-SHA256 keyed once: copying it costs half of keying it for every value."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.hmac_key, digestmod=hashlib.sha256))
        for name in ("inputs", "outputs"):
            if getattr(self, name) not in MODES:
                raise CaptureConfigError(f"capture mode for {name} must be one of {MODES}")
        for pattern in self.redact_fields:
            try:
                re.compile(pattern)
            except re.error as error:
                raise CaptureConfigError(f"redact pattern {pattern!r}: {error}") from error

    @property
    def policy_hash(self) -> str:
        """SHA-256 of the policy (not the key): goes into every signed checkpoint."""
        description = {"inputs": self.inputs, "outputs": self.outputs,
                       "max_bytes": self.max_bytes, "redact_fields": list(self.redact_fields),
                       "hmac_key_id": hashlib.sha256(self.hmac_key).hexdigest()[:16]}
        return hashlib.sha256(canonical_json(description)).hexdigest()

    def keyed_hash(self, value: Any) -> str:
        keyed = self._keyed.copy()
        keyed.update(canonical_json(to_json_data(value)))
        return str(keyed.hexdigest())

    def pseudonym(self, identity: str) -> str:
        """A stable keyed pseudonym for a person or client (e.g. for `enduser.pseudo.id`)."""
        return hmac.new(self.hmac_key, identity.encode("utf-8"), "sha256").hexdigest()[:32]

    def capture_input(self, value: Any) -> dict[str, Any]:
        return self._capture(self.inputs, value)

    def capture_output(self, value: Any) -> dict[str, Any]:
        return self._capture(self.outputs, value)

    def _capture(self, mode: str, value: Any) -> dict[str, Any]:
        if mode == "none":
            return {"policy": "none"}
        if mode == "redact":
            return {"policy": "redact"}
        if mode == "hash":
            return {"policy": "hash", "hmac_sha256": self.keyed_hash(value)}
        data = self._redact(to_json_data(value))
        if _surely_within(data, self.max_bytes):
            return {"policy": "full", "value": data}
        size = len(canonical_json(data))
        if size > self.max_bytes:
            return {"policy": "full", "truncated": True, "bytes": size,
                    "hmac_sha256": self.keyed_hash(value)}
        return {"policy": "full", "value": data}

    def _redact(self, data: Any) -> Any:
        if not self.redact_fields or not isinstance(data, dict):
            return data
        return {key: REDACTED if any(re.fullmatch(p, key) for p in self.redact_fields) else item
                for key, item in data.items()}


_NUMBER_BYTES = 25
"""The longest canonical JSON number (`-0.0000012345678901234567`), longer than any other
scalar."""


def _surely_within(data: Any, limit: int) -> bool:
    """Is `data`'s canonical JSON surely no longer than `limit` bytes? A bound without
    serialising for what most outputs are (a number, a label, a short row of numbers); False
    means "serialise and see"."""
    kind = type(data)
    if kind is int or kind is float or kind is bool or data is None:
        return _NUMBER_BYTES <= limit
    if kind is str:
        return 6 * len(data) + 2 <= limit  # each character is at most a 6-byte escape
    if kind is list:
        return all(type(item) in _SCALARS for item in data) and (
            (_NUMBER_BYTES + 1) * len(data) + 2 <= limit)
    return False


_SCALARS = frozenset((int, float, bool))

