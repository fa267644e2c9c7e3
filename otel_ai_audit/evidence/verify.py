"""`verify-bundle`: check an evidence bundle offline, from its files alone.

1. The manifest's signature, with a key the reader trusts. Without one, the key the bundle
   carries vouches for itself, which proves integrity but not who signed: as for `verify`,
   that fails unless the reader accepts it (`allow_self_asserted`).
2. Every file against the manifest's SHA-256 and size; files the manifest does not list.
3. Every chain extract: contiguous, hash-linked, its last record proven by an RFC 9162
   inclusion proof against a signed checkpoint; the checkpoints' signatures and links.
4. Completeness: each chain's range is bounded by proven records outside the window, or by the
   chain's ends (`bounds`); with anchors, every chain they show active in the window is in the
   bundle or proven another system's, and the checkpoints the bundle proves against are
   consistent with every one the anchors witnessed (`anchors`).
5. The decision log (CSV and JSONL) is exactly the decisions of the window the extracts hold.
6. The inclusion proofs of the decisions named in the request.
7. The verification of the whole trail made when the bundle was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from otel_ai_audit.anchor.verify import AnchorHistory
from otel_ai_audit.evidence.anchors import (
    Shown,
    check_active,
    check_anchors,
    check_foreign,
    check_witnessed,
    newest_notice,
    witnessed_heads,
)
from otel_ai_audit.evidence.bounds import Bounds, check_bounds
from otel_ai_audit.evidence.integrity import (
    ChainFacts,
    blocking_findings,
    check_chain,
    check_decision_log,
    check_decision_proof,
    load_bundle_keys,
)
from otel_ai_audit.evidence.manifest import MANIFEST, SIGNER_KEY, check_manifest
from otel_ai_audit.evidence.window import Window, WindowError
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.integrity.merkle import leaf_hash

SELF_ASSERTED = ("no --public-key given: the manifest and the checkpoints were checked with the "
                 "keys the bundle itself carries, which proves integrity but not who signed")


@dataclass
class BundleCheck:
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    chains: int = 0
    records: int = 0
    """Records of the window (by event time) in the extracts."""
    decisions: int = 0
    anchors: int | None = None
    """Valid anchors the bundle was checked against; None for a bundle without anchors."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """What an intact bundle proves, in one line."""
        manifest = self.manifest or {}
        window = manifest.get("window", {})
        against = (f"complete against {self.anchors} anchor(s)" if self.anchors is not None
                   else "complete as far as the trail's own checkpoints say (no anchors)")
        return (f"OK: system {manifest.get('system')}, window {_short(window.get('from'))}.."
                f"{_short(window.get('to'))}, {self.chains} chain(s), {self.records} record(s) "
                f"({self.decisions} decisions), {against}")


def verify_bundle(folder: str | Path, trusted_keys: dict[str, Any] | None = None, *,
                  allow_self_asserted: bool = False,
                  tsa_chain: list[x509.Certificate] | None = None) -> BundleCheck:
    """Check the bundle in `folder`; `trusted_keys` (key id to public key) are the keys the
    reader trusts for the manifest, the checkpoints and the anchors; `tsa_chain` the
    time-stamping authority's certificates, to check the anchors' time-stamps."""
    folder = Path(folder)
    check = BundleCheck()
    signer = _signer_key(folder, trusted_keys, allow_self_asserted, check)
    if signer is None:
        return check
    check.manifest, problems = check_manifest(folder, signer)
    check.problems += problems
    window = _window(check)
    if check.manifest is None or window is None:
        return check
    keys = dict(trusted_keys) if trusted_keys else load_bundle_keys(folder)
    history = _check_anchor_run(folder, check.manifest, window, keys, tsa_chain, check)
    shown = _check_chains(folder, check.manifest, window, keys, history, check)
    if history is not None:
        _check_against_anchors(folder, check.manifest, window, keys, history, shown, check)
    for decision in check.manifest.get("proven_decisions", []):
        check.problems += check_decision_proof(folder, str(decision), keys)
    _check_verification(folder, check)
    return check


def _window(check: BundleCheck) -> Window | None:
    """The signed window: what every boundary and count is checked against."""
    if check.manifest is None:
        return None
    window = check.manifest.get("window")
    if isinstance(window, dict):
        try:
            return Window.parse(str(window.get("from")), str(window.get("to")))
        except WindowError:
            pass
    check.problems.append(f"{MANIFEST}: its window is missing or not a window")
    return None


def _check_anchor_run(folder: Path, manifest: dict[str, Any], window: Window,
                      keys: dict[str, Any], tsa_chain: list[x509.Certificate] | None,
                      check: BundleCheck) -> AnchorHistory | None:
    """The anchors the bundle carries, as a history of what they witnessed (None: it carries
    none)."""
    spec = manifest.get("anchors")
    if spec is None:
        return None
    history, problems = check_anchors(folder, spec if isinstance(spec, dict) else {}, window,
                                      keys, tsa_chain)
    check.anchors = len(history.anchors)
    check.problems += problems
    check.notices += history.notices + newest_notice(history, window)
    return history


def _check_chains(folder: Path, manifest: dict[str, Any], window: Window, keys: dict[str, Any],
                  history: AnchorHistory | None, check: BundleCheck) -> dict[str, Shown]:
    """Each chain's extract and bounds, and the decision log against them; what the bundle
    shows of each chain, by chain id."""
    chains = [chain for chain in manifest.get("chains", []) if _well_formed(chain)]
    if len(chains) != len(manifest.get("chains", [])):
        check.problems.append(f"{MANIFEST}: a chain entry lacks its chain id or seqs")
    shown = {}
    for chain in chains:
        chain_id = chain["chain_id"]
        facts = check_chain(folder, chain, window, keys,
                            witnessed_heads(history, chain_id) if history else ())
        bounds = check_bounds(folder, chain, window, keys, facts.edges)
        check.problems += facts.problems + bounds.problems
        check.notices += bounds.notices
        check.records += facts.records
        check.decisions += facts.decisions
        shown[chain_id] = _shown(chain, facts, bounds)
    check.chains = len(chains)
    check.problems += check_decision_log(folder, chains, window, check.decisions)
    return shown


def _well_formed(chain: Any) -> bool:
    return isinstance(chain, dict) and isinstance(chain.get("chain_id"), str) and all(
        isinstance(chain.get(name), int) for name in ("first_seq", "last_seq"))


def _shown(chain: dict[str, Any], facts: ChainFacts, bounds: Bounds) -> Shown:
    """The chain's records the bundle shows: its range and the neighbours either side."""
    first, last, leaves = chain["first_seq"], chain["last_seq"], dict(facts.leaves)
    if bounds.before is not None:
        first -= 1
        leaves[first] = leaf_hash(bounds.before)
    if bounds.after is not None:
        last += 1
        leaves[last] = leaf_hash(bounds.after)
    return Shown(first, last, leaves, bounds.checkpoint, bounds.ends)


def _check_against_anchors(folder: Path, manifest: dict[str, Any], window: Window,
                           keys: dict[str, Any], history: AnchorHistory,
                           shown: dict[str, Shown], check: BundleCheck) -> None:
    """Every chain the anchors show active is in the bundle (another system's proven so), and
    what it shows of each is what they witnessed."""
    for entry in manifest.get("foreign_chains", []):
        chain_id = str(entry.get("chain_id")) if isinstance(entry, dict) else ""
        problems, foreign = check_foreign(folder, chain_id, str(manifest.get("system")), keys)
        check.problems += problems
        if foreign is not None:
            shown[chain_id] = foreign
    problems, notices = check_active(history, window, set(shown))
    check.problems += problems
    check.notices += notices
    for chain_id, seen in shown.items():
        check.problems += check_witnessed(folder, chain_id, history.witnessed.get(chain_id, []),
                                          seen, keys)


def _check_verification(folder: Path, check: BundleCheck) -> None:
    try:
        verification = json.loads((folder / "integrity/verification.json").read_text())
    except (OSError, ValueError):
        check.problems.append("integrity/verification.json: missing or not JSON")
        return
    blocking, notices = blocking_findings(verification)
    check.notices += notices
    if blocking:
        check.problems.append(f"the trail did not verify when the bundle was built: "
                              f"{len(blocking)} finding(s) in integrity/verification.json")


def _signer_key(folder: Path, trusted_keys: dict[str, Any] | None, allow_self_asserted: bool,
                check: BundleCheck) -> Any:
    """The key to check the manifest with: the bundle's signer key if the reader trusts it;
    without trusted keys, the key the bundle carries (a problem unless `allow_self_asserted`,
    checking goes on to say what else holds)."""
    try:
        carried = load_public_key_pem((folder / SIGNER_KEY).read_bytes())
    except (OSError, ValueError):
        carried = None
    if trusted_keys:
        if carried is not None and key_id(carried) in trusted_keys:
            return trusted_keys[key_id(carried)]
        claimed = _claimed_signer(folder)
        if claimed in trusted_keys:
            return trusted_keys[claimed]
        check.problems.append("the manifest is not signed by a key you trust (its signer key "
                              f"is {claimed or 'unknown'})")
        return None
    if carried is None:
        check.problems.append(f"{SIGNER_KEY} is missing or unreadable: the manifest signature "
                              "cannot be checked")
        return None
    if allow_self_asserted:
        check.notices.append(f"{SELF_ASSERTED}; pass --public-key FILE to verify against keys "
                             "you trust")
    else:
        check.problems.append(f"self_asserted_key: {SELF_ASSERTED}; pass --public-key FILE (the "
                              "bundle signer's and the trail's keys), or --allow-self-asserted "
                              "to accept the bundle's own keys")
    return carried


def _claimed_signer(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / MANIFEST).read_bytes()).get("signing_key_id"))
    except (OSError, ValueError, AttributeError):
        return None


def _short(time: Any) -> str:
    """An RFC 3339 time without the fraction's trailing zeros (2026-03-01T00:00:00Z)."""
    whole, _, fraction = str(time).removesuffix("Z").partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"
