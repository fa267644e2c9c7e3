"""`integrity.proof` on a chain of 70 records: every leaf in every checkpoint, sampled pairs
of checkpoints.

The chain is sealed by the real `Chain`, signed after every record, and kept in a real
`AuditStore`, so each proof document is built from what the store holds and checked the way an
outside verifier does: every record against every checkpoint that covers it, and older
checkpoints against newer ones. Each document is also altered in one place (cycling over the
ways to) and must then be refused.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.proof import (
    build_consistency_proof,
    build_proof,
    check_consistency_proof,
    check_proof,
)
from otel_ai_audit.record.schema import parse_record
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import inference_event
from tests.unit.profiles import property_settings

SIZE = 70
EDIT_EVERY = 5
"""Every fifth inclusion proof is also edited: each check verifies an Ed25519 signature, the
cost of this test."""
KEY = SigningKey.generate()
TRUSTED = {KEY.key_id: KEY.public_key}


def _flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


def _flip_base64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode("ascii")


INCLUSION_EDITS = [
    ("record byte", lambda p: {**p, "record": p["record"].replace('"score":', '"score":1', 1)}),
    ("audit path hash", lambda p: {**p, "audit_path": [_flip_hex(p["audit_path"][0]),
                                                       *p["audit_path"][1:]]}
     if p["audit_path"] else {**p, "audit_path": ["00" * 32]}),
    ("leaf index", lambda p: {**p, "leaf_index": (p["leaf_index"] + 1) % (p["tree_size"] + 1)}),
    ("tree size", lambda p: {**p, "tree_size": p["tree_size"] + 1}),
    ("signature", lambda p: {**p, "checkpoint": {
        **p["checkpoint"], "signature": _flip_base64(p["checkpoint"]["signature"])}}),
]
CONSISTENCY_EDITS = [
    ("old size", lambda p: {**p, "old_size": p["old_size"] + 1}),
    ("new signature", lambda p: {**p, "new_checkpoint": {
        **p["new_checkpoint"], "signature": _flip_base64(p["new_checkpoint"]["signature"])}}),
    ("path hash", lambda p: {**p, "consistency_path": [_flip_hex(p["consistency_path"][0]),
                                                       *p["consistency_path"][1:]]}
     if p["consistency_path"] else {**p, "consistency_path": ["00" * 32]}),
]


def grow(audit_store: AuditStore, ids: list[str]) -> Iterator[int]:
    """Seal the chain one record at a time, each written with the checkpoint that covers it;
    yields the size after each, with the record ids so far in `ids`."""
    chain = Chain()
    for size in range(1, SIZE + 1):
        record = chain.seal(inference_event(size), logged_ns=size)
        audit_store.write([record], chain.checkpoint(KEY, issued_at_ns=size))
        ids.append(parse_record(record.data)["event"]["id"])
        yield size


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditStore]:
    """The whole chain, with checkpoints 0 to 69 of sizes 1 to 70."""
    with AuditStore(tmp_path_factory.mktemp("proof") / "audit.db") as audit_store:
        for _ in grow(audit_store, []):
            pass
        yield audit_store


def test_every_record_is_proven_in_every_checkpoint_that_covers_it(tmp_path: Path) -> None:
    """Every leaf index of every tree size: each state of the store is checked before the next
    record lands, as `build_proof` proves against the newest checkpoint."""
    ids: list[str] = []
    edits = itertools.cycle(INCLUSION_EDITS)
    with AuditStore(tmp_path / "audit.db") as audit_store:
        for size in grow(audit_store, ids):
            for index, record_id in enumerate(ids):
                proof = build_proof(audit_store, record_id)
                assert (proof["leaf_index"], proof["tree_size"]) == (index, size)
                assert check_proof(proof, TRUSTED) == [], (index, size)
                if (index + size) % EDIT_EVERY == 0:
                    name, edit = next(edits)
                    assert check_proof(edit(proof), TRUSTED) != [], (index, size, name)


@property_settings()
@given(st.integers(0, SIZE - 1).flatmap(lambda new: st.tuples(st.integers(0, new),
                                                               st.just(new))),
       st.sampled_from(CONSISTENCY_EDITS))
def test_any_checkpoint_is_proven_consistent_with_any_later_one(
        full_store: AuditStore, indices: tuple[int, int],
        edit: tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Sampled pairs of signed checkpoints (the path of every pair of sizes 1 to 70 is
    compared with RFC 9162's in test_merkle.py): the document holds, and refuses the edit."""
    old_index, new_index = indices
    (chain_id,) = full_store.chain_ids()
    proof = build_consistency_proof(full_store, chain_id, old_index, new_index)
    assert (proof["old_size"], proof["new_size"]) == (old_index + 1, new_index + 1)
    assert check_consistency_proof(proof, TRUSTED) == []
    assert check_consistency_proof(edit[1](proof), TRUSTED) != [], edit[0]
