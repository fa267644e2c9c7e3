"""Inclusion and consistency proofs, checkable offline by anyone holding the signer's public key.

An inclusion proof shows one decision is in a signed chain without its neighbours: it carries
the record's canonical bytes, its RFC 9162 audit path, and the signed checkpoint whose Merkle
root the path leads to.

A consistency proof shows a later checkpoint of a chain extends an earlier one: whoever kept
the earlier checkpoint learns, from O(log n) hashes and without any record, that nothing it
covered was rewritten, dropped or reordered since. It carries both signed checkpoints and the
RFC 9162 consistency path between their Merkle roots.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from otel_ai_audit.errors import IntegrityError
from otel_ai_audit.integrity.checkpoint import Checkpoint, SignedCheckpoint, signature_valid
from otel_ai_audit.integrity.merkle import (
    ConsistencyError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion_proof,
    verify_consistency,
)
from otel_ai_audit.record.schema import parse_header

PROOF_FORMAT = "otel-ai-audit/inclusion-proof/v1"
CONSISTENCY_PROOF_FORMAT = "otel-ai-audit/consistency-proof/v1"


class ProofStore(Protocol):
    """What building a proof reads from a store (`otel_ai_audit.store.sqlite.AuditStore` is
    one), so that the integrity layer does not depend on the storage layer."""

    def find_record(self, record_id: str) -> tuple[str, int, bytes] | None:
        """(chain id, seq, canonical bytes) of the record whose event id is `record_id`."""

    def records(self, chain_id: str) -> Iterable[tuple[int, bytes]]:
        """(seq, canonical bytes) of one chain in seq order."""

    def checkpoints(self, chain_id: str) -> Sequence[SignedCheckpoint]:
        """The chain's signed checkpoints in index order."""

    def chain_ids(self) -> Collection[str]:
        """Every chain the store holds."""


class ProofError(IntegrityError):
    """No proof can be built (unknown record, chain or checkpoint; no checkpoint covers the
    record yet; the store holds fewer records than a checkpoint covers)."""


def build_proof(store: ProofStore, record_id: str) -> dict[str, Any]:
    """The proof for the record whose event id is `record_id`, against the newest checkpoint."""
    found = store.find_record(record_id)
    if found is None:
        raise ProofError(f"no record with id {record_id}")
    chain_id, seq, data = found
    checkpoints = [c for c in store.checkpoints(chain_id) if c.size > seq]
    if not checkpoints:
        raise ProofError(f"record {record_id} (chain {chain_id} seq {seq}) is not covered by a "
                         "signed checkpoint yet")
    signed = checkpoints[-1]
    leaves = _leaves(store, chain_id, signed.size)
    return {
        "format": PROOF_FORMAT,
        "record": data.decode("utf-8"),
        "chain_id": chain_id,
        "leaf_index": seq,
        "tree_size": signed.size,
        "audit_path": [node.hex() for node in inclusion_proof(leaves, seq)],
        "checkpoint": _signed(signed),
    }


def _leaves(store: ProofStore, chain_id: str, size: int) -> list[bytes]:
    """The leaf hashes of the chain's first `size` records, as a checkpoint of that size signed."""
    leaves: list[bytes] = []
    for _, stored in store.records(chain_id):
        if len(leaves) == size:
            break
        leaves.append(leaf_hash(stored))
    if len(leaves) < size:
        raise ProofError(f"chain {chain_id} holds {len(leaves)} records, fewer than the {size} "
                         "its checkpoint covers")
    return leaves


def _signed(checkpoint: SignedCheckpoint) -> dict[str, Any]:
    return {
        "payload": checkpoint.payload.decode("utf-8"),
        "signature": base64.b64encode(checkpoint.signature).decode("ascii"),
        "key_id": checkpoint.key_id,
    }


def check_proof(proof: dict[str, Any], trusted_keys: dict[str, Any]) -> list[str]:
    """Problems with `proof` (an empty list means it holds)."""
    try:
        if proof.get("format") != PROOF_FORMAT:
            return [f"not an inclusion proof of format {PROOF_FORMAT}"]
        record = proof["record"].encode("utf-8")
        payload = proof["checkpoint"]["payload"].encode("utf-8")
        signature = base64.b64decode(proof["checkpoint"]["signature"])
        checkpoint = Checkpoint.from_payload(payload)
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        path = [bytes.fromhex(node) for node in proof["audit_path"]]
    except (KeyError, TypeError, ValueError) as error:
        return [f"proof is malformed: {error}"]
    problems = []
    public_key = trusted_keys.get(checkpoint.key_id)
    if public_key is None:
        problems.append(f"checkpoint is signed by key {checkpoint.key_id}, which you do not trust")
    elif not signature_valid(public_key, payload, signature):
        problems.append("checkpoint signature does not verify")
    header = parse_header(record)
    if header is None:
        problems.append("record is not in canonical form")
    elif (header.chain_id, header.seq) != (checkpoint.chain_id, index):
        problems.append("record's chain and seq are not the ones the proof is for")
    if size != checkpoint.size:
        problems.append("proof's tree size differs from the checkpoint's")
    try:
        root = root_from_inclusion_proof(leaf_hash(record), index, size, path)
    except ValueError as error:
        problems.append(f"audit path is invalid: {error}")
    else:
        if root.hex() != checkpoint.root:
            problems.append("audit path does not lead to the checkpoint's signed Merkle root")
    return problems


def build_consistency_proof(store: ProofStore, chain_id: str, old_index: int,
                            new_index: int | None = None) -> dict[str, Any]:
    """The proof that checkpoint `new_index` of the chain (default: its newest) extends
    checkpoint `old_index`, its path computed from the store's records as they are now."""
    checkpoints = store.checkpoints(chain_id)
    if not checkpoints:
        if chain_id not in store.chain_ids():
            raise ProofError(f"no chain with id {chain_id}")
        raise ProofError(f"chain {chain_id} has no signed checkpoint yet")
    by_index = {checkpoint.index: checkpoint for checkpoint in checkpoints}
    for index in (old_index, new_index):
        if index is not None and index not in by_index:
            raise ProofError(f"chain {chain_id} has no checkpoint {index} (its checkpoints are "
                             f"{checkpoints[0].index}..{checkpoints[-1].index})")
    old = by_index[old_index]
    new = checkpoints[-1] if new_index is None else by_index[new_index]
    if old.index > new.index:
        raise ProofError(f"checkpoint {old.index} of chain {chain_id} comes after checkpoint "
                         f"{new.index}: a consistency proof goes from an older to a newer one")
    return consistency_proof_from_leaves(_leaves(store, chain_id, new.size), old, new)


def consistency_proof_from_leaves(leaves: Sequence[bytes], old: SignedCheckpoint,
                                  new: SignedCheckpoint) -> dict[str, Any]:
    """The consistency proof from checkpoint `old` to `new` of one chain, given the chain's
    leaf hashes (at least `new.size` of them): for code that holds them without a store.

    Nothing here checks the leaves against the signed roots: a proof built from records
    altered since they were signed does not lead to those roots, and `check_consistency_proof`
    says so.
    """
    if old.chain_id != new.chain_id:
        raise ProofError(f"checkpoints of two chains ({old.chain_id} and {new.chain_id}) have "
                         "no consistency proof")
    if old.size > new.size:
        raise ProofError(f"checkpoint {old.index} of chain {old.chain_id} covers {old.size} "
                         f"records, more than checkpoint {new.index} ({new.size})")
    if len(leaves) < new.size:
        raise ProofError(f"{len(leaves)} leaves are fewer than the {new.size} checkpoint "
                         f"{new.index} of chain {new.chain_id} covers")
    return {
        "format": CONSISTENCY_PROOF_FORMAT,
        "chain_id": old.chain_id,
        "old_size": old.size,
        "new_size": new.size,
        "consistency_path": [node.hex() for node in consistency_proof(leaves[:new.size],
                                                                      old.size)],
        "old_checkpoint": _signed(old),
        "new_checkpoint": _signed(new),
    }


def check_consistency_proof(proof: dict[str, Any], trusted_keys: dict[str, Any]) -> list[str]:
    """Problems with a consistency proof (an empty list means the newer signed checkpoint
    extends the older one)."""
    if not isinstance(proof, dict) or proof.get("format") != CONSISTENCY_PROOF_FORMAT:
        return [f"not a consistency proof of format {CONSISTENCY_PROOF_FORMAT}"]
    try:
        signed: dict[str, tuple[bytes, bytes, Checkpoint]] = {}
        for which in ("old", "new"):
            payload = proof[f"{which}_checkpoint"]["payload"].encode("utf-8")
            signature = base64.b64decode(proof[f"{which}_checkpoint"]["signature"])
            signed[which] = (payload, signature, Checkpoint.from_payload(payload))
        old_size, new_size = int(proof["old_size"]), int(proof["new_size"])
        path = [bytes.fromhex(node) for node in proof["consistency_path"]]
        chain_id = str(proof["chain_id"])
        old_root, new_root = (bytes.fromhex(signed[which][2].root) for which in ("old", "new"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [f"proof is malformed: {error}"]
    problems = []
    for which, (payload, signature, checkpoint) in signed.items():
        public_key = trusted_keys.get(checkpoint.key_id)
        if public_key is None:
            problems.append(f"{which} checkpoint is signed by key {checkpoint.key_id}, which you "
                            "do not trust")
        elif not signature_valid(public_key, payload, signature):
            problems.append(f"{which} checkpoint signature does not verify")
    old, new = signed["old"][2], signed["new"][2]
    if old.chain_id != new.chain_id:
        problems.append(f"the checkpoints are of different chains ({old.chain_id} and "
                        f"{new.chain_id})")
    elif chain_id != old.chain_id:
        problems.append("proof's chain id differs from the checkpoints'")
    if old.index > new.index:
        problems.append(f"old checkpoint ({old.index}) comes after the new one ({new.index})")
    if old_size != old.size:
        problems.append("proof's old size differs from the old checkpoint's")
    if new_size != new.size:
        problems.append("proof's new size differs from the new checkpoint's")
    try:
        verify_consistency(old.size, new.size, old_root, new_root, path)
    except ConsistencyError as error:
        problems.append(f"consistency path is invalid: {error}")
    return problems
