"""Where each chain's part of the window begins and ends, and the proof that nothing of the
window lies outside it.

The window selects records by event time (`event.time`). A chain orders its records by
`chain.logged`, the time its writer sequenced them, kept monotonic; an event is logged after it
happened. So a chain's records of the window lie in one contiguous range of seqs, the range
holding every record logged in the window and every record whose event time is in it, and
its two neighbours prove its ends:

* the record before the range was logged before the window start, so was every record before
  it, and none of those events can be in the window;
* the record after the range was logged at or after the window end, so was every record after
  it: nothing the chain logged during the window is left out;
* neither neighbour is itself a record of the window (its event time is outside it), and each
  links to the range by `prev` and is proven by an inclusion proof against a signed checkpoint.

A range at a chain's end has no neighbour there: seq 0 links to nothing, and a closing
checkpoint covers the chain's last record. An open chain (a running system) ends the range at
its newest checkpoint: what it logs after that is not proven, and is said so. What no
neighbour can prove: a record of the window logged after the record following the range (a late
record, e.g. a sampled-out decision promoted by a dispute days later); the bundle holds those
the store had when it was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_ai_audit.evidence.window import Window
from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.merkle import GENESIS, leaf_hash
from otel_ai_audit.integrity.proof import ProofError, build_proof, check_proof
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import Header, parse_header, parse_record
from otel_ai_audit.store.sqlite import AuditStore

SIDES = ("before", "after")


@dataclass(frozen=True)
class ChainExtract:
    """Seqs `first_seq`..`last_seq` of one chain (empty when `last_seq` < `first_seq`), proven
    against the chain's newest checkpoint, which covers its first `signed` records."""

    chain_id: str
    first_seq: int
    last_seq: int
    signed: int
    path: str

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def neighbours(self) -> dict[str, int | None]:
        """The seqs of the records either side of the range, None at the chain's ends."""
        return {"before": self.first_seq - 1 if self.first_seq > 0 else None,
                "after": self.last_seq + 1 if self.last_seq + 1 < self.signed else None}


def bounds_path(chain_id: str) -> str:
    return f"integrity/bounds-{chain_id}.json"


# --- building -----------------------------------------------------------------------------------


def plan_range(store: AuditStore, chain_id: str, window: Window, timed: tuple[int, int] | None,
               path: str) -> ChainExtract | None:
    """The chain's range: the records logged in the window and those whose event time is in it
    (`timed`: the first and last seq of those). None for a chain with nothing signed and
    nothing in the window. ProofError when a record of the window is not signed yet."""
    checkpoints = store.checkpoints(chain_id)
    signed = checkpoints[-1].size if checkpoints else 0
    if not signed and timed is None:
        return None
    first = _first_logged_at(store, chain_id, window.start_ns, signed)
    last = _first_logged_at(store, chain_id, window.end_ns, signed) - 1
    if timed is not None:
        first, last = min(first, timed[0]), max(last, timed[1])
    if last >= signed:
        raise ProofError(f"chain {chain_id}: record seq {last} of the window is not signed yet "
                         f"(its checkpoints cover {signed} record(s)): wait for the next "
                         "checkpoint or end the window earlier")
    return ChainExtract(chain_id, first, last, signed, path)


def _first_logged_at(store: AuditStore, chain_id: str, at_ns: int, size: int) -> int:
    """The first seq below `size` logged at or after `at_ns` (`size` if none): a binary search,
    as `logged` never decreases along a chain."""
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        if _header(store, chain_id, middle).logged_ns < at_ns:
            low = middle + 1
        else:
            high = middle
    return low


def _header(store: AuditStore, chain_id: str, seq: int) -> Header:
    header = parse_header(store.record_at(chain_id, seq) or b"")
    if header is None:
        raise ProofError(f"chain {chain_id}: record seq {seq} is missing or not canonical")
    return header


def write_bounds(store: AuditStore, folder: Path, extract: ChainExtract) -> None:
    """The inclusion proofs of the records either side of the range (null at a chain end)."""
    proofs = {side: None if seq is None else build_proof(store, record_id(store, extract.chain_id,
                                                                             seq))
              for side, seq in extract.neighbours.items()}
    (folder / bounds_path(extract.chain_id)).write_text(json.dumps(proofs, indent=2) + "\n",
                                                        encoding="utf-8")


def record_id(store: AuditStore, chain_id: str, seq: int) -> str:
    """The event id of a record, to build its inclusion proof by."""
    data = store.record_at(chain_id, seq)
    if data is None:
        raise ProofError(f"chain {chain_id}: record seq {seq} is missing")
    return str(parse_record(data)["event"].get("id"))


# --- checking -----------------------------------------------------------------------------------


@dataclass
class Edges:
    """The extract's first and last records (None for an empty range), and the inclusion proof
    of its last one: what the neighbours are checked against."""

    first: bytes | None = None
    last: bytes | None = None
    tail_proof: dict[str, Any] | None = None


@dataclass
class Bounds:
    """What the neighbours proved: problems, notices, the neighbours themselves, and the signed
    checkpoint the chain's proofs use (its payload), with `ends` True when the range runs to
    the chain's signed end."""

    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    before: bytes | None = None
    after: bytes | None = None
    checkpoint: bytes | None = None
    ends: bool = False


def check_bounds(folder: Path, chain: dict[str, Any], window: Window, keys: dict[str, Any],
                 edges: Edges) -> Bounds:
    """The range of `chain` holds every record of the window the chain logged: its
    neighbours are outside the window, linked to it and proven, or the range meets the
    chain's ends."""
    chain_id = str(chain.get("chain_id"))
    where = bounds_path(chain_id)
    result = Bounds()
    try:
        proofs = json.loads((folder / where).read_text(encoding="utf-8"))
        sides = {side: proofs[side] for side in SIDES}
    except (OSError, ValueError, KeyError, TypeError):
        result.problems.append(f"{where}: missing or not the proofs of the records before and "
                               "after the range")
        return result
    first, last = int(chain.get("first_seq", 0)), int(chain.get("last_seq", -1))
    records = {side: _proven(where, side, proof, chain_id, keys, result)
               for side, proof in sides.items() if proof is not None}
    result.before, result.after = records.get("before"), records.get("after")
    _same_checkpoint(where, [p for p in (*sides.values(), edges.tail_proof) if p], result)
    _check_before(chain_id, first, records.get("before"), edges.first, window, result)
    if "after" in records:
        _check_after(chain_id, last, records["after"], edges.last or records.get("before"),
                     window, result)
    else:
        _check_end(chain_id, last, result)
    return result


def _proven(where: str, side: str, proof: Any, chain_id: str, keys: dict[str, Any],
            result: Bounds) -> bytes:
    """The neighbour's bytes, its inclusion proof checked."""
    problems = check_proof(proof, keys) if isinstance(proof, dict) else ["not a proof"]
    result.problems += [f"{where}: the record {side} the range: {p}" for p in problems]
    record = str(proof.get("record", "")).encode("utf-8") if isinstance(proof, dict) else b""
    header = parse_header(record)
    if header is not None and header.chain_id != chain_id:
        result.problems.append(f"{where}: the record {side} the range is of chain "
                               f"{header.chain_id}, not {chain_id}")
    return record


def _same_checkpoint(where: str, proofs: list[dict[str, Any]], result: Bounds) -> None:
    """The chain's proofs all lead to one signed checkpoint: the one consistency is proven to."""
    payloads = {str(p.get("checkpoint", {}).get("payload", "")) for p in proofs
                if isinstance(p, dict) and isinstance(p.get("checkpoint"), dict)}
    if len(payloads) > 1:
        result.problems.append(f"{where}: the chain's proofs lead to different checkpoints")
    elif payloads:
        result.checkpoint = payloads.pop().encode("utf-8")


def _check_before(chain_id: str, first: int, before: bytes | None, first_record: bytes | None,
                  window: Window, result: Bounds) -> None:
    """`first_record`: the range's first record (None for an empty range, whose link to the
    record before is the record after's, checked with it)."""
    if before is None:
        if first != 0:
            result.problems.append(f"chain {chain_id}: boundary: the range starts at seq {first} "
                                   "and the bundle proves no record before it: records of the "
                                   "window may come before it")
        return
    header = _checked_header(chain_id, "before", before, first - 1, result)
    if header is None:
        return
    if header.logged_ns >= window.start_ns:
        result.problems.append(
            f"chain {chain_id}: boundary: the record before the range (seq {first - 1}) was "
            f"logged at {rfc3339_from_ns(header.logged_ns)}, not before the window start "
            f"({window.start}): the window's records up to seq {first - 1} are left out")
    _outside(chain_id, "before", before, first - 1, window, result)
    if first_record is not None and _prev(first_record) != leaf_hash(before):
        result.problems.append(f"chain {chain_id}: boundary: seq {first} does not link to the "
                               "record before the range")


def _check_after(chain_id: str, last: int, after: bytes, previous: bytes | None,
                 window: Window, result: Bounds) -> None:
    header = _checked_header(chain_id, "after", after, last + 1, result)
    if header is None:
        return
    if header.logged_ns < window.end_ns:
        result.problems.append(
            f"chain {chain_id}: boundary: the record after the range (seq {last + 1}) was "
            f"logged at {rfc3339_from_ns(header.logged_ns)}, before the window end ({window.end}): "
            f"the window's records from seq {last + 1} on are left out")
    _outside(chain_id, "after", after, last + 1, window, result)
    link = leaf_hash(previous) if previous is not None else GENESIS
    if bytes.fromhex(header.prev) != link:
        result.problems.append(f"chain {chain_id}: boundary: the record after the range (seq "
                               f"{last + 1}) does not link to seq {last}")


def _check_end(chain_id: str, last: int, result: Bounds) -> None:
    """No record after the range: the range must end where the chain's checkpoint does."""
    try:
        checkpoint = Checkpoint.from_payload(result.checkpoint or b"")
    except ValueError:
        result.problems.append(f"chain {chain_id}: boundary: the range ends at seq {last} and "
                               "no signed checkpoint shows the chain ends there")
        return
    result.ends = True
    if checkpoint.size != last + 1:
        result.problems.append(
            f"chain {chain_id}: boundary: the range ends at seq {last}, but checkpoint "
            f"{checkpoint.index} covers {checkpoint.size} record(s) and the bundle proves no "
            "record after the range: records of the window may follow it")
    elif not checkpoint.closed:
        result.notices.append(
            f"chain {chain_id} is open (a running system): the range ends at its newest "
            f"checkpoint ({checkpoint.index}, issued "
            f"{rfc3339_from_ns(checkpoint.issued_at_ns)}); records it logged in the window "
            "after that are not proven absent")


def _checked_header(chain_id: str, side: str, record: bytes, seq: int,
                    result: Bounds) -> Header | None:
    header = parse_header(record)
    if header is None or header.seq != seq:
        result.problems.append(f"chain {chain_id}: boundary: the record {side} the range is not "
                               f"seq {seq} of the chain")
        return None
    return header


def _outside(chain_id: str, side: str, record: bytes, seq: int, window: Window,
             result: Bounds) -> None:
    """A neighbour that is itself a record of the window is a record left out."""
    time = _event_time(record)
    if time is None or window.holds(time):
        result.problems.append(f"chain {chain_id}: boundary: the record {side} the range (seq "
                               f"{seq}) has event time {time}, in the window: it is left out")


def _event_time(record: bytes) -> str | None:
    try:
        return str(parse_record(record)["event"]["time"])
    except (ValueError, KeyError):
        return None


def _prev(record: bytes) -> bytes | None:
    header = parse_header(record)
    return bytes.fromhex(header.prev) if header is not None else None
