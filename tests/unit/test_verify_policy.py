"""The verifier's trust policy on its own: which signer is trusted, and when a key rotation
hands trust on (the end-to-end attacks are in test_verify_attacks.py)."""

from __future__ import annotations

from typing import Any

import pytest

from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.verify.findings import Kind
from otel_ai_audit.verify.policy import TrustPolicy

ROTATION_AT = 5
"""Seq of the rotation record in the chains below."""


@pytest.fixture(scope="module")
def old() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def new() -> SigningKey:
    return SigningKey.generate()


def rotation(old: SigningKey, new: SigningKey, **changes: Any) -> dict[str, dict[str, Any]]:
    """A parsed key_rotation record, as pass 1 keeps it."""
    event = new_event(EventType.KEY_ROTATION, old_key_id=old.key_id, new_key_id=new.key_id,
                      new_public_key=new.public_pem)
    return {"event": {**event, **changes}}


def checkpoint(signer: SigningKey, size: int) -> Checkpoint:
    return Checkpoint(chain_id="c" * 32, index=0, size=size, head="00" * 32, root="00" * 32,
                      prev_checkpoint="", issued_at_ns=1, key_id=signer.key_id, closed=False)


def test_a_pinned_policy_distrusts_every_other_signer(old: SigningKey, new: SigningKey) -> None:
    policy = TrustPolicy({old.key_id: old.public_key})
    trust = policy.for_chain({new.key_id: new.public_key}, {})
    assert (policy.name, policy.notice) == ("pinned", None)
    assert trust.key(new.key_id) is new.public_key
    assert trust.distrust(old.key_id) is None
    assert trust.distrust(new.key_id) == (Kind.UNTRUSTED_KEY, "not one you trust")
    assert trust.key(SigningKey.generate().key_id) is None


@pytest.mark.parametrize("allow", [False, True])
def test_without_pinned_keys_only_the_store_vouches(old: SigningKey, allow: bool) -> None:
    policy = TrustPolicy({}, allow_self_asserted=allow)
    trust = policy.for_chain({old.key_id: old.public_key}, {})
    assert policy.name == "self-asserted"
    assert policy.notice is not None and "--public-key" in policy.notice
    assert trust.key(old.key_id) is old.public_key
    expected = None if allow else (Kind.SELF_ASSERTED_KEY, "vouched for only by the store")
    assert trust.distrust(old.key_id) == expected


def test_a_rotation_is_trusted_once_a_trusted_checkpoint_covers_it(old: SigningKey,
                                                                   new: SigningKey) -> None:
    trust = TrustPolicy({old.key_id: old.public_key}).for_chain(
        {}, {ROTATION_AT: rotation(old, new)})
    trust.admit_rotations(checkpoint(old, ROTATION_AT))
    assert not trust.trusts(new.key_id), "a checkpoint of size 5 does not cover seq 5"
    trust.admit_rotations(checkpoint(new, ROTATION_AT + 1))
    assert not trust.trusts(new.key_id), "the new key cannot vouch for its own rotation"
    trust.admit_rotations(checkpoint(old, ROTATION_AT + 1))
    assert trust.trusts(new.key_id)
    assert trust.key(new.key_id) == new.public_key


@pytest.mark.parametrize("changes", [
    {"type": "inference"},
    {"old_key_id": "0" * 64},
    {"new_key_id": "0" * 64},
    {"new_public_key": "not a key"},
])
def test_a_record_that_is_not_a_rotation_by_a_trusted_key_grants_nothing(
        old: SigningKey, new: SigningKey, changes: dict[str, str]) -> None:
    trust = TrustPolicy({old.key_id: old.public_key}).for_chain(
        {}, {ROTATION_AT: rotation(old, new, **changes)})
    trust.admit_rotations(checkpoint(old, ROTATION_AT + 1))
    assert not trust.trusts(new.key_id)
