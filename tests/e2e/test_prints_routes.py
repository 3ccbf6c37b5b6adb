"""The print routes as callers see them: the app router in-process, and the `app` target under functions-framework."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from farmsync.sim.server import SimFarm
from farmsync.sim.webhook import fire_webhook
from farmsync.web.app import app_router
from farmsync.web.openapi import render
from tests.fixtures.farm import farm_settings

SERVICE = {"X-Service-Token": "svc-token-for-tests"}
BEARER = {"Authorization": "Bearer hook-secret-for-tests"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app_client(farm_services) -> AsyncIterator[httpx.AsyncClient]:
    farm_services()

    async def endpoint(request: Request):
        return await app_router.dispatch(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT", "DELETE"])])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://farmsync.test", timeout=60) as client:
        yield client


pytestmark = pytest.mark.usefixtures("store_backend")


async def test_webhook_runs_a_tick_and_status_shows_it(
    app_client: httpx.AsyncClient, sim_farm: SimFarm
) -> None:
    payload = {
        "event": "print_complete",
        "printer": "B1-X1-CARBON",
        "filename": "Benchy",
        "title": "t",
        "message": "m",
        "source": "Bambuddy",
    }
    response = await app_client.post("/webhooks/bambuddy", json=payload, headers=BEARER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["triggered"] and body["totals"]["synced"] > 0
    status = (await app_client.get("/sync/status", headers=SERVICE)).json()
    assert status["runs"]["done"] == body["totals"]["synced"]
    assert status["last_tick"]["totals"]["synced"] == body["totals"]["synced"]
    assert status["cursor"]["print-log"]["id"] == body["cursor_after"]


@pytest.mark.parametrize(
    "headers,query",
    [({}, ""), ({"Authorization": "Bearer nope"}, ""), ({"X-Sync-Secret": "nope"}, "?secret=nope")],
)
async def test_webhook_refuses_wrong_secrets(app_client: httpx.AsyncClient, headers, query) -> None:
    response = await app_client.post(
        f"/webhooks/bambuddy{query}", json={"event": "print_complete"}, headers=headers
    )
    assert response.status_code == 401 and response.json()["field"] == "Authorization"


async def test_webhook_accepts_every_secret_form(app_client: httpx.AsyncClient) -> None:
    for headers, query in [
        (BEARER, ""),
        ({"X-Sync-Secret": "hook-secret-for-tests"}, ""),
        ({}, "?secret=hook-secret-for-tests"),
    ]:
        response = await app_client.post(
            f"/webhooks/bambuddy{query}", json={"event": "test"}, headers=headers
        )
        assert response.status_code == 200 and response.json()["triggered"] is False


@pytest.mark.parametrize(
    "content,content_type,status",
    [
        (b"not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"event": 5}', "application/json", 422),
        (b"<a/>", "text/xml", 415),
        (b"", "application/json", 400),
        (b'{"x": "' + b"a" * (1024 * 1024) + b'"}', "application/json", 413),
    ],
)
async def test_webhook_rejects_bad_bodies_with_4xx(
    app_client: httpx.AsyncClient, content, content_type, status
) -> None:
    response = await app_client.post(
        "/webhooks/bambuddy", content=content, headers={**BEARER, "Content-Type": content_type}
    )
    assert response.status_code == status and "Traceback" not in response.text
    assert set(response.json()) >= {"error", "status", "field", "expected"}


async def test_manual_routes_need_the_service_token(app_client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/sync/status"),
        ("POST", "/sync/backfill"),
        ("POST", "/sync/archive/1"),
        ("GET", "/validate"),
    ]:
        assert (await app_client.request(method, path)).status_code == 401
    assert (await app_client.get("/health")).status_code == 200


async def test_sync_archive_force_refreshes_without_new_stock(
    app_client: httpx.AsyncClient, sim_farm: SimFarm
) -> None:
    first = (await app_client.post("/sync/archive/1", headers=SERVICE)).json()
    assert {i["outcome"] for i in first["items"]} == {"synced"}
    stock_before = len(sim_farm.inventree.state.stock_items)
    sim_farm.bambuddy.state.archives[1]["external_url"] = None
    forced = (await app_client.post("/sync/archive/1?force=true", headers=SERVICE)).json()
    assert {i["outcome"] for i in forced["items"]} == {"refreshed"}
    assert len(sim_farm.inventree.state.stock_items) == stock_before
    assert "/web/part/" in sim_farm.bambuddy.state.archives[1]["external_url"]
    bad = await app_client.post("/sync/archive/1?force=perhaps", headers=SERVICE)
    assert bad.status_code == 422 and bad.json()["field"] == "force"
    missing = await app_client.post("/sync/archive/99999", headers=SERVICE)
    assert missing.status_code == 502 and missing.json()["system"] == "bambuddy"


async def test_backfill_max_archives_counts_only_synced(app_client: httpx.AsyncClient) -> None:
    one = (await app_client.post("/sync/backfill?max_archives=1", headers=SERVICE)).json()
    assert one["totals"]["synced"] == 1 and one["stopped"] in ("max_archives", "complete")
    rest = (await app_client.post("/sync/backfill", headers=SERVICE)).json()
    assert rest["totals"]["synced"] > 1
    bad = await app_client.post("/sync/backfill?max_archives=0", headers=SERVICE)
    assert bad.status_code == 422 and bad.json()["expected"].startswith("an integer >= 1")


async def test_validate_reports_auth_off_and_ids(app_client: httpx.AsyncClient) -> None:
    body = (await app_client.get("/validate", headers=SERVICE)).json()
    checks = {c["check"]: c for c in body["checks"]}
    assert (
        body["ok"]
        and checks["bambuddy"]["level"] == "warning"
        and "auth is off" in checks["bambuddy"]["message"]
    )
    assert checks["INVENTREE_STOCK_LOCATION_ID"]["level"] == "ok"
    assert checks["template.Weight"]["level"] == "ok"


async def test_validate_flags_a_structural_location(sim_farm: SimFarm, farm_services) -> None:
    from farmsync.validate import run_validation

    services = farm_services(inventree_stock_location_id=sim_farm.ids["FILAMENT_LOADED_LOCATION_ID"])
    body = await run_validation(services)
    check = next(c for c in body["checks"] if c["check"] == "INVENTREE_STOCK_LOCATION_ID")
    assert not body["ok"] and check["level"] == "error" and "structural" in check["message"]


def test_committed_openapi_matches_the_routes() -> None:
    committed = (ROOT / "shared/farmsync/web/openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "run: .venv/bin/python -m farmsync.web.openapi"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_app_target_under_functions_framework(sim_farm: SimFarm, store_backend: str, tmp_path: Path) -> None:
    """The real runtime: functions-framework loads functions/main.py; Bambuddy's own webhook call syncs prints."""
    settings = farm_settings(sim_farm, tmp_path)
    env = {
        **os.environ,
        **{
            k: str(v)
            for k, v in {
                "BAMBUDDY_BASE_URL": sim_farm.bambuddy_url,
                "BAMBUDDY_API_KEY": sim_farm.api_key,
                "INVENTREE_BASE_URL": sim_farm.inventree_url,
                "INVENTREE_TOKEN": sim_farm.token,
                "INVENTREE_PART_CATEGORY_ID": settings.inventree_part_category_id,
                "INVENTREE_STOCK_LOCATION_ID": settings.inventree_stock_location_id,
                "SERVICE_API_TOKEN": "svc-token-for-tests",
                "WEBHOOK_SHARED_SECRET": "hook-secret-for-tests",
                "DATA_DIR": tmp_path,
                "STORE_BACKEND": store_backend,
                "FIRESTORE_COLLECTION_PREFIX": f"ff{os.getpid()}",
                "LOG_FORMAT": "json",
                "FARMSYNC_ENV_FILE": "/dev/null",
            }.items()
        },
    }
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target=app",
            f"--source={ROOT / 'functions/main.py'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("functions-framework did not start")
        assert httpx.get(f"{base}/health").json()["store"] == store_backend
        delivery = fire_webhook(
            f"{base}/webhooks/bambuddy", "hook-secret-for-tests", printer="B1-X1-CARBON", filename="Benchy"
        )
        assert delivery.status_code == 200, delivery.text
        assert delivery.json()["totals"]["synced"] > 0
        assert httpx.get(f"{base}/sync/status", headers=SERVICE).status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["openapi"] == "3.0.3"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert "hook-secret-for-tests" not in output and sim_farm.token not in output
    assert sim_farm.token not in json.dumps(output)
