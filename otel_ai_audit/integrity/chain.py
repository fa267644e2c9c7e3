"""A per-process hash chain: sequence numbers, `prev` links, a running Merkle tree.

Not thread-safe by design: one writer thread owns a chain and seals records in the order
they were sequenced (see `otel_ai_audit.pipeline.writer`).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from otel_ai_audit.integrity.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    payload_hash,
    sign_payload,
)
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import GENESIS, MerkleAccumulator, leaf_hash
from otel_ai_audit.record.schema import plain, seal, seal_plain


def new_chain_id() -> str:
    return secrets.token_hex(16)


class SealedRecord(NamedTuple):
    """A record the chain sealed, ready to persist: its canonical bytes and the columns the store
    indexes it by (defined here, not in `otel_ai_audit.store`, which depends on this layer).

    A tuple in column order, so batches go to SQLite as they are (tens of thousands a second).
    """

    chain_id: str
    seq: int
    time: str
    type: str
    record_id: str
    data: bytes


class Chain:
    """The state of one chain: next seq, head hash, Merkle accumulator, last checkpoint."""

    def __init__(self, chain_id: str | None = None) -> None:
        self.chain_id = chain_id or new_chain_id()
        self.head = GENESIS
        self.tree = MerkleAccumulator()
        self.checkpoint_index = 0
        self.last_checkpoint_hash = ""
        self.last_checkpoint_size = 0
        self.closed = False
        self._plain_id = type(self.chain_id) is str and plain(self.chain_id)
        """The usual chain id, written into each record as it is (`seal_plain`)."""

    @property
    def size(self) -> int:
        return self.tree.size

    def seal(self, event: dict[str, Any], logged_ns: int) -> SealedRecord:
        """Place `event` at the end of the chain (raises CanonicalizationError on bad data)."""
        if self.closed:
            raise RuntimeError(f"chain {self.chain_id} is closed")
        seq = self.tree.size
        if self._plain_id and type(logged_ns) is int and logged_ns >= 0:
            data = seal_plain(event, self.chain_id, seq, self.head.hex(), str(logged_ns))
        else:
            data = seal(event, self.chain_id, seq, self.head.hex(), logged_ns)
        record = SealedRecord(self.chain_id, seq, event["time"], event["type"], event["id"],
                              data)
        self.head = head = leaf_hash(data)
        self.tree.append(head)
        return record

    def checkpoint(self, key: SigningKey, issued_at_ns: int, *, closed: bool = False,
                   counters: dict[str, Any] | None = None,
                   policy_hash: str = "") -> SignedCheckpoint:
        """Sign the chain's current size, head and Merkle root."""
        checkpoint = Checkpoint(
            chain_id=self.chain_id, index=self.checkpoint_index, size=self.size,
            head=self.head.hex(), root=self.tree.root().hex(),
            prev_checkpoint=self.last_checkpoint_hash, issued_at_ns=issued_at_ns,
            key_id=key.key_id, closed=closed, counters=counters or {}, policy_hash=policy_hash,
        )
        payload = checkpoint.payload()
        self.checkpoint_index += 1
        self.last_checkpoint_hash = payload_hash(payload)
        self.last_checkpoint_size = self.size
        self.closed = closed
        return SignedCheckpoint(payload, sign_payload(key, payload), key.key_id,
                                self.chain_id, checkpoint.index, checkpoint.size)
