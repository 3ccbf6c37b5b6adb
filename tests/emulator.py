"""Start the real Firestore emulator on a free loopback port, and stop it (its whole process group) after.

``python -m tests.emulator -- CMD ...`` runs CMD with FIRESTORE_EMULATOR_HOST set, unless it is already set, in
which case CMD runs against that emulator. The pytest fixture uses :class:`FirestoreEmulator` the same way when
pytest is started directly. Starting fails loudly: a test that needs the emulator never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SDK_LAUNCHER = "platform/cloud-firestore-emulator/cloud_firestore_emulator"
PROJECT = "demo-farmsync"


class EmulatorError(RuntimeError):
    """The emulator could not be started."""


def _sdk_root() -> Path:
    for candidate in (
        os.environ.get("CLOUDSDK_ROOT"),
        "/usr/lib/google-cloud-sdk",
        "/usr/share/google-cloud-sdk",
    ):
        if candidate and (Path(candidate) / SDK_LAUNCHER).exists():
            return Path(candidate)
    gcloud = shutil.which("gcloud")
    if gcloud:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        root = Path(out.stdout.strip())
        if (root / SDK_LAUNCHER).exists():
            return root
    raise EmulatorError(
        "the Firestore emulator is not installed: install the Debian package google-cloud-cli-firestore-emulator"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FirestoreEmulator:
    """One emulator process group on 127.0.0.1:<port>."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="firestore-emulator-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self, timeout: float = 60.0) -> FirestoreEmulator:
        launcher = _sdk_root() / SDK_LAUNCHER
        self._proc = subprocess.Popen(
            [str(launcher), "start", "--host=127.0.0.1", f"--port={self.port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmulatorError(f"the Firestore emulator exited early; log: {self._log.name}")
            try:
                if httpx.get(f"http://{self.host}/", timeout=1).text.strip() == "Ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise EmulatorError(
            f"the Firestore emulator did not answer within {timeout:.0f} s; log: {self._log.name}"
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None

    def reset(self, project: str = PROJECT) -> None:
        """Delete every document of ``project`` without a restart."""
        httpx.delete(
            f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents", timeout=10
        ).raise_for_status()

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m tests.emulator -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return subprocess.call(argv)
    try:
        emulator = FirestoreEmulator().start()
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Firestore emulator on {emulator.host}", file=sys.stderr)
    try:
        return subprocess.call(argv, env={**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.host})
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
