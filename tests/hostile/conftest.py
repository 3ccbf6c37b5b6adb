"""The API as a hostile caller meets it: the real ``app`` target (functions-framework's ASGI app of
functions/main.py) wired to the simulated farm and a fake printer, with SERVICE_API_TOKEN and
WEBHOOK_SHARED_SECRET set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from farmsync.services import Services, set_services
from farmsync.store.sqlite import SqliteStore
from farmsync_sim.server import SimFarm
from tests.reliability.world import settings_for

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "svc-token-for-tests"
WEBHOOK_SECRET = "hook-secret-for-tests"
SERVICE = {"X-Service-Token": SERVICE_TOKEN}
BEARER = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
PRINTER_PASSWORD = "pw-hostile-printer-4321"

HOSTILE = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
"""Bounded, reproducible examples (the same on every run and in CI) for the hostile-input suites."""


@lru_cache(maxsize=1)
def app_target() -> Any:
    """The ``app`` function target as functions-framework serves it (its ASGI app), built once."""
    from functions_framework.aio import create_asgi_app

    return create_asgi_app(target="app", source=str(ROOT / "functions" / "main.py"))


@pytest.fixture
def hostile_services(sim_farm: SimFarm, tmp_path: Path, fake_buddy: Callable[..., Any]) -> Iterator[Services]:
    """Services on the small farm with every feature on (G-code in dry run by default), installed process-wide."""
    printer = fake_buddy(password=PRINTER_PASSWORD, name="Hostile")
    master = tmp_path / "master"
    master.mkdir()
    (master / "part.gcode").write_bytes(b"G1 X1\n" * 50)
    printers_file = tmp_path / "printers.yml"
    printers_file.write_text(
        f"Hostile:\n  printer_type: MK4\n  host: {printer.url}\n  username: maker\n  password: {PRINTER_PASSWORD}\n",
        encoding="utf-8",
    )
    settings_ = settings_for(
        sim_farm, tmp_path / "data", printers_file=printers_file, master=master, gcode_dry_run=True
    )
    services = Services(settings_, store=SqliteStore(tmp_path / "store.sqlite3"))
    set_services(services)
    yield services
    set_services(None)
    services.sync_store.close()


@pytest.fixture
async def client(hostile_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the ``app`` target in this event loop (no credentials unless a test sends them)."""
    transport = httpx.ASGITransport(app=app_target())
    async with httpx.AsyncClient(transport=transport, base_url="http://farmsync.test", timeout=60) as http:
        yield http
    for upstream in (hostile_services._bambuddy, hostile_services._inventree):
        if upstream is not None:
            await upstream.aclose()


def header(response: Any, name: str) -> str:
    """A header of an httpx response or a schemathesis one (whose values are lists)."""
    for key, value in response.headers.items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return ""


def assert_clean_answer(response: httpx.Response | Any, *, printers: tuple[str, ...] = ("Hostile",)) -> None:
    """The contract for any answer: no 5xx but a named upstream 502 or a configuration/store 503, never a
    traceback or a secret, and every refusal a JSON object with an ``error`` line."""
    from tests.fixtures.log_scan import known_secrets

    status = response.status_code
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    leaked = [origin for secret, origin in known_secrets().items() if secret in text]
    assert not leaked, f"the answer carries secrets: {leaked}"
    if status < 400:
        return
    content_type = header(response, "content-type")
    assert content_type.startswith("application/json"), (status, content_type, text[:200])
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert "\n" not in body["error"], body
    if status == 502:
        assert body.get("system") in {"bambuddy", "inventree", *printers}, body
    elif status == 503:
        problems = body.get("problems")
        assert (isinstance(problems, list) and problems) or "store" in body["error"], body
    else:
        assert status < 500, (status, body)
