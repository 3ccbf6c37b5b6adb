"""``farmsync demo``: the whole product on one machine, with nothing else installed.

It starts a simulated farm on loopback (Bambuddy with prints, reprints, failures, spools and usage; InvenTree;
three fake printers), serves the farmsync app on the embedded SQLite store, then runs what a farm runs every day:
a backfill, a print arriving by webhook, a filament dry run and an applied run, and a G-code sync. It prints what
happened and the dashboard URL, then keeps serving until Ctrl-C (``--once`` exits after the summary: exit 0 when
every step succeeded).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from farmsync.human import counts_text
from farmsync_sim.printers import MIB, FakePrinters, PrinterSpec, write_master

# Credentials of the simulated farm only: the demo never talks to anything but its own loopback fakes.
DEMO_SERVICE_TOKEN = "demo-service-token"
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


DEMO_PRINTERS = (
    PrinterSpec("Ash", "MK4", "prusalink", bandwidth=2 * MIB),
    PrinterSpec("Bishop", "MK4", "prusalink", busy=True, bandwidth=2 * MIB),
    PrinterSpec("Voron", "Voron", "moonraker", bandwidth=4 * MIB),
)


class DemoFarm:
    """The simulated farm: Bambuddy + InvenTree, two Buddy printers (one busy) and a Klipper printer."""

    def __init__(self, workdir: Path) -> None:
        from farmsync_sim.server import SimFarm

        self.workdir = workdir
        self.sim = SimFarm("small", seed=1, latency_ms=5)
        self.printers = FakePrinters(DEMO_PRINTERS, workdir)

    def start(self) -> DemoFarm:
        self.sim.start()
        self.printers.start()
        self.printers["Ash"].add_file(
            "old/leftover_benchy.gcode", b"; a one-off print nobody needs\nG28\n" * 200
        )
        return self

    def stop(self) -> None:
        self.printers.stop()
        with contextlib.suppress(Exception):
            self.sim.stop()

    def printers_yml(self) -> Path:
        return self.printers.printers_yml()

    def settings_values(self, data_dir: Path, master: Path) -> dict[str, Any]:
        ids = self.sim.ids
        return {
            "bambuddy_base_url": self.sim.bambuddy_url,
            "bambuddy_api_key": self.sim.api_key,
            "inventree_base_url": self.sim.inventree_url,
            "inventree_token": self.sim.token,
            "inventree_part_category_id": ids["INVENTREE_PART_CATEGORY_ID"],
            "inventree_stock_location_id": ids["INVENTREE_STOCK_LOCATION_ID"],
            "service_api_token": DEMO_SERVICE_TOKEN,
            "webhook_shared_secret": DEMO_WEBHOOK_SECRET,
            "filament_tracking_enabled": True,
            "filament_part_category_id": ids["FILAMENT_PART_CATEGORY_ID"],
            "filament_storage_location_id": ids["FILAMENT_STORAGE_LOCATION_ID"],
            "filament_loaded_location_id": ids["FILAMENT_LOADED_LOCATION_ID"],
            "filament_printer_location_map": ids["FILAMENT_PRINTER_LOCATION_MAP"],
            "filament_return_unassigned_to_storage": True,
            "gcode_printers_file": self.printers_yml(),
            "gcode_source_dir": master,
            "data_dir": data_dir,
            "store_backend": "sqlite",
            "poll_interval_seconds": 0,
            "log_format": "text",
            "log_level": "WARNING",
        }


class AppServer:
    """The farmsync app (every route, the dashboard) served by uvicorn in a background thread."""

    def __init__(self, services: Any, port: int) -> None:
        import uvicorn

        from farmsync.web.serve import create_app

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(services, schedule=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="farmsync-demo-app", daemon=True)

    def start(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the farmsync app did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


async def timed(
    name: str, work: Callable[[], Awaitable[tuple[bool, str]]], steps: list[Step], out: Any
) -> None:
    started = time.monotonic()
    with out.status(f"{name} …"):
        try:
            ok, detail = await work()
        except Exception as exc:  # the demo reports a failed step and goes on
            ok, detail = False, f"{type(exc).__name__}: {exc}"
    steps.append(Step(name, ok, detail, round(time.monotonic() - started, 2)))
    mark = "[green]✓[/]" if ok else "[red]✗[/]"
    out.print(f"{mark} {name}: {detail} [dim]({steps[-1].seconds} s)[/]")


async def run_steps(services: Any, farm: DemoFarm, app: AppServer, out: Any) -> list[Step]:
    import httpx

    from farmsync.filament import service as filament_service
    from farmsync.filament.run import run_filament
    from farmsync.gcode.service import run_gcode
    from farmsync.jsonable import jsonable
    from farmsync.prints import tick as ticks
    from farmsync.prints.service import print_sync, remember
    from farmsync_sim.webhook import fire_webhook

    steps: list[Step] = []

    async def backfill() -> tuple[bool, str]:
        report = await ticks.backfill(print_sync(services))
        await remember(services, "backfill", report)
        runs = services.sync_store.counts("run")["done"]
        return report.ok, f"{counts_text(report.totals())} → {runs} stock items, one per completed run"

    async def webhook() -> tuple[bool, str]:
        state = farm.sim.bambuddy.state
        first = min(state.archives)
        run = state.add_print("B1-X1-CARBON", reprint_of=first)
        response = await asyncio.to_thread(
            fire_webhook,
            f"{app.url}/webhooks/bambuddy",
            DEMO_WEBHOOK_SECRET,
            printer="B1-X1-CARBON",
            filename="Benchy",
        )
        body = response.json()
        ok = response.status_code == 200 and body.get("totals", {}).get("synced", 0) >= 1
        return (
            ok,
            f"reprint of archive #{first} (run #{run['id']}) → webhook {response.status_code}, "
            f"{counts_text(body.get('totals', {}))}",
        )

    async def filament_dry() -> tuple[bool, str]:
        report = await run_filament(services, dry_run=True)
        data = jsonable(report)
        writes = len(data.get("writes", []))
        return not data.get(
            "errors"
        ), f"{writes} planned writes, {len(data.get('conflicts', []))} conflicts (nothing written)"

    async def filament_apply() -> tuple[bool, str]:
        # as the scheduler does: the operator's page shows what this run saw
        report = await filament_service.sync(services, dry_run=False)
        data = jsonable(report)
        return not data.get("errors"), f"{len(data.get('writes', []))} writes applied" + (
            f"; errors: {data['errors']}" if data.get("errors") else ""
        )

    async def gcode() -> tuple[bool, str]:
        report = await run_gcode(services, dry_run=False, trigger="demo")
        data = jsonable(report)
        parts = []
        for printer in data.get("printers", []):
            actions = printer.get("actions", [])
            ok_count = sum(1 for a in actions if a.get("result") == "ok")
            parts.append(
                f"{printer['name']} {printer['status']}" + (f" ({ok_count} actions)" if actions else "")
            )
        return data.get("exit_code", 1) == 0, "; ".join(parts)

    async def dashboard() -> tuple[bool, str]:
        """Sign in to the operator's page as a person would and see every section filled from the store."""
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            await client.post("/login", data={"token": DEMO_SERVICE_TOKEN})
            page = await client.get("/")
        sections = ("Prints → InvenTree", "Filament", "G-code on printers", "Last 30 days")
        ok = (
            page.status_code == 200
            and all(s in page.text for s in sections)
            and 'table class="spools"' in page.text
        )
        return ok, f"{app.url}/ answers {page.status_code}" + ("" if ok else " without every section")

    await timed("backfill prints → InvenTree", backfill, steps, out)
    await timed("new print via Bambuddy webhook", webhook, steps, out)
    await timed("filament dry run", filament_dry, steps, out)
    await timed("filament applied", filament_apply, steps, out)
    await timed("G-code mirror onto 3 printers", gcode, steps, out)
    await timed("dashboard", dashboard, steps, out)
    return steps


def write_status_env(workdir: Path) -> Path:
    """A settings file for the demo's store alone, so ``farmsync status`` can read it after the demo ended."""
    path = workdir / "demo.env"
    path.write_text(
        f"# the demo's embedded store; the simulated farm stops with the demo\nDATA_DIR={workdir / 'data'}\n"
    )
    return path


def where_the_data_went(workdir: Path, *, kept: bool) -> str:
    """What ``--once`` says instead of a dashboard URL that would be dead by the time anyone opens it."""
    if not kept:
        return (
            "The simulated farm has stopped and the demo's temporary folder is removed. "
            "Run `farmsync demo` without --once to keep the dashboard up, or add --workdir DIR to keep the data."
        )
    return (
        f"The simulated farm has stopped. The demo's data stays in {workdir}: the store "
        f"{workdir / 'data' / 'sync.sqlite3'}, the master folder {workdir / 'master'} and printers.yml. "
        f"`farmsync --env-file {workdir / 'demo.env'} status` reads the store."
    )


@click.command("demo")
@click.option("--once", is_flag=True, help="Exit after the summary (exit 0 when every step succeeded).")
@click.option(
    "--port", type=int, default=8088, show_default=True, help="Dashboard port (another is used if busy)."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its store and files, kept afterwards (default: a temporary folder, removed on exit).",
)
def demo(once: bool, port: int, workdir: Path | None) -> None:
    """Run the whole product against a simulated farm on this machine."""
    import shutil
    import signal

    from rich.console import Console

    out = Console()
    kept = workdir is not None
    folder = workdir or Path(tempfile.mkdtemp(prefix="farmsync-demo-"))
    # SIGTERM (a closed terminal, `timeout`, systemd) unwinds like Ctrl-C, so the folder goes either way.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        ok = _demo(out, folder, port, once=once, kept=kept)
    except KeyboardInterrupt:
        out.print("stopped.")
        ok = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)
    if once:
        raise SystemExit(0 if ok else 2)


def _demo(out: Any, workdir: Path, port: int, *, once: bool, kept: bool) -> bool:
    from farmsync.logs import configure, through_console
    from farmsync.services import Services, set_services
    from farmsync.settings import load_settings

    workdir.mkdir(parents=True, exist_ok=True)
    master = workdir / "master"
    write_master(master)
    out.rule("[bold]farmsync demo")
    out.print(f"work folder: {workdir}" + ("" if kept else " (temporary: removed when the demo ends)"))
    farm = DemoFarm(workdir)
    app: AppServer | None = None
    try:
        with out.status("starting the simulated farm (Bambuddy, InvenTree, 3 printers) …"):
            farm.start()
        settings = load_settings("/dev/null", **farm.settings_values(workdir / "data", master))
        configure("text", "WARNING")
        # The app thread and the demo's own steps each get their Services (httpx pools belong to one event
        # loop each); both use the same SQLite store file, as separate processes would.
        app = AppServer(Services(settings), free_port(port)).start()
        services = Services(settings)
        where = "" if once else f"Bambuddy {farm.sim.bambuddy_url} · InvenTree {farm.sim.inventree_url} · "
        out.print(f"{where}printers Ash (idle), Bishop (printing), Voron (Klipper)")
        out.print("[bold]Steps[/] (each runs the same code as the farmsync command or route named):")
        with through_console(out):
            steps = asyncio.run(run_steps(services, farm, app, out))
        done = sum(step.ok for step in steps)
        colour = "green" if done == len(steps) else "red"
        out.print(
            f"[{colour}]{done} of {len(steps)} steps succeeded[/] in {sum(st.seconds for st in steps):.1f} s."
        )
        ok = all(step.ok for step in steps)
        write_status_env(workdir)
        if once:
            out.print(where_the_data_went(workdir, kept=kept))
            return ok
        out.print(
            f"Dashboard: [bold]{app.url}/[/]   (service token for the JSON routes: {DEMO_SERVICE_TOKEN})"
        )
        out.print("Serving until Ctrl-C …")
        while app.thread.is_alive():
            time.sleep(0.5)
        return ok
    finally:
        if app is not None:
            app.stop()
        farm.stop()
        set_services(None)
