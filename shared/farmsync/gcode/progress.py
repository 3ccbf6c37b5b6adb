"""The live progress of ``farmsync gcode -g``: one bar per printer and one for the whole run.

Bytes count only once the printer has answered for them. The back ends report bytes as they are handed to the
socket, and the kernel's buffers (several MB on a LAN) swallow a whole file in a blink: a bar fed that way showed
``4.0/4.0 MB 155 MB/s`` after one second while a 1 MB/s printer needed four. So the bar moves when an upload's
request finishes (the printer has stored the file and said so), the rate is those bytes over the time spent,
and the ETA follows from that rate. While a file is on its way the row names it. Sizes are binary (KiB, MiB),
like the reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column
from rich.text import Text

from farmsync.gcode.engine import MirrorListener
from farmsync.gcode.plan import Action, Op, Plan
from farmsync.gcode.report import ActionReport, ActionResult, PrinterReport
from farmsync.human import human_duration, human_rate, human_size

OVERALL = "all printers"


@dataclass
class Tally:
    """Bytes the printer confirmed, out of the bytes planned, and when the first upload began."""

    planned: int = 0
    confirmed: int = 0
    started: float | None = None
    finished: float | None = None

    def rate(self, now: float) -> float | None:
        if self.started is None or not self.confirmed:
            return None
        elapsed = (self.finished or now) - self.started
        return self.confirmed / elapsed if elapsed > 0 else None

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        if self.finished is not None:
            return 0.0
        return None if rate is None else (self.planned - self.confirmed) / rate


@dataclass
class _Row:
    task: Any
    tally: Tally = field(default_factory=Tally)


def human_pair(done: int, total: int) -> str:
    """``1.5/4.0 MiB``: both figures in the total's unit, so the pair reads at a glance."""
    unit, scale = "B", 1
    for name, factor in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if total >= factor:
            unit, scale = name, factor
    if scale == 1:
        return f"{done}/{total} B"
    return f"{done / scale:.1f}/{total / scale:.1f} {unit}"


class BytesColumn(ProgressColumn):
    """``1.5/4.0 MiB 1.0 MiB/s ETA 3 s`` from the row's tally (not from rich's socket-fed speed)."""

    def render(self, task: Task) -> Text:
        tally = task.fields["tally"]
        now = time.monotonic()
        text = f"{human_pair(tally.confirmed, tally.planned)} {human_rate(tally.rate(now))}"
        if tally.finished is None:
            text += f" ETA {human_duration(tally.eta(now))}"
        return Text(text)


class FarmProgress(Progress):
    """rich's Progress redraws every row each time a row is added (``add_task`` calls ``refresh``): at 64
    printers that is 65 redraws of up to 65 rows before the first byte goes out. Here only the live display's
    own timer (on a terminal) and its final render draw the bars."""

    def refresh(self) -> None:
        return None


class ProgressDisplay(MirrorListener):
    """Per-printer and overall progress on stderr (so ``--json`` stdout stays clean)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = FarmProgress(
            TextColumn("[bold]{task.fields[printer]}", table_column=Column(max_width=16, no_wrap=True)),
            BarColumn(bar_width=10),
            BytesColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
            console=self.console,
            refresh_per_second=4,
            # not a terminal (a log, cron): nothing to animate, the table is written once when the run ends
            auto_refresh=self.console.is_terminal,
        )
        self.rows: dict[str, _Row] = {}
        tally = Tally()
        self.overall = _Row(self.bars.add_task("", total=None, printer=OVERALL, tally=tally), tally)

    def __enter__(self) -> ProgressDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    # --- what the bars show, for tests and for the rows -----------------------------------------------

    def confirmed(self, printer: str | None = None) -> int:
        """Bytes shown as sent: for one printer, or for the whole run."""
        row = self.overall if printer is None else self.rows.get(printer)
        return row.tally.confirmed if row else 0

    def _row(self, printer: str) -> _Row:
        if printer not in self.rows:
            tally = Tally()
            task = self.bars.add_task("", total=None, printer=printer, tally=tally)
            self.rows[printer] = _Row(task, tally)
        return self.rows[printer]

    def _refresh(self, row: _Row, description: str | None = None) -> None:
        total = row.tally.planned or None
        fields: dict[str, Any] = {"total": total, "completed": row.tally.confirmed}
        if description is not None:
            fields["description"] = description
        self.bars.update(row.task, **fields)

    # --- MirrorListener -------------------------------------------------------------------------------

    def printer_started(self, printer: str) -> None:
        self.overall.tally.finished = None  # a printer held back by --concurrency starts late
        self._refresh(self._row(printer), "[dim]connecting…")

    def printer_planned(self, printer: str, plan: Plan, *, dry_run: bool) -> None:
        row = self._row(printer)
        # added, not set: a printer's early replaces are planned first, the rest after its listing
        row.tally.planned += plan.upload_bytes
        self.overall.tally.planned += plan.upload_bytes
        writes = len(plan.writes())
        self._refresh(row, f"{writes} change(s) planned" if writes else "in sync")
        self._refresh(self.overall)

    def action_started(self, printer: str, action: Action) -> None:
        row = self._row(printer)
        now = time.monotonic()
        for tally in (row.tally, self.overall.tally):
            if tally.started is None and action.op in (Op.UPLOAD, Op.REPLACE):
                tally.started = now
        verb = {"upload": "sending", "replace": "replacing", "delete": "deleting"}.get(action.op.value)
        size = f" ({human_size(action.size)})" if action.size and action.op in (Op.UPLOAD, Op.REPLACE) else ""
        self._refresh(row, f"{verb or action.op.value} {escape(action.path.rpartition('/')[2])}{size}")

    def progress(self, printer: str, action: Action, nbytes: int) -> None:
        """Bytes handed to the socket: not shown, since the printer may not have them yet."""

    def action_finished(self, printer: str, action: Action, report: ActionReport) -> None:
        row = self._row(printer)
        if action.op in (Op.UPLOAD, Op.REPLACE):
            size = action.size or 0
            if report.result is ActionResult.OK:
                row.tally.confirmed += size
                self.overall.tally.confirmed += size
            else:  # not sent after all: the bar can still reach its end
                row.tally.planned -= size
                self.overall.tally.planned -= size
        description = None
        if report.result is ActionResult.FAILED:
            description = f"[red]failed {escape(action.path.rpartition('/')[2])}"
        self._refresh(row, description)
        self._refresh(self.overall)

    def printer_finished(self, report: PrinterReport) -> None:
        row = self._row(report.name)
        row.tally.finished = time.monotonic()
        style = {"synced": "green", "deferred": "yellow", "failed": "red"}.get(report.status.value, "")
        text = report.status.value if report.status.value != "deferred" else f"deferred ({report.state})"
        self._refresh(row, f"[{style}]{escape(text)}[/]" if style else escape(text))
        if all(r.tally.finished is not None for r in self.rows.values()):
            self.overall.tally.finished = time.monotonic()
            self._refresh(self.overall)
