"""``validate``'s per-printer checks of Bambu printers, and printers named by their Bambuddy name, against fakes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from farmsync.errors import UpstreamValidation
from farmsync.gcode.cli import gcode
from farmsync.validate import Checks, bambu_printer_checks
from farmsync_sim.server import SimFarm
from tests.fixtures.bambu import FakeBambuFactory
from tests.printers.fake_bambu import Pki


async def test_validate_checks_each_bambu_printer(
    tmp_path: Path, fake_bambu: FakeBambuFactory, bambu_pki: Pki
) -> None:
    good = fake_bambu(serial="01S00C000000011", push_interval=30.0)
    good.add_file("farmsync/a.gcode.3mf", b"PK")
    plain = fake_bambu(serial="01S00C000000012", push_interval=30.0)
    wrong = fake_bambu(serial="01S00C000000013", push_interval=30.0)
    config = tmp_path / "printers.yml"
    config.write_text(
        good.printers_yml("B1-X1-CARBON", ca_bundle=bambu_pki.ca_pem)
        + plain.printers_yml("B2-X1-CARBON")
        + wrong.printers_yml("B3-X1-CARBON").replace(wrong.access_code, "99999999")
        + "MK4:\n  printer_type: MK4\n  host: http://127.0.0.1:9\n  password: not-contacted\n"
    )
    checks = Checks()
    await bambu_printer_checks(checks, config, settings=None, timeout=10.0)
    found = {item["check"]: (item["level"], item["message"]) for item in checks.items}
    assert found["B1-X1-CARBON tls"] == ("ok", f"TLS 1.2; certificate verified for serial {good.serial}")
    assert found["B1-X1-CARBON ftps"][0] == "ok" and found["B1-X1-CARBON folder"][0] == "ok"
    assert found["B1-X1-CARBON mqtt"] == ("ok", "logged in; print state IDLE")
    assert (
        found["B2-X1-CARBON tls"][0] == "warning"
        and "encrypted but NOT verified" in found["B2-X1-CARBON tls"][1]
    )
    assert found["B2-X1-CARBON folder"][0] == "warning"
    assert found["B3-X1-CARBON ftps"][0] == "error" and "re-enter" in found["B3-X1-CARBON ftps"][1]
    assert not any(name.startswith("MK4") for name in found)
    assert not checks.ok
    text = json.dumps(checks.items)
    assert "99999999" not in text and good.access_code not in text
    assert all(len(f"{name} {level} {message}") < 200 for name, (level, message) in found.items())


async def test_missing_printers_file_adds_no_check(tmp_path: Path) -> None:
    checks = Checks()
    await bambu_printer_checks(checks, tmp_path / "none.yml", settings=None, timeout=1.0)
    assert checks.items == []


def test_printer_named_by_its_bambuddy_name(
    tmp_path: Path, fake_bambu: FakeBambuFactory, sim_farm: SimFarm
) -> None:
    state = sim_farm.bambuddy.state
    with state.lock:
        record = state.printer("B1-X1-CARBON")
        record["ip_address"] = "127.0.0.1"  # the sim's printers live on TEST-NET addresses, never contacted
        serial = record["serial_number"]
    fake = fake_bambu(serial=serial, push_interval=30.0)
    master = tmp_path / "master"
    master.mkdir()
    (master / "plate.gcode.3mf").write_bytes(b"PK a project")
    config = tmp_path / "printers.yml"
    config.write_text(
        "B1:\n  bambuddy: B1-X1-CARBON\n"
        f"  access_code: {fake.access_code}\n  ftp_port: {fake.ftp_port}\n  mqtt_port: {fake.mqtt_port}\n"
        "Ghost:\n  bambuddy: NO-SUCH-PRINTER\n  access_code: 12345678\n"
    )
    env = {"BAMBUDDY_BASE_URL": sim_farm.bambuddy_url, "BAMBUDDY_API_KEY": sim_farm.api_key}
    args = ["-c", str(config), "-s", str(master), "--data-dir", str(tmp_path / "data"), "--json", "-g"]
    result = CliRunner(env=env).invoke(gcode, [*args, "--suffix", ".3mf"])
    assert result.exit_code == 2, result.output
    report = {p["name"]: p for p in json.loads(result.stdout)["printers"]}
    assert report["B1"]["status"] == "synced"
    assert fake.files("farmsync") == {"farmsync/plate.gcode.3mf": b"PK a project"}
    assert report["Ghost"]["status"] == "failed"
    assert "no printer named 'NO-SUCH-PRINTER'" in report["Ghost"]["error"]


async def test_bambuddy_without_an_address_is_named(sim_farm: SimFarm) -> None:
    from farmsync.gcode.backends.bambu_bambuddy import bambuddy_resolver

    settings = SimpleNamespace(
        bambuddy_base_url=sim_farm.bambuddy_url,
        bambuddy_api_key=SecretStr(sim_farm.api_key),
        http_timeout_seconds=5.0,
    )
    with sim_farm.bambuddy.state.lock:
        sim_farm.bambuddy.state.printer("B1-X1-CARBON")["ip_address"] = None
    resolve = bambuddy_resolver("B1", "b1-x1-carbon", settings=settings)
    with pytest.raises(UpstreamValidation, match="no IP address or serial"):
        await resolve()
