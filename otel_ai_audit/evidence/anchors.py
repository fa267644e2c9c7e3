"""The external anchors of the window in the bundle: which chains must be there, and that the
bundle's checkpoints are the history the anchors witnessed.

The bundle carries the published anchor objects as they are, from the last daily anchor issued
before the window start (a daily anchor lists every chain of the store) to the newest one: a
contiguous run, each anchor linked to the one before, signed, and time-stamped. From their
chain states follow the chains active in the window (`active_chains`): each must be in the
bundle, with its range (possibly empty, proven by its neighbours), or be proven another
system's by its signed opening record. For each chain in the bundle, an RFC 9162 consistency
proof ties every checkpoint the anchors witnessed to the checkpoint the bundle's inclusion
proofs use: a history rewritten and re-signed after it was anchored does not fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from otel_ai_audit.anchor.document import GENESIS, Anchor, anchor_hash
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.verify import (
    UNSTAMPED,
    AnchorHistory,
    Witnessed,
    check_anchor,
    read_anchor_history,
)
from otel_ai_audit.evidence.bounds import record_id
from otel_ai_audit.evidence.collect import opening_system
from otel_ai_audit.evidence.window import Window
from otel_ai_audit.integrity.checkpoint import Checkpoint, payload_hash
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.integrity.proof import (
    ProofError,
    build_consistency_proof,
    build_proof,
    check_consistency_proof,
    check_proof,
)
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import parse_header
from otel_ai_audit.store.sqlite import AuditStore

ANCHORS = "anchors"


def anchor_file(seq: int) -> str:
    return f"{ANCHORS}/{seq:012d}.json"


def consistency_path(chain_id: str) -> str:
    return f"integrity/consistency-{chain_id}.json"


def foreign_path(chain_id: str) -> str:
    return f"integrity/foreign-{chain_id}.json"


def period(anchors: Sequence[Anchor], window: Window) -> list[Anchor]:
    """The anchors a bundle carries: from the last daily anchor issued before the window start
    to the newest (all of them if none was)."""
    start = 0
    for position, anchor in enumerate(anchors):
        if anchor.daily and anchor.issued_at_ns < window.start_ns:
            start = position
    return list(anchors[start:])


def active_chains(anchors: Sequence[Anchor], window: Window) -> dict[str, int]:
    """The chains that may hold records of the window by the anchors' account (`anchors`: a
    `period`), each with the anchor showing it.

    A chain is active unless it was opened after the window (first witnessed by an anchor whose
    predecessor was issued at or after the window end too) or closed before it (witnessed closed
    by an anchor issued before the window start). Every chain of the period's first anchor is
    taken as opened before the window end.
    """
    active: dict[str, int] = {}
    seen: set[str] = set()
    previous: Anchor | None = None
    for anchor in anchors:
        may_predate_end = previous is None or previous.issued_at_ns < window.end_ns
        for chain in anchor.chains:
            if chain.closed and anchor.issued_at_ns < window.start_ns:
                active.pop(chain.chain_id, None)
            elif chain.chain_id not in seen and may_predate_end:
                active[chain.chain_id] = anchor.seq
            seen.add(chain.chain_id)
        previous = anchor
    return active


# --- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedAnchors:
    """Every published anchor as checked online (`history`), and the period's objects as they
    were published, by number."""

    history: AnchorHistory
    period: list[Anchor]
    bodies: dict[int, bytes]


def fetch_anchors(bucket: AnchorBucket, keys: dict[str, Any], window: Window, *,
                  tsa_chain: list[x509.Certificate] | None, min_retention_days: int,
                  store_id: str | None) -> FetchedAnchors:
    """Read and check the anchors at `bucket`, and the first version of each of the period's."""
    history = read_anchor_history(bucket, keys, tsa_chain=tsa_chain,
                                  min_retention_days=min_retention_days, store_id=store_id)
    carried = period(history.anchors, window)
    versions = bucket.versions()
    bodies = {}
    for anchor in carried:
        first = versions[bucket.location.key(anchor.seq)][0]
        bodies[anchor.seq] = bucket.get(first.key, first.version_id)
    return FetchedAnchors(history, carried, bodies)


def write_anchors(folder: Path, fetched: FetchedAnchors) -> dict[str, Any]:
    """The period's anchor objects, byte for byte; their manifest entry."""
    (folder / ANCHORS).mkdir(exist_ok=True)
    for seq, body in fetched.bodies.items():
        (folder / anchor_file(seq)).write_bytes(body)
    seqs = sorted(fetched.bodies)
    return {"location": fetched.history.location, "first": seqs[0] if seqs else None,
            "last": seqs[-1] if seqs else None}


def write_consistency(store: AuditStore, folder: Path, chain_id: str,
                      anchors: Sequence[Anchor], shown_last: int) -> None:
    """The consistency proof between the chain's newest checkpoint, which the bundle's
    inclusion proofs use, and the first checkpoint the anchors witnessed beyond the records the
    bundle shows (up to seq `shown_last`); null when no anchor saw the chain that far."""
    beyond = [(chain.size, chain.index) for anchor in anchors for chain in anchor.chains
              if chain.chain_id == chain_id and chain.index is not None
              and chain.size - 1 > shown_last]
    proof = None
    if beyond:
        anchored = min(beyond, key=lambda state: state[0])[1]
        newest = store.checkpoints(chain_id)[-1].index
        try:
            proof = build_consistency_proof(store, chain_id, min(anchored, newest),
                                            max(anchored, newest))
        except ProofError:
            pass  # the store lacks the checkpoint the anchors saw: verify-bundle names it
    _write_json(folder / consistency_path(chain_id), proof)


def write_foreign(store: AuditStore, folder: Path, chain_id: str, system: str) -> None:
    """The proof that a chain active in the window is another system's: its opening record."""
    proof = build_proof(store, record_id(store, chain_id, 0))
    _write_json(folder / foreign_path(chain_id), {"system": system, "opening": proof})


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- checking -----------------------------------------------------------------------------------


def check_anchors(folder: Path, spec: dict[str, Any], window: Window, keys: dict[str, Any],
                  tsa_chain: list[x509.Certificate] | None) -> tuple[AnchorHistory, list[str]]:
    """The bundle's anchors as a history (only the valid ones witness), and the problems with
    the run: an anchor missing, unsigned, unstamped or not linked to the one before, or a run
    that does not begin with a daily anchor from before the window."""
    history = AnchorHistory(str(spec.get("location")))
    if tsa_chain is None:
        history.notices.append(UNSTAMPED)
    try:
        seqs = range(int(spec["first"]), int(spec["last"]) + 1)
    except (KeyError, TypeError, ValueError):
        return history, [f"{ANCHORS}: the manifest names no anchors: nothing external vouches "
                         "for the bundle's completeness"]
    problems: list[str] = []
    previous: bytes | None = None
    for seq in seqs:
        try:
            body = (folder / anchor_file(seq)).read_bytes()
        except OSError:
            problems.append(f"{anchor_file(seq)}: missing: the run of anchors is broken")
            previous = None
            continue
        checked = check_anchor(history, seq, body, keys, tsa_chain)
        if checked is None:
            previous = None
            continue
        anchor, payload = checked
        if previous is not None and anchor.prev != anchor_hash(previous):
            problems.append(f"{anchor_file(seq)}: anchor {seq} does not link to anchor "
                            f"{seq - 1}: the run of anchors is broken")
        elif seq == 1 and anchor.prev != GENESIS:
            problems.append(f"{anchor_file(seq)}: anchor 1 links to a predecessor")
        _witness(history, anchor)
        previous = payload
    problems += [str(finding) for finding in history.findings]
    return history, problems + _check_start(history, window)


def _witness(history: AnchorHistory, anchor: Anchor) -> None:
    history.anchors.append(anchor)
    for chain in anchor.chains:
        history.witnessed.setdefault(chain.chain_id, []).append(
            Witnessed(anchor.seq, anchor.issued_at_ns, chain))


def _check_start(history: AnchorHistory, window: Window) -> list[str]:
    """The run lists every chain open at the window start only if it begins with a daily
    anchor issued before it (or with the store's first anchor)."""
    first = history.anchors[0] if history.anchors else None
    if first is None:
        return [f"{ANCHORS}: no valid anchor: nothing external vouches for the bundle's "
                "completeness"]
    if first.seq == 1 or (first.daily and first.issued_at_ns < window.start_ns):
        return []
    return [f"{anchor_file(first.seq)}: the anchors begin with anchor {first.seq}, not with a "
            "daily anchor issued before the window start: chains open at the start may be "
            "unlisted"]


def newest_notice(history: AnchorHistory, window: Window) -> list[str]:
    """A window reaching past the newest anchor is, for that part, only as complete as the
    store's own checkpoints say."""
    newest = history.latest
    if newest is None or newest.issued_at_ns >= window.end_ns:
        return []
    return [f"the bundle's newest anchor ({newest.seq}, issued "
            f"{rfc3339_from_ns(newest.issued_at_ns)}) is older than the window end: after it, "
            "the window is only as complete as the store's own checkpoints say"]


def check_active(history: AnchorHistory, window: Window,
                 present: set[str]) -> tuple[list[str], list[str]]:
    """Problems and notices for the chains active in the window that the bundle lacks."""
    problems, notices = [], []
    for chain_id, seq in sorted(active_chains(history.anchors, window).items()):
        if chain_id in present:
            continue
        if all(w.chain.index is None for w in history.witnessed.get(chain_id, [])):
            notices.append(f"chain {chain_id} is active in the window per anchor {seq}, but no "
                           "anchor witnessed a signed checkpoint of it: its records, unsigned, "
                           "prove nothing either way")
        else:
            problems.append(f"chain {chain_id} is active in the window per anchor {seq}, but "
                            "the bundle neither holds its range nor proves it another "
                            "system's: the chain is left out")
    return problems, notices


def check_foreign(folder: Path, chain_id: str, system: str,
                  keys: dict[str, Any]) -> tuple[list[str], Shown | None]:
    """Problems with the proof that `chain_id` is not `system`'s, and what it shows."""
    path = foreign_path(chain_id)
    try:
        proof = json.loads((folder / path).read_text(encoding="utf-8"))["opening"]
        record = str(proof["record"]).encode("utf-8")
        checkpoint = str(proof["checkpoint"]["payload"]).encode("utf-8")
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{path}: missing or not the proof of the chain's opening record"], None
    problems = [f"{path}: {problem}" for problem in check_proof(proof, keys)]
    header = parse_header(record)
    named = opening_system(record)
    if header is None or (header.chain_id, header.seq) != (chain_id, 0) or named is None:
        problems.append(f"{path}: does not prove the opening record of chain {chain_id}")
    elif named == system:
        problems.append(f"chain {chain_id} is {system}'s (its opening record names it), but "
                        "the bundle holds no range of it: the chain is left out")
    return problems, Shown(0, 0, {0: leaf_hash(record)}, checkpoint)


@dataclass(frozen=True)
class Shown:
    """What the bundle shows of a chain: its records `first`..`last` (neighbours included), the
    leaf hashes of those an anchor witnessed as a checkpoint's head, the signed checkpoint its
    proofs use (the payload), and whether it ends the chain there (no record after the range)."""

    first: int
    last: int
    leaves: dict[int, bytes]
    checkpoint: bytes | None
    ends: bool = False


def witnessed_heads(history: AnchorHistory, chain_id: str) -> set[int]:
    """The seqs whose records the anchors witnessed as the head of a checkpoint of the chain."""
    return {state.chain.size - 1 for state in _distinct(history.witnessed.get(chain_id, []))}


def check_witnessed(folder: Path, chain_id: str, witnessed: list[Witnessed], shown: Shown,
                    keys: dict[str, Any]) -> list[str]:
    """The bundle's records of the chain are the history the anchors witnessed.

    A checkpoint whose head is one of them must name that very record (its leaf hash, which
    the chain's `prev` links make commit to every record before it); the first witnessed beyond
    them must be consistent (RFC 9162) with the checkpoint the bundle's proofs use.
    Checkpoints that end before the shown records say nothing about them. Where the bundle ends
    the chain, no anchor may have witnessed a larger one.
    """
    try:
        ours = Checkpoint.from_payload(shown.checkpoint or b"")
    except ValueError:
        return []  # the chain's proofs are already reported as broken
    problems = []
    beyond: Witnessed | None = None
    for state in _distinct(witnessed):
        anchored, head = state.chain, state.chain.size - 1
        if shown.ends and anchored.size > ours.size:
            problems.append(f"chain {chain_id}: anchor {state.anchor_seq} witnessed "
                            f"{anchored.size} signed record(s), but the bundle ends the chain "
                            f"at seq {ours.size - 1}: records after the window are withheld")
        if shown.first <= head <= shown.last:
            if shown.leaves.get(head, b"").hex() != anchored.head:
                problems.append(f"chain {chain_id}: record seq {head} is not the one anchor "
                                f"{state.anchor_seq} witnessed as checkpoint {anchored.index}'s "
                                "head: the history was rewritten after it was anchored")
        elif head > shown.last and (beyond is None or anchored.size < beyond.chain.size):
            beyond = state
    if beyond is not None:
        problems += _check_consistency(folder, chain_id, beyond, shown.checkpoint or b"", keys)
    return problems


def _check_consistency(folder: Path, chain_id: str, state: Witnessed, checkpoint: bytes,
                       keys: dict[str, Any]) -> list[str]:
    path = consistency_path(chain_id)
    try:
        proof = json.loads((folder / path).read_text(encoding="utf-8"))
        pair = {payload_hash(proof[f"{side}_checkpoint"]["payload"].encode("utf-8"))
                for side in ("old", "new")} if proof is not None else set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"{path}: missing or not a consistency proof"]
    index = Checkpoint.from_payload(checkpoint).index
    if pair != {state.chain.checkpoint_hash, payload_hash(checkpoint)}:
        return [f"chain {chain_id}: no consistency proof between checkpoint "
                f"{state.chain.index} (witnessed by anchor {state.anchor_seq}) and checkpoint "
                f"{index}, which the bundle's proofs use"]
    return [f"{path}: checkpoints {state.chain.index} and {index}: {problem}"
            for problem in check_consistency_proof(proof, keys)]


def _distinct(witnessed: list[Witnessed]) -> list[Witnessed]:
    """Each signed state once (the first anchor to witness it); states without a checkpoint
    commit to nothing."""
    states: dict[str, Witnessed] = {}
    for state in witnessed:
        if state.chain.index is not None:
            states.setdefault(state.chain.checkpoint_hash, state)
    return list(states.values())
