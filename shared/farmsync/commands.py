"""The operator's subcommands: serve, tick, sync archive, backfill, filament, status, validate.

Each runs the same library code as the HTTP routes, prints a rich table (or ``--json`` for scripts) and exits
0 when everything succeeded, 2 when some items failed, 1 on usage or configuration errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from farmsync.cli import EXIT_PARTIAL, load_settings_for
from farmsync.errors import ConfigError
from farmsync.human import counts_text, report_console
from farmsync.jsonable import jsonable
from farmsync.services import Services, set_services

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")


def make_services(ctx: click.Context, **overrides: Any) -> Services:
    from farmsync.logs import configure

    settings = load_settings_for(ctx, **overrides)
    configure(settings.log_format, "WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    services = Services(settings)
    services.sync_store  # noqa: B018 - an unusable DATA_DIR or store: one line and exit 1, before any work
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


def console_stderr() -> Any:
    """Progress and log lines go to stderr, so stdout holds only the report (or --json)."""
    from rich.console import Console

    return Console(stderr=True)


# --- prints --------------------------------------------------------------------------------------------------------


LISTED_ALWAYS = {"failed", "parked", "pending"}


def _print_label(item: dict[str, Any]) -> str:
    kind, _, key = item["key"].partition(":")
    label = f"{kind} {key}" if key else item["key"]
    if item.get("archive_id") and kind != "archive":
        label += f" (archive {item['archive_id']})"
    return label


def _print_detail(item: dict[str, Any]) -> str:
    from farmsync.human import human_time

    detail = item.get("error") or item.get("reason") or ""
    if item["outcome"] in ("failed", "pending") and item.get("retry_at"):
        detail += f"; next try {human_time(item['retry_at'])}"
    elif item.get("stock_item"):
        detail = f"stock item {item['stock_item']}" + (f", part {item['part']}" if item.get("part") else "")
    return detail


def render_print_report(data: dict[str, Any]) -> None:
    """Failures, parked and pending prints (every print only for one archive), then one totals line.

    A backfill of thousands of prints must not print thousands of rows: what needs a look is what did not work.
    """
    from rich.markup import escape
    from rich.table import Table

    from farmsync.human import human_duration

    out = report_console()
    items = data.get("items", [])
    every = data["mode"] == "archive"
    shown = [i for i in items if every or i["outcome"] in LISTED_ALWAYS]
    if shown:
        title = f"{data['mode']} ({data['unit']} mode)" if every else "needs a look"
        table = Table(title=title, title_justify="left")
        table.add_column("print", overflow="fold", ratio=2)
        table.add_column("outcome", no_wrap=True)
        table.add_column("detail", overflow="fold", ratio=5)
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
            table.add_row(escape(_print_label(item)), outcome, escape(_print_detail(item)))
        out.print(table)
    totals = counts_text(data["totals"])
    stopped = (
        "" if data["stopped"] == "complete" else f"; stopped early ({data['stopped'].replace('_', ' ')})"
    )
    out.print(
        f"{data['mode']}: {sum(data['totals'].values())} print(s) in {human_duration(data['seconds'])}: "
        f"{totals}{stopped}. "
        f"Requests: Bambuddy {data['bambuddy_requests']}, InvenTree {data['inventree_requests']}.",
        highlight=False,
    )
    waiting = [i["retry_at"] for i in items if i["outcome"] in ("failed", "pending") and i.get("retry_at")]
    if waiting:
        from farmsync.human import human_time

        out.print(
            f"{len(waiting)} print(s) wait for their retry time; the next goes {human_time(min(waiting))} "
            "(farmsync serve or the next tick retries them)."
        )
    for note in data.get("notes", []):
        out.print(f"note: {escape(note)}")


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
@click.option(
    "--allow-open-access",
    is_flag=True,
    help="Serve on a non-loopback address without SERVICE_API_TOKEN (setting ALLOW_OPEN_ACCESS).",
)
@click.pass_context
def serve_command(
    ctx: click.Context, host: str, port: int | None, no_schedule: bool, allow_open_access: bool
) -> None:
    """Every route on one port plus the scheduler (POLL_INTERVAL_SECONDS, SYNC_ON_STARTUP)."""
    from farmsync.logs import configure
    from farmsync.security import open_bind_refusal, token_warnings
    from farmsync.web.serve import listen, serve

    settings = load_settings_for(ctx)
    configure(settings.log_format, settings.log_level)
    refusal = open_bind_refusal(settings, host, allow_open=allow_open_access)
    if refusal:
        raise ConfigError(refusal)
    for line in token_warnings(settings):
        click.echo(f"warning: {line}", err=True)
    services = Services(settings)
    services.sync_store  # noqa: B018 - an unusable DATA_DIR or store is a configuration error before listening
    sock = listen(host, port or settings.port)
    click.echo(
        f"farmsync serving on http://{host}:{port or settings.port} "
        f"(store: {settings.store_backend.value}, poll every {settings.poll_interval_seconds} s)",
        err=True,
    )
    serve(services, sock, schedule=not no_schedule)


@click.command("tick")
@click.argument("which", type=click.Choice(["backfill", "prints", "filament", "gcode"]))
@json_option
@click.pass_context
def tick_command(ctx: click.Context, which: str, as_json: bool) -> None:
    """Run one scheduled tick now: prints (alias backfill), filament or gcode."""
    services = make_services(ctx)
    if which in ("backfill", "prints"):
        from farmsync.prints.service import run_tick

        data = run(services, lambda s: run_tick(s, trigger="cli")).as_dict()
        emit(data, as_json, render_print_report)
        finish_print(data)
    elif which == "filament":
        from farmsync.filament.service import run_scheduled

        data = jsonable(run(services, run_scheduled))
        emit(data, as_json, render_filament)
    else:
        from farmsync.gcode.pull_report import PullReport, render_pull_report
        from farmsync.gcode.report import render_report
        from farmsync.gcode.service import run_scheduled as run_gcode

        report = run(services, run_gcode)
        if as_json:
            emit(jsonable(report), True, print)
        elif isinstance(report, PullReport):
            render_pull_report(report_console(), report)
        else:
            render_report(report_console(), report)


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
    from farmsync.prints.service import sync_archive

    services = make_services(ctx)
    data = run(services, lambda s: sync_archive(s, archive_id, force=force)).as_dict()
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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from farmsync.logs import through_console
    from farmsync.prints.service import backfill

    services = make_services(ctx)
    err = console_stderr()
    bar = Progress(
        TextColumn("backfill"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=as_json,
        transient=True,
    )
    task = bar.add_task("prints", total=None)

    def progress(done: int, total: int, _item: Any) -> None:
        bar.update(task, completed=done, total=total)

    def work(s: Services) -> Any:
        return backfill(s, max_archives=max_archives, retry_now=retry_now, progress=progress)

    with bar, through_console(err):
        data = run(services, work).as_dict()
    emit(data, as_json, render_print_report)
    finish_print(data)


# --- filament ------------------------------------------------------------------------------------------------------


SHOWN_OUTCOMES = {"planned", "applied", "failed", "pending", "parked"}


def filament_changes(data: dict[str, Any], *, verbose: bool = False) -> list[tuple[str, str]]:
    """Each line of a filament run as (what changes, in words; outcome), by name rather than by id."""
    names = data.get("names") or {}

    def named(kind: str, pk: Any, fallback: str) -> str:
        if pk is None:
            return fallback
        return (names.get(kind) or {}).get(str(pk)) or f"{fallback} {pk}"

    rows: list[tuple[str, str]] = []
    for line in (data.get("usage") or {}).get("lines", []):
        if verbose or line["outcome"] in SHOWN_OUTCOMES:
            grams = line.get("charged_grams") or line["grams"]
            item = line.get("stock_item")
            what = (
                f"take {grams:g} g from {named('stock_items', item, 'stock item')}"
                if item
                else f"{grams:g} g used"
            )
            if line.get("print_name"):
                what += f" for print {line['print_name']!r}"
            rows.append((_with_reason(what, line), line["outcome"]))
    for line in (data.get("locations") or {}).get("lines", []):
        if verbose or line["outcome"] in SHOWN_OUTCOMES:
            item = named("stock_items", line.get("stock_item"), "stock item")
            source = named("locations", line.get("from_location"), "location")
            target = named("locations", line.get("to_location"), "location")
            what = f"move {item} from {source} to {target}"
            if line.get("printer"):
                what += f" (loaded in {line['printer']} {line.get('slot') or ''})".replace(" )", ")")
            rows.append((_with_reason(what, line), line["outcome"]))
    for line in (data.get("spools") or {}).get("lines", []):
        if verbose or line["outcome"] in SHOWN_OUTCOMES:
            item = named("stock_items", line.get("stock_item"), "stock item")
            if line["action"] == "create":
                what = f"create a Bambuddy spool for {item}"
            else:
                spool = named("spools", line.get("spool_id"), "spool")
                changes = ", ".join(f"{k} → {v}" for k, v in (line.get("changes") or {}).items())
                what = f"update Bambuddy spool {spool} from {item}" + (f": {changes}" if changes else "")
            rows.append((_with_reason(what, line), line["outcome"]))
    return rows


def _with_reason(what: str, line: dict[str, Any]) -> str:
    why = line.get("error") or (line.get("reason") if line["outcome"] != "planned" else None)
    return f"{what} ({why})" if why else what


def render_filament(data: dict[str, Any], *, verbose: bool = False) -> None:
    """What will change (or changed), by name; the HTTP requests behind it only with --verbose."""
    from rich.markup import escape
    from rich.table import Table

    out = report_console()
    rows = filament_changes(data, verbose=verbose)
    title = (
        "what a real run would change (dry run: nothing was written)" if data["dry_run"] else "changes made"
    )
    colours = {"applied": "green", "planned": "cyan", "failed": "red", "parked": "red", "pending": "yellow"}
    if rows:
        table = Table(title=title, title_justify="left")
        table.add_column("change", overflow="fold")
        table.add_column("outcome", no_wrap=True)
        for what, outcome in rows:
            colour = colours.get(outcome)
            table.add_row(escape(what), f"[{colour}]{outcome}[/]" if colour else outcome)
        out.print(table)
    writes = data.get("writes", [])
    if verbose and writes:
        table = Table(
            title="HTTP requests" + (" (not sent)" if data["dry_run"] else ""), title_justify="left"
        )
        for column in ("system", "method", "path", "purpose"):
            table.add_column(column, overflow="fold")
        for write in writes:
            table.add_row(
                write["system"], write["method"], escape(write["path"]), escape(write.get("purpose") or "")
            )
        out.print(table)
    for step, counts in data.get("totals", {}).items():
        out.print(f"{step}: {counts_text(counts)}")
    for name in ("usage", "locations"):
        for warning in (data.get(name) or {}).get("warnings", []):
            out.print(f"[yellow]warning[/] {name}: {escape(warning)}")
    for problem in (data.get("locations") or {}).get("problems", []):
        out.print(f"[red]problem[/] locations: {escape(problem)}")
    for conflict in data.get("conflicts", []):
        detail = conflict.get("detail") if isinstance(conflict, dict) else str(conflict)
        out.print(f"[yellow]conflict[/] {escape(str(detail))}")
    for error in data.get("errors", []):
        out.print(f"[red]error[/] {escape(error)}")
    usage = data.get("usage") or {}
    for line in usage.get("lines", []):
        if line.get("depleted"):
            reason = escape(line.get("reason") or "ran out")
            out.print(f"[yellow]depleted[/] usage {line['usage_id']}: {reason}")
    render_left_out(out, usage.get("left_out", []))
    mode = "dry run" if data["dry_run"] else "applied"
    hint = " (--apply writes them; --verbose lists the requests)" if data["dry_run"] and writes else ""
    out.print(f"filament {mode}: {len(writes)} change(s) in {data['seconds']} s{hint}")


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
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also list unchanged lines and the HTTP requests behind each change.",
)
@json_option
@click.pass_context
def filament_command(
    ctx: click.Context, step: tuple[str, ...], apply: bool, show_status: bool, verbose: bool, as_json: bool
) -> None:
    """Sync filament between InvenTree and Bambuddy (dry run unless --apply; exit 2 if a line failed)."""
    from farmsync.filament import service

    services = make_services(ctx)
    if show_status:
        emit(run(services, service.status).as_dict(), as_json, render_filament_status)
        return
    data = run(
        services, lambda s: service.sync(s, steps=list(step) or None, dry_run=not apply, snapshot=False)
    ).as_dict()
    emit(data, as_json, lambda d: render_filament(d, verbose=verbose))
    if not data["ok"]:
        sys.exit(EXIT_PARTIAL)


# --- status and validate -------------------------------------------------------------------------------------------


STREAM_WORDS = {"print-log": "print-log run", "archives": "archive"}


def _last_run(run: dict[str, Any] | None) -> str:
    from farmsync.human import human_duration, human_time

    if not run:
        return "never"
    totals = counts_text(run.get("totals"))
    stopped = "" if run.get("stopped") in (None, "complete") else f", stopped early ({run['stopped']})"
    return f"{human_time(run.get('at'))}: {totals} in {human_duration(run.get('seconds'))}{stopped}"


def render_status(d: dict[str, Any]) -> None:
    """Sync state in words: how far the cursor got and when, what the last runs did, what waits and why."""
    from rich.markup import escape
    from rich.table import Table

    from farmsync.human import human_time

    out = report_console()
    table = Table(title="prints", title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("unit", f"one stock item per {'print-log run' if d['unit'] == 'run' else 'archive'}")
    for ns in ("runs", "archives"):
        if d.get(ns):
            table.add_row(ns, counts_text(d[ns]))
    cursors = d.get("cursor") or {}
    if not cursors:
        table.add_row("cursor", "not set yet: the next tick reads the whole print log")
    for stream, value in cursors.items():
        what = STREAM_WORDS.get(stream, stream)
        if isinstance(value, dict) and value.get("time"):
            newer = value.get("finished_in_window") or 0
            table.add_row(
                "cursor",
                f"every {what} created before {human_time(value['time'])} is done, and {newer} newer; "
                "each tick reads from an hour before that",
            )
            continue
        number = value.get("id") if isinstance(value, dict) else value
        table.add_row("cursor", f"every {what} up to #{number} is done (moves to a time on the next tick)")
    table.add_row("last tick", _last_run(d.get("last_tick")))
    table.add_row("last backfill", _last_run(d.get("last_backfill")))
    table.add_row("waiting to retry", str(len(d["pending"])))
    table.add_row("parked", f"{len(d['parked'])}" + (" (need a person)" if d["parked"] else ""))
    out.print(table)
    for item in d["parked"]:
        out.print(
            f"[red]parked[/] {escape(item['key'])} after {item['attempts']} attempts: {escape(item['error'] or '')}"
        )
    for item in d["pending"]:
        when = f"; next try {human_time(item['retry_at'])}" if item.get("retry_at") else ""
        out.print(
            f"[yellow]waiting[/] {escape(_print_label(item))} after {item['attempts']} attempt(s): "
            f"{escape(item['error'] or '')}{when}"
        )


@click.command("status")
@json_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Print sync state: counts, cursor, last tick, pending and parked prints."""
    from farmsync.prints.service import print_status

    services = make_services(ctx)
    data = run(services, print_status)

    emit(data, as_json, render_status)


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
        table.add_column("check", overflow="fold")
        table.add_column("level", no_wrap=True)
        table.add_column("message", overflow="fold", ratio=1)
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for item in d["checks"]:
            table.add_row(item["check"], f"[{colours[item['level']]}]{item['level']}[/]", item["message"])
        console().print(table)

    emit(data, as_json, render)
    if not data["ok"]:
        sys.exit(EXIT_PARTIAL)
