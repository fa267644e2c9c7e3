"""Strict verification of audit chains wherever they are stored.

Parse, then verify against a trust policy, as sigstore-python does. Per chain:

1. Reading (`reading`): stream the records once into fixed-size facts (leaf hashes, headers).
2. The signed checkpoints (`checkpoints`), each judged by the trust policy (`policy`): which
   keys are trusted, what the store vouches for itself, how a key rotation hands trust on.
3. The records (`links`): sequence, hash links, timestamps, and the Merkle roots the
   checkpoints signed.
4. Completeness (`completeness`): decisions counted as lost, the states of the chain the
   external anchors witnessed, and chains that are gone.

Every check adds what it finds to the chain's `ChainContext`. Every gap, truncation, unclosed
chain and untrusted key is a failure, never "informational".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otel_ai_audit.store.sqlite import StoreCorruptError
from otel_ai_audit.verify.checkpoints import check_checkpoints
from otel_ai_audit.verify.completeness import check_losses, check_witnessed, missing_chains
from otel_ai_audit.verify.context import ChainContext
from otel_ai_audit.verify.findings import ChainSummary, Finding, Kind, Report
from otel_ai_audit.verify.links import check_indexed_fields, check_records
from otel_ai_audit.verify.parallel import read_chains, resolve_jobs
from otel_ai_audit.verify.policy import TrustPolicy
from otel_ai_audit.verify.reading import read_store_keys
from otel_ai_audit.verify.source import IndexedRecordSource, RecordSource

if TYPE_CHECKING:
    from otel_ai_audit.anchor.verify import AnchorHistory

__all__ = ["IndexedRecordSource", "RecordSource", "Verifier"]


class Verifier:
    """Verifies every chain of a `RecordSource` against the keys it is told to trust.

    `trusted_keys` maps key id to public key. When it is empty, trust can only come from the
    store's own key table: that is reported as SELF_ASSERTED_KEY unless `allow_self_asserted`.
    """

    def __init__(self, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None, *,
                 allow_self_asserted: bool = False,
                 anchors: AnchorHistory | None = None, allowed_losses: int = 0,
                 jobs: int | None = None) -> None:
        self.policy = TrustPolicy(dict(trusted_keys or {}),
                                  allow_self_asserted=allow_self_asserted)
        self.anchors = anchors
        self.allowed_losses = allowed_losses
        """Lost decisions per chain that the operator accepts (signed counts up to it are
        reported as a notice, not a finding)."""
        self.jobs = resolve_jobs(jobs)
        """Processes that read a store (default: $OTEL_AI_AUDIT_VERIFY_JOBS, else the CPUs);
        1 reads in this process. See `otel_ai_audit.verify.parallel`."""

    def verify(self, source: RecordSource,
               progress: Callable[[int], None] | None = None) -> Report:
        """Every chain of `source`; `progress(n)` is told as each n records have been read."""
        report = Report(source=source.description, trust=self.policy.name)
        if self.policy.notice is not None:
            report.notices.append(self.policy.notice)
        # Damage met while reading (the store opened, so it is a store) is a finding, like
        # any other loss of audit data; only a store that cannot be opened is an I/O error.
        try:
            store_keys = read_store_keys(source, report.findings)
            chain_ids = source.chain_ids()
        except StoreCorruptError as error:
            report.findings.append(Finding(None, None, Kind.STORE_CORRUPT,
                                           f"reading stopped early: {error}"))
            return report
        if self.anchors is not None:
            report.notices.extend(self.anchors.notices)
            report.notices.append(self.anchors.summary())
            report.findings.extend(self.anchors.findings)
        forked: dict[str, tuple[str, int]] = {}
        witnessed = self.anchors.witnessed if self.anchors is not None else {}
        for chain_id, data in read_chains(
                source, chain_ids, self.jobs,
                lambda chain: [seen.chain.size for seen in witnessed.get(chain, [])], progress):
            try:
                context = ChainContext.read(source, chain_id, data)
                self._verify_chain(context, store_keys, report)
            except StoreCorruptError as error:
                # What the chain's checks found before reading stopped is dropped with them.
                report.findings.append(Finding(chain_id, None, Kind.STORE_CORRUPT,
                                               f"reading stopped early: {error}"))
                continue
            for seq, child in context.data.forks.items():
                forked.setdefault(child, (chain_id, seq))
        report.findings.extend(missing_chains(source, chain_ids, forked, self.anchors))
        return report

    def _verify_chain(self, context: ChainContext, store_keys: Mapping[str, Ed25519PublicKey],
                      report: Report) -> None:
        """Every check of one chain, in order; its findings and summary into `report`."""
        trust = self.policy.for_chain(store_keys, context.data.rotations)
        checkpoints = check_checkpoints(context, trust)
        order = check_records(context, checkpoints)
        check_losses(context, checkpoints.verified, self.allowed_losses, report.notices)
        check_indexed_fields(context)
        if self.anchors is not None:
            check_witnessed(context, order, checkpoints.verified,
                            self.anchors.witnessed.get(context.chain_id, []))
        report.findings.extend(context.findings)
        report.chains.append(ChainSummary(
            chain_id=context.chain_id, records=context.data.size,
            checkpoints=len(checkpoints.verified), closed=checkpoints.closed_at is not None,
            signed_size=checkpoints.signed_size, key_ids=sorted(checkpoints.key_ids)))
