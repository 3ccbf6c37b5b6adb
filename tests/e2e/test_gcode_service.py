"""The G-code service end to end: HTTP routes -> engine -> real back ends -> fake printers on 127.0.0.1.

Fake Buddy printers (one busy) and a fake Moonraker, a printers.yml in tmp, and the ``farmsync serve`` app driven
through httpx's ASGI transport, once per store backend (SQLite and the real Firestore emulator).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from farmsync.services import Services, set_services
from farmsync.settings import Settings
from farmsync.web.handlers import gcode
from farmsync.web.serve import create_app
from farmsync.web.targets import single

TOKEN = "service-token-e2e"
HEADERS = {"X-Service-Token": TOKEN}
MASTER = {
    "apple/pla.gcode": b"G1 X10 ; apple\n" * 3000,
    "banana.gcode": b"G1 Y20 ; banana\n" * 500,
}
WRITE_METHODS = ("PUT", "DELETE", "POST")


def writes(printer: Any) -> list[dict[str, Any]]:
    return [e for e in printer.request_log if e["method"] in WRITE_METHODS]


def uploads(printer: Any) -> int:
    """Upload requests that carried a body (Buddy PUT, Moonraker multipart POST), not folder creations."""
    return sum(1 for e in printer.request_log if e["method"] in ("PUT", "POST") and e["bytes_in"] > 0)


class Farm:
    def __init__(self, tmp_path: Path, fake_buddy: Callable[..., Any], moonraker: Any) -> None:
        self.ash = fake_buddy(password="pw-ash-1234", name="Ash")
        self.bishop = fake_buddy(password="pw-bishop-1234", name="Bishop")
        self.busy = fake_buddy(password="pw-busy-1234", name="Busy", state="PRINTING")
        self.klipper = moonraker
        self.idle = {"Ash": self.ash, "Bishop": self.bishop}
        self.master = tmp_path / "master"
        for rel, data in MASTER.items():
            (self.master / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.master / rel).write_bytes(data)
        self.printers_file = tmp_path / "printers.yml"
        lines = []
        for name, printer in (("Ash", self.ash), ("Bishop", self.bishop), ("Busy", self.busy)):
            lines.append(
                f"{name}:\n  printer_type: MK4\n  host: {printer.url}\n  username: maker\n"
                f"  password: {printer.password}\n"
            )
        lines.append(f"Klipper:\n  kind: moonraker\n  host: {moonraker.url}\n  api_key: moonraker-key\n")
        self.printers_file.write_text("".join(lines))

    def buddy_files(self, printer: Any) -> dict[str, bytes]:
        return {path: f.read() for path, f in printer.files.items()}

    def moon_files(self) -> dict[str, bytes]:
        return {path: f.read() for path, f in self.klipper.files.items()}


@pytest.fixture
def farm(tmp_path: Path, fake_buddy: Callable[..., Any], fake_moonraker: Any) -> Farm:
    return Farm(tmp_path, fake_buddy, fake_moonraker)


def settings_for(farm: Farm, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "gcode_printers_file": farm.printers_file,
        "gcode_source_dir": farm.master,
        "service_api_token": TOKEN,
        "data_dir": tmp_path / "data",
        "http_timeout_seconds": 10.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def client_for(
    make_store: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """``client_for(settings)``: the serve app on a fresh store of the current backend, via ASGITransport."""
    clients: list[httpx.AsyncClient] = []

    def build(settings: Settings, app: Any = None) -> httpx.AsyncClient:
        store, _ = make_store()
        services = Services(settings, store=store)
        set_services(services)
        transport = httpx.ASGITransport(app=app or create_app(services, schedule=False))
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=HEADERS)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()
    set_services(None)


def status_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in body["printers"]}


async def test_dry_run_apply_status_and_no_op(farm, tmp_path, client_for):
    client = client_for(settings_for(farm, tmp_path))

    dry = await client.post("/sync/gcode")  # GCODE_DRY_RUN defaults to true
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    for printer in (farm.ash, farm.bishop, farm.busy, farm.klipper):
        assert writes(printer) == []
    planned = {p["name"]: p["status"] for p in dry.json()["printers"]}
    assert planned == {"Ash": "dry_run", "Bishop": "dry_run", "Busy": "deferred", "Klipper": "dry_run"}

    status = (await client.get("/gcode/status")).json()
    assert status["deferred"] == ["Busy"]
    assert status_by_name(status)["Ash"]["summary"] == "dry run: 2 to upload"

    applied = await client.post("/sync/gcode", params={"dry_run": "false"})
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["dry_run"] is False and body["exit_code"] == 0
    for printer in farm.idle.values():
        assert farm.buddy_files(printer) == MASTER
    assert farm.moon_files() == MASTER
    assert farm.busy.files == {} and writes(farm.busy) == []
    assert not any(e["path"].startswith("/api/v1/files") for e in farm.busy.request_log)

    status = (await client.get("/gcode/status")).json()
    by_name = status_by_name(status)
    assert {n: e["status"] for n, e in by_name.items()} == {
        "Ash": "synced",
        "Bishop": "synced",
        "Busy": "deferred",
        "Klipper": "synced",
    }
    assert by_name["Ash"]["summary"] == "2 uploaded" and by_name["Ash"]["kind"] == "prusalink"
    assert by_name["Busy"]["summary"] == "deferred: printer is PRINTING"
    deferred_since = by_name["Busy"]["deferred_since"]
    assert deferred_since is not None and status["deferred"] == ["Busy"]
    for moment in (
        deferred_since,
        by_name["Ash"]["at"],
        by_name["Ash"]["last_synced_at"],
        status["last_run"]["at"],
    ):
        assert datetime.fromisoformat(moment).tzinfo is not None  # ISO 8601 with a zone, not epoch seconds
    assert status["last_run"]["dry_run"] is False and status["last_run"]["trigger"] == "api"

    before = {n: uploads(p) for n, p in [*farm.idle.items(), ("Klipper", farm.klipper)]}
    again = await client.post("/sync/gcode", params={"dry_run": "false"})
    assert again.status_code == 200
    assert {n: uploads(p) for n, p in [*farm.idle.items(), ("Klipper", farm.klipper)]} == before
    assert status_by_name((await client.get("/gcode/status")).json())["Ash"]["summary"] == (
        "in sync, nothing to do"
    )

    # a dry run does not sync the busy printer: it stays deferred, since the first deferral
    farm.busy.set_state("IDLE")
    await client.post("/sync/gcode", params={"dry_run": "true"})
    busy = status_by_name((await client.get("/gcode/status")).json())["Busy"]
    assert busy["status"] == "deferred" and busy["deferred_since"] == deferred_since
    assert writes(farm.busy) == []

    # the next real run re-plans it like any other printer
    await client.post("/sync/gcode", params={"dry_run": "false"})
    assert farm.buddy_files(farm.busy) == MASTER
    status = (await client.get("/gcode/status")).json()
    busy = status_by_name(status)["Busy"]
    assert busy["status"] == "synced" and busy["deferred_since"] is None and status["deferred"] == []


async def test_concurrent_applies_upload_each_file_once(farm, tmp_path, client_for):
    farm.busy.set_state("IDLE")
    client = client_for(settings_for(farm, tmp_path, gcode_dry_run=False))
    first, second = await asyncio.gather(client.post("/sync/gcode"), client.post("/sync/gcode"))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    for printer in (farm.ash, farm.bishop, farm.busy):
        assert farm.buddy_files(printer) == MASTER
        assert uploads(printer) == len(MASTER)
    assert farm.moon_files() == MASTER
    assert uploads(farm.klipper) == len(MASTER)
    ok = Counter(
        (p["name"], a["path"])
        for body in (first.json(), second.json())
        for p in body["printers"]
        for a in p["actions"]
        if a["op"] == "upload" and a["result"] == "ok"
    )
    assert set(ok.values()) == {1} and len(ok) == 4 * len(MASTER)
    guarded = [
        a
        for body in (first.json(), second.json())
        for p in body["printers"]
        for a in p["actions"]
        if "write guard" in a["reason"]
    ]
    assert guarded, "both runs planned before either wrote, so the store guard had to decide"


async def test_file_deleted_on_a_printer_is_uploaded_again(farm, tmp_path, client_for):
    client = client_for(settings_for(farm, tmp_path, gcode_dry_run=False))
    assert (await client.post("/sync/gcode")).status_code == 200
    # removed by hand at the printer: a later run must not be blocked by the earlier write's records
    short = farm.ash.short_path("banana.gcode")
    async with httpx.AsyncClient(base_url=farm.ash.url) as by_hand:
        gone = await by_hand.delete(f"/api/v1/files/usb/{short}", headers={"X-Api-Key": farm.ash.password})
    assert gone.status_code == 204 and "banana.gcode" not in farm.ash.files
    body = (await client.post("/sync/gcode")).json()
    ash = next(p for p in body["printers"] if p["name"] == "Ash")
    assert [(a["op"], a["path"], a["result"]) for a in ash["actions"] if a["op"] != "skip"] == [
        ("upload", "banana.gcode", "ok")
    ]
    assert farm.buddy_files(farm.ash) == MASTER


async def test_pull_mode_by_setting_copies_printer_only_files(farm, tmp_path, client_for):
    farm.ash.add_file("sliced/by-hand.gcode", b"G1 uploaded through the printer's UI\n")
    client = client_for(settings_for(farm, tmp_path, gcode_dry_run=False, gcode_pull=True))
    response = await client.post("/sync/gcode")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "pull" and body["exit_code"] == 0
    assert (farm.master / "sliced/by-hand.gcode").read_bytes() == b"G1 uploaded through the printer's UI\n"
    for printer in (farm.ash, farm.bishop, farm.busy, farm.klipper):
        assert writes(printer) == []
    entry = status_by_name((await client.get("/gcode/status")).json())["Ash"]
    assert entry["mode"] == "pull" and entry["summary"] == "1 pulled"


async def test_missing_source_dir_is_503_naming_the_setting(farm, tmp_path, client_for):
    client = client_for(settings_for(farm, tmp_path, gcode_source_dir=None))
    response = await client.post("/sync/gcode")
    assert response.status_code == 503
    assert any("GCODE_SOURCE_DIR" in line for line in response.json()["problems"])
    assert (await client.post("/sync/gcode", headers={"X-Service-Token": "wrong"})).status_code == 401
    bad = await client.post("/sync/gcode", params={"dry_run": "maybe"})
    assert bad.status_code == 422 and bad.json()["field"] == "dry_run"


async def test_tick_function_target_takes_a_cloudevent_and_uses_settings(farm, tmp_path, client_for):
    router = single("POST", gcode.tick, "service")

    async def endpoint(request: Request) -> Any:
        return await router.dispatch(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    client = client_for(settings_for(farm, tmp_path), app)
    event = {"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished", "data": {}}
    response = await client.post("/", json=event, headers={"ce-id": "1", "ce-source": "//pubsub"})
    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True
    for printer in (farm.ash, farm.bishop, farm.klipper):
        assert writes(printer) == []
