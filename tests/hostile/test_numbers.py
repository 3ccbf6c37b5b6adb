"""Numbers past Python's limits, on every route and every function target.

``int()`` refuses strings of more than 4,300 digits with a ValueError, ``float()`` overflows on a 400-digit
integer, and both accept full-width digits, ``_`` and spaces. Every number a caller sends (path, query, JSON body)
is bounded instead and refused with a 422 naming the field and the range, after authentication.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farmsync.services import Services
from farmsync.web.app import ROUTES
from tests.hostile.conftest import BEARER, HOSTILE, ROOT, SERVICE, assert_clean_answer

HUGE = "9" * 4301
INT64_MAX = 2**63 - 1
TARGETS = ("app", "api", "webhook", "backfill_tick", "filament_tick", "gcode_tick")


@cache
def target(name: str) -> Any:
    """A function target of functions/main.py as functions-framework serves it."""
    from functions_framework.aio import create_asgi_app

    return create_asgi_app(target=name, source=str(ROOT / "functions" / "main.py"))


@pytest.fixture
async def targets(hostile_services: Services) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {
        name: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=target(name)), base_url="http://farmsync.test", timeout=60
        )
        for name in TARGETS
    }
    yield clients
    for http in clients.values():
        await http.aclose()
    for upstream in (hostile_services._bambuddy, hostile_services._inventree):
        if upstream is not None:
            await upstream.aclose()


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    assert_clean_answer(response)
    assert response.status_code == 422, (response.status_code, response.text[:300])
    body = response.json()
    assert body["field"] == field, body
    assert " to " in body["expected"] or "integer" in body["expected"], body
    return body


async def test_a_4301_digit_path_id_is_a_422_after_auth(client: httpx.AsyncClient) -> None:
    anonymous = await client.post(f"/sync/archive/{HUGE}")
    assert anonymous.status_code == 401  # nothing is parsed for a caller without the token
    assert_clean_answer(anonymous)
    body = refused(await client.post(f"/sync/archive/{HUGE}", headers=SERVICE), "archive_id")
    assert body["expected"] == f"an integer from 1 to {INT64_MAX}"
    assert "4301 digits" in body["error"]
    refused(await client.post(f"/sync/archive/{INT64_MAX + 1}", headers=SERVICE), "archive_id")


async def test_budget_seconds_of_400_digits_does_not_overflow(client: httpx.AsyncClient) -> None:
    body = refused(
        await client.post(f"/sync/backfill?budget_seconds={'9' * 400}", headers=SERVICE), "budget_seconds"
    )
    assert body["expected"] == "an integer from 1 to 86400"
    refused(await client.post(f"/sync/backfill?max_archives={HUGE}", headers=SERVICE), "max_archives")


@pytest.mark.parametrize("text", ["１２", "٣", "1_000", " 5", "5 ", "+5", "0x10", "²"])
async def test_only_ascii_digits_are_numbers(client: httpx.AsyncClient, text: str) -> None:
    refused(
        await client.post("/sync/backfill", params={"max_archives": text}, headers=SERVICE), "max_archives"
    )
    path = await client.post(
        f"/sync/archive/{httpx.URL(path='/' + text).raw_path.decode()[1:]}", headers=SERVICE
    )
    assert_clean_answer(path)
    assert path.status_code in (404, 422), path.text[:200]  # no route, or refused: never taken as a number


@pytest.mark.parametrize(
    "content,field",
    [
        (b'{"event": "test", "id": ' + HUGE.encode() + b"}", "body.id"),
        (b'{"event": "test", "x": [1, -' + b"9" * 30 + b"]}", "body.x[1]"),
        (b'{"event": "test", "t": 1e400}', "body.t"),
        (b'{"event": "test", "t": -Infinity}', "body.t"),
        (b'{"a": {"b": NaN}}', "body.a.b"),
    ],
)
async def test_numbers_in_a_json_body_are_bounded(
    client: httpx.AsyncClient, content: bytes, field: str
) -> None:
    response = await client.post(
        "/webhooks/bambuddy", content=content, headers={**BEARER, "Content-Type": "application/json"}
    )
    body = refused(response, field)
    assert str(INT64_MAX) in body["expected"]


async def test_a_64_bit_number_in_a_body_is_still_accepted(client: httpx.AsyncClient) -> None:
    content = b'{"event": "test", "id": 9223372036854775807, "t": 1.5e300, "n": -9223372036854775807}'
    response = await client.post(
        "/webhooks/bambuddy", content=content, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]


# --- fuzzing: integers far beyond 64 bits, every route and every target --------------------------------------------

FAR = st.one_of(
    st.from_regex(r"-?[1-9][0-9]{19,60}", fullmatch=True),  # just past 64 bits
    st.integers(min_value=300, max_value=6000).map(lambda n: "9" * n),  # past float() and int()'s limits
    st.text(alphabet="０１２３４５６７８９٠١٢٣", min_size=1, max_size=12),  # digits that are not ASCII
)


def numeric_slots() -> list[tuple[str, str, str]]:
    """(method, path template with ``{n}``, field) for every numeric input of the route table."""
    slots = []
    for route in ROUTES:
        path = route.path.replace("{archive_id:int}", "{n}")
        if "{n}" in path:
            slots.append((route.method, path, "archive_id"))
        for param in route.params:
            if param.kind == "integer":
                slots.append((route.method, route.path + "?" + param.name + "={n}", param.name))
        if route.body == "form":
            slots.append((route.method, route.path, "form"))
        elif route.body:
            slots.append((route.method, route.path, "body"))
    return slots


SLOTS = numeric_slots()


def test_the_fuzzing_reaches_every_numeric_input() -> None:
    assert {field for _m, _p, field in SLOTS} >= {"archive_id", "max_archives", "budget_seconds", "body"}


@pytest.mark.slow
@given(slot=st.sampled_from(SLOTS), number=FAR, on_api=st.booleans())
@HOSTILE
async def test_far_numbers_on_every_route(
    targets: dict[str, httpx.AsyncClient], slot: tuple[str, str, str], number: str, on_api: bool
) -> None:
    method, template, field = slot
    http = targets["api" if on_api and not template.startswith("/webhooks") else "app"]
    headers = {**SERVICE, **BEARER, "Content-Type": "application/json"}
    if field == "form":  # the page's forms: refused before or at the number (no session here), never a 500
        form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = await http.request(method, template, data={"archive": number, "n": number}, headers=form)
        assert_clean_answer(response)
        assert response.status_code < 500, (template, response.status_code, response.text[:300])
        return
    if field == "body":
        content = ('{"event": "print_complete", "n": ' + number + "}").encode()
        response = await http.request(method, template, content=content, headers=headers)
    else:
        response = await http.request(method, template.replace("{n}", number), headers=headers)
    assert_clean_answer(response)
    assert response.status_code in (400, 404, 422), (template, response.status_code, response.text[:300])


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@given(number=FAR)
@settings(parent=HOSTILE, max_examples=4)
async def test_far_numbers_anywhere_on_every_route(
    targets: dict[str, httpx.AsyncClient], route: Any, number: str
) -> None:
    """Every route, numbers or not: a far number as an extra query parameter and in a JSON body is ignored or
    refused, and in place of a path parameter (or appended to the path) it is a 404 or 422, never a 500."""
    headers = {**SERVICE, **BEARER, "Content-Type": "application/json"}
    path = route.path.replace("{archive_id:int}", number)
    content = ('{"event": "test", "n": ' + number + "}").encode() if route.method == "POST" else None
    answer = await targets["app"].request(
        route.method, path, params={"n": number}, content=content, headers=headers
    )
    assert_clean_answer(answer)
    appended = await targets["app"].request(route.method, path.rstrip("/") + "/" + number, headers=headers)
    assert_clean_answer(appended)
    assert appended.status_code in (404, 405, 422), (path, appended.status_code, appended.text[:200])


@pytest.mark.slow
@given(
    name=st.sampled_from(["webhook", "backfill_tick", "filament_tick", "gcode_tick"]),
    number=FAR,
    where=st.sampled_from(["path", "query", "body"]),
)
@HOSTILE
async def test_far_numbers_on_every_single_route_target(
    targets: dict[str, httpx.AsyncClient], name: str, number: str, where: str
) -> None:
    """The one-handler targets answer on any path: a number there, in the query or in the body is either
    ignored (the ticks read no input) or refused (the webhook's body), never a 500."""
    headers = {**SERVICE, **BEARER, "Content-Type": "application/json"}
    path = f"/{number}" if where == "path" else "/"
    params = {"n": number} if where == "query" else None
    content = ('{"event": "test", "n": ' + number + "}").encode() if where == "body" else b"{}"
    response = await targets[name].post(path, params=params, content=content, headers=headers)
    assert_clean_answer(response)
    if name == "webhook" and where == "body":
        assert response.status_code in (400, 422), response.text[:300]


def test_farmsync_serve_answers_huge_numbers_with_json(tmp_path: Path) -> None:
    """The same through ``farmsync serve`` (uvicorn, real sockets): no plain-text 500, no reset."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "FARMSYNC_ENV_FILE": "/dev/null",
        "SERVICE_API_TOKEN": SERVICE["X-Service-Token"],
        "WEBHOOK_SHARED_SECRET": BEARER["Authorization"].split()[1],
        "POLL_INTERVAL_SECONDS": "0",
        "DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "farmsync.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.post(f"/sync/archive/{HUGE}").status_code == 401
            refused(http.post(f"/sync/archive/{HUGE}", headers=SERVICE), "archive_id")
            refused(
                http.post(f"/sync/backfill?budget_seconds={'9' * 400}", headers=SERVICE),
                "budget_seconds",
            )
            body = b'{"event": "test", "n": ' + HUGE.encode() + b"}"
            hook = http.post(
                "/webhooks/bambuddy", content=body, headers={**BEARER, "Content-Type": "application/json"}
            )
            refused(hook, "body.n")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("raw", ["１２", "٣", "0", "-1", HUGE, " 7", ""])
def test_the_page_forms_archive_field_takes_only_ascii_ids(raw: str) -> None:
    from farmsync.errors import InputError
    from farmsync.web.actions import archive_field

    with pytest.raises(InputError) as refused_:
        archive_field({"archive": raw})
    assert refused_.value.status_code == 422 and refused_.value.field == "archive"
    assert archive_field({"archive": "12"}) == 12
