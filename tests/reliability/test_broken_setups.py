"""Set-ups that cannot work, met with one clear line instead of a traceback.

- Firestore chosen without Google credentials: every route answered 500 with a traceback (``/health`` too) and
  ``validate`` crashed. Now: 503 JSON naming what is missing on routes, one line and exit 1 on the command line;
  FIRESTORE_EMULATOR_HOST is honoured from ``.env`` as well as from the environment.
- A DATA_DIR that cannot be used (the predecessor's ``/data`` as a normal user, a file in its place, a path under
  a file): a configuration error naming DATA_DIR and the path, from every command and as 503 on routes.
- The store file deleted while running: ``/health`` said ok and later work went into the deleted file. Now
  ``/health`` reports the store unavailable (503) and store failures are logged at ERROR.
- A busy port: ``serve`` printed "serving on", then uvicorn's raw error, and exited 3. Now one line naming the
  port and how to choose another, exit 1.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmsync.services import Services, set_services
from farmsync.settings import load_settings
from tests.fixtures.cli import run_farmsync, settings_free_env
from tests.fixtures.cli import write_env as write_env_file
from tests.hostile.conftest import SERVICE, app_target, assert_clean_answer

TOKENS = {"SERVICE_API_TOKEN": "svc-token-for-tests", "WEBHOOK_SHARED_SECRET": "hook-secret-for-tests"}
NO_GOOGLE = {
    # google.auth looks for credentials in these places; none may exist, and the metadata server (an address
    # beyond loopback) must never be asked: NO_GCE_CHECK skips it, the hosts point at a closed loopback port
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


def child_env(home: Path) -> dict[str, str]:
    return settings_free_env(**NO_GOOGLE, HOME=str(home), CLOUDSDK_CONFIG=str(home / "gcloud"))


def farmsync(env_file: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_farmsync(env_file, *args, env=env, cwd=Path(env["HOME"]))


def write_env(path: Path, **values: Any) -> Path:
    return write_env_file(path, **TOKENS, **values)


def one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed as a configuration error: exit 1, exactly one line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
async def app_with(tmp_path: Path) -> AsyncIterator[Any]:
    """``app_with(**settings)``: an httpx client on the ``app`` target with services opened from settings
    (the store is opened the way production opens it: from STORE_BACKEND and DATA_DIR)."""
    made: list[tuple[Services, httpx.AsyncClient]] = []

    async def start(**values: Any) -> httpx.AsyncClient:
        settings = load_settings("/dev/null", **{k.lower(): v for k, v in TOKENS.items()}, **values)
        services = Services(settings)
        set_services(services)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_target()), base_url="http://farmsync.test", timeout=60
        )
        made.append((services, client))
        return client

    yield start
    for services, client in made:
        await client.aclose()
        if services._store is not None:
            services._store.close()
    set_services(None)


async def assert_unavailable(client: httpx.AsyncClient, *words: str) -> None:
    health = await client.get("/health")
    assert_clean_answer(health)
    assert health.status_code == 503 and health.json()["store_status"] == "unavailable", health.text
    status = await client.get("/sync/status", headers=SERVICE)
    assert_clean_answer(status)
    assert status.status_code == 503, status.text
    for word in words:
        assert word in health.text and word in status.text, (word, health.text, status.text)


# --- Firestore without credentials ---------------------------------------------------------------------------


@pytest.fixture
def no_google_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("FIRESTORE_EMULATOR", "GOOGLE_APPLICATION", "CLOUDSDK_")):
            monkeypatch.delenv(name)
    for name, value in {**NO_GOOGLE, "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "g")}.items():
        monkeypatch.setenv(name, value)
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)  # read at import: the env alone may come too late


async def test_firestore_without_credentials_is_a_503_naming_what_is_missing(
    app_with: Any, no_google_credentials: None, tmp_path: Path
) -> None:
    client = await app_with(store_backend="firestore", data_dir=tmp_path / "data")
    await assert_unavailable(client, "GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST")


def test_firestore_without_credentials_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "farm.env", STORE_BACKEND="firestore", DATA_DIR=tmp_path / "data")
    for args in (("validate",), ("status", "--json"), ("tick", "prints")):
        one_line(farmsync(env_file, *args, env=child_env(tmp_path)), "STORE_BACKEND=firestore", "credentials")


def test_firestore_emulator_host_is_read_from_the_env_file(
    tmp_path: Path, firestore_emulator_host: str
) -> None:
    env_file = write_env(
        tmp_path / "farm.env",
        STORE_BACKEND="firestore",
        FIRESTORE_EMULATOR_HOST=firestore_emulator_host,
        FIRESTORE_COLLECTION_PREFIX="envfile",
        DATA_DIR=tmp_path / "data",
    )
    env = child_env(tmp_path)
    assert "FIRESTORE_EMULATOR_HOST" not in env
    result = farmsync(env_file, "validate", "--json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    store = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "store")
    assert store["level"] == "ok", store


# --- DATA_DIR that cannot be used ----------------------------------------------------------------------------


def unusable_data_dirs(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    return {"not a folder": a_file, "Not a directory": a_file / "data"}


@pytest.mark.parametrize("args", [("validate",), ("status",), ("tick", "prints"), ("backfill",), ("serve",)])
def test_an_unusable_data_dir_is_one_line_from_every_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    for words, data_dir in unusable_data_dirs(tmp_path).items():
        env_file = write_env(tmp_path / "farm.env", DATA_DIR=data_dir)
        extra = ("--host", "127.0.0.1", "--port", "1") if args == ("serve",) else ()
        result = farmsync(env_file, *args, *extra, env=child_env(tmp_path))
        one_line(result, "DATA_DIR", str(data_dir), words)
        assert "serving on" not in result.stderr


async def test_an_unusable_data_dir_is_a_503_on_routes(app_with: Any, tmp_path: Path) -> None:
    for words, data_dir in unusable_data_dirs(tmp_path).items():
        client = await app_with(data_dir=data_dir)
        await assert_unavailable(client, "DATA_DIR", words)


def as_normal_user() -> list[str]:
    """A prefix that runs a command without root's power to write anywhere: tests run as root, and root's
    CAP_DAC_OVERRIDE ignores file modes. setpriv (util-linux) drops it (and its relatives) from the bounding set,
    so the child meets a read-only folder as a normal user would; as any other user nothing needs dropping."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def test_a_data_dir_this_user_cannot_write_is_one_line(tmp_path: Path) -> None:
    """The predecessor's ``DATA_DIR=/data`` met by a normal user: a folder it may not write, or one it may not
    create (under a read-only parent)."""
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    try:
        read_only.chmod(0o555)
        for data_dir, words in ((read_only, "cannot write in"), (read_only / "data", "cannot create")):
            env_file = write_env(tmp_path / "farm.env", DATA_DIR=data_dir)
            for args in (("validate",), ("status",)):
                result = run_farmsync(env_file, *args, env=child_env(tmp_path), prefix=as_normal_user())
                one_line(result, "DATA_DIR", str(data_dir), words, "Permission denied")
    finally:
        read_only.chmod(0o755)


# --- the store file deleted while running --------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def farmsync_logs() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("farmsync")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_a_store_file_deleted_while_running_is_reported(
    app_with: Any, tmp_path: Path, farmsync_logs: Collect
) -> None:
    client = await app_with(data_dir=tmp_path / "data")
    healthy = await client.get("/health")
    assert healthy.status_code == 200 and healthy.json()["store_status"] == "ok", healthy.text
    assert (await client.get("/sync/status", headers=SERVICE)).status_code == 200
    for path in (tmp_path / "data").glob("sync.sqlite3*"):
        path.unlink()
    await assert_unavailable(client, "deleted")
    errors = [r for r in farmsync_logs.records if r.levelno >= logging.ERROR and "store" in r.getMessage()]
    assert errors, [(r.levelname, r.getMessage()) for r in farmsync_logs.records]
    (tmp_path / "data" / "sync.sqlite3").write_bytes(b"")  # a new file in its place is not the store either
    await assert_unavailable(client, "replaced")


# --- a busy port -------------------------------------------------------------------------------------------------


def test_a_busy_port_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env_file = write_env(tmp_path / "farm.env", DATA_DIR=tmp_path / "data", POLL_INTERVAL_SECONDS=0)
        result = farmsync(
            env_file, "serve", "--host", "127.0.0.1", "--port", str(port), env=child_env(tmp_path)
        )
    line = one_line(result, f"port {port}", "in use", "--port", "PORT")
    assert "serving on" not in result.stderr and "Errno" not in line
    assert len(line) <= 80, line
