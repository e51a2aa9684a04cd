"""Server-rendered SVG charts: no script, no CDN; each has a title, a description and a data table by it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe pairs (Okabe-Ito) with enough contrast on white for lines and bars.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00"]
WIDTH, HEIGHT = 520, 260
LEFT, RIGHT, TOP, BOTTOM = 50, 14, 16, 52


@dataclass
class Series:
    """One named line or bar group: y values aligned with the chart's x labels."""

    name: str
    values: list[float]
    colour: str = ""
    links: list[str] = field(default_factory=list)  # drill-down per value (the data table links each number)


@dataclass
class Chart:
    """What a chart shows, in words and numbers, so the SVG and its data table agree."""

    chart_id: str
    title: str
    description: str
    x_labels: list[str]
    series: list[Series] = field(default_factory=list)
    y_label: str = ""
    limit: float | None = None  # a horizontal line: a cap or a deadline
    limit_label: str = ""
    empty_text: str = "Nothing recorded yet"


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "unbounded"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _scale(chart: Chart) -> tuple[float, float]:
    """0 to a round top (4 gridline steps of 1, 2, 2.5 or 5 x 10^k) above the data and the limit."""
    top = max([v for s in chart.series for v in s.values] + [chart.limit or 0.0])
    if top <= 0:
        return 0.0, 4.0
    raw = top * 1.05 / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if all(float(v).is_integer() for s in chart.series for v in s.values):
        step = max(1.0, math.ceil(step))  # counts: whole-number gridlines
    return 0.0, step * 4


def _empty(chart: Chart) -> bool:
    # Zero days to erase is data; zero deletions on every day is "nothing yet".
    return not chart.x_labels or (chart.limit is None and all(v == 0 for s in chart.series for v in s.values))


def _frame(chart: Chart, body: list[str]) -> SafeString:
    """Axes, title and description around the plotted marks."""
    lo, hi = _scale(chart)
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{chart.chart_id}-t {chart.chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart.chart_id}-t">{escape(chart.title)}</title>',
             f'<desc id="{chart.chart_id}-d">{escape(chart.description)}</desc>']
    for i in range(5):  # gridlines with their values
        value = lo + (hi - lo) * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="15" '
                     f'fill="#444">{_fmt(round(value, 2))}</text>')
    if chart.y_label:
        parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" font-size="15" fill="#444" '
                     f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})" text-anchor="middle">'
                     f'{escape(chart.y_label)}</text>')
    parts.extend(body)
    if _empty(chart):
        parts.append(
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
            f'font-size="14" fill="#565e66">{escape(chart.empty_text)}</text>'
        )
    if chart.limit is not None:
        y = TOP + plot_h - plot_h * (chart.limit - lo) / (hi - lo)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#a4161a" '
                     f'stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{y - 5:.1f}" text-anchor="end" font-size="15" '
                     f'fill="#a4161a">{escape(chart.limit_label)}</text>')
    parts.append(_x_labels(chart))
    parts.append(_legend(chart))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def _x(chart: Chart, i: int) -> float:
    n = max(len(chart.x_labels), 1)
    return LEFT + (WIDTH - LEFT - RIGHT) * (i + 0.5) / n


def _x_labels(chart: Chart) -> str:
    # Thin the labels so they never overlap: at most about 8 along the axis.
    step = max(1, -(-len(chart.x_labels) // 6))
    return "".join(
        f'<text x="{_x(chart, i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="15" '
        f'fill="#444">{escape(label)}</text>'
        for i, label in enumerate(chart.x_labels) if i % step == 0)


def _legend(chart: Chart) -> str:
    parts, x = [], LEFT
    for s in chart.series:
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 18}" width="12" height="12" fill="{s.colour}"/>'
            f'<text x="{x + 16}" y="{HEIGHT - 8}" font-size="15" fill="#222">{escape(s.name)}</text>'
        )
        x += 28 + 9 * len(s.name)
    return "".join(parts)


def _colour(chart: Chart) -> None:
    for i, s in enumerate(chart.series):
        s.colour = s.colour or PALETTE[i % len(PALETTE)]


def line_chart(chart: Chart) -> SafeString:
    """Lines with a dot per point (a single point still shows)."""
    _colour(chart)
    lo, hi = _scale(chart)
    plot_h = HEIGHT - TOP - BOTTOM
    body = []
    for s in chart.series:
        points = [
            (_x(chart, i), TOP + plot_h - plot_h * (v - lo) / (hi - lo)) for i, v in enumerate(s.values)
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2.5"/>')
        body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{s.colour}"/>' for x, y in points)
    return _frame(chart, body)


def bar_chart(chart: Chart) -> SafeString:
    """Grouped bars, one group per x label."""
    _colour(chart)
    lo, hi = _scale(chart)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(chart.x_labels), 1)
    bar = min(28.0, slot * 0.8 / max(len(chart.series), 1))
    body = []
    for i in range(len(chart.x_labels)):
        start = _x(chart, i) - bar * len(chart.series) / 2
        for k, s in enumerate(chart.series):
            h = plot_h * (s.values[i] - lo) / (hi - lo)
            if chart.limit is not None:
                h = max(h, 2.0)  # against a deadline, zero is a result worth seeing (erased within the day)
            body.append(f'<rect x="{start + k * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar - 2:.1f}" '
                        f'height="{h:.1f}" fill="{s.colour}"/>')
            if len(chart.x_labels) <= 12 and s.values[i]:
                body.append(
                    f'<text x="{start + k * bar + (bar - 2) / 2:.1f}" y="{TOP + plot_h - h - 4:.1f}" '
                    f'text-anchor="middle" font-size="12" fill="#222">{_fmt(round(s.values[i], 2))}</text>'
                )
    return _frame(chart, body)


def gauge(*, spent: float, reserved: float, cap: float, label: str) -> SafeString:
    """A horizontal budget bar: spent, then reserved, out of the cap."""
    width, height, pad = 600, 64, 4
    spent, reserved = (min(v, cap * 10) if math.isfinite(v) else cap * 10 for v in (spent, reserved))
    scale = (width - 2 * pad) / max(cap, spent + reserved, 1e-9)
    spent_w, reserved_w = spent * scale, reserved * scale
    left = max(cap - spent - reserved, 0.0)
    text = f"{label}: {_fmt(round(spent, 2))} spent, {_fmt(round(reserved, 2))} reserved, cap {_fmt(cap)}"
    svg = (
        f'<svg class="gauge" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(text)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="{pad}" y="8" width="{width - 2 * pad}" height="28" rx="6" '
        f'fill="#e9ecef" stroke="#6c757d"/>'
        f'<rect x="{pad}" y="8" width="{spent_w:.1f}" height="28" rx="6" fill="#0072B2"/>'
        f'<rect x="{pad + spent_w:.1f}" y="8" width="{reserved_w:.1f}" height="28" fill="#E69F00"/>'
        f'<text x="{pad}" y="56" font-size="15" fill="#222">spent {_fmt(round(spent, 2))}</text>'
        f'<text x="{width / 2:.0f}" y="56" text-anchor="middle" font-size="15" fill="#222">'
        f"reserved {_fmt(round(reserved, 2))}</text>"
        f'<text x="{width - pad}" y="56" text-anchor="end" font-size="15" fill="#222">'
        f"{_fmt(round(left, 2))} left of {_fmt(cap)}</text></svg>"
    )
    return mark_safe(svg)  # noqa: S308 - numbers and escaped text only
