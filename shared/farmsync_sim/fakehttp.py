"""A small asyncio HTTP/1.1 server that printer fakes build on.

Why not starlette/uvicorn: a printer fake must control what a framework hides — the raw request target (Buddy
counts its bytes), how many TCP connections are served at once (Buddy serves 3), bandwidth per printer (real
printers take 30-500 KB/s), a body that is read only as fast as the "printer" writes it, and answers sent before a
body was read. Each server runs its own event loop in a daemon thread, so tests, the demo and benchmarks can start
any number of them in one process (``port=0`` picks a free port).

Connection limit: at most ``max_connections`` connections are served at once. A further connection first takes
the slot of an *idle* keep-alive connection (which is closed, as Buddy's server reclaims idle slots); when every
slot is busy it waits in the accept queue (``overflow="wait"``, the default) or is closed at once
(``overflow="refuse"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

MAX_HEAD = 16 * 1024


class BodyTimeout(Exception):
    """No body bytes arrived within the active-connection timeout."""


class BodyTruncated(Exception):
    """The client closed the connection before sending Content-Length bytes."""


class Headers:
    """Request headers in arrival order; ``get`` returns the *last* value (Buddy: the last one parsed wins)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        value = default
        for key, val in self.items:
            if key.lower() == name:
                value = val
        return value

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


class Throttle:
    """Paces bytes to ``rate`` bytes/s across all connections of one server (a virtual clock, no bursts).

    A real printer's link does not lose bandwidth because the machine running the fakes is busy, so the fake
    credits its own delays: a pacing sleep that wakes up late, and, inside one body, a read that comes up to
    :attr:`CREDIT` seconds late (the event loop was serving other fakes; a TCP receive window absorbs as much).
    The rate is never exceeded: the clock only ever moves forward. Idle time between requests, and a longer
    stall of the sender, are not credited: after them the link starts again at its rate, as a real one does."""

    CREDIT = 0.05
    """Seconds of lateness inside one body that are caught up (about one pacing step)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._next = 0.0
        self._late = 0.0  # how late the last pacing sleep woke up

    @property
    def chunk(self) -> int:
        """Read size that keeps pacing smooth (about 20 steps per second)."""
        if not self.rate:
            return 64 * 1024
        return int(max(512, min(64 * 1024, self.rate // 20)))

    def delay(self, n: int, *, continuing: bool = False) -> float:
        """Seconds to wait before ``n`` more bytes fit the rate (negative: none); ``continuing``: the bytes follow
        earlier ones of one body. For servers that schedule their own waits (the fake Bambu printer's ioloop)."""
        if not self.rate or n <= 0:
            return 0.0
        now = self._clock()
        credit = max(self._late, self.CREDIT if continuing else 0.0)
        self._next = max(self._next, now - credit) + n / self.rate
        self._late = 0.0
        return self._next - now

    async def take(self, n: int, *, continuing: bool = False) -> None:
        """Wait until ``n`` more bytes fit the rate; ``continuing``: the bytes follow earlier ones of one body."""
        delay = self.delay(n, continuing=continuing)
        if delay > 0:
            await asyncio.sleep(delay)
            self._late = max(0.0, self._clock() - self._next)


@dataclass
class _Conn:
    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[Any] | None
    idle: bool = False
    idle_since: float = 0.0


@dataclass
class Request:
    """One parsed request. The body is not read until the handler asks (``body()``/``read_body()``)."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    version: str
    headers: Headers
    conn_id: int
    _conn: _Conn
    _server: FakeHttpServer
    bytes_in: int = 0
    _remaining: int = 0

    def __post_init__(self) -> None:
        self._remaining = max(self.content_length or 0, 0)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return None
        try:
            return int(value.strip())
        except ValueError:
            return -1

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.headers.get("transfer-encoding") or "").lower()

    @property
    def body_remaining(self) -> int:
        return self._remaining

    async def body(self, chunk_size: int | None = None, *, throttled: bool = True) -> AsyncIterator[bytes]:
        """The body in chunks, paced by the server's throttle. Raises BodyTimeout/BodyTruncated."""
        size = chunk_size or self._server.throttle.chunk
        reader = self._conn.reader
        while self._remaining > 0:
            try:
                chunk = await asyncio.wait_for(
                    reader.read(min(size, self._remaining)), self._server.active_timeout
                )
            except TimeoutError:
                raise BodyTimeout from None
            except ConnectionError:
                raise BodyTruncated from None
            if not chunk:
                raise BodyTruncated
            self._remaining -= len(chunk)
            self.bytes_in += len(chunk)
            self._server.body_bytes_read += len(chunk)
            if throttled:
                await self._server.throttle.take(len(chunk), continuing=self.bytes_in > len(chunk))
            yield chunk

    async def read_body(self, limit: int = 1 << 20) -> bytes:
        if self._remaining > limit:
            raise ValueError("body too large")
        return b"".join([chunk async for chunk in self.body(throttled=False)])


@dataclass
class Response:
    """``body`` is bytes or an async iterable (sent with ``content_length`` if given, else chunked)."""

    status: int
    body: bytes | AsyncIterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    chunked: bool = False
    close: bool = False


def text(status: int, message: str = "", **headers: str) -> Response:
    body = (message or HTTPStatus(status).phrase).encode()
    return Response(status, body, {"Content-Type": "text/plain", **headers})


def as_json(status: int, data: Any, *, chunked: bool = False, **headers: str) -> Response:
    body = json.dumps(data).encode()
    return Response(status, body, {"Content-Type": "application/json", **headers}, chunked=chunked)


async def file_chunks(path: Path, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:  # noqa: ASYNC230 - local spool file, short reads
        while data := handle.read(chunk):
            yield data


class FakeHttpServer:
    """Base of the printer fakes: subclasses implement :meth:`handle`."""

    server_name = "fake"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bandwidth: float | None = None,
        max_connections: int | None = None,
        overflow: Literal["wait", "refuse"] = "wait",
        idle_timeout: float = 60.0,
        active_timeout: float = 10.0,
        drain_limit: int = 64 << 20,
        log_path: Path | str | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("fakes listen on loopback only")
        self.host = host
        self.port = port
        self.throttle = Throttle(bandwidth)
        self.max_connections = max_connections
        self.overflow = overflow
        self.idle_timeout = idle_timeout
        self.active_timeout = active_timeout
        self.drain_limit = drain_limit
        self.log_path = Path(log_path) if log_path else None
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._conns: dict[int, _Conn] = {}
        self._in_use = 0
        self._waiting = 0
        self.peak_connections = 0
        self.refused_connections = 0
        self.reaped_connections = 0
        self.body_bytes_read = 0
        """Request-body bytes this server has read off its sockets so far (live, unlike the request log)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._slot_cond: asyncio.Condition | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def bandwidth(self) -> float | None:
        return self.throttle.rate

    @bandwidth.setter
    def bandwidth(self, rate: float | None) -> None:
        self.throttle.rate = rate

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeHttpServer:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"{self.server_name}-{id(self):x}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    async def _open(self) -> None:
        self._slot_cond = asyncio.Condition()
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port, backlog=64)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        with contextlib.suppress(Exception):
            future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None
        self._loop = None

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            if conn.task is not None:
                conn.task.cancel()
            conn.writer.close()
        await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ request log

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """One dict per answered request: ts, conn, method, path (raw target as sent), status, bytes_in (body bytes
        the handler read; a refused upload's drained body is not counted), bytes_out, ms. Also appended as JSON
        lines to ``log_path`` when given."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------------ connections

    def _reap_idle(self) -> bool:
        idle = [c for c in self._conns.values() if c.idle and c.task is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since)
        victim.idle = False
        assert victim.task is not None
        victim.task.cancel()
        self.reaped_connections += 1
        return True

    async def _acquire(self) -> bool:
        assert self._slot_cond is not None
        limit = self.max_connections
        if (
            limit is not None
            and self._in_use >= limit
            and not self._reap_idle()
            and self.overflow == "refuse"
        ):
            self.refused_connections += 1
            return False
        self._waiting += 1
        try:
            async with self._slot_cond:
                while limit is not None and self._in_use >= limit:
                    await self._slot_cond.wait()
                self._in_use += 1
        finally:
            self._waiting -= 1
        self.peak_connections = max(self.peak_connections, self._in_use)
        return True

    async def _release(self) -> None:
        assert self._slot_cond is not None
        async with self._slot_cond:
            self._in_use -= 1
            self._slot_cond.notify()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(next(self._ids), reader, writer, asyncio.current_task())
        if self.throttle.rate:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self._conns[conn.id] = conn
        acquired = False
        try:
            acquired = await self._acquire()
            if acquired:
                await self._serve(conn)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._conns.pop(conn.id, None)
            if acquired:
                with contextlib.suppress(BaseException):
                    await self._release()
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_head(self, conn: _Conn, *, fresh: bool) -> bytes | None:
        """The next request head. A fresh connection is active (``active_timeout`` for its first request); after
        a response it is idle keep-alive (``idle_timeout``) and may be reaped for a waiting connection."""
        if not fresh:
            conn.idle, conn.idle_since = True, time.monotonic()
            if self._waiting:
                return None  # someone waits for a slot: give ours up rather than idle on it
        try:
            timeout = self.active_timeout if fresh else self.idle_timeout
            first = await asyncio.wait_for(conn.reader.readexactly(1), timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        finally:
            conn.idle = False
        try:
            rest = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), self.active_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, asyncio.LimitOverrunError):
            return None
        return first + rest

    async def _serve(self, conn: _Conn) -> None:
        fresh = True
        while True:
            head = await self._read_head(conn, fresh=fresh)
            fresh = False
            if head is None:
                return
            started = time.monotonic()
            request = self._parse(conn, head)
            if request is None:
                await self._write(conn, None, text(400, "Bad request"), started)
                return
            try:
                response = await self.handle(request)
            except BodyTimeout:
                response = text(408, "Request timeout")
                response.close = True
            except BodyTruncated:
                response = text(400, "Truncated body")
                response.close = True
            except Exception as exc:  # a bug in the fake must show, not hang the client
                response = text(500, f"fake printer error: {type(exc).__name__}: {exc}")
                response.close = True
            keep = await self._write(conn, request, response, started)
            if keep:
                keep = await self._finish_body(conn, request)
            elif request.body_remaining > 0 or request.chunked:
                await self._linger(conn)
            if not keep:
                return

    def _parse(self, conn: _Conn, head: bytes) -> Request | None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            items = []
            for line in lines[1:]:
                if not line:
                    continue
                name, _, value = line.partition(":")
                items.append((name.strip(), value.strip()))
        except ValueError:
            return None
        raw_path, _, query = target.partition("?")
        try:
            path = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            return None
        return Request(
            method=method.upper(),
            target=target,
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            version=version,
            headers=Headers(items),
            conn_id=conn.id,
            _conn=conn,
            _server=self,
        )

    async def _finish_body(self, conn: _Conn, request: Request) -> bool:
        """After answering: drain what the handler did not read, or close. True to keep the connection."""
        if request.chunked:
            await self._linger(conn)
            return False
        if request.body_remaining <= 0:
            return True
        if request.body_remaining > self.drain_limit:
            await self._linger(conn)
            return False
        try:
            async for _ in request.body(throttled=False):
                pass
        except (BodyTimeout, BodyTruncated):
            return False
        return True

    async def _linger(self, conn: _Conn) -> None:
        """Half-close and swallow input for a moment so the client reads our answer instead of a reset."""
        with contextlib.suppress(Exception):
            conn.writer.write_eof()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                data = await asyncio.wait_for(conn.reader.read(65536), max(0.01, deadline - time.monotonic()))
                if not data:
                    break

    async def _write(self, conn: _Conn, request: Request | None, response: Response, started: float) -> bool:
        """Send ``response``; log it; return whether the connection may be kept."""
        writer = conn.writer
        head_only = request is not None and request.method == "HEAD"
        asked_close = any(
            k.lower() == "connection" and v.lower() == "close" for k, v in response.headers.items()
        )
        keep = not (response.close or asked_close) and request is not None and _keep_alive(request)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "connection"}
        status = response.status
        body = response.body
        no_body = status in (204, 304) or 100 <= status < 200
        chunked = False
        if no_body:
            body = b""
        elif isinstance(body, bytes | bytearray):
            if response.chunked and not head_only:
                chunked = True
            else:
                headers["Content-Length"] = str(len(body))
        elif response.content_length is not None:
            headers["Content-Length"] = str(response.content_length)
        else:
            chunked = True
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        if not keep:
            headers["Connection"] = "close"
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        sent = [0]

        async def pieces() -> AsyncIterator[bytes]:
            yield "\r\n".join(lines).encode("latin-1")
            if head_only or no_body:
                return
            async for chunk in _chunks(body):
                await self.throttle.take(len(chunk), continuing=sent[0] > 0)
                sent[0] += len(chunk)
                yield b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            if chunked:
                yield b"0\r\n\r\n"

        # The log entry is written before the last bytes go out, so a client that has its answer also finds
        # the request in the log (tests read it right after a call).
        pending: bytes | None = None
        try:
            async for piece in pieces():
                if pending is not None:
                    writer.write(pending)
                    await writer.drain()
                pending = piece
        except (ConnectionError, OSError):
            keep, pending = False, None
        self._record(
            {
                "ts": round(time.time(), 3),
                "conn": conn.id,
                "method": request.method if request else "?",
                "path": request.target if request else "?",
                "status": status,
                "bytes_in": request.bytes_in if request else 0,
                "bytes_out": sent[0],
                "ms": round((time.monotonic() - started) * 1000, 1),
            }
        )
        if pending is not None:
            try:
                writer.write(pending)
                await writer.drain()
            except (ConnectionError, OSError):
                keep = False
        return keep

    # ------------------------------------------------------------------ to implement

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError


def _keep_alive(request: Request) -> bool:
    connection = (request.headers.get("connection") or "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


async def _chunks(body: bytes | bytearray | AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(body, bytes | bytearray):
        for i in range(0, len(body), 64 * 1024):
            yield bytes(body[i : i + 64 * 1024])
    elif isinstance(body, AsyncIterable):
        async for chunk in body:
            if chunk:
                yield chunk
    else:
        for chunk in body:
            if chunk:
                yield chunk
