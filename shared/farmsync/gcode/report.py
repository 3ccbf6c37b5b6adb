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

from pydantic import BaseModel, Field, computed_field
from rich.console import Console
from rich.markup import escape
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

    @computed_field  # type: ignore[prop-decorator]
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

OP_STYLE = {
    "upload": "green",
    "replace": "yellow",
    "delete": "red",
    "delete_folder": "red",
    "skip": "dim",
}
RESULT_STYLE = {"planned": "cyan", "ok": "green", "failed": "bold red", "skipped": "dim"}
STATUS_STYLE = {"synced": "green", "deferred": "yellow", "failed": "bold red", "dry_run": "cyan"}


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def printer_table(printer: PrinterReport, *, dry_run: bool, verbose: bool = False) -> Table:
    """One printer's actions; unchanged and skipped rows only with ``verbose``."""
    where = "/" + printer.destination if printer.destination else "/ (storage root)"
    title = f"{escape(printer.name)} ({printer.kind or '?'}, {escape(printer.state or 'state unknown')}) → {escape(where)}"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("action")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    if not dry_run:
        table.add_column("result")
        table.add_column("time", justify="right")
    table.add_column("why", overflow="fold")
    hidden = 0
    for action in printer.actions:
        if action.op == "skip" and not verbose and action.result is not ActionResult.FAILED:
            hidden += 1
            continue
        cells = [
            f"[{OP_STYLE.get(action.op, '')}]{action.op}[/]",
            escape(action.path),
            human_size(action.size),
        ]
        if not dry_run:
            cells.append(f"[{RESULT_STYLE[action.result.value]}]{action.result.value}[/]")
            cells.append("" if action.seconds is None else f"{action.seconds:.1f}s")
        why = action.error or action.reason
        cells.append(escape(why) if not action.error else f"[red]{escape(why)}[/]")
        table.add_row(*cells)
    if hidden:
        table.caption = f"{hidden} unchanged or skipped file(s) not shown (--verbose lists them)"
    return table


def render_report(console: Console, report: MirrorReport, *, verbose: bool = False) -> None:
    """Per-printer action tables (dry run: what would happen), then the summary."""
    for printer in report.printers:
        if printer.status is PrinterOutcome.DEFERRED or (printer.error and not printer.actions):
            continue
        if not printer.actions:
            console.print(f"[bold]{escape(printer.name)}[/]: nothing under the destination, nothing to do")
            continue
        if not verbose and not any(
            a.op != "skip" or a.result is ActionResult.FAILED for a in printer.actions
        ):
            console.print(
                f"[bold]{escape(printer.name)}[/]: in sync ({len(printer.actions)} file(s) unchanged)"
            )
            continue
        console.print(printer_table(printer, dry_run=report.dry_run, verbose=verbose))
    render_summary(console, report)


def render_summary(console: Console, report: MirrorReport) -> None:
    """One row per printer, then every failure, deferral and problem on its own line."""
    table = Table(
        title="dry run: nothing was changed (add -g/--go to apply)" if report.dry_run else "summary"
    )
    for column in ("printer", "kind", "state", "status"):
        table.add_column(column)
    for column in ("upload", "replace", "delete", "folders", "skipped"):
        table.add_column(column, justify="right")
    if not report.dry_run:
        table.add_column("failed", justify="right")
        table.add_column("sent", justify="right")
    for p in report.printers:
        counted = ActionResult.PLANNED if report.dry_run else ActionResult.OK
        row = [
            escape(p.name),
            p.kind or "",
            escape(p.state or ""),
            f"[{STATUS_STYLE[p.status.value]}]{p.status.value}[/]",
            str(p.count(op="upload", result=counted)),
            str(p.count(op="replace", result=counted)),
            str(p.count(op="delete", result=counted)),
            str(p.count(op="delete_folder", result=counted)),
            str(p.count(op="skip")),
        ]
        if not report.dry_run:
            row += [str(len(p.failures)), human_size(p.bytes_uploaded)]
        table.add_row(*row)
    console.print(table)
    for name in report.excluded:
        console.print(f"[dim]excluded: {escape(name)} (not contacted)[/]")
    for p in report.printers:
        if p.status is PrinterOutcome.DEFERRED:
            console.print(
                f"[yellow]deferred[/]: {escape(p.name)} is {escape(p.state or 'busy')}; not touched (--ignore-state overrides)"
            )
        if p.error:
            console.print(f"[bold red]failed[/]: {escape(p.name)}: {escape(p.error)}")
        for action in p.failures:
            console.print(
                f"[bold red]failed[/]: {escape(p.name)}: {action.op} {escape(action.path)}: {escape(action.error or '')}"
            )
        for warning in p.warnings:
            console.print(f"[yellow]warning[/]: {escape(p.name)}: {escape(warning)}")
    for problem in report.problems:
        console.print(f"[bold red]problem[/]: {escape(problem)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
