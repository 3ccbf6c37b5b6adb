"""The result of ``farmsync gcode --pull`` (pydantic, the same shape for ``--json``) and how it is shown.

Exit codes follow the mirror's (:mod:`farmsync.gcode.report`), plus one rule: any conflict exits 2, because a
conflict is never resolved silently and needs a person to pick the copy to keep.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, computed_field

from farmsync.gcode.plan import utc
from farmsync.gcode.report import EXIT_OK, EXIT_PARTIAL, STATUS_STYLE, STATUS_TEXT, PrinterOutcome
from farmsync.human import human_size

if TYPE_CHECKING:  # rich is imported where the report is drawn (not for --json or a tick)
    from rich.console import Console


class PullResult(StrEnum):
    PLANNED = "planned"  # dry run: would be pulled
    PULLED = "pulled"
    SKIPPED = "skipped"  # in the master already, not a mirrored type, read-only, pulled from another printer
    CONFLICT = "conflict"  # differs from the master or from another printer: nothing written
    REJECTED = "rejected"  # an unsafe name (absolute, '..', outside the master): never written
    FAILED = "failed"


class PullFileReport(BaseModel):
    """One printer file. ``target`` is the master path relative to ``--relative-to``; ``source`` the printer
    the content came (or would come) from."""

    path: str
    target: str | None = None
    size: int | None = None
    mtime: float | None = None
    result: PullResult
    reason: str = ""
    source: str | None = None
    sha256: str | None = None
    error: str | None = None
    seconds: float | None = None


class Copy(BaseModel):
    """One side of a conflict: ``where`` is a printer name or ``"master"``."""

    where: str
    path: str
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None


class PullConflict(BaseModel):
    target: str
    reason: str
    copies: list[Copy] = Field(default_factory=list)


class PullPrinterReport(BaseModel):
    name: str
    kind: str | None = None
    state: str | None = None
    status: PrinterOutcome
    destination: str = ""
    files: list[PullFileReport] = Field(default_factory=list)
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)

    def count(self, result: PullResult) -> int:
        return sum(1 for f in self.files if f.result is result)

    @property
    def failures(self) -> list[PullFileReport]:
        return [f for f in self.files if f.result is PullResult.FAILED]


class PullReport(BaseModel):
    mode: Literal["pull"] = "pull"
    dry_run: bool
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    printers: list[PullPrinterReport] = Field(default_factory=list)
    conflicts: list[PullConflict] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's own form; mypy refuses decorated properties
    @property
    def exit_code(self) -> int:
        """2 on any conflict, failure or source problem, or when every selected printer was deferred."""
        if self.conflicts or self.problems:
            return EXIT_PARTIAL
        if any(p.status is PrinterOutcome.FAILED for p in self.printers):
            return EXIT_PARTIAL
        if self.printers and all(p.status is PrinterOutcome.DEFERRED for p in self.printers):
            return EXIT_PARTIAL
        return EXIT_OK

    def printer(self, name: str) -> PullPrinterReport:
        return next(p for p in self.printers if p.name == name)


# --- rendering -------------------------------------------------------------------------------------------

RESULT_STYLE = {
    "planned": "cyan",
    "pulled": "green",
    "skipped": "dim",
    "conflict": "bold yellow",
    "rejected": "bold red",
    "failed": "bold red",
}


def _when(mtime: float | None) -> str:
    return utc(mtime) if mtime else "time unknown"


def render_pull_report(console: Console, report: PullReport, *, verbose: bool = False) -> None:
    """Per printer the files pulled (or to pull), then every conflict with both sides, then the summary."""
    from rich.markup import escape
    from rich.table import Table

    for printer in report.printers:
        shown = [f for f in printer.files if verbose or f.result is not PullResult.SKIPPED]
        if not shown:
            continue
        table = Table(title=f"{escape(printer.name)} → master", title_justify="left")
        for column in ("result", "printer path", "master path", "size", "why"):
            table.add_column(column, overflow="fold")
        for f in shown:
            why = f.error or f.reason
            table.add_row(
                f"[{RESULT_STYLE[f.result.value]}]{f.result.value}[/]",
                escape(f.path),
                escape(f.target or ""),
                human_size(f.size),
                escape(why),
            )
        console.print(table)
    for conflict in report.conflicts:
        console.print(f"[bold yellow]conflict[/]: {escape(conflict.target)}: {escape(conflict.reason)}")
        for copy in conflict.copies:
            size = "size unknown" if copy.size is None else f"{copy.size} bytes"
            console.print(f"    {escape(copy.where)}: {escape(copy.path)}, {size}, {_when(copy.mtime)}")
    title = "dry run: nothing was changed (add -g/--go to apply)" if report.dry_run else "pull summary"
    summary = Table(title=title, title_justify="left")
    summary.add_column("printer", overflow="fold", ratio=2)
    summary.add_column("state", overflow="fold", ratio=1)
    summary.add_column("result", no_wrap=True)
    summary.add_column("files", overflow="fold", ratio=3)
    done = PullResult.PLANNED if report.dry_run else PullResult.PULLED
    for p in report.printers:
        counts = [(done, "to pull" if report.dry_run else "pulled")] + [
            (r, r.value)
            for r in (PullResult.SKIPPED, PullResult.CONFLICT, PullResult.REJECTED, PullResult.FAILED)
        ]
        words = ", ".join(f"{p.count(r)} {word}" for r, word in counts if p.count(r)) or "–"
        summary.add_row(
            f"{escape(p.name)} [dim]{p.kind or ''}[/]",
            escape(p.state or ""),
            f"[{STATUS_STYLE[p.status.value]}]{STATUS_TEXT.get(p.status.value, p.status.value)}[/]",
            words if p.status is not PrinterOutcome.DEFERRED else "not read",
        )
    console.print(summary)
    pulled = [f for p in report.printers for f in p.files if f.result is done]
    verb = "would pull" if report.dry_run else "pulled"
    console.print(
        f"{verb} {len(pulled)} file(s), {human_size(sum(f.size or 0 for f in pulled))}, into {escape(report.source)}",
        highlight=False,
    )
    for name in report.excluded:
        console.print(f"[dim]excluded: {escape(name)} (not contacted)[/]")
    for p in report.printers:
        if p.status is PrinterOutcome.DEFERRED:
            console.print(f"[yellow]deferred[/]: {escape(p.name)} is {escape(p.state or 'busy')}; not read")
        if p.error:
            console.print(f"[bold red]failed[/]: {escape(p.name)}: {escape(p.error)}")
        for f in p.failures:
            console.print(f"[bold red]failed[/]: {escape(p.name)}: {escape(f.path)}: {escape(f.error or '')}")
        for warning in p.warnings:
            console.print(f"[yellow]warning[/]: {escape(p.name)}: {escape(warning)}")
    for problem in report.problems:
        console.print(f"[bold red]problem[/]: {escape(problem)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
