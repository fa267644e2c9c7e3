"""What the report says, once, for both of its forms: the HTML page and the PDF draw the same
blocks (paragraphs, tables, charts), so the PDF that gets filed carries every number the page
shows. A section with nothing in the window says "None in this window." once instead of
printing tables with a header and no rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_ai_audit.document.render import format_estimate, format_number
from otel_ai_audit.evidence.charts import Chart
from otel_ai_audit.evidence.regulation import ITEMS
from otel_ai_audit.evidence.sections import ALL_VERSIONS, as_object, has_p_value, part
from otel_ai_audit.monitoring.metrics import Estimate
from otel_ai_audit.record.schema import DESCRIBED_TIME

NONE = "None in this window."
TEXT, NUM, MONO = "text", "num", "mono"


@dataclass(frozen=True)
class Paragraph:
    text: str
    style: str = ""
    """"" plain, "ok" / "fail" a verdict, "refs" the regulation references."""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    kinds: tuple[str, ...]
    """Per column: text, num (right-aligned) or mono (ids and hashes)."""


@dataclass(frozen=True)
class Figure:
    chart: Chart


Block = Paragraph | Table | Figure


@dataclass
class Section:
    key: str
    title: str
    refs: str = ""
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Card:
    key: str
    value: str
    label: str
    style: str = ""


@dataclass(frozen=True)
class Report:
    title: str
    intro: str
    cards: list[Card]
    sections: list[Section]


def text(value: Any) -> str:
    """A recorded value as text; records are data from outside, so anything shows as it is."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def number(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return "n/a" if value is None else str(value)


def p_value(value: Any) -> str:
    """A p-value to three significant digits: 1.2e-07 stays readable, not 0.000."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3g}"
    return "n/a"


def estimate(value: dict[str, Any] | None) -> str:
    return format_estimate(None if not value else Estimate(**value))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def table(header: Sequence[str], kinds: str, rows: Iterable[Sequence[Any]]) -> list[Block]:
    """A table, or nothing when it has no row. `kinds`: one letter a column, t / n / m."""
    letters = {"t": TEXT, "n": NUM, "m": MONO}
    body = [tuple(text(cell) for cell in row) for row in rows]
    if not body:
        return []
    return [Table(tuple(header), body, tuple(letters[k] for k in kinds))]


def report(facts: dict[str, Any], sections: dict[str, Any], verification: dict[str, Any],
           charts: Sequence[Chart]) -> Report:
    refs = {item.key: f"EU AI Act {item.eu_ai_act} | {item.standards}" for item in ITEMS}
    figures = {chart.name: chart for chart in charts}
    window = facts["window"]
    overrides = sections["oversight"]["actions"].get("overridden", 0)
    verdict = "verified" if verification["ok"] else "FAILED"
    cards = [
        Card("count-decisions", str(facts["counts"]["decisions"]), "decisions"),
        Card("count-records", str(facts["counts"]["records_in_window"]), "records in window"),
        Card("count-overrides", str(overrides), "human overrides"),
        Card("count-incidents", str(len(sections["incidents"]["incidents"])), "incidents"),
        Card("count-drifted", str(sections["drift"]["drifted"]), "drifted feature windows"),
        Card("verification", verdict, "trail verification",
             "ok" if verification["ok"] else "fail")]
    intro = (f"Records of system {facts['system']} whose logged event time (event.time, UTC) "
             f"is from {window['from']} (inclusive) to {window['to']} (exclusive), built "
             f"{facts['created']} by otel-ai-audit {facts['generator']} from store "
             f"{facts['store']}.")
    axis = sections["volume"]["axis"]
    if axis["time"] == "described":
        intro += (" Charts over time show the time the records describe (described_time, "
                  "e.g. a patient's arrival: the application's claim), from "
                  f"{axis['start']}; the window and its proof of completeness are on the "
                  "recorded time, which the chain orders and proves.")
    answers = Section("answers", "What this bundle answers", blocks=table(
        ("Item", "EU AI Act", "NIST AI RMF / ISO / SOC 2", "Files"), "tttm",
        ((item.title, item.eu_ai_act, item.standards, ", ".join(item.files)) for item in ITEMS)))
    body = [answers,
            _decision_log(facts, sections["volume"], figures),
            _timeline(sections["timeline"]),
            _oversight(sections["oversight"], figures),
            _incidents(sections["incidents"]),
            _drift(sections["drift"], figures),
            _performance(sections["performance"]),
            _lineage(sections["lineage"], facts),
            _integrity(facts, verification)]
    for section in body[1:]:
        section.refs = refs[section.key]
    return Report(f"Evidence bundle: {facts['system']}", intro, cards, body)


def _or_none(blocks: list[Block], *lead: Block) -> list[Block]:
    """`lead` then `blocks`, or the one "none" line when there are no blocks."""
    return [*lead, *blocks] if blocks else [Paragraph(NONE)]


def _decision_log(facts: dict[str, Any], volume: dict[str, Any],
                  figures: dict[str, Chart]) -> Section:
    blocks: list[Block] = [Paragraph(
        f"{facts['counts']['decisions']} decisions in decisions.csv and decisions.jsonl "
        "(columns explained in decisions-fields.json).")]
    blocks += table(("Record type", "Records"), "tn", sorted(volume["by_type"].items()))
    blocks += table(("Risk level", "Decisions"), "tn", sorted(volume["by_risk"].items()))
    if "volume" in figures:
        blocks.append(Figure(figures["volume"]))
    return Section("decision_log", "Decision log extract", blocks=blocks)


def _timeline(timeline: dict[str, Any]) -> Section:
    described = any(DESCRIBED_TIME in e["event"] for e in timeline["events"])
    times = ("Time", "Described time") if described else ("Time",)
    blocks = table((*times, "Event", "Model", "Model fingerprint", "Change", "Record"),
                   "m" * len(times) + "ttmtm", (
        (e["event"].get("time"), *((e["event"].get(DESCRIBED_TIME),) if described else ()),
         f"{e['event'].get('type')}{'' if e['in_window'] else ' (before window)'}",
         f"{part(e['event'], 'model').get('name')} {part(e['event'], 'model').get('version')}",
         text(part(e["event"], "model").get("fingerprint"))[:16],
         part(e["event"], "deployment").get("change"), e["event"].get("id"))
        for e in timeline["events"]))
    blocks += table(("Version served", "First decision", "Last decision", "Decisions",
                     "High risk"), "tmmnn",
                    ((f"{s['name']} {s['version']}", s["first"], s["last"], s["decisions"],
                      s["high_risk"]) for s in timeline["served"]))
    return Section("timeline", "Model version timeline", blocks=_or_none(blocks))


def _oversight(oversight: dict[str, Any], figures: dict[str, Chart]) -> Section:
    blocks = table(("Action", "Records"), "tn", sorted(oversight["actions"].items()))
    blocks += table(
        ("Model version", "Decisions", "High risk", "Reviewed", "Overridden", "Override rate"),
        "tnnnnn", ((version, t["decisions"], t.get("high_risk", 0), t.get("reviewed", 0),
                    t.get("overridden", 0), percent(t.get("overridden", 0) / t["decisions"]))
                   for version, t in sorted(oversight["by_version"].items())))
    blocks += table(("Reviewer", "Role", "Actions"), "ttn",
                    ((r["id"], r["role"], r["actions"]) for r in oversight["reviewers"]))
    if "overrides" in figures:
        blocks.append(Figure(figures["overrides"]))
    elif oversight["records"]:
        blocks.append(Paragraph("No human override in this window."))
    rate = Paragraph(
        f"{oversight['high_risk_reviewed']} of {oversight['high_risk_decisions']} high-risk "
        f"decisions were reviewed by a person ({percent(oversight['high_risk_review_rate'])}).")
    return Section("oversight", "Human oversight",
                   blocks=_or_none(blocks, rate) if oversight["by_version"] else [Paragraph(NONE)])


def _incidents(incidents: dict[str, Any]) -> Section:
    blocks: list[Block] = []
    for entry in incidents["incidents"]:
        incident = part(entry["event"], "incident")
        notification, snapshot = part(incident, "notification"), part(incident, "snapshot")
        decisions = incident.get("decisions")
        blocks += table(("Incident", f"{incident.get('id')}: {incident.get('title')} "
                                     f"({incident.get('severity')})"), "tm", [
            ("Description", incident.get("description")),
            ("Awareness", incident.get("awareness_time")),
            ("Causal link established", incident.get("causal_link_time")),
            *((f"Notify by ({name})"
               + (" (applies)" if name == notification.get("applicable") else ""), deadline)
              for name, deadline in sorted(part(notification, "deadlines").items())),
            ("Notification status",
             f"{notification.get('status')} to {notification.get('authority')}"),
            ("Frozen snapshot", f"chain {snapshot.get('chain_id')} seq {snapshot.get('seq')} "
                                f"leaf {snapshot.get('leaf_hash')}"),
            ("Decisions concerned",
             ", ".join(map(str, decisions)) if isinstance(decisions, list) else ""),
            ("Record", f"{entry['event'].get('id')} (chain {entry['chain_id']} "
                       f"seq {entry['seq']})")])
    blocks += table(("Dispute on decision", "Raised by", "Reason", "Time"), "mttm", (
        (d["event"].get("decision_id"), d["event"].get("raised_by"), d["event"].get("reason"),
         d["event"].get("time")) for d in incidents["disputes"]))
    blocks += table(("Alert record", "Time", "Details"), "mmt", (
        (a["event"].get("id"), a["event"].get("time"),
         json.dumps({k: v for k, v in a["event"].items() if k not in ("id", "type", "time")},
                    ensure_ascii=False))
        for a in incidents["alerts"]))
    return Section("incidents", "Incident register", blocks=_or_none(blocks))


def _drift(drift: dict[str, Any], figures: dict[str, Chart]) -> Section:
    records = drift["records"]
    others = sum(not record.get("in_extracts", True) for record in records)
    lead = Paragraph(
        f"{len(records)} drift records in the window ({others} written by another process, "
        f"cited by chain and seq: prove one with otel-ai-audit prove), {drift['drifted']} "
        "over their threshold. A distance (PSI, Jensen-Shannon) drifts at or above its "
        "threshold; a test (Kolmogorov-Smirnov, chi-squared) when its p-value is below it.")
    blocks: list[Block] = [Figure(figures["drift"])] if "drift" in figures else []
    blocks += table(("Model", "Feature", "Method", "Threshold", "Windows", "Drifted",
                     "Furthest statistic", "Its p-value", "In window ending"), "tttnnnnnm", (
        (f"{f['model']} {f['version']}", f["feature"], f["method"],
         f"p < {f['threshold']:g}" if has_p_value(f["method"]) else f">= {f['threshold']:g}",
         f["windows"], f["drifted"],
         p_value(f["worst"]["score"]) if has_p_value(f["method"]) else number(f["worst"]["score"]),
         p_value(f["worst"]["p_value"]) if has_p_value(f["method"]) else "none (a distance)",
         f["worst"]["window_end"]) for f in drift["features"]))
    return Section("drift", "Input drift", blocks=_or_none(blocks, lead))


def _performance(performance: dict[str, Any]) -> Section:
    if not performance["versions"]:
        return Section("performance", "Performance per subgroup", blocks=[Paragraph(
            "None in this window: no decision of the window has a recorded outcome "
            "(otel_ai_audit.record_outcome).")])
    positive = performance["positive_labels"]
    lead = (f"{performance['decisions_with_outcome']} decisions of the window have a recorded "
            "outcome. Accuracy is the share of exact matches")
    if positive:
        lead += (f"; TPR is the share of truly positive cases (label {' or '.join(positive)}) "
                 "the model rated positive, FPR the share of truly negative ones it rated "
                 "positive")
    lead += ". 95% Wilson intervals in brackets."
    blocks: list[Block] = [Paragraph(lead)]
    if performance["probability_decisions"]:
        blocks.append(Paragraph(
            f"{performance['probability_decisions']} of them returned probabilities "
            f"(predict_proba): the predicted class is the positive label when its probability "
            f"is at least {performance['threshold']:g} (two classes), else the most probable "
            "class."))
    if performance["inputs_hashed"]:
        blocks.append(Paragraph(
            f"{performance['inputs_hashed']} of them had their inputs recorded as keyed hashes "
            "(capture policy hash): their subgroup is (unknown). Record inputs in full, or the "
            "subgroup fields, to see them here."))
    for version in performance["versions"]:
        name = version["version"]
        blocks.append(Paragraph(f"{name if name == ALL_VERSIONS else f'Model version {name}'} "
                                f"({version['decisions_with_outcome']} with outcome):"))
        blocks += table(("Attribute", "Value", "Count", "Accuracy", "TPR", "FPR"), "ttnnnn", (
            (s["attribute"], s["value"], s["count"], estimate(s["accuracy"]),
             estimate((s["positive"] or {}).get("tpr")) if positive else "n/a",
             estimate((s["positive"] or {}).get("fpr")) if positive else "n/a")
            for s in version["slices"]))
    return Section("performance", "Performance per subgroup", blocks=blocks)


def _lineage(lineage: dict[str, Any], facts: dict[str, Any]) -> Section:
    def data_of(training: dict[str, Any], name: str) -> str:
        data = part(as_object(training.get("data")), name)
        return f"{text(data.get('sha256'))} {text(data.get('shape'))}".strip()

    blocks = table(("Trained", "Model fingerprint", "Deployed as", "Features (SHA-256, shape)",
                    "Target (SHA-256, shape)"), "mmtmm", (
        (t["event"].get("time"), text(part(t["event"], "model").get("fingerprint"))[:16],
         t.get("version") or "not deployed", data_of(t, "features"), data_of(t, "target"))
        for t in lineage["trainings"]))
    blocks += table(("Model card recorded", "Model", "Files (SHA-256)"), "mtm", (
        (c["event"].get("time"),
         f"{part(c['event'], 'model').get('name')} {part(c['event'], 'model').get('version')}",
         "; ".join(f"{name}: {digest}" for name, digest in
                   sorted(part(part(c["event"], "model_card"), "files").items())))
        for c in lineage["model_cards"]))
    blocks += table(("Data set file", "SHA-256", "Bytes"), "tmn",
                    ((d["name"], d["sha256"], d["size"]) for d in facts["datasets"]))
    return Section("lineage", "Data lineage", blocks=_or_none(blocks))


def _integrity(facts: dict[str, Any], verification: dict[str, Any]) -> Section:
    blocks: list[Block] = [
        Paragraph("The whole trail of the system was verified when the bundle was built: "
                  f"{'intact and complete' if verification['ok'] else 'FAILED'} "
                  f"({verification['records']} records in {verification['chains']} chain(s), "
                  f"trust: {verification['trust']}).", "ok" if verification["ok"] else "fail")]
    blocks += [Paragraph(f"Note: {notice}.") for notice in verification.get("notices", [])]
    blocks += [Paragraph(f"{f.get('kind')}: chain {f.get('chain_id')} seq {f.get('seq')}: "
                         f"{f.get('detail')}", "fail") for f in verification["findings"]]
    blocks += table(("Chain", "Extract (seq)", "Records", "Tail proof"), "mnnm", (
        (c["chain_id"], f"{c['first_seq']}..{c['last_seq']}", c["records"],
         c["tail_proof"] or "(no record in the window)") for c in facts["chains"]))
    blocks += table(("Another system's chain", "System", "Proof"), "mtm", (
        (c["chain_id"], c["system"], c["proof"]) for c in facts["foreign_chains"]))
    blocks += table(("Key id", "Role"), "mt",
                    ((k["key_id"], k["role"]) for k in facts["keys"]))
    blocks += table(("Decision named in the request", "Inclusion proof"), "mm", (
        (decision, f"integrity/proofs/{decision}.json") for decision in facts["proven_decisions"]))
    blocks.append(Paragraph(
        "Check this bundle offline: otel-ai-audit verify-bundle DIR --public-key KEY.pem "
        "(every file against the signed manifest, every record of the extracts against the "
        "signed checkpoints)."))
    return Section("integrity", "Chain verification", blocks=blocks)
