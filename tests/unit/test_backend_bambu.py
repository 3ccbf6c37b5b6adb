"""The Bambu back end's pure parts: LIST parsing, states, names, deadlines, TLS settings, printers.yml keys."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from farmsync.errors import ConfigError
from farmsync.gcode.backends import backend_for
from farmsync.gcode.backends.bambu import BambuBackend, fat_problem
from farmsync.gcode.backends.bambu_ftps import ListedEntry, parse_list, tls_context, transfer_deadline
from farmsync.gcode.backends.bambu_models import bambu_type, is_idle
from farmsync.gcode.backends.bambu_mqtt import pushall_allowed
from farmsync.gcode.backends.base import Kind
from farmsync.gcode.config import parse_printers

# ------------------------------------------------------------------------------------------------ LIST


def test_list_lines_as_vsftpd_prints_them() -> None:
    lines = [
        "total 3",
        "-rw-r--r--    1 1000     1000      1632221 Jun 17  2025 video_2025-06-17_12-12-18.mp4",
        "-rw-r--r--    1 1000     1000      1640240 Jun 18 00:27 video_2025-06-17_14-48-33.mp4",
        "drwxr-xr-x    2 1000     1000         4096 Dec 01 09:00 sub folder",
        "-rw-r--r--    1 1000     1000           12 Dec 01 09:00 two  spaces  inside.gcode.3mf",
        "-rw-r--r--    1 root     root            0 Jan  1  1980 ",
        "lrwxrwxrwx    1 1000     1000            4 Dec 01 09:00 link -> elsewhere",
        "drwxr-xr-x    2 1000     1000         4096 Dec 01 09:00 .",
        "drwxr-xr-x    2 1000     1000         4096 Dec 01 09:00 ..",
        "garbage that is not ls -l",
    ]
    entries, unreadable = parse_list(lines)
    assert entries == [
        ListedEntry("video_2025-06-17_12-12-18.mp4", False, 1632221),
        ListedEntry("video_2025-06-17_14-48-33.mp4", False, 1640240),
        ListedEntry("sub folder", True, 4096),
        ListedEntry("two  spaces  inside.gcode.3mf", False, 12),
    ]
    assert unreadable == [
        "-rw-r--r--    1 root     root            0 Jan  1  1980 ",
        "garbage that is not ls -l",
    ]


def test_an_empty_listing_is_empty() -> None:
    assert parse_list([]) == ([], [])


# ------------------------------------------------------------------------------------------------ state


@pytest.mark.parametrize(
    ("state", "idle"),
    [
        ("IDLE", True),
        ("FINISH", True),
        ("FAILED", True),
        ("finish", True),
        ("PREPARE", False),
        ("SLICING", False),
        ("RUNNING", False),
        ("PAUSE", False),
        ("INIT", False),
        ("OFFLINE", False),
        ("UNKNOWN", False),
        ("", False),
        (None, False),
    ],
)
def test_only_known_idle_states_are_idle(state: str | None, idle: bool) -> None:
    assert is_idle(state) is idle


def test_pushall_clock_is_per_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from farmsync.gcode.backends import bambu_mqtt

    monkeypatch.setattr(bambu_mqtt, "PUSHALL_CLOCKS", tmp_path / "clocks")
    assert pushall_allowed("P1P0001", 300, now=1000.0)
    assert not pushall_allowed("P1P0001", 300, now=1299.0)
    assert pushall_allowed("P1P0002", 300, now=1299.0)
    assert pushall_allowed("P1P0001", 300, now=1300.0)
    assert all(pushall_allowed("X1C0001", 0) for _ in range(3))


# ------------------------------------------------------------------------------------------------ names and limits


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a/b c.gcode.3mf", None),
        ("ünïcode.3mf", None),
        ("a:b.3mf", "':'"),
        ("what?.gcode", "'?'"),
        ("dir./x.3mf", "ends in a space or dot"),
        ("x" * 256 + ".3mf", "longer than 255 bytes"),
    ],
)
def test_fat_names(path: str, problem: str | None) -> None:
    found = fat_problem(path)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_transfer_deadline_grows_with_the_file() -> None:
    assert transfer_deadline(1000) == 600.0
    assert transfer_deadline(100_000_000) == 4000.0  # 100 MB at 25 KB/s


def test_tls_settings(tmp_path: Path) -> None:
    unverified = tls_context(None)
    assert unverified.verify_mode is ssl.CERT_NONE and not unverified.check_hostname
    from tests.printers.fake_bambu import make_pki

    ca = make_pki(tmp_path).ca_pem
    verified = tls_context(ca)
    assert verified.verify_mode is ssl.CERT_REQUIRED and verified.check_hostname
    assert verified.minimum_version == verified.maximum_version == ssl.TLSVersion.TLSv1_2
    assert not verified.verify_flags & getattr(ssl, "VERIFY_X509_STRICT", 0)


def test_wire_paths_stay_in_the_mirror_folder() -> None:
    backend = BambuBackend("B", access_code="12345678", host="127.0.0.1", serial="01S00C1")
    assert backend.wire("") == "/farmsync"
    assert backend.wire("a b/c.3mf") == "/farmsync/a b/c.3mf"
    root = BambuBackend("B", access_code="12345678", host="127.0.0.1", serial="01S00C1", storage="")
    assert root.wire("") == "/" and root.wire("c.3mf") == "/c.3mf"


# ------------------------------------------------------------------------------------------------ printers.yml


def bambu(**keys: object) -> dict[str, object]:
    return {
        "printer_type": "X1C",
        "host": "192.168.1.40",
        "serial": "01S00C123456789",
        "access_code": "12345678",
    } | keys


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_printers(data)
    return info.value.problems if hasattr(info.value, "problems") else str(info.value).splitlines()


@pytest.mark.parametrize(
    "printer_type", ["X1C", "X1E", "P1P", "P1S", "P2S", "A1", "A1 mini", "A1MINI", "H2D", "H2S", "x1-carbon"]
)
def test_every_bambu_model_is_kind_bambu(printer_type: str) -> None:
    [printer] = parse_printers({"B1": bambu(printer_type=printer_type)})
    assert printer.kind is Kind.BAMBU and bambu_type(printer_type) is not None


def test_bambu_entry_defaults_and_backend() -> None:
    [printer] = parse_printers({"B1-X1-CARBON": bambu(serial="01s00c123456789", ftp_port=9990)})
    assert printer.serial == "01S00C123456789" and printer.card_folder == "farmsync"
    backend = backend_for(printer)
    assert isinstance(backend, BambuBackend)
    assert backend.ftp_port == 9990 and backend.mqtt_port == 8883 and not backend.verified
    [root] = parse_printers({"B1": bambu(storage="/")})
    assert root.card_folder == ""
    [nested] = parse_printers({"B1": bambu(storage="/sdcard/farm files/")})
    assert nested.card_folder == "sdcard/farm files"


def test_access_code_is_a_secret_everywhere() -> None:
    [printer] = parse_printers({"B1": bambu(access_code="s3cr3t99")})
    assert "s3cr3t99" not in repr(printer) and "s3cr3t99" not in str(printer.model_dump())
    text = "\n".join(
        problems(
            {"B1": bambu(access_code=["s3cr3t99"]), "B2": bambu(host="http://x", access_code="s3cr3t99")}
        )
    )
    assert "s3cr3t99" not in text


def test_bambu_problems_are_named() -> None:
    found = problems(
        {
            "NoCode": bambu(access_code=None),
            "NoSerial": bambu(serial=None),
            "Url": bambu(host="http://192.168.1.40"),
            "Password": bambu(password="x"),
            "MissingCa": bambu(ca_bundle="/nonexistent/ca.pem"),
            "Mk4": {"printer_type": "MK4", "host": "http://x", "password": "p", "serial": "01S00C123456789"},
            "BadSerial": bambu(serial="01S/../x"),
        }
    )
    text = "\n".join(found)
    assert "'NoCode': key 'access_code': required for Bambu printers" in text
    assert "'NoSerial': key 'serial': required key is missing (or set 'bambuddy')" in text
    assert "'Url': key 'host': expected a bare host name or IP address" in text
    assert "'Password': key 'password': not used by Bambu printers" in text
    assert "'MissingCa': key 'ca_bundle': file not found" in text
    assert "'Mk4': key 'serial': only for Bambu printers" in text
    assert "'BadSerial': key 'serial': expected the printer's serial number" in text


def test_bambuddy_name_replaces_host_and_serial() -> None:
    [printer] = parse_printers(
        {"B1": {"bambuddy": "B1-X1-CARBON", "access_code": "12345678", "kind": "bambu"}}
    )
    assert printer.host is None and printer.serial is None and printer.bambuddy == "B1-X1-CARBON"
