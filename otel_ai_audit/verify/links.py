"""The checks of a chain's records: what each is, their order, their hash links, and that they
hash to what the signed checkpoints committed to.

Pass 2 of the verifier, on pass 1's arrays: sequence, links and timestamps are compared with
numpy over the whole chain; only the rare anomalies go through Python logic that names what
happened and where.
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from otel_ai_audit.integrity.merkle import GENESIS
from otel_ai_audit.record.canonical import CanonicalizationError, canonical_json
from otel_ai_audit.record.schema import SCHEMA_VERSION, parse_record
from otel_ai_audit.verify.checkpoints import CheckpointChain, Verified
from otel_ai_audit.verify.context import ChainContext
from otel_ai_audit.verify.findings import Kind
from otel_ai_audit.verify.reading import FOREIGN, MALFORMED, NONCANONICAL, OK, Positions
from otel_ai_audit.verify.roots import PrefixRoots

_TORN = "the last record is cut off: the writer crashed mid-write"
_RESERIALISED = "record was re-serialised: its bytes are not the canonical form that was hashed"


def check_records(context: ChainContext, checkpoints: CheckpointChain) -> Positions:
    """Every check of the records themselves; the positions of the chain in seq order."""
    data = context.data
    verified = checkpoints.verified
    signed_size = checkpoints.signed_size
    n = data.size
    states = data.states
    usable = np.ones(n, dtype=bool)
    torn_at: int | None = None
    for position in np.flatnonzero(states == MALFORMED):
        column = int(data.columns[position])
        if position == n - 1 and column >= signed_size:
            torn_at = column
            context.add(column, Kind.TORN_RECORD, _TORN)
        else:
            context.add(column, Kind.MALFORMED_RECORD, "stored bytes are not an audit record")
        usable[position] = False
    for position in np.flatnonzero(states == FOREIGN):
        context.add(int(data.columns[position]), Kind.SPLICED, "record belongs to another chain")
        usable[position] = False
    version_too_new = usable & (states == OK) & (data.logged < 0)
    for position in np.flatnonzero(version_too_new):
        context.add(int(data.columns[position]), Kind.UNSUPPORTED_VERSION,
                    f"record schema is newer than version {SCHEMA_VERSION}")
        usable[position] = False

    order = _resolve_order(context, usable, verified)
    blamed: set[int] = set()
    _check_links(context, order, verified, blamed)
    _check_checkpoint_roots(context, order, verified, blamed)
    _check_unwitnessed_tail(context, order, signed_size)
    top, _ = data.extent(order)
    if torn_at is not None:
        top = max(top, torn_at + 1)
    closed_at = checkpoints.closed_at
    if closed_at is None:
        if n or verified:
            context.add(top - 1 if top else None, Kind.CHAIN_NOT_CLOSED,
                        f"no closing checkpoint; signed checkpoints cover {signed_size} of {top} "
                        "records: the writing process did not shut down cleanly (crash, "
                        "SIGKILL, power loss) or the closing checkpoint was removed")
    elif top > closed_at:
        context.add(closed_at, Kind.RECORD_AFTER_CLOSE,
                    f"{top - closed_at} record(s) after the closing checkpoint "
                    f"(size {closed_at})")
    return order


def check_indexed_fields(context: ChainContext) -> None:
    """INDEX_MISMATCH for each record an `IndexedRecordSource` finds contradicted by its own
    indexed fields (once per record: the seq drift check may have named it)."""
    mismatches = getattr(context.source, "field_mismatches", None)
    if mismatches is None:
        return
    named = {f.seq for f in context.findings if f.kind is Kind.INDEX_MISMATCH}
    for seq, detail in mismatches(context.chain_id):
        if seq not in named:
            named.add(seq)
            context.add(seq, Kind.INDEX_MISMATCH, detail)


def _check_unwitnessed_tail(context: ChainContext, order: Positions, signed_size: int) -> None:
    """Check the last record whole when nothing commits to it.

    Pass 1 reads only the canonical prefix; every other record's bytes are vouched for by its
    successor's link or a checkpoint. The last record of a chain no checkpoint covers (a
    crash) has neither, so a write torn after its header would pass as intact.
    """
    if len(order) == 0:
        return
    data = context.data
    position = int(order[-1])
    seq = int(data.seqs[position])
    if seq < signed_size:
        return
    if data.states[position] == NONCANONICAL:
        context.add(seq, Kind.NONCANONICAL, _RESERIALISED)
        return
    stored = context.source.record_at(context.chain_id, int(data.columns[position]))
    if stored is None:
        return
    try:
        record = parse_record(stored)
    except ValueError:
        context.add(seq, Kind.TORN_RECORD, _TORN)
        return
    try:
        if canonical_json(record) != stored:
            context.add(seq, Kind.NONCANONICAL, _RESERIALISED)
    except CanonicalizationError:
        pass  # e.g. a float of 2**53, written as an integer literal, parses back too big


def _resolve_order(context: ChainContext, usable: npt.NDArray[np.bool_],
                   verified: list[Verified]) -> Positions:
    """Positions of the records that form the chain, in sequence order.

    Finds duplicates (replays), inserted records (two records claiming one seq), reordered
    records and gaps, and index fields that disagree with the bytes.
    """
    data = context.data
    positions = np.flatnonzero(usable)
    seqs = data.seqs[positions]
    if len(positions) == 0:
        return positions
    in_order = bool(np.all(np.diff(seqs) > 0)) if len(seqs) > 1 else True
    if in_order and seqs[0] == 0 and seqs[-1] == len(seqs) - 1:
        _check_index_drift(context, positions)
        return positions
    # Slow path: something is out of place. Group positions by the seq they claim.
    by_seq: dict[int, list[int]] = {}
    for position in positions.tolist():
        by_seq.setdefault(int(data.seqs[position]), []).append(position)
    heads = {a.checkpoint.size - 1: a.checkpoint.head for a in verified}
    chosen: dict[int, int] = {}
    for seq, claimants in sorted(by_seq.items()):
        unique: dict[bytes, int] = {}
        for position in claimants:
            leaf = data.leaves[position].tobytes()
            if leaf in unique:
                context.add(seq, Kind.DUPLICATE, f"record seq {seq} is stored again at position "
                                                 f"{int(data.columns[position])} (replay)")
            else:
                unique[leaf] = position
        if len(unique) == 1:
            chosen[seq] = next(iter(unique.values()))
            continue
        genuine = _genuine_claimant(context, seq, unique, by_seq, heads)
        for position in unique.values():
            if position != genuine:
                context.add(seq, Kind.INSERTED,
                            f"a record not linked into the chain claims seq {seq} (stored at "
                            f"position {int(data.columns[position])})")
        chosen[seq] = genuine
    ordered_seqs = sorted(chosen)
    chosen_positions = [chosen[seq] for seq in ordered_seqs]
    stored_rank = sorted(chosen_positions)
    for seq, position, rank_position in zip(ordered_seqs, chosen_positions, stored_rank,
                                            strict=True):
        if position != rank_position:
            context.add(seq, Kind.REORDERED,
                        f"record seq {seq} is stored at position "
                        f"{int(data.columns[position])}, out of sequence order")
    expected = 0
    for seq in ordered_seqs:
        if seq > expected:
            span = f"{expected}" if seq - expected == 1 else f"{expected}..{seq - 1}"
            context.add(expected, Kind.GAP, f"record(s) {span} are missing")
        expected = seq + 1
    return np.array(chosen_positions, dtype=np.intp)


def _genuine_claimant(context: ChainContext, seq: int, unique: dict[bytes, int],
                      by_seq: dict[int, list[int]], heads: dict[int, str]) -> int:
    """Of several records claiming `seq`, the one its successor or a checkpoint links to."""
    witnesses = {context.data.prevs[p].tobytes() for p in by_seq.get(seq + 1, [])}
    if seq in heads:
        witnesses.add(bytes.fromhex(heads[seq]))
    for leaf, position in unique.items():
        if leaf in witnesses:
            return position
    return min(unique.values())


def _check_index_drift(context: ChainContext, positions: Positions) -> None:
    data = context.data
    mismatched = np.flatnonzero(data.columns[positions] != data.seqs[positions])
    if len(mismatched):
        first = positions[mismatched[0]]
        context.add(int(data.seqs[first]), Kind.INDEX_MISMATCH,
                    f"{len(mismatched)} record(s) are stored under a seq that differs from "
                    f"their own (first: stored as {int(data.columns[first])})")


def _check_links(context: ChainContext, order: Positions, verified: list[Verified],
                 blamed: set[int]) -> None:
    if len(order) == 0:
        return
    data = context.data
    seqs = data.seqs[order]
    leaves = data.leaves[order]
    prevs = data.prevs[order]
    consecutive = np.diff(seqs) == 1
    # 32-byte rows compared as four 64-bit words: the same test, an eighth of the steps.
    linked = np.all(prevs[1:].view(np.uint64) == leaves[:-1].view(np.uint64), axis=1)
    breaks = [i + 1 for i in np.flatnonzero(consecutive & ~linked).tolist()]
    if seqs[0] == 0 and prevs[0].tobytes() != GENESIS:
        breaks.insert(0, 0)
    heads = {a.checkpoint.size - 1: a.checkpoint.head for a in verified}

    def suspect(i: int) -> bool:
        """Is the record at order index i contradicted by what comes after it?"""
        if i + 1 < len(order) and seqs[i + 1] == seqs[i] + 1:
            if prevs[i + 1].tobytes() != leaves[i].tobytes():
                return True
        head = heads.get(int(seqs[i]))
        return head is not None and bytes.fromhex(head) != leaves[i].tobytes()

    for i in breaks:
        culprit = i if (i == 0 or suspect(i)) else i - 1
        seq = int(seqs[culprit])
        if seq in blamed:
            continue
        blamed.add(seq)
        _blame(context, int(order[culprit]), seq)
    logged = data.logged[order]
    backwards = np.flatnonzero(consecutive & (logged[1:] < logged[:-1])) + 1
    for i in backwards.tolist():
        seq = int(seqs[i])
        if seq not in blamed and seq - 1 not in blamed:
            context.add(seq, Kind.TIMESTAMP_BACKWARDS,
                        "record was logged earlier than its predecessor")


def _blame(context: ChainContext, position: int, seq: int) -> None:
    """RECORD_MODIFIED, or NONCANONICAL when the bytes only changed their serialisation."""
    data = context.data
    if data.states[position] == NONCANONICAL:
        context.add(seq, Kind.NONCANONICAL, _RESERIALISED)
        return
    stored = context.source.record_at(context.chain_id, int(data.columns[position]))
    if stored is not None:
        try:
            if canonical_json(json.loads(stored)) != stored:
                context.add(seq, Kind.NONCANONICAL, _RESERIALISED)
                return
        except (ValueError, CanonicalizationError):
            pass
    context.add(seq, Kind.RECORD_MODIFIED, "record differs from what the chain committed to")


def _check_checkpoint_roots(context: ChainContext, order: Positions, verified: list[Verified],
                            blamed: set[int]) -> None:
    """TRUNCATED when a checkpoint covers records that are gone; the record or the span of
    records that does not hash to a checkpoint's head and Merkle root."""
    if not verified:
        return
    data = context.data
    count, contiguous = data.extent(order)
    # Of two checkpoints of one size (a fork, reported with the checkpoints), the records
    # are held to the one whose head they have, not blamed for the other branch.
    kept: dict[int, Verified] = {}
    for item in verified:
        size = item.checkpoint.size
        if size not in kept or (contiguous and 0 < size <= count and item.checkpoint.head
                                == data.leaves[order[size - 1]].tobytes().hex()):
            kept[size] = item
    by_size = [kept[size] for size in sorted(kept)]
    roots = PrefixRoots(data, order, (size for size in kept if size <= count))
    truncated_reported = False
    last_good = 0
    for item in by_size:
        checkpoint = item.checkpoint
        size = checkpoint.size
        if size > count:
            if not truncated_reported and not data.corrupt:
                context.add(count, Kind.TRUNCATED,
                            f"checkpoint {checkpoint.index} covers {size} records; records "
                            f"{count}..{size - 1} are missing")
                truncated_reported = True
            continue
        if not contiguous or size == 0:
            continue
        head_ok = data.leaves[order[size - 1]].tobytes().hex() == checkpoint.head
        root_ok = roots.root(size).hex() == checkpoint.root
        if head_ok and root_ok:
            last_good = size
            continue
        if any(last_good <= seq < size for seq in blamed):
            continue
        if not head_ok and roots.root_with_last(
                size, bytes.fromhex(checkpoint.head)).hex() == checkpoint.root:
            seq = size - 1
            blamed.add(seq)
            _blame(context, int(order[seq]), seq)
            continue
        context.add(size - 1, Kind.CHECKPOINT_MISMATCH,
                    f"records {last_good}..{size - 1} do not hash to the head and Merkle root "
                    f"that checkpoint {checkpoint.index} signed: the chain was rewritten after "
                    "signing")
        blamed.update(range(last_good, size))
