"""What verification can find, each with the place it was found (chain, seq)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Kind(str, Enum):
    """Finding kinds. Every one of them makes verification fail (exit code 1)."""

    RECORD_MODIFIED = "record_modified"
    """The record's bytes differ from what its successor or a checkpoint committed to."""
    NONCANONICAL = "noncanonical"
    """The record was re-serialised: same meaning, different bytes than were hashed."""
    MALFORMED_RECORD = "malformed_record"
    """The stored bytes are not a record at all."""
    TORN_RECORD = "torn_record"
    """The last, unsigned record was cut off mid-write (a crash during the write)."""
    GAP = "gap"
    """Records missing in the middle of a chain."""
    TRUNCATED = "truncated"
    """Records a signed checkpoint covers are missing at the end of the chain."""
    INSERTED = "inserted"
    """A record that is not part of the hash-linked chain claims a place in it."""
    REORDERED = "reordered"
    """Records are stored out of their sequence order."""
    DUPLICATE = "duplicate"
    """A record appears more than once (replay)."""
    SPLICED = "spliced"
    """A record of another chain was placed in this one."""
    INDEX_MISMATCH = "index_mismatch"
    """A stored index field (seq, time, type, id) disagrees with the record's own bytes."""
    TIMESTAMP_BACKWARDS = "timestamp_backwards"
    """A record's or checkpoint's time is earlier than its predecessor's."""
    CHAIN_NOT_CLOSED = "chain_not_closed"
    """No closing checkpoint: the writer crashed or was killed, or the tail was removed."""
    UNRECOVERED_JOURNAL = "unrecovered_journal"
    """Acknowledged records wait in a journal a killed process left beside the store: the next
    process that opens the store for writing commits them, or `otel-ai-audit recover STORE`."""
    RECORD_AFTER_CLOSE = "record_after_close"
    """Records (or checkpoints) appear after the chain's closing checkpoint."""
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """The records do not hash to what a signed checkpoint committed to (history rewritten)."""
    BAD_SIGNATURE = "bad_signature"
    """A checkpoint's signature does not verify: it was edited or forged."""
    UNTRUSTED_KEY = "untrusted_key"
    """A checkpoint is signed by a key the verifier was not told to trust."""
    SELF_ASSERTED_KEY = "self_asserted_key"
    """Only the store itself vouches for the signing key; pass --public-key to verify trust."""
    UNKNOWN_KEY = "unknown_key"
    """A checkpoint names a key that neither the verifier nor the store knows."""
    KEY_MISMATCH = "key_mismatch"
    """A stored public key does not match the key id it is filed under (substituted key)."""
    CHECKPOINT_CHAIN_BROKEN = "checkpoint_chain_broken"
    """Checkpoints do not link to their predecessor, or one is missing."""
    MALFORMED_CHECKPOINT = "malformed_checkpoint"
    """A checkpoint's stored bytes or index fields are not a valid checkpoint."""
    FORK = "fork"
    """Two checkpoints of the same chain commit to different histories."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """The record was written by a newer schema version than this verifier reads."""
    STORE_CORRUPT = "store_corrupt"
    """The storage itself reports damage; what could be read was verified."""
    DECISIONS_LOST = "decisions_lost"
    """A signed checkpoint counts decisions that never reached the chain (by cause)."""
    ROLLED_BACK = "rolled_back"
    """The store holds a chain as an earlier anchor saw it: a later anchor saw it longer."""
    MISSING_CHAIN = "missing_chain"
    """An anchor witnessed a chain that the trail no longer holds."""
    TRUNCATED_BELOW_ANCHOR = "truncated_below_anchor"
    """A chain holds fewer records than an anchor witnessed (checkpoints cut with them)."""
    HISTORY_REWRITTEN = "history_rewritten"
    """A chain's records do not hash to the Merkle root an anchor witnessed (re-signed)."""
    ANCHOR_MISSING = "anchor_missing"
    """An anchor of the anchor chain is absent, or an anchor does not link to its predecessor."""
    ANCHOR_UNSIGNED = "anchor_unsigned"
    """An anchor's signature or RFC 3161 time-stamp is absent, invalid or untrusted."""
    ANCHOR_RETENTION_SHORT = "anchor_retention_short"
    """An anchor is not retention-locked in compliance mode for as long as required."""
    ANCHOR_REPLACED = "anchor_replaced"
    """An anchor object was written again: a second version of it exists."""


ANCHOR_KINDS = frozenset({Kind.ANCHOR_MISSING, Kind.ANCHOR_UNSIGNED, Kind.ANCHOR_RETENTION_SHORT,
                          Kind.ANCHOR_REPLACED})
"""Findings about the anchor chain itself: their `seq` is the anchor's number."""


@dataclass(frozen=True)
class Finding:
    chain_id: str | None
    seq: int | None
    kind: Kind
    detail: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    def __str__(self) -> str:
        if self.kind in ANCHOR_KINDS:
            return f"anchors: {self.kind.value}: {self.detail}"
        where = f"chain {self.chain_id}" if self.chain_id else "store"
        if self.seq is not None:
            where += f" seq {self.seq}"
        return f"{where}: {self.kind.value}: {self.detail}"


@dataclass
class ChainSummary:
    chain_id: str
    records: int
    checkpoints: int
    closed: bool
    signed_size: int
    key_ids: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The outcome of verifying one store; `ok` means intact, complete and trusted."""

    source: str
    trust: str
    findings: list[Finding] = field(default_factory=list)
    chains: list[ChainSummary] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def record_count(self) -> int:
        return sum(chain.records for chain in self.chains)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chains": len(self.chains),
            "records": self.record_count,
            "findings": [finding.to_json() for finding in self.findings],
            "source": self.source,
            "trust": self.trust,
            "notices": self.notices,
            "chain_summaries": [asdict(chain) for chain in self.chains],
        }
