"""Cold start (#17 target 7) and the ``farmsync gcode --json`` run load only what they use.

Each check is a fresh interpreter that loads an entry point the way production does and reports which modules
it imported; nothing is timed. The figures these guard are in bench/cold_start.py and the report of #17.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "main.py"
NEVER = ("rich", "pygments")
"""httpx's command-line client imports these (and click); farmsync draws nothing on these paths."""

FEATURES = {
    "prints": ("farmsync.prints", "farmsync.web.handlers.prints"),
    "filament": ("farmsync.filament", "farmsync.web.handlers.filament"),
    "gcode": ("farmsync.gcode", "farmsync.web.handlers.gcode"),
}
TARGETS = {"webhook": "prints", "backfill_tick": "prints", "filament_tick": "filament", "gcode_tick": "gcode"}

TARGET = """
import asyncio, http.server, json, sys, threading
from functions_framework import create_app

app = create_app(sys.argv[1], sys.argv[2])
import httpx  # after the entry point, as in a deployment: the harness must not decide what httpx loads

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client:
        health = await client.get("/health")
        work = await client.post("/", headers={"X-Service-Token": "t0ken-for-the-test"}) if sys.argv[3] else None
    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plain = httpx.get(f"http://127.0.0.1:{server.server_port}/", timeout=10)
    server.shutdown()
    print(json.dumps({
        "health": health.status_code,
        "work": None if work is None else [work.status_code, work.json()],
        "plain": [plain.status_code, plain.text],
        "httpx_main_absent": sys.modules.get("httpx._main", "missing") is None,
        "httpx_main_callable": callable(httpx.main),
        "modules": sorted(sys.modules),
    }))

asyncio.run(main())
"""


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FIRESTORE", "GCODE_", "FILAMENT_", "NOTIFY"))
    }
    return {**env, "FARMSYNC_ENV_FILE": "/dev/null", "DATA_DIR": str(tmp_path / "data"), **extra}


def loaded_by(target: str, tmp_path: Path, *, work: bool = False, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", TARGET, target, str(SOURCE), "work" if work else ""],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(tmp_path, **env),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in prefixes or m.startswith(tuple(p + "." for p in prefixes))]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_function_target_loads_its_own_feature_only_and_no_terminal_libraries(
    target: str, tmp_path: Path
) -> None:
    seen = loaded_by(target, tmp_path)
    assert seen["health"] == 200
    others = tuple(m for feature, ms in FEATURES.items() if feature != TARGETS[target] for m in ms)
    assert imported(seen["modules"], others) == []
    assert imported(seen["modules"], NEVER) == []


def test_httpx_still_works_without_its_command_line_client(tmp_path: Path) -> None:
    """The entry point marks httpx._main absent: httpx must still import, answer, and keep a ``main``."""
    seen = loaded_by("webhook", tmp_path)
    assert seen["httpx_main_absent"] and seen["httpx_main_callable"]
    assert seen["plain"] == [200, "hello"]
    assert "httpx" in seen["modules"] and "click" in seen["modules"]  # flask's; only httpx's CLI was skipped


def farm(tmp_path: Path) -> tuple[Path, Path]:
    """printers.yml with one printer nobody answers for (127.0.0.1:9, the discard port), and a master."""
    printers = tmp_path / "printers.yml"
    printers.write_text(
        "P1:\n  printer_type: MK4\n  host: http://127.0.0.1:9\n  username: maker\n  password: pw-cold\n",
        encoding="utf-8",
    )
    source = tmp_path / "master"
    source.mkdir(exist_ok=True)
    (source / "benchy.gcode").write_bytes(b"G28\n")
    return printers, source


def test_the_gcode_tick_runs_without_rich_pulls_or_notify(tmp_path: Path) -> None:
    printers, source = farm(tmp_path)
    seen = loaded_by(
        "gcode_tick",
        tmp_path,
        work=True,
        SERVICE_API_TOKEN="t0ken-for-the-test",
        GCODE_PRINTERS_FILE=str(printers),
        GCODE_SOURCE_DIR=str(source),
    )
    status, report = seen["work"]
    assert status == 200 and report["printers"][0]["name"] == "P1", report
    assert report["printers"][0]["status"] == "failed"  # it ran, against a printer that is not there
    unwanted = (
        *NEVER,
        "farmsync.notify",
        "farmsync.gcode.pull",
        "farmsync.gcode.pull_report",
        "farmsync.filament",
    )
    assert imported(seen["modules"], unwanted) == []


CLI = """
import atexit, gc, json, sys

def report():
    print(json.dumps({
        "modules": sorted(sys.modules),
        "httpx_main_absent": sys.modules.get("httpx._main", "missing") is None,
        "frozen": gc.get_freeze_count(),
    }), file=sys.stderr)

atexit.register(report)  # before the command's own: it runs after them
from farmsync.cli import main
main(sys.argv[1:])
"""


def cli_run(tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    printers, source = farm(tmp_path)
    argv = ["gcode", "-c", str(printers), "-s", str(source), "--data-dir", str(tmp_path / "data"), *args]
    done = subprocess.run(
        [sys.executable, "-c", CLI, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        check=False,
    )
    return done.returncode, done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_farmsync_gcode_json_loads_neither_the_pull_nor_notify_nor_rich(tmp_path: Path) -> None:
    code, out, seen = cli_run(tmp_path, "--json")
    assert code == 2 and json.loads(out)["printers"][0]["status"] == "failed"  # the run happened
    unwanted = (*NEVER, "farmsync.notify", "farmsync.gcode.pull", "farmsync.gcode.pull_report")
    assert imported(seen["modules"], unwanted) == []
    assert "httpx" in seen["modules"] and seen["httpx_main_absent"]
    assert seen["frozen"] > 0  # the exit skips the final collection (farmsync.startup)


def test_a_pull_and_a_real_run_still_load_what_they_draw(tmp_path: Path) -> None:
    """The other side of the test above: what was made lazy is still loaded where it is used."""
    _, _, pulled = cli_run(tmp_path, "--json", "--pull")
    assert "farmsync.gcode.pull_report" in pulled["modules"]
    _, _, real = cli_run(tmp_path, "--json", "-g")  # the progress bars are drawn on stderr
    assert "farmsync.gcode.progress" in real["modules"] and "rich" in real["modules"]
