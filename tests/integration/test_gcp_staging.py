"""The source deploy/gcp/stage.sh stages is all Cloud Functions gets: main.py, farmsync/ beside it and
requirements.txt. Here every target is loaded from the staged folder by functions-framework in an interpreter whose
sys.path holds only the standard library and the installed requirements (no repository shared/, no editable
install of farmsync), against the Firestore emulator like in the cloud, and must answer /health."""

from __future__ import annotations

import contextlib
import filecmp
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.emulator import PROJECT

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("app", "api", "webhook", "backfill_tick", "filament_tick", "gcode_tick")
SITE = sysconfig.get_paths()["purelib"]  # the requirements, installed in the test virtualenv
pytestmark = pytest.mark.slow

# -I: no PYTHON* variables, no cwd on sys.path; -S: no site, so no .pth file runs (the editable install of farmsync
# is one). The requirements' folder is added as a plain path; functions-framework adds the staged folder itself.
CLEAN = f"import sys; sys.path.append({SITE!r}); "


def clean_python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", CLEAN + code, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stage(out: Path) -> Path:
    result = subprocess.run(
        [str(ROOT / "deploy/gcp/stage.sh"), str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return out


def test_stage_holds_exactly_what_the_functions_need(tmp_path: Path) -> None:
    staged = stage(tmp_path / "gcp")
    assert sorted(p.name for p in staged.iterdir()) == [
        ".farmsync-stage",
        ".gcloudignore",
        "farmsync",
        "main.py",
        "requirements.txt",
    ]
    assert filecmp.cmp(staged / "main.py", ROOT / "functions/main.py", shallow=False)
    assert filecmp.cmp(staged / "requirements.txt", ROOT / "requirements.txt", shallow=False)
    for data in ("web/templates/dashboard.css", "web/openapi.json", "py.typed"):
        assert (staged / "farmsync" / data).is_file(), data
    assert not list(staged.rglob("__pycache__")) and not list(staged.rglob("*.pyc"))
    # the simulator and the demo are their own distribution (shared/farmsync_sim): not a line of it is uploaded
    assert not [p for p in staged.rglob("*") if p.name in ("sim", "farmsync_sim", "demo.py")]
    importing = [
        p
        for p in staged.rglob("*.py")
        if re.search(r"^\s*(from|import)\s+farmsync_sim\b", p.read_text(), re.M)
    ]
    assert not importing, importing
    assert "functions-framework==" in (staged / "requirements.txt").read_text()
    # a second run replaces its own folder; a folder it did not make is refused
    stage(staged)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    refused = subprocess.run(
        [str(ROOT / "deploy/gcp/stage.sh"), str(foreign)], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "refusing" in refused.stderr
    assert (foreign / "keep.txt").read_text() == "mine"


def test_every_target_starts_from_the_staged_folder_alone(
    tmp_path: Path, firestore_emulator_host: str
) -> None:
    staged = stage(tmp_path / "gcp")
    # the proof that nothing else can supply farmsync: without the staged folder the import fails
    control = subprocess.run(clean_python("import farmsync"), capture_output=True, text=True, cwd=staged)
    assert control.returncode == 1 and "No module named 'farmsync'" in control.stderr, control.stderr
    found = subprocess.run(
        clean_python(f"sys.path.append({str(staged)!r}); import farmsync; print(farmsync.__file__)"),
        capture_output=True,
        text=True,
        cwd=staged,
    )
    assert found.stdout.strip() == str(staged / "farmsync/__init__.py"), found.stderr

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "STORE_BACKEND": "firestore",
        "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
        "FIRESTORE_PROJECT_ID": PROJECT,
        "FIRESTORE_COLLECTION_PREFIX": f"stage{os.getpid()}",
        "LOG_FORMAT": "json",
    }
    ports = {target: free_port() for target in TARGETS}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for target in TARGETS:
            with (tmp_path / f"{target}.log").open("wb") as log:
                procs[target] = subprocess.Popen(
                    clean_python(
                        "from functions_framework._cli import _cli; _cli(prog_name='functions-framework')",
                        f"--target={target}",
                        f"--source={staged / 'main.py'}",
                        "--host=127.0.0.1",
                        f"--port={ports[target]}",
                    ),
                    cwd=staged,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        pending = set(TARGETS)
        deadline = time.monotonic() + 45
        while pending:
            for target in sorted(pending):
                if procs[target].poll() is not None:
                    output = (tmp_path / f"{target}.log").read_text(errors="replace")
                    raise AssertionError(f"{target} exited:\n{output}")
                try:
                    health = httpx.get(f"http://127.0.0.1:{ports[target]}/health", timeout=2)
                except httpx.HTTPError:
                    continue
                assert health.status_code == 200, (target, health.text)
                assert health.json()["store"] == "firestore", (target, health.text)
                pending.discard(target)
            assert time.monotonic() < deadline, f"not answering /health: {sorted(pending)}"
            time.sleep(0.1)
        # the dashboard reads its CSS as package data of the staged farmsync
        page = httpx.get(f"http://127.0.0.1:{ports['app']}/", timeout=30)
        assert page.status_code == 200 and "<style>" in page.text
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
