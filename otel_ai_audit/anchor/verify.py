"""Reading the published anchors back: the anchor chain's own checks, and what it witnessed.

The anchor chain is checked first (every anchor present from 1 to the newest, each linked to
its predecessor, signed by a trusted key, time-stamped by the TSA, locked in compliance mode
for long enough, written once). What the valid anchors witnessed (every state of every chain)
is then handed to the `Verifier`, which holds the trail against it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509

from otel_ai_audit.anchor.document import (
    GENESIS,
    Anchor,
    AnchoredChain,
    anchor_hash,
    anchor_signature_valid,
)
from otel_ai_audit.anchor.publish import DEFAULT_RETENTION_DAYS, PUBLISHED_FORMAT
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.timestamp import TimestampError, verify_timestamp
from otel_ai_audit.verify.findings import Finding, Kind

UNSTAMPED = ("anchor time-stamps were not checked: pass --tsa-cert FILE (the TSA's certificate "
             "chain) to check them")
CLOCK_SKEW = timedelta(minutes=5)
"""How far an anchor's own clock may run ahead of the TSA's genTime."""
_KEY_NAME = re.compile(r"(\d{12})\.json$")


@dataclass(frozen=True)
class Witnessed:
    """One state of one chain, as one valid anchor saw it."""

    anchor_seq: int
    issued_at_ns: int
    chain: AnchoredChain


@dataclass
class AnchorHistory:
    """What the valid anchors witnessed; `findings` are the anchor chain's own problems."""

    location: str
    anchors: list[Anchor] = field(default_factory=list)
    witnessed: dict[str, list[Witnessed]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def latest(self) -> Anchor | None:
        return self.anchors[-1] if self.anchors else None

    def summary(self) -> str:
        if self.latest is None:
            return f"anchors: none at {self.location}"
        when = datetime.fromtimestamp(self.latest.issued_at_ns / 1e9, tz=timezone.utc)
        return (f"anchors: {len(self.anchors)} at {self.location}, newest #{self.latest.seq} "
                f"of {when:%Y-%m-%dT%H:%M:%SZ}, {len(self.witnessed)} chain(s) witnessed")


def read_anchor_history(bucket: AnchorBucket, trusted_keys: Mapping[str, Any], *,
                        tsa_chain: list[x509.Certificate] | None = None,
                        min_retention_days: int = DEFAULT_RETENTION_DAYS,
                        store_id: str | None = None) -> AnchorHistory:
    """Read and check every anchor at `bucket`; AnchorStorageError if it cannot be read."""
    history = AnchorHistory(str(bucket.location))
    if tsa_chain is None:
        history.notices.append(UNSTAMPED)
    previous: tuple[Anchor, bytes] | None = None
    expected = 1
    for key, versions in sorted(bucket.versions().items()):
        named = _KEY_NAME.search(key)
        if named is None:
            continue
        seq = int(named.group(1))
        first = versions[0]
        if len(versions) > 1:
            history.findings.append(_finding(Kind.ANCHOR_REPLACED, seq, (
                f"{len(versions) - 1} later version(s) of anchor {seq} exist: someone wrote it "
                "again; the first version is the one checked")))
        body = bucket.get(first.key, first.version_id)
        checked = check_anchor(history, seq, body, trusted_keys, tsa_chain)
        if checked is None:
            previous = None
            expected = seq + 1
            continue
        anchor, payload = checked
        if seq > expected:
            span = f"{expected}" if seq - expected == 1 else f"{expected}..{seq - 1}"
            history.findings.append(_finding(Kind.ANCHOR_MISSING, expected,
                                             f"anchor(s) {span} are missing"))
        elif previous is not None and anchor.prev != anchor_hash(previous[1]):
            history.findings.append(_finding(Kind.ANCHOR_MISSING, seq, (
                f"anchor {seq} does not link to anchor {previous[0].seq}: the anchor chain "
                "was broken")))
        elif previous is None and seq == 1 and anchor.prev != GENESIS:
            history.findings.append(_finding(Kind.ANCHOR_MISSING, seq,
                                             "anchor 1 links to a predecessor"))
        if store_id is not None and anchor.store_id != store_id:
            history.findings.append(_finding(Kind.ANCHOR_MISSING, seq, (
                f"anchor {seq} is of store {anchor.store_id}, not of this one ({store_id}): "
                "these anchors do not describe this trail")))
        _check_retention(history, bucket, first.key, first.version_id, anchor,
                         min_retention_days)
        history.anchors.append(anchor)
        for chain in anchor.chains:
            history.witnessed.setdefault(chain.chain_id, []).append(
                Witnessed(anchor.seq, anchor.issued_at_ns, chain))
        previous = (anchor, payload)
        expected = seq + 1
    if not history.anchors and not history.findings:
        history.findings.append(_finding(Kind.ANCHOR_MISSING, None, (
            f"no anchor at {bucket.location}: nothing external vouches for this trail")))
    return history


def check_anchor(history: AnchorHistory, seq: int, body: bytes, trusted_keys: Mapping[str, Any],
                 tsa_chain: list[x509.Certificate] | None) -> tuple[Anchor, bytes] | None:
    """The anchor in `body` (the object of anchor `seq`) and its signed payload, if it is one,
    signed by a trusted key (and time-stamped when `tsa_chain` is given); else None, with the
    reason as a finding in `history`. Also checks anchors copied into an evidence bundle."""
    try:
        published = json.loads(body)
        if published.get("format") != PUBLISHED_FORMAT:
            raise ValueError(f"not of format {PUBLISHED_FORMAT}")
        payload = str(published["payload"]).encode("utf-8")
        signature = base64.b64decode(published["signature"])
        token = base64.b64decode(published["timestamp"]) if published["timestamp"] else None
        anchor = Anchor.from_payload(payload)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq,
                                         f"anchor {seq} is not a signed anchor: {error}"))
        return None
    if anchor.seq != seq:
        history.findings.append(_finding(Kind.ANCHOR_MISSING, seq, (
            f"the object of anchor {seq} holds anchor {anchor.seq}")))
        return None
    public_key = trusted_keys.get(anchor.key_id)
    if public_key is None:
        history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq, (
            f"anchor {seq} is signed by key {anchor.key_id[:16]}, not one you trust")))
        return None
    if not anchor_signature_valid(public_key, payload, signature):
        history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq, (
            f"anchor {seq}: signature does not verify: edited or forged")))
        return None
    if tsa_chain is not None:
        if token is None:
            history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq,
                                             f"anchor {seq} carries no RFC 3161 time-stamp"))
            return None
        try:
            stamped = verify_timestamp(token, payload, tsa_chain)
        except TimestampError as error:
            history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq, f"anchor {seq}: {error}"))
            return None
        issued = datetime.fromtimestamp(anchor.issued_at_ns / 1e9, tz=timezone.utc)
        if _aware(stamped) + CLOCK_SKEW < issued:
            history.findings.append(_finding(Kind.ANCHOR_UNSIGNED, seq, (
                f"anchor {seq} claims {issued:%Y-%m-%dT%H:%M:%SZ}, after the time-stamp the "
                f"TSA gave it ({_aware(stamped):%Y-%m-%dT%H:%M:%SZ})")))
            return None
    return anchor, payload


def _check_retention(history: AnchorHistory, bucket: AnchorBucket, key: str, version_id: str,
                     anchor: Anchor, min_retention_days: int) -> None:
    retention = bucket.retention(key, version_id)
    issued = datetime.fromtimestamp(anchor.issued_at_ns / 1e9, tz=timezone.utc)
    required = issued + timedelta(days=min_retention_days)
    if retention.mode != "COMPLIANCE" or retention.retain_until is None:
        history.findings.append(_finding(Kind.ANCHOR_RETENTION_SHORT, anchor.seq, (
            f"anchor {anchor.seq} is not locked in compliance mode (mode: {retention.mode}): it "
            "can be deleted")))
    elif _aware(retention.retain_until) + timedelta(days=1) < required:
        history.findings.append(_finding(Kind.ANCHOR_RETENTION_SHORT, anchor.seq, (
            f"anchor {anchor.seq} is locked until {retention.retain_until:%Y-%m-%d}, less than "
            f"the {min_retention_days} days required (until {required:%Y-%m-%d})")))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _finding(kind: Kind, seq: int | None, detail: str) -> Finding:
    """Anchor findings name the anchor's number in place of a record's seq."""
    return Finding(None, seq, kind, detail)
