"""`make demo` is the newcomer's first command: `farmsync demo --once` must reach its summary and exit 0."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.fixtures.signals import ctrl_c_as_in_a_terminal


def demo(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "80", "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "farmsync.cli", "demo", "--port", "0", *args],
        text=True,
        cwd=tmp_path,
        env=env,
        preexec_fn=ctrl_c_as_in_a_terminal,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs},  # type: ignore[arg-type]
    )


def test_demo_once_runs_every_step(tmp_path: Path) -> None:
    work = tmp_path / "work"
    process = demo(tmp_path, "--once", "--workdir", str(work))
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stdout + stderr
    for step in (
        "backfill prints → InvenTree",
        "new print via Bambuddy webhook",
        "filament dry run",
        "filament applied",
        "G-code mirror onto 3 printers",
        "dashboard",
    ):
        assert f"✓ {step}" in stdout, stdout
    assert "Bishop deferred" in stdout and "Ash synced" in stdout
    assert "Traceback" not in stdout + stderr
    assert "6 of 6 steps succeeded" in stdout
    assert (
        "http://127.0.0.1:" not in stdout.split("steps succeeded")[1]
    )  # no dead dashboard URL after the run
    flat = " ".join(stdout.split())
    assert f"The demo's data stays in {work}" in flat and "status` reads the store" in flat
    assert (work / "data" / "sync.sqlite3").exists()
    assert (work / "master" / "calibration" / "first_layer.gcode").exists()
    assert max(len(line) for line in stdout.splitlines()) <= 80


def test_demo_once_leaves_no_temporary_folder(tmp_path: Path) -> None:
    process = demo(tmp_path, "--once")
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stdout + stderr
    assert "temporary folder is removed" in " ".join(stdout.split())
    assert list((tmp_path / "tmp").iterdir()) == []


def test_ctrl_c_stops_the_demo_and_removes_its_folder(tmp_path: Path) -> None:
    process = demo(tmp_path, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # A reader thread, not select() on the pipe: readline() buffers whatever the pipe holds, so
    # select() can wait on an empty pipe while the awaited line already sits in Python's buffer.
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True).start()
    seen = ""
    deadline = time.monotonic() + 240
    while "Serving until Ctrl-C" not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen
        try:
            seen += lines.get(timeout=1)
        except queue.Empty:
            continue
    assert "Dashboard: http://127.0.0.1:" in seen  # kept serving: the URL is alive
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("farmsync-demo-")]
    os.kill(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    assert list((tmp_path / "tmp").iterdir()) == []
