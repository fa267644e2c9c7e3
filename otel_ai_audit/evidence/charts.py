"""Charts where a reader would rather look than read: volume, overrides and drift over time,
accuracy per subgroup. Drawn with matplotlib's object API (no global pyplot state), as SVG for
the HTML report and the bundle, and as PNG for the PDF."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from otel_ai_audit.evidence.sections import part
from otel_ai_audit.evidence.window import Window, WindowError, parse_time

_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "otel-ai-audit", "font.size": 9,
          "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    svg: str
    png: bytes


def charts(sections: dict[str, Any], window: Window) -> list[Chart]:
    drawn = [_volume(sections["volume"], window), _overrides(sections["volume"], window)]
    drift = sections["drift"]["records"]
    if drift:
        drawn.append(_drift(drift, window))
    return drawn


def _render(name: str, title: str, figure: Figure) -> Chart:
    figure.tight_layout()
    with matplotlib.rc_context(_STYLE):
        svg, png = io.StringIO(), io.BytesIO()
        figure.savefig(svg, format="svg", metadata={"Date": None})
        figure.savefig(png, format="png", dpi=110)
    text = svg.getvalue()
    return Chart(name, title, text[text.index("<svg"):], png.getvalue())


def _figure() -> Figure:
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(8.0, 2.6))
        figure.add_subplot()
    return figure


def _unit(window: Window) -> tuple[str, float]:
    """The time unit the axis counts in, and its length in seconds: hours for a request of
    hours or days, minutes or seconds for shorter windows."""
    seconds = (window.end_ns - window.start_ns) / 1e9
    if seconds >= 7200:
        return "hours", 3600.0
    return ("minutes", 60.0) if seconds >= 120 else ("seconds", 1.0)


def _ticks(volume: dict[str, Any], window: Window) -> tuple[list[float], float]:
    """Bucket starts and bucket width, in the window's unit from its start."""
    width = volume["bucket_seconds"] / _unit(window)[1]
    return [index * width for index in range(volume["buckets"])], width


def _axis_label(window: Window) -> str:
    return f"{_unit(window)[0]} since {window.start[:19]}Z"


def _volume(volume: dict[str, Any], window: Window) -> Chart:
    figure = _figure()
    axes = figure.axes[0]
    x, width = _ticks(volume, window)
    low = [total - high for total, high in zip(volume["decisions"], volume["high_risk"],
                                                 strict=True)]
    axes.bar(x, volume["high_risk"], width=width * 0.9, align="edge", color="#c0392b",
             label="high risk")
    axes.bar(x, low, width=width * 0.9, align="edge", bottom=volume["high_risk"],
             color="#95a5a6", label="other")
    axes.set_ylabel("decisions")
    axes.set_xlabel(_axis_label(window))
    axes.legend(loc="upper left", frameon=False)
    return _render("volume", "Decisions over the window", figure)


def _overrides(volume: dict[str, Any], window: Window) -> Chart:
    figure = _figure()
    axes = figure.axes[0]
    x, width = _ticks(volume, window)
    axes.bar(x, volume["overrides"], width=width * 0.9, align="edge", color="#2471a3")
    axes.set_ylabel("overrides")
    axes.set_xlabel(_axis_label(window))
    return _render("overrides", "Human overrides over the window (Art. 14)", figure)


def _drift(records: list[dict[str, Any]], window: Window) -> Chart:
    figure = _figure()
    axes = figure.axes[0]
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    threshold = None
    for record in records:
        drift = part(record["event"], "drift")
        end = part(record["event"], "window").get("end") or record["event"].get("time")
        score = drift.get("psi", drift.get("score"))
        try:
            at = (parse_time(str(end)) - window.start_ns) / 1e9 / _unit(window)[1]
        except WindowError:
            continue  # a record without a readable time cannot be placed on the axis
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            series[str(drift.get("feature"))].append((at, float(score)))
            threshold = drift.get("threshold", threshold)
    for feature, points in sorted(series.items()):
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                  label=feature)
    if isinstance(threshold, (int, float)):
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1,
                     label=f"threshold {threshold}")
    axes.set_ylabel("drift score (PSI)")
    axes.set_xlabel(f"{_axis_label(window)} (end of each drift window)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", frameon=False, fontsize=7, ncol=3)
    return _render("drift", "Input drift per feature", figure)
