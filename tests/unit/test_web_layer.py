"""The web layer: constant-time auth, strict parsing of what callers send, and errors that are always JSON."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import pytest
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route as StarletteRoute

from farmsync.errors import AuthRequired, ConfigError, UpstreamUnavailable
from farmsync.web.auth import require_service_token, require_webhook_secret, same_secret
from farmsync.web.call import Call
from farmsync.web.inputs import ASCII_DIGITS, Flag, Query, takes_query
from farmsync.web.router import Route, Router


def test_same_secret() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abd", "abc") and not same_secret(None, "abc") and not same_secret("", "")
    assert not same_secret("abc" * 100, "abc")


def test_service_token_only_when_configured() -> None:
    require_service_token({}, "")
    require_service_token({"x-service-token": "t0k"}, "t0k")
    with pytest.raises(AuthRequired):
        require_service_token({"x-service-token": "nope"}, "t0k")
    with pytest.raises(AuthRequired):
        require_service_token({}, "t0k")


@pytest.mark.parametrize(
    "headers,query",
    [
        ({"authorization": "Bearer s3cret"}, {}),
        ({"authorization": "bearer s3cret"}, {}),
        ({"x-sync-secret": "s3cret"}, {}),
        ({}, {"secret": "s3cret"}),
        ({"authorization": "Bearer wrong"}, {"secret": "s3cret"}),
    ],
)
def test_webhook_secret_accepts_each_form(headers, query) -> None:
    require_webhook_secret(headers, query, "s3cret")


@pytest.mark.parametrize(
    "headers,query",
    [
        ({}, {}),
        ({"authorization": "Token s3cret"}, {}),
        ({"authorization": "Bearer s3cre"}, {}),
        ({"x-sync-secret": "S3CRET"}, {}),
        ({}, {"secret": ""}),
    ],
)
def test_webhook_secret_refuses(headers, query) -> None:
    with pytest.raises(AuthRequired):
        require_webhook_secret(headers, query, "s3cret")


class EchoQuery(Query):
    force: Flag = False
    n: Annotated[int, Field(ge=1, le=10), ASCII_DIGITS] | None = None


@takes_query(EchoQuery)
async def echo(call: Call, query: EchoQuery):
    return {
        "force": query.force,
        "n": query.n,
        "body": await call.json(),
        "id": call.path_params.get("item_id"),
    }


async def boom_upstream(call: Call):
    raise UpstreamUnavailable("inventree", "POST", "/api/stock/", "Service Unavailable", status=503)


async def boom_config(call: Call):
    raise ConfigError(["INVENTREE_TOKEN: required for prints sync, but not set"])


async def boom_bug(call: Call):
    raise RuntimeError("a bug with a secret s3cret inside")


async def allow_all(route: Route, call: Call) -> None:
    if route.auth == "service":
        require_service_token(call.headers, "t0k")


@pytest.fixture
async def client():
    router = Router(
        [
            Route("POST", "/echo/{item_id:int}", echo, "none"),
            Route("GET", "/upstream", boom_upstream, "none"),
            Route("GET", "/config", boom_config, "none"),
            Route("GET", "/bug", boom_bug, "none"),
            Route("GET", "/private", echo, "service"),
        ],
        allow_all,
    )

    async def endpoint(request: Request):
        return await router.dispatch(request)

    app = Starlette(
        routes=[StarletteRoute("/{path:path}", endpoint, methods=["GET", "POST", "PUT", "DELETE"])]
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://farmsync.test") as http:
        yield http


async def test_happy_path_converts_params(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo/7?force=true&n=3", json={"a": 1})
    assert r.status_code == 200 and r.json() == {"force": True, "n": 3, "body": {"a": 1}, "id": 7}


@pytest.mark.parametrize(
    "url,body,headers,status,field",
    [
        ("/echo/7?force=maybe", None, {}, 422, "force"),
        ("/echo/7?n=0", None, {}, 422, "n"),
        ("/echo/7?n=x", None, {}, 422, "n"),
        ("/echo/7", b"{not json", {"content-type": "application/json"}, 400, "body"),
        ("/echo/7", b"<xml/>", {"content-type": "application/xml"}, 415, "Content-Type"),
        ("/echo/7", b"x" * (1024 * 1024 + 1), {"content-type": "application/json"}, 413, "body"),
    ],
)
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, url, body, headers, status, field) -> None:
    r = await client.post(url, content=body, headers=headers)
    assert r.status_code == status and r.json()["field"] == field and "expected" in r.json()


async def test_unknown_path_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    r = await client.get("/echo/7")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert (await client.post("/echo/abc")).status_code == 404


async def test_errors_map_to_statuses_without_tracebacks(client: httpx.AsyncClient) -> None:
    upstream = await client.get("/upstream")
    assert upstream.status_code == 502 and upstream.json()["system"] == "inventree"
    config = await client.get("/config")
    assert config.status_code == 503 and config.json()["problems"][0].startswith("INVENTREE_TOKEN")
    bug = await client.get("/bug")
    assert bug.status_code == 500 and set(bug.json()) == {"error", "reference", "status"}
    assert "Traceback" not in bug.text and "s3cret" not in bug.text


async def test_service_route_needs_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/private")).status_code == 401
    assert (await client.get("/private", headers={"X-Service-Token": "t0k"})).status_code == 200
    body = (await client.get("/private", headers={"X-Service-Token": "bad"})).json()
    assert body["field"] == "X-Service-Token" and json.dumps(body).find("t0k") == -1
