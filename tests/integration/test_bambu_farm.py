"""``farmsync gcode`` (mirror and --pull) onto fake Bambu printers, alone and in a mixed farm with Buddy and
Moonraker fakes and a real OctoPrint, all on 127.0.0.1 in one run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from farmsync.gcode.cli import gcode
from farmsync_sim.moonraker import FakeMoonraker
from tests.fixtures.bambu import FakeBambuFactory
from tests.printers.fake_bambu import FakeBambu, Pki
from tests.printers.octoprint_server import OctoPrintServer

WRITES = ("STOR", "DELE", "MKD", "RMD", "RNFR", "RNTO")
SUFFIXES = ("--suffix", ".gcode", "--suffix", ".3mf", "--suffix", ".bgcode")


def ftp_writes(fake: FakeBambu) -> list[str]:
    return [c for c in fake.commands if c.split(" ", 1)[0] in WRITES]


def printers_yml(
    path: Path,
    bambus: dict[str, FakeBambu],
    *,
    ca: Path | None = None,
    buddies: dict[str, Any] | None = None,
    moonraker: FakeMoonraker | None = None,
    octoprint: tuple[str, str, str] | None = None,
) -> Path:
    text = "".join(fake.printers_yml(name, ca_bundle=ca) for name, fake in bambus.items())
    for name, buddy in (buddies or {}).items():
        text += f"{name}:\n  printer_type: MK4\n  host: {buddy.url}\n  username: maker\n  password: {buddy.password}\n"
    if moonraker is not None:
        text += f"Voron:\n  kind: moonraker\n  host: {moonraker.url}\n  api_key: moonraker-key\n"
    if octoprint is not None:
        url, key, folder = octoprint
        text += f"Octo:\n  kind: octoprint\n  host: {url}\n  api_key: {key}\n  destination: {folder}\n"
    path.write_text(text)
    return path


def run(tmp_path: Path, config: Path, master: Path, *args: str) -> tuple[int, dict[str, Any]]:
    base = ["-c", str(config), "-s", str(master), "--data-dir", str(tmp_path / "data"), "--json", *SUFFIXES]
    result = CliRunner().invoke(gcode, [*base, *args])
    assert result.exit_code in (0, 2), result.output
    return result.exit_code, json.loads(result.stdout)


def _octo_paths(entries: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for entry in entries:
        if entry.get("type") == "folder":
            found += _octo_paths(entry.get("children") or [])
        else:
            found.append(entry["path"])
    return found


def by_printer(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["printers"]}


def ops(printer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {a["path"]: (a["op"], a["result"]) for a in printer["actions"]}


@pytest.fixture
def master(tmp_path: Path) -> Path:
    root = tmp_path / "master"
    files = {
        "brackets/wall mount.gcode.3mf": b"PK\x03\x04 a sliced project " * 2000,
        "plate.3mf": b"PK\x03\x04 an unsliced project " * 500,
        "calibration/flow.gcode": b"G28\nG1 X10\n" * 300,
        "for prusa/benchy.bgcode": b"GCDE binary G-code" * 100,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_dry_run_mirror_noop_and_changed_content(
    tmp_path: Path, master: Path, fake_bambu: FakeBambuFactory, bambu_pki: Pki
) -> None:
    x1 = fake_bambu(push_interval=30.0)
    p1 = fake_bambu(model="P1S", serial="01P00A000000001", push_interval=30.0)
    for fake in (x1, p1):
        fake.add_file("farmsync/old.gcode.3mf", b"a file the master no longer has")
        fake.add_file("cache/cloud.3mf", b"from the cloud")
        fake.add_file("Studio upload.gcode.3mf", b"sent by Bambu Studio")
    config = printers_yml(tmp_path / "printers.yml", {"B1-X1-CARBON": x1, "B2-P1S": p1}, ca=bambu_pki.ca_pem)

    code, dry = run(tmp_path, config, master)
    assert code == 0 and dry["dry_run"]
    for name, printer in by_printer(dry).items():
        assert printer["status"] == "dry_run", name
        assert ops(printer) == {
            "old.gcode.3mf": ("delete", "planned"),
            "brackets/wall mount.gcode.3mf": ("upload", "planned"),
            "plate.3mf": ("upload", "planned"),
            "calibration/flow.gcode": ("upload", "planned"),
        }  # the .bgcode is for the Prusa printers: a Bambu printer cannot start it
    assert ftp_writes(x1) == ftp_writes(p1) == []

    code, report = run(tmp_path, config, master, "-g")
    assert code == 0, report
    for fake in (x1, p1):
        assert fake.files("farmsync") == {
            f"farmsync/{rel}": (master / rel).read_bytes()
            for rel in ("brackets/wall mount.gcode.3mf", "plate.3mf", "calibration/flow.gcode")
        }
        assert fake.files("cache") == {"cache/cloud.3mf": b"from the cloud"}
        assert fake.files()["Studio upload.gcode.3mf"] == b"sent by Bambu Studio"
    assert {p["status"] for p in report["printers"]} == {"synced"}

    code, again = run(tmp_path, config, master, "-g")
    assert code == 0
    for printer in again["printers"]:
        assert {op for op, _ in ops(printer).values()} == {"skip"}
    stores = sum(1 for c in x1.commands if c.startswith("STOR"))

    # same size, new content, and an old mtime: only the manifest's sha256 can tell
    plate = master / "plate.3mf"
    plate.write_bytes(plate.read_bytes().replace(b"unsliced", b"re-sliced"))
    os.utime(plate, (1_000_000_000, 1_000_000_000))
    code, changed = run(tmp_path, config, master, "-g")
    assert code == 0
    for printer in changed["printers"]:
        assert ops(printer)["plate.3mf"] == ("replace", "ok")
    assert sum(1 for c in x1.commands if c.startswith("STOR")) == stores + 1
    assert x1.files("farmsync")["farmsync/plate.3mf"] == plate.read_bytes()


def test_busy_printer_is_deferred_and_an_unreachable_one_fails_alone(
    tmp_path: Path, master: Path, fake_bambu: FakeBambuFactory
) -> None:
    idle = fake_bambu(serial="01S00C000000001", push_interval=30.0)
    busy = fake_bambu(serial="01S00C000000002", push_interval=30.0)
    gone = fake_bambu(serial="01S00C000000003", push_interval=30.0)
    busy.set_state("RUNNING", "/sdcard/farmsync/plate.3mf")
    config = printers_yml(tmp_path / "printers.yml", {"B1": idle, "B2": busy, "B3": gone})
    gone.stop()

    code, report = run(tmp_path, config, master, "-g")
    assert code == 2
    printers = by_printer(report)
    assert printers["B1"]["status"] == "synced" and len(idle.files("farmsync")) == 3
    assert printers["B2"]["status"] == "deferred" and printers["B2"]["state"] == "RUNNING"
    assert ftp_writes(busy) == [] and not any(c.startswith("LIST") for c in busy.commands)
    assert printers["B3"]["status"] == "failed" and "MQTT" in printers["B3"]["error"]
    assert gone.access_code not in json.dumps(report)


def test_pull_from_bambu_printers(tmp_path: Path, master: Path, fake_bambu: FakeBambuFactory) -> None:
    x1 = fake_bambu(push_interval=30.0)
    x1.add_file("farmsync/by hand/sliced at the printer.gcode.3mf", b"PK only on the printer")
    x1.add_file("farmsync/plate.3mf", (master / "plate.3mf").read_bytes())
    x1.add_file("Studio upload.gcode.3mf", b"outside the mirror's folder")
    config = printers_yml(tmp_path / "printers.yml", {"B1": x1})

    code, report = run(tmp_path, config, master, "--pull", "-g")
    assert code == 0, report
    results = {f["path"]: f["result"] for p in report["printers"] for f in p["files"]}
    assert results == {"by hand/sliced at the printer.gcode.3mf": "pulled", "plate.3mf": "skipped"}
    assert (master / "by hand/sliced at the printer.gcode.3mf").read_bytes() == b"PK only on the printer"
    assert not (master / "Studio upload.gcode.3mf").exists()
    assert ftp_writes(x1) == []


def test_mixed_farm_mirror_and_pull_in_one_run(
    tmp_path: Path,
    master: Path,
    fake_bambu: FakeBambuFactory,
    fake_buddy: Callable[..., Any],
    fake_moonraker: FakeMoonraker,
    bambu_pki: Pki,
    real_octoprint: OctoPrintServer,
) -> None:
    x1 = fake_bambu(push_interval=30.0)
    a1 = fake_bambu(model="A1", serial="03919A000000001", push_interval=30.0)
    mk4 = fake_buddy(password="pw-mk4-1234", name="MK4")
    config = printers_yml(
        tmp_path / "printers.yml",
        {"B1-X1-CARBON": x1, "B3-A1": a1},
        ca=bambu_pki.ca_pem,
        buddies={"MK4": mk4},
        moonraker=fake_moonraker,
        octoprint=(real_octoprint.url, real_octoprint.api_key, f"mixed-{tmp_path.name}"),
    )
    code, report = run(tmp_path, config, master, "-g")
    assert code == 0, report
    assert {p["name"]: p["status"] for p in report["printers"]} == dict.fromkeys(
        ("B1-X1-CARBON", "B3-A1", "MK4", "Voron", "Octo"), "synced"
    )
    bambu_files = {"brackets/wall mount.gcode.3mf", "plate.3mf", "calibration/flow.gcode"}
    for fake in (x1, a1):
        assert {p.removeprefix("farmsync/") for p in fake.files("farmsync")} == bambu_files
    # Buddy takes G-code only: the .3mf projects stay off it, its .bgcode goes on
    assert set(mk4.files) == {"calibration/flow.gcode", "for prusa/benchy.bgcode"}
    assert "calibration/flow.gcode" in fake_moonraker.files
    # a stock OctoPrint stores machine code only (415 for the rest): .3mf and .bgcode stay off it
    listing = httpx.get(
        f"{real_octoprint.url}/api/files/local?recursive=true&force=true",
        headers={"X-Api-Key": real_octoprint.api_key},
        timeout=30,
    ).json()
    on_octo = {path for path in _octo_paths(listing["files"]) if path.startswith(f"mixed-{tmp_path.name}/")}
    assert on_octo == {f"mixed-{tmp_path.name}/calibration/flow.gcode"}, on_octo
    again_code, again = run(tmp_path, config, master, "-g")
    assert again_code == 0 and all(a["op"] == "skip" for p in again["printers"] for a in p["actions"]), again

    # files made at the printers come back into the master in one pull
    a1.add_file("farmsync/from the A1.gcode.3mf", b"PK sliced on the A1")
    fake_moonraker.add_file("from the voron.gcode", b"G1 sliced for the Voron\n")
    code, pulled = run(tmp_path, config, master, "--pull", "-g")
    assert code == 0, pulled
    got = {(p["name"], f["path"]): f["result"] for p in pulled["printers"] for f in p["files"]}
    assert got[("B3-A1", "from the A1.gcode.3mf")] == "pulled"
    assert got[("Voron", "from the voron.gcode")] == "pulled"
    assert (master / "from the A1.gcode.3mf").read_bytes() == b"PK sliced on the A1"
    assert (master / "from the voron.gcode").read_bytes() == b"G1 sliced for the Voron\n"
