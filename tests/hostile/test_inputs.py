"""Bodies and parameters a careless or hostile caller sends: too big, not JSON, not the declared type.

Each must be refused with its own clear 4xx (413, 400, 415, 422) naming the field, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from farmsync.web.call import MAX_BODY_BYTES
from farmsync.web.handlers.prints import WEBHOOK_MAX_BODY_BYTES
from tests.hostile.conftest import BEARER, SERVICE, assert_clean_answer

LIMIT = WEBHOOK_MAX_BODY_BYTES  # the webhook's own limit (Bambuddy's finish photo); other routes keep 1 MiB


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b'{"pad": "'
    sent = 0
    while sent < total:
        yield b"a" * min(size, total - sent)
        sent += size
    yield b'"}'


async def test_a_body_over_the_limit_is_413_declared_or_not(client: httpx.AsyncClient) -> None:
    declared = await client.post(
        "/webhooks/bambuddy",
        content=b"{" + b" " * LIMIT + b"}",
        headers={**BEARER, "Content-Type": "application/json"},
    )
    assert declared.status_code == 413 and declared.json()["field"] == "body"
    streamed = await client.post(
        "/webhooks/bambuddy",
        content=chunks(2 * LIMIT),
        headers={**BEARER, "Content-Type": "application/json"},
    )
    assert "content-length" not in streamed.request.headers  # chunked: the limit is checked while reading
    assert streamed.status_code == 413 and streamed.json()["field"] == "body"
    assert_clean_answer(streamed)
    lying = await client.post(
        "/webhooks/bambuddy",
        content=b'{"event": "test"}',
        headers={**BEARER, "Content-Length": "99999999999"},
    )
    assert lying.status_code == 413
    tick = await client.post("/sync/filament", content=chunks(2 * MAX_BODY_BYTES), headers=SERVICE)
    assert tick.status_code in (200, 413)
    assert_clean_answer(tick)


@pytest.mark.parametrize(
    "content,status",
    [
        (b"{", 400),
        (b'{"event": "print_complete",}', 400),
        (b"\xff\xfe\x00{", 400),
        (b"\xef\xbb\xbf{}", 200),  # a UTF-8 BOM is allowed by json.loads: a JSON object, triggers a tick
        (b"NaN", 422),
        (b'"just a string"', 422),
        (b"null", 422),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b'{"event": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
        (b'{"event": {"nested": true}}', 422),
        (b'{"event": "\\ud800"}', 200),
        (b"   ", 400),
    ],
)
async def test_malformed_json_is_a_clear_4xx(client: httpx.AsyncClient, content: bytes, status: int) -> None:
    response = await client.post(
        "/webhooks/bambuddy", content=content, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text[:300]
    assert_clean_answer(response)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=zz",
        "application/x-www-form-urlencoded",
        "application/jsonp",
        "image/png",
        "application/json-patch",
    ],
)
async def test_other_content_types_are_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/webhooks/bambuddy", content=b'{"event": "test"}', headers={**BEARER, "Content-Type": content_type}
    )
    assert response.status_code == 415 and response.json()["field"] == "Content-Type"
    assert_clean_answer(response)


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/sync/archive/0"),
        ("POST", "/sync/archive/99999999999999999999999999"),
        ("POST", "/sync/archive/-1"),
        ("POST", "/sync/archive/1%00"),
        ("POST", "/sync/archive/..%2F..%2Fetc"),
        ("POST", "/sync/backfill?max_archives=-5"),
        ("POST", "/sync/backfill?max_archives=1e9"),
        ("POST", "/sync/backfill?budget_seconds=%00"),
        ("POST", "/sync/filament?dry_run=maybe"),
        ("POST", "/sync/gcode?pull=2"),
        ("GET", "/sync/status/../../health"),
        ("DELETE", "/sync/status"),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
        ("GET", "/" + "a" * 5000),
    ],
)
async def test_odd_paths_and_parameters_are_clean_refusals(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=SERVICE)
    assert_clean_answer(response)
    assert response.status_code != 200 or path.startswith(("/sync/archive/0", "/sync/status/"))
