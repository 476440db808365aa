"""Inline SVG bar charts for the HTML report: no script, no fonts or images fetched.

Each chart scales with its container (``viewBox``, width 100%) and names itself for screen
readers. Labels are escaped here; the result is safe markup for the template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 28, 48
TICKS = 4
MAX_LABELS = 8


@dataclass(frozen=True)
class Series:
    """One set of bars: a name for the legend, a CSS class for the colour, a value per label."""

    name: str
    css: str
    values: Sequence[float]


def bar_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """A grouped vertical bar chart of ``series`` over ``labels``, as an ``<svg>`` element."""
    top_value = _nice_max(max((v for s in series for v in s.values), default=0.0))
    if 0 < top_value < TICKS:
        top_value = float(TICKS)  # whole numbers on every tick of a small count
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(TICKS + 1):
        value = top_value * tick / TICKS
        y = TOP + plot_h - plot_h * tick / TICKS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(value)}</text>'
        )
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    every = max(1, math.ceil(len(labels) / MAX_LABELS))
    for index, label in enumerate(labels):
        x0 = LEFT + slot * index + slot * 0.1
        for number, item in enumerate(series):
            value = item.values[index]
            h = plot_h * value / top_value if top_value else 0.0
            x, y = x0 + bar_w * number, TOP + plot_h - h
            parts.append(
                f'<rect class="bar {escape(item.css)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"><title>{escape(item.name)} {escape(label)}: {_short(value)}</title></rect>'
            )
        if index % every == 0:
            cx = LEFT + slot * (index + 0.5)
            parts.append(
                f'<text class="label" x="{cx:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    for number, item in enumerate(series):
        x = LEFT + number * 150
        parts.append(f'<rect class="bar {escape(item.css)}" x="{x}" y="6" width="12" height="12"/>')
        parts.append(f'<text class="legend" x="{x + 16}" y="16">{escape(item.name)}</text>')
    if top_value == 0:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">no data in this range</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (0 stays 0)."""
    if value <= 0:
        return 0.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    return next(m * scale for m in (1, 2, 5, 10) if m * scale >= value)


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
