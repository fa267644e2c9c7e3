"""Reading a trail into what the checks work on: pass 1 of the verifier, and the store's keys.

Pass 1 streams a chain's records once, in batches: it hashes each (RFC 9162 leaf hash of the
stored bytes) and reads the chain header from the canonical prefix. Only hashes and headers are
kept (about 80 bytes a record, in numpy arrays), so a chain of millions of records verifies in
bounded memory.

Per batch the work is done in C where it can be: one hashlib call per record, the headers of
the whole batch checked and decoded at fixed positions with numpy, the type markers searched
in the joined batch. Only a record whose header is not laid out as the writer lays it out
(another chain's, a short logged time, damage) goes through `HEADER_PATTERN` one by one, so
what a record is never depends on which way it was read.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from numpy.lib.stride_tricks import sliding_window_view

from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.integrity.merkle import GENESIS, MerkleAccumulator
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
BATCH = 4096
_first, _second = itemgetter(0), itemgetter(1)
"""Records pass 1 handles at once (the store's fetch size)."""

Positions = npt.NDArray[np.intp]
"""Positions of records in stored order (indexes into the `ChainData` arrays)."""
Rows = Sequence[tuple[int, bytes]]
"""(stored position/seq, canonical bytes) of records in stored order."""


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
    prefix: dict[int, MerkleAccumulator] = field(default_factory=dict)
    """Merkle trees of the first `size` records in stored order, for sizes worked out while
    reading (see `otel_ai_audit.verify.parallel`); `roots.PrefixRoots` uses them when stored
    order is the chain's order."""

    @property
    def size(self) -> int:
        return len(self.seqs)

    def extent(self, order: Positions) -> tuple[int, bool]:
        """(count, contiguous) of the records at `order` (one per seq, ascending): `count` is
        one past the highest seq held, as many records as the chain should hold up to there;
        `contiguous` says none of them is missing."""
        count = int(self.seqs[order[-1]]) + 1 if len(order) else 0
        return count, len(order) == count

    @classmethod
    def joined(cls, parts: Sequence[ChainData]) -> ChainData:
        """The data of consecutive runs of one chain's records, as if read in one pass."""
        rotations: dict[int, dict[str, Any]] = {}
        forks: dict[int, str] = {}
        for part in parts:
            rotations.update(part.rotations)
            forks.update(part.forks)
        return cls(
            columns=np.concatenate([part.columns for part in parts]),
            seqs=np.concatenate([part.seqs for part in parts]),
            logged=np.concatenate([part.logged for part in parts]),
            states=np.concatenate([part.states for part in parts]),
            leaves=np.concatenate([part.leaves for part in parts]),
            prevs=np.concatenate([part.prevs for part in parts]),
            rotations=rotations, forks=forks)


def record_batches(source: RecordSource, chain_id: str) -> Iterator[Rows]:
    """The chain's records in lists of up to `BATCH`: the store's own batches if it has them."""
    batches = getattr(source, "record_batches", None)
    if batches is not None:
        yield from batches(chain_id)
        return
    rows: list[tuple[int, bytes]] = []
    try:
        for row in source.records(chain_id):
            rows.append(row)
            if len(rows) == BATCH:
                yield rows
                rows = []
    except StoreCorruptError:
        if rows:  # what was read before reading broke off is verified too
            yield rows
        raise
    if rows:
        yield rows


def read_chain(source: RecordSource, chain_id: str,
               progress: Callable[[int], None] | None = None) -> ChainData:
    """Pass 1: hash every record and read its header, keeping only fixed-size facts."""
    return Pass1(chain_id).read(record_batches(source, chain_id), progress)


class Pass1:
    """Pass 1 over consecutive batches of one chain's records."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self._chain_bytes = chain_id.encode()
        self._layout = _Layout(self._chain_bytes)
        self._parts: list[ChainData] = []

    def read(self, batches: Iterable[Rows],
             progress: Callable[[int], None] | None = None) -> ChainData:
        """Every batch into the chain's data; damage met while reading ends it (`corrupt`)."""
        try:
            for rows in batches:
                self._parts.append(self._batch(rows))
                if progress is not None:
                    progress(len(rows))
        except StoreCorruptError as error:
            return self._result(f"reading stopped early: {error}")
        return self._result(None)

    def _result(self, corrupt: str | None) -> ChainData:
        data = ChainData.joined(self._parts) if self._parts else ChainData(
            columns=np.zeros(0, np.int64), seqs=np.zeros(0, np.int64),
            logged=np.zeros(0, np.int64), states=np.zeros(0, np.uint8),
            leaves=np.zeros((0, 32), np.uint8), prevs=np.zeros((0, 32), np.uint8))
        data.corrupt = corrupt
        return data

    def _batch(self, rows: Rows) -> ChainData:
        datas = list(map(_second, rows))
        count = len(datas)
        sha256 = hashlib.sha256
        leaves = b"".join([sha256(b"\x00" + data).digest() for data in datas])
        joined = b"\x00".join(datas) + _PADDING
        starts = np.zeros(count, np.int64)
        np.cumsum(np.fromiter(map(len, datas), np.int64, count)[:-1] + 1, out=starts[1:])
        seqs, logged, prevs, fast = self._layout.read(np.frombuffer(joined, np.uint8), starts,
                                                      leaves)
        states = np.full(count, OK, np.uint8)
        canonical = fast.copy()
        for at in np.flatnonzero(~fast).tolist():
            states[at], seqs[at], logged[at], prev, canonical[at] = self._header(datas[at])
            prevs[at] = np.frombuffer(prev, np.uint8)
        part = ChainData(columns=np.fromiter(map(_first, rows), np.int64, count),
                         seqs=seqs, logged=logged,
                         states=states, leaves=np.frombuffer(leaves, np.uint8).reshape(count, 32),
                         prevs=prevs)
        marked = _holding(joined, starts, _ROTATION_MARK) | _holding(joined, starts, _FORK_MARK)
        for at in sorted(marked):
            if canonical[at]:
                _read_marks(datas[at], int(seqs[at]), part)
        return part

    def _header(self, data: bytes) -> tuple[int, int, int, bytes, bool]:
        """(state, seq, logged, prev, canonical) of a record the fixed layout did not fit."""
        match = HEADER_PATTERN.match(data)
        if match is not None:
            cid, logged_ns, prev, seq, version = match.groups()
            # Clamped: a forged 20-digit time must be reported, not overflow the array.
            logged = min(int(logged_ns), _INT64_MAX) if int(version) <= SCHEMA_VERSION else -1
            return (OK if cid == self._chain_bytes else FOREIGN, int(seq), logged,
                    binascii.unhexlify(prev), True)
        header = _fallback_header(data)
        if header is None:
            return MALFORMED, -1, 0, GENESIS, False
        cid_text, logged_ns_int, prev_bytes, seq_int = header
        return (NONCANONICAL if cid_text == self.chain_id else FOREIGN, seq_int, logged_ns_int,
                prev_bytes, False)


def _read_marks(data: bytes, seq: int, part: ChainData) -> None:
    """The key rotation or chain fork a canonical record's marker may announce."""
    if _ROTATION_MARK in data:
        try:
            part.rotations[seq] = parse_record(data)
        except ValueError:
            pass
    if _FORK_MARK in data:
        child = forked_child(data)
        if child is not None:
            part.forks[seq] = child


def _holding(joined: bytes, starts: npt.NDArray[np.int64], mark: bytes) -> set[int]:
    """Which records of a joined batch hold `mark` (it has no NUL, the records' separator, so
    it never spans two of them)."""
    bounds = starts.tolist()
    found = set()
    at = joined.find(mark)
    while at >= 0:
        found.add(bisect_right(bounds, at) - 1)
        at = joined.find(mark, at + 1)
    return found


# The header as the writer lays it out (`HEADER_PATTERN` with a 19-digit logged time, every
# time since 2001, and a one-digit version): literals and fields at fixed offsets up to the
# seq, whose digits are counted per record.
_LITERALS = [(0, b'{"chain":{"id":"'), (48, b'","logged":"'), (79, b'","prev":"'),
             (153, b'","seq":')]
_ID, _LOGGED, _PREV, _SEQ = 16, 60, 89, 161
_TAIL = b',"v":1},"event":{'
"""After the seq; the version digit (`1` here) may be any of 1-9."""
_WIDTH = 200
"""Bytes read of each record: the longest header (16 seq digits) fits, in 25 whole words."""
_PADDING = bytes(_WIDTH)
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_LOGGED_POWERS = 10 ** np.arange(19, dtype=np.uint64)[::-1]
_SEQ_POWERS = [10 ** np.arange(length, dtype=np.int64)[::-1] for length in range(17)]
_CHAIN_ID = re.compile(rb"[0-9a-f]{32}")


class _Layout:
    """The fixed part of one chain's headers, compared a 64-bit word at a time."""

    def __init__(self, chain_id: bytes) -> None:
        self.usable = _CHAIN_ID.fullmatch(chain_id) is not None
        template, mask = bytearray(_WIDTH), bytearray(_WIDTH)
        for at, literal in [*_LITERALS, (_ID, chain_id if self.usable else bytes(32))]:
            template[at:at + len(literal)] = literal
            mask[at:at + len(literal)] = b"\xff" * len(literal)
        self.template = np.frombuffer(bytes(template), np.uint64)
        self.mask = np.frombuffer(bytes(mask), np.uint64)
        self.tail = np.frombuffer(_TAIL, np.uint8)
        self.tail_mask = np.ones(len(_TAIL), bool)
        self.tail_mask[5] = False

    def read(self, joined: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], leaves: bytes,
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8],
                        npt.NDArray[np.bool_]]:
        """(seqs, logged, prevs, fits) of the records starting at `starts` in a NUL-joined
        batch, whose leaf hashes are `leaves`.

        `fits` marks the records whose header is this chain's in the writer's layout: for them
        the values are what `HEADER_PATTERN` reads. A NUL (the separator, or the padding after
        the last record) fits no literal, digit or hex position, so no header is read across a
        record's end.
        """
        count = len(starts)
        head = sliding_window_view(joined, _WIDTH)[starts]
        fits = ((head.view(np.uint64) & self.mask) == self.template).all(axis=1)
        fits &= self.usable
        logged_digits = head[:, _LOGGED:_LOGGED + 19] - 48
        fits &= logged_digits.max(axis=1) <= 9
        # A prev that spells its predecessor's leaf hash (every record of an intact chain but
        # the batch's first) is that hash; only the others are decoded from hex.
        prev_text = head[:, _PREV:_PREV + 64]
        leaf_text = np.frombuffer(leaves.hex().encode(), np.uint8).reshape(count, 64)
        linked = np.zeros(count, bool)
        linked[1:] = (prev_text[1:].view(np.uint64) == leaf_text[:-1].view(np.uint64)).all(axis=1)
        prevs = np.empty((count, 32), np.uint8)
        prevs[1:] = np.frombuffer(leaves, np.uint8).reshape(count, 32)[:-1]
        unlinked = np.flatnonzero(~linked)
        hex_values = _HEX[prev_text[unlinked]]
        fits[unlinked] &= hex_values.max(axis=1, initial=0) < 16
        prevs[unlinked] = np.bitwise_or(hex_values[:, 0::2] << np.uint8(4), hex_values[:, 1::2])
        seq_digits = head[:, _SEQ:_SEQ + 17] - 48
        seq_length = np.argmin(seq_digits <= 9, axis=1)
        seqs = np.zeros(count, np.int64)
        version = np.zeros(count, np.uint8)
        tail_fits = np.zeros(count, bool)
        for length in np.unique(seq_length).tolist():
            if not 1 <= length <= 16:
                continue
            rows = seq_length == length
            every = bool(rows.all())
            part = head if every else head[rows]
            tail = part[:, _SEQ + length:_SEQ + length + len(_TAIL)]
            digit = tail[:, 5] - 49
            ok = ((tail == self.tail) | ~self.tail_mask).all(axis=1) & (digit <= 8)
            if length > 1:
                ok &= part[:, _SEQ] != 48
            value = (part[:, _SEQ:_SEQ + length] - 48).astype(np.int64) @ _SEQ_POWERS[length]
            if every:
                seqs, version, tail_fits = value, digit + 1, ok
            else:
                seqs[rows], version[rows], tail_fits[rows] = value, digit + 1, ok
        fits &= tail_fits
        logged = np.minimum((logged_digits.astype(np.uint64) * _LOGGED_POWERS).sum(axis=1),
                            np.uint64(_INT64_MAX)).astype(np.int64)
        logged[version > SCHEMA_VERSION] = -1
        return seqs, logged, prevs, fits


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
