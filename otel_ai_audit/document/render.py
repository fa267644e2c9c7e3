"""Model cards as files: Markdown (for review in a repository), HTML (to read or print, with
its charts embedded), JSON (the card's data, for tools) and the charts as PNG files (which the
Markdown links). Templates are Jinja2 files shipped in the package."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jinja2

from otel_ai_audit.document.card import ModelCard
from otel_ai_audit.document.charts import CHART_FILES, draw_charts
from otel_ai_audit.monitoring.metrics import Estimate

TEMPLATED = ("model-card.md", "model-card.html")
"""Files rendered from `templates/<name>.j2`; `model-card.json` is the card's data as is."""
METRIC_NAMES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall",
                "f1": "F1", "roc_auc": "ROC AUC"}


def format_number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_estimate(estimate: Estimate | None) -> str:
    """`0.853 [0.847, 0.858]`; `n/a` when undefined."""
    if estimate is None:
        return "n/a"
    low, high = format_number(estimate.low), format_number(estimate.high)
    return f"{format_number(estimate.value)} [{low}, {high}]"


def _json(value: Any) -> str:
    """A recorded value as JSON, as it stands in the record (the HTML template escapes it)."""
    return json.dumps(value, ensure_ascii=False)


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("otel_ai_audit.document", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENVIRONMENT.filters.update(number=format_number, estimate=format_estimate, json=_json,
                            cell=_cell)
_ENVIRONMENT.globals.update(metric_names=METRIC_NAMES)


def render_model_card(card: ModelCard) -> dict[str, str | bytes]:
    """File name to content: Markdown, HTML and JSON (text), and the charts (PNG bytes)."""
    charts = draw_charts(card)
    embedded = {name: f"data:image/png;base64,{base64.b64encode(charts[file]).decode()}"
                for name, file in CHART_FILES.items() if file in charts}
    linked = {name: file for name, file in CHART_FILES.items() if file in charts}
    rendered: dict[str, str | bytes] = {
        name: _ENVIRONMENT.get_template(f"{name}.j2").render(
            card=card, charts=embedded if name.endswith(".html") else linked)
        for name in TEMPLATED}
    rendered["model-card.json"] = json.dumps(card.to_json(), indent=2, sort_keys=True,
                                             ensure_ascii=False, allow_nan=False) + "\n"
    return {**rendered, **charts}


def write_model_card(card: ModelCard, out: str | Path) -> dict[str, Path]:
    """Write the card's files into the folder `out` (created); file name to path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, content in render_model_card(card).items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written[name] = path
    return written
