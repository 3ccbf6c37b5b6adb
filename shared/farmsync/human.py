"""How values are shown to people on a terminal: sizes, rates, durations, times, and the console itself.

One place so every command speaks the same units (binary sizes: KiB, MiB) and shows times the same way (local
time, or relative to now), while ``--json`` keeps ISO 8601 with a zone for scripts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def human_size(size: int | None) -> str:
    """``512 B``, ``26.4 KiB``, ``3.9 MiB``: binary units everywhere, never MB next to MiB."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def counts_text(counts: dict[str, int] | None, empty: str = "nothing to do") -> str:
    """``9 synced, 2 failed`` from ``{"synced": 9, "failed": 2, "parked": 0}``: zero counts left out."""
    return ", ".join(f"{v} {k}" for k, v in (counts or {}).items() if v) or empty


def human_rate(bytes_per_second: float | None) -> str:
    """``1.0 MiB/s``, in the same units as :func:`human_size`; ``–`` when not known yet."""
    if not bytes_per_second:
        return "–"
    return f"{human_size(int(bytes_per_second))}/s"


def human_duration(seconds: float | None) -> str:
    """``0.4 s``, ``42 s``, ``3 min 05 s``, ``1 h 02 min``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def parse_time(value: Any) -> datetime | None:
    """A datetime from what the store or an API holds: datetime, epoch seconds or ISO 8601 (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso_time(value: Any) -> str | None:
    """ISO 8601 with a zone (``2026-12-06T07:10:00+00:00``) for JSON readers; None stays None."""
    moment = parse_time(value)
    return moment.isoformat() if moment else None


def with_iso_times(value: Any, *keys: str) -> Any:
    """A stored dict with its epoch-second times (``at`` unless named) as ISO 8601 with a zone, for JSON readers.

    The store keeps epoch seconds (cheap to compare); what a route or ``--json`` shows is ISO 8601. Anything that
    is not a dict passes through unchanged.
    """
    if not isinstance(value, dict):
        return value
    return {**value, **{k: iso_time(value[k]) for k in keys or ("at",) if k in value}}


def human_time(value: Any, now: datetime | None = None) -> str:
    """``in 4 min (07:14)``, ``2 h ago (05:10)``, or a local date for anything over a day away."""
    moment = parse_time(value)
    if moment is None:
        return "never" if value in (None, "") else str(value)
    now = now or datetime.now(UTC)
    local = moment.astimezone()
    delta = (moment - now).total_seconds()
    if abs(delta) >= 86400:
        return local.strftime("%Y-%m-%d %H:%M")
    clock = local.strftime("%H:%M:%S" if abs(delta) < 60 else "%H:%M")
    if abs(delta) < 1:
        return f"now ({clock})"
    span = human_duration(abs(delta))
    return f"in {span} ({clock})" if delta > 0 else f"{span} ago ({clock})"


def report_console(**kwargs: Any) -> Console:
    """A rich console for a command's report on stdout.

    On a terminal it is the terminal's width; piped (cron mail, ``| less``) it is 160 columns unless ``COLUMNS``
    says otherwise, so a pipe gets no narrower tables than it needs and a test can ask for exactly 80.
    """
    from rich.console import Console

    console = Console(**kwargs)
    if not console.is_terminal and "width" not in kwargs and not os.environ.get("COLUMNS"):
        console = Console(width=max(console.width, 160), **kwargs)
    return console
