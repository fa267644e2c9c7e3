"""The bundle's report: one self-contained HTML page (charts inline as SVG, no scripts, no
external resources, so it opens offline years later) and the same content as a PDF drawn with
fpdf2, which needs no browser.

Records carry free text (reasons, titles): the HTML template escapes everything but the
charts matplotlib drew; the PDF uses the core fonts, so text outside Latin-1 is replaced.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

import jinja2
from fpdf import FPDF

from otel_ai_audit.document.render import format_estimate, format_number
from otel_ai_audit.evidence.charts import Chart
from otel_ai_audit.evidence.regulation import ITEMS
from otel_ai_audit.evidence.sections import as_object, part
from otel_ai_audit.monitoring.metrics import Estimate


def _estimate(value: dict[str, Any] | None) -> str:
    return format_estimate(None if not value else Estimate(**value))


def _number(value: Any) -> str:
    """A recorded number; records are data from outside, so anything else shows as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return "n/a" if value is None or isinstance(value, jinja2.Undefined) else str(value)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _short(value: Any, length: int) -> str:
    return "" if value is None or isinstance(value, jinja2.Undefined) else str(value)[:length]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("otel_ai_audit.evidence", "templates"),
    autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
_ENVIRONMENT.filters.update(number=_number, estimate=_estimate, percent=_percent, obj=as_object,
                            listed=_listed, short=_short)


def render_html(facts: dict[str, Any], sections: dict[str, Any], verification: dict[str, Any],
                charts: Sequence[Chart]) -> str:
    return _ENVIRONMENT.get_template("evidence-report.html.j2").render(
        facts=facts, sections=sections, verification=verification, charts=charts, items=ITEMS,
        refs={item.key: f"{item.eu_ai_act} | {item.standards}" for item in ITEMS})


class _Pdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.title_text = _latin(title)
        self.set_auto_page_break(auto=True, margin=14)
        self.set_title(self.title_text)
        self.set_creator("otel-ai-audit")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=7)
        self.cell(0, 5, f"{self.title_text} - page {self.page_no()}", align="C")

    def heading(self, text: str, refs: str = "") -> None:
        self.ln(3)
        self.set_font("Helvetica", "B", 13)
        self.multi_cell(0, 7, _latin(text), new_x="LMARGIN", new_y="NEXT")
        if refs:
            self.set_font("Helvetica", "I", 8)
            self.multi_cell(0, 4, _latin(refs), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", size=9)

    def text(self, value: str) -> None:  # type: ignore[override]
        self.set_font("Helvetica", size=9)
        self.multi_cell(0, 5, _latin(value), new_x="LMARGIN", new_y="NEXT")

    def grid(self, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.set_font("Helvetica", size=7)
        with self.table(text_align="LEFT", line_height=4) as table:
            table.row([_latin(cell) for cell in header])
            for row in rows:
                table.row([_latin("" if cell is None else str(cell)) for cell in row])
        self.ln(2)

    def chart(self, chart: Chart) -> None:
        self.image(io.BytesIO(chart.png), w=self.epw)
        self.ln(2)


def _latin(text: Any) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def render_pdf(facts: dict[str, Any], sections: dict[str, Any], verification: dict[str, Any],
               charts: Sequence[Chart]) -> bytes:
    """The report as PDF: the same sections and numbers as the HTML page."""
    refs = {item.key: f"EU AI Act {item.eu_ai_act} | {item.standards}" for item in ITEMS}
    figures = {chart.name: chart for chart in charts}
    pdf = _Pdf(f"Evidence bundle {facts['system']}")
    pdf.add_page()
    pdf.heading(f"Evidence bundle: {facts['system']}")
    counts = facts["counts"]
    oversight, incidents = sections["oversight"], sections["incidents"]
    pdf.text(f"Window (event time, UTC): {facts['window']['from']} (inclusive) to "
             f"{facts['window']['to']} (exclusive). Built {facts['created']} by otel-ai-audit "
             f"{facts['generator']}.")
    pdf.text(f"Decisions: {counts['decisions']}; records in window: "
             f"{counts['records_in_window']}; human overrides: "
             f"{oversight['actions'].get('overridden', 0)}; incidents: "
             f"{len(incidents['incidents'])}; trail verification: "
             f"{'verified' if verification['ok'] else 'FAILED'}.")
    pdf.grid(("Item", "EU AI Act", "NIST / ISO / SOC 2"),
             ((item.title, item.eu_ai_act, item.standards) for item in ITEMS))

    pdf.heading("Decision log extract", refs["decision_log"])
    pdf.text(f"{counts['decisions']} decisions in decisions.csv and decisions.jsonl "
             "(columns in decisions-fields.json).")
    pdf.grid(("Record type", "Records"), sorted(sections["volume"]["by_type"].items()))
    pdf.grid(("Risk level", "Decisions"), sorted(sections["volume"]["by_risk"].items()))
    pdf.chart(figures["volume"])

    pdf.heading("Model version timeline", refs["timeline"])
    pdf.grid(("Time", "Event", "Model", "Change"), (
        (e["event"].get("time"), e["event"].get("type"),
         f"{part(e['event'], 'model').get('name')} {part(e['event'], 'model').get('version')}",
         part(e["event"], "deployment").get("change", ""))
        for e in sections["timeline"]["events"]))
    pdf.grid(("Version served", "First decision", "Last decision", "Decisions", "High risk"),
             ((f"{s['name']} {s['version']}", s["first"], s["last"], s["decisions"],
               s["high_risk"]) for s in sections["timeline"]["served"]))

    pdf.heading("Human oversight", refs["oversight"])
    pdf.text(f"{oversight['high_risk_reviewed']} of {oversight['high_risk_decisions']} "
             f"high-risk decisions reviewed ({_percent(oversight['high_risk_review_rate'])}).")
    pdf.grid(("Action", "Records"), sorted(oversight["actions"].items()))
    pdf.grid(("Model version", "Decisions", "Reviewed", "Overridden"), (
        (version, t["decisions"], t.get("reviewed", 0), t.get("overridden", 0))
        for version, t in sorted(oversight["by_version"].items())))
    pdf.chart(figures["overrides"])

    pdf.heading("Incident register", refs["incidents"])
    if not incidents["incidents"]:
        pdf.text("No incident was recorded in the window.")
    for entry in incidents["incidents"]:
        incident = part(entry["event"], "incident")
        notification, snapshot = part(incident, "notification"), part(incident, "snapshot")
        pdf.grid(("Field", "Value"), [
            ("Incident", f"{incident.get('id')}: {incident.get('title')} "
                         f"({incident.get('severity')})"),
            ("Awareness", incident.get("awareness_time")),
            ("Causal link", incident.get("causal_link_time")),
            *((f"Notify by ({name})", deadline)
              for name, deadline in sorted(part(notification, "deadlines").items())),
            ("Applicable deadline", notification.get("applicable")),
            ("Frozen snapshot", f"chain {snapshot.get('chain_id')} seq {snapshot.get('seq')}"),
            ("Record", entry["event"].get("id"))])
    pdf.grid(("Disputed decision", "Raised by", "Reason"), (
        (d["event"].get("decision_id"), d["event"].get("raised_by"), d["event"].get("reason"))
        for d in incidents["disputes"]))

    pdf.heading("Input drift", refs["drift"])
    pdf.text(f"{len(sections['drift']['records'])} drift records, "
             f"{sections['drift']['drifted']} over their threshold.")
    if "drift" in figures:
        pdf.chart(figures["drift"])

    performance = sections["performance"]
    pdf.heading("Performance per subgroup", refs["performance"])
    pdf.text(f"{performance['decisions_with_outcome']} decisions with a recorded outcome; "
             "95% Wilson intervals.")
    for version in performance["versions"]:
        pdf.text(f"Model version {version['version']}:")
        pdf.grid(("Attribute", "Value", "Count", "Accuracy", "TPR"), (
            (s["attribute"], s["value"], s["count"], _estimate(s["accuracy"]),
             _estimate((s["positive"] or {}).get("tpr"))) for s in version["slices"]))

    pdf.heading("Data lineage", refs["lineage"])
    pdf.grid(("Trained", "Deployed as", "Features SHA-256"), (
        (t["event"].get("time"), t.get("version") or "not deployed",
         part(as_object(t.get("data")), "features").get("sha256", ""))
        for t in sections["lineage"]["trainings"]))

    pdf.heading("Chain verification", refs["integrity"])
    pdf.text(f"Trail verified when the bundle was built: "
             f"{'intact and complete' if verification['ok'] else 'FAILED'} "
             f"({verification['records']} records, {verification['chains']} chain(s), trust "
             f"{verification['trust']}). Check offline: otel-ai-audit verify-bundle DIR "
             "--public-key KEY.pem")
    for notice in verification.get("notices", []):
        pdf.text(f"Note: {notice}.")
    pdf.grid(("Chain", "Extract seq", "Records"), (
        (c["chain_id"], f"{c['first_seq']}..{c['last_seq']}", c["records"])
        for c in facts["chains"]))
    return bytes(pdf.output())
