"""Signed checkpoints: a chain's size, head and Merkle root, signed with Ed25519.

A checkpoint commits to everything the chain held when it was issued, to the previous
checkpoint (so checkpoints form their own chain), to the counters of records that were
sampled out or failed before sealing, and to the hash of the sampling/redaction policy in
force. Someone who rewrites records cannot produce a matching checkpoint without the key; a
chain that stops without a `closed` checkpoint was cut short.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_ai_audit.integrity.keys import SigningKey, verify_signature
from otel_ai_audit.record.canonical import canonical_json

CHECKPOINT_VERSION = 1
SIGNATURE_CONTEXT = b"otel-ai-audit checkpoint v1\n"
"""Prefixed to the signed bytes so a checkpoint signature can never be replayed elsewhere."""


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One checkpoint of one chain; `payload` is what is signed (canonical JSON)."""

    chain_id: str
    index: int
    size: int
    head: str
    root: str
    prev_checkpoint: str
    issued_at_ns: int
    key_id: str
    closed: bool
    counters: dict[str, Any] = field(default_factory=dict)
    policy_hash: str = ""

    def payload(self) -> bytes:
        return canonical_json({
            "chain_id": self.chain_id,
            "closed": self.closed,
            "counters": self.counters,
            "head": self.head,
            "index": self.index,
            "issued_at": str(self.issued_at_ns),
            "key_id": self.key_id,
            "policy_hash": self.policy_hash,
            "prev_checkpoint": self.prev_checkpoint,
            "root": self.root,
            "size": self.size,
            "v": CHECKPOINT_VERSION,
        })

    @classmethod
    def from_payload(cls, payload: bytes) -> Checkpoint:
        """Parse signed bytes back (raises ValueError if they are not a checkpoint)."""
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("v") != CHECKPOINT_VERSION:
            raise ValueError(f"not a version {CHECKPOINT_VERSION} checkpoint")
        try:
            return cls(
                chain_id=str(data["chain_id"]), index=int(data["index"]), size=int(data["size"]),
                head=str(data["head"]), root=str(data["root"]),
                prev_checkpoint=str(data["prev_checkpoint"]),
                issued_at_ns=int(data["issued_at"]), key_id=str(data["key_id"]),
                closed=bool(data["closed"]), counters=dict(data["counters"]),
                policy_hash=str(data["policy_hash"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"checkpoint payload lacks or mistypes a field: {error}") from error


def combined_policy_hash(policies: Mapping[str, str]) -> str:
    """The `policy_hash` a checkpoint signs: SHA-256 of the RFC 8785 form of the active
    policies' own hashes by name (`{"capture": ..., "sampling": ...}`). One value pins every
    policy, and whoever holds one policy can still check its own hash."""
    return hashlib.sha256(canonical_json(dict(policies))).hexdigest()


def payload_hash(payload: bytes) -> str:
    """What the next checkpoint's `prev_checkpoint` holds."""
    return hashlib.sha256(payload).hexdigest()


def sign_payload(key: SigningKey, payload: bytes) -> bytes:
    return key.sign(SIGNATURE_CONTEXT + payload)


def signature_valid(public_key: Any, payload: bytes, signature: bytes) -> bool:
    return verify_signature(public_key, signature, SIGNATURE_CONTEXT + payload)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as stored: the exact signed bytes and the signature over them."""

    payload: bytes
    signature: bytes
    key_id: str
    chain_id: str
    index: int
    size: int
