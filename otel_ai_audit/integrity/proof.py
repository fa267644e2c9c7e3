"""Inclusion proofs: prove one decision is in a signed chain without its neighbours.

A proof carries the record's canonical bytes, its RFC 9162 audit path, and the signed
checkpoint whose Merkle root the path leads to. Anyone holding the signer's public key can
check it offline.
"""

from __future__ import annotations

import base64
from typing import Any

from otel_ai_audit.integrity.checkpoint import Checkpoint, signature_valid
from otel_ai_audit.integrity.merkle import inclusion_proof, leaf_hash, root_from_inclusion_proof
from otel_ai_audit.record.schema import parse_header
from otel_ai_audit.store.sqlite import AuditStore

PROOF_FORMAT = "otel-ai-audit/inclusion-proof/v1"


class ProofError(ValueError):
    """No proof can be built (unknown record, no checkpoint covers it yet)."""


def build_proof(store: AuditStore, record_id: str) -> dict[str, Any]:
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
    leaves = []
    for _, stored in store.records(chain_id):
        if len(leaves) == signed.size:
            break
        leaves.append(leaf_hash(stored))
    if len(leaves) < signed.size:
        raise ProofError(f"chain {chain_id} holds fewer records than its checkpoint covers")
    return {
        "format": PROOF_FORMAT,
        "record": data.decode("utf-8"),
        "chain_id": chain_id,
        "leaf_index": seq,
        "tree_size": signed.size,
        "audit_path": [node.hex() for node in inclusion_proof(leaves, seq)],
        "checkpoint": {
            "payload": signed.payload.decode("utf-8"),
            "signature": base64.b64encode(signed.signature).decode("ascii"),
            "key_id": signed.key_id,
        },
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
