"""Reading a trail into what the checks work on: pass 1 of the verifier, and the store's keys.

Pass 1 streams a chain's records once: it hashes each (RFC 9162 leaf hash of the stored
bytes) and reads the chain header from the canonical prefix. Only hashes and headers are kept
(about 80 bytes a record, in numpy arrays), so a chain of millions of records verifies in
bounded memory.
"""

from __future__ import annotations

import binascii
import hashlib
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.integrity.merkle import GENESIS
from otel_ai_audit.record.canonical import MAX_SAFE_INTEGER
from otel_ai_audit.record.schema import HEADER_PATTERN, SCHEMA_VERSION, parse_record
from otel_ai_audit.store.sqlite import StoreCorruptError
from otel_ai_audit.verify.findings import Finding, Kind
from otel_ai_audit.verify.source import RecordSource

OK, NONCANONICAL, MALFORMED, FOREIGN = 0, 1, 2, 3
"""What pass 1 made of a record's bytes (`ChainData.states`)."""
_ROTATION_MARK = b'"type":"key_rotation"'
_FORK_MARK = b'"type":"chain_fork"'
_INT64_MAX = 2**63 - 1

Positions = npt.NDArray[np.intp]
"""Positions of records in stored order (indexes into the `ChainData` arrays)."""


@dataclass(kw_only=True)
class ChainData:
    """Pass-1 output for one chain (positions are in stored order)."""

    columns: npt.NDArray[np.int64]
    seqs: npt.NDArray[np.int64]
    logged: npt.NDArray[np.int64]
    states: npt.NDArray[np.uint8]
    leaves: npt.NDArray[np.uint8]
    prevs: npt.NDArray[np.uint8]
    rotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    forks: dict[int, str] = field(default_factory=dict)
    """seq of each chain_fork record: the child chain it names."""
    corrupt: str | None = None

    @property
    def size(self) -> int:
        return len(self.seqs)

    def extent(self, order: Positions) -> tuple[int, bool]:
        """(count, contiguous) of the records at `order` (one per seq, ascending): `count` is
        one past the highest seq held, as many records as the chain should hold up to there;
        `contiguous` says none of them is missing."""
        count = int(self.seqs[order[-1]]) + 1 if len(order) else 0
        return count, len(order) == count


def read_chain(source: RecordSource, chain_id: str) -> ChainData:
    """Pass 1: hash every record and read its header, keeping only fixed-size facts."""
    columns, seqs, logged = array("q"), array("q"), array("q")
    states = bytearray()
    leaves = bytearray()
    prevs = bytearray()
    rotations: dict[int, dict[str, Any]] = {}
    forks: dict[int, str] = {}
    chain_bytes = chain_id.encode()
    match_header = HEADER_PATTERN.match
    sha256 = hashlib.sha256
    unhex = binascii.unhexlify
    corrupt = None
    try:
        for column, data in source.records(chain_id):
            leaves += sha256(b"\x00" + data).digest()
            match = match_header(data)
            columns.append(column)
            if match is not None:
                cid, logged_ns, prev, seq, version = match.groups()
                prevs += unhex(prev)
                seqs.append(int(seq))
                # Clamped: a forged 20-digit time must be reported, not overflow the array.
                logged.append(min(int(logged_ns), _INT64_MAX)
                              if int(version) <= SCHEMA_VERSION else -1)
                states.append(OK if cid == chain_bytes else FOREIGN)
                if _ROTATION_MARK in data:
                    try:
                        rotations[int(seq)] = parse_record(data)
                    except ValueError:
                        pass
                if _FORK_MARK in data:
                    child = forked_child(data)
                    if child is not None:
                        forks[int(seq)] = child
                continue
            header = _fallback_header(data)
            if header is None:
                prevs += GENESIS
                seqs.append(-1)
                logged.append(0)
                states.append(MALFORMED)
                continue
            cid_text, logged_ns_int, prev_bytes, seq_int = header
            prevs += prev_bytes
            seqs.append(seq_int)
            logged.append(logged_ns_int)
            states.append(NONCANONICAL if cid_text == chain_id else FOREIGN)
    except StoreCorruptError as error:
        corrupt = f"reading stopped early: {error}"
    n = len(seqs)
    return ChainData(
        columns=np.frombuffer(columns, dtype=np.int64) if n else np.zeros(0, np.int64),
        seqs=np.frombuffer(seqs, dtype=np.int64) if n else np.zeros(0, np.int64),
        logged=np.frombuffer(logged, dtype=np.int64) if n else np.zeros(0, np.int64),
        states=np.frombuffer(bytes(states), dtype=np.uint8),
        leaves=np.frombuffer(bytes(leaves), dtype=np.uint8).reshape(n, 32),
        prevs=np.frombuffer(bytes(prevs), dtype=np.uint8).reshape(n, 32),
        rotations=rotations,
        forks=forks,
        corrupt=corrupt,
    )


def _fallback_header(data: bytes) -> tuple[str, int, bytes, int] | None:
    """Header of a record whose bytes are valid JSON but not in canonical form.

    None unless the fields fit what pass 1 keeps (a 32-byte prev, a seq within JSON's safe
    integers): anything else is not a record, whatever an attacker wrote there.
    """
    try:
        chain = parse_record(data)["chain"]
        prev, seq = bytes.fromhex(chain["prev"]), int(chain["seq"])
        logged_ns = min(max(int(chain["logged"]), 0), _INT64_MAX)
        chain_id = str(chain["id"])
    except (ValueError, KeyError, TypeError):
        return None
    if len(prev) != len(GENESIS) or not 0 <= seq <= MAX_SAFE_INTEGER:
        return None
    return chain_id, logged_ns, prev, seq


def forked_child(data: bytes) -> str | None:
    """The child a chain_fork record names (the marker may also be application data)."""
    try:
        event = parse_record(data)["event"]
    except (ValueError, KeyError, TypeError):
        return None
    child = event.get("child_chain_id") if event.get("type") == "chain_fork" else None
    return str(child) if child else None


def parent_chain(source: RecordSource, chain_id: str) -> str | None:
    """The parent a forked chain's chain_open record names (None for a first chain)."""
    first = source.record_at(chain_id, 0)
    if first is None or b'"parent_chain_id"' not in first:
        return None
    try:
        event = parse_record(first)["event"]
    except (ValueError, KeyError, TypeError):
        return None
    parent = event.get("parent_chain_id") if event.get("type") == "chain_open" else None
    return str(parent) if parent else None


def read_store_keys(source: RecordSource,
                    findings: list[Finding]) -> dict[str, Ed25519PublicKey]:
    """The public keys the store holds for itself, each checked against the id it is filed
    under; KEY_MISMATCH into `findings` for one unreadable or substituted."""
    keys: dict[str, Ed25519PublicKey] = {}
    for stored_id, pem in source.public_keys().items():
        try:
            public_key = load_public_key_pem(pem)
        except ValueError as error:
            findings.append(Finding(None, None, Kind.KEY_MISMATCH,
                                    f"stored key {stored_id} is unreadable: {error}"))
            continue
        if key_id(public_key) != stored_id:
            findings.append(Finding(
                None, None, Kind.KEY_MISMATCH,
                f"stored public key filed under {stored_id} has fingerprint "
                f"{key_id(public_key)}: the key was substituted"))
            continue
        keys[stored_id] = public_key
    return keys
