"""``farmsync gcode --pull`` with the real back ends against fake Buddy and fake Moonraker printers on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from farmsync.gcode.cli import gcode
from farmsync_sim.fakehttp import Request, Response, as_json
from farmsync_sim.moonraker import FakeMoonraker

WRITE_METHODS = ("PUT", "DELETE", "POST")


def writes(printer: Any) -> list[dict[str, Any]]:
    return [e for e in printer.request_log if e["method"] in WRITE_METHODS]


def printers_yml(path: Path, buddies: dict[str, Any], moonraker: Any | None = None) -> Path:
    text = "".join(
        f"{name}:\n  printer_type: MK4\n  host: {p.url}\n  username: maker\n  password: {p.password}\n"
        for name, p in buddies.items()
    )
    if moonraker is not None:
        text += f"Klipper:\n  kind: moonraker\n  host: {moonraker.url}\n  api_key: moonraker-key\n"
    path.write_text(text)
    return path


def pull(tmp_path: Path, config: Path, master: Path, *args: str) -> tuple[int, dict[str, Any]]:
    base = ["-c", str(config), "-s", str(master), "--data-dir", str(tmp_path / "data"), "--pull", "--json"]
    result = CliRunner().invoke(gcode, [*base, *args])
    assert result.exit_code in (0, 2), result.output
    return result.exit_code, json.loads(result.stdout)


def results(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(p["name"], f["path"]): f["result"] for p in report["printers"] for f in p["files"]}


@pytest.fixture
def master(tmp_path: Path) -> Path:
    root = tmp_path / "master"
    (root / "kept").mkdir(parents=True)
    (root / "kept/a.gcode").write_bytes(b"G1 in the master\n")
    return root


def test_pull_from_buddy_and_moonraker(tmp_path, master, fake_buddy: Callable[..., Any], fake_moonraker):
    ash = fake_buddy(password="pw-ash-1234", name="Ash")
    bishop = fake_buddy(password="pw-bishop-1234", name="Bishop")
    ash.add_file("kept/a.gcode", b"G1 in the master\n")
    ash.add_file("by hand/ash only.gcode", b"G1 uploaded through Ash's UI\n" * 50, mtime=1_800_000_000)
    for printer in (ash, bishop):
        printer.add_file("shared.gcode", b"G1 on two printers, same bytes\n")
    fake_moonraker.add_file("klipper/only.gcode", b"G1 sliced for the Voron\n")
    ash.add_file("clash.gcode", b"G1 Ash's clash\n")
    fake_moonraker.add_file("clash.gcode", b"G1 the Voron's longer clash\n")
    config = printers_yml(tmp_path / "printers.yml", {"Ash": ash, "Bishop": bishop}, fake_moonraker)

    code, dry = pull(tmp_path, config, master)
    assert code == 2 and dry["dry_run"] is True  # the clash is a conflict already in the dry run
    assert sorted(p.relative_to(master).as_posix() for p in master.rglob("*")) == ["kept", "kept/a.gcode"]

    code, report = pull(tmp_path, config, master, "-g")
    assert code == 2
    got = results(report)
    assert got[("Ash", "by hand/ash only.gcode")] == "pulled"
    assert got[("Klipper", "klipper/only.gcode")] == "pulled"
    assert {got[("Ash", "shared.gcode")], got[("Bishop", "shared.gcode")]} == {"pulled", "skipped"}
    assert got[("Ash", "kept/a.gcode")] == "skipped"
    assert got[("Ash", "clash.gcode")] == got[("Klipper", "clash.gcode")] == "conflict"
    assert (master / "by hand/ash only.gcode").read_bytes() == b"G1 uploaded through Ash's UI\n" * 50
    assert (master / "by hand/ash only.gcode").stat().st_mtime == 1_800_000_000
    assert (master / "klipper/only.gcode").read_bytes() == b"G1 sliced for the Voron\n"
    assert (master / "shared.gcode").read_bytes() == b"G1 on two printers, same bytes\n"
    assert not (master / "clash.gcode").exists()
    (conflict,) = report["conflicts"]
    assert {(c["where"], c["size"]) for c in conflict["copies"]} == {("Ash", 15), ("Klipper", 28)}
    assert all(c["mtime"] for c in conflict["copies"])
    for printer in (ash, bishop, fake_moonraker):
        assert writes(printer) == []
    # each back end's download route: Buddy's refs.download (/usb/<8.3 path>), Moonraker's /server/files/gcodes
    assert any(e["method"] == "GET" and e["path"].startswith("/usb/") for e in ash.request_log)
    assert any(e["path"].startswith("/server/files/gcodes/klipper/") for e in fake_moonraker.request_log)
    assert not list(master.rglob("*.farmsync-part"))

    # pulled files are in the master now: a second pull has nothing new, only the conflict again
    code, again = pull(tmp_path, config, master, "-g")
    assert code == 2 and "pulled" not in results(again).values()


def test_same_size_different_content_is_found_by_downloading(tmp_path, master, fake_buddy, fake_moonraker):
    ash = fake_buddy(password="pw-ash-1234", name="Ash")
    ash.add_file("x.gcode", b"G1 AAAA\n")
    fake_moonraker.add_file("x.gcode", b"G1 BBBB\n")
    config = printers_yml(tmp_path / "printers.yml", {"Ash": ash}, fake_moonraker)
    code, report = pull(tmp_path, config, master, "-g")
    assert code == 2
    (conflict,) = report["conflicts"]
    assert conflict["reason"] == "printers hold different files at this path"
    assert len({c["sha256"] for c in conflict["copies"]}) == 2
    assert sorted(p.relative_to(master).as_posix() for p in master.rglob("*")) == ["kept", "kept/a.gcode"]


class HostileMoonraker(FakeMoonraker):
    """Lists names that try to climb out of the gcodes root, and serves content for them if asked."""

    EVIL = ("../../escape.gcode", "/etc/escape.gcode", "ok/../../../escape.gcode")

    async def handle(self, request: Request) -> Response:
        if request.path == "/server/files/list":
            items = [{"path": p, "modified": 1.0, "size": 4, "permissions": "rw"} for p in self.EVIL]
            return as_json(200, {"result": items})
        if request.path.startswith("/server/files/gcodes/"):
            return Response(200, b"evil", {"Content-Type": "application/octet-stream"})
        return await super().handle(request)


def test_traversal_names_from_a_printer_write_nothing_outside_the_master(tmp_path, master):
    hostile = HostileMoonraker(api_key="moonraker-key", spool_dir=tmp_path / "hostile")
    hostile.start()
    try:
        config = printers_yml(tmp_path / "printers.yml", {}, hostile)
        before = sorted(p for p in tmp_path.rglob("*") if "data" not in p.parts and "hostile" not in p.parts)
        code, report = pull(tmp_path, config, master, "-g")
    finally:
        hostile.stop()
    after = sorted(p for p in tmp_path.rglob("*") if "data" not in p.parts and "hostile" not in p.parts)
    assert after == before
    assert not (tmp_path.parent / "escape.gcode").exists() and not (tmp_path / "escape.gcode").exists()
    (klipper,) = report["printers"]
    assert klipper["files"] == []
    assert len(klipper["warnings"]) == len(HostileMoonraker.EVIL)  # the back end refused each name
    assert not any(e["path"].startswith("/server/files/gcodes/") for e in hostile.request_log)
    assert code == 0
