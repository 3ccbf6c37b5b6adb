"""The print routes as callers see them: the app router in-process, and the `app` target under functions-framework."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from farmsync.web.app import app_router
from farmsync.web.openapi import render
from farmsync_sim.server import SimFarm
from farmsync_sim.webhook import build_payload, finish_photo, finish_photo_fields, fire_webhook
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
    assert status["cursor"]["print-log"]["time"] == body["cursor_after"]


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
        (b'{"x": "' + b"a" * (8 * 1024 * 1024) + b'"}', "application/json", 413),
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


async def test_webhook_with_bambuddys_finish_photo_is_accepted_and_runs_a_tick(
    app_client: httpx.AsyncClient, sim_farm: SimFarm, caplog: pytest.LogCaptureFixture
) -> None:
    """Bambuddy attaches the photo as base64 ``image`` up to 2,500,000 bytes: a body of about 3.4 MB."""
    state = sim_farm.bambuddy.state
    run = state.add_print("B1-X1-CARBON", print_name="Photographed", content_hash="3" * 64)
    event, fields = sim_farm.bambuddy.webhook_fields(run["id"])
    photo = finish_photo(2_500_000, seed=run["id"])
    payload = build_payload(event, **fields, **finish_photo_fields(run["archive_id"], photo))
    body = json.dumps(payload).encode()
    assert 3_300_000 < len(body) < 3_500_000
    response = await app_client.post(
        "/webhooks/bambuddy", content=body, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["triggered"] and run["id"] in {i["run_id"] for i in response.json()["items"]}
    assert payload["image"][:64] not in response.text and payload["image"][:64] not in caplog.text


async def test_backfill_retry_query(app_client: httpx.AsyncClient, sim_farm: SimFarm) -> None:
    sim_farm.inventree.knobs.update(fault_rate=1.0, fault_kinds={"locked": 1.0})
    failed = (await app_client.post("/sync/backfill", headers=SERVICE)).json()
    assert failed["totals"]["failed"] > 0
    sim_farm.inventree.knobs.update(fault_rate=0.0)
    now = (await app_client.post("/sync/backfill?retry=now", headers=SERVICE)).json()
    assert now["totals"]["failed"] == 0 and now["totals"]["pending"] == 0
    assert now["totals"]["synced"] == failed["totals"]["failed"]
    bad = await app_client.post("/sync/backfill?retry=later", headers=SERVICE)
    assert bad.status_code == 422 and bad.json()["field"] == "retry"


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
    assert missing.status_code == 404 and missing.json()["field"] == "archive_id"
    sim_farm.bambuddy.state.delete_archive(2)  # soft: Bambuddy answers 404 from now on
    deleted = await app_client.post("/sync/archive/2", headers=SERVICE)
    assert deleted.status_code == 404 and "Bambuddy has no archive 2" in deleted.json()["error"]


async def test_backfill_max_archives_counts_only_synced(app_client: httpx.AsyncClient) -> None:
    one = (await app_client.post("/sync/backfill?max_archives=1", headers=SERVICE)).json()
    assert one["totals"]["synced"] == 1 and one["stopped"] in ("max_archives", "complete")
    rest = (await app_client.post("/sync/backfill", headers=SERVICE)).json()
    assert rest["totals"]["synced"] > 1
    bad = await app_client.post("/sync/backfill?max_archives=0", headers=SERVICE)
    assert bad.status_code == 422 and bad.json()["expected"].startswith("an integer from 1 to ")


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


async def test_validate_checks_write_scopes_by_the_safe_probe(sim_farm: SimFarm, farm_services) -> None:
    from farmsync.validate import run_validation

    state = sim_farm.bambuddy.state
    state.auth_enabled = True
    read_only = state.add_api_key(can_manage_archives=False, can_manage_inventory=False)
    services = farm_services(bambuddy_api_key=read_only, filament_tracking_enabled=True)
    body = await run_validation(services)
    checks = {c["check"]: c for c in body["checks"]}
    assert not body["ok"]
    assert checks["bambuddy.scope.archives"]["level"] == "error"
    assert "can_manage_archives" in checks["bambuddy.scope.archives"]["message"]
    assert checks["bambuddy.scope.spools"]["level"] == "error"
    # nothing was written by the probes
    assert all(r.status in (403, 404) for r in sim_farm.bambuddy.log.entries if r.method == "PATCH")
    full = farm_services(filament_tracking_enabled=True)
    checks = {c["check"]: c for c in (await run_validation(full))["checks"]}
    assert checks["bambuddy.scope.archives"]["level"] == "ok"
    assert checks["bambuddy.scope.spools"]["level"] == "ok"
    # without filament tracking the spool scope is not needed, so not probed
    state.auth_enabled = False
    plain = {c["check"]: c for c in (await run_validation(farm_services()))["checks"]}
    assert "bambuddy.scope.spools" not in plain
    assert "auth is off" in plain["bambuddy.scope.archives"]["message"]


async def test_validate_flags_a_structural_part_category(sim_farm: SimFarm, farm_services) -> None:
    from farmsync.validate import run_validation

    structural = next(pk for pk, c in sim_farm.inventree.state.categories.items() if c["structural"])
    body = await run_validation(farm_services(inventree_part_category_id=structural))
    check = next(c for c in body["checks"] if c["check"] == "INVENTREE_PART_CATEGORY_ID")
    assert not body["ok"] and check["level"] == "error" and "structural" in check["message"]


def test_committed_openapi_matches_the_routes() -> None:
    committed = (ROOT / "shared/farmsync/web/openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "run: .venv/bin/python -m farmsync.web.openapi"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def functions_target(
    target: str, sim_farm: SimFarm, store_backend: str, tmp_path: Path
) -> Iterator[tuple[str, list[str]]]:
    """functions-framework serving ``target`` of functions/main.py; yields its URL and, after, its output."""
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
                "FIRESTORE_COLLECTION_PREFIX": f"ff{os.getpid()}{target}",
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
            f"--target={target}",
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
    output: list[str] = []
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("functions-framework did not start")
        yield base, output
    finally:
        proc.terminate()
        output.append(proc.communicate(timeout=10)[0].decode(errors="replace"))


def test_webhook_target_takes_bambuddys_photo_webhook(
    sim_farm: SimFarm, store_backend: str, tmp_path: Path
) -> None:
    """The ``webhook`` function target accepts a 3.4 MB body (finish photo as base64) and never logs it."""
    run = sim_farm.bambuddy.state.add_print("B2-P1S", print_name="With photo", content_hash="4" * 64)
    with functions_target("webhook", sim_farm, store_backend, tmp_path) as (base, output):
        delivery = sim_farm.bambuddy.fire_webhook(
            base, "hook-secret-for-tests", run["id"], photo_bytes=2_500_000
        )
        sent = delivery.request.content
        assert len(sent) > 3_300_000
        assert delivery.status_code == 200, delivery.text[:300]
        assert run["id"] in {i["run_id"] for i in delivery.json()["items"] if i["outcome"] == "synced"}
    image = json.loads(sent)["image"]
    assert image[:64] not in output[0] and image[-64:] not in output[0]


def test_app_target_under_functions_framework(sim_farm: SimFarm, store_backend: str, tmp_path: Path) -> None:
    """The real runtime: functions-framework loads functions/main.py; Bambuddy's own webhook call syncs prints."""
    with functions_target("app", sim_farm, store_backend, tmp_path) as (base, outputs):
        assert httpx.get(f"{base}/health").json()["store"] == store_backend
        delivery = fire_webhook(
            f"{base}/webhooks/bambuddy", "hook-secret-for-tests", printer="B1-X1-CARBON", filename="Benchy"
        )
        assert delivery.status_code == 200, delivery.text
        assert delivery.json()["totals"]["synced"] > 0
        assert httpx.get(f"{base}/sync/status", headers=SERVICE).status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["openapi"] == "3.0.3"
    output = outputs[0]
    assert "hook-secret-for-tests" not in output and sim_farm.token not in output
    assert sim_farm.token not in json.dumps(output)
