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
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from otel_ai_audit.evidence.sections import has_p_value, part
from otel_ai_audit.evidence.window import WindowError, parse_time, time_unit
from otel_ai_audit.record.schema import DESCRIBED_TIME

_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "otel-ai-audit", "font.size": 9,
          "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    svg: str
    png: bytes


TOP_FEATURES = 6
"""Features named in a drift chart's legend (the most drifted); the others are drawn in grey
and listed in the report's table."""
P_VALUE_FLOOR = 1e-10
"""A p-value of 0 (or below this) is drawn here: a log axis has no 0."""
METHOD_LABELS = {"psi": "PSI", "jensenshannon": "Jensen-Shannon distance",
                 "ks": "Kolmogorov-Smirnov p-value", "chi2": "chi-squared p-value"}


def charts(sections: dict[str, Any]) -> list[Chart]:
    """The report's charts; a chart with nothing to show is not drawn (the report says "none
    in this window" instead)."""
    volume = sections["volume"]
    axis = _Axis.of(volume)
    drawn = []
    if any(volume["decisions"]):
        drawn.append(_volume(volume, axis))
    if any(volume["overrides"]):
        drawn.append(_overrides(volume, axis))
    drift = sections["drift"]
    if drift["features"]:
        drawn.append(_drift(drift["records"], drift["features"], axis))
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


@dataclass(frozen=True)
class _Axis:
    """The time axis of the charts (`volume.axis`): recorded time over the window, or the
    time the records describe."""

    start: str
    start_ns: int
    seconds: float
    described: bool

    @classmethod
    def of(cls, volume: dict[str, Any]) -> _Axis:
        axis = volume["axis"]
        return cls(axis["start"], parse_time(axis["start"]), axis["seconds"],
                   axis["time"] == "described")

    @property
    def unit(self) -> tuple[str, float]:
        return time_unit(self.seconds)

    def position(self, time: str) -> float:
        """Where `time` lies on the axis, in its unit."""
        return (parse_time(time) - self.start_ns) / 1e9 / self.unit[1]

    def label(self) -> str:
        kind = "described time (as the records say)" if self.described else "recorded time"
        return f"{self.unit[0]} since {self.start[:16]}Z, {kind}"


def _ticks(volume: dict[str, Any], axis: _Axis) -> tuple[list[float], float]:
    """Bucket starts and bucket width, in the axis' unit from its start."""
    width = volume["bucket_seconds"] / axis.unit[1]
    return [index * width for index in range(volume["buckets"])], width


def _counts_axis(axes: Any, label: str) -> None:
    """A count axis: from 0, whole numbers only."""
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(label)


def _volume(volume: dict[str, Any], axis: _Axis) -> Chart:
    figure = _figure()
    axes = figure.axes[0]
    x, width = _ticks(volume, axis)
    low = [total - high for total, high in zip(volume["decisions"], volume["high_risk"],
                                                 strict=True)]
    axes.bar(x, volume["high_risk"], width=width * 0.9, align="edge", color="#c0392b",
             label="high risk")
    axes.bar(x, low, width=width * 0.9, align="edge", bottom=volume["high_risk"],
             color="#95a5a6", label="other")
    _counts_axis(axes, "decisions")
    axes.set_xlabel(axis.label())
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _render("volume", "Decisions over time", figure)


def _overrides(volume: dict[str, Any], axis: _Axis) -> Chart:
    figure = _figure()
    axes = figure.axes[0]
    x, width = _ticks(volume, axis)
    axes.bar(x, volume["overrides"], width=width * 0.9, align="edge", color="#2471a3")
    _counts_axis(axes, "overrides")
    axes.set_xlabel(axis.label())
    return _render("overrides", "Human overrides over time (Art. 14)", figure)


def _drift(records: list[dict[str, Any]], features: list[dict[str, Any]],
           axis: _Axis) -> Chart:
    """One panel per method, each on its own scale with its own threshold: a distance (PSI,
    Jensen-Shannon) drifts at or above it, a p-value (KS, chi-squared, log axis) below it.
    The most drifted features of each panel are named; the rest are grey."""
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        drift = part(record["event"], "drift")
        end = part(record["event"], "window").get("end") or record["event"].get("time")
        if axis.described:
            end = record["event"].get(DESCRIBED_TIME)
        score = drift.get("score")
        try:
            at = axis.position(str(end))
        except WindowError:
            continue  # a record without a readable time cannot be placed on the axis
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            version = str(part(record["event"], "model").get("version"))
            series[(str(drift.get("method")), version, str(drift.get("feature")))].append(
                (at, float(score)))
    methods = sorted({entry["method"] for entry in features})
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(8.0, 0.6 + 2.3 * len(methods)))
        panels = figure.subplots(len(methods), 1, squeeze=False, sharex=True)[:, 0]
    for axes, method in zip(panels, methods, strict=True):
        ranked = [entry for entry in features if entry["method"] == method]
        named = ranked[:TOP_FEATURES]
        versions = len({entry["version"] for entry in ranked}) > 1
        p_value = has_p_value(method)
        for entry in ranked[::-1]:  # the most drifted drawn last, on top
            points = sorted(series.get((method, entry["version"], entry["feature"]), []))
            x = [p[0] for p in points]
            y = [max(p[1], P_VALUE_FLOOR) if p_value else p[1] for p in points]
            if entry in named:
                label = entry["feature"] + (f" (v{entry['version']})" if versions else "")
                axes.plot(x, y, marker="o", markersize=3, linewidth=1.2, label=label, zorder=3)
            else:
                axes.plot(x, y, color="#bfc9ca", linewidth=0.8, zorder=2)
        threshold = ranked[0]["threshold"]
        rule = f"drifted below {threshold:g}" if p_value else f"drifted at {threshold:g} or more"
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1,
                     label=f"threshold ({rule})")
        if p_value:
            axes.set_yscale("log")
        else:
            axes.set_ylim(bottom=0)
        axes.set_ylabel(METHOD_LABELS.get(method, method) + (" (log)" if p_value else ""),
                        fontsize=8)
        handles, labels = axes.get_legend_handles_labels()
        rest = len(ranked) - len(named)
        if rest:
            handles.append(Line2D([], [], color="#bfc9ca", linewidth=0.8))
            labels.append(f"{rest} other feature(s): see the table")
        axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                    frameon=False, fontsize=7)
    panels[-1].set_xlabel(f"{axis.label()}\nat the end of each drift window")
    return _render("drift", "Input drift per feature, one panel per method (red: its threshold)",
                   figure)
