"""Trust policy: which keys may sign a chain's checkpoints, and what a signature proves.

Kept apart from the checks, as sigstore-python keeps `verify/policy.py`: the checkpoint checks
ask the policy for a checkpoint's key and whether its signer is trusted; only the policy knows
the pinned keys, the keys the store vouches for itself and how a key rotation hands trust on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.verify.findings import Kind

SELF_ASSERTED_NOTICE = (
    "no trusted public key was given: signatures were checked against the keys the store "
    "itself holds, which proves integrity but not who signed; pass --public-key FILE (or a "
    "trust file) to verify against a key you trust")


@dataclass(frozen=True)
class TrustPolicy:
    """The keys the verifier is told to trust (`trusted_keys`, key id to public key).

    When none is pinned, trust can only come from the store's own key table: a checkpoint
    signed so is SELF_ASSERTED_KEY unless `allow_self_asserted`.
    """

    trusted_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    allow_self_asserted: bool = False

    @property
    def pinned(self) -> bool:
        return bool(self.trusted_keys)

    @property
    def name(self) -> str:
        """The report's `trust`: what a passing verification proves about the signer."""
        return "pinned" if self.pinned else "self-asserted"

    @property
    def notice(self) -> str | None:
        """What the report must say about a verification whose trust is only self-asserted."""
        return None if self.pinned else SELF_ASSERTED_NOTICE

    def for_chain(self, store_keys: Mapping[str, Ed25519PublicKey],
                  rotations: Mapping[int, dict[str, Any]]) -> ChainTrust:
        """The policy for one chain's checkpoints, which its key rotations may extend."""
        return ChainTrust(self, store_keys, rotations)


class ChainTrust:
    """The trust policy applied to one chain's checkpoints, in their order.

    A key introduced by a key_rotation record becomes trusted once a checkpoint signed by a
    trusted key covers that record, for the checkpoints after it.
    """

    def __init__(self, policy: TrustPolicy, store_keys: Mapping[str, Ed25519PublicKey],
                 rotations: Mapping[int, dict[str, Any]]) -> None:
        self._policy = policy
        self._trusted = dict(policy.trusted_keys)
        self._store_keys = store_keys
        self._pending = dict(sorted(rotations.items()))

    def key(self, signer: str) -> Ed25519PublicKey | None:
        """The public key to check a signature by `signer` with: trusted, or the store's own."""
        return self._trusted.get(signer) or self._store_keys.get(signer)

    def trusts(self, signer: str) -> bool:
        return signer in self._trusted

    def distrust(self, signer: str) -> tuple[Kind, str] | None:
        """Why a valid signature by `signer` does not count as trusted (the finding's kind and
        reason), or None when it does or the policy accepts the store's word for it."""
        if self.trusts(signer):
            return None
        if self._policy.pinned:
            return Kind.UNTRUSTED_KEY, "not one you trust"
        if not self._policy.allow_self_asserted:
            return Kind.SELF_ASSERTED_KEY, "vouched for only by the store"
        return None

    def admit_rotations(self, checkpoint: Checkpoint) -> None:
        """Trust the keys of the rotation records `checkpoint` covers, if its signer is
        trusted."""
        for seq, rotation in list(self._pending.items()):
            if seq < checkpoint.size and checkpoint.key_id in self._trusted:
                new_key = self._rotation_key(rotation)
                if new_key is not None:
                    self._trusted[key_id(new_key)] = new_key
                del self._pending[seq]

    def _rotation_key(self, rotation: dict[str, Any]) -> Ed25519PublicKey | None:
        """The key a rotation record introduces, or None if it is not a rotation by a trusted
        key.

        Pass 1 only looks for the type marker anywhere in the bytes, so application data that
        mentions it (an input field `{"type": "key_rotation"}` beside a `new_public_key`)
        reaches here too: only a record whose own event type is a rotation, from a key already
        trusted, may hand trust on.
        """
        event = rotation["event"]
        if event.get("type") != "key_rotation" or event.get("old_key_id") not in self._trusted:
            return None
        try:
            key = load_public_key_pem(event["new_public_key"])
        except (KeyError, TypeError, ValueError):
            return None
        return key if key_id(key) == event.get("new_key_id") else None
