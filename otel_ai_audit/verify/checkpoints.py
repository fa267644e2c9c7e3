"""The checks of a chain's signed checkpoints: signatures, trust, and the checkpoint chain.

Each checkpoint's signature is checked with the key the trust policy gives for its signer,
then its place in the checkpoint chain: index, link to its predecessor, issue time, nothing
after the closing one, no two of one size with different heads (a fork).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_ai_audit.integrity.checkpoint import Checkpoint, payload_hash, signature_valid
from otel_ai_audit.verify.context import ChainContext
from otel_ai_audit.verify.findings import Kind
from otel_ai_audit.verify.policy import ChainTrust


@dataclass
class Verified:
    """A checkpoint whose signature verified: what it commits to."""

    checkpoint: Checkpoint
    trusted: bool


@dataclass
class CheckpointChain:
    """The checkpoints of one chain that verified, in stored order, and what they say."""

    verified: list[Verified] = field(default_factory=list)
    closed_at: int | None = None
    """Size of the first closing checkpoint (None: the chain was not closed)."""
    key_ids: set[str] = field(default_factory=set)
    """Every key a checkpoint names, verified or not."""

    @property
    def signed_size(self) -> int:
        return max((item.checkpoint.size for item in self.verified), default=0)


def check_checkpoints(context: ChainContext, trust: ChainTrust) -> CheckpointChain:
    """Signatures, trust, the checkpoint chain, forks. Returns the checkpoints that verified."""
    chain = CheckpointChain()
    verified = chain.verified
    previous: tuple[Checkpoint, bytes] | None = None
    heads_by_size: dict[int, str] = {}
    follows_rejected = False
    for expected_index, signed in enumerate(context.source.checkpoints(context.chain_id)):
        # A checkpoint rejected below (already a finding) cannot be linked to: its successor's
        # link is not checked, so one edited checkpoint is reported once, not twice.
        after_rejected, follows_rejected = follows_rejected, True
        try:
            checkpoint = Checkpoint.from_payload(signed.payload)
        except ValueError as error:
            context.add(None, Kind.MALFORMED_CHECKPOINT, f"checkpoint {signed.index}: {error}")
            continue
        where = max(checkpoint.size - 1, 0)
        if (checkpoint.chain_id, checkpoint.index, checkpoint.size, checkpoint.key_id) != (
                context.chain_id, signed.index, signed.size, signed.key_id):
            context.add(where, Kind.MALFORMED_CHECKPOINT,
                        f"checkpoint {signed.index}: stored index fields disagree with its "
                        "signed payload")
        chain.key_ids.add(checkpoint.key_id)
        public_key = trust.key(checkpoint.key_id)
        if public_key is None:
            context.add(where, Kind.UNKNOWN_KEY,
                        f"checkpoint {checkpoint.index} is signed by key {checkpoint.key_id}, "
                        "which is known nowhere")
            continue
        if not signature_valid(public_key, signed.payload, signed.signature):
            context.add(where, Kind.BAD_SIGNATURE,
                        f"checkpoint {checkpoint.index}: signature does not verify with key "
                        f"{checkpoint.key_id[:16]}: edited or forged")
            continue
        is_trusted = trust.trusts(checkpoint.key_id)
        distrust = trust.distrust(checkpoint.key_id)
        if distrust is not None:
            kind, reason = distrust
            context.add(where, kind, f"checkpoint {checkpoint.index} is signed by key "
                                     f"{checkpoint.key_id[:16]}, {reason}")
        trust.admit_rotations(checkpoint)
        _check_link(context, checkpoint, expected_index, previous, after_rejected, where)
        known_head = heads_by_size.get(checkpoint.size)
        if known_head is not None and known_head != checkpoint.head:
            context.add(where, Kind.FORK, f"two checkpoints of size {checkpoint.size} commit "
                                          "to different heads")
        if verified and checkpoint.size < verified[-1].checkpoint.size:
            context.add(where, Kind.FORK,
                        f"checkpoint {checkpoint.index} (size {checkpoint.size}) is smaller "
                        f"than checkpoint {verified[-1].checkpoint.index} "
                        f"(size {verified[-1].checkpoint.size})")
        heads_by_size[checkpoint.size] = checkpoint.head
        verified.append(Verified(checkpoint, is_trusted))
        previous = (checkpoint, signed.payload)
        follows_rejected = False
        if checkpoint.closed and chain.closed_at is None:
            chain.closed_at = checkpoint.size
    return chain


def _check_link(context: ChainContext, checkpoint: Checkpoint, expected_index: int,
                previous: tuple[Checkpoint, bytes] | None, after_rejected: bool,
                where: int) -> None:
    """The checkpoint's place after the last one that verified (`previous`, with its payload)."""
    if expected_index != checkpoint.index:
        context.add(where, Kind.CHECKPOINT_CHAIN_BROKEN,
                    f"checkpoint {expected_index} is missing (found {checkpoint.index} in its "
                    "place)")
    if previous is None:
        if checkpoint.prev_checkpoint and not after_rejected:
            context.add(where, Kind.CHECKPOINT_CHAIN_BROKEN,
                        f"checkpoint {checkpoint.index} links to a predecessor that is missing")
        return
    before, before_payload = previous
    if checkpoint.prev_checkpoint != payload_hash(before_payload) and (
            expected_index == checkpoint.index) and not after_rejected:
        context.add(where, Kind.CHECKPOINT_CHAIN_BROKEN,
                    f"checkpoint {checkpoint.index} does not link to checkpoint {before.index}")
    if checkpoint.issued_at_ns < before.issued_at_ns:
        context.add(where, Kind.TIMESTAMP_BACKWARDS,
                    f"checkpoint {checkpoint.index} was issued before checkpoint "
                    f"{before.index}")
    if before.closed:
        context.add(where, Kind.RECORD_AFTER_CLOSE,
                    f"checkpoint {checkpoint.index} follows the closing checkpoint "
                    f"{before.index}")
