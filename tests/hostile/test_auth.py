"""Authentication as an attacker probes it: missing, wrong, near-miss and timing-probe credentials.

Timing is not measured (a statistical timing test would be flaky); instead the comparison itself is checked:
``same_secret`` must hand ``hmac.compare_digest`` two digests of equal length whatever it is given, so neither
the secret's content nor its length can show in the time taken.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from farmsync.services import Services
from farmsync.web import auth
from farmsync.web.app import ROUTES, api_router
from farmsync.web.handlers import filament, gcode, prints
from farmsync.web.router import Route, Router
from farmsync.web.targets import single
from farmsync_sim.server import SimFarm
from tests.hostile.conftest import SERVICE_TOKEN, WEBHOOK_SECRET

SERVICE_ROUTES = [r for r in ROUTES if r.auth == "service"]
NEAR_MISSES = [
    None,
    "",
    " ",
    SERVICE_TOKEN[:-1],
    SERVICE_TOKEN + "x",
    SERVICE_TOKEN[:1],
    SERVICE_TOKEN.upper(),
    f" {SERVICE_TOKEN}",
    f"{SERVICE_TOKEN} ",
    SERVICE_TOKEN[::-1],
    "\x00" + SERVICE_TOKEN,
    WEBHOOK_SECRET,
    "é" * len(SERVICE_TOKEN),
    "a" * 10_000,
]


def concrete(route: Route) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", "1", route.path)


def asgi(router: Router) -> httpx.AsyncClient:
    async def endpoint(request: Request) -> Response:
        return await router.dispatch(request)

    app = Starlette(routes=[StarletteRoute("/{path:path}", endpoint, methods=["GET", "POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://farmsync.test")


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 401, (response.status_code, response.text[:200])
    body = response.json()
    assert body["field"] == field and body["error"] and "Traceback" not in response.text
    assert SERVICE_TOKEN not in response.text and WEBHOOK_SECRET not in response.text


def test_every_service_route_is_in_the_table() -> None:
    """The loop below covers the manual routes; this keeps it honest if routes are added."""
    assert {(r.method, r.path) for r in SERVICE_ROUTES} >= {
        ("GET", "/validate"),
        ("GET", "/sync/status"),
        ("POST", "/sync/backfill"),
        ("POST", "/sync/filament"),
        ("POST", "/sync/gcode"),
        ("GET", "/gcode/status"),
    }


@pytest.mark.parametrize("route", SERVICE_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_manual_routes_refuse_missing_and_wrong_tokens(
    route: Route, client: httpx.AsyncClient, sim_farm: SimFarm
) -> None:
    """Every service route, every near miss: 401 before the handler runs (no upstream request is made)."""
    sim_farm.bambuddy.log.clear()
    sim_farm.inventree.log.clear()
    path = concrete(route)
    for token in NEAR_MISSES:
        headers = {} if token is None else {"X-Service-Token": token}
        try:
            response = await client.request(route.method, path, headers=headers)
        except (UnicodeEncodeError, httpx.LocalProtocolError):
            continue  # not sendable as a header at all
        refused(response, "X-Service-Token")
        assert response.headers["www-authenticate"] == "Token"
    # the token in any other place does not count
    for headers, query in [
        ({"Authorization": f"Bearer {SERVICE_TOKEN}"}, ""),
        ({"X-Sync-Secret": SERVICE_TOKEN}, ""),
        ({}, f"?token={SERVICE_TOKEN}"),
        ({"X-Service-Token": f"{SERVICE_TOKEN},{SERVICE_TOKEN}"}, ""),
    ]:
        refused(await client.request(route.method, path + query, headers=headers), "X-Service-Token")
    assert sim_farm.bambuddy.log.entries == [] and sim_farm.inventree.log.entries == []


async def test_the_right_token_opens_a_manual_route(client: httpx.AsyncClient) -> None:
    """The control: the same request with the token is not refused (so the refusals above mean something)."""
    response = await client.get("/sync/status", headers={"X-Service-Token": SERVICE_TOKEN})
    assert response.status_code == 200, response.text


async def test_function_targets_with_service_auth_are_closed_too(hostile_services: Services) -> None:
    """``api`` and the tick targets answer on any path: each refuses a request without the token."""
    routers = {
        "api": api_router,
        "backfill_tick": single("POST", prints.tick, "service"),
        "filament_tick": single("POST", filament.tick, "service"),
        "gcode_tick": single("POST", gcode.tick, "service"),
    }
    for name, router in routers.items():
        async with asgi(router) as http:
            paths = [concrete(r) for r in router.routes if r.auth == "service"]
            assert paths, name
            for path in paths:
                method = next(r.method for r in router.routes if concrete(r) == path)
                for headers in ({}, {"X-Service-Token": SERVICE_TOKEN[:-1]}):
                    refused(await http.request(method, path, headers=headers), "X-Service-Token")


@pytest.mark.parametrize(
    "headers,query",
    [
        ({}, ""),
        ({"Authorization": f"Bearer {WEBHOOK_SECRET[:-1]}"}, ""),
        ({"Authorization": f"Bearer {WEBHOOK_SECRET}x"}, ""),
        ({"Authorization": f"Basic {WEBHOOK_SECRET}"}, ""),
        ({"Authorization": WEBHOOK_SECRET}, ""),
        ({"Authorization": "Bearer"}, ""),
        ({"X-Sync-Secret": WEBHOOK_SECRET.upper()}, ""),
        ({"X-Sync-Secret": ""}, "?secret="),
        ({}, f"?secret={WEBHOOK_SECRET[:-1]}"),
        ({}, f"?Secret={WEBHOOK_SECRET}"),
        ({"X-Service-Token": SERVICE_TOKEN}, ""),
    ],
)
async def test_webhook_refuses_missing_and_wrong_secrets(
    client: httpx.AsyncClient, sim_farm: SimFarm, headers: dict[str, str], query: str
) -> None:
    sim_farm.bambuddy.log.clear()
    response = await client.post(
        f"/webhooks/bambuddy{query}", json={"event": "print_complete"}, headers=headers
    )
    refused(response, "Authorization")
    assert sim_farm.bambuddy.log.entries == []


def test_same_secret_compares_equal_length_digests_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    expected = "s3cret-token-value"
    probes = ["", "s", expected[:-1], expected, expected + "!", expected * 50, "\udcff", "ümlaut", None]
    answers = {repr(p): auth.same_secret(p, expected) for p in probes}
    assert answers == {repr(p): p == expected for p in probes}
    assert len(calls) == len(probes), "every comparison must go through hmac.compare_digest"
    for a, b in calls:
        assert isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b) == 32, (a, b)
    assert auth.same_secret("", "") is False and auth.same_secret(None, "") is False
    assert auth.same_secret("anything", "") is False


def test_webhook_check_compares_every_offered_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which of the three places matched must not change the work done: all offered values are compared."""
    compared: list[str | None] = []
    real = auth.same_secret

    def spy(given: str | None, expected: str) -> bool:
        compared.append(given)
        return real(given, expected)

    monkeypatch.setattr(auth, "same_secret", spy)
    headers = {"x-sync-secret": WEBHOOK_SECRET, "authorization": "Bearer nope"}
    auth.require_webhook_secret(headers, {"secret": "nope2"}, WEBHOOK_SECRET)
    assert compared == [WEBHOOK_SECRET, "nope", "nope2"]


def test_the_api_description_documents_every_way_to_send_the_webhook_secret() -> None:
    """Bambuddy may only manage ``?secret=``: the description lists it as a way in, not only as a parameter."""
    from farmsync.web.openapi import build

    document = build()
    schemes = document["components"]["securitySchemes"]
    operation = document["paths"]["/webhooks/bambuddy"]["post"]
    ways = {name for requirement in operation["security"] for name in requirement}
    query = [name for name, s in schemes.items() if s.get("in") == "query" and s.get("name") == "secret"]
    assert query and query[0] in ways, (schemes, operation["security"])
    assert "?secret=" in document["info"]["description"]
