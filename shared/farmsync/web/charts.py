"""Small charts as inline SVG, drawn on the server: no script, no library, nothing fetched.

Every label goes through :func:`html.escape`; the result is markup the page template includes as is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from html import escape

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
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + plot_h}" class="axis"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" class="tick" text-anchor="end">{number(top)}</text>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
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
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(label)}</title></rect>'
            )
        last = i == len(days) - 1
        if last or (i % 7 == 0 and i < len(days) - 4):  # every week, and today at the right edge
            anchor, at = ("end", x + slot * 0.7) if last else ("middle", x + slot * 0.35)
            parts.append(
                f'<text x="{at:.1f}" y="{HEIGHT - 6}" class="tick" text-anchor="{anchor}">'
                f"{day.strftime('%d %b')}</text>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{escape(name)}</span>'
        for n, name in enumerate(series)
        if name
    )
    return "".join(parts) + (f'<div class="legend">{legend}</div>' if legend else "")


def horizontal(title: str, rows: Iterable[tuple[str, float, str]]) -> str:
    """One bar per row (name, value, value as text), longest first."""
    rows = sorted(rows, key=lambda r: -r[1])
    top = max((r[1] for r in rows), default=0.0) or 1.0
    bar_h, label_w = 22, 150
    height = max(len(rows), 1) * bar_h + 6
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (name, value, text) in enumerate(rows):
        y = 3 + i * bar_h
        w = (WIDTH - label_w - 110) * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" class="tick" text-anchor="end">{escape(name[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{bar_h - 8}" fill="{PALETTE[0]}">'
            f"<title>{escape(f'{name}: {text}')}</title></rect>"
            f'<text x="{label_w + max(w, 1) + 6:.1f}" y="{y + 15}" class="tick">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def size_text(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
