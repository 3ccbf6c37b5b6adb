"""One pooled HTTP client per upstream system, with error mapping, read retries and request counters.

Every farmsync call to Bambuddy, InvenTree or a printer goes through :class:`HttpClient`. It exists so that

- errors are mapped once into :mod:`farmsync.errors` (messages carry system, method and URL path, never secrets:
  query strings are dropped and known secret values are masked even where an upstream echoes them back);
- reads and transport failures are retried with exponential backoff and full jitter, writes never are
  (the pipelines make writes safe with idempotency keys instead). The one exception: a write whose connection
  could not even be opened was provably not sent, so it is retried like a read;
- tests and the simulator can swap the network with an ``httpx`` transport (the seam);
- benchmarks and status pages can read per-system, per-method request counters;
- an optional :class:`~farmsync.clients.limit.AdaptiveLimit` keeps as many requests in flight as the server
  keeps up with (InvenTree on SQLite serves two at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from farmsync import metrics
from farmsync.clients.limit import AdaptiveLimit
from farmsync.errors import (
    UpstreamError,
    UpstreamTransportError,
    error_for_status,
    format_field_errors,
)
from farmsync.security import url_secrets

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
OVERLOAD_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers that tell an adaptive limit the server has too much to do (but see :func:`_collision`)."""
ID_SEGMENT = re.compile(r"/\d+(?=/|$)")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
SECRET_PARAMS = frozenset({"token", "key", "api_key", "apikey", "access_token", "password", "secret"})
MASK = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried: ``attempts`` in total, backoff ``base`` * 2**n capped at ``cap`` seconds."""

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full-jitter backoff before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.cap, self.base * (2 ** (attempt - 1))))


NO_RETRY = RetryPolicy(attempts=1)
DEFAULT_RETRY = RetryPolicy()


class RequestCounters:
    """Counts requests per (system, method). Shared by all clients of a process; cheap to snapshot."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, system: str, method: str) -> None:
        self._counts[(system, method.upper())] += 1

    def total(self, system: str | None = None, method: str | None = None) -> int:
        return sum(
            n
            for (s, m), n in self._counts.items()
            if (system is None or s == system) and (method is None or m == method.upper())
        )

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (system, method), n in sorted(self._counts.items()):
            out.setdefault(system, {})[method] = n
        return out

    def reset(self) -> None:
        self._counts.clear()


COUNTERS = RequestCounters()

Sleep = Callable[[float], Awaitable[None]]


class HttpClient:
    """A pooled ``httpx.AsyncClient`` for one upstream ``system`` with farmsync's error and retry rules.

    ``transport`` is the test seam (``httpx.MockTransport`` or pytest-httpx); ``sleep`` is injectable so that
    tests of the backoff do not wait. ``secrets`` are extra values to mask in error text; the values of
    credential headers are masked without being listed. ``verify`` defaults to :func:`tls_context_for` the base
    URL: one CA-bundle context shared by the process for https:// (loading the bundle costs 30-55 ms, which every
    client and cold start would otherwise pay), none of it for a plain http:// upstream.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        counters: RequestCounters = COUNTERS,
        sleep: Sleep = asyncio.sleep,
        max_connections: int = 20,
        secrets: Iterable[str] = (),
        verify: ssl.SSLContext | bool | None = None,
        credential: str | None = None,
        limit: AdaptiveLimit | None = None,
    ) -> None:
        self.system = system
        self.credential = credential
        """The setting that holds the key sent (``INVENTREE_TOKEN``): a refusal names it, so the fix is obvious."""
        self.limit = limit
        self.retry = retry
        self.counters = counters
        self._sleep = sleep
        self._secrets = _secrets_of(headers or {}, [*secrets, *url_secrets(base_url)])
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            verify=tls_context_for(base_url) if verify is None else verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        expect: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; return the response or raise the mapped :class:`UpstreamError`.

        Statuses in ``expect`` are returned instead of raised (e.g. 404 for "does not exist yet", 304). Only
        safe methods are retried; a write is tried once unless the caller passes an explicit ``retry`` (or the
        connection could not be opened, so nothing was sent).
        """
        body = {"json": json, "content": content, "data": data, "files": files}
        return await self._send(
            method, path, params, headers, body, retry=retry, expect=expect, timeout=timeout, stream=False
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and yield the response with its body not yet read, for downloads of any size.

        The same rules as :meth:`request` apply until the response is yielded: every attempt is counted, an
        error status is mapped (its body read first so the error can quote it), and connection failures and
        retryable statuses are retried for safe methods (or when nothing was sent). Once the body is being read
        nothing is retried, since part of it may already be written somewhere; a connection lost mid-body
        surfaces as :class:`UpstreamTransportError` rather than a raw ``httpx`` error.
        """
        method = method.upper()
        response = await self._send(
            method, path, params, headers, {}, retry=None, expect=expect, timeout=timeout, stream=True
        )
        where = _wire_path(response.request.url)
        try:
            yield response
        except httpx.TransportError as exc:
            raise UpstreamTransportError(self.system, method, where, _describe_transport_error(exc)) from None
        except httpx.RequestError as exc:
            raise UpstreamError(self.system, method, where, type(exc).__name__) from None
        finally:
            await response.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        body: Mapping[str, Any],
        *,
        retry: RetryPolicy | None,
        expect: tuple[int, ...],
        timeout: float | None,
        stream: bool,
    ) -> httpx.Response:
        """The retry loop behind :meth:`request` and :meth:`stream`; a returned streamed response is open."""
        method = method.upper()
        safe = method in SAFE_METHODS
        policy = retry or self.retry
        tries = policy.attempts if (safe or retry is not None) else 1
        cleaned = _clean_params(params)
        secrets = self._secrets | _secret_params(cleaned)
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            self.counters.add(self.system, method)
            request = self._client.build_request(
                method, path, params=cleaned, headers=headers, **body, **extra
            )
            where = _wire_path(request.url)
            try:
                response = await self._limited_send(request, method, where, stream=stream, expect=expect)
                status = response.status_code
                if status < 400 or status in expect:
                    return response
                metrics.upstream_error(self.system, str(status))
            except httpx.TransportError as exc:
                metrics.upstream_error(self.system, "transport")
                error = UpstreamTransportError(self.system, method, where, _describe_transport_error(exc))
                if attempt < (policy.attempts if _never_sent(exc) else tries):
                    await self._sleep(policy.delay(attempt))
                    continue
                raise error from None
            except httpx.RequestError as exc:
                raise UpstreamError(self.system, method, where, type(exc).__name__) from None
            if status in RETRYABLE_STATUSES and attempt < tries:
                await self._sleep(_retry_after(response) or policy.delay(attempt))
                continue
            raise _refusal_named(
                _error_from_response(self.system, method, where, response, secrets),
                None if SECRET_HEADERS & {h.lower() for h in headers or {}} else self.credential,
                request.url,
            )

    async def _limited_send(
        self, request: httpx.Request, method: str, where: str, *, stream: bool, expect: tuple[int, ...]
    ) -> httpx.Response:
        """Send once, inside a slot of the adaptive limit if there is one; an error answer is read and closed.

        The slot is held until the answer (or its headers, when streaming) is in, and tells the limit whether
        the server kept up; waiting for a retry happens outside it."""
        ticket = await self.limit.acquire() if self.limit is not None else None
        overloaded = False
        try:
            response = await self._client.send(request, stream=stream)
            overloaded = response.status_code in OVERLOAD_STATUSES
            if response.status_code >= 400 and response.status_code not in expect:
                try:
                    await response.aread()  # the error text, and the connection back to the pool
                finally:
                    await response.aclose()
                if overloaded and _collision(response):
                    overloaded = False
            return response
        except httpx.TimeoutException:
            overloaded = True
            raise
        finally:
            if ticket is not None and self.limit is not None:
                self.limit.release(
                    ticket, f"{method} {ID_SEGMENT.sub('/{id}', where)}", overloaded=overloaded
                )

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` and parse the JSON body (an UpstreamError if it is not JSON)."""
        response = await self.request(method, path, **kwargs)
        return decode_json(self.system, method, _wire_path(response.request.url), response)

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request_json("GET", path, params=params)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The certifi/SSL_CERT_FILE context httpx would build, built once per process."""
    return httpx.create_ssl_context()


def tls_context_for(base_url: str) -> ssl.SSLContext:
    """The TLS context a client of ``base_url`` needs: :func:`default_ssl_context` for an https:// upstream, and
    for a plain http:// one (Bambuddy and printers on a LAN, mostly) :func:`trusting_nothing`, so that building
    the client does not load the CA bundle, 30-55 ms of a cold start here spent on a certificate never shown."""
    return default_ssl_context() if base_url.lower().startswith("https:") else trusting_nothing()


@functools.cache
def trusting_nothing() -> ssl.SSLContext:
    """A client context with verification on and no certificate authority at all: cheap to build (no bundle),
    and a TLS handshake with it always fails. A client whose base URL is http:// is never meant to speak TLS;
    should one be sent to an https:// address, it fails loudly instead of going unverified."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def decode_json(system: str, method: str, path: str, response: httpx.Response) -> Any:
    """Parse a JSON body or raise an UpstreamError that says the upstream answered something else."""
    if 300 <= response.status_code < 400:
        target = _path_only(response.headers.get("Location", "")) or "?"
        raise UpstreamError(
            system,
            method,
            _path_only(path),
            f"redirected to {target}; check the base URL",
            status=response.status_code,
        )
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(
            system,
            method,
            _path_only(path),
            "answered with a body that is not JSON",
            status=response.status_code,
        ) from None


def _error_from_response(
    system: str,
    method: str,
    path: str,
    response: httpx.Response,
    secrets: frozenset[str] = frozenset(),
) -> UpstreamError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text.strip()[:200]
    body = _redact(_fastapi_errors(body), secrets)
    detail = format_field_errors(body) or response.reason_phrase
    cls = error_for_status(response.status_code)
    errors = body if isinstance(body, dict) else None
    return cls(system, method, _path_only(path), detail, status=response.status_code, errors=errors)


def _fastapi_errors(body: Any) -> Any:
    """FastAPI's 422 ``{"detail": [{"loc": [...], "msg": ...}]}`` as ``{"field": ["msg"]}`` (drops ``input``)."""
    if not isinstance(body, dict):
        return body
    detail = body.get("detail")
    if not isinstance(detail, list) or not detail:
        return body
    if not all(isinstance(item, dict) and "msg" in item for item in detail):
        return body
    fields: dict[str, list[str]] = {}
    for item in detail:
        loc = [str(part) for part in item.get("loc") or [] if part not in ("body", "query", "path")]
        fields.setdefault(".".join(loc) or "detail", []).append(str(item["msg"]))
    return fields


def _redact(value: Any, secrets: frozenset[str]) -> Any:
    """Mask secret values and drop query strings from URLs anywhere in an error body."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return _strip_url_queries(value)
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    return value


def _strip_url_queries(text: str) -> str:
    if "://" not in text or "?" not in text:
        return text
    words = text.split(" ")
    return " ".join(word.split("?", 1)[0] if "://" in word else word for word in words)


def _secrets_of(headers: Mapping[str, str], extra: Iterable[str]) -> frozenset[str]:
    found = {s for s in extra if s}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS and value:
            found.add(value)
            _scheme, _, credential = value.partition(" ")
            if credential:
                found.add(credential.strip())
    return frozenset(s for s in found if len(s) >= 4)


def _secret_params(params: Mapping[str, Any] | None) -> frozenset[str]:
    if not params:
        return frozenset()
    return frozenset(
        str(value) for key, value in params.items() if key.lower() in SECRET_PARAMS and len(str(value)) >= 4
    )


def _collision(response: httpx.Response) -> bool:
    """SQLite's ``database is locked``: two writes in service met (the server answered at once). Fewer requests
    in flight would not prevent it while two can be served, so it tells an adaptive limit nothing."""
    return response.status_code == 500 and b"database is locked" in response.content[:200]


def _never_sent(exc: httpx.TransportError) -> bool:
    """True when the request cannot have reached the server (so even a write may be retried)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value and value.isdigit():
        return min(float(value), 30.0)
    return None


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop None values and send booleans the way Django/FastAPI read them ("true"/"false")."""
    if params is None:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def _wire_path(url: httpx.URL) -> str:
    """The full URL path as sent (percent-encoding kept, query string dropped)."""
    return url.raw_path.decode("ascii", "replace").split("?", 1)[0]


def _path_only(path: str) -> str:
    """The path part of a URL or path, without query string (which may carry a token)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        rest = path.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path


def _describe_transport_error(exc: httpx.TransportError) -> str:
    """What went wrong and where: ``connection failed (127.0.0.1:8081)`` points at the host and port to check."""
    try:
        url = exc.request.url
        where = f" ({url.host}:{url.port or (443 if url.scheme == 'https' else 80)})"
    except RuntimeError:  # an error raised without its request
        where = ""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out" + where
    refused = _tls_refusal(exc, handshake=isinstance(exc, httpx.ConnectError))
    if refused is not None:
        what, why = refused
        return f"{what}{where}" + (f": {why}" if why else "")
    if isinstance(exc, httpx.ConnectError):
        return "connection failed" + where
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped" + where
    return type(exc).__name__


def _tls_refusal(exc: BaseException, *, handshake: bool) -> tuple[str, str] | None:
    """What failed and why when TLS did: ``TLS certificate not accepted`` (``self-signed certificate``: a
    self-signed InvenTree, a name its certificate does not cover) or, while connecting, ``TLS handshake failed``
    (``wrong version number``: an https:// URL for a server that speaks plain HTTP), so the fix is obvious where a
    bare "connection failed" would send one looking at the network; None for any other failure."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "TLS certificate not accepted", cause.verify_message or cause.reason or ""
        if isinstance(cause, ssl.SSLError) and handshake:
            return "TLS handshake failed", (cause.reason or "").replace("_", " ").lower()
        cause = cause.__cause__ or cause.__context__
    return None


def _refusal_named(error: UpstreamError, credential: str | None, url: httpx.URL) -> UpstreamError:
    """A 401/403 reworded to name the setting whose key was refused (``INVENTREE_TOKEN was refused by …``)."""
    if credential is None or error.status not in (401, 403):
        return error
    host = f"{url.host}:{url.port}" if url.port else url.host
    verdict = "was refused by" if error.status == 401 else "lacks the permission for this on"
    detail = f"{credential} {verdict} {host}" + (f" ({error.detail})" if error.detail else "")
    return type(error)(
        error.system, error.method, error.path, detail, status=error.status, errors=error.errors
    )
