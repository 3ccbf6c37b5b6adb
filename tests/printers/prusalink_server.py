"""Real PrusaLink 0.8.1 (the Raspberry Pi PrusaLink for MK3) on a free loopback port, for integration tests.

Needs ``.printer-venvs/prusalink`` (``setup_venvs.sh prusalink``). PrusaLink needs a printer on a serial port,
so this first starts :mod:`tests.printers.fake_mk3` on a pseudo-terminal, then PrusaLink with a
``prusalink.ini`` bound to 127.0.0.1 and a pre-written ``prusa_printer_settings.ini`` (type MK3S, local user,
digest and API key), which skips the first-run wizard. Ready means ``printer.state == "IDLE"``. Usage::

    with PrusaLinkServer() as link:
        httpx.get(f"{link.url}/api/v1/status", auth=httpx.DigestAuth(link.username, link.password))
"""

from __future__ import annotations

import configparser
import hashlib
import secrets
import sys
import time
from pathlib import Path

import httpx

from tests.printers.procs import (
    LOOPBACK,
    PRINTERS_DIR,
    GroupProcess,
    NotReady,
    PrinterServer,
    PrinterServerError,
    free_port,
    make_workdir,
    venv_bin,
    wait_for,
)

REALM = "Administrator"  # PrusaLink 0.8's digest realm (prusa.link.web.lib.auth.REALM)


def _write_ini(path: Path, sections: dict[str, dict[str, str]]) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case as written
    parser.read_dict(sections)
    with path.open("w", encoding="utf-8") as handle:
        parser.write(handle)


class PrusaLinkServer(PrinterServer):
    """One PrusaLink instance plus its fake MK3S; local user ``username``/``password``, ``api_key``."""

    name = "PrusaLink"

    def __init__(self, *, venv: str = "prusalink", keep_workdir: bool = False) -> None:
        super().__init__(keep_workdir=keep_workdir)
        self.venv = venv
        self.username = "maker"
        self.password = "farmsync-" + secrets.token_hex(6)
        self.api_key = secrets.token_hex(8)

    @property
    def digest(self) -> str:
        """HA1 as PrusaLink stores it: md5("user:Administrator:password")."""
        return hashlib.md5(
            f"{self.username}:{REALM}:{self.password}".encode(), usedforsecurity=False
        ).hexdigest()

    @property
    def gcode_dir(self) -> Path:
        """The directory behind the ``local`` storage ("PrusaLink gcodes")."""
        assert self.workdir is not None
        return self.workdir / "PrusaLink gcodes"

    def start(self) -> None:
        """Start the fake printer, write both ini files, launch PrusaLink; do not wait for IDLE."""
        python = venv_bin(self.venv, "python")
        if not python.exists():
            raise PrinterServerError(f"{python} missing: run bash tests/printers/setup_venvs.sh prusalink")
        self.started_at = time.monotonic()
        self.workdir = make_workdir("prusalink-")
        tty_link = self.workdir / "ttyFAKE"
        fake = GroupProcess(
            "fake_mk3.py",
            [sys.executable, str(PRINTERS_DIR / "fake_mk3.py"), "--link", str(tty_link)],
            log_path=self.workdir / "fake_mk3.log",
            cwd=self.workdir,
            env=self.child_env(),
        )
        self.processes.append(fake)

        def tty_ready() -> None:
            if not tty_link.is_symlink():
                raise NotReady("no pty yet")

        wait_for(tty_ready, what="fake MK3S", timeout=15, processes=[fake], interval=0.05)

        self.port = free_port()
        _write_ini(
            self.workdir / "prusa_printer_settings.ini",
            {
                "printer": {"type": "MK3S", "name": "farmsync-test"},
                "service::local": {
                    "enable": "1",
                    "username": self.username,
                    "digest": self.digest,
                    "api_key": self.api_key,
                },
            },
        )
        _write_ini(
            self.workdir / "prusalink.ini",
            {
                "daemon": {"data_dir": str(self.workdir), "pid_file": "./prusalink.pid"},
                "http": {"address": LOOPBACK, "port": str(self.port)},
                "printer": {
                    "port": str(tty_link),
                    "settings": "./prusa_printer_settings.ini",
                    "directory": "./PrusaLink gcodes",
                },
                "cameras": {"auto_detect": "False"},
            },
        )
        self.processes.append(
            GroupProcess(
                "prusalink",
                [
                    str(python),
                    str(PRINTERS_DIR / "prusalink_launcher.py"),
                    "--foreground",
                    "--info",
                    "--config",
                    str(self.workdir / "prusalink.ini"),
                ],
                log_path=self.workdir / "prusalink.log",
                cwd=self.workdir,
                env=self.child_env(),
            )
        )

    def _probe_ready(self) -> None:
        """Ready = /api/v1/status answers our API key with printer state IDLE (it is BUSY while it probes)."""
        try:
            response = httpx.get(f"{self.url}/api/v1/status", headers={"X-Api-Key": self.api_key}, timeout=5)
        except httpx.TransportError as exc:
            raise NotReady(type(exc).__name__) from exc
        if response.status_code != 200:  # 503 until the printer adapter is up
            raise NotReady(f"GET /api/v1/status -> {response.status_code}")
        state = response.json().get("printer", {}).get("state")
        if state != "IDLE":
            raise NotReady(f"printer state {state!r}")


def main() -> None:
    """Start one PrusaLink by hand and print how to reach it (Ctrl-C stops it)."""
    server = PrusaLinkServer()
    with server:
        print(
            f"PrusaLink ready in {server.ready_seconds:.1f} s at {server.url}  "
            f"user {server.username} password {server.password} X-Api-Key {server.api_key}"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
