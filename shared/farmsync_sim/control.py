"""Knobs, the request log and the ASGI wrapper that applies them; plus the ``/_sim/`` control API.

Every simulated server is wrapped by :class:`SimMiddleware`. It adds latency, injects faults (503, a dropped
connection, a timeout) from a seeded RNG and records each request. Paths under ``/_sim/`` go straight to the
control app: they are never delayed, faulted or logged, so a test can steer the server without disturbing what
it measures.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farmsync_sim.common import JSON

FAULT_KINDS = ("503", "drop", "timeout")
"""Drawn by default. ``locked`` (below) is only drawn when asked for in ``fault_kinds``."""
ALL_FAULT_KINDS = (*FAULT_KINDS, "locked")
LOCKED_BODY = {"detail": "database is locked"}
"""InvenTree on SQLite under concurrent writes: 500 ``database is locked`` (inventree-api.md §6); the write is
rolled back. Assumption: the message travels in DRF's usual ``detail`` key."""
SAFE_METHODS = frozenset({"GET", "HEAD"})


class SimulatedDrop(Exception):
    """Raised after a truncated response so that uvicorn closes the connection mid-body."""


class DropLogFilter(logging.Filter):
    """Keeps uvicorn from printing a traceback for every simulated dropped connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


@dataclass
class Knobs:
    """Behaviour knobs of one simulated server, changeable at any time from Python or ``PATCH /_sim/knobs``.

    ``fault_rate`` (0-1) is the chance that a request is faulted; the kind is drawn from ``fault_kinds``
    (weights). ``fault_timeout`` is the client timeout the timeout fault must outlast: the server waits
    ``fault_timeout + 1`` seconds (or until the client hangs up) before it handles the request.

    Capacity (a server that is not infinitely wide, like InvenTree on 2 gunicorn workers and SQLite,
    inventree-api.md §2.13, §6): at most ``capacity`` requests are in service at once (0: no limit), the rest
    queue in arrival order; each holds its place ``service_ms``. A write spends the last ``write_lock_ms`` of
    its service time holding SQLite's one writer lock; a write that reaches that point while another holds it
    answers ``500 database is locked`` and changes nothing (only on servers with ``locked_writes``).
    """

    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 1.0))
    fault_timeout: float = 5.0
    fault_seed: int = 0
    capacity: int = 0
    service_ms: float = 0.0
    write_lock_ms: float = 0.0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.update()
        self._rng = random.Random(self.fault_seed)

    def update(self, **changes: Any) -> Knobs:
        """Validate and apply ``changes``; a new ``fault_seed`` restarts the fault sequence."""
        unknown = set(changes) - {"latency_ms", "fault_rate", "fault_kinds", "fault_timeout", "fault_seed"}
        unknown -= {"capacity", "service_ms", "write_lock_ms"}
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        latency = float(changes.get("latency_ms", self.latency_ms))
        rate = float(changes.get("fault_rate", self.fault_rate))
        timeout = float(changes.get("fault_timeout", self.fault_timeout))
        kinds = changes.get("fault_kinds", self.fault_kinds)
        if isinstance(kinds, (list, tuple, set)):
            kinds = dict.fromkeys(kinds, 1.0)
        kinds = {str(k): float(v) for k, v in dict(kinds).items()}
        capacity = int(changes.get("capacity", self.capacity))
        service = float(changes.get("service_ms", self.service_ms))
        write_lock = float(changes.get("write_lock_ms", self.write_lock_ms))
        if latency < 0 or not 0.0 <= rate <= 1.0 or timeout < 0:
            raise ValueError("latency_ms and fault_timeout must be >= 0, fault_rate within 0..1")
        if capacity < 0 or service < 0 or not 0 <= write_lock <= service:
            raise ValueError("capacity and service_ms must be >= 0, write_lock_ms within 0..service_ms")
        if not kinds or set(kinds) - set(ALL_FAULT_KINDS) or any(w < 0 for w in kinds.values()):
            raise ValueError(f"fault_kinds must be weights for some of {ALL_FAULT_KINDS}")
        with self._lock:
            self.latency_ms, self.fault_rate, self.fault_timeout, self.fault_kinds = (
                latency,
                rate,
                timeout,
                kinds,
            )
            self.capacity, self.service_ms, self.write_lock_ms = capacity, service, write_lock
            if "fault_seed" in changes:
                self.fault_seed = int(changes["fault_seed"])
                self._rng = random.Random(self.fault_seed)
        return self

    def pick_fault(self) -> str | None:
        """Draw whether (and how) the next request fails. Deterministic for one seed and request order."""
        with self._lock:
            if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
                return None
            kinds = [k for k, w in self.fault_kinds.items() if w > 0]
            if not kinds:
                return None
            return self._rng.choices(kinds, weights=[self.fault_kinds[k] for k in kinds])[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fault_rate": self.fault_rate,
            "fault_kinds": dict(self.fault_kinds),
            "fault_timeout": self.fault_timeout,
            "fault_seed": self.fault_seed,
            "capacity": self.capacity,
            "service_ms": self.service_ms,
            "write_lock_ms": self.write_lock_ms,
        }


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server answered (or faulted)."""

    method: str
    path: str
    query: str
    status: int
    time: float
    duration_ms: float
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe record of the requests a server saw, for assertions and benchmarks."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def counts(self) -> dict[str, int]:
        """Requests per method, e.g. ``{"GET": 12, "POST": 3}``."""
        return dict(Counter(e.method for e in self.entries))

    def count(self, method: str | None = None, path: str | None = None, prefix: str | None = None) -> int:
        return len(self.find(method=method, path=path, prefix=prefix))

    def find(
        self, method: str | None = None, path: str | None = None, prefix: str | None = None
    ) -> list[LoggedRequest]:
        return [
            e
            for e in self.entries
            if (method is None or e.method == method.upper())
            and (path is None or e.path == path)
            and (prefix is None or e.path.startswith(prefix))
        ]

    def writes(self) -> list[LoggedRequest]:
        """Every request that could change state (anything but GET and HEAD)."""
        return [e for e in self.entries if e.method not in SAFE_METHODS]


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


class SimMiddleware:
    """Applies :class:`Knobs` to ``app`` and logs its requests; hands ``/_sim/`` paths to ``control``."""

    def __init__(
        self, app: ASGIApp, control: ASGIApp, knobs: Knobs, log: RequestLog, *, locked_writes: bool = False
    ) -> None:
        self.app = app
        self.control = control
        self.knobs = knobs
        self.log = log
        self.locked_writes = (
            locked_writes  # the ``locked`` fault applies (to writes only): InvenTree on SQLite
        )
        self._in_service = 0
        self.peak_in_service = 0  # the most requests ever in service at once (tests of the capacity model)
        self._queue: list[asyncio.Future[None]] = []
        self._writer_until = 0.0  # when the write holding the writer lock lets go (loop time)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/_sim" or path.startswith("/_sim/"):
            await self.control(scope, receive, send)
            return
        started = time.time()
        body, disconnected = await _read_body(receive)
        if self.knobs.latency_ms:
            await asyncio.sleep(self.knobs.latency_ms / 1000.0)
        fault = self.knobs.pick_fault()
        if fault == "locked" and not (self.locked_writes and scope["method"] not in SAFE_METHODS):
            fault = None
        if fault is None and (self.knobs.capacity or self.knobs.service_ms):
            await self._take_place()
            try:
                fault = await self._serve(scope["method"] not in SAFE_METHODS)
                if fault is None:
                    await self._handle(scope, receive, send, body, disconnected, started, fault)
                    return
            finally:
                self._leave()
        if fault == "locked":
            self._record(scope, 500, started, fault)
            await JSON(LOCKED_BODY, status_code=500)(scope, receive, send)
            return
        if fault == "503":
            self._record(scope, 503, started, fault)
            await JSON({"detail": "Service Unavailable (simulated fault)"}, status_code=503)(
                scope, receive, send
            )
            return
        if fault == "timeout" and not disconnected:
            disconnected = await self._wait_for_hangup(receive, self.knobs.fault_timeout + 1.0)
        await self._handle(scope, receive, send, body, disconnected, started, fault)

    async def _take_place(self) -> None:
        """Wait, in arrival order, until fewer than ``capacity`` requests are in service."""
        if self.knobs.capacity and (self._in_service >= self.knobs.capacity or self._queue):
            waiter = asyncio.get_running_loop().create_future()
            self._queue.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._queue:
                    self._queue.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._in_service -= 1  # handed a place it will not use: pass it on
                    self._next()
                raise
            return  # the place was handed over by _leave (already counted)
        self._in_service += 1
        self.peak_in_service = max(self.peak_in_service, self._in_service)

    def _leave(self) -> None:
        self._in_service -= 1
        self._next()

    def _next(self) -> None:
        while self._queue and (not self.knobs.capacity or self._in_service < self.knobs.capacity):
            waiter = self._queue.pop(0)
            if not waiter.done():
                self._in_service += 1
                self.peak_in_service = max(self.peak_in_service, self._in_service)
                waiter.set_result(None)

    async def _serve(self, write: bool) -> str | None:
        """Spend the service time; a write takes the writer lock for its last part, or answers "locked"."""
        service = self.knobs.service_ms / 1000.0
        lock = self.knobs.write_lock_ms / 1000.0 if write and self.locked_writes else 0.0
        await asyncio.sleep(service - lock)
        if lock:
            now = asyncio.get_running_loop().time()
            if now < self._writer_until:
                return "locked"
            self._writer_until = now + lock
            await asyncio.sleep(lock)
        return None

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        disconnected: bool,
        started: float,
        fault: str | None,
    ) -> None:
        """Hand the request (its body already read) to the app; a ``drop`` fault cuts the answer short."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if disconnected:
                return {"type": "http.disconnect"}
            return await receive()

        status = 500
        held: list[Message] = []

        async def capture(message: Message) -> None:
            # The entry is written before the last byte goes out, so a client that saw the answer also
            # sees the log entry (tests read the log right after a response).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            final = message["type"] == "http.response.body" and not message.get("more_body", False)
            if final:
                self._record(scope, status, started, fault)
            if fault == "drop":
                held.append(message)
            else:
                await send(message)

        await self.app(scope, replay, capture)
        if fault == "drop":
            await self._send_truncated(held, send)

    @staticmethod
    async def _wait_for_hangup(receive: Receive, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client disconnects first; True when it did."""
        waiter = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
        if not done:
            waiter.cancel()
            return False
        return waiter.result().get("type") == "http.disconnect"

    @staticmethod
    async def _send_truncated(held: list[Message], send: Send) -> None:
        """Send the headers with a Content-Length larger than what follows, then break the connection."""
        start = next(m for m in held if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(payload) + 64).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True})
        raise SimulatedDrop("simulated dropped connection")

    def _record(self, scope: Scope, status: int, started: float, fault: str | None) -> None:
        self.log.add(
            LoggedRequest(
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                status=status,
                time=started,
                duration_ms=round((time.time() - started) * 1000.0, 3),
                fault=fault,
            )
        )


def control_app(
    knobs: Knobs,
    log: RequestLog,
    *,
    state_dump: Callable[[], Any],
    reset: Callable[[], None],
    config: Callable[[dict[str, Any]], dict[str, Any]],
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ``/_sim/`` API shared by both servers; ``extra_routes`` add server-specific mutations.

    Routes: ``GET|PATCH /_sim/knobs``, ``GET|DELETE /_sim/requests``, ``GET /_sim/state``,
    ``POST /_sim/reset``, ``GET|PATCH /_sim/config`` (auth, apiVersion and similar server settings).
    """

    async def knobs_endpoint(request: Request) -> Response:
        if request.method == "PATCH":
            try:
                knobs.update(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSON({"detail": str(exc)}, status_code=400)
        return JSON(knobs.as_dict())

    async def requests_endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            log.clear()
            return Response(status_code=204)
        return JSON(
            {
                "counts": log.counts(),
                "writes": len(log.writes()),
                "entries": [e.as_dict() for e in log.entries],
            }
        )

    async def state_endpoint(request: Request) -> Response:
        return JSON(state_dump())

    async def reset_endpoint(request: Request) -> Response:
        reset()
        return JSON({"reset": True})

    async def config_endpoint(request: Request) -> Response:
        changes: dict[str, Any] = {}
        if request.method == "PATCH":
            changes = await request.json()
        try:
            return JSON(config(changes))
        except (ValueError, TypeError) as exc:
            return JSON({"detail": str(exc)}, status_code=400)

    routes: list[BaseRoute] = [
        Route("/_sim/knobs", knobs_endpoint, methods=["GET", "PATCH"]),
        Route("/_sim/requests", requests_endpoint, methods=["GET", "DELETE"]),
        Route("/_sim/state", state_endpoint, methods=["GET"]),
        Route("/_sim/reset", reset_endpoint, methods=["POST"]),
        Route("/_sim/config", config_endpoint, methods=["GET", "PATCH"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)
