"""The operator's subcommands: serve, tick, sync archive, backfill, filament, status, validate.

Each runs the same library code as the HTTP routes, prints a rich table (or ``--json`` for scripts) and exits
0 when everything succeeded, 2 when some items failed, 1 on usage or configuration errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click

from farmsync.cli import EXIT_PARTIAL, load_settings_for
from farmsync.services import Services, set_services
from farmsync.web.router import jsonable

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")


def make_services(ctx: click.Context, **overrides: Any) -> Services:
    from farmsync.logs import configure

    settings = load_settings_for(ctx, **overrides)
    configure(settings.log_format, "WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    services = Services(settings)
    set_services(services)
    return services


def run(services: Services, work: Callable[[Services], Awaitable[Any]]) -> Any:
    """Run one async job with the services, closing their connections afterwards."""

    async def main() -> Any:
        try:
            return await work(services)
        finally:
            await services.aclose()

    return asyncio.run(main())


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(data)


def console() -> Any:
    from rich.console import Console

    return Console()


# --- prints --------------------------------------------------------------------------------------------------------


def render_print_report(data: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    items = data.get("items", [])
    shown = [i for i in items if i["outcome"] != "skipped" or i.get("reason") != "already synced"]
    if shown:
        table = Table(title=f"{data['mode']} ({data['unit']} mode)")
        for column in ("unit", "archive", "outcome", "part", "stock item", "detail"):
            table.add_column(column)
        colours = {
            "synced": "green",
            "refreshed": "green",
            "failed": "red",
            "parked": "red",
            "pending": "yellow",
        }
        for item in shown:
            colour = colours.get(item["outcome"], "")
            outcome = f"[{colour}]{item['outcome']}[/]" if colour else item["outcome"]
            table.add_row(
                item["key"],
                str(item.get("archive_id") or ""),
                outcome,
                str(item.get("part") or ""),
                str(item.get("stock_item") or ""),
                _detail(item),
            )
        out.print(table)
    totals = ", ".join(f"{k} {v}" for k, v in data["totals"].items() if v) or "nothing to do"
    out.print(
        f"{data['mode']}: {totals} in {data['seconds']} s; stopped: {data['stopped']}; requests: "
        f"Bambuddy {data['bambuddy_requests']}, InvenTree {data['inventree_requests']}"
    )
    for note in data.get("notes", []):
        out.print(f"note: {note}")


def _detail(item: dict[str, Any]) -> str:
    """Why a print is where it is; a pending one says until when (held by a claim, or waiting to retry)."""
    if item["outcome"] == "pending" and item.get("reason"):
        at = item.get("retry_at")
        until = time.strftime(" until %H:%M:%S UTC", time.gmtime(at)) if at else ""
        return f"{item['reason']}{until}"
    return item.get("error") or item.get("reason") or ""


def finish_print(data: dict[str, Any]) -> None:
    if data["totals"].get("failed") or data["totals"].get("parked"):
        sys.exit(EXIT_PARTIAL)


@click.command("serve")
@click.option(
    "--host",
    default="0.0.0.0",  # noqa: S104 - a LAN service: printers and Bambuddy call in from other hosts
    show_default=True,
    envvar="HOST",
    help="Address to listen on.",
)
@click.option("--port", type=int, default=None, help="Port (default: PORT setting, 8088).")
@click.option("--no-schedule", is_flag=True, help="Serve routes only; run no ticks in this process.")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int | None, no_schedule: bool) -> None:
    """Every route on one port plus the scheduler (POLL_INTERVAL_SECONDS, SYNC_ON_STARTUP)."""
    from farmsync.logs import configure
    from farmsync.web.serve import serve

    settings = load_settings_for(ctx)
    configure(settings.log_format, settings.log_level)
    services = Services(settings)
    click.echo(
        f"farmsync serving on http://{host}:{port or settings.port} "
        f"(store: {settings.store_backend.value}, poll every {settings.poll_interval_seconds} s)",
        err=True,
    )
    serve(services, host, port or settings.port, schedule=not no_schedule)


@click.command("tick")
@click.argument("which", type=click.Choice(["backfill", "prints", "filament", "gcode"]))
@json_option
@click.pass_context
def tick_command(ctx: click.Context, which: str, as_json: bool) -> None:
    """Run one scheduled tick now: prints (alias backfill), filament or gcode."""
    services = make_services(ctx)
    if which in ("backfill", "prints"):
        from farmsync.prints.routes import run_tick

        data = run(services, lambda s: run_tick(s, trigger="cli")).as_dict()
        emit(data, as_json, render_print_report)
        finish_print(data)
    elif which == "filament":
        from farmsync.filament.routes import run_scheduled

        data = jsonable(run(services, run_scheduled))
        emit(data, as_json, render_filament)
    else:
        from farmsync.gcode.routes import run_scheduled as run_gcode

        data = jsonable(run(services, run_gcode))
        emit(data, as_json, lambda d: console().print_json(data=d))


@click.group("sync")
def sync_group() -> None:
    """Sync one thing now."""


@sync_group.command("archive")
@click.argument("archive_id", type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Refresh parameters, image and link of an already synced print.")
@json_option
@click.pass_context
def sync_archive_command(ctx: click.Context, archive_id: int, force: bool, as_json: bool) -> None:
    """Sync one Bambuddy archive (each of its completed runs)."""
    from farmsync.prints import tick as ticks
    from farmsync.prints.routes import print_sync

    services = make_services(ctx)
    data = run(services, lambda s: ticks.sync_archive(print_sync(s), archive_id, force=force)).as_dict()
    emit(data, as_json, render_print_report)
    finish_print(data)


@click.command("backfill")
@click.option(
    "--max",
    "max_archives",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many prints were synced (skipped ones do not count).",
)
@click.option("--retry-now", is_flag=True, help="Retry prints waiting after a failure without waiting.")
@json_option
@click.pass_context
def backfill_command(ctx: click.Context, max_archives: int | None, retry_now: bool, as_json: bool) -> None:
    """Sync every completed print not yet in InvenTree, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from farmsync.prints import tick as ticks
    from farmsync.prints.routes import print_sync, remember

    services = make_services(ctx)
    bar = Progress(
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console() if not as_json else None,
        disable=as_json,
        transient=True,
    )
    task = bar.add_task("prints", total=None)

    def progress(done: int, total: int, _item: Any) -> None:
        bar.update(task, completed=done, total=total)

    async def work(s: Services) -> Any:
        report = await ticks.backfill(
            print_sync(s), max_archives=max_archives, retry_now=retry_now, progress=progress
        )
        await remember(s, "backfill", report)
        return report

    with bar:
        data = run(services, work).as_dict()
    emit(data, as_json, render_print_report)
    finish_print(data)


# --- filament ------------------------------------------------------------------------------------------------------


def render_filament(data: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    writes = data.get("writes", [])
    title = "planned writes (dry run: nothing was written)" if data["dry_run"] else "writes made"
    if writes:
        table = Table(title=title)
        for column in ("system", "method", "path", "purpose"):
            table.add_column(column)
        for write in writes:
            table.add_row(write["system"], write["method"], write["path"], write.get("purpose") or "")
        out.print(table)
    for step, counts in data.get("totals", {}).items():
        out.print(f"{step}: {', '.join(f'{k} {v}' for k, v in counts.items()) or 'nothing to do'}")
    for name in ("usage", "locations"):
        for warning in (data.get(name) or {}).get("warnings", []):
            out.print(f"[yellow]warning[/] {name}: {warning}")
    for problem in (data.get("locations") or {}).get("problems", []):
        out.print(f"[red]problem[/] locations: {problem}")
    for conflict in data.get("conflicts", []):
        out.print(f"[yellow]conflict[/] {conflict}")
    for error in data.get("errors", []):
        out.print(f"[red]error[/] {error}")
    usage = data.get("usage") or {}
    for line in usage.get("lines", []):
        if line.get("depleted"):
            out.print(f"[yellow]depleted[/] usage {line['usage_id']}: {line.get('reason') or 'ran out'}")
    render_left_out(out, usage.get("left_out", []))
    mode = "dry run" if data["dry_run"] else "applied"
    out.print(f"filament {mode}: {len(writes)} writes in {data['seconds']} s")


def spool_label(entry: dict[str, Any]) -> str:
    words = " ".join(str(entry[k]) for k in ("material", "color_name") if entry.get(k)) or "spool"
    tag = entry.get("batch") or entry.get("tag_uid") or entry.get("tray_uuid")
    return f"{words} ({tag})" if tag else f"{words} (spool {entry.get('spool_id')})"


def render_left_out(out: Any, entries: list[dict[str, Any]]) -> None:
    """Grams of failed, aborted and cancelled runs that FILAMENT_USAGE_SUCCESS_STATUSES leaves out."""
    for entry in entries:
        runs = ", ".join(f"{n} {status}" for status, n in sorted(entry.get("statuses", {}).items()))
        out.print(f"[yellow]left out[/] {entry['grams']:g} g of {spool_label(entry)}: {runs}")
    if entries:
        out.print("(add those statuses to FILAMENT_USAGE_SUCCESS_STATUSES to subtract them)")


def render_filament_status(data: dict[str, Any]) -> None:
    out = console()
    counts = data.get("counts", {})
    out.print(", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items()))
    for view in data.get("depleted", []):
        out.print(f"[yellow]depleted[/] {spool_label(view)}: {view.get('depleted')}")
    for view in data.get("missing_in_inventree", []):
        out.print(f"[red]missing in InvenTree[/] {spool_label(view)}")
    for line in data.get("pending_usage", []):
        why = line.get("reason") or line.get("error") or line.get("outcome")
        out.print(f"pending usage {line['usage_id']} ({line['grams']:g} g): {why}")
    render_left_out(out, data.get("usage_left_out", []))


@click.command("filament")
@click.option(
    "--step",
    type=click.Choice(["spools", "locations", "usage"]),
    multiple=True,
    help="Run only these steps (repeatable). Default: the enabled ones, as usage, locations, spools.",
)
@click.option(
    "--apply", is_flag=True, help="Write changes. Without it this is a dry run that lists the writes."
)
@click.option("--status", "show_status", is_flag=True, help="Show matching, depleted spools, pending usage.")
@json_option
@click.pass_context
def filament_command(
    ctx: click.Context, step: tuple[str, ...], apply: bool, show_status: bool, as_json: bool
) -> None:
    """Sync filament between InvenTree and Bambuddy (dry run unless --apply; exit 2 if a line failed)."""
    from farmsync.filament.run import ensure_enabled, run_filament

    services = make_services(ctx)
    ensure_enabled(services.settings)
    if show_status:
        from farmsync.filament.status import filament_status

        emit(run(services, filament_status).as_dict(), as_json, render_filament_status)
        return
    data = run(services, lambda s: run_filament(s, steps=list(step) or None, dry_run=not apply)).as_dict()
    emit(data, as_json, render_filament)
    if not data["ok"]:
        sys.exit(EXIT_PARTIAL)


# --- status and validate -------------------------------------------------------------------------------------------


@click.command("status")
@json_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Print sync state: counts, cursor, last tick, pending and parked prints."""
    from farmsync.prints.routes import print_status

    services = make_services(ctx)
    data = run(services, print_status)

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        out = console()
        table = Table(title="prints")
        table.add_column("what")
        table.add_column("value")
        table.add_row("unit", d["unit"])
        for ns in ("runs", "archives"):
            if d.get(ns):
                table.add_row(ns, ", ".join(f"{k} {v}" for k, v in d[ns].items()))
        table.add_row("cursor", json.dumps(d["cursor"]))
        last = d.get("last_tick") or {}
        table.add_row("last tick", json.dumps(last.get("totals", {})) if last else "never")
        table.add_row("pending", str(len(d["pending"])))
        table.add_row("parked", str(len(d["parked"])))
        out.print(table)
        for item in d["parked"] + d["pending"]:
            out.print(f"[red]{item['key']}[/] after {item['attempts']} attempts: {item['error']}")

    emit(data, as_json, render)


@click.command("validate")
@json_option
@click.pass_context
def validate_command(ctx: click.Context, as_json: bool) -> None:
    """Check connections, ids and templates (exit 2 when any check fails)."""
    from farmsync.validate import run_validation

    services = make_services(ctx)
    data = run(services, run_validation)

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table(title="farmsync validate")
        for column in ("check", "level", "message"):
            table.add_column(column)
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for item in d["checks"]:
            table.add_row(item["check"], f"[{colours[item['level']]}]{item['level']}[/]", item["message"])
        console().print(table)

    emit(data, as_json, render)
    if not data["ok"]:
        sys.exit(EXIT_PARTIAL)
