"""``farmsync gcode --pull`` through click's CliRunner, with in-memory printers injected through GcodeDeps."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from farmsync.gcode.cli import GcodeDeps, gcode
from tests.fixtures.manifest import MemoryManifestStore
from tests.unit.gcode_fakes import T0, FakeFarm, FakePrinter, write_tree

NAMES = ("Ash", "Bishop", "Call")


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "printers.yml"
    config.write_text(
        "".join(
            f"{name}:\n  printer_type: MK4\n  host: http://127.0.0.1:{8101 + i}\n  username: maker\n"
            f"  password: secret-{name}\n"
            for i, name in enumerate(NAMES)
        )
    )
    source = tmp_path / "usb"
    write_tree(source, {"b.gcode": "G1 b\n"}, mtime=T0)
    farm = FakeFarm(FakePrinter(n, listing="sizes") for n in NAMES)
    farm["Ash"].add("ash-only.gcode", "G1 sliced on Ash\n", mtime=T0 + 60)
    deps = GcodeDeps(backend_factory=farm.factory, manifest=MemoryManifestStore())
    return tmp_path, config, source, farm, deps


def invoke(setup, *args: str):
    tmp_path, config, source, _, deps = setup
    base = ["-c", str(config), "-s", str(source), "--data-dir", str(tmp_path / "data"), "--pull"]
    return CliRunner().invoke(gcode, [*base, *args], obj=deps)


def test_pull_is_a_dry_run_by_default(setup):
    result = invoke(setup)
    assert result.exit_code == 0, result.output
    assert "ash-only.gcode" in result.stdout and "dry run" in result.stdout
    assert not (setup[2] / "ash-only.gcode").exists()


def test_pull_go_json_reports_per_printer_and_file(setup):
    result = invoke(setup, "-g", "--json", "-p", "Ash", "Bishop")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "pull" and data["dry_run"] is False and data["excluded"] == ["Call"]
    ash = next(p for p in data["printers"] if p["name"] == "Ash")
    (file,) = ash["files"]
    assert (file["path"], file["result"], file["target"], file["source"]) == (
        "ash-only.gcode",
        "pulled",
        "ash-only.gcode",
        "Ash",
    )
    assert (setup[2] / "ash-only.gcode").read_bytes() == b"G1 sliced on Ash\n"
    assert setup[3].constructed == ["Ash", "Bishop"]


def test_conflict_exits_2_and_shows_both_copies(setup):
    setup[3]["Bishop"].add("ash-only.gcode", "G1 Bishop's different file\n", mtime=T0 + 120)
    result = invoke(setup, "-g")
    assert result.exit_code == 2, result.output
    assert "conflict" in result.stdout
    assert "Ash: ash-only.gcode, 17 bytes" in result.stdout
    assert "Bishop: ash-only.gcode, 27 bytes" in result.stdout
    assert not (setup[2] / "ash-only.gcode").exists()


def test_pull_keeps_link_sync_usage_rules(setup):
    assert invoke(setup, "-p", "Nobody").exit_code == 1
    assert invoke(setup, "-d", "../up").exit_code == 1


def test_pull_summary_fits_80_columns_without_cutting_names(setup):
    tmp_path, config, source, _, deps = setup
    args = ["-c", str(config), "-s", str(source), "--data-dir", str(tmp_path / "data"), "--pull"]
    result = CliRunner().invoke(gcode, args, obj=deps, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out  # was print…/prusa…/dry_r…
    assert "Ash prusalink" in out and "dry run" in out and "1 to pull" in out
    assert f"would pull 1 file(s), 17 B, into {source}" in " ".join(out.split())
