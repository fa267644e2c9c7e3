"""Strict verification of audit chains wherever they are stored.

Per chain, in two passes:

1. Stream the records once: hash each (RFC 9162 leaf hash of the stored bytes) and read the
   chain header from the canonical prefix. Only hashes and headers are kept (about 80 bytes
   a record), so a chain of millions of records verifies in bounded memory.
2. Analyse with numpy: sequence, links, timestamps and the signed checkpoints. Only the rare
   anomalies go through Python logic that names what happened and where.

Every gap, truncation, unclosed chain and untrusted key is a failure, never "informational".
"""

from __future__ import annotations

import binascii
import hashlib
import json
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from otel_ai_audit.integrity.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    payload_hash,
    signature_valid,
)
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.integrity.merkle import GENESIS, MerkleAccumulator
from otel_ai_audit.record.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_json,
)
from otel_ai_audit.record.schema import HEADER_PATTERN, SCHEMA_VERSION, parse_record
from otel_ai_audit.store.sqlite import StoreCorruptError
from otel_ai_audit.verify.findings import ChainSummary, Finding, Kind, Report

if TYPE_CHECKING:
    from otel_ai_audit.anchor.verify import AnchorHistory, Witnessed

_OK, _NONCANONICAL, _MALFORMED, _FOREIGN = 0, 1, 2, 3
_ROTATION_MARK = b'"type":"key_rotation"'
_FORK_MARK = b'"type":"chain_fork"'
_INT64_MAX = 2**63 - 1
_TORN = "the last record is cut off: the writer crashed mid-write"
_RESERIALISED = "record was re-serialised: its bytes are not the canonical form that was hashed"


class RecordSource(Protocol):
    """Where records are stored: the embedded store, Elasticsearch, an export file."""

    description: str

    def chain_ids(self) -> list[str]: ...

    def records(self, chain_id: str) -> Iterator[tuple[int, bytes]]:
        """(stored position/seq, canonical bytes) in stored order."""
        ...

    def record_at(self, chain_id: str, seq: int) -> bytes | None: ...

    def checkpoints(self, chain_id: str) -> list[SignedCheckpoint]: ...

    def public_keys(self) -> dict[str, str]: ...


class IndexedRecordSource(RecordSource, Protocol):
    """A source that indexes fields beside the canonical bytes (Elasticsearch): the verifier
    asks it where those fields disagree with the bytes."""

    def field_mismatches(self, chain_id: str) -> list[tuple[int, str]]:
        """(seq, what differs) for each record whose indexed fields contradict its bytes."""
        ...


@dataclass
class _Verified:
    """A checkpoint whose signature verified: what it commits to."""

    checkpoint: Checkpoint
    trusted: bool


@dataclass
class _ChainData:
    """Pass-1 output for one chain (positions are in stored order)."""

    columns: np.ndarray
    seqs: np.ndarray
    logged: np.ndarray
    states: np.ndarray
    leaves: np.ndarray
    prevs: np.ndarray
    rotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    forks: dict[int, str] = field(default_factory=dict)
    """seq of each chain_fork record: the child chain it names."""
    corrupt: str | None = None

    @property
    def size(self) -> int:
        return len(self.seqs)


class Verifier:
    """Verifies every chain of a `RecordSource` against the keys it is told to trust.

    `trusted_keys` maps key id to public key. When it is empty, trust can only come from the
    store's own key table: that is reported as SELF_ASSERTED_KEY unless `allow_self_asserted`.
    """

    def __init__(self, trusted_keys: Mapping[str, Any] | None = None, *,
                 allow_self_asserted: bool = False,
                 anchors: AnchorHistory | None = None, allowed_losses: int = 0) -> None:
        self.trusted_keys = dict(trusted_keys or {})
        self.allow_self_asserted = allow_self_asserted
        self.anchors = anchors
        self.allowed_losses = allowed_losses
        """Lost decisions per chain that the operator accepts (signed counts up to it are
        reported as a notice, not a finding)."""

    def verify(self, source: RecordSource) -> Report:
        trust = "pinned" if self.trusted_keys else "self-asserted"
        report = Report(source=source.description, trust=trust)
        if not self.trusted_keys:
            report.notices.append(
                "no trusted public key was given: signatures were checked against the keys the "
                "store itself holds, which proves integrity but not who signed; pass "
                "--public-key FILE (or a trust file) to verify against a key you trust"
            )
        # Damage met while reading (the store opened, so it is a store) is a finding, like
        # any other loss of audit data; only a store that cannot be opened is an I/O error.
        try:
            store_keys = self._store_keys(source, report)
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
        for chain_id in chain_ids:
            try:
                for seq, child in self._verify_chain(source, chain_id, store_keys,
                                                     report).items():
                    forked.setdefault(child, (chain_id, seq))
            except StoreCorruptError as error:
                report.findings.append(Finding(chain_id, None, Kind.STORE_CORRUPT,
                                               f"reading stopped early: {error}"))
        self._check_missing_chains(source, chain_ids, forked, report)
        return report

    def _check_missing_chains(self, source: RecordSource, chain_ids: list[str],
                              forked: dict[str, tuple[str, int]], report: Report) -> None:
        """MISSING_CHAIN for a chain that an anchor witnessed, that a parent's chain_fork
        names as its child, or that a forked child's chain_open names as its parent, and that
        the trail does not hold."""
        missing: dict[str, str] = {}
        for child, (parent, seq) in forked.items():
            if child not in chain_ids:
                missing[child] = (f"chain {parent} forked it (chain_fork at seq {seq}); the "
                                  "trail does not hold it")
        for chain_id in chain_ids:
            try:
                parent = _parent_chain(source, chain_id)
            except StoreCorruptError:
                continue  # already a finding of the chain's own pass
            if parent is not None and parent not in chain_ids:
                missing.setdefault(parent, f"chain {chain_id} was forked from it (its "
                                           "chain_open names it); the trail does not hold it")
        if self.anchors is not None:
            for chain_id in set(self.anchors.witnessed) - set(chain_ids):
                last = self.anchors.witnessed[chain_id][-1]
                missing[chain_id] = (f"anchor {last.anchor_seq} witnessed this chain with "
                                     f"{last.chain.size} signed record(s); the trail does not "
                                     "hold it")
        for chain_id, detail in sorted(missing.items()):
            report.findings.append(Finding(chain_id, None, Kind.MISSING_CHAIN, detail))

    # --- keys --------------------------------------------------------------------------------

    def _store_keys(self, source: RecordSource, report: Report) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for stored_id, pem in source.public_keys().items():
            try:
                public_key = load_public_key_pem(pem)
            except ValueError as error:
                report.findings.append(Finding(None, None, Kind.KEY_MISMATCH,
                                               f"stored key {stored_id} is unreadable: {error}"))
                continue
            if key_id(public_key) != stored_id:
                report.findings.append(Finding(
                    None, None, Kind.KEY_MISMATCH,
                    f"stored public key filed under {stored_id} has fingerprint "
                    f"{key_id(public_key)}: the key was substituted"))
                continue
            keys[stored_id] = public_key
        return keys

    # --- one chain ---------------------------------------------------------------------------

    def _verify_chain(self, source: RecordSource, chain_id: str, store_keys: dict[str, Any],
                      report: Report) -> dict[int, str]:
        """Verify one chain into `report`; the children its chain_fork records name."""
        findings: list[Finding] = []
        data = _read_chain(source, chain_id)
        if data.corrupt:
            findings.append(Finding(chain_id, None, Kind.STORE_CORRUPT, data.corrupt))
        verified, closed_at, key_ids = self._check_checkpoints(
            source, chain_id, data, store_keys, findings)
        order = self._check_records(source, chain_id, data, verified, closed_at, findings)
        self._check_losses(chain_id, verified, findings, report)
        self._check_indexed_fields(source, chain_id, findings)
        if self.anchors is not None:
            _check_witnessed(chain_id, data, order, verified,
                             self.anchors.witnessed.get(chain_id, []), findings)
        report.findings.extend(findings)
        valid = [item.checkpoint for item in verified]
        report.chains.append(ChainSummary(
            chain_id=chain_id, records=data.size, checkpoints=len(verified),
            closed=closed_at is not None, signed_size=max((c.size for c in valid), default=0),
            key_ids=sorted(key_ids)))
        return data.forks

    def _check_losses(self, chain_id: str, verified: list[_Verified], findings: list[Finding],
                      report: Report) -> None:
        """DECISIONS_LOST when the newest signed checkpoint counts decisions that never reached
        the chain (counts are cumulative), unless within the operator's allowance."""
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
        if lost <= self.allowed_losses:
            report.notices.append(f"chain {chain_id}: {detail}, within the allowance of "
                                  f"{self.allowed_losses}")
            return
        findings.append(Finding(chain_id, max(newest.size - 1, 0), Kind.DECISIONS_LOST, detail))

    @staticmethod
    def _check_indexed_fields(source: RecordSource, chain_id: str,
                              findings: list[Finding]) -> None:
        """INDEX_MISMATCH for each record an `IndexedRecordSource` finds contradicted by its
        own indexed fields (once per record: the seq drift check may have named it)."""
        mismatches = getattr(source, "field_mismatches", None)
        if mismatches is None:
            return
        named = {f.seq for f in findings if f.kind is Kind.INDEX_MISMATCH}
        for seq, detail in mismatches(chain_id):
            if seq not in named:
                named.add(seq)
                findings.append(Finding(chain_id, seq, Kind.INDEX_MISMATCH, detail))

    def _check_checkpoints(self, source: RecordSource, chain_id: str, data: _ChainData,
                           store_keys: dict[str, Any], findings: list[Finding],
                           ) -> tuple[list[_Verified], int | None, set[str]]:
        """Signatures, trust, the checkpoint chain, forks. Returns the checkpoints that verified."""
        verified: list[_Verified] = []
        trusted = dict(self.trusted_keys)
        pending_rotations = dict(sorted(data.rotations.items()))
        previous: tuple[Checkpoint, bytes] | None = None
        closed_at: int | None = None
        heads_by_size: dict[int, str] = {}
        key_ids: set[str] = set()
        follows_rejected = False
        for expected_index, signed in enumerate(source.checkpoints(chain_id)):
            # A checkpoint rejected below (already a finding) cannot be linked to: its successor's
            # link is not checked, so one edited checkpoint is reported once, not twice.
            after_rejected, follows_rejected = follows_rejected, True
            try:
                checkpoint = Checkpoint.from_payload(signed.payload)
            except ValueError as error:
                findings.append(Finding(chain_id, None, Kind.MALFORMED_CHECKPOINT,
                                        f"checkpoint {signed.index}: {error}"))
                continue
            where = max(checkpoint.size - 1, 0)
            if (checkpoint.chain_id, checkpoint.index, checkpoint.size, checkpoint.key_id) != (
                    chain_id, signed.index, signed.size, signed.key_id):
                findings.append(Finding(chain_id, where, Kind.MALFORMED_CHECKPOINT,
                                        f"checkpoint {signed.index}: stored index fields disagree "
                                        "with its signed payload"))
            key_ids.add(checkpoint.key_id)
            public_key = trusted.get(checkpoint.key_id) or store_keys.get(checkpoint.key_id)
            if public_key is None:
                findings.append(Finding(chain_id, where, Kind.UNKNOWN_KEY,
                                        f"checkpoint {checkpoint.index} is signed by key "
                                        f"{checkpoint.key_id}, which is known nowhere"))
                continue
            if not signature_valid(public_key, signed.payload, signed.signature):
                findings.append(Finding(chain_id, where, Kind.BAD_SIGNATURE,
                                        f"checkpoint {checkpoint.index}: signature does not "
                                        f"verify with key {checkpoint.key_id[:16]}: edited or "
                                        "forged"))
                continue
            is_trusted = checkpoint.key_id in trusted
            if not is_trusted:
                if self.trusted_keys:
                    findings.append(Finding(chain_id, where, Kind.UNTRUSTED_KEY,
                                            f"checkpoint {checkpoint.index} is signed by key "
                                            f"{checkpoint.key_id[:16]}, not one you trust"))
                elif not self.allow_self_asserted:
                    findings.append(Finding(chain_id, where, Kind.SELF_ASSERTED_KEY,
                                            f"checkpoint {checkpoint.index} is signed by key "
                                            f"{checkpoint.key_id[:16]}, vouched for only by the "
                                            "store"))
            # Key rotation: a key introduced by a rotation record that a trusted checkpoint
            # covers becomes trusted for the checkpoints after it.
            for seq, rotation in list(pending_rotations.items()):
                if seq < checkpoint.size and checkpoint.key_id in trusted:
                    new_key = _rotation_key(rotation, trusted)
                    if new_key is not None:
                        trusted[key_id(new_key)] = new_key
                    del pending_rotations[seq]
            if expected_index != checkpoint.index:
                findings.append(Finding(chain_id, where, Kind.CHECKPOINT_CHAIN_BROKEN,
                                        f"checkpoint {expected_index} is missing (found "
                                        f"{checkpoint.index} in its place)"))
            if previous is not None:
                before, before_payload = previous
                if checkpoint.prev_checkpoint != payload_hash(before_payload) and (
                        expected_index == checkpoint.index) and not after_rejected:
                    findings.append(Finding(chain_id, where, Kind.CHECKPOINT_CHAIN_BROKEN,
                                            f"checkpoint {checkpoint.index} does not link to "
                                            f"checkpoint {before.index}"))
                if checkpoint.issued_at_ns < before.issued_at_ns:
                    findings.append(Finding(chain_id, where, Kind.TIMESTAMP_BACKWARDS,
                                            f"checkpoint {checkpoint.index} was issued before "
                                            f"checkpoint {before.index}"))
                if before.closed:
                    findings.append(Finding(chain_id, where, Kind.RECORD_AFTER_CLOSE,
                                            f"checkpoint {checkpoint.index} follows the closing "
                                            f"checkpoint {before.index}"))
            elif checkpoint.prev_checkpoint and not after_rejected:
                findings.append(Finding(chain_id, where, Kind.CHECKPOINT_CHAIN_BROKEN,
                                        f"checkpoint {checkpoint.index} links to a predecessor "
                                        "that is missing"))
            known_head = heads_by_size.get(checkpoint.size)
            if known_head is not None and known_head != checkpoint.head:
                findings.append(Finding(chain_id, where, Kind.FORK,
                                        f"two checkpoints of size {checkpoint.size} commit to "
                                        "different heads"))
            if verified and checkpoint.size < verified[-1].checkpoint.size:
                findings.append(Finding(chain_id, where, Kind.FORK,
                                        f"checkpoint {checkpoint.index} (size {checkpoint.size}) "
                                        f"is smaller than checkpoint "
                                        f"{verified[-1].checkpoint.index} "
                                        f"(size {verified[-1].checkpoint.size})"))
            heads_by_size[checkpoint.size] = checkpoint.head
            verified.append(_Verified(checkpoint, is_trusted))
            previous = (checkpoint, signed.payload)
            follows_rejected = False
            if checkpoint.closed and closed_at is None:
                closed_at = checkpoint.size
        return verified, closed_at, key_ids

    def _check_records(self, source: RecordSource, chain_id: str, data: _ChainData,
                       verified: list[_Verified], closed_at: int | None,
                       findings: list[Finding]) -> np.ndarray:
        """Every check of the records themselves; the positions of the chain in seq order."""
        signed_size = max((a.checkpoint.size for a in verified), default=0)
        n = data.size
        states = data.states
        usable = np.ones(n, dtype=bool)
        torn_at: int | None = None
        for position in np.flatnonzero(states == _MALFORMED):
            column = int(data.columns[position])
            if position == n - 1 and column >= signed_size:
                torn_at = column
                findings.append(Finding(chain_id, column, Kind.TORN_RECORD, _TORN))
            else:
                findings.append(Finding(chain_id, column, Kind.MALFORMED_RECORD,
                                        "stored bytes are not an audit record"))
            usable[position] = False
        for position in np.flatnonzero(states == _FOREIGN):
            findings.append(Finding(chain_id, int(data.columns[position]), Kind.SPLICED,
                                    "record belongs to another chain"))
            usable[position] = False
        version_too_new = usable & (states == _OK) & (data.logged < 0)
        for position in np.flatnonzero(version_too_new):
            findings.append(Finding(chain_id, int(data.columns[position]),
                                    Kind.UNSUPPORTED_VERSION,
                                    f"record schema is newer than version {SCHEMA_VERSION}"))
            usable[position] = False

        order = self._resolve_order(source, chain_id, data, usable, verified, findings)
        blamed: set[int] = set()
        self._check_links(source, chain_id, data, order, verified, blamed, findings)
        self._check_checkpoint_roots(source, chain_id, data, order, verified, blamed, findings)
        self._check_unwitnessed_tail(source, chain_id, data, order, signed_size, findings)
        top = int(data.seqs[order[-1]]) + 1 if len(order) else 0
        if torn_at is not None:
            top = max(top, torn_at + 1)
        if closed_at is None:
            if n or verified:
                findings.append(Finding(
                    chain_id, top - 1 if top else None, Kind.CHAIN_NOT_CLOSED,
                    f"no closing checkpoint; signed checkpoints cover {signed_size} of {top} "
                    "records: the writing process did not shut down cleanly (crash, SIGKILL, "
                    "power loss) or the closing checkpoint was removed"))
        elif top > closed_at:
            findings.append(Finding(chain_id, closed_at, Kind.RECORD_AFTER_CLOSE,
                                    f"{top - closed_at} record(s) after the closing checkpoint "
                                    f"(size {closed_at})"))
        return order

    @staticmethod
    def _check_unwitnessed_tail(source: RecordSource, chain_id: str, data: _ChainData,
                                order: np.ndarray, signed_size: int,
                                findings: list[Finding]) -> None:
        """Check the last record whole when nothing commits to it.

        Pass 1 reads only the canonical prefix; every other record's bytes are vouched for by
        its successor's link or a checkpoint. The last record of a chain no checkpoint covers
        (a crash) has neither, so a write torn after its header would pass as intact.
        """
        if len(order) == 0:
            return
        position = int(order[-1])
        seq = int(data.seqs[position])
        if seq < signed_size:
            return
        if data.states[position] == _NONCANONICAL:
            findings.append(Finding(chain_id, seq, Kind.NONCANONICAL, _RESERIALISED))
            return
        stored = source.record_at(chain_id, int(data.columns[position]))
        if stored is None:
            return
        try:
            record = parse_record(stored)
        except ValueError:
            findings.append(Finding(chain_id, seq, Kind.TORN_RECORD, _TORN))
            return
        try:
            if canonical_json(record) != stored:
                findings.append(Finding(chain_id, seq, Kind.NONCANONICAL, _RESERIALISED))
        except CanonicalizationError:
            pass  # e.g. a float of 2**53, written as an integer literal, parses back too big

    def _resolve_order(self, source: RecordSource, chain_id: str, data: _ChainData,
                       usable: np.ndarray, verified: list[_Verified],
                       findings: list[Finding]) -> np.ndarray:
        """Positions of the records that form the chain, in sequence order.

        Finds duplicates (replays), inserted records (two records claiming one seq), reordered
        records and gaps, and index fields that disagree with the bytes.
        """
        positions = np.flatnonzero(usable)
        seqs = data.seqs[positions]
        if len(positions) == 0:
            return positions
        in_order = bool(np.all(np.diff(seqs) > 0)) if len(seqs) > 1 else True
        if in_order and seqs[0] == 0 and seqs[-1] == len(seqs) - 1:
            self._check_index_drift(chain_id, data, positions, findings)
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
                    findings.append(Finding(chain_id, seq, Kind.DUPLICATE,
                                            f"record seq {seq} is stored again at position "
                                            f"{int(data.columns[position])} (replay)"))
                else:
                    unique[leaf] = position
            if len(unique) == 1:
                chosen[seq] = next(iter(unique.values()))
                continue
            genuine = self._genuine_claimant(data, seq, unique, by_seq, heads)
            for position in unique.values():
                if position != genuine:
                    findings.append(Finding(chain_id, seq, Kind.INSERTED,
                                            f"a record not linked into the chain claims seq "
                                            f"{seq} (stored at position "
                                            f"{int(data.columns[position])})"))
            chosen[seq] = genuine
        ordered_seqs = sorted(chosen)
        chosen_positions = [chosen[seq] for seq in ordered_seqs]
        stored_rank = sorted(chosen_positions)
        for seq, position, rank_position in zip(ordered_seqs, chosen_positions, stored_rank,
                                                    strict=True):
            if position != rank_position:
                findings.append(Finding(chain_id, seq, Kind.REORDERED,
                                        f"record seq {seq} is stored at position "
                                        f"{int(data.columns[position])}, out of sequence order"))
        expected = 0
        for seq in ordered_seqs:
            if seq > expected:
                span = f"{expected}" if seq - expected == 1 else f"{expected}..{seq - 1}"
                findings.append(Finding(chain_id, expected, Kind.GAP,
                                        f"record(s) {span} are missing"))
            expected = seq + 1
        return np.array(chosen_positions, dtype=np.int64)

    @staticmethod
    def _genuine_claimant(data: _ChainData, seq: int, unique: dict[bytes, int],
                          by_seq: dict[int, list[int]], heads: dict[int, str]) -> int:
        """Of several records claiming `seq`, the one its successor or a checkpoint links to."""
        witnesses = {data.prevs[p].tobytes() for p in by_seq.get(seq + 1, [])}
        if seq in heads:
            witnesses.add(bytes.fromhex(heads[seq]))
        for leaf, position in unique.items():
            if leaf in witnesses:
                return position
        return min(unique.values())

    @staticmethod
    def _check_index_drift(chain_id: str, data: _ChainData, positions: np.ndarray,
                           findings: list[Finding]) -> None:
        mismatched = np.flatnonzero(data.columns[positions] != data.seqs[positions])
        if len(mismatched):
            first = positions[mismatched[0]]
            findings.append(Finding(chain_id, int(data.seqs[first]), Kind.INDEX_MISMATCH,
                                    f"{len(mismatched)} record(s) are stored under a seq that "
                                    f"differs from their own (first: stored as "
                                    f"{int(data.columns[first])})"))

    def _check_links(self, source: RecordSource, chain_id: str, data: _ChainData,
                     order: np.ndarray, verified: list[_Verified], blamed: set[int],
                     findings: list[Finding]) -> None:
        if len(order) == 0:
            return
        seqs = data.seqs[order]
        leaves = data.leaves[order]
        prevs = data.prevs[order]
        consecutive = np.diff(seqs) == 1
        linked = np.all(prevs[1:] == leaves[:-1], axis=1)
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
            findings.append(self._blame(source, chain_id, data, int(order[culprit]), seq))
        logged = data.logged[order]
        backwards = np.flatnonzero(consecutive & (logged[1:] < logged[:-1])) + 1
        for i in backwards.tolist():
            seq = int(seqs[i])
            if seq not in blamed and seq - 1 not in blamed:
                findings.append(Finding(chain_id, seq, Kind.TIMESTAMP_BACKWARDS,
                                        "record was logged earlier than its predecessor"))

    @staticmethod
    def _blame(source: RecordSource, chain_id: str, data: _ChainData, position: int,
               seq: int) -> Finding:
        """RECORD_MODIFIED, or NONCANONICAL when the bytes only changed their serialisation."""
        if data.states[position] == _NONCANONICAL:
            return Finding(chain_id, seq, Kind.NONCANONICAL, _RESERIALISED)
        stored = source.record_at(chain_id, int(data.columns[position]))
        if stored is not None:
            try:
                if canonical_json(json.loads(stored)) != stored:
                    return Finding(chain_id, seq, Kind.NONCANONICAL, _RESERIALISED)
            except (ValueError, CanonicalizationError):
                pass
        return Finding(chain_id, seq, Kind.RECORD_MODIFIED,
                       "record differs from what the chain committed to")

    def _check_checkpoint_roots(self, source: RecordSource, chain_id: str, data: _ChainData,
                       order: np.ndarray, verified: list[_Verified], blamed: set[int],
                       findings: list[Finding]) -> None:
        if not verified:
            return
        seqs = data.seqs[order]
        count = int(seqs[-1]) + 1 if len(order) else 0
        contiguous = len(order) == count
        # Of two checkpoints of one size (a fork, reported with the checkpoints), the records
        # are held to the one whose head they have, not blamed for the other branch.
        kept: dict[int, _Verified] = {}
        for item in verified:
            size = item.checkpoint.size
            if size not in kept or (contiguous and 0 < size <= count and item.checkpoint.head
                                    == data.leaves[order[size - 1]].tobytes().hex()):
                kept[size] = item
        by_size = [kept[size] for size in sorted(kept)]
        truncated_reported = False
        tree = MerkleAccumulator()
        next_leaf = 0
        last_good = 0
        for item in by_size:
            checkpoint = item.checkpoint
            size = checkpoint.size
            if size > count:
                if not truncated_reported and not data.corrupt:
                    findings.append(Finding(chain_id, count, Kind.TRUNCATED,
                                            f"checkpoint {checkpoint.index} covers {size} "
                                            f"records; records {count}..{size - 1} are missing"))
                    truncated_reported = True
                continue
            if not contiguous or size == 0:
                continue
            before_last = None
            while next_leaf < size:
                if next_leaf == size - 1:
                    before_last = _copy_tree(tree)
                tree.append(data.leaves[order[next_leaf]].tobytes())
                next_leaf += 1
            head_ok = data.leaves[order[size - 1]].tobytes().hex() == checkpoint.head
            root_ok = tree.root().hex() == checkpoint.root
            if head_ok and root_ok:
                last_good = size
                continue
            if any(last_good <= seq < size for seq in blamed):
                continue
            if before_last is not None and not head_ok:
                before_last.append(bytes.fromhex(checkpoint.head))
                if before_last.root().hex() == checkpoint.root:
                    seq = size - 1
                    blamed.add(seq)
                    findings.append(self._blame(source, chain_id, data, int(order[seq]), seq))
                    continue
            findings.append(Finding(
                chain_id, size - 1, Kind.CHECKPOINT_MISMATCH,
                f"records {last_good}..{size - 1} do not hash to the head and Merkle root that "
                f"checkpoint {checkpoint.index} signed: the chain was rewritten after signing"))
            blamed.update(range(last_good, size))


def _check_witnessed(chain_id: str, data: _ChainData, order: np.ndarray,
                     verified: list[_Verified], witnessed: list[Witnessed],
                     findings: list[Finding]) -> None:
    """Hold one chain against every state of it the anchors witnessed.

    Shorter than witnessed: ROLLED_BACK when the store's newest checkpoint is one an earlier
    anchor saw (an old copy put back), else TRUNCATED_BELOW_ANCHOR. Records that do not hash to
    a witnessed Merkle root: HISTORY_REWRITTEN (whoever re-signed them held the key, but could
    not change the published anchor).
    """
    if not witnessed:
        return
    seqs = data.seqs[order]
    count = int(seqs[-1]) + 1 if len(order) else 0
    contiguous = len(order) == count
    newest = max(witnessed, key=lambda w: w.chain.size)
    if count < newest.chain.size:
        held = payload_hash(verified[-1].checkpoint.payload()) if verified else None
        earlier = next((w for w in witnessed if held and w.chain.checkpoint_hash == held), None)
        if earlier is not None:
            findings.append(Finding(chain_id, count, Kind.ROLLED_BACK, (
                f"the trail holds this chain as anchor {earlier.anchor_seq} saw it "
                f"({earlier.chain.size} record(s)); anchor {newest.anchor_seq} later saw "
                f"{newest.chain.size}: an earlier copy was put back")))
        else:
            findings.append(Finding(chain_id, count, Kind.TRUNCATED_BELOW_ANCHOR, (
                f"anchor {newest.anchor_seq} witnessed {newest.chain.size} signed record(s); "
                f"the chain holds {count}: records {count}..{newest.chain.size - 1} are gone "
                "with their checkpoints")))
    if not contiguous:
        return  # gaps are already findings; roots over a broken sequence prove nothing more
    sizes = sorted({w.chain.size for w in witnessed if 0 < w.chain.size <= count})
    roots: dict[int, set[tuple[int, str]]] = {}
    for w in witnessed:
        roots.setdefault(w.chain.size, set()).add((w.anchor_seq, w.chain.root))
    tree = MerkleAccumulator()
    for size in sizes:
        while tree.size < size:
            tree.append(data.leaves[order[tree.size]].tobytes())
        root = tree.root().hex()
        wrong = sorted(seq for seq, witnessed_root in roots[size] if witnessed_root != root)
        if wrong:
            findings.append(Finding(chain_id, size - 1, Kind.HISTORY_REWRITTEN, (
                f"records 0..{size - 1} do not hash to the Merkle root anchor {wrong[0]} "
                "witnessed: the history was rewritten after it was anchored")))
            return


def _forked_child(data: bytes) -> str | None:
    """The child a chain_fork record names (the marker may also be application data)."""
    try:
        event = parse_record(data)["event"]
    except (ValueError, KeyError, TypeError):
        return None
    child = event.get("child_chain_id") if event.get("type") == "chain_fork" else None
    return str(child) if child else None


def _parent_chain(source: RecordSource, chain_id: str) -> str | None:
    """The parent a forked chain's chain_open record names (None for a first chain)."""
    first = source.record_at(chain_id, 0)
    if first is None or b'"parent_chain_id"' not in first:
        return None
    try:
        event = parse_record(first)["event"]
    except (ValueError, KeyError, TypeError):
        return None
    parent = event.get("parent_chain_id") if event.get("type") == "chain_open" else None
    return str(parent) if parent else None


def _copy_tree(tree: MerkleAccumulator) -> MerkleAccumulator:
    copy = MerkleAccumulator()
    copy.size = tree.size
    copy._stack = list(tree._stack)
    return copy


def _rotation_key(rotation: dict[str, Any], trusted: Mapping[str, Any]) -> Any:
    """The key a rotation record introduces, or None if it is not a rotation by a trusted key.

    Pass 1 only looks for the type marker anywhere in the bytes, so application data that
    mentions it (an input field `{"type": "key_rotation"}` beside a `new_public_key`) reaches
    here too: only a record whose own event type is a rotation, from a key already trusted,
    may hand trust on.
    """
    event = rotation["event"]
    if event.get("type") != "key_rotation" or event.get("old_key_id") not in trusted:
        return None
    try:
        key = load_public_key_pem(event["new_public_key"])
    except (KeyError, TypeError, ValueError):
        return None
    return key if key_id(key) == event.get("new_key_id") else None


def _read_chain(source: RecordSource, chain_id: str) -> _ChainData:
    """Pass 1: hash every record and read its header, keeping only fixed-size facts."""
    columns, seqs, logged = array("q"), array("q"), array("q")
    states = bytearray()
    leaves = bytearray()
    prevs = bytearray()
    rotations: dict[int, dict[str, Any]] = {}
    forks: dict[int, str] = {}
    chain_bytes = chain_id.encode()
    match_header = HEADER_PATTERN.match
    sha256 = hashlib.sha256
    unhex = binascii.unhexlify
    corrupt = None
    try:
        for column, data in source.records(chain_id):
            leaves += sha256(b"\x00" + data).digest()
            match = match_header(data)
            columns.append(column)
            if match is not None:
                cid, logged_ns, prev, seq, version = match.groups()
                prevs += unhex(prev)
                seqs.append(int(seq))
                # Clamped: a forged 20-digit time must be reported, not overflow the array.
                logged.append(min(int(logged_ns), _INT64_MAX)
                              if int(version) <= SCHEMA_VERSION else -1)
                states.append(_OK if cid == chain_bytes else _FOREIGN)
                if _ROTATION_MARK in data:
                    try:
                        rotations[int(seq)] = parse_record(data)
                    except ValueError:
                        pass
                if _FORK_MARK in data:
                    child = _forked_child(data)
                    if child is not None:
                        forks[int(seq)] = child
                continue
            header = _fallback_header(data)
            if header is None:
                prevs += GENESIS
                seqs.append(-1)
                logged.append(0)
                states.append(_MALFORMED)
                continue
            cid_text, logged_ns_int, prev_bytes, seq_int = header
            prevs += prev_bytes
            seqs.append(seq_int)
            logged.append(logged_ns_int)
            states.append(_NONCANONICAL if cid_text == chain_id else _FOREIGN)
    except StoreCorruptError as error:
        corrupt = f"reading stopped early: {error}"
    n = len(seqs)
    return _ChainData(
        columns=np.frombuffer(columns, dtype=np.int64) if n else np.zeros(0, np.int64),
        seqs=np.frombuffer(seqs, dtype=np.int64) if n else np.zeros(0, np.int64),
        logged=np.frombuffer(logged, dtype=np.int64) if n else np.zeros(0, np.int64),
        states=np.frombuffer(bytes(states), dtype=np.uint8),
        leaves=np.frombuffer(bytes(leaves), dtype=np.uint8).reshape(n, 32),
        prevs=np.frombuffer(bytes(prevs), dtype=np.uint8).reshape(n, 32),
        rotations=rotations,
        forks=forks,
        corrupt=corrupt,
    )


def _fallback_header(data: bytes) -> tuple[str, int, bytes, int] | None:
    """Header of a record whose bytes are valid JSON but not in canonical form.

    None unless the fields fit what pass 1 keeps (a 32-byte prev, a seq within JSON's safe
    integers): anything else is not a record, whatever an attacker wrote there.
    """
    try:
        chain = parse_record(data)["chain"]
        prev, seq = bytes.fromhex(chain["prev"]), int(chain["seq"])
        logged_ns = min(max(int(chain["logged"]), 0), _INT64_MAX)
        chain_id = str(chain["id"])
    except (ValueError, KeyError, TypeError):
        return None
    if len(prev) != len(GENESIS) or not 0 <= seq <= MAX_SAFE_INTEGER:
        return None
    return chain_id, logged_ns, prev, seq
