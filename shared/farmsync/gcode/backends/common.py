"""What the four printer back ends share: path checks, streamed upload bodies and error translation.

Upload bodies are *re-iterable* async streams read from disk in chunks: memory stays flat for multi-GB files, and
a retried PUT/POST (408, 503, dropped connection) can send the same body again without the caller reopening it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

import httpx

from farmsync.clients.http import HttpClient, RetryPolicy, decode_json
from farmsync.errors import InputError, UpstreamError, UpstreamValidation
from farmsync.gcode.backends.base import ProgressCallback
from farmsync.gcode.paths import basename as basename
from farmsync.gcode.paths import check_path as check_path
from farmsync.gcode.paths import join as join
from farmsync.gcode.paths import name_problem as name_problem
from farmsync.gcode.paths import parent_of as parent_of
from farmsync.gcode.paths import path_problem as path_problem
from farmsync.offload import batched

log = logging.getLogger("farmsync.gcode.backends")

CHUNK_SIZE = 64 * 1024
"""Bytes read from disk and handed to httpx per step. httpx writes each step under one write timeout, so a step
must go out well within it even on a 30 KB/s printer (64 KiB: about 2 s); it also keeps progress smooth."""

UPLOAD_RETRY = RetryPolicy(attempts=3, base=1.0, cap=8.0)
"""Uploads are retried on 408/429/502/503/504 and on connection errors. That is safe because every back end
writes with overwrite semantics (Buddy/PrusaLink ``Overwrite: ?1``, OctoPrint and Moonraker overwrite by
default): sending the same file twice leaves the same file."""

Sleep = Callable[[float], Awaitable[None]]


class UploadVerificationError(UpstreamError):
    """The printer accepted an upload but holds something else (size or checksum differ). Re-uploading may fix it."""

    retryable = True


def reworded(error: UpstreamError, detail: str, cls: type[UpstreamError] | None = None) -> UpstreamError:
    """``error`` with a clearer detail (and optionally another class), keeping system, method, path, status."""
    return (cls or type(error))(
        error.system, error.method, error.path, detail, status=error.status, errors=error.errors
    )


class LocalFileChanged(InputError):
    """The local source file is not the size the caller said; it changed after it was planned."""


# --------------------------------------------------------------------------------------------------- paths
# The rules themselves are in farmsync.gcode.paths (imported above), shared with the planner and pull.


SEGMENT_SAFE = "!$&'()*+,;=@"
"""Sub-delimiters allowed raw in a URL path segment (RFC 3986): fewer bytes than %XX against Buddy's 168-byte cap."""


def quote_segment(segment: str) -> str:
    return quote(segment, safe=SEGMENT_SAFE)


def quote_path(path: str) -> str:
    """Percent-encode a display path segment by segment (UTF-8), keeping the slashes."""
    return "/".join(quote_segment(part) for part in path.split("/")) if path else ""


def suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def same_origin_path(base_url: str, ref: str) -> str:
    """A printer-given link as a path on the printer itself.

    Absolute links to another host are reduced to their path, so that the API key never leaves for a host the
    printer named.
    """
    parts = urlsplit(ref)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if parts.scheme and parts.netloc:
        base = urlsplit(base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            log.warning("download link points to another host; using its path on the printer")
    return path


# --------------------------------------------------------------------------------------------------- bodies


async def _read_chunk(handle: Any, size: int) -> bytes:
    # a thread of its own, not a shared trip: a transfer under way never waits behind another call's first hash
    return await asyncio.to_thread(handle.read, size)


def local_size(source: Path, size: int) -> None:
    """Raise :class:`LocalFileChanged` when ``source`` is not ``size`` bytes long (or is missing)."""
    try:
        actual = os.stat(source).st_size
    except OSError as exc:
        raise LocalFileChanged(f"cannot read {source}: {exc.strerror}", field="source") from None
    if actual != size:
        raise LocalFileChanged(
            f"{source} is {actual} bytes, {size} were planned: it changed since the plan was made",
            field="source",
        )


class FileBody:
    """``size`` bytes of ``source`` as an async byte stream that can be iterated again (for retries).

    Reports progress only past the furthest point already reported, so a retried upload never counts bytes twice.
    ``hash_names`` (e.g. ``("sha1",)``) are computed on the fly over the last complete pass.
    """

    def __init__(
        self,
        source: Path,
        size: int,
        *,
        progress: ProgressCallback | None = None,
        hash_names: Sequence[str] = (),
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.source = source
        self.size = size
        self.progress = progress
        self.chunk_size = chunk_size
        self.hash_names = tuple(hash_names)
        self.passes = 0
        self.digests: dict[str, str] = {}
        self._reported = 0
        self._ready: tuple[BinaryIO, bytes] | None = None

    async def prepare(self) -> None:
        """Open the file and read its first chunk now, before the body's turn comes.

        A Buddy upload waits for the printer's one transfer slot while the previous file is still on the wire; a
        body prepared during that wait starts sending the moment the slot is free, instead of after two trips
        through the thread pool, which at a farm's file boundary (every printer finishing at once) queue behind
        each other and cost tens of milliseconds of an idle link per file. Call :meth:`discard` if the body may
        end up not sent."""
        if self._ready is None and self.passes == 0:
            try:
                self._ready = await batched(self._open_first)
            except OSError as exc:
                raise LocalFileChanged(f"cannot read {self.source}: {exc.strerror}", field="source") from None

    def _open_first(self) -> tuple[BinaryIO, bytes]:
        handle = open(self.source, "rb")  # noqa: SIM115  # closed by __aiter__ or discard()
        try:
            return handle, handle.read(min(self.chunk_size, self.size))
        except BaseException:
            handle.close()
            raise

    def discard(self) -> None:
        """Close a prepared file that was never sent (the upload failed or was cancelled before its turn)."""
        ready, self._ready = self._ready, None
        if ready is not None:
            ready[0].close()

    def _report(self, position: int) -> None:
        if self.progress is not None and position > self._reported:
            self.progress(position - self._reported)
            self._reported = position

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.passes += 1
        self.digests = {}
        hashers = {name: hashlib.new(name) for name in self.hash_names}
        sent = 0
        ready, self._ready = self._ready, None
        handle, first = ready if ready is not None else await batched(self._open_first)
        try:
            while sent < self.size:
                chunk = (
                    first if sent == 0 else await _read_chunk(handle, min(self.chunk_size, self.size - sent))
                )
                if not chunk:
                    raise LocalFileChanged(
                        f"{self.source} ended after {sent} of {self.size} bytes while uploading",
                        field="source",
                    )
                for hasher in hashers.values():
                    hasher.update(chunk)
                sent += len(chunk)
                yield chunk
                self._report(sent)
        finally:
            handle.close()
        self.digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _disposition(name: str, filename: str | None = None) -> bytes:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")

    text = f'Content-Disposition: form-data; name="{esc(name)}"'
    if filename is not None:
        text += f'; filename="{esc(filename)}"'
    return text.encode("utf-8")


class MultipartFileBody:
    """A ``multipart/form-data`` body with one streamed file part and a known ``Content-Length``.

    httpx's own multipart encoder does stream file objects, but it reads them synchronously on the event loop and
    cannot report progress or add a checksum computed while streaming. ``trailing_hashes`` maps a form field to a
    hash name: the field is sent *after* the file with the hex digest of what was actually sent (Moonraker's
    ``checksum``), so no second read of the file is needed.
    """

    def __init__(
        self,
        *,
        fields: Sequence[tuple[str, str]],
        file_field: str,
        filename: str,
        body: FileBody | None,
        file_content_type: str = "application/octet-stream",
        trailing_hashes: Mapping[str, str] | None = None,
        boundary: str | None = None,
    ) -> None:
        self.boundary = boundary or "farmsync-" + secrets.token_hex(12)
        self.body = body
        self.trailing_hashes = dict(trailing_hashes or {})
        if body is not None:
            missing = set(self.trailing_hashes.values()) - set(body.hash_names)
            if missing:
                raise ValueError(f"FileBody must compute {sorted(missing)}")
        dash = f"--{self.boundary}".encode()
        head = b""
        for name, value in fields:
            head += dash + b"\r\n" + _disposition(name) + b"\r\n\r\n" + value.encode("utf-8") + b"\r\n"
        if body is not None:
            head += (
                dash
                + b"\r\n"
                + _disposition(file_field, filename)
                + b"\r\nContent-Type: "
                + file_content_type.encode()
                + b"\r\n\r\n"
            )
        self._head = head
        self._dash = dash
        size = body.size if body is not None else 0
        trailing_len = sum(
            len(self._trailer_part(field, "0" * (2 * hashlib.new(algo).digest_size)))
            for field, algo in self.trailing_hashes.items()
        )
        self.content_length = len(head) + size + (2 if body is not None else 0) + trailing_len + len(dash) + 4

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _trailer_part(self, field: str, value: str) -> bytes:
        return self._dash + b"\r\n" + _disposition(field) + b"\r\n\r\n" + value.encode() + b"\r\n"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._head
        if self.body is not None:
            async for chunk in self.body:
                yield chunk
            yield b"\r\n"
            for field, algo in self.trailing_hashes.items():
                yield self._trailer_part(field, self.body.digests[algo])
        yield self._dash + b"--\r\n"


# --------------------------------------------------------------------------------------------------- base


class SkipLog:
    """``skipped``: the entries a listing left out because their names were unsafe, one human line each."""

    name: str
    skipped: list[str]

    def skip(self, path: str, problem: str) -> None:
        line = f"{self.name}: skipped remote entry {path!r}: {problem}"
        log.warning(line)
        self.skipped.append(line)


class HttpBackend(SkipLog):
    """Holds the pooled :class:`HttpClient` and the one error translation every endpoint of a back end shares."""

    name: str

    def __init__(self, name: str, http: HttpClient, *, sleep: Sleep = asyncio.sleep) -> None:
        self.name = name
        self.http = http
        self._sleep = sleep
        self.skipped: list[str] = []
        """Entries a listing left out because their names were unsafe (one human line each)."""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> HttpBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def translate(self, error: UpstreamError, op: str) -> UpstreamError:
        """Turn a generic mapped error into a clearer one for this API (override per back end)."""
        return error

    async def call(self, op: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request through the shared client; errors pass through :meth:`translate`.

        Redirects are never followed, and a 3xx other than 304 is an error here: a printer API does not
        redirect, so it means a wrong host, a captive portal or a reverse proxy login page, and a PUT or DELETE
        "answered" that way did nothing.
        """
        try:
            response = await self.http.request(method, url, **kwargs)
        except UpstreamError as exc:
            raise self.translate(exc, op) from None
        status = response.status_code
        if 300 <= status < 400 and status != 304 and status not in kwargs.get("expect", ()):
            target = urlsplit(response.headers.get("Location", "")).path or "?"
            raise UpstreamError(
                self.name,
                method,
                url.split("?", 1)[0],
                f"redirected to {target}; check the host",
                status=status,
            )
        return response

    async def call_json(self, op: str, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.call(op, method, url, **kwargs)
        return decode_json(self.name, method, url, response)

    def error(
        self, cls: type[UpstreamError], method: str, path: str, detail: str, status: int | None = None
    ) -> UpstreamError:
        return cls(self.name, method, path.split("?", 1)[0], detail, status=status)

    def refuse(self, method: str, path: str, detail: str) -> UpstreamValidation:
        """An upload or request we will not send because the printer would refuse it (or worse)."""
        return UpstreamValidation(self.name, method, path.split("?", 1)[0], detail)

    async def stream_to_file(
        self, url: str, dest: Path, *, progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> int:
        """GET ``url`` and write the body to ``dest`` chunk by chunk; return the bytes written.

        Memory stays flat whatever the file size. Errors pass through :meth:`translate` like :meth:`call`'s, and a
        redirect is refused the same way: its body would otherwise land in ``dest`` as if it were the G-code.
        """
        written = 0
        try:
            async with self.http.stream("GET", url, timeout=timeout) as response:
                status = response.status_code
                if 300 <= status < 400:
                    target = urlsplit(response.headers.get("Location", "")).path or "?"
                    raise UpstreamError(
                        self.name,
                        "GET",
                        url.split("?", 1)[0],
                        f"redirected to {target}; check the host",
                        status=status,
                    )
                with open(dest, "wb") as out:  # noqa: ASYNC230 - chunked writes of a local file are short
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        out.write(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
        except UpstreamError as exc:
            raise self.translate(exc, "download") from None
        return written


def check_wire(ref: str) -> str:
    """Check a back end's own percent-encoded address (``RemoteEntry.ref``) the same way as a display path."""
    check_path(unquote(ref), what="ref")
    return ref
