"""Real OctoPrint 1.11.8 with its Virtual Printer, on a free loopback port, for integration tests.

Needs ``.printer-venvs/octoprint`` (``setup_venvs.sh octoprint``). The config written here skips the first-run
wizard, turns off every check that would reach the internet (online check, plugin blacklist, Python EOL,
software update, plugin repository, announcements, tracking, discovery/mDNS) and auto-connects the Virtual
Printer, so the server is "Operational" a few seconds after start. Usage::

    with OctoPrintServer() as octo:
        httpx.get(f"{octo.url}/api/version", headers={"X-Api-Key": octo.api_key})
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.printers.procs import (
    LOOPBACK,
    GroupProcess,
    NotReady,
    PrinterServer,
    PrinterServerError,
    free_port,
    make_workdir,
    venv_bin,
)

# Bundled plugins that phone home, scan the LAN, or just slow start-up; none is needed for the file API.
DISABLED_PLUGINS = [
    "achievements",
    "action_command_notification",
    "action_command_prompt",
    "announcements",
    "backup",
    "classicwebcam",
    "discovery",
    "errortracking",
    "file_check",
    "firmware_check",
    "gcodeviewer",
    "health_check",
    "pi_support",
    "pluginmanager",
    "softwareupdate",
    "tracking",
]


def octoprint_config() -> dict[str, Any]:
    """config.yaml for a quiet, offline, wizard-free OctoPrint driving the Virtual Printer."""
    return {
        "server": {
            "firstRun": False,
            "seenWizards": {"corewizard": 4, "classicwebcam": 1, "softwareupdate": 1},
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
            "pythonEolCheck": {"enabled": False},
        },
        "plugins": {
            "_disabled": DISABLED_PLUGINS,
            "virtual_printer": {"enabled": True},
            "tracking": {"enabled": False},
            "errortracking": {"enabled": False},
        },
        "serial": {"port": "VIRTUAL", "baudrate": 0, "autoconnect": True},
    }


class OctoPrintServer(PrinterServer):
    """One OctoPrint instance in its own base directory; ``api_key`` belongs to the admin user."""

    name = "OctoPrint"

    def __init__(self, *, venv: str = "octoprint", keep_workdir: bool = False) -> None:
        super().__init__(keep_workdir=keep_workdir)
        self.venv = venv
        self.username = "admin"
        self.password = "farmsync-" + secrets.token_hex(6)
        self.api_key = secrets.token_hex(16).upper()
        self.basedir: Path | None = None

    @property
    def uploads_dir(self) -> Path:
        """Where OctoPrint keeps the 'local' storage (handy for asserting on disk)."""
        assert self.basedir is not None
        return self.basedir / "uploads"

    def start(self) -> None:
        """Write config, create the admin user with our API key, launch ``octoprint serve``; do not wait."""
        octoprint = venv_bin(self.venv, "octoprint")
        if not octoprint.exists():
            raise PrinterServerError(f"{octoprint} missing: run bash tests/printers/setup_venvs.sh octoprint")
        self.started_at = time.monotonic()
        self.workdir = make_workdir("octoprint-")
        self.basedir = self.workdir / "basedir"
        self.basedir.mkdir()
        (self.basedir / "config.yaml").write_text(yaml.safe_dump(octoprint_config()), encoding="utf-8")
        self._add_user(octoprint)
        self.port = free_port()
        self.processes.append(
            GroupProcess(
                "octoprint serve",
                [
                    str(octoprint),
                    "serve",
                    "--iknowwhatimdoing",  # we run as root in CI
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(self.port),
                    "--basedir",
                    str(self.basedir),
                ],
                log_path=self.workdir / "octoprint.log",
                cwd=self.workdir,
                env=self.child_env(),
            )
        )

    def _add_user(self, octoprint: Path) -> None:
        """``octoprint user add`` (hashes the password the way the server expects), then set our API key."""
        assert self.basedir is not None
        try:
            result = subprocess.run(
                [
                    str(octoprint),
                    "--basedir",
                    str(self.basedir),
                    "user",
                    "add",
                    "--password",
                    self.password,
                    "--admin",
                    self.username,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                env=self.child_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PrinterServerError("octoprint user add: no answer in 120 s") from exc
        users_file = self.basedir / "users.yaml"
        if result.returncode != 0 or not users_file.exists():
            raise PrinterServerError(
                f"octoprint user add failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        users = yaml.safe_load(users_file.read_text(encoding="utf-8"))
        users[self.username]["apikey"] = self.api_key
        users_file.write_text(yaml.safe_dump(users), encoding="utf-8")

    def _probe_ready(self) -> None:
        """Ready = the API answers with our key and the Virtual Printer is connected and Operational."""
        headers = {"X-Api-Key": self.api_key}
        try:
            response = httpx.get(f"{self.url}/api/printer", headers=headers, timeout=5)
        except httpx.TransportError as exc:
            raise NotReady(f"{type(exc).__name__}") from exc
        if response.status_code != 200:  # 409 while the printer is not connected yet
            raise NotReady(f"GET /api/printer -> {response.status_code}")
        state = response.json().get("state", {})
        if not state.get("flags", {}).get("operational"):
            raise NotReady(f"printer state {state.get('text')!r}")


def main() -> None:
    """Start one OctoPrint by hand and print how to reach it (Ctrl-C stops it)."""
    server = OctoPrintServer()
    with server:
        print(f"OctoPrint ready in {server.ready_seconds:.1f} s at {server.url}  X-Api-Key: {server.api_key}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
