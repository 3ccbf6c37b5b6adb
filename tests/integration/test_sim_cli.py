"""``python -m farmsync_sim.cli`` serves a seeded farm and announces it on its first stdout line."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmsync_sim.scenarios import SCENARIO_DIR
from tests.fixtures.signals import ctrl_c_as_in_a_terminal


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    args = ["--scenario", str(SCENARIO_DIR / "tiny.json"), "--seed", "5", "--auth", "--api-version", "450"]
    process = subprocess.Popen(
        [sys.executable, "-m", "farmsync_sim.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the sim printed nothing within 20 s"
        assert process.stdout is not None
        yield process, json.loads(process.stdout.readline())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


def test_first_line_describes_a_working_farm(
    sim_process: tuple[subprocess.Popen[str], dict[str, Any]],
) -> None:
    process, info = sim_process
    assert info["BAMBUDDY_BASE_URL"].startswith("http://127.0.0.1:") and info["BAMBUDDY_BASE_URL"].endswith(
        "/api/v1"
    )
    assert info["BAMBUDDY_API_KEY"].startswith("bb_") and info["INVENTREE_TOKEN"].startswith("inv-")
    assert info["scenario"] == "tiny" and info["auth"] is True and info["api_version"] == 450
    for key in ("INVENTREE_PART_CATEGORY_ID", "INVENTREE_STOCK_LOCATION_ID", "FILAMENT_PART_CATEGORY_ID"):
        assert isinstance(info[key], int)

    bambuddy = info["BAMBUDDY_BASE_URL"]
    assert httpx.get(f"{bambuddy}/printers/").status_code == 401
    printers = httpx.get(f"{bambuddy}/printers/", headers={"X-API-Key": info["BAMBUDDY_API_KEY"]})
    assert printers.status_code == 200 and printers.json()[0]["name"]
    log = httpx.get(f"{bambuddy}/print-log/", headers={"X-API-Key": info["BAMBUDDY_API_KEY"]}).json()
    assert log["total"] == 4

    inventree = info["INVENTREE_BASE_URL"]
    headers = {"Authorization": f"Token {info['INVENTREE_TOKEN']}"}
    assert httpx.get(f"{inventree}/api/").json()["apiVersion"] == 450
    category = httpx.get(
        f"{inventree}/api/part/category/{info['INVENTREE_PART_CATEGORY_ID']}/", headers=headers
    )
    assert category.status_code == 200

    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0  # seconds on an idle machine; generous for a loaded 2-core CI box


def test_sigterm_stops_it(sim_process: tuple[subprocess.Popen[str], dict[str, Any]]) -> None:
    process, info = sim_process
    process.terminate()
    assert process.wait(30) == 0  # seconds on an idle machine; generous for a loaded 2-core CI box
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{info['INVENTREE_BASE_URL']}/api/", timeout=1)


def test_printers_to_try_the_mirror_on(
    sim_process: tuple[subprocess.Popen[str], dict[str, Any]], tmp_path: Path
) -> None:
    """The first line names a ready printers.yml and master folder: `farmsync gcode` works with no Python written."""
    process, info = sim_process
    config, master = Path(info["GCODE_PRINTERS_FILE"]), Path(info["GCODE_SOURCE_DIR"])
    assert config.is_file() and any(master.rglob("*.gcode"))
    kinds = {p["kind"] for p in info["printers"]}
    assert kinds == {"prusalink", "moonraker"} and len(info["printers"]) >= 4
    assert [p["name"] for p in info["printers"] if p["state"].upper() == "PRINTING"] == ["Bishop"]
    assert all(
        0 < p["bytes_per_second"] <= 8 << 20 for p in info["printers"]
    )  # throttled, like real printers
    assert set(info["printers_not_simulated"]) == {"prusalink-legacy", "octoprint"}

    def farmsync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "farmsync.cli", "gcode", "-c", str(config), "-s", str(master), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "80"},
        )

    go = farmsync("-g")
    assert go.returncode == 0, go.stdout + go.stderr
    assert "deferred: Bishop is PRINTING" in go.stdout
    assert re.search(r"sent \d+ file\(s\), [\d.]+ [KM]iB, to 4 printer\(s\)", go.stdout), go.stdout
    again = farmsync()
    assert again.returncode == 0 and "would send 0 file(s)" in again.stdout, again.stdout
    workdir = config.parent
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    assert not workdir.exists()  # the sim's temporary folder goes with it
