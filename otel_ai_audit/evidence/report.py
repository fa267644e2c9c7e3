"""The bundle's report: one self-contained HTML page (charts inline as SVG, no scripts, no
external resources, so it opens offline years later) and the same content as a PDF drawn with
fpdf2, which needs no browser. Both draw the blocks of `content.report`, so the PDF carries
everything the page does.

Records carry free text (reasons, titles): the HTML template escapes everything but the
charts matplotlib drew; the PDF uses the core fonts, so text outside Latin-1 is replaced.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import jinja2
from fpdf import FPDF
from fpdf.fonts import FontFace

from otel_ai_audit.evidence.charts import Chart
from otel_ai_audit.evidence.content import MONO, NONE, NUM, Figure, Paragraph, Table, report

MONO_FONT = ("Courier", "", 6.5)
CELL_PADDING_MM = 2.5
MAX_WORD_MM = 30.0
"""A longer word (a hash, an id) may wrap inside its cell."""
MAX_COLUMN_MM = 95.0
KEEP_WITH_HEADING = 40
"""Space (mm) a heading needs below it, or it starts the next page (never alone at a foot)."""

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("otel_ai_audit.evidence", "templates"),
    autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(facts: dict[str, Any], sections: dict[str, Any], verification: dict[str, Any],
                charts: Sequence[Chart]) -> str:
    return _ENVIRONMENT.get_template("evidence-report.html.j2").render(
        report=report(facts, sections, verification, charts), window=facts["window"],
        none_text=NONE)


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
        if self.will_page_break(KEEP_WITH_HEADING):
            self.add_page()
        self.ln(3)
        self.set_font("Helvetica", "B", 13)
        self.multi_cell(0, 7, _latin(text), new_x="LMARGIN", new_y="NEXT")
        if refs:
            self.set_font("Helvetica", "I", 8)
            self.multi_cell(0, 4, _latin(refs), new_x="LMARGIN", new_y="NEXT")

    def paragraph(self, block: Paragraph) -> None:
        self.set_font("Helvetica", "B" if block.style == "fail" else "", size=9)
        self.multi_cell(0, 5, _latin(block.text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def grid(self, block: Table) -> None:
        """A table whose columns are as wide as their content asks (within limits), ids and
        hashes in Courier."""
        widths = self._widths(block)
        self.set_font("Helvetica", size=7)
        mono = FontFace(family=MONO_FONT[0], size_pt=MONO_FONT[2])
        with self.table(text_align="LEFT", line_height=3.6, col_widths=widths,
                        width=min(sum(widths), self.epw), align="LEFT",
                        headings_style=FontFace(emphasis="BOLD", fill_color=(244, 246, 246))
                        ) as grid:
            grid.row([_latin(cell) for cell in block.header])
            for values in block.rows:
                row = grid.row()
                for kind, cell in zip(block.kinds, values, strict=True):
                    row.cell(_latin(cell), style=mono if kind == MONO else None,
                             align="RIGHT" if kind == NUM else "LEFT")
        self.ln(2)

    def _widths(self, block: Table) -> list[float]:
        """Column widths (mm): each as wide as its text wants, if the page allows; else each
        keeps its longest word whole (up to a point: a hash may wrap) and the rest of the
        page is shared by what the columns want beyond that."""
        least, wanted = [], []
        for index, kind in enumerate(block.kinds):
            cells = [row[index] for row in block.rows]
            if kind == MONO:
                self.set_font(*MONO_FONT)
            else:
                self.set_font("Helvetica", size=7)
            words = [self.get_string_width(_latin(word)) for cell in cells
                     for word in cell.split()]
            full = [self.get_string_width(_latin(cell)) for cell in cells]
            self.set_font("Helvetica", "B", 7)
            header = _latin(block.header[index])
            words += [self.get_string_width(word) for word in header.split()]
            low = min(max(words, default=0.0), MAX_WORD_MM) + CELL_PADDING_MM
            least.append(low)
            wanted.append(max(low, min(max(full + [self.get_string_width(header)]),
                                       MAX_COLUMN_MM) + CELL_PADDING_MM))
        if sum(wanted) <= self.epw:
            return wanted
        spare = self.epw - sum(least)
        if spare <= 0:
            return [width * self.epw / sum(least) for width in least]
        extra = [want - low for want, low in zip(wanted, least, strict=True)]
        return [low + spare * more / sum(extra) for low, more in zip(least, extra, strict=True)]

    def chart(self, chart: Chart) -> None:
        self.image(io.BytesIO(chart.png), w=self.epw)
        self.set_font("Helvetica", "I", 8)
        self.multi_cell(0, 4, _latin(chart.title), new_x="LMARGIN", new_y="NEXT")
        self.ln(2)


def _latin(text: Any) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def render_pdf(facts: dict[str, Any], sections: dict[str, Any], verification: dict[str, Any],
               charts: Sequence[Chart]) -> bytes:
    """The report as PDF: the same blocks as the HTML page."""
    content = report(facts, sections, verification, charts)
    pdf = _Pdf(content.title)
    pdf.add_page()
    pdf.heading(content.title)
    pdf.paragraph(Paragraph(content.intro))
    pdf.grid(Table(tuple(card.label for card in content.cards),
                   [tuple(card.value for card in content.cards)], (NUM,) * len(content.cards)))
    for section in content.sections:
        pdf.heading(section.title, section.refs)
        for block in section.blocks:
            if isinstance(block, Figure):
                pdf.chart(block.chart)
            elif isinstance(block, Table):
                pdf.grid(block)
            else:
                pdf.paragraph(block)
    return bytes(pdf.output())
