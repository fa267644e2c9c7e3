"""The bundle's proof that its records are the trail's: checkpoints, keys, inclusion proofs.

Each chain extract is a contiguous run of records, each linking to its predecessor's leaf
hash. An inclusion proof of the run's last record (its tail proof) against a signed checkpoint
therefore vouches for the whole run (a changed record would break a link, and a changed last
record would break the proof). The records either side of the run prove that it holds all of
the window (see `bounds`). The checkpoints file holds every signed checkpoint of the chain, so a
reader can check the checkpoint chain and which key signed what. Everything here is checked
offline with the existing proof and checkpoint code, from the files alone.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_ai_audit.evidence.bounds import ChainExtract, Edges, record_id, write_bounds
from otel_ai_audit.evidence.collect import (
    DECISION_FIELDS,
    DECISIONS_CSV,
    DECISIONS_JSONL,
    csv_row,
    event_json,
)
from otel_ai_audit.evidence.sections import Location, Review
from otel_ai_audit.evidence.window import Window
from otel_ai_audit.integrity.checkpoint import Checkpoint, payload_hash, signature_valid
from otel_ai_audit.integrity.keys import key_id, load_public_key_pem
from otel_ai_audit.integrity.merkle import GENESIS, leaf_hash
from otel_ai_audit.integrity.proof import build_proof, check_proof
from otel_ai_audit.record.schema import parse_header, parse_record
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Kind

OPEN_CHAIN = Kind.CHAIN_NOT_CLOSED.value
UNATTRIBUTED = "unattributed_chain"
MAX_LISTED = 20
"""Differences listed per decision log before the rest is summarised in one line."""


def blocking_findings(verification: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The findings of the trail's verification that fail the bundle, and notices.

    A chain without its closing checkpoint is what a running process looks like (a live system
    answering a request), as well as a crashed one: its records up to the last checkpoint are
    signed, and the bundle's extracts are proven against those checkpoints on their own. So an
    open chain is said, not failed; every other finding fails the bundle, and so does a chain
    of the store that cannot be attributed to a system.
    """
    findings = verification.get("findings", [])
    notices = [f"chain {f.get('chain_id')} has no closing checkpoint (its process is still "
               "running, or stopped without closing): records after its last checkpoint are "
               "not signed yet" for f in findings if f.get("kind") == OPEN_CHAIN]
    unattributed = [{"chain_id": chain_id, "seq": 0, "kind": UNATTRIBUTED,
                     "detail": "the chain's opening record, which names its system, is missing "
                               "or unreadable: the chain may be the system's"}
                    for chain_id in verification.get("unattributed_chains", [])]
    return [f for f in findings if f.get("kind") != OPEN_CHAIN] + unattributed, notices


def checkpoints_path(chain_id: str) -> str:
    return f"integrity/checkpoints-{chain_id}.json"


def tail_path(chain_id: str) -> str:
    return f"integrity/tail-{chain_id}.json"


def proof_path(record_id: str) -> str:
    return f"integrity/proofs/{record_id}.json"


def write_chain_evidence(store: AuditStore, folder: Path, extract: ChainExtract) -> None:
    """The chain's checkpoints, the proof of the extract's last record (none for an empty
    range) and the proofs of the records either side of it."""
    checkpoints = [{"payload": c.payload.decode("utf-8"),
                    "signature": base64.b64encode(c.signature).decode("ascii"),
                    "key_id": c.key_id} for c in store.checkpoints(extract.chain_id)]
    _write_json(folder / checkpoints_path(extract.chain_id), checkpoints)
    if extract.records:
        _write_json(folder / tail_path(extract.chain_id),
                    build_proof(store, record_id(store, extract.chain_id, extract.last_seq)))
    write_bounds(store, folder, extract)


def write_decision_proof(store: AuditStore, folder: Path, record_id: str) -> None:
    path = folder / proof_path(record_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, build_proof(store, record_id))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@dataclass
class ChainFacts:
    """What one chain's evidence showed: its problems, the extract's edges, and how many
    records and decisions of the window it holds."""

    problems: list[str] = field(default_factory=list)
    edges: Edges = field(default_factory=Edges)
    records: int = 0
    decisions: int = 0
    leaves: dict[int, bytes] = field(default_factory=dict)
    """Leaf hashes of the extract's records at the seqs asked for."""


def check_chain(folder: Path, chain: dict[str, Any], window: Window, keys: dict[str, Any],
                wanted: Collection[int] = ()) -> ChainFacts:
    """One chain's checkpoints, extract and tail proof (see `ChainFacts`); `wanted`: the seqs
    whose leaf hashes to keep (those an anchor witnessed as a checkpoint's head)."""
    chain_id = str(chain.get("chain_id"))
    facts = ChainFacts(_check_checkpoints(folder, chain_id, keys))
    if _read_extract(folder, chain, window, set(wanted), facts) and facts.edges.last is not None:
        _check_tail(folder, chain_id, keys, facts)
    return facts


def _read_extract(folder: Path, chain: dict[str, Any], window: Window, wanted: set[int],
                  facts: ChainFacts) -> bool:
    """Stream the extract: contiguous seqs, each linking to the record before it, logged times
    that never go back; count the window's records and decisions. False if it breaks off."""
    chain_id, path = str(chain.get("chain_id")), str(chain.get("extract"))
    expected = int(chain.get("first_seq", 0))
    previous: tuple[bytes, int] | None = None  # leaf hash and logged time of the last record
    try:
        with open(folder / path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                data = line.rstrip(b"\n")
                header = parse_header(data)
                where = f"{path} line {number}"
                if header is None or header.chain_id != chain_id:
                    facts.problems.append(f"{where}: not a canonical record of chain {chain_id}")
                    return False
                if header.seq != expected:
                    facts.problems.append(f"{where}: seq {header.seq} where {expected} belongs "
                                          "(records missing or reordered)")
                    return False
                link = previous[0] if previous is not None else (
                    GENESIS if expected == 0 else None)
                if link is not None and bytes.fromhex(header.prev) != link:
                    facts.problems.append(f"{where}: seq {expected} does not link to the record "
                                          "before it (one of the two was edited)")
                if previous is not None and header.logged_ns < previous[1]:
                    facts.problems.append(f"{where}: seq {expected} was logged before the record "
                                          "before it")
                _count(data, window, facts)
                facts.edges.first = facts.edges.first or data
                facts.edges.last, previous = data, (leaf_hash(data), header.logged_ns)
                if expected in wanted:
                    facts.leaves[expected] = previous[0]
                expected += 1
    except OSError as error:
        facts.problems.append(f"{path}: unreadable: {error.strerror}")
        return False
    if expected - 1 != int(chain.get("last_seq", -1)):
        facts.problems.append(f"{path}: ends at seq {expected - 1}, the manifest says "
                              f"{chain.get('last_seq')} (records removed)")
        return False
    return True


def _count(data: bytes, window: Window, facts: ChainFacts) -> None:
    try:
        event = parse_record(data)["event"]
    except ValueError:
        return  # not JSON: the links and the tail proof say the record was changed
    if isinstance(event.get("time"), str) and window.holds(event["time"]):
        facts.records += 1
        facts.decisions += event.get("type") == "inference"


def _check_tail(folder: Path, chain_id: str, keys: dict[str, Any], facts: ChainFacts) -> None:
    path = tail_path(chain_id)
    proof = _read_json(folder / path)
    if not isinstance(proof, dict):
        facts.problems.append(f"{path}: missing or not JSON")
        return
    facts.problems += [f"{path}: {p}" for p in check_proof(proof, keys)]
    if str(proof.get("record", "")).encode("utf-8") != facts.edges.last:
        facts.problems.append(f"{path}: proves another record than the extract's last one")
    facts.edges.tail_proof = proof


def check_decision_log(folder: Path, chains: list[dict[str, Any]], window: Window,
                       decisions: int) -> list[str]:
    """Each decision of the log is a decision of the window in the chain extracts (same leaf
    hash, same event bytes), each one once, and there are `decisions` of them (all the
    extracts hold); its CSV row is the one its JSONL line gives. So whoever holds only the
    bundle's key cannot change or leave out a decision either: the extracts are proven against
    the trail's key.

    Both files are in extract order, so they are read in step with the extracts (streaming).
    """
    problems: list[str] = []
    number = 0
    records = _extract_records(folder, chains)
    current = next(records, None)
    try:
        with open(folder / DECISIONS_JSONL, "rb") as lines, \
                open(folder / DECISIONS_CSV, newline="", encoding="utf-8") as table:
            rows = csv.reader(table)
            if next(rows, None) != list(DECISION_FIELDS):
                return [f"{DECISIONS_CSV}: its header is not the field dictionary's"]
            for number, line in enumerate(lines, 1):
                where = f"{DECISIONS_JSONL} line {number}"
                try:
                    entry = json.loads(line)
                    event, chain_id, seq = entry["event"], str(entry["chain_id"]), entry["seq"]
                except (ValueError, KeyError, TypeError):
                    return [*problems, f"{where}: not a decision log line"]
                while current is not None and current[:2] != (chain_id, seq):
                    current = next(records, None)
                if current is None:
                    return [*problems, f"{where}: decision {event.get('id')} is not in the chain "
                                       f"extracts (chain {chain_id} seq {seq})"]
                data = current[2]
                current = next(records, None)
                if event.get("type") != "inference" or not window.holds(str(event.get("time"))):
                    problems.append(f"{where}: {event.get('id')} is not a decision of the window")
                leaf = leaf_hash(data).hex()
                if event_json(line.rstrip(b"\n")) != event_json(data) or entry.get(
                        "leaf_hash") != leaf:
                    problems.append(f"{where}: differs from record seq {seq} of chain "
                                    f"{chain_id} in the extract")
                review = Review(**entry["oversight"]) if entry.get("oversight") else None
                expected = csv_row(event, Location(chain_id, seq, leaf), review,
                                   bool(entry.get("disputed")), entry.get("outcome"))
                if next(rows, None) != expected:
                    problems.append(f"{DECISIONS_CSV} row {number}: differs from decision "
                                    f"{event.get('id')} ({where})")
                if len(problems) >= MAX_LISTED:
                    return [*problems, f"{DECISIONS_CSV}/{DECISIONS_JSONL}: further differences "
                                       "not listed"]
            if next(rows, None) is not None:
                problems.append(f"{DECISIONS_CSV}: more rows than {DECISIONS_JSONL} has lines")
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [*problems, f"decision log unreadable: {error}"]
    if number != decisions:
        problems.append(f"{DECISIONS_JSONL}: {number} decision(s), but the chain extracts hold "
                        f"{decisions} of the window: decisions are left out")
    return problems


def _extract_records(folder: Path, chains: list[dict[str, Any]],
                     ) -> Iterator[tuple[str, int, bytes]]:
    """(chain id, seq, bytes) of every record of the extracts, in manifest order."""
    for chain in chains:
        try:
            with open(folder / str(chain.get("extract")), "rb") as handle:
                for line in handle:
                    data = line.rstrip(b"\n")
                    header = parse_header(data)
                    if header is not None:
                        yield header.chain_id, header.seq, data
        except OSError:
            continue


def check_decision_proof(folder: Path, record_id: str, keys: dict[str, Any]) -> list[str]:
    path = proof_path(record_id)
    proof = _read_json(folder / path)
    if proof is None:
        return [f"{path}: missing or not JSON"]
    problems = [f"{path}: {problem}" for problem in check_proof(proof, keys)]
    try:
        proven = parse_record(str(proof.get("record", "")).encode("utf-8"))["event"].get("id")
    except ValueError:
        proven = None
    if proven != record_id:
        problems.append(f"{path}: proves record {proven}, not decision {record_id}")
    return problems


def _check_checkpoints(folder: Path, chain_id: str, keys: dict[str, Any]) -> list[str]:
    path = checkpoints_path(chain_id)
    stored = _read_json(folder / path)
    if not isinstance(stored, list):
        return [f"{path}: missing or not a list of checkpoints"]
    problems = []
    before: bytes | None = None
    for number, entry in enumerate(stored):
        try:
            payload = str(entry["payload"]).encode("utf-8")
            signature = base64.b64decode(entry["signature"])
            checkpoint = Checkpoint.from_payload(payload)
        except (KeyError, TypeError, ValueError) as error:
            problems.append(f"{path}: checkpoint {number} is malformed: {error}")
            before = None
            continue
        key = keys.get(checkpoint.key_id)
        if key is None:
            problems.append(f"{path}: checkpoint {checkpoint.index} is signed by key "
                            f"{checkpoint.key_id[:16]}, which is not trusted")
        elif not signature_valid(key, payload, signature):
            problems.append(f"{path}: checkpoint {checkpoint.index}: signature does not verify")
        if checkpoint.chain_id != chain_id or checkpoint.index != number:
            problems.append(f"{path}: checkpoint {number} is not checkpoint {number} of chain "
                            f"{chain_id}")
        elif before is not None and checkpoint.prev_checkpoint != payload_hash(before):
            problems.append(f"{path}: checkpoint {number} does not link to checkpoint "
                            f"{number - 1}")
        before = payload
    return problems


def load_bundle_keys(folder: Path) -> dict[str, Any]:
    """The checkpoint keys the bundle carries (`keys/<key id>.pem`), by key id."""
    keys = {}
    for path in sorted((folder / "keys").glob("*.pem")):
        try:
            key = load_public_key_pem(path.read_bytes())
        except ValueError:
            continue
        keys[key_id(key)] = key
    return keys


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
