"""The Bambu back end against the fake Bambu printer (pyftpdlib FTPS + Mosquitto), and the fake's quirks raw."""

from __future__ import annotations

import asyncio
import ftplib
import shutil
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from farmsync.errors import UpstreamAuthError, UpstreamConflict, UpstreamError, UpstreamValidation
from farmsync.gcode.backends.bambu import BambuBackend
from farmsync.gcode.backends.bambu_ftps import ImplicitFTPS, tls_context
from farmsync.gcode.backends.base import RemoteEntry
from tests.fixtures.bambu import FakeBambuFactory
from tests.printers.fake_bambu import FakeBambu, Pki, make_pki


def backend_for(fake: FakeBambu, *, ca: Path | None = None, **options: Any) -> BambuBackend:
    options.setdefault("timeout", 10.0)
    options.setdefault("state_wait", 3.0)
    return BambuBackend(
        "B1-X1-CARBON",
        access_code=options.pop("access_code", fake.access_code),
        host="127.0.0.1",
        serial=options.pop("serial", fake.serial),
        model=options.pop("model", fake.model),
        ca_bundle=ca,
        ftp_port=fake.ftp_port,
        mqtt_port=fake.mqtt_port,
        **options,
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _leftovers(fake: FakeBambu) -> list[str]:
    return [p for p in fake.files() if p.endswith(".farmsync-part")]


@pytest.fixture
def printer(fake_bambu: FakeBambuFactory) -> FakeBambu:
    fake = fake_bambu(push_interval=30.0)  # its own pushes would race the state changes of a test
    fake.add_file("cache/cloud print.3mf", b"from MakerWorld")
    fake.add_file("Studio plate.gcode.3mf", b"sent by Bambu Studio")
    return fake


@pytest.fixture
async def backend(printer: FakeBambu, bambu_pki: Pki) -> AsyncIterator[BambuBackend]:
    made = backend_for(printer, ca=bambu_pki.ca_pem)
    yield made
    await made.aclose()


# ------------------------------------------------------------------------------------------- back end end to end


async def test_mirror_operations_end_to_end(
    printer: FakeBambu, backend: BambuBackend, tmp_path: Path
) -> None:
    assert await backend.list_tree() == []  # the mirror's folder is not made yet, and the card answers
    data = b"G1 X1 Y1\n" * 30_000
    up = await backend.upload("brackets/wall mount.gcode.3mf", _write(tmp_path / "a", data), size=len(data))
    assert up.verified and up.size == len(data)
    assert any("426" in note for note in up.notes)  # vsftpd's answer to a close without close_notify
    assert printer.files("farmsync") == {"farmsync/brackets/wall mount.gcode.3mf": data}

    tree = {e.path: e for e in await backend.list_tree()}
    assert set(tree) == {"brackets", "brackets/wall mount.gcode.3mf"}
    entry = tree["brackets/wall mount.gcode.3mf"]
    assert entry.size == len(data) and entry.mtime is None  # the printer's clock is never used

    second = b"G1 X2\n" * 1000
    again = await backend.upload(entry.path, _write(tmp_path / "b", second), size=len(second))
    assert again.verified and printer.files("farmsync")["farmsync/" + entry.path] == second
    assert await backend.download(entry, tmp_path / "dl") == len(second)
    assert (tmp_path / "dl").read_bytes() == second

    with pytest.raises(UpstreamConflict):
        await backend.delete_folder(tree["brackets"])
    await backend.delete_file(entry)
    await backend.delete_folder(tree["brackets"])
    await backend.make_folder("x/y")
    assert (printer.card_root / "farmsync/x/y").is_dir()
    assert await backend.stat("x") == RemoteEntry(path="x", is_dir=True, ref="/farmsync/x")
    assert await backend.stat("nope.3mf") is None

    # what Studio and the cloud keep outside the mirror's folder was never touched
    assert printer.files("cache") == {"cache/cloud print.3mf": b"from MakerWorld"}
    assert printer.files()["Studio plate.gcode.3mf"] == b"sent by Bambu Studio"
    assert not any(c.split(" ", 1)[0] in ("MLSD", "AVBL") for c in printer.commands)
    assert set(printer.data_sessions) == {"reused"} and set(printer.tls_versions) == {"TLSv1.2"}
    assert _leftovers(printer) == []


async def test_upload_goes_to_a_temporary_name_proved_by_size_then_renamed(
    printer: FakeBambu, backend: BambuBackend, tmp_path: Path
) -> None:
    await backend.upload("a.gcode", _write(tmp_path / "a", b"G28\n" * 100), size=400)
    commands = [c for c in printer.commands if c.split(" ", 1)[0] in ("STOR", "SIZE", "RNFR", "RNTO")]
    temp = commands[0].split(" ", 1)[1]
    assert temp.startswith("/farmsync/.") and temp.endswith(".farmsync-part")
    assert commands == [
        f"STOR {temp}",
        f"SIZE {temp}",
        f"RNFR {temp}",
        "RNTO /farmsync/a.gcode",
        "SIZE /farmsync/a.gcode",
    ]


async def test_interrupted_upload_leaves_the_old_file_whole(
    fake_bambu: FakeBambuFactory, bambu_pki: Pki, tmp_path: Path
) -> None:
    slow = fake_bambu(bandwidth=200_000)
    slow.add_file("farmsync/part.gcode.3mf", b"the old, complete file")
    backend = backend_for(slow, ca=bambu_pki.ca_pem)
    data = b"N" * 2_000_000
    upload = asyncio.create_task(
        backend.upload("part.gcode.3mf", _write(tmp_path / "big", data), size=len(data))
    )
    await asyncio.sleep(1.0)
    slow.cut_card_power()  # mid-stream
    with pytest.raises(UpstreamError):
        await upload
    await backend.aclose()
    held = slow.files("farmsync")
    assert held.pop("farmsync/part.gcode.3mf") == b"the old, complete file"
    assert all(path.endswith(".farmsync-part") and len(body) < len(data) for path, body in held.items())


async def test_rename_onto_an_existing_name_refused_deletes_the_old_first(
    fake_bambu: FakeBambuFactory, tmp_path: Path
) -> None:
    fake = fake_bambu(rename_over_existing=False)
    fake.add_file("farmsync/a.3mf", b"old")
    async with backend_for(fake) as backend:
        up = await backend.upload("a.3mf", _write(tmp_path / "a", b"new!"), size=4)
    assert "deleted the old copy before renaming the new one into place" in up.notes
    assert fake.files("farmsync") == {"farmsync/a.3mf": b"new!"}


async def test_slow_226_waits_and_a_missing_verdict_is_settled_by_size(
    fake_bambu: FakeBambuFactory, tmp_path: Path
) -> None:
    fake = fake_bambu(slow_226=1.5)
    source = _write(tmp_path / "a", b"G1\n" * 1000)
    async with backend_for(fake, reply_wait=10.0) as patient:
        up = await patient.upload("a.gcode", source, size=3000)
        assert up.verified and not any("no reply" in n for n in up.notes)
    async with backend_for(fake, reply_wait=0.3) as hasty:
        up = await hasty.upload("b.gcode", source, size=3000)
        assert up.verified and any("no reply within 0.3 s" in n for n in up.notes)
    assert set(fake.files("farmsync")) == {"farmsync/a.gcode", "farmsync/b.gcode"}


async def test_one_session_per_printer(printer: FakeBambu, backend: BambuBackend, tmp_path: Path) -> None:
    files = [_write(tmp_path / f"f{i}", bytes([65 + i]) * 50_000) for i in range(3)]
    # one back end: its calls take turns on its one session
    await asyncio.gather(*(backend.upload(f"p{i}.gcode", f, size=50_000) for i, f in enumerate(files)))
    assert len(printer.files("farmsync")) == 3
    assert sum(1 for c in printer.commands if c.startswith("USER")) == 1
    # a second client while the first holds the session: the printer turns it away
    other = backend_for(printer)
    other.session_retry_delays = (0.2,)
    with pytest.raises(UpstreamError, match="421"):
        await other.list_tree()


async def test_listing_failure_is_an_error_never_an_empty_folder(
    printer: FakeBambu, backend: BambuBackend
) -> None:
    printer.add_file("farmsync/kept.gcode", b"G28\n")
    printer.card = False  # no card: CWD/LIST fail
    with pytest.raises(UpstreamError, match="550"):
        await backend.list_tree()
    with pytest.raises(UpstreamValidation, match="553"):
        await backend.upload("x.gcode", _write(printer.workdir / "x", b"G1\n"), size=3)
    printer.card = True
    printer.list_fails = True  # CWD works, LIST does not: still an error, not an empty folder
    with pytest.raises(UpstreamError, match="Failed to open directory"):
        await backend.list_tree()
    shutil.rmtree(printer.card_root / "farmsync")  # a missing mirror folder is empty only if the card lists
    with pytest.raises(UpstreamError, match="Failed to open directory"):
        await backend.list_tree()
    printer.list_fails = False
    assert await backend.list_tree() == []


async def test_names_the_card_refuses_are_not_sent(backend: BambuBackend, tmp_path: Path) -> None:
    for bad in ("what?.gcode", "trailing dot./a.gcode", 'quote".3mf'):
        with pytest.raises(UpstreamValidation, match="card does not allow"):
            await backend.upload(bad, _write(tmp_path / "x", b"G1\n"), size=3)


# ------------------------------------------------------------------------------------------- TLS and login


async def test_client_caps_tls_at_1_2_even_when_the_printer_offers_1_3(
    fake_bambu: FakeBambuFactory, bambu_pki: Pki, tmp_path: Path
) -> None:
    fake = fake_bambu(tls13=True)  # as a P2S does; under 1.3 uploads die with 426
    async with backend_for(fake, ca=bambu_pki.ca_pem) as backend:
        await backend.upload("a.gcode", _write(tmp_path / "a", b"G1\n"), size=3)
    assert set(fake.tls_versions) == {"TLSv1.2"} and set(fake.data_sessions) == {"reused"}


async def test_certificate_is_checked_against_the_serial(
    printer: FakeBambu, bambu_pki: Pki, tmp_path: Path
) -> None:
    other_ca = make_pki(tmp_path / "other", name="Some other CA")
    with pytest.raises(UpstreamAuthError, match="certificate failed verification"):
        await backend_for(printer, ca=other_ca.ca_pem).list_tree()
    # the right CA, but the printer's certificate names another serial
    with pytest.raises(UpstreamAuthError, match="certificate failed verification"):
        await backend_for(printer, ca=bambu_pki.ca_pem, serial="01S00C999999999").list_tree()
    async with backend_for(printer, ca=bambu_pki.ca_pem) as verified:
        assert await verified.list_tree() == []


async def test_wrong_access_code_says_to_re_enter_it(printer: FakeBambu) -> None:
    backend = backend_for(printer, access_code="87654321")
    with pytest.raises(UpstreamAuthError, match="re-enter") as ftp_error:
        await backend.list_tree()
    with pytest.raises(UpstreamAuthError, match="re-enter") as mqtt_error:
        await backend.status()
    for error in (ftp_error.value, mqtt_error.value):
        assert "87654321" not in str(error) and printer.access_code not in str(error)


def _implicit(fake: FakeBambu, cls: type[ftplib.FTP_TLS]) -> ftplib.FTP_TLS:
    context = tls_context(None)
    ftp = cls(context=context, timeout=5)  # type: ignore[call-arg]
    raw = socket.create_connection(("127.0.0.1", fake.ftp_port), 5)
    ftp.host, ftp.sock = "127.0.0.1", context.wrap_socket(raw)
    ftp.af, ftp.file = ftp.sock.family, ftp.sock.makefile("r", encoding="utf-8")
    ftp.welcome = ftp.getresp()
    ftp.login("bblp", fake.access_code)
    ftp.prot_p()
    return ftp


def test_raw_quirks_522_without_session_reuse_no_mlsd_vsftpd_banner(printer: FakeBambu) -> None:
    ftp = _implicit(printer, ftplib.FTP_TLS)  # stock ftplib: a fresh TLS session on the data channel
    try:
        assert ftp.welcome == "220 (vsFTPd 3.0.3)"
        with pytest.raises(ftplib.error_perm, match="522 SSL connection failed: session reuse required"):
            ftp.retrlines("LIST", lambda line: None)
    finally:
        ftp.close()
    assert printer.data_sessions == ["new"]
    # the same with the back end's subclass, which resumes the session
    ftp = ImplicitFTPS(tls_context(None), printer.serial, 5)
    ftp.connect("127.0.0.1", printer.ftp_port)
    ftp.login("bblp", printer.access_code)
    ftp.prot_p()
    lines: list[str] = []
    ftp.retrlines("LIST", lines.append)
    assert any(line.endswith(" cache") and line.startswith("d") for line in lines)
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.sendcmd("MLSD")
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.sendcmd("AVBL")
    ftp.quit()


# ------------------------------------------------------------------------------------------- MQTT state


async def test_gcode_state_decides_busy(printer: FakeBambu, backend: BambuBackend) -> None:
    expected = {
        "IDLE": True,
        "FINISH": True,
        "FAILED": True,
        "PREPARE": False,
        "SLICING": False,
        "RUNNING": False,
        "PAUSE": False,
        "INIT": False,
        "OFFLINE": False,
    }
    for state, idle in expected.items():
        printer.set_state(state, "/sdcard/plate.gcode.3mf" if not idle else "")
        await asyncio.sleep(0.3)  # a report in flight from the last visit's pushall must not be read as new
        status = await backend.status()
        assert (status.state, status.idle) == (state, idle)
        if not idle:
            assert status.detail
    assert printer.pushalls == len(expected)  # X1: a full report asked on every visit


async def test_p1_asks_for_a_full_report_at_most_once_per_interval(
    fake_bambu: FakeBambuFactory, tmp_path: Path
) -> None:
    p1 = fake_bambu(model="P1P", serial="01S00A123456780", push_interval=0.2)
    backend = backend_for(p1, state_wait=1.0)
    first = await backend.status()
    assert first.state == "IDLE" and first.idle and p1.pushalls == 1
    # within the interval: no pushall, and the deltas the printer sends name no state -> unknown, not idle
    second = await backend.status()
    assert p1.pushalls == 1
    assert not second.idle and second.state == "unknown" and "one every 300 s" in second.detail
    # a delta that carries the state is enough
    asyncio.get_running_loop().call_later(0.3, p1.set_state, "FINISH")
    third = await backend.status()
    assert third.state == "FINISH" and third.idle and p1.pushalls == 1


async def test_stalled_broker_is_unknown_not_idle(printer: FakeBambu, backend: BambuBackend) -> None:
    printer.stall()
    started = time.monotonic()
    status = await backend_for(printer, state_wait=1.0).status()
    assert not status.idle and status.state == "unknown" and "check the serial" in status.detail
    assert time.monotonic() - started < 5


async def test_wrong_serial_times_out_with_a_hint(printer: FakeBambu) -> None:
    status = await backend_for(printer, serial="01S00C000000000", state_wait=1.0).status()
    assert not status.idle and "check the serial" in status.detail


async def test_full_broker_defers_instead_of_failing(fake_bambu: FakeBambuFactory) -> None:
    fake = fake_bambu(mqtt_clients=1)
    squatter = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bambu-studio")
    squatter.username_pw_set("bblp", fake.access_code)
    squatter.tls_set_context(tls_context(None))
    squatter.connect("127.0.0.1", fake.mqtt_port)
    squatter.loop_start()
    try:
        deadline = time.monotonic() + 30
        while not squatter.is_connected() and time.monotonic() < deadline:  # CONNACK: the broker counted it
            time.sleep(0.02)
        assert squatter.is_connected()
        status = await backend_for(fake, state_wait=2.0).status()
    finally:
        squatter.disconnect()
        squatter.loop_stop()
    assert not status.idle and status.state == "unknown" and "client slots" in status.detail
    assert (await backend_for(fake).status()).idle  # the slot is free again


async def test_mqtt_disconnects_at_once(printer: FakeBambu, backend: BambuBackend) -> None:
    for _ in range(6):  # more visits than the broker has slots: each one left
        assert (await backend.status()).idle


async def test_probe_reports_every_check(printer: FakeBambu, bambu_pki: Pki) -> None:
    unverified = await backend_for(printer).probe()
    checks = {name: (level, message) for name, level, message in unverified}
    assert checks["tls"][0] == "warning" and "NOT verified" in checks["tls"][1]
    assert checks["ftps"][0] == "ok" and "vsFTPd" in checks["ftps"][1]
    assert checks["folder"][0] == "warning" and "first upload creates it" in checks["folder"][1]
    assert checks["mqtt"] == ("ok", "logged in; print state IDLE")
    printer.add_file("farmsync/a.gcode", b"G1\n")
    verified = {
        name: (level, message)
        for name, level, message in await backend_for(printer, ca=bambu_pki.ca_pem).probe()
    }
    assert verified["tls"][0] == "ok" and printer.serial in verified["tls"][1]
    assert verified["folder"][0] == "ok"
    bad = {name: level for name, level, _ in await backend_for(printer, access_code="00000000").probe()}
    assert bad == {"tls": "ok", "ftps": "error"}


def test_tls_context_is_tls_1_2_only() -> None:
    context = tls_context(None)
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


async def test_bandwidth_is_per_printer_across_uploads(fake_bambu: FakeBambuFactory, tmp_path: Path) -> None:
    fake = fake_bambu(bandwidth=400_000)
    files = [_write(tmp_path / f"f{i}", bytes([70 + i]) * 100_000) for i in range(4)]
    async with backend_for(fake) as backend:
        started = time.monotonic()
        for index, source in enumerate(files):  # small files each: a per-connection throttle would not bite
            await backend.upload(f"p{index}.gcode", source, size=100_000)
        took = time.monotonic() - started
    assert 0.8 < took < 5.0  # 400 KB at 400 KB/s


async def test_probe_without_a_card_is_an_error(printer: FakeBambu) -> None:
    printer.card = False
    checks = {name: level for name, level, _ in await backend_for(printer).probe()}
    assert checks["folder"] == "error" and checks["mqtt"] == "ok"


async def test_a_refused_login_frees_the_printer_s_only_session(printer: FakeBambu) -> None:
    with pytest.raises(UpstreamAuthError):
        await backend_for(printer, access_code="00000000").list_tree()
    right = backend_for(printer)
    right.session_retry_delays = ()  # no waiting for a slot: it must be free already
    assert await right.list_tree() == []
    await right.aclose()


def test_bambu_style_ca_passes_only_without_strict_x509(printer: FakeBambu, bambu_pki: Pki) -> None:
    """Bambu's CA lacks extensions strict X.509 checking wants (Python 3.13 turns it on by default)."""
    for strict in (False, True):
        context = tls_context(bambu_pki.ca_pem)
        if strict:
            context.verify_flags |= ssl.VERIFY_X509_STRICT
        raw = socket.create_connection(("127.0.0.1", printer.ftp_port), 5)
        try:
            if strict:
                with pytest.raises(ssl.SSLCertVerificationError):
                    context.wrap_socket(raw, server_hostname=printer.serial)
            else:
                with context.wrap_socket(raw, server_hostname=printer.serial) as tls:
                    assert tls.version() == "TLSv1.2"
        finally:
            raw.close()


def test_the_fakes_pace_catches_up_its_own_late_reads_but_never_beats_the_rate(
    bambu_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake printer must not look slower because the test machine is busy (the Bambu bench row lost 0.9 s
    per 4 s file to it), nor faster than its link."""
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    fake = FakeBambu(tmp_path / "paced", bambu_pki, bandwidth=100_000)
    waits = []
    for index in range(10):  # one 100 KB transfer in 10 reads, each 20 ms later than the pace asked
        delay = fake.pace(10_000, continuing=index > 0)
        waits.append(delay)
        clock[0] += max(delay, 0.0) + 0.02
    assert clock[0] - 100.0 == pytest.approx(1.0 + 0.02, abs=1e-9)  # the old pace: 1.0 + 10 × 0.02
    clock[0] += 30  # idle: no burst after it
    assert fake.pace(10_000) == pytest.approx(0.1)
    clock[0] += 0.3  # the sender stalls 0.2 s past that read: only the credit is caught up, the rest is lost
    assert fake.pace(10_000, continuing=True) == pytest.approx(0.1 - fake.PACE_CREDIT)
