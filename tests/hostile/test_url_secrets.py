"""A password written into BAMBUDDY_BASE_URL or INVENTREE_BASE_URL (``http://user:pass@host``) is a secret like
any token: ``config`` (table and --json), ``validate``, ``status``, error messages, logs and the part links
written into Bambuddy show it masked or not at all."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest

from farmsync.clients.http import HttpClient
from farmsync.errors import ConfigError, UpstreamError
from farmsync.logs import configure, get_logger
from farmsync.services import Services
from farmsync.settings import load_settings
from farmsync.store.sqlite import SqliteStore
from farmsync_sim.server import SimFarm
from tests.fixtures.cli import run_farmsync
from tests.fixtures.log_scan import register_test_secret

BAMBUDDY_PASSWORD = "bb-url-password-7531"
INVENTREE_TOKEN_IN_URL = "it-url-token-8642"
register_test_secret(BAMBUDDY_PASSWORD, "a password in BAMBUDDY_BASE_URL")
register_test_secret(INVENTREE_TOKEN_IN_URL, "a token in INVENTREE_BASE_URL")


def with_credentials(url: str, userinfo: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{userinfo}@{rest}"


@pytest.fixture
def env_file(sim_farm: SimFarm, tmp_path: Path) -> Path:
    ids = sim_farm.ids
    path = tmp_path / "farm.env"
    path.write_text(
        f"BAMBUDDY_BASE_URL={with_credentials(sim_farm.bambuddy_url, 'admin:' + BAMBUDDY_PASSWORD)}\n"
        f"BAMBUDDY_API_KEY={sim_farm.api_key}\n"
        f"INVENTREE_BASE_URL={with_credentials(sim_farm.inventree_url, INVENTREE_TOKEN_IN_URL)}\n"
        f"INVENTREE_TOKEN={sim_farm.token}\n"
        f"INVENTREE_PART_CATEGORY_ID={ids['INVENTREE_PART_CATEGORY_ID']}\n"
        f"INVENTREE_STOCK_LOCATION_ID={ids['INVENTREE_STOCK_LOCATION_ID']}\n"
        f"SERVICE_API_TOKEN=svc-url-test-token\nDATA_DIR={tmp_path / 'data'}\nLOG_LEVEL=debug\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("args", [("config", "--json"), ("config",), ("validate", "--json"), ("status",)])
def test_the_commands_never_show_a_password_from_a_url(env_file: Path, args: tuple[str, ...]) -> None:
    result = run_farmsync(env_file, *args)
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown, shown[-2000:]
    assert BAMBUDDY_PASSWORD not in shown and INVENTREE_TOKEN_IN_URL not in shown, shown
    if args == ("config", "--json"):
        values = json.loads(result.stdout)
        assert values["BAMBUDDY_BASE_URL"].startswith("http://admin:********@127.0.0.1:")
        assert values["INVENTREE_BASE_URL"].startswith("http://********@127.0.0.1:")


def test_a_bad_url_is_reported_masked() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(bambuddy_base_url=f"ftp://admin:{BAMBUDDY_PASSWORD}@127.0.0.1/api/v1")
    assert BAMBUDDY_PASSWORD not in str(raised.value) and "admin:********@" in str(raised.value)


async def test_an_upstream_echoing_the_url_is_masked_in_the_error() -> None:
    url = f"http://admin:{BAMBUDDY_PASSWORD}@127.0.0.1:9/api/v1"

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"detail": f"cannot use {url} here"})

    client = HttpClient("bambuddy", url, transport=httpx.MockTransport(echo))
    try:
        with pytest.raises(UpstreamError) as raised:
            await client.request("GET", "/printers/")
    finally:
        await client.aclose()
    assert BAMBUDDY_PASSWORD not in str(raised.value) and BAMBUDDY_PASSWORD not in json.dumps(
        raised.value.errors
    )


def test_logs_redact_a_password_from_a_url(tmp_path: Path) -> None:
    url = f"http://admin:{BAMBUDDY_PASSWORD}@127.0.0.1:9/api/v1"
    settings = load_settings(bambuddy_base_url=url, inventree_base_url=f"http://{INVENTREE_TOKEN_IN_URL}@h")
    Services(settings, store=SqliteStore(tmp_path / "s.sqlite3")).sync_store.close()
    stream = io.StringIO()
    logger = logging.getLogger("farmsync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    configure("json", "INFO", stream=stream)
    try:
        get_logger("test").info("connecting to %s and %s", url, settings.inventree_base_url)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert BAMBUDDY_PASSWORD not in stream.getvalue() and INVENTREE_TOKEN_IN_URL not in stream.getvalue()


def test_part_links_for_people_carry_no_credentials() -> None:
    settings = load_settings(inventree_base_url=f"https://{INVENTREE_TOKEN_IN_URL}@inventree.example/api")
    assert settings.inventree_browser_url == "https://inventree.example"
