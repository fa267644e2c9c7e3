"""One streaming pass over a system's chains: the decision log, the chain extracts, the sections.

Per chain, two reads of the store:

1. The indexed columns only (seq, time, type, id): which seqs fall in the window, and where
   the lifecycle records before the window are. Those few are read now. With a binary search
   on `chain.logged`, this gives the chain's range (see `bounds`). The facts about decisions
   recorded later (outcomes, oversight, disputes) are read before, from every chain of the
   store, so pass 2 can join them by decision id.
2. The records of the range, in pages. Every one of them goes into the chain extract as its
   exact canonical bytes (a contiguous, hash-linked run, so no record in between can be left
   out unseen); those whose event time is in the window go into the decision log and the
   sections.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from otel_ai_audit.evidence.bounds import ChainExtract, plan_range
from otel_ai_audit.evidence.sections import (
    LIFECYCLE_TYPES,
    Joins,
    Location,
    Review,
    Sections,
    output_value,
    part,
    version_of,
)
from otel_ai_audit.evidence.window import Window
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.record.schema import parse_header, parse_record
from otel_ai_audit.store.sqlite import AuditStore

PAGE = 4096
DECISIONS_CSV = "decisions.csv"
DECISIONS_JSONL = "decisions.jsonl"
JOINED_TYPES = ("outcome", "oversight", "dispute")
REFERENCE_TYPES = ("reference",)

DECISION_FIELDS: dict[str, str] = {
    "record_id": "The decision's id (event.id). `otel-ai-audit prove STORE ID` proves it alone.",
    "time": "When the model decided (event.time), UTC, RFC 3339 with nanoseconds.",
    "chain_id": "The chain (one writing process) holding the record.",
    "seq": "The record's position in its chain, from 0.",
    "leaf_hash": "RFC 9162 leaf hash of the record's canonical bytes: binds the row to the "
                 "record in integrity/chain-<chain_id>.jsonl.",
    "model_name": "Model name (model.name).",
    "model_version": "Model version (model.version).",
    "model_fingerprint": "SHA-256 of the model's fitted state: which artifact decided.",
    "operation": "The model method called (predict, predict_proba, ...).",
    "input_policy": "How the input was recorded: full, hash (keyed HMAC-SHA256), redact, none.",
    "input": "The input as recorded: JSON (full) or the keyed hash (hash).",
    "output": "The model's output as recorded (JSON).",
    "risk_level": "Risk level of the decision (risk.level), e.g. high for urgency 1-2.",
    "oversight_action": "Last human-oversight action on the decision (EU AI Act Art. 14): "
                        "accepted, overridden, reversed, not_used, stopped; empty if none.",
    "reviewer": "Id of the person who took that action.",
    "reviewer_role": "Their role.",
    "disputed": "true if a dispute record names this decision.",
    "outcome": "The true outcome once known (record_outcome); empty if not known.",
    "trace_id": "OpenTelemetry trace id of the model call.",
    "span_id": "OpenTelemetry span id of the model call.",
}
"""The decision log's columns and what each means (written as `decisions-fields.json`)."""


@dataclass(frozen=True)
class Attribution:
    """The store's chains by system: the system's own, those whose opening record is missing or
    unreadable (they cannot be attributed, so a bundle cannot say they are not the system's),
    and every other chain with the system its opening record names."""

    chains: list[str]
    unattributed: list[str]
    others: dict[str, str]


def system_chains(store: AuditStore, system: str) -> Attribution:
    """Chains whose opening record names `system` as its service (a chain is one process)."""
    attribution = Attribution([], [], {})
    for chain_id in store.chain_ids():
        named = opening_system(store.record_at(chain_id, 0))
        if named is None:
            attribution.unattributed.append(chain_id)
        elif named == system:
            attribution.chains.append(chain_id)
        else:
            attribution.others[chain_id] = named
    return attribution


def opening_system(record: bytes | None) -> str | None:
    """The system (service name) a chain's opening record names; None if it is not one."""
    try:
        event = parse_record(record)["event"] if record is not None else None
    except ValueError:
        event = None
    if event is None or event.get("type") != "chain_open":
        return None
    return str(part(event, "service").get("name"))


class DecisionLog:
    """decisions.csv and decisions.jsonl, written row by row (the same rows, in chain order)."""

    def __init__(self, folder: Path, joins: Joins) -> None:
        self.joins = joins
        self._csv_file = open(folder / DECISIONS_CSV, "w", newline="", encoding="utf-8")
        self._jsonl: IO[str] = open(folder / DECISIONS_JSONL, "w", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(DECISION_FIELDS)
        self.count = 0

    def add(self, event: dict[str, Any], event_json: str, where: Location) -> None:
        decision_id = str(event.get("id"))
        review = self.joins.reviews.get(decision_id)
        disputed = decision_id in self.joins.disputed
        outcome = self.joins.outcomes.get(decision_id)
        self._csv.writerow(csv_row(event, where, review, disputed, outcome))
        joined = json.dumps({
            "chain_id": where.chain_id, "seq": where.seq, "leaf_hash": where.leaf_hash,
            "oversight": review and asdict(review), "disputed": disputed, "outcome": outcome},
            ensure_ascii=False, separators=(",", ":"))
        # The event as recorded: its canonical JSON, cut from the record's bytes.
        self._jsonl.write(f'{joined[:-1]},"event":{event_json}}}\n')
        self.count += 1

    def close(self) -> None:
        self._csv_file.close()
        self._jsonl.close()


def csv_row(event: dict[str, Any], where: Location, review: Review | None, disputed: bool,
            outcome: Any) -> list[str]:
    """A decision's row of decisions.csv (columns of `DECISION_FIELDS`), as text."""
    model = part(event, "model")
    captured = part(event, "input")
    trace = part(event, "trace")
    row = [
        event.get("id"), event.get("time"), where.chain_id, where.seq, where.leaf_hash,
        model.get("name"), version_of(event), model.get("fingerprint"), event.get("operation"),
        captured.get("policy"), _text(captured.get("value", captured.get("hmac_sha256"))),
        _text(output_value(event)), part(event, "risk").get("level"),
        review.action if review else "", review.reviewer if review else "",
        review.role if review else "", str(disputed).lower(), _text(outcome),
        trace.get("trace_id"), trace.get("span_id")]
    return ["" if value is None else str(value) for value in row]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def event_json(record: bytes) -> bytes:
    """The canonical JSON of a record's (or a decision log line's) event: "event" is the last
    key of both, and a key never appears unescaped inside a JSON string."""
    return record[record.index(b',"event":') + 9:-1]


def collect(store: AuditStore, chains: list[str], window: Window, folder: Path,
            sections_for: Callable[[Joins], Sections], required: Collection[str] = (),
            ) -> tuple[Sections, list[ChainExtract], int]:
    """Write the decision log and chain extracts into `folder`; return the sections, the
    extracts and the number of decisions. `sections_for(joins)` makes the `Sections`; the
    chains in `required` get a (possibly empty) range even without a record in the window.
    ProofError when a record of the window is not signed yet."""
    joins = _joins(store, window)
    plans = []
    lifecycle: list[tuple[dict[str, Any], Location]] = []
    for chain_id in chains:
        first, last = -1, -1
        for seq, time, kind, _ in store.indexed_columns(chain_id):
            if window.holds(time):
                first = seq if first < 0 else first
                last = seq
            if kind in LIFECYCLE_TYPES and time < window.end:
                data = store.record_at(chain_id, seq)
                if data is not None:
                    lifecycle.append((parse_record(data)["event"],
                                      Location(chain_id, seq, leaf_hash(data).hex())))
        if first >= 0 or chain_id in required:
            plan = plan_range(store, chain_id, window, (first, last) if first >= 0 else None,
                              f"integrity/chain-{chain_id}.jsonl")
            plans += [plan] if plan is not None else []
    sections = sections_for(joins)
    for event, where in lifecycle:
        sections.add_lifecycle(event, where)
    log = DecisionLog(folder, joins)
    try:
        for extract in plans:
            with open(folder / extract.path, "wb") as out:
                for seq, time, data in _run(store, extract):
                    out.write(data + b"\n")
                    if not window.holds(time):
                        continue
                    event = parse_record(data)["event"]
                    where = Location(extract.chain_id, seq, leaf_hash(data).hex())
                    sections.add(event, where)
                    if event.get("type") == "inference":
                        log.add(event, event_json(data).decode("utf-8"), where)
    finally:
        log.close()
    _add_other_drift(store, set(chains), window, sections)
    return sections, plans, log.count


def _joins(store: AuditStore, window: Window) -> Joins:
    """The facts about decisions recorded by any process of the store (an outcome feed, a
    review tool: each its own chain, maybe another service name), matched by decision id;
    the latest of each kind counts. And every model's classes, from its reference profile."""
    joins = Joins()
    for kinds, start in ((REFERENCE_TYPES, None), (JOINED_TYPES, window.start)):
        for data in store.records_of_type(kinds, start):
            try:
                joins.add(parse_record(data)["event"])
            except ValueError:
                continue  # not a record: verification reports it
    return joins


def _add_other_drift(store: AuditStore, chains: set[str], window: Window,
                     sections: Sections) -> None:
    """Drift records of the window about the system's models written by other processes (a
    monitoring job under its own service name): cited by chain and seq, provable from the
    store with `otel-ai-audit prove`."""
    models = sections.model_names()
    for data in store.records_of_type(("drift",), window.start, window.end):
        header = parse_header(data)
        if header is None or header.chain_id in chains:
            continue
        try:
            event = parse_record(data)["event"]
        except ValueError:
            continue
        if part(event, "model").get("name") in models:
            sections.add_drift(event, Location(header.chain_id, header.seq,
                                               leaf_hash(data).hex()), own_chain=False)


def _run(store: AuditStore, extract: ChainExtract) -> Iterator[tuple[int, str, bytes]]:
    """(seq, time column, canonical bytes) of first_seq..last_seq, a page at a time."""
    after = extract.first_seq - 1
    while after < extract.last_seq:
        page = store.records_after(extract.chain_id, after,
                                   min(PAGE, extract.last_seq - after))
        if not page:
            return
        for record in page:
            yield record.seq, record.time, bytes(record.data)
        after = page[-1].seq
