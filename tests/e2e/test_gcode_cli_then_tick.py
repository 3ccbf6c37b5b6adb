"""One G-code run: ``farmsync gcode -g`` and then the tick (``POST /sync/gcode``) on the same farm upload each file
once, because both keep the upload manifest and the write guard in the same store.

The farm is fake Buddy printers and a fake Moonraker on 127.0.0.1, driven by the real back ends. The command line
runs as a user with no settings would run it (``--data-dir`` only: the SQLite store there); the tick is the
``farmsync serve`` app with DATA_DIR set to the same folder. Between the two, the master folder is copied anew
(every file's time moves on, its content does not): only the manifest can tell that nothing changed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from farmsync.gcode.cli import gcode
from farmsync.services import Services, set_services
from farmsync.web.serve import create_app
from tests.e2e.test_gcode_service import HEADERS, MASTER, Farm, settings_for, uploads

LATER = 2_000_000_000.0  # 2033: long after any upload of this test


def touch_master(master: Path) -> None:
    for path in master.rglob("*.gcode"):
        os.utime(path, (LATER, LATER))


def upload_counts(farm: Farm) -> dict[str, int]:
    return {"Ash": uploads(farm.ash), "Bishop": uploads(farm.bishop), "Klipper": uploads(farm.klipper)}


async def post_tick(services: Services) -> httpx.Response:
    set_services(services)
    transport = httpx.ASGITransport(app=create_app(services, schedule=False))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=HEADERS
        ) as client:
            return await client.post("/sync/gcode", params={"dry_run": "false"})
    finally:
        set_services(None)


def test_cli_mirror_then_tick_uploads_nothing_twice(
    tmp_path: Path, fake_buddy: Callable[..., Any], fake_moonraker: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("STORE_BACKEND", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    farm = Farm(tmp_path, fake_buddy, fake_moonraker)
    data = tmp_path / "data"

    cli = CliRunner().invoke(
        gcode, ["-c", str(farm.printers_file), "-s", str(farm.master), "--data-dir", str(data), "-g"]
    )
    assert cli.exit_code == 0, cli.output
    after_cli = upload_counts(farm)
    assert after_cli == {"Ash": len(MASTER), "Bishop": len(MASTER), "Klipper": len(MASTER)}

    touch_master(farm.master)
    services = Services(settings_for(farm, tmp_path, data_dir=data))
    try:
        response = asyncio.run(post_tick(services))
    finally:
        services.sync_store.close()

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exit_code"] == 0
    assert upload_counts(farm) == after_cli, "the tick uploaded again what the command line had uploaded"
    done = {p["name"]: {a["op"] for a in p["actions"]} for p in body["printers"] if p["status"] == "synced"}
    assert done == {"Ash": {"skip"}, "Bishop": {"skip"}, "Klipper": {"skip"}}
