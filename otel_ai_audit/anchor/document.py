"""The anchor: a signed, chained statement of every chain's latest signed checkpoint.

An anchor lists each chain whose state it is the first to witness or that is still open (a
chain closed and anchored before is not repeated: its final state is in an earlier anchor,
which the chain of anchors already commits to), with that chain's newest checkpoint (index,
size, head, Merkle root, key, closed, and the hash of the checkpoint's signed bytes), plus the
chains opened and closed since the previous anchor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint, payload_hash
from otel_ai_audit.integrity.keys import SigningKey, verify_signature
from otel_ai_audit.record.canonical import canonical_json

ANCHOR_VERSION = 1
ANCHOR_TYPE = "otel-ai-audit/anchor"
SIGNATURE_CONTEXT = b"otel-ai-audit anchor v1\n"
"""Prefixed to the signed bytes: an anchor signature can never pass for a checkpoint's."""
GENESIS = "0" * 64
"""The `prev` of a store's first anchor."""


@dataclass(frozen=True)
class AnchoredChain:
    """One chain as an anchor saw it; `checkpoint` is None for a chain with no checkpoint yet
    (its existence is witnessed all the same)."""

    chain_id: str
    index: int | None = None
    size: int = 0
    head: str = ""
    root: str = ""
    key_id: str = ""
    closed: bool = False
    checkpoint_hash: str = ""

    @classmethod
    def of(cls, chain_id: str, signed: SignedCheckpoint | None) -> AnchoredChain:
        if signed is None:
            return cls(chain_id)
        checkpoint = Checkpoint.from_payload(signed.payload)
        return cls(chain_id, checkpoint.index, checkpoint.size, checkpoint.head,
                   checkpoint.root, checkpoint.key_id, checkpoint.closed,
                   payload_hash(signed.payload))

    def to_json(self) -> dict[str, Any]:
        if self.index is None:
            return {"id": self.chain_id, "checkpoint": None}
        return {"id": self.chain_id, "checkpoint": {
            "index": self.index, "size": self.size, "head": self.head, "root": self.root,
            "key_id": self.key_id, "closed": self.closed, "hash": self.checkpoint_hash}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnchoredChain:
        checkpoint = data["checkpoint"]
        if checkpoint is None:
            return cls(str(data["id"]))
        return cls(str(data["id"]), int(checkpoint["index"]), int(checkpoint["size"]),
                   str(checkpoint["head"]), str(checkpoint["root"]), str(checkpoint["key_id"]),
                   bool(checkpoint["closed"]), str(checkpoint["hash"]))


@dataclass(frozen=True, kw_only=True)
class Anchor:
    seq: int
    prev: str
    store_id: str
    issued_at_ns: int
    key_id: str
    daily: bool
    retention_days: int
    chains: tuple[AnchoredChain, ...] = ()
    opened: tuple[str, ...] = ()
    closed: tuple[str, ...] = ()

    def payload(self) -> bytes:
        return canonical_json({
            "chains": [chain.to_json() for chain in self.chains],
            "closed": list(self.closed),
            "daily": self.daily,
            "issued_at": str(self.issued_at_ns),
            "key_id": self.key_id,
            "opened": list(self.opened),
            "prev": self.prev,
            "retention_days": self.retention_days,
            "seq": self.seq,
            "store_id": self.store_id,
            "type": ANCHOR_TYPE,
            "v": ANCHOR_VERSION,
        })

    @classmethod
    def from_payload(cls, payload: bytes) -> Anchor:
        """Parse signed bytes back (ValueError if they are not an anchor)."""
        try:
            data = json.loads(payload)
            if data.get("type") != ANCHOR_TYPE or data.get("v") != ANCHOR_VERSION:
                raise ValueError(f"not a version {ANCHOR_VERSION} anchor")
            return cls(
                seq=int(data["seq"]), prev=str(data["prev"]), store_id=str(data["store_id"]),
                issued_at_ns=int(data["issued_at"]), key_id=str(data["key_id"]),
                daily=bool(data["daily"]), retention_days=int(data["retention_days"]),
                chains=tuple(AnchoredChain.from_json(c) for c in data["chains"]),
                opened=tuple(str(c) for c in data["opened"]),
                closed=tuple(str(c) for c in data["closed"]))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"anchor payload lacks or mistypes a field: {error}") from error


def anchor_hash(payload: bytes) -> str:
    """What the next anchor's `prev` holds, and what the time-stamp token is over."""
    return hashlib.sha256(payload).hexdigest()


def sign_anchor(key: SigningKey, payload: bytes) -> bytes:
    return key.sign(SIGNATURE_CONTEXT + payload)


def anchor_signature_valid(public_key: Any, payload: bytes, signature: bytes) -> bool:
    return verify_signature(public_key, signature, SIGNATURE_CONTEXT + payload)
