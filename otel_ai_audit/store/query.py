"""Finding things in an embedded store: which models made decisions, and which decisions.

What `otel-ai-audit models` and `decisions` show. The indexed columns (time, type, id, chain
position) come from the store, the fields from each record's canonical bytes, read by SQLite's
JSON functions so that a store of a million decisions is summarised without parsing each one
in Python. A record whose bytes are not JSON is skipped here: `verify` is what reports it.

Oversight, outcome and dispute records name their decision (`decision_id`); a decision's
outcome is the latest one recorded for it, as monitoring reads it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from otel_ai_audit.record.schema import EventType, parse_record
from otel_ai_audit.store.sqlite import AuditStore

INFERENCE = EventType.INFERENCE.value
LINKED_TYPES = (EventType.OUTCOME.value, EventType.OVERSIGHT.value, EventType.DISPUTE.value)
HAS, NONE = "has", "none"
"""Filter values of `DecisionFilter.outcome` and `.oversight`; anything else is a label or an
oversight action."""

_DECISIONS = """
    SELECT CAST(record_id AS TEXT) AS id, CAST(time AS TEXT) AS decided,
           CAST(chain_id AS TEXT) AS chain, seq,
           CAST(json_extract(body, '$.event.model.name') AS TEXT) AS name,
           CAST(json_extract(body, '$.event.model.version') AS TEXT) AS version,
           CAST(json_extract(body, '$.event.risk.level') AS TEXT) AS risk,
           CAST(json_extract(body, '$.event.service.name') AS TEXT) AS service,
           CAST(json_extract(body, '$.event.model.framework') AS TEXT) AS framework
    FROM (SELECT record_id, time, chain_id, seq, CAST(data AS TEXT) AS body
          FROM records {index} WHERE type = ? {window})
    WHERE json_valid(body) {fields}"""
"""Decisions with their indexed columns and fields. Lists read them through the time index
(`{index}`), ordered by its raw columns, so that a `--limit` stops early instead of sorting all."""
_BY_TIME = "INDEXED BY records_by_time"


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    """One model version as its decisions describe it (keyword-only: nine values, several of
    them text or tuples of text a position would mix up)."""

    name: str | None
    version: str | None
    framework: str | None
    risks: tuple[str, ...]
    decisions: int
    first: str
    last: str
    chains: tuple[str, ...]
    services: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "framework": self.framework,
                "risk": list(self.risks), "decisions": self.decisions, "first": self.first,
                "last": self.last, "chains": list(self.chains), "services": list(self.services)}


@dataclass(frozen=True)
class LinkedRecord:
    """An outcome, oversight or dispute record about a decision, and where it is chained."""

    type: str
    id: str
    time: str
    chain_id: str
    seq: int
    event: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "time": self.time,
                "chain": {"id": self.chain_id, "seq": self.seq}, "event": self.event}


@dataclass
class Decision:
    """A decision record's indexed facts and the records linked to it, oldest first."""

    id: str
    time: str
    chain_id: str
    seq: int
    model: str | None
    version: str | None
    risk: str | None
    service: str | None
    linked: list[LinkedRecord] = field(default_factory=list, kw_only=True)
    event: dict[str, Any] | None = field(default=None, kw_only=True)
    """The whole decision event: read for one decision (`find_decision`), not for lists."""

    def of_type(self, kind: str) -> list[LinkedRecord]:
        return [record for record in self.linked if record.type == kind]

    @property
    def outcome(self) -> Any:
        """The latest outcome label, or None."""
        outcomes = self.of_type(EventType.OUTCOME.value)
        return outcomes[-1].event.get("label") if outcomes else None

    @property
    def has_outcome(self) -> bool:
        return bool(self.of_type(EventType.OUTCOME.value))

    @property
    def oversight_actions(self) -> list[str]:
        return [str(record.event.get("action")) for record in
                self.of_type(EventType.OVERSIGHT.value)]

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "id": self.id, "time": self.time, "chain": {"id": self.chain_id, "seq": self.seq},
            "model": {"name": self.model, "version": self.version}, "risk": self.risk,
            "service": self.service,
            "outcome": self.outcome if self.has_outcome else None,
            "oversight": self.oversight_actions,
            "disputes": len(self.of_type(EventType.DISPUTE.value))}
        if self.event is not None:
            value["event"] = self.event
            value["linked"] = [record.to_json() for record in self.linked]
        return value


@dataclass(frozen=True)
class DecisionFilter:
    """Which decisions to list; None (or 0 for `limit`) does not filter.

    `since`/`until` are record-time bounds (`monitoring.records.record_time`), half-open like
    monitoring windows. `outcome` is `has`, `none` or a label (as text: `1`, `true`, `high`);
    `oversight` is `has`, `none` or an action (`override`, ...).
    """

    model: str | None = None
    version: str | None = None
    risk: str | None = None
    since: str | None = None
    until: str | None = None
    outcome: str | None = None
    oversight: str | None = None
    limit: int = 0


def label_text(label: Any) -> str:
    """An outcome label as the `outcome` filter compares it: text as is, the rest as JSON."""
    return label if isinstance(label, str) else json.dumps(label)


def models(store: AuditStore) -> list[ModelSummary]:
    """Every (model name, version) that made a decision in the store, by name then version."""
    sql = f"""
        SELECT name, version, min(framework), json_group_array(DISTINCT risk), count(*),
               min(decided), max(decided), json_group_array(DISTINCT chain),
               json_group_array(DISTINCT service)
        FROM ({_DECISIONS.format(index="", window="", fields="")})
        GROUP BY name, version ORDER BY name, version"""
    return [ModelSummary(name=name, version=version, framework=framework, risks=_present(risks),
                         decisions=int(count), first=first, last=last, chains=_present(chains),
                         services=_present(services))
            for name, version, framework, risks, count, first, last, chains, services
            in store._rows(sql, (INFERENCE,))]


def model_names(store: AuditStore) -> list[str]:
    """The distinct model names of the store's decisions (for errors that say what exists)."""
    return sorted({summary.name for summary in models(store) if summary.name is not None})


def decisions(store: AuditStore, where: DecisionFilter) -> Iterator[Decision]:
    """The decisions matching `where`, in time order (then chain position), with their linked
    records; at most `where.limit` of them."""
    window, fields, params = _conditions(where)
    sql = (_DECISIONS.format(index=_BY_TIME, window=window, fields=fields)
           + " ORDER BY time, chain_id, seq")
    linked = _linked(store)
    found = 0
    for row in store._stream(sql, params):
        decision = Decision(*row[:8], linked=linked.get(row[0], []))
        if not _matches(decision, where):
            continue
        yield decision
        found += 1
        if found == where.limit:
            return


def find_decision(store: AuditStore, decision_id: str) -> Decision | None:
    """One decision with its whole event and linked records, or None if the store has no
    decision (inference record) of that id."""
    sql = _DECISIONS.format(index="", window="AND record_id = ?", fields="")
    rows = store._rows(sql + " ORDER BY chain_id, seq LIMIT 1", (INFERENCE, decision_id))
    if not rows:
        return None
    found = store.find_record(decision_id)
    decision = Decision(*rows[0][:8], linked=_linked(store, decision_id).get(decision_id, []))
    decision.event = parse_record(found[2])["event"] if found is not None else None
    return decision


def record_type(store: AuditStore, record_id: str) -> tuple[str, str | None] | None:
    """The type of the record `record_id`, and the decision it is about if it names one (an
    id given to `decisions` that is an outcome's, not a decision's, is then explained)."""
    found = store.find_record(record_id)
    if found is None:
        return None
    event = parse_record(found[2])["event"]
    decision_id = event.get("decision_id")
    return str(event.get("type")), str(decision_id) if decision_id is not None else None


def _conditions(where: DecisionFilter) -> tuple[str, str, tuple[object, ...]]:
    """SQL for the filters SQLite can apply: the time window and, for decisions that must have
    an outcome or oversight record, that they are named by one (what they say, and `none`,
    are checked by `_matches`); then the decision's own fields."""
    window, fields = "", ""
    params: list[object] = [INFERENCE]
    for column, bound in (("time >=", where.since), ("time <", where.until)):
        if bound is not None:
            window += f" AND {column} ?"
            params.append(bound)
    for kind, wanted in ((EventType.OUTCOME.value, where.outcome),
                         (EventType.OVERSIGHT.value, where.oversight)):
        if wanted not in (None, NONE):
            window += (" AND record_id IN (SELECT CAST(json_extract(CAST(data AS TEXT), "
                       "'$.event.decision_id') AS TEXT) FROM records WHERE type = ? AND "
                       "json_valid(CAST(data AS TEXT)))")
            params.append(kind)
    for column, value in (("name", where.model), ("version", where.version),
                          ("risk", where.risk)):
        if value is not None:
            fields += f" AND {column} = ?"
            params.append(value)
    return window, fields, tuple(params)


def _matches(decision: Decision, where: DecisionFilter) -> bool:
    if where.outcome == HAS and not decision.has_outcome:
        return False
    if where.outcome == NONE and decision.has_outcome:
        return False
    if where.outcome not in (None, HAS, NONE) and (
            not decision.has_outcome or label_text(decision.outcome) != where.outcome):
        return False
    actions = decision.oversight_actions
    if where.oversight == HAS:
        return bool(actions)
    if where.oversight == NONE:
        return not actions
    return where.oversight is None or where.oversight in actions


def _linked(store: AuditStore, decision_id: str | None = None) -> dict[str, list[LinkedRecord]]:
    """Outcome, oversight and dispute records by the decision they name, oldest first."""
    sql = (f"SELECT CAST(record_id AS TEXT), CAST(time AS TEXT), CAST(chain_id AS TEXT), seq, "
           f"CAST(type AS TEXT), CAST(data AS BLOB) FROM records WHERE type IN "
           f"({', '.join('?' * len(LINKED_TYPES))})")
    params: tuple[object, ...] = LINKED_TYPES
    if decision_id is not None:
        sql += " AND json_valid(CAST(data AS TEXT)) AND " \
               "json_extract(CAST(data AS TEXT), '$.event.decision_id') = ?"
        params += (decision_id,)
    found: dict[str, list[LinkedRecord]] = defaultdict(list)
    for record_id, time, chain_id, seq, kind, data in store._stream(
            sql + " ORDER BY time, chain_id, seq", params):
        try:
            event = parse_record(bytes(data))["event"]
        except ValueError:
            continue
        if event.get("decision_id") is not None:
            found[str(event["decision_id"])].append(
                LinkedRecord(kind, record_id, time, chain_id, int(seq), event))
    return found


def _present(array: str) -> tuple[str, ...]:
    """The non-null values of a JSON array from `json_group_array`, sorted."""
    return tuple(sorted(str(value) for value in json.loads(array) if value is not None))
