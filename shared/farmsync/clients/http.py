"""One pooled HTTP client per upstream system, with error mapping, read retries and request counters.

Every farmsync call to Bambuddy, InvenTree or a printer goes through :class:`HttpClient`. It exists so that

- errors are mapped once into :mod:`farmsync.errors` (messages carry system, method and path, never secrets);
- reads and transport failures are retried with exponential backoff and full jitter, writes never are
  (the pipelines make writes safe with idempotency keys instead);
- tests and the simulator can swap the network with an ``httpx`` transport (the seam);
- benchmarks and status pages can read per-system, per-method request counters.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from farmsync.errors import (
    UpstreamError,
    UpstreamTransportError,
    error_for_status,
    format_field_errors,
)

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    tests of the backoff do not wait.
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
    ) -> None:
        self.system = system
        self.retry = retry
        self.counters = counters
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

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
        safe methods are retried; a write is tried once unless the caller passes an explicit ``retry``.
        """
        method = method.upper()
        policy = retry or (self.retry if method in SAFE_METHODS else NO_RETRY)
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            self.counters.add(self.system, method)
            try:
                response = await self._client.request(
                    method,
                    path,
                    params=_clean_params(params),
                    json=json,
                    content=content,
                    data=data,
                    files=files,
                    headers=headers,
                    **extra,
                )
            except httpx.TransportError as exc:
                error: UpstreamError = UpstreamTransportError(
                    self.system, method, _path_only(path), _describe_transport_error(exc)
                )
                if attempt < policy.attempts:
                    await self._sleep(policy.delay(attempt))
                    continue
                raise error from None
            status = response.status_code
            if status < 400 or status in expect:
                return response
            if status in RETRYABLE_STATUSES and attempt < policy.attempts:
                await self._sleep(_retry_after(response) or policy.delay(attempt))
                continue
            raise _error_from_response(self.system, method, path, response)

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        return decode_json(self.system, "GET", path, response)


def decode_json(system: str, method: str, path: str, response: httpx.Response) -> Any:
    """Parse a JSON body or raise an UpstreamError that says the upstream answered something else."""
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


def _error_from_response(system: str, method: str, path: str, response: httpx.Response) -> UpstreamError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text.strip()[:200]
    detail = format_field_errors(body) or response.reason_phrase
    cls = error_for_status(response.status_code)
    errors = body if isinstance(body, dict) else None
    return cls(system, method, _path_only(path), detail, status=response.status_code, errors=errors)


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


def _path_only(path: str) -> str:
    """The path part of a URL or path, without query string (which may carry a token)."""
    path = path.split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].split("/", 1)[-1] if "/" in path.split("://", 1)[1] else "/"
    return path


def _describe_transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped"
    return type(exc).__name__
