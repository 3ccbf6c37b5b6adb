"""The webhook under arbitrary input: any JSON value, any bytes, any content type, any size.

Bambuddy's webhook is the one route an outsider can reach with only the shared secret, so it must answer
everything with a 2xx or a clear 4xx: never a 5xx, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmsync.web.handlers.prints import WEBHOOK_MAX_BODY_BYTES as WEBHOOK_LIMIT
from tests.hostile.conftest import BEARER, HOSTILE, assert_clean_answer

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)  # far past 64 bits: a 422 naming where, not a 500
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["print_complete", "print_failed", "print_stopped", "test", ""]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
OBJECTS = st.dictionaries(
    st.sampled_from(["event", "printer", "filename", "data", "x"]) | st.text(max_size=8),
    JSON_VALUES,
    max_size=6,
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/cloudevents+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
        "application/json; charset=utf-16",
        "*/*",
    ]
) | st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t)


async def post(client: httpx.AsyncClient, content: bytes, content_type: str | None) -> httpx.Response:
    headers = dict(BEARER)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.post("/webhooks/bambuddy", content=content, headers=headers)


@pytest.mark.slow
@given(payload=JSON_VALUES | OBJECTS)
@HOSTILE
async def test_any_json_value(client: httpx.AsyncClient, payload: Any) -> None:
    response = await post(client, json.dumps(payload).encode(), "application/json")
    assert_clean_answer(response)
    if not isinstance(payload, dict):
        # not an object; or a number out of range inside it, named where it is ("body[0]")
        assert response.status_code == 422 and response.json()["field"].startswith("body")


@pytest.mark.slow
@given(body=st.binary(max_size=2048), content_type=CONTENT_TYPES)
@HOSTILE
async def test_any_bytes_with_any_content_type(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    try:
        response = await post(client, body, content_type)
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # httpx would not even send that header value
    assert_clean_answer(response)


@pytest.mark.slow
@given(size=st.sampled_from([0, 1, 3_400_000, WEBHOOK_LIMIT - 20, WEBHOOK_LIMIT, WEBHOOK_LIMIT + 1, 9 << 20]))
@HOSTILE
async def test_sizes_around_the_limit(client: httpx.AsyncClient, size: int) -> None:
    body = b'{"event": "test", "pad": "' + b"a" * max(0, size - 29) + b'"}'
    response = await post(client, body[: max(size, 0)] if size < 29 else body, "application/json")
    assert_clean_answer(response)
    if len(body) > WEBHOOK_LIMIT and size >= 29:
        assert response.status_code == 413
    elif size >= 29:
        assert response.status_code == 200  # Bambuddy's bodies with a photo reach about 3.4 MB


@pytest.mark.slow
@given(depth=st.integers(min_value=1, max_value=200_000))
@HOSTILE
async def test_deeply_nested_json(client: httpx.AsyncClient, depth: int) -> None:
    """Nesting within the size limit: Python's json parser recurses, so this is where a 500 would hide."""
    body = b"[" * depth + b"]" * depth
    response = await post(client, body, "application/json")
    assert_clean_answer(response)
    assert response.status_code in (400, 413, 422)
