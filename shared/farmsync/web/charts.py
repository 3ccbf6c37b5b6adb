"""Small charts as inline SVG, drawn on the server: no script, no library, nothing fetched.

This module computes the geometry; templates/charts.html draws it with Jinja2's autoescape, so a label (a
material's or a printer's name) can never become markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568")
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 600, 180, 40, 22, 10


def days_back(today: dt.date, count: int = 30) -> list[dt.date]:
    """The last ``count`` days, oldest first, ending today."""
    return [today - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]


def day_of(epoch: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).date()


def nice_max(value: float) -> float:
    """A round number at or above ``value`` for the axis top (1, 2, 5 × 10ⁿ)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def stacked_days(title: str, days: list[dt.date], series: dict[str, dict[dt.date, float]], unit: str) -> str:
    """Vertical bars per day, one colour per series (stacked), with a legend; each bar says its value on hover."""
    totals = [sum(values.get(day, 0.0) for values in series.values()) for day in days]
    top = nice_max(max(totals, default=0.0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(len(days), 1)
    bars, ticks = [], []
    for i, day in enumerate(days):
        x = PAD_LEFT + i * slot + slot * 0.15
        y: float = PAD_TOP + plot_h
        for n, (name, values) in enumerate(series.items()):
            value = values.get(day, 0.0)
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            label = f"{day.isoformat()}: {number(value)} {unit}" + (f" {name}" if name else "")
            bars.append(
                {"x": x, "y": y, "width": slot * 0.7, "height": h, "colour": colour(n), "label": label}
            )
        last = i == len(days) - 1
        if last or (i % 7 == 0 and i < len(days) - 4):  # every week, and today at the right edge
            anchor, at = ("end", x + slot * 0.7) if last else ("middle", x + slot * 0.35)
            ticks.append({"x": at, "anchor": anchor, "text": day.strftime("%d %b")})
    chart = {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "left": PAD_LEFT,
        "top": PAD_TOP,
        "bottom": PAD_TOP + plot_h,
        "top_label": number(top),
        "bars": bars,
        "ticks": ticks,
        "legend": [{"name": name, "colour": colour(n)} for n, name in enumerate(series) if name],
    }
    return _render("stacked_days", chart)


def horizontal(title: str, rows: Iterable[tuple[str, float, str]]) -> str:
    """One bar per row (name, value, value as text), longest first."""
    rows = sorted(rows, key=lambda r: -r[1])
    top = max((r[1] for r in rows), default=0.0) or 1.0
    bar_h, label_w = 22, 150
    bars = []
    for i, (name, value, text) in enumerate(rows):
        y = 3 + i * bar_h
        w = max((WIDTH - label_w - 110) * value / top, 1)
        bars.append({"name": name, "text": text, "y": y, "width": w})
    chart = {
        "title": title,
        "width": WIDTH,
        "height": max(len(rows), 1) * bar_h + 6,
        "label_width": label_w,
        "bar_height": bar_h - 8,
        "colour": PALETTE[0],
        "bars": bars,
    }
    return _render("horizontal", chart)


def colour(n: int) -> str:
    return PALETTE[n % len(PALETTE)]


def _render(macro: str, chart: dict[str, Any]) -> str:
    """The chart through its macro in templates/charts.html: markup Jinja2 escaped, which the page includes as
    such (a macro's result is ``Markup``, so the page does not escape it twice)."""
    from farmsync.web.dashboard import environment

    drawn: str = getattr(environment().get_template("charts.html").module, macro)(chart)
    return drawn


def size_text(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
