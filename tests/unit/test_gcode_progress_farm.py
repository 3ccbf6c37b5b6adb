"""The progress display of a large farm costs a fixed number of redraws, not one per printer added (#17).

rich's Progress redraws every row each time a row is added, so 64 printers meant 65 redraws of up to 65 rows
before the first byte went out, on the event loop that feeds every upload. Off a terminal (cron, a log file,
the benchmarks) nothing is animated at all: the table is written once, when the run ends.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from farmsync.gcode.progress import ProgressDisplay

PRINTERS = 64


def counted(display: ProgressDisplay) -> list[int]:
    """Count the full-table renders of ``display`` (every redraw builds the rows' table once)."""
    calls = [0]
    build = display.bars.make_tasks_table

    def counting(tasks: Any) -> Any:
        calls[0] += 1
        return build(tasks)

    display.bars.make_tasks_table = counting  # type: ignore[method-assign]
    return calls


def test_adding_printers_does_not_redraw_the_table_each_time() -> None:
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, width=80))
    renders = counted(display)
    with display:
        for index in range(PRINTERS):
            display.printer_started(f"P{index:02d}")
        during = renders[0]
    assert during <= 1  # the display's start only; before: one redraw per printer added
    assert renders[0] <= during + 1  # and the one written at the end
    text = out.getvalue()
    assert "P00" in text and f"P{PRINTERS - 1}" in text  # the final table still lists every printer


def test_a_terminal_still_gets_live_bars() -> None:
    display = ProgressDisplay(Console(file=io.StringIO(), width=80, force_terminal=True))
    assert display.bars.live.auto_refresh
    off = ProgressDisplay(Console(file=io.StringIO(), width=80))
    assert not off.bars.live.auto_refresh
