"""Records a Collector gateway attached to the telemetry it chained: rebuilt from span + seal.

With `chain.records: attached` (the default) the gateway's audit processor does not ship the
record of a chained span or log record; it adds one attribute, `ai_audit.seal` (bytes), and
`rebuild` makes the record's canonical bytes again from the archived item and that seal:

    byte 0         format version, 1
    bytes 1..16    chain id (raw; its text is the lower-case hex)
    uvarint        seq                     (LEB128, Go's binary.AppendUvarint)
    uvarint        logged, Unix ns         (the record's chain.logged)
    32 bytes       prev (the previous record's leaf hash)
    1 byte         content policy: h(ash), f(ull), n(one)
    1 byte         flags: bit0 input, bit1 output, bit2 body present
    32 bytes each  with policy h only: HMAC-SHA256 of input, output, body, per flag, in order

The event is collector/auditprocessor/mapping.go's (docs/semantic-conventions.md, "Telemetry
chained at the gateway"): its id derives from (logged, chain id, seq), its content is what
the seal says (presence from the flags, hashes from the seal), everything else comes from the
item. Any change to the item after sealing (an attribute, a time, a name) gives other bytes,
whose leaf hash the next record's `prev` and the signed checkpoints no longer match: the
verifier reports it as it reports an edited record.

`Telemetry` is the item as plain data (attribute values typed as Python values: str, bool,
int, float, bytes, list, dict, None), so each reader (the Collector's file export, the
Elasticsearch exporter's documents) only decodes its own format.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from otel_ai_audit.errors import IntegrityError
from otel_ai_audit.record.canonical import MAX_SAFE_INTEGER, CanonicalizationError, rfc3339_from_ns
from otel_ai_audit.record.schema import seal as seal_record

SEAL = "ai_audit.seal"
"""The attribute holding the seal (OTLP bytes; hex in the Elasticsearch exporter's documents)."""
SEAL_VERSION = 1

INPUT_CONTENT = ("gen_ai.input.messages", "gen_ai.system_instructions", "gen_ai.prompt",
                 "gen_ai.tool.call.arguments")
OUTPUT_CONTENT = ("gen_ai.output.messages", "gen_ai.completion", "gen_ai.tool.call.result")
"""The GenAI content attributes: captured under the seal's policy, never as attributes."""
_CONTENT_NAMES = frozenset(INPUT_CONTENT + OUTPUT_CONTENT)
_MODEL = (("name", ("gen_ai.response.model", "gen_ai.request.model", "ml.model.name",
                    "ai_audit.model.name")),
          ("version", ("ml.model.version", "ai_audit.model.version")),
          ("provider", ("gen_ai.provider.name", "gen_ai.system")))
_OPERATION = ("gen_ai.operation.name", "ml.operation", "ai_audit.operation")
Policy = Literal["hash", "full", "none"]
_POLICIES: dict[int, Policy] = {ord("h"): "hash", ord("f"): "full", ord("n"): "none"}
_CONTENT = ("input", "output", "body")
"""The flag bits' content parts, bit 0 first: the seal's HMACs follow in this order."""
SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
"""pdata's SpanKind names, by OTLP enum value."""
STATUS_CODES = ("Unset", "Ok", "Error")
"""pdata's StatusCode names, by OTLP enum value."""
STATUS_ERROR = 2
SEVERITY_ERROR = 17
"""OTLP SeverityNumber ERROR: a log record at or above it is a failure (`event.error`)."""

Value = Any
"""An attribute value: str, bool, int, float, bytes, list of values, dict of str to values,
or None (an empty value)."""


class SealError(IntegrityError):
    """An `ai_audit.seal` that cannot be decoded. `chain_id`/`seq` are what was read before
    the damage ("" / -1 when nothing was), so the verifier can place the finding."""

    def __init__(self, message: str, chain_id: str = "", seq: int = -1) -> None:
        super().__init__(message)
        self.chain_id = chain_id
        self.seq = seq


@dataclass(frozen=True)
class Seal:
    """A decoded seal: the record's place in its chain and its content capture."""

    chain_id: bytes
    seq: int
    logged_ns: int
    prev: bytes
    policy: Policy
    present: tuple[bool, bool, bool]
    """Input, output, body: present when sealed."""
    hmacs: tuple[bytes, bytes, bytes]
    """Their HMAC-SHA256 under the hash policy (b"" when absent or another policy)."""


@dataclass(frozen=True)
class Telemetry:
    """One span or log record, as much of it as the record is built from.

    Times are Unix ns; ids raw bytes (b"" when absent); `kind` and `status_code` the OTLP enum
    values. A log record's time is `end_ns`, or `observed_ns` when that is 0."""

    signal: Literal["span", "log"]
    attributes: Mapping[str, Value]
    scope_name: str = ""
    scope_version: str = ""
    service: str = ""
    trace_id: bytes = b""
    span_id: bytes = b""
    name: str = ""
    kind: int = 0
    status_code: int = 0
    status_message: str = ""
    parent_span_id: bytes = b""
    start_ns: int = 0
    end_ns: int = 0
    observed_ns: int = 0
    severity_text: str = ""
    severity_number: int = 0
    event_name: str = ""
    body: Value = None
    has_body: bool = False
    """Whether the log record has a body (an empty body is absent, not null)."""


def rebuild(item: Telemetry, seal: bytes) -> tuple[str, int, bytes]:
    """(chain id, seq, canonical record bytes) of the record `seal` attached to `item`;
    `SealError` for a seal that cannot be decoded or a record that cannot be written."""
    decoded = decode_seal(seal)
    chain_hex = decoded.chain_id.hex()
    try:
        data = seal_record(event(item, decoded), chain_hex, decoded.seq, decoded.prev.hex(),
                           decoded.logged_ns)
    except CanonicalizationError as error:
        raise SealError(f"the sealed item has no canonical form: {error}", chain_hex,
                        decoded.seq) from error
    return chain_hex, decoded.seq, data


def decode_seal(seal: bytes) -> Seal:
    """The seal's fields; `SealError` for anything but exactly the format above."""
    if not isinstance(seal, (bytes, bytearray)):
        raise SealError(f"{SEAL} is not bytes but {type(seal).__name__}")
    if len(seal) < 17:
        raise SealError(f"{SEAL} is {len(seal)} bytes, too short for a seal")
    if seal[0] != SEAL_VERSION:
        raise SealError(f"{SEAL} has format version {seal[0]}, not {SEAL_VERSION}")
    chain_id = bytes(seal[1:17])
    seq, at = _uvarint(seal, 17, chain_id.hex())
    if seq > MAX_SAFE_INTEGER:
        raise SealError(f"{SEAL} seq {seq} is beyond 2**53-1", chain_id.hex())
    logged, at = _uvarint(seal, at, chain_id.hex(), seq)
    rest = seal[at:]
    if len(rest) < 34:
        raise SealError(f"{SEAL} ends before its prev, policy and flags", chain_id.hex(), seq)
    prev, policy, flags = bytes(rest[:32]), _POLICIES.get(rest[32]), rest[33]
    if policy is None:
        raise SealError(f"{SEAL} has an unknown content policy {rest[32]:#04x}",
                        chain_id.hex(), seq)
    if flags & ~0b111:
        raise SealError(f"{SEAL} has unknown flags {flags:#04x}", chain_id.hex(), seq)
    present = (bool(flags & 1), bool(flags & 2), bool(flags & 4))
    hmacs = [b"", b"", b""]
    at = 34
    if policy == "hash":
        for part, there in enumerate(present):
            if there:
                hmacs[part] = bytes(rest[at:at + 32])
                at += 32
    if len(rest) != at:
        raise SealError(f"{SEAL} is {len(seal)} bytes, not the {len(seal) - len(rest) + at} "
                        f"its policy and flags make", chain_id.hex(), seq)
    return Seal(chain_id, seq, logged, prev, policy, present, (hmacs[0], hmacs[1], hmacs[2]))


def _uvarint(data: bytes | bytearray, at: int, chain_id: str,
             seq: int = -1) -> tuple[int, int]:
    """The LEB128 unsigned integer at `at` (at most 64 bits) and the offset after it."""
    value = shift = 0
    for index in range(at, min(at + 10, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                break
            return value, index + 1
        shift += 7
    raise SealError(f"{SEAL} has an unterminated or oversized varint at byte {at}",
                    chain_id, seq)


def event_id(logged_ns: int, chain_id: bytes, seq: int) -> str:
    """The event's UUIDv7 (32 hex digits), derived from its place so the seal need not carry
    it: Unix ms, then chain id bytes under the version and variant bits, then seq mod 2**32."""
    raw = bytearray(((logged_ns // 1_000_000) & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"))
    raw += bytes((0x70 | (chain_id[0] & 0x0F), chain_id[1], 0x80 | (chain_id[2] & 0x3F)))
    raw += chain_id[3:6] + (seq % 2**32).to_bytes(4, "big")
    return raw.hex()


def event(item: Telemetry, seal: Seal) -> dict[str, Any]:
    """The audit event of `item` as the gateway built it (mapping.go `event`)."""
    attributes = item.attributes
    span = item.signal == "span"
    time_ns = item.end_ns if span or item.end_ns else item.observed_ns
    if span:
        source: dict[str, Any] = {"signal": "span", "name": item.name,
                                  "kind": _name(SPAN_KINDS, item.kind),
                                  "status": _name(STATUS_CODES, item.status_code)}
        if item.status_message:
            source["status_message"] = item.status_message
        if any(item.parent_span_id):
            source["parent_span_id"] = item.parent_span_id.hex()
    else:
        source = {"signal": "log", "severity": item.severity_text}
        if item.event_name:
            source["event_name"] = item.event_name
    source["scope"] = {"name": item.scope_name, "version": item.scope_version}
    # Sealed input or output content was GenAI content: so the type holds when a later
    # processor removed the content attributes.
    inference = seal.present[0] or seal.present[1] or any(
        name.startswith(("gen_ai.", "ml.")) for name in attributes)
    built: dict[str, Any] = {"id": event_id(seal.logged_ns, seal.chain_id, seal.seq),
                             "type": "inference" if inference else "request",
                             "time": rfc3339_from_ns(time_ns), "source": source}
    model = {part: value for part, names in _MODEL
             if (value := _first_string(attributes, names)) is not None}
    if model:
        built["model"] = model
    operation = _first_string(attributes, _OPERATION) or (item.name if span else "")
    if operation:
        built["operation"] = operation
    if item.service:
        built["service"] = {"name": item.service}
    if any(item.trace_id):
        built["trace"] = {"trace_id": item.trace_id.hex(),
                          "span_id": (item.span_id or bytes(8)).hex()}
    if span:
        built["latency_ms"] = float(item.end_ns - item.start_ns) / 1e6
    failed = (item.status_code == STATUS_ERROR if span
              else item.severity_number >= SEVERITY_ERROR)
    if failed:
        built["error"] = {"type": _first_string(attributes, ("error.type",)) or "error"}
    for part, name in enumerate(_CONTENT):
        if seal.present[part]:
            built[name] = _capture(item, seal, part)
    kept = {name: json_value(value) for name, value in attributes.items()
            if not name.startswith("ai_audit.") and name not in _CONTENT_NAMES}
    if kept:
        built["attributes"] = kept
    return built


def _capture(item: Telemetry, seal: Seal, part: int) -> dict[str, Any]:
    """A content part under the seal's policy (capture.py's modes): only `full` holds the
    item's content, {attribute name: value} or {"body": value}."""
    if seal.policy == "hash":
        return {"policy": "hash", "hmac_sha256": seal.hmacs[part].hex()}
    if seal.policy == "none":
        return {"policy": "none"}
    if part == 2:
        return {"policy": "full", "value": {"body": json_value(item.body)}}
    names = INPUT_CONTENT if part == 0 else OUTPUT_CONTENT
    return {"policy": "full", "value": {name: json_value(item.attributes[name])
                                        for name in names if name in item.attributes}}


def _first_string(attributes: Mapping[str, Value], names: tuple[str, ...]) -> str | None:
    """The first of `names` whose value is a non-empty string (other types are skipped)."""
    for name in names:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _name(names: tuple[str, ...], value: int) -> str:
    """pdata's String() of an enum: its name, "" for a value it does not know."""
    return names[value] if 0 <= value < len(names) else ""


def json_value(value: Value) -> Any:
    """An attribute value as JSON data the record holds (I-JSON, RFC 7493): bytes as base64,
    integers beyond 2**53-1 as decimal strings, non-finite doubles as Go writes them."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(name): json_value(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    return None
