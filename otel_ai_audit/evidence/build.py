"""Build an evidence bundle: everything an authority asks for about one system and one window,
in one folder whose signed manifest lets anyone check it offline.

The bundle is written to a sibling temporary folder and renamed into place at the end, so a
failed build never leaves a half bundle where a complete one is expected.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509

from otel_ai_audit.anchor.publish import DEFAULT_RETENTION_DAYS
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.verify import AnchorHistory
from otel_ai_audit.datasets.source import sha256_of
from otel_ai_audit.errors import RequestError
from otel_ai_audit.evidence.anchors import (
    FetchedAnchors,
    active_chains,
    consistency_path,
    fetch_anchors,
    foreign_path,
    write_anchors,
    write_consistency,
    write_foreign,
)
from otel_ai_audit.evidence.bounds import ChainExtract, bounds_path
from otel_ai_audit.evidence.charts import charts as draw_charts
from otel_ai_audit.evidence.collect import DECISION_FIELDS, Attribution, collect, system_chains
from otel_ai_audit.evidence.integrity import (
    blocking_findings,
    checkpoints_path,
    tail_path,
    write_chain_evidence,
    write_decision_proof,
)
from otel_ai_audit.evidence.manifest import SIGNER_KEY, write_manifest
from otel_ai_audit.evidence.regulation import ITEMS
from otel_ai_audit.evidence.report import render_html, render_pdf
from otel_ai_audit.evidence.sections import DEFAULT_THRESHOLD, Sections
from otel_ai_audit.evidence.window import Window
from otel_ai_audit.integrity.keys import SigningKey, load_public_key_pem, public_pem
from otel_ai_audit.integrity.proof import ProofError
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier
from otel_ai_audit.version import __version__


class BundleError(RequestError):
    """The bundle cannot be built as asked (unknown system, empty window, unknown decision)."""


@dataclass(kw_only=True)
class BundleRequest:
    """What the authority asked for, and how to sign the answer."""

    store: str
    system: str
    window: Window
    out: Path
    signing_key: SigningKey
    trusted_keys: Mapping[str, Any] = field(default_factory=dict)
    """Keys to verify the trail with; empty: the store's own keys (reported as such)."""
    decisions: Sequence[str] = ()
    subgroups: Sequence[str] = ()
    positive_labels: Sequence[str] = ()
    threshold: float = DEFAULT_THRESHOLD
    """A `predict_proba` decision is positive when the positive label's probability is at
    least this (binary models; `sections.Sections._predicted`)."""
    datasets: Sequence[str] = ()
    anchors: AnchorBucket | None = None
    """Where the store's anchors are published: the bundle then proves its completeness
    against them."""
    tsa_chain: list[x509.Certificate] | None = None
    """The TSA's certificates, to check the anchors' time-stamps."""
    min_retention_days: int = DEFAULT_RETENTION_DAYS


@dataclass(frozen=True)
class Bundle:
    path: Path
    decisions: int
    verified: bool
    """The trail verified (an open chain is a notice, see `blocking_findings`)."""
    manifest: dict[str, Any]
    notices: list[str] = field(default_factory=list)


class _SystemChains:
    """The store seen as the system's chains only, for the verifier."""

    def __init__(self, store: AuditStore, chains: list[str]) -> None:
        self._store, self._chains = store, chains
        self.description = store.description

    def chain_ids(self) -> list[str]:
        return list(self._chains)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def build_bundle(request: BundleRequest) -> Bundle:
    out = request.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty folder: give a new --out folder")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with AuditStore(request.store, create=False, readonly=True) as store:
            store.description = request.store
            bundle = _build(store, request, staging)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Bundle(out, bundle.decisions, bundle.verified, bundle.manifest, bundle.notices)


def _build(store: AuditStore, request: BundleRequest, folder: Path) -> Bundle:
    attribution = system_chains(store, request.system)
    chains = attribution.chains
    if not chains:
        raise BundleError(f"{request.store}: no chain belongs to system {request.system!r} "
                          "(the service.name of the process that wrote it)")
    for decision in request.decisions:
        found = store.find_record(decision)
        if found is None or found[0] not in chains:
            raise BundleError(f"no decision {decision} of system {request.system!r} in "
                              f"{request.store}")
    window = request.window
    anchors = _fetch_anchors(store, request)
    active = active_chains(anchors.period, window) if anchors is not None else {}
    for sub in ("integrity", "sections", "charts", "keys"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    try:
        sections, extracts, decisions = collect(
            store, chains, window, folder,
            lambda joins: Sections(window, joins, tuple(request.subgroups),
                                   tuple(request.positive_labels), request.threshold),
            required=[chain_id for chain_id in active if chain_id in chains])
        if not any(extract.records for extract in extracts):
            raise BundleError(f"no records of system {request.system!r} between {window.start} "
                              f"and {window.end}")
        for extract in extracts:
            write_chain_evidence(store, folder, extract)
    except ProofError as error:
        raise BundleError(str(error)) from error
    for decision in request.decisions:
        write_decision_proof(store, folder, decision)
    foreign, anchored = _write_anchored(store, folder, anchors, extracts, active, attribution)
    report = Verifier(request.trusted_keys, allow_self_asserted=not request.trusted_keys,
                      anchors=_system_history(anchors.history, attribution)
                      if anchors is not None else None).verify(
        _SystemChains(store, chains))  # type: ignore[arg-type]
    verification = {**report.to_json(), "unattributed_chains": attribution.unattributed}
    _write_json(folder / "integrity/verification.json", verification)
    blocking, notices = blocking_findings(verification)
    summary = {**verification, "ok": not blocking, "findings": blocking, "notices": notices}
    keys = _write_keys(store, folder, request, _signers(store, report.chains, anchors, foreign))
    data = sections.to_json()
    for name, section in data.items():
        _write_json(folder / f"sections/{name}.json", section)
    _write_json(folder / "decisions-fields.json", {
        "csv": "decisions.csv: one row per decision, columns in this order",
        "jsonl": "decisions.jsonl: one JSON object per decision: chain_id, seq, leaf_hash, "
                 "oversight, disputed, outcome and the recorded event as is",
        "fields": DECISION_FIELDS})
    facts = {
        "system": request.system,
        "window": {"from": window.start, "to": window.end, "selects": "event.time"},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": __version__, "store": Path(request.store).name,
        "counts": {"decisions": decisions, "records_in_window": sum(data["volume"]["by_type"]
                                                                    .values()),
                   "extract_records": sum(e.records for e in extracts)},
        "chains": [_chain_entry(extract, anchors is not None) for extract in extracts],
        "foreign_chains": [{"chain_id": chain_id, "system": system,
                            "proof": foreign_path(chain_id),
                            "consistency": consistency_path(chain_id)}
                           for chain_id, system in foreign.items()],
        "anchors": anchored,
        "proven_decisions": list(request.decisions), "keys": keys,
        "datasets": [{"name": Path(p).name, "sha256": sha256_of(Path(p)),
                      "size": Path(p).stat().st_size} for p in request.datasets],
        "items": [{"key": i.key, "title": i.title, "eu_ai_act": i.eu_ai_act,
                   "standards": i.standards, "files": list(i.files)} for i in ITEMS],
    }
    drawn = draw_charts(data)
    for chart in drawn:
        (folder / f"charts/{chart.name}.svg").write_text(chart.svg, encoding="utf-8")
    (folder / "report.html").write_text(render_html(facts, data, summary, drawn),
                                        encoding="utf-8")
    (folder / "report.pdf").write_bytes(render_pdf(facts, data, summary, drawn))
    manifest = write_manifest(folder, request.signing_key, facts)
    return Bundle(folder, decisions, not blocking, manifest, notices)


def _chain_entry(extract: ChainExtract, anchored: bool) -> dict[str, Any]:
    chain_id = extract.chain_id
    return {"chain_id": chain_id, "first_seq": extract.first_seq, "last_seq": extract.last_seq,
            "records": extract.records, "extract": extract.path,
            "checkpoints": checkpoints_path(chain_id),
            "tail_proof": tail_path(chain_id) if extract.records else None,
            "bounds": bounds_path(chain_id),
            "consistency": consistency_path(chain_id) if anchored else None}


def _fetch_anchors(store: AuditStore, request: BundleRequest) -> FetchedAnchors | None:
    """The store's anchors, checked with the trusted keys (else the store's own, as `verify`
    does, and reported so)."""
    if request.anchors is None:
        return None
    keys = dict(request.trusted_keys) or {
        key_id: load_public_key_pem(pem) for key_id, pem in store.public_keys().items()}
    return fetch_anchors(request.anchors, keys, request.window, tsa_chain=request.tsa_chain,
                         min_retention_days=request.min_retention_days,
                         store_id=store.known_store_id())


def _write_anchored(store: AuditStore, folder: Path, anchors: FetchedAnchors | None,
                    extracts: list[ChainExtract], active: dict[str, int], attribution: Attribution,
                    ) -> tuple[dict[str, str], dict[str, Any] | None]:
    """With anchors: the period's anchors, the consistency proof of every chain in the bundle,
    and the proof that each active chain of another system is one. Those chains with their
    system, and the anchors' manifest entry."""
    if anchors is None:
        return {}, None
    for extract in extracts:
        after = extract.neighbours["after"]
        write_consistency(store, folder, extract.chain_id, anchors.period,
                          extract.last_seq if after is None else after)
    foreign = {}
    for chain_id in sorted(set(active) & set(attribution.others)):
        try:
            write_foreign(store, folder, chain_id, attribution.others[chain_id])
        except ProofError:
            continue  # nothing of it is signed: verify-bundle says what the anchors saw
        write_consistency(store, folder, chain_id, anchors.period, 0)
        foreign[chain_id] = attribution.others[chain_id]
    return foreign, write_anchors(folder, anchors)


def _system_history(history: AnchorHistory, attribution: Attribution) -> AnchorHistory:
    """The anchors' account without the chains the store holds for other systems (a chain it no
    longer holds stays: it may have been this system's)."""
    return replace(history, witnessed={chain_id: states for chain_id, states in
                                       history.witnessed.items()
                                       if chain_id not in attribution.others})


def _signers(store: AuditStore, chains: list[Any], anchors: FetchedAnchors | None,
             foreign: dict[str, str]) -> dict[str, str]:
    """Every key whose signature the bundle carries, with its role."""
    roles = {key_id: "checkpoint signer" for chain in chains for key_id in chain.key_ids}
    roles.update({checkpoint.key_id: "checkpoint signer (another system's chain)"
                  for chain_id in foreign for checkpoint in store.checkpoints(chain_id)
                  if checkpoint.key_id not in roles})
    if anchors is not None:
        roles.update({anchor.key_id: "anchor signer" for anchor in anchors.period
                      if anchor.key_id not in roles})
    return roles


def _write_keys(store: AuditStore, folder: Path, request: BundleRequest,
                roles: dict[str, str]) -> list[dict[str, str]]:
    """The public key of every signer (`roles`: key id to role), and the bundle signer's."""
    known = store.public_keys()
    keys = []
    for key_id, role in sorted(roles.items()):
        trusted = request.trusted_keys.get(key_id)
        pem = public_pem(trusted) if trusted is not None else known.get(key_id)
        if pem is not None:
            (folder / f"keys/{key_id}.pem").write_text(pem)
            keys.append({"key_id": key_id, "role": role
                         + (" (trusted by the builder)" if trusted is not None else
                            " (as the store holds it)")})
    (folder / SIGNER_KEY).write_text(request.signing_key.public_pem)
    keys.append({"key_id": request.signing_key.key_id, "role": "bundle manifest signer"})
    return keys


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                    encoding="utf-8")
