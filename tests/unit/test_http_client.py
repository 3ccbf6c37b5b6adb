"""HttpClient: error mapping, retries (reads only, injected sleep), counters, secret hygiene."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.clients.http import (
    NO_RETRY,
    HttpClient,
    RequestCounters,
    RetryPolicy,
    _path_only,
)
from farmsync.errors import (
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTransportError,
    UpstreamUnavailable,
    UpstreamValidation,
)

BASE = "http://127.0.0.1:8000/api/v1"
SECRET = "bb_supersecretkey0123456789"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def counters() -> RequestCounters:
    return RequestCounters()


@pytest.fixture
async def client(sleeps: list[float], counters: RequestCounters):
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    http = HttpClient(
        "bambuddy",
        BASE,
        headers={"X-API-Key": SECRET},
        counters=counters,
        sleep=fake_sleep,
        retry=RetryPolicy(attempts=3, base=0.5, cap=1.0),
    )
    yield http
    await http.aclose()


async def test_get_json_sends_headers_and_counts(httpx_mock: HTTPXMock, client: HttpClient, counters):
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[{"id": 1}])
    assert await client.get_json("/printers/") == [{"id": 1}]
    assert httpx_mock.get_request().headers["X-API-Key"] == SECRET
    assert counters.snapshot() == {"bambuddy": {"GET": 1}}
    assert counters.total("bambuddy", "get") == 1


async def test_params_drop_none_and_send_booleans_as_words(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(url=f"{BASE}/inventory/spools?include_archived=false&limit=5", json=[])
    await client.get_json("/inventory/spools", params={"include_archived": False, "limit": 5, "x": None})


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_read_retried_on_retryable_status_then_succeeds(
    httpx_mock: HTTPXMock, client: HttpClient, sleeps: list[float], counters: RequestCounters, status: int
):
    httpx_mock.add_response(url=f"{BASE}/archives/", status_code=status, json={"detail": "busy"})
    httpx_mock.add_response(url=f"{BASE}/archives/", json=[])
    assert await client.get_json("/archives/") == []
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5
    assert counters.total("bambuddy", "GET") == 2


async def test_retry_after_header_is_honoured(httpx_mock: HTTPXMock, client: HttpClient, sleeps):
    httpx_mock.add_response(status_code=429, headers={"Retry-After": "2"})
    httpx_mock.add_response(json={})
    await client.get_json("/x")
    assert sleeps == [2.0]


async def test_read_gives_up_after_attempts(httpx_mock: HTTPXMock, client: HttpClient, sleeps):
    for _ in range(3):
        httpx_mock.add_response(status_code=503, json={"detail": "Service Unavailable"})
    with pytest.raises(UpstreamUnavailable) as info:
        await client.get_json("/archives/")
    assert info.value.retryable and info.value.status == 503
    assert len(sleeps) == 2
    assert str(info.value) == "bambuddy GET /api/v1/archives/ -> 503: Service Unavailable"


async def test_read_timeout_retried_then_succeeds(httpx_mock: HTTPXMock, client: HttpClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    httpx_mock.add_response(json={"ok": True})
    assert await client.get_json("/x") == {"ok": True}
    assert len(sleeps) == 1


async def test_transport_failure_of_a_read_maps_after_retries(httpx_mock: HTTPXMock, client: HttpClient):
    for _ in range(3):
        httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamTransportError, match=r"bambuddy GET /api/v1/x: timed out"):
        await client.get_json("/x")


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
async def test_write_is_not_retried_on_5xx(httpx_mock: HTTPXMock, client: HttpClient, sleeps, method):
    httpx_mock.add_response(method=method, status_code=503)
    with pytest.raises(UpstreamUnavailable):
        await client.request(method, "/inventory/spools", json={})
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []


async def test_write_is_not_retried_after_a_read_timeout(httpx_mock: HTTPXMock, client: HttpClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("maybe applied"))
    with pytest.raises(UpstreamTransportError):
        await client.request("POST", "/inventory/spools", json={"material": "PLA"})
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []


async def test_write_is_retried_when_it_was_never_sent(httpx_mock: HTTPXMock, client: HttpClient, sleeps):
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(method="POST", status_code=201, json={"id": 1})
    response = await client.request("POST", "/inventory/spools", json={"material": "PLA"})
    assert response.status_code == 201
    assert len(sleeps) == 1


async def test_explicit_retry_policy_allows_write_retries(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(method="PUT", status_code=503)
    httpx_mock.add_response(method="PUT", status_code=204)
    response = await client.request("PUT", "/idempotent", retry=RetryPolicy(attempts=2, base=0))
    assert response.status_code == 204


async def test_no_retry_policy_for_reads(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=503)
    with pytest.raises(UpstreamUnavailable):
        await client.request("GET", "/x", retry=NO_RETRY)


@pytest.mark.parametrize(
    ("status", "body", "cls", "detail"),
    [
        (401, {"detail": "Authentication required"}, UpstreamAuthError, "Authentication required"),
        (
            403,
            {"detail": "API key does not have 'can_manage_archives' permission"},
            UpstreamAuthError,
            "can_manage_archives",
        ),
        (404, {"detail": "Archive not found"}, UpstreamNotFound, "Archive not found"),
        (409, {"detail": "busy"}, UpstreamConflict, "busy"),
        (400, {"quantity": "Quantity is required"}, UpstreamValidation, "quantity: Quantity is required"),
        (400, {"name": ["This field is required."]}, UpstreamValidation, "name: This field is required."),
        (
            400,
            {"items": [{}, {"quantity": ["Ensure that there are no more than 5 decimal places."]}]},
            UpstreamValidation,
            "items: quantity: Ensure that there are no more than 5 decimal places.",
        ),
        (
            400,
            {"non_field_errors": ["The fields name, IPN, revision must make a unique set."]},
            UpstreamValidation,
            "The fields name, IPN, revision must make a unique set.",
        ),
        (422, {"detail": "unprocessable"}, UpstreamValidation, "unprocessable"),
    ],
)
async def test_status_mapping(httpx_mock: HTTPXMock, client: HttpClient, status, body, cls, detail):
    httpx_mock.add_response(method="POST", status_code=status, json=body)
    with pytest.raises(cls) as info:
        await client.request("POST", "/thing/", json={})
    assert info.value.status == status
    assert detail in info.value.detail
    assert str(info.value).startswith(f"bambuddy POST /api/v1/thing/ -> {status}: ")


async def test_fastapi_422_is_flattened_to_fields(httpx_mock: HTTPXMock, client: HttpClient):
    body = {
        "detail": [
            {"type": "missing", "loc": ["body", "material"], "msg": "Field required", "input": {"x": 1}},
            {"type": "int_parsing", "loc": ["query", "limit"], "msg": "Input should be a valid integer"},
        ]
    }
    httpx_mock.add_response(method="POST", status_code=422, json=body)
    with pytest.raises(UpstreamValidation) as info:
        await client.request("POST", "/inventory/spools", json={})
    assert info.value.errors == {
        "material": ["Field required"],
        "limit": ["Input should be a valid integer"],
    }
    assert info.value.detail == "material: Field required; limit: Input should be a valid integer"


async def test_non_json_error_body(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, text="<html>Not Found</html>")
    with pytest.raises(UpstreamNotFound, match="Not Found"):
        await client.get_json("/x")


async def test_error_without_body_uses_reason_phrase(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=409)
    with pytest.raises(UpstreamConflict, match="Conflict"):
        await client.request("DELETE", "/x")


async def test_secrets_never_appear_in_errors(httpx_mock: HTTPXMock, client: HttpClient):
    echoed = {
        "detail": f"Invalid API key {SECRET}",
        "url": "http://127.0.0.1:8000/api/v1/archives/1/thumbnail?token=camtok-123456",
    }
    httpx_mock.add_response(status_code=401, json=echoed)
    with pytest.raises(UpstreamAuthError) as info:
        await client.request("GET", "/archives/1/thumbnail", params={"token": "camtok-123456"})
    text = f"{info.value} {info.value.errors}"
    assert SECRET not in text
    assert "camtok-123456" not in text
    assert "?token" not in text
    assert "***" in text


async def test_query_string_is_dropped_from_paths(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, json={"detail": "nope"})
    with pytest.raises(UpstreamNotFound) as info:
        await client.get_json("/print-log/", params={"status": "completed", "token": "abcdef"})
    assert info.value.path == "/api/v1/print-log/"
    assert "abcdef" not in str(info.value)


async def test_body_that_is_not_json(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(text="hello")
    with pytest.raises(UpstreamError, match="not JSON"):
        await client.get_json("/x")


async def test_redirect_is_reported_as_a_base_url_problem(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=302, headers={"Location": "http://127.0.0.1:8000/login?next=x"})
    with pytest.raises(UpstreamError, match=r"redirected to /login; check the base URL"):
        await client.get_json("/x")


async def test_expected_status_is_returned(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, json={"detail": "Not Found"})
    response = await client.request("GET", "/print-log/", expect=(404,))
    assert response.status_code == 404


async def test_other_request_errors_are_upstream_errors(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_exception(httpx.TooManyRedirects("loop"))
    with pytest.raises(UpstreamError, match="TooManyRedirects"):
        await client.get_json("/x")


async def test_default_sleep_is_not_used_when_injected(httpx_mock: HTTPXMock, sleeps):
    """The retry waits go through the injected sleep: a 5 s backoff costs nothing here."""

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    http = HttpClient("x", BASE, sleep=fake_sleep, retry=RetryPolicy(attempts=2, base=5, cap=5))
    httpx_mock.add_response(status_code=502)
    httpx_mock.add_response(json=[])
    await http.get_json("/y")
    await http.aclose()
    assert len(sleeps) == 1 and sleeps[0] <= 5


def test_retry_policy_delay_is_full_jitter_and_capped():
    policy = RetryPolicy(attempts=5, base=1.0, cap=3.0)
    for attempt in range(1, 6):
        delay = policy.delay(attempt)
        assert 0 <= delay <= min(3.0, 2 ** (attempt - 1))


def test_counters_reset_and_snapshot():
    counters = RequestCounters()
    counters.add("inventree", "get")
    counters.add("inventree", "POST")
    counters.add("bambuddy", "GET")
    assert counters.snapshot() == {"bambuddy": {"GET": 1}, "inventree": {"GET": 1, "POST": 1}}
    assert counters.total() == 3
    counters.reset()
    assert counters.total() == 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/api/part/?IPN=x", "/api/part/"),
        ("http://127.0.0.1:1/api/x?token=t#f", "/api/x"),
        ("http://127.0.0.1:1", "/"),
        ("", ""),
    ],
)
def test_path_only(given: str, expected: str):
    assert _path_only(given) == expected


async def test_closed_state(httpx_mock: HTTPXMock):
    http = HttpClient("x", BASE)
    assert not http.is_closed
    async with http:
        pass
    assert http.is_closed


async def test_error_path_keeps_percent_encoding(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, json={"detail": "nope"})
    with pytest.raises(UpstreamNotFound) as info:
        await client.get_json("/files/usb/MY%20FILE.GCO", params={"token": "abcdef"})
    assert info.value.path == "/api/v1/files/usb/MY%20FILE.GCO"


# ------------------------------------------------------------------ stream


class _Dropped(httpx.AsyncByteStream):
    """A body that sends ``first`` and then loses the connection."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self):  # type: ignore[override]
        yield self.first
        raise httpx.ReadError("connection reset")


async def test_stream_yields_the_body_in_chunks_and_counts_once(
    httpx_mock: HTTPXMock, client: HttpClient, counters: RequestCounters
):
    httpx_mock.add_response(url=f"{BASE}/files/raw?part=all", content=b"x" * 10_000)
    async with client.stream(
        "get", "/files/raw", params={"part": "all", "skip": None}, headers={"A": "b"}
    ) as r:
        assert r.status_code == 200
        chunks = [chunk async for chunk in r.aiter_bytes(4096)]
    assert b"".join(chunks) == b"x" * 10_000 and len(chunks) == 3
    assert r.is_closed
    assert httpx_mock.get_request().headers["A"] == "b"
    assert counters.snapshot() == {"bambuddy": {"GET": 1}}


async def test_stream_maps_an_error_status_with_its_body(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, json={"detail": "no such file"})
    with pytest.raises(UpstreamNotFound, match="no such file") as caught:
        async with client.stream("GET", "/files/raw"):
            pytest.fail("an error status must not reach the block")
    assert caught.value.status == 404


async def test_stream_masks_secrets_in_error_bodies(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=403, text=f"bad key {SECRET}")
    with pytest.raises(UpstreamAuthError) as caught:
        async with client.stream("GET", "/files/raw"):
            pass
    assert SECRET not in str(caught.value)


async def test_stream_returns_expected_statuses(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(status_code=404, text="gone")
    async with client.stream("GET", "/files/raw", expect=(404,)) as response:
        assert response.status_code == 404
        assert await response.aread() == b"gone"


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_stream_retries_a_read_that_failed_before_the_response(
    httpx_mock: HTTPXMock, client: HttpClient, sleeps: list[float], counters: RequestCounters, failure
):
    httpx_mock.add_exception(failure)
    httpx_mock.add_response(status_code=503)
    httpx_mock.add_response(content=b"G28\n")
    async with client.stream("GET", "/files/raw") as response:
        assert await response.aread() == b"G28\n"
    assert len(sleeps) == 2
    assert counters.total("bambuddy", "GET") == 3


async def test_stream_gives_up_after_attempts(httpx_mock: HTTPXMock, client: HttpClient):
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("refused"))
    with pytest.raises(UpstreamTransportError, match=r"bambuddy GET /api/v1/files/raw: connection failed"):
        async with client.stream("GET", "/files/raw"):
            pass


async def test_stream_of_a_write_is_retried_only_when_never_sent(
    httpx_mock: HTTPXMock, client: HttpClient, sleeps: list[float]
):
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(method="POST", content=b"ok")
    async with client.stream("POST", "/export") as response:
        assert await response.aread() == b"ok"
    httpx_mock.add_exception(httpx.ReadTimeout("maybe applied"))
    with pytest.raises(UpstreamTransportError, match="timed out"):
        async with client.stream("POST", "/export"):
            pass
    assert len(sleeps) == 1 and len(httpx_mock.get_requests()) == 3


async def test_stream_maps_a_connection_lost_mid_body_and_does_not_retry(
    httpx_mock: HTTPXMock, client: HttpClient, counters: RequestCounters, sleeps: list[float]
):
    httpx_mock.add_callback(lambda request: httpx.Response(200, stream=_Dropped(b"G28\n")))
    received = b""
    with pytest.raises(UpstreamTransportError, match=r"^bambuddy GET /api/v1/files/raw: ReadError$"):
        async with client.stream("GET", "/files/raw") as response:
            async for chunk in response.aiter_bytes():
                received += chunk
    assert received == b"G28\n"
    assert counters.total("bambuddy", "GET") == 1 and sleeps == []


async def test_stream_per_call_timeout(httpx_mock: HTTPXMock, client: HttpClient):
    httpx_mock.add_response(content=b"x")
    async with client.stream("GET", "/files/raw", timeout=2.5):
        pass
    assert httpx_mock.get_request().extensions["timeout"]["read"] == 2.5


# ------------------------------------------------------------------------------------------------ TLS contexts


def test_a_plain_http_upstream_never_loads_the_ca_bundle(monkeypatch):
    """Loading certifi's bundle costs 20-50 ms of a cold start; an http:// client has no use for it."""
    import farmsync.clients.http as http_module

    loaded: list[str] = []
    bundle = object()

    def default_ssl_context():
        loaded.append("bundle")
        return bundle

    monkeypatch.setattr(http_module, "default_ssl_context", default_ssl_context)
    assert http_module.tls_context_for("http://192.168.1.20:8000") is http_module.trusting_nothing()
    assert loaded == []
    assert http_module.tls_context_for("HTTPS://inventree.example") is bundle
    assert loaded == ["bundle"]


async def test_an_http_client_sent_to_an_https_address_fails_instead_of_going_unverified(tmp_path):
    """The context of an http:// client trusts no certificate: a TLS server that a client without verification
    talks to happily is refused, so no request of it can ever go out over unverified TLS."""
    import asyncio
    import ssl

    from tests.printers.fake_bambu import make_pki

    cert, key = make_pki(tmp_path / "pki").leaf("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    target = f"https://127.0.0.1:{port}/x"
    try:
        async with HttpClient("bambuddy", "http://127.0.0.1:9/", retry=NO_RETRY, verify=False) as unverified:
            assert (await unverified.request("GET", target)).text == "ok"  # the server itself answers
        async with HttpClient("bambuddy", "http://127.0.0.1:9/", retry=NO_RETRY) as plain:
            with pytest.raises(UpstreamTransportError, match="TLS certificate not accepted"):
                await plain.request("GET", target)
        # the usual case: an https:// upstream whose certificate no authority vouches for (self-signed)
        async with HttpClient("inventree", f"https://127.0.0.1:{port}", retry=NO_RETRY) as secure:
            with pytest.raises(UpstreamTransportError) as refused:
                await secure.request("GET", "/x")
        assert str(refused.value) == (
            f"inventree GET /x: TLS certificate not accepted (127.0.0.1:{port}): "
            "self-signed certificate in certificate chain"
        )
    finally:
        server.close()
        await server.wait_closed()


async def test_an_https_url_for_a_plain_http_server_says_the_handshake_failed():
    """A common slip: https:// in INVENTREE_BASE_URL for a server that speaks plain HTTP."""
    import asyncio

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpClient("inventree", f"https://127.0.0.1:{port}", retry=NO_RETRY) as client:
            with pytest.raises(UpstreamTransportError) as failed:
                await client.request("GET", "/api/")
        assert str(failed.value).startswith(f"inventree GET /api/: TLS handshake failed (127.0.0.1:{port}): ")
        assert "wrong version number" in str(failed.value) or "record layer" in str(failed.value)
    finally:
        server.close()
        await server.wait_closed()
