"""A trail read whole from an export (a Splunk search export, the HEC payload, the Collector's
file output): a `RecordSource` the verifier checks exactly as it checks the embedded store.

Exports come in any order (Splunk returns the newest first) and, where the target has no
document ids (Splunk), with repeats of an item delivered twice. So items are sorted by their
stored position, and an item repeated with *identical* bytes at the same position is one item
delivered twice: it is counted in `repeats` and kept once. A different record at the same
position stays, and the verifier reports it as a duplicate or a fork.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from otel_ai_audit.errors import SourceError
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.record.schema import parse_header, parse_record


class ExportError(SourceError):
    """An export file cannot be read as one: missing, unreadable, or not in its format."""


class ExportSource:
    """Records (chain id, position, bytes), checkpoints and keys, held in memory."""

    def __init__(self, description: str, records: Iterable[tuple[str, int, bytes]],
                 checkpoints: Iterable[SignedCheckpoint], keys: Mapping[str, str]) -> None:
        self.description = description
        self.repeats = 0
        """Items that arrived more than once, identical (collapsed to one)."""
        chains: dict[str, dict[tuple[int, bytes], None]] = defaultdict(dict)
        for chain_id, position, data in records:
            if (position, data) in chains[chain_id]:
                self.repeats += 1
            chains[chain_id][(position, data)] = None
        self._records = {chain_id: sorted(items, key=lambda item: item[0])
                         for chain_id, items in chains.items()}
        signed: dict[str, dict[tuple[int, bytes, bytes], SignedCheckpoint]] = defaultdict(dict)
        for checkpoint in checkpoints:
            key = (checkpoint.index, checkpoint.payload, checkpoint.signature)
            if key in signed[checkpoint.chain_id]:
                self.repeats += 1
            signed[checkpoint.chain_id][key] = checkpoint
        self._checkpoints = {chain_id: sorted(items.values(), key=lambda c: c.index)
                             for chain_id, items in signed.items()}
        self._keys = dict(keys)

    def chain_ids(self) -> list[str]:
        return sorted(self._records.keys() | self._checkpoints.keys())

    def records(self, chain_id: str) -> Iterator[tuple[int, bytes]]:
        yield from self._records.get(chain_id, [])

    def record_at(self, chain_id: str, seq: int) -> bytes | None:
        return next((data for position, data in self._records.get(chain_id, [])
                     if position == seq), None)

    def checkpoints(self, chain_id: str) -> list[SignedCheckpoint]:
        return list(self._checkpoints.get(chain_id, []))

    def public_keys(self) -> dict[str, str]:
        return dict(self._keys)


Item = tuple[str, Any]
"""One item of an export: ("record", (chain id, position, bytes)), ("checkpoint",
SignedCheckpoint) or ("key", (key id, pem))."""


def export_source(description: str, items: Iterable[Item]) -> ExportSource:
    """The source of an export's items, in any order."""
    records: list[tuple[str, int, bytes]] = []
    checkpoints: list[SignedCheckpoint] = []
    keys: dict[str, str] = {}
    for kind, value in items:
        if kind == "record":
            records.append(value)
        elif kind == "checkpoint":
            checkpoints.append(value)
        else:
            keys[value[0]] = value[1]
    return ExportSource(description, records, checkpoints, keys)


def record_position(data: bytes, chain_id: Any = None, seq: Any = None) -> tuple[str, int]:
    """Where a record is stored: the position the target indexed it under (`chain_id`, `seq`,
    when given), else what its own bytes say; ("", -1) for bytes that say nothing."""
    if isinstance(chain_id, list) and chain_id:
        chain_id = chain_id[0]
    if isinstance(chain_id, str) and chain_id and (position := _integer(seq)) is not None:
        return chain_id, position
    header = parse_header(data)
    if header is not None:
        return header.chain_id, header.seq
    try:
        chain = parse_record(data).get("chain")
        return str(chain["id"]), _integer(chain["seq"], -1)
    except (ValueError, KeyError, TypeError):
        return "", -1


def signed_checkpoint(fields: Mapping[str, Any]) -> SignedCheckpoint:
    """A checkpoint from its exported fields (payload and signature base64)."""
    return SignedCheckpoint(
        decode_base64(fields.get("payload")), decode_base64(fields.get("signature")),
        str(fields.get("key_id", "")), str(fields.get("chain_id", "")),
        _integer(fields.get("index"), -1), _integer(fields.get("size"), -1))


def decode_base64(value: Any) -> bytes:
    """Exported binary's bytes; anything else as its text, for the verifier to reject."""
    if not isinstance(value, str):
        return b"" if value is None else str(value).encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value.encode()


def _integer(value: Any, default: int | None = None) -> Any:
    """An integer, or its decimal text (Splunk exports fields as strings; multi-valued
    fields as lists, whose first value is taken)."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    return default
