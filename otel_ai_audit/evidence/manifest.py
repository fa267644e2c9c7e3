"""The bundle's manifest: every file with its SHA-256 and size, signed with Ed25519.

`manifest.json` is canonical JSON (RFC 8785), so its bytes are what was signed whatever tool
reads it; `manifest.sig` is the detached signature (base64) over a context prefix and those
bytes. The signer's public key travels in the bundle (`keys/bundle-signer.pub.pem`), its key
id (the SHA-256 of its DER SubjectPublicKeyInfo, as for checkpoints) in the manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from otel_ai_audit.integrity.keys import SigningKey, key_id, verify_signature
from otel_ai_audit.record.canonical import canonical_json

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNER_KEY = "keys/bundle-signer.pub.pem"
FORMAT = "otel-ai-audit/evidence-bundle/v2"
"""v2 adds the proof that the bundle holds the whole window (see `bounds`, `anchors`)."""
SIGNATURE_CONTEXT = b"otel-ai-audit evidence manifest v1\n"
"""Prefixed to the signed bytes, so a manifest signature is never valid as anything else."""
UNLISTED = (MANIFEST, SIGNATURE)


def file_entry(folder: Path, path: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(folder / path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"path": path, "sha256": digest.hexdigest(), "size": size}


def bundle_files(folder: Path) -> list[str]:
    """Every file under `folder` but the manifest and its signature, as sorted POSIX paths."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and path.relative_to(folder).as_posix() not in UNLISTED)


def write_manifest(folder: Path, key: SigningKey, facts: dict[str, Any]) -> dict[str, Any]:
    """Hash every file, sign, write `manifest.json` and `manifest.sig`; returns the manifest."""
    manifest = {"format": FORMAT, **facts, "signing_key_id": key.key_id,
                "files": [file_entry(folder, path) for path in bundle_files(folder)]}
    payload = canonical_json(manifest)
    (folder / MANIFEST).write_bytes(payload)
    signature = key.sign(SIGNATURE_CONTEXT + payload)
    (folder / SIGNATURE).write_text(base64.b64encode(signature).decode("ascii") + "\n")
    return manifest


def check_manifest(folder: Path, public_key: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest if it parses, and the problems with its signature and with every file."""
    try:
        payload = (folder / MANIFEST).read_bytes()
        manifest = json.loads(payload)
    except OSError:
        return None, [f"{MANIFEST} is missing: not an evidence bundle, or the manifest was "
                      "removed"]
    except ValueError as error:
        return None, [f"{MANIFEST} is not JSON: {error}"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None, [f"{MANIFEST} is not a manifest of format {FORMAT}"]
    problems = []
    try:
        signature = base64.b64decode((folder / SIGNATURE).read_text().strip(), validate=True)
    except (OSError, ValueError):
        problems.append(f"{SIGNATURE} is missing or not base64: the manifest is not signed")
    else:
        if manifest.get("signing_key_id") != key_id(public_key):
            problems.append(f"{MANIFEST} names signing key {manifest.get('signing_key_id')}, "
                            f"not the key it is checked with ({key_id(public_key)[:16]})")
        elif not verify_signature(public_key, signature, SIGNATURE_CONTEXT + payload):
            problems.append(f"{SIGNATURE} does not verify: {MANIFEST} was edited or forged")
    listed = set()
    for entry in manifest.get("files", []):
        path = str(entry.get("path", ""))
        listed.add(path)
        if path.startswith("/") or ".." in Path(path).parts:
            problems.append(f"{path}: listed with a path outside the bundle")
            continue
        if not (folder / path).is_file():
            problems.append(f"{path}: listed in the manifest but missing")
            continue
        actual = file_entry(folder, path)
        if actual["size"] != entry.get("size") or actual["sha256"] != entry.get("sha256"):
            problems.append(f"{path}: SHA-256 differs from the manifest: the file was changed")
    for path in bundle_files(folder):
        if path not in listed:
            problems.append(f"{path}: not listed in the manifest (added after signing)")
    return manifest, problems
