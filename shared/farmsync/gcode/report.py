"""The result of a mirror run (pydantic, the same shape for ``--json``) and how it is shown to people.

Exit-code policy (:meth:`MirrorReport.exit_code`):

- 0 when nothing failed. A busy printer is *deferred*, not failed: on a farm some printers are always printing,
  and a cron job that runs every hour will catch them on a later run, so it must not alarm anyone.
- 2 when any printer or any action failed, when a source file had to be left out (unsafe name, unreadable), or
  when *every* selected printer was deferred: then the run changed nothing anywhere, which a scheduler should
  notice (an all-busy farm all night, or printers stuck in ATTENTION, deserves a look).
- 1 is for usage and configuration errors; the CLI returns it before any report exists.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, computed_field

from farmsync.human import human_duration, human_rate, human_size

if TYPE_CHECKING:  # rich is imported where a table is drawn: a --json run or a tick never loads it
    from rich.console import Console
    from rich.table import Table

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_PARTIAL = 2


class ActionResult(StrEnum):
    PLANNED = "planned"  # dry run: would be done
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # unchanged, read-only, refused by the guard, or not attempted after a fatal error


class PrinterOutcome(StrEnum):
    SYNCED = "synced"
    DEFERRED = "deferred"  # not idle (and --ignore-state not given): not touched
    FAILED = "failed"  # unreachable, misconfigured, or at least one action failed
    DRY_RUN = "dry_run"


class ActionReport(BaseModel):
    op: str
    path: str
    size: int | None = None
    result: ActionResult
    reason: str = ""
    error: str | None = None
    seconds: float | None = None
    notes: list[str] = Field(default_factory=list)


class PrinterReport(BaseModel):
    name: str
    kind: str | None = None
    state: str | None = None
    status: PrinterOutcome
    destination: str = ""
    actions: list[ActionReport] = Field(default_factory=list)
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)

    def count(self, *, op: str | None = None, result: ActionResult | None = None) -> int:
        return sum(
            1 for a in self.actions if (op is None or a.op == op) and (result is None or a.result is result)
        )

    @property
    def failures(self) -> list[ActionReport]:
        return [a for a in self.actions if a.result is ActionResult.FAILED]

    @property
    def bytes_uploaded(self) -> int:
        return sum(
            a.size or 0 for a in self.actions if a.op in ("upload", "replace") and a.result is ActionResult.OK
        )


class MirrorReport(BaseModel):
    dry_run: bool
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    printers: list[PrinterReport] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # source files left out, for every printer
    notes: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's own form; mypy refuses decorated properties
    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 2 on any failure or when every selected printer was deferred."""
        if self.problems or any(p.status is PrinterOutcome.FAILED for p in self.printers):
            return EXIT_PARTIAL
        if self.printers and all(p.status is PrinterOutcome.DEFERRED for p in self.printers):
            return EXIT_PARTIAL
        return EXIT_OK

    def printer(self, name: str) -> PrinterReport:
        return next(p for p in self.printers if p.name == name)


# --- rendering -------------------------------------------------------------------------------------------
# Laid out for 80 columns: few columns, long cells wrap (overflow="fold") instead of shrinking to "print…", and
# printers with the same plan share one table that names them all.

OP_STYLE = {
    "upload": "green",
    "replace": "yellow",
    "delete": "red",
    "delete_folder": "red",
    "skip": "dim",
}
RESULT_STYLE = {"planned": "cyan", "ok": "green", "failed": "bold red", "skipped": "dim"}
STATUS_STYLE = {"synced": "green", "deferred": "yellow", "failed": "bold red", "dry_run": "cyan"}
STATUS_TEXT = {"dry_run": "dry run"}
OP_TEXT = {"delete_folder": "rmdir"}


def _shown(printer: PrinterReport, verbose: bool) -> list[ActionReport]:
    return [a for a in printer.actions if verbose or a.op != "skip" or a.result is ActionResult.FAILED]


def _rows(printer: PrinterReport, *, dry_run: bool, verbose: bool) -> tuple[tuple[str, ...], ...]:
    """The cells of one printer's table, as plain markup: equal rows mean an equal plan."""
    from rich.markup import escape

    rows = []
    for action in _shown(printer, verbose):
        cells = [
            f"[{OP_STYLE.get(action.op, '')}]{OP_TEXT.get(action.op, action.op)}[/]",
            escape(action.path),
            human_size(action.size),
        ]
        if not dry_run:
            cells.append(f"[{RESULT_STYLE[action.result.value]}]{action.result.value}[/]")
        if verbose and not dry_run:
            cells.append("" if action.seconds is None else f"{action.seconds:.1f} s")
        why = action.error or action.reason
        cells.append(escape(why) if not action.error else f"[red]{escape(why)}[/]")
        rows.append(tuple(cells))
    return tuple(rows)


def printer_table(
    printers: list[PrinterReport], rows: tuple[tuple[str, ...], ...], *, dry_run: bool, verbose: bool
) -> Table:
    """The actions of one printer, or of several printers with the same plan (named together in the title)."""
    from rich.markup import escape
    from rich.table import Table

    first = printers[0]
    where = "/" + first.destination if first.destination else "/ (storage root)"
    names = ", ".join(escape(p.name) for p in printers)
    title = f"[bold]{names}[/] → {escape(where)}"
    if len(printers) == 1:
        title = f"[bold]{names}[/] ({first.kind or '?'}, {escape(first.state or 'state unknown')}) → {escape(where)}"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("action", no_wrap=True)
    table.add_column("path", overflow="fold", ratio=3)
    table.add_column("size", justify="right", no_wrap=True)
    if not dry_run:
        table.add_column("result", no_wrap=True)
    if verbose and not dry_run:
        table.add_column("time", justify="right", no_wrap=True)
    table.add_column("why", overflow="fold", ratio=2)
    for cells in rows:
        table.add_row(*cells)
    hidden = len(first.actions) - len(rows)
    if hidden:
        table.caption = f"{hidden} unchanged or skipped file(s) not shown (--verbose lists them)"
    return table


def render_report(console: Console, report: MirrorReport, *, verbose: bool = False) -> None:
    """Action tables (dry run: what would happen; printers with one plan share a table), then the summary."""
    from rich.markup import escape

    groups: dict[tuple[str, tuple[tuple[str, ...], ...]], list[PrinterReport]] = {}
    for printer in report.printers:
        if printer.status is PrinterOutcome.DEFERRED or (printer.error and not printer.actions):
            continue
        if not printer.actions:
            console.print(f"[bold]{escape(printer.name)}[/]: nothing under the destination, nothing to do")
            continue
        rows = _rows(printer, dry_run=report.dry_run, verbose=verbose)
        if not rows:
            console.print(
                f"[bold]{escape(printer.name)}[/]: in sync ({len(printer.actions)} file(s) unchanged)"
            )
            continue
        groups.setdefault((printer.destination, rows), []).append(printer)
    for (_, rows), printers in groups.items():
        console.print(printer_table(printers, rows, dry_run=report.dry_run, verbose=verbose))
    render_summary(console, report)


def _changes(p: PrinterReport, counted: ActionResult) -> str:
    parts = []
    for op, word in (
        ("upload", "upload"),
        ("replace", "replace"),
        ("delete", "delete"),
        ("delete_folder", "rmdir"),
    ):
        n = p.count(op=op, result=counted)
        if n:
            parts.append(f"{n} {word}")
    skipped = p.count(op="skip")
    if skipped:
        parts.append(f"{skipped} unchanged")
    if p.failures:
        parts.append(f"[bold red]{len(p.failures)} failed[/]")
    return ", ".join(parts) or "–"


def totals_line(report: MirrorReport) -> str:
    """Files, bytes, time and throughput of the whole run (or what a dry run would send)."""
    printers = [p for p in report.printers if p.status is not PrinterOutcome.DEFERRED]
    if report.dry_run:
        uploads = [
            a
            for p in printers
            for a in p.actions
            if a.op in ("upload", "replace") and a.result is ActionResult.PLANNED
        ]
        deletes = sum(p.count(op="delete", result=ActionResult.PLANNED) for p in printers)
        size = sum(a.size or 0 for a in uploads)
        return f"would send {len(uploads)} file(s), {human_size(size)}, to {len(printers)} printer(s)" + (
            f" and delete {deletes} file(s)" if deletes else ""
        )
    files = sum(
        1
        for p in printers
        for a in p.actions
        if a.op in ("upload", "replace") and a.result is ActionResult.OK
    )
    sent = sum(p.bytes_uploaded for p in printers)
    deletes = sum(p.count(op="delete", result=ActionResult.OK) for p in printers)
    seconds = (report.finished_at - report.started_at).total_seconds() if report.finished_at else None
    rate = sent / seconds if seconds and sent else None
    line = f"sent {files} file(s), {human_size(sent)}, to {len(printers)} printer(s) in {human_duration(seconds)}"
    if rate:
        line += f" ({human_rate(rate)})"
    if deletes:
        line += f"; deleted {deletes} file(s)"
    return line


def render_summary(console: Console, report: MirrorReport) -> None:
    """One row per printer, a totals line, then every failure, deferral and problem on its own line."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="dry run: nothing was changed (add -g/--go to apply)" if report.dry_run else "summary",
        title_justify="left",
    )
    table.add_column("printer", overflow="fold", ratio=2)
    table.add_column("state", overflow="fold", ratio=1)
    table.add_column("result", no_wrap=True)
    table.add_column("changes", overflow="fold", ratio=3)
    if not report.dry_run:
        table.add_column("sent", justify="right", no_wrap=True)
    counted = ActionResult.PLANNED if report.dry_run else ActionResult.OK
    for p in report.printers:
        status = STATUS_TEXT.get(p.status.value, p.status.value)
        row = [
            f"{escape(p.name)} [dim]{p.kind or ''}[/]",
            escape(p.state or ""),
            f"[{STATUS_STYLE[p.status.value]}]{status}[/]",
            _changes(p, counted) if p.status is not PrinterOutcome.DEFERRED else "not touched",
        ]
        if not report.dry_run:
            row.append(human_size(p.bytes_uploaded))
        table.add_row(*row)
    console.print(table)
    console.print(totals_line(report), highlight=False)
    for name in report.excluded:
        console.print(f"[dim]excluded: {escape(name)} (not contacted)[/]")
    for p in report.printers:
        if p.status is PrinterOutcome.DEFERRED:
            console.print(
                f"[yellow]deferred[/]: {escape(p.name)} is {escape(p.state or 'busy')}; "
                "not touched (--ignore-state overrides)"
            )
        if p.error:
            console.print(f"[bold red]failed[/]: {escape(p.name)}: {escape(p.error)}")
        for action in p.failures:
            console.print(
                f"[bold red]failed[/]: {escape(p.name)}: {action.op} {escape(action.path)}: "
                f"{escape(action.error or '')}"
            )
        for warning in p.warnings:
            console.print(f"[yellow]warning[/]: {escape(p.name)}: {escape(warning)}")
    for problem in report.problems:
        console.print(f"[bold red]problem[/]: {escape(problem)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
