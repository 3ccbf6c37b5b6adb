"""`make demo` is the newcomer's first command: `farmsync demo --once` must reach its summary and exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_once_runs_every_step(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "farmsync.cli", "demo", "--once", "--port", "0", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "backfill prints → InvenTree",
        "new print via Bambuddy webhook",
        "filament dry run",
        "filament applied",
        "G-code mirror onto 3 printers",
        "dashboard",
    ):
        assert f"✓ {step}" in out, out
    assert "Bishop deferred" in out and "Ash synced" in out and "Dashboard: http://127.0.0.1:" in out
    assert "Traceback" not in result.stdout + result.stderr
    assert (tmp_path / "data" / "sync.sqlite3").exists()
    assert (tmp_path / "master" / "calibration" / "first_layer.gcode").exists()
