"""Signed checkpoints: any checkpoint survives sign, store and parse unchanged, and no single
bit of its signed bytes or of its signature can change without the signature failing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.integrity.checkpoint import (
    SIGNATURE_CONTEXT,
    Checkpoint,
    payload_hash,
    sign_payload,
    signature_valid,
)
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.record.canonical import MAX_SAFE_INTEGER
from tests.unit.profiles import property_settings
from tests.unit.record.strategies import keys

KEY = SigningKey.generate()
OTHER = SigningKey.generate()

hex_text = st.text("0123456789abcdef", min_size=64, max_size=64)
checkpoints = st.builds(
    Checkpoint,
    chain_id=st.text("0123456789abcdef", min_size=32, max_size=32),
    index=st.integers(0, MAX_SAFE_INTEGER),
    size=st.integers(0, MAX_SAFE_INTEGER),
    head=hex_text,
    root=hex_text,
    prev_checkpoint=st.just("") | hex_text,
    issued_at_ns=st.integers(0, 2**64 - 1),
    key_id=st.just(KEY.key_id),
    closed=st.booleans(),
    # Counts of records sampled out or failed before sealing: I-JSON integers.
    counters=st.dictionaries(keys, st.integers(0, MAX_SAFE_INTEGER), max_size=4),
    policy_hash=st.just("") | hex_text,
)


def flipped(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << bit % 8
    return bytes(changed)


@property_settings()
@given(checkpoints, st.data())
def test_a_signed_checkpoint_round_trips_and_refuses_any_bit_flip(checkpoint: Checkpoint,
                                                                  data: st.DataObject) -> None:
    payload = checkpoint.payload()
    signature = sign_payload(KEY, payload)
    assert Checkpoint.from_payload(payload) == checkpoint
    assert signature_valid(KEY.public_key, payload, signature)
    assert not signature_valid(OTHER.public_key, payload, signature)
    bit = data.draw(st.integers(0, len(payload) * 8 - 1), label="payload bit")
    assert not signature_valid(KEY.public_key, flipped(payload, bit), signature)
    assert payload_hash(flipped(payload, bit)) != payload_hash(payload)
    bit = data.draw(st.integers(0, len(signature) * 8 - 1), label="signature bit")
    assert not signature_valid(KEY.public_key, payload, flipped(signature, bit))


def test_every_byte_of_one_checkpoint_and_every_bit_of_its_signature_is_covered() -> None:
    """One bit of each payload byte (the bit position cycling), every bit of the signature."""
    checkpoint = Checkpoint(chain_id="ab" * 16, index=3, size=70, head="01" * 32, root="23" * 32,
                            prev_checkpoint="45" * 32, issued_at_ns=1_700_000_000_000_000_000,
                            key_id=KEY.key_id, closed=True, counters={"sampled_out": 2},
                            policy_hash="67" * 32)
    payload = checkpoint.payload()
    signature = sign_payload(KEY, payload)
    for byte in range(len(payload)):
        bit = byte * 8 + byte % 8
        assert not signature_valid(KEY.public_key, flipped(payload, bit), signature), bit
    for bit in range(len(signature) * 8):
        assert not signature_valid(KEY.public_key, payload, flipped(signature, bit)), bit


def test_the_signature_is_bound_to_its_context() -> None:
    """A signature over the bare payload (as another tool holding the key might make) is not a
    checkpoint signature."""
    payload = Checkpoint(chain_id="ab" * 16, index=0, size=1, head="01" * 32, root="01" * 32,
                         prev_checkpoint="", issued_at_ns=1, key_id=KEY.key_id,
                         closed=False).payload()
    assert not signature_valid(KEY.public_key, payload, KEY.sign(payload))
    assert signature_valid(KEY.public_key, payload, KEY.sign(SIGNATURE_CONTEXT + payload))
