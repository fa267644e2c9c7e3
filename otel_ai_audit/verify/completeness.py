"""Completeness checks: is all of the trail there that was witnessed or counted?

Against the external anchors (a chain rolled back, cut below what an anchor saw, rewritten
since, or gone), against the chain's own forks (a child or parent chain gone), and against
the decisions the signed checkpoints count as lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_ai_audit.integrity.checkpoint import payload_hash
from otel_ai_audit.store.sqlite import StoreCorruptError
from otel_ai_audit.verify.checkpoints import Verified
from otel_ai_audit.verify.context import ChainContext
from otel_ai_audit.verify.findings import Finding, Kind
from otel_ai_audit.verify.reading import Positions, parent_chain
from otel_ai_audit.verify.roots import PrefixRoots
from otel_ai_audit.verify.source import RecordSource

if TYPE_CHECKING:
    from otel_ai_audit.anchor.verify import AnchorHistory, Witnessed


def check_losses(context: ChainContext, verified: list[Verified], allowed_losses: int,
                 notices: list[str]) -> None:
    """DECISIONS_LOST when the newest signed checkpoint counts decisions that never reached the
    chain (counts are cumulative); a notice instead when within the operator's allowance."""
    if not verified:
        return
    newest = verified[-1].checkpoint
    lost = newest.counters.get("failed", 0)
    if not isinstance(lost, int) or lost <= 0:
        return
    causes = newest.counters.get("failed_by_cause") or {}
    why = ", ".join(f"{cause}: {count}" for cause, count in sorted(causes.items()))
    detail = (f"checkpoint {newest.index} signs {lost} decision(s) lost before they reached "
              f"the chain{f' ({why})' if why else ''}")
    if lost <= allowed_losses:
        notices.append(f"chain {context.chain_id}: {detail}, within the allowance of "
                       f"{allowed_losses}")
        return
    context.add(max(newest.size - 1, 0), Kind.DECISIONS_LOST, detail)


def check_witnessed(context: ChainContext, order: Positions, verified: list[Verified],
                    witnessed: list[Witnessed]) -> None:
    """Hold one chain against every state of it the anchors witnessed.

    Shorter than witnessed: ROLLED_BACK when the store's newest checkpoint is one an earlier
    anchor saw (an old copy put back), else TRUNCATED_BELOW_ANCHOR. Records that do not hash to
    a witnessed Merkle root: HISTORY_REWRITTEN (whoever re-signed them held the key, but could
    not change the published anchor).
    """
    if not witnessed:
        return
    data = context.data
    count, contiguous = data.extent(order)
    newest = max(witnessed, key=lambda w: w.chain.size)
    if count < newest.chain.size:
        held = payload_hash(verified[-1].checkpoint.payload()) if verified else None
        earlier = next((w for w in witnessed if held and w.chain.checkpoint_hash == held), None)
        if earlier is not None:
            context.add(count, Kind.ROLLED_BACK, (
                f"the trail holds this chain as anchor {earlier.anchor_seq} saw it "
                f"({earlier.chain.size} record(s)); anchor {newest.anchor_seq} later saw "
                f"{newest.chain.size}: an earlier copy was put back"))
        else:
            context.add(count, Kind.TRUNCATED_BELOW_ANCHOR, (
                f"anchor {newest.anchor_seq} witnessed {newest.chain.size} signed record(s); "
                f"the chain holds {count}: records {count}..{newest.chain.size - 1} are gone "
                "with their checkpoints"))
    if not contiguous:
        return  # gaps are already findings; roots over a broken sequence prove nothing more
    sizes = sorted({w.chain.size for w in witnessed if 0 < w.chain.size <= count})
    roots: dict[int, set[tuple[int, str]]] = {}
    for w in witnessed:
        roots.setdefault(w.chain.size, set()).add((w.anchor_seq, w.chain.root))
    trees = PrefixRoots(data, order, sizes)
    for size in sizes:
        root = trees.root(size).hex()
        wrong = sorted(seq for seq, witnessed_root in roots[size] if witnessed_root != root)
        if wrong:
            context.add(size - 1, Kind.HISTORY_REWRITTEN, (
                f"records 0..{size - 1} do not hash to the Merkle root anchor {wrong[0]} "
                "witnessed: the history was rewritten after it was anchored"))
            return


def missing_chains(source: RecordSource, chain_ids: list[str],
                   forked: dict[str, tuple[str, int]],
                   anchors: AnchorHistory | None) -> list[Finding]:
    """MISSING_CHAIN for a chain that an anchor witnessed, that a parent's chain_fork names as
    its child, or that a forked child's chain_open names as its parent, and that the trail
    does not hold (so no chain context is made for it)."""
    missing: dict[str, str] = {}
    for child, (forker, seq) in forked.items():
        if child not in chain_ids:
            missing[child] = (f"chain {forker} forked it (chain_fork at seq {seq}); the trail "
                              "does not hold it")
    for chain_id in chain_ids:
        try:
            parent = parent_chain(source, chain_id)
        except StoreCorruptError:
            continue  # already a finding of the chain's own pass
        if parent is not None and parent not in chain_ids:
            missing.setdefault(parent, f"chain {chain_id} names it as its parent (its "
                                       "chain_open: forked from it, or a gateway's previous "
                                       "start); the trail does not hold it")
    if anchors is not None:
        for chain_id in set(anchors.witnessed) - set(chain_ids):
            last = anchors.witnessed[chain_id][-1]
            missing[chain_id] = (f"anchor {last.anchor_seq} witnessed this chain with "
                                 f"{last.chain.size} signed record(s); the trail does not "
                                 "hold it")
    return [Finding(chain_id, None, Kind.MISSING_CHAIN, detail)
            for chain_id, detail in sorted(missing.items())]
