"""`verify-bundle`: check an evidence bundle offline, from its files alone.

1. The manifest's signature, with a key the reader trusts (or, without one, the key the bundle
   carries: integrity, not authorship, which is said).
2. Every file against the manifest's SHA-256 and size; files the manifest does not list.
3. Every chain extract: contiguous, hash-linked, its last record proven by an RFC 9162
   inclusion proof against a signed checkpoint; the checkpoints' signatures and links. Every
   decision of the log (CSV and JSONL) is one of those records.
4. The inclusion proofs of the decisions named in the request.
5. The verification of the whole trail made when the bundle was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_ai_audit.evidence.integrity import (
    blocking_findings,
    check_chain,
    check_decision_log,
    check_decision_proof,
    load_bundle_keys,
)
from otel_ai_audit.evidence.manifest import SIGNER_KEY, check_manifest
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem


@dataclass
class BundleCheck:
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(folder: str | Path, trusted_keys: dict[str, Any] | None = None) -> BundleCheck:
    """Check the bundle in `folder`; `trusted_keys` (key id to public key) are the keys the
    reader trusts for the manifest and the checkpoints."""
    folder = Path(folder)
    check = BundleCheck()
    signer = _signer_key(folder, trusted_keys, check)
    if signer is None:
        return check
    check.manifest, problems = check_manifest(folder, signer)
    check.problems += problems
    if check.manifest is None:
        return check
    keys = dict(trusted_keys) if trusted_keys else load_bundle_keys(folder)
    for chain in check.manifest.get("chains", []):
        check.problems += check_chain(folder, chain, keys)
    check.problems += check_decision_log(folder, check.manifest.get("chains", []))
    for decision in check.manifest.get("proven_decisions", []):
        check.problems += check_decision_proof(folder, str(decision), keys)
    try:
        verification = json.loads((folder / "integrity/verification.json").read_text())
    except (OSError, ValueError):
        check.problems.append("integrity/verification.json: missing or not JSON")
    else:
        blocking, notices = blocking_findings(verification)
        check.notices += notices
        if blocking:
            check.problems.append(f"the trail did not verify when the bundle was built: "
                                  f"{len(blocking)} finding(s) in integrity/verification.json")
    return check


def _signer_key(folder: Path, trusted_keys: dict[str, Any] | None, check: BundleCheck) -> Any:
    """The key to check the manifest with: the bundle's signer key if the reader trusts it
    (or trusts no key in particular), else a problem."""
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
    check.notices.append("no --public-key given: the manifest was checked with the key the "
                         "bundle carries, which proves integrity but not who signed it")
    return carried


def _claimed_signer(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "manifest.json").read_bytes()).get("signing_key_id"))
    except (OSError, ValueError, AttributeError):
        return None
