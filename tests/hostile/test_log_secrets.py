"""A representative flow full of secrets, logged as JSON and as text: no secret reaches either output.

The flow uses every kind of credential farmsync holds and makes each one travel near a log line: a webhook with
the secret in the URL (and a wrong one), a manual call with a near-miss service token, Bambuddy and InvenTree
refusing wrong credentials (their error text is logged), and a G-code run against printers whose passwords are in
printers.yml, one of them wrong.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from farmsync import logs
from farmsync.errors import FarmsyncError
from farmsync.filament.run import run_filament
from farmsync.gcode.service import run_gcode
from farmsync.prints.service import run_tick
from farmsync.services import Services, set_services
from farmsync.store.sqlite import SqliteStore
from farmsync.web.app import app_router
from farmsync_sim.buddy import FakeBuddy
from farmsync_sim.server import SimFarm
from tests.reliability.world import close_clients, settings_for

WRONG_TOKEN = "inv-wrong-token-0123456789abcdef"
WRONG_KEY = "bb_wrong-key-0123456789abcdef"
SERVICE_TOKEN = "svc-log-flow-token-4242"
WEBHOOK_SECRET = "hook-log-flow-secret-4242"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger(logs.LOGGER_NAME)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    for handler in handlers:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


async def flow(farm: SimFarm, tmp_path: Path, buddies: list[FakeBuddy]) -> list[str]:
    """Run the flow; returns every secret it used."""
    master = tmp_path / "master"
    master.mkdir(exist_ok=True)
    (master / "a.gcode").write_bytes(b"G1\n" * 10)
    printers_file = tmp_path / "printers.yml"
    good, bad = buddies
    printers_file.write_text(
        f"Good:\n  printer_type: MK4\n  host: {good.url}\n  username: maker\n  password: {good.password}\n"
        f"Bad:\n  printer_type: MK4\n  host: {bad.url}\n  username: maker\n  password: pw-not-the-right-one-77\n",
        encoding="utf-8",
    )
    base: dict[str, Any] = {
        "printers_file": printers_file,
        "master": master,
        "service_api_token": SERVICE_TOKEN,
        "webhook_shared_secret": WEBHOOK_SECRET,
        "http_timeout_seconds": 5.0,
        "sync_max_attempts": 2,
    }
    store = SqliteStore(tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}.sqlite3")
    services = Services(settings_for(farm, tmp_path / "data", **base), store=store)
    set_services(services)

    async def endpoint(request: Request) -> Response:
        return await app_router.dispatch(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        await http.post(f"/webhooks/bambuddy?secret={WEBHOOK_SECRET}", json={"event": "print_complete"})
        await http.post(f"/webhooks/bambuddy?secret={WEBHOOK_SECRET}x", json={"event": "print_complete"})
        await http.post("/webhooks/bambuddy", json={}, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
        await http.get("/sync/status", headers={"X-Service-Token": SERVICE_TOKEN[:-1]})
        await http.post("/sync/gcode?dry_run=false", headers={"X-Service-Token": SERVICE_TOKEN})
    await close_clients(services)
    # wrong credentials upstream: their refusals are logged
    for overrides in ({"inventree_token": WRONG_TOKEN}, {"bambuddy_api_key": WRONG_KEY}):
        wrong = Services(settings_for(farm, tmp_path / "data", **{**base, **overrides}), store=store)
        set_services(wrong)
        with pytest.raises(FarmsyncError):  # refused credentials: only the log lines matter here
            await run_tick(wrong)
            await run_filament(wrong, dry_run=False)
        await run_gcode(wrong, dry_run=False)
        await close_clients(wrong)
    set_services(None)
    store.close()
    return [
        farm.api_key,
        farm.token,
        SERVICE_TOKEN,
        WEBHOOK_SECRET,
        WRONG_TOKEN,
        WRONG_KEY,
        good.password,
        "pw-not-the-right-one-77",
    ]


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_secret_in_json_or_text_logs(
    log_format: str,
    sim_farm_factory: Callable[..., SimFarm],
    fake_buddy: Callable[..., FakeBuddy],
    tmp_path: Path,
    restore_logging: None,
) -> None:
    farm = sim_farm_factory(auth=True, seed=5)
    buddies = [
        fake_buddy(password="pw-good-printer-5151", name="Good"),
        fake_buddy(password="pw-other-5252", name="Bad"),
    ]
    stream = io.StringIO()
    logs.configure(log_format, "DEBUG", stream=stream)
    secrets = await flow(farm, tmp_path, buddies)
    output = stream.getvalue()
    assert output.count("\n") >= 10, "the flow logged almost nothing: the check would prove nothing"
    assert "request failed" in output and ("401" in output or "auth" in output.lower())
    leaked = [s for s in secrets if s in output]
    assert leaked == [], f"secrets in the {log_format} log: {leaked}"
    if log_format == "json":
        import json

        for line in output.splitlines():
            if line.startswith("{"):
                json.loads(line)


def test_the_session_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    """The session-end scan is only worth something if it catches a leak: plant one of each kind."""
    from tests.fixtures.log_scan import ScanHandler, known_secrets, register_test_secret, scan

    planted = "planted-secret-for-the-scanner-31337"
    register_test_secret(planted, "planted by the scanner's own test")
    handler = ScanHandler(tmp_path / "session.log", lambda: "this test")
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "boom %s", (planted,), None)
    handler.emit(record)
    logs.register_secrets([planted])  # farmsync knows it: its own records are redacted, as in production
    redacted = logging.LogRecord("farmsync.web", logging.INFO, __file__, 1, "token %s", (planted,), None)
    handler.emit(redacted)
    handler.close()
    (tmp_path / "outputs.log").write_text(f"some::test\tCaptured stdout call\tprinted {planted}\n")
    hits = scan(tmp_path, known_secrets())
    assert len(hits) == 2 and all(planted not in hit for hit in hits), hits
    assert hits[0].startswith("outputs.log:1:") and hits[1].startswith("session.log:1:")
    assert "<planted by the scanner's own test>" in hits[1]
