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
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

# Credentials of the simulated farm only: the demo never talks to anything but its own loopback fakes.
DEMO_SERVICE_TOKEN = "demo-service-token"  # noqa: S105
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105


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


def write_master(folder: Path) -> list[Path]:
    """A small master folder of G-code in nested folders (link-sync's example layout)."""
    files = {
        "apple/prusament pla/apple_0.4n_0.15mm_PLA_MK4IS_4h52m.gcode": 180_000,
        "apple/prusament petg/apple_0.4n_0.15mm_PETG_MK4IS_4h58m.gcode": 220_000,
        "banana/prusament pla/banana_0.4n_0.15mm_PLA_MK4IS_2h12m.gcode": 140_000,
        "banana/prusament petg/banana_0.4n_0.15mm_PETG_MK4IS_2h13m.gcode": 150_000,
        "calibration/first_layer.gcode": 40_000,
    }
    written = []
    for relative, size in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"; farmsync demo {relative}\nG1 X10 Y10 E0.5 F1800\n"
        path.write_text((line * (size // len(line) + 1))[:size])
        written.append(path)
    return written


class DemoFarm:
    """The simulated farm: Bambuddy + InvenTree, two Buddy printers (one busy) and a Klipper printer."""

    def __init__(self, workdir: Path) -> None:
        from farmsync.sim.buddy import FakeBuddy
        from farmsync.sim.moonraker import FakeMoonraker
        from farmsync.sim.server import SimFarm

        self.workdir = workdir
        self.sim = SimFarm("small", seed=1, latency_ms=5)
        self.ash = FakeBuddy(password="demo-ash-pw", bandwidth=2_000_000, name="Ash")  # noqa: S106
        self.bishop = FakeBuddy(password="demo-bishop-pw", bandwidth=2_000_000, name="Bishop")  # noqa: S106
        self.voron = FakeMoonraker(api_key="demo-voron-key", bandwidth=4_000_000)

    def start(self) -> DemoFarm:
        self.sim.start()
        for printer in (self.ash, self.bishop, self.voron):
            printer.start()
        self.ash.add_file("old/leftover_benchy.gcode", b"; a one-off print nobody needs\nG28\n" * 200)
        self.bishop.set_state("PRINTING")
        return self

    def stop(self) -> None:
        for printer in (self.voron, self.bishop, self.ash):
            with contextlib.suppress(Exception):
                printer.stop()
        self.sim.stop()

    def printers_yml(self) -> Path:
        path = self.workdir / "printers.yml"
        path.write_text(
            "# link-sync's format; 'kind' is farmsync's optional extra key\n"
            f"Ash:\n  printer_type: MK4\n  host: {self.ash.url}\n  username: maker\n  password: {self.ash.password}\n"
            f"Bishop:\n  printer_type: MK4\n  host: {self.bishop.url}\n  username: maker\n"
            f"  password: {self.bishop.password}\n"
            f"Voron:\n  printer_type: Voron\n  kind: moonraker\n  host: {self.voron.url}\n"
            f"  api_key: {self.voron.api_key}\n"
        )
        return path

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


def totals_text(totals: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in totals.items() if v) or "nothing to do"


async def run_steps(services: Any, farm: DemoFarm, app: AppServer, out: Any) -> list[Step]:
    import httpx

    from farmsync.filament.page import refresh_snapshot
    from farmsync.filament.run import run_filament
    from farmsync.gcode.routes import run_gcode
    from farmsync.prints import tick as ticks
    from farmsync.prints.routes import print_sync, remember
    from farmsync.sim.webhook import fire_webhook
    from farmsync.web.router import jsonable

    steps: list[Step] = []

    async def backfill() -> tuple[bool, str]:
        report = await ticks.backfill(print_sync(services))
        await remember(services, "backfill", report)
        runs = services.sync_store.counts("run")["done"]
        return report.ok, f"{totals_text(report.totals())} → {runs} stock items, one per completed run"

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
            f"{totals_text(body.get('totals', {}))}",
        )

    async def filament_dry() -> tuple[bool, str]:
        report = await run_filament(services, dry_run=True)
        data = jsonable(report)
        writes = len(data.get("writes", []))
        return not data.get(
            "errors"
        ), f"{writes} planned writes, {len(data.get('conflicts', []))} conflicts (nothing written)"

    async def filament_apply() -> tuple[bool, str]:
        report = await run_filament(services, dry_run=False)
        await refresh_snapshot(services, report)  # what the operator's page shows, as the scheduler does
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


@click.command("demo")
@click.option("--once", is_flag=True, help="Exit after the summary (exit 0 when every step succeeded).")
@click.option(
    "--port", type=int, default=8088, show_default=True, help="Dashboard port (another is used if busy)."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its store and files (default: a new temporary folder).",
)
def demo(once: bool, port: int, workdir: Path | None) -> None:
    """Run the whole product against a simulated farm on this machine."""
    from rich.console import Console
    from rich.table import Table

    from farmsync.logs import configure
    from farmsync.services import Services, set_services
    from farmsync.settings import load_settings

    out = Console()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="farmsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    master = workdir / "master"
    write_master(master)
    out.rule("[bold]farmsync demo")
    out.print(f"work folder: {workdir}")
    farm = DemoFarm(workdir)
    with out.status("starting the simulated farm (Bambuddy, InvenTree, 3 printers) …"):
        farm.start()
    settings = load_settings("/dev/null", **farm.settings_values(workdir / "data", master))
    configure("text", "WARNING")
    # The app thread and the demo's own steps each get their Services (httpx pools belong to one event
    # loop each); both use the same SQLite store file, as separate processes would.
    app = AppServer(Services(settings), free_port(port)).start()
    services = Services(settings)
    out.print(
        f"Bambuddy {farm.sim.bambuddy_url} · InvenTree {farm.sim.inventree_url} · "
        f"printers Ash (idle), Bishop (printing), Voron (Klipper)"
    )
    try:
        steps = asyncio.run(run_steps(services, farm, app, out))
        table = Table(title="What happened")
        for column in ("step", "result", "detail", "seconds"):
            table.add_column(column)
        for step in steps:
            table.add_row(
                step.name, "[green]ok[/]" if step.ok else "[red]failed[/]", step.detail, f"{step.seconds:.2f}"
            )
        out.print(table)
        ok = all(step.ok for step in steps)
        out.print(
            f"Dashboard: [bold]{app.url}/[/]   (service token for the JSON routes: {DEMO_SERVICE_TOKEN})"
        )
        if once:
            raise SystemExit(0 if ok else 2)
        out.print("Serving until Ctrl-C …")
        with contextlib.suppress(KeyboardInterrupt):
            while app.thread.is_alive():
                time.sleep(0.5)
    finally:
        app.stop()
        farm.stop()
        set_services(None)
