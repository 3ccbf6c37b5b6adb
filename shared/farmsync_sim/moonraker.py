"""A fake Moonraker file manager, written from its docs and file_manager.py (printer-apis.md §4), since the real
one needs Klipper and cannot run here.

Files live in a real directory tree (``<spool>/gcodes``). Imitated: ``{"result": ...}`` envelopes (the upload answer
is not wrapped), ``{"error": {"code", "message"}}`` errors, 400 for most failures (missing directory, existing
folder, non-empty folder without ``force``), the flat ``/server/files/list`` with G-code extensions only, the
one-level ``/server/files/directory``, multipart upload with ``root``/``path``/``checksum`` (SHA-256, 422 on
mismatch; parents created), 201 + ``Location``, 403 for the file loaded by a print ("File currently in use" on
delete, "File is loaded, upload not permitted" on overwrite), ``X-Api-Key`` auth (401), and
``/printer/objects/query?print_stats``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from farmsync_sim.fakehttp import (
    BodyTimeout,
    BodyTruncated,
    FakeHttpServer,
    Request,
    Response,
    as_json,
    file_chunks,
)

GCODE_EXTS = (".gcode", ".g", ".gco", ".ufp", ".nc")
STATES = ("standby", "printing", "paused", "complete", "cancelled", "error")


class BadForm(Exception):
    """The multipart body could not be parsed."""


@dataclass(frozen=True)
class MoonFile:
    path: str
    size: int
    modified: float
    blob: Path

    def read(self) -> bytes:
        return self.blob.read_bytes()

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.blob.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


def error(status: int, message: str) -> Response:
    return as_json(status, {"error": {"code": status, "message": message}})


class FakeMoonraker(FakeHttpServer):
    """An in-process Moonraker: ``with FakeMoonraker(api_key="k") as m: ... m.url ...``."""

    server_name = "fake-moonraker"

    def __init__(
        self,
        *,
        api_key: str | None = "moonraker-key",
        state: str = "standby",
        bandwidth: float | None = None,
        max_connections: int | None = None,
        overflow: Literal["wait", "refuse"] = "wait",
        spool_dir: Path | str | None = None,
        port: int = 0,
        log_path: Path | str | None = None,
        active_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            port=port,
            bandwidth=bandwidth,
            max_connections=max_connections,
            overflow=overflow,
            active_timeout=active_timeout,
            log_path=log_path,
        )
        self.api_key = api_key
        self._own_spool = spool_dir is None
        self.spool = Path(spool_dir or tempfile.mkdtemp(prefix="fake-moonraker-"))
        self.gcodes = self.spool / "gcodes"
        self.gcodes.mkdir(parents=True, exist_ok=True)
        self._tmp = self.spool / "tmp"
        self._tmp.mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._state = state
        self._filename = ""
        self._uploads = 0

    def stop(self) -> None:
        super().stop()
        if self._own_spool:
            shutil.rmtree(self.spool, ignore_errors=True)

    def __enter__(self) -> FakeMoonraker:
        self.start()
        return self

    # ------------------------------------------------------------------ test-facing state

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str, filename: str | None = None) -> None:
        """Set ``print_stats.state``; ``filename`` (relative to gcodes) is the loaded file."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        with self._lock:
            self._state = state
            if filename is not None:
                self._filename = filename
            elif state == "standby":
                self._filename = ""

    @property
    def files(self) -> dict[str, MoonFile]:
        """Every file under gcodes (all extensions) by relative path."""
        out = {}
        with self._lock:
            for dirpath, _, names in os.walk(self.gcodes):
                for name in names:
                    full = Path(dirpath) / name
                    st = full.stat()
                    rel = full.relative_to(self.gcodes).as_posix()
                    out[rel] = MoonFile(rel, st.st_size, st.st_mtime, full)
        return out

    @property
    def folders(self) -> set[str]:
        with self._lock:
            return {
                (Path(d) / n).relative_to(self.gcodes).as_posix()
                for d, names, _ in os.walk(self.gcodes)
                for n in names
            }

    def add_file(self, path: str, data: bytes = b"") -> MoonFile:
        full = self._full(path)
        assert full is not None
        with self._lock:
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(data)
        return self.files[path]

    # ------------------------------------------------------------------ helpers

    def _full(self, rel: str) -> Path | None:
        """Path inside gcodes, or None when ``rel`` escapes it."""
        rel = rel.strip("/")
        if "\x00" in rel or "\\" in rel or any(p in ("..",) for p in rel.split("/")):
            return None
        full = (self.gcodes / rel) if rel else self.gcodes
        return full if full.resolve().is_relative_to(self.gcodes.resolve()) else None

    def _split_root(self, value: str) -> tuple[str, Path | None]:
        root, _, rel = value.strip("/").partition("/")
        return root, self._full(rel) if root == "gcodes" else None

    def _info(self, full: Path) -> dict[str, Any]:
        st = full.stat()
        return {"modified": st.st_mtime, "size": st.st_size, "permissions": "rw"}

    def _rel(self, full: Path) -> str:
        return full.relative_to(self.gcodes).as_posix()

    def _loaded(self) -> Path | None:
        if self._filename and self._state in ("printing", "paused"):
            return self._full(self._filename)
        return None

    # ------------------------------------------------------------------ routing

    async def handle(self, request: Request) -> Response:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return error(401, "Unauthorized")
        path, method = request.path, request.method
        if path == "/server/info" and method == "GET":
            return as_json(200, {"result": {"klippy_connected": True, "klippy_state": "ready"}})
        if path == "/server/files/roots" and method == "GET":
            return as_json(
                200, {"result": [{"name": "gcodes", "path": str(self.gcodes), "permissions": "rw"}]}
            )
        if path == "/server/files/list" and method == "GET":
            return self._list(request)
        if path == "/server/files/directory":
            return await self._directory(request)
        if path == "/server/files/upload" and method == "POST":
            return await self._upload(request)
        if path.startswith("/server/files/gcodes/"):
            return self._file(request, path[len("/server/files/gcodes/") :])
        if path == "/printer/objects/query" and method == "GET":
            return self._query(request)
        if path == "/printer/print/start" and method == "POST":
            return self._start(request)
        return error(404, "Not Found")

    def _query(self, request: Request) -> Response:
        status: dict[str, Any] = {}
        if "print_stats" in request.query:
            status["print_stats"] = {"state": self._state, "filename": self._filename, "print_duration": 0.0}
        return as_json(200, {"result": {"eventtime": time.monotonic(), "status": status}})

    def _start(self, request: Request) -> Response:
        filename = request.query.get("filename", "")
        full = self._full(filename)
        if full is None or not full.is_file():
            return error(400, f"File {filename} does not exist")
        if self._state in ("printing", "paused"):
            return error(400, "Printer busy")
        self.set_state("printing", filename)
        return as_json(200, {"result": "ok"})

    def _list(self, request: Request) -> Response:
        if request.query.get("root", "gcodes") != "gcodes":
            return error(400, f"Root {request.query.get('root')} not available")
        out = []
        with self._lock:
            for dirpath, _, names in os.walk(self.gcodes):
                for name in names:
                    if os.path.splitext(name)[1].lower() not in GCODE_EXTS:
                        continue
                    full = Path(dirpath) / name
                    out.append({"path": self._rel(full), **self._info(full)})
        out.sort(key=lambda item: item["path"].lower())
        return as_json(200, {"result": out})

    async def _directory(self, request: Request) -> Response:
        method = request.method
        if method == "POST":
            try:
                body = json.loads(await request.read_body() or b"{}")
            except ValueError:
                return error(400, "Invalid JSON body")
            target = str(body.get("path") or request.query.get("path", ""))
        else:
            target = request.query.get("path", "gcodes")
        root, full = self._split_root(target)
        if root != "gcodes" or full is None:
            return error(400, f"Invalid root path ({root})")
        with self._lock:
            if method == "GET":
                if not full.is_dir():
                    return error(400, f"Directory does not exist ({full})")
                dirs, files = [], []
                for child in sorted(full.iterdir()):
                    if child.is_dir():
                        dirs.append({**self._info(child), "dirname": child.name})
                    elif child.is_file():
                        files.append({**self._info(child), "filename": child.name})
                usage = shutil.disk_usage(full)
                return as_json(
                    200,
                    {
                        "result": {
                            "dirs": dirs,
                            "files": files,
                            "disk_usage": {"total": usage.total, "used": usage.used, "free": usage.free},
                            "root_info": {"name": "gcodes", "permissions": "rw"},
                        }
                    },
                )
            if method == "POST":
                try:
                    full.mkdir()
                except OSError as exc:
                    return error(400, str(exc))
                return as_json(
                    200,
                    {
                        "result": {
                            "item": {"path": self._rel(full), "root": "gcodes", **self._info(full)},
                            "action": "create_dir",
                        }
                    },
                )
            if method == "DELETE":
                if full == self.gcodes:
                    return error(400, "Cannot delete root directory")
                if not full.is_dir():
                    return error(400, f"Directory does not exist ({target})")
                force = request.query.get("force", "false").lower() == "true"
                loaded = self._loaded()
                if force:
                    if loaded is not None and loaded.is_relative_to(full):
                        return error(403, "File currently in use")
                    shutil.rmtree(full)
                else:
                    try:
                        full.rmdir()
                    except OSError as exc:
                        return error(400, str(exc))
                item = {
                    "path": self._rel(full),
                    "root": "gcodes",
                    "modified": 0,
                    "size": 0,
                    "permissions": "",
                }
                return as_json(200, {"result": {"item": item, "action": "delete_dir"}})
        return error(405, "Operation Not Supported")

    def _file(self, request: Request, rel: str) -> Response:
        full = self._full(rel)
        if full is None:
            return error(400, f"Invalid file path: {rel}")
        if request.method in ("GET", "HEAD"):
            if not full.is_file():
                return error(404, "Not Found")
            return Response(
                200,
                file_chunks(full),
                {"Content-Type": "application/octet-stream"},
                content_length=full.stat().st_size,
            )
        if request.method == "DELETE":
            with self._lock:
                if not full.is_file():
                    return error(400, f"Invalid file path: gcodes/{rel}")
                if self._loaded() == full:
                    return error(403, "File currently in use")
                full.unlink()
                item = {"path": rel, "root": "gcodes", "size": 0, "modified": 0, "permissions": ""}
                return as_json(200, {"result": {"item": item, "action": "delete_file"}})
        return error(405, "Method Not Allowed")

    # ------------------------------------------------------------------ upload

    async def _upload(self, request: Request) -> Response:
        content_type = request.headers.get("content-type") or ""
        if "multipart/form-data" not in content_type or "boundary=" not in content_type:
            return error(400, "Expected multipart/form-data")
        if request.content_length is None and not request.chunked:
            return error(411, "Length Required")
        boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        self._uploads += 1
        tmp = self._tmp / f"moonraker.upload-{self._uploads}.mru"
        try:
            fields, filename, calculated = await _read_form(request, boundary, tmp)
        except BodyTimeout:
            tmp.unlink(missing_ok=True)
            return error(408, "Request timeout")
        except (BodyTruncated, BadForm) as exc:
            tmp.unlink(missing_ok=True)
            return error(400, f"Malformed upload: {type(exc).__name__}")
        try:
            return self._finish_upload(fields, filename, calculated, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def _finish_upload(
        self, fields: dict[str, str], filename: str | None, calculated: str, tmp: Path
    ) -> Response:
        if filename is None:
            return error(400, "No file name specified in upload form")
        expected = fields.get("checksum")
        if expected and expected.lower() != calculated:
            return error(422, f"File checksum mismatch: expected {expected}, calculated {calculated}")
        root = fields.get("root", "gcodes").lower()
        if root != "gcodes":
            return error(400, f"Root {root} not available")
        rel = "/".join(p for p in (fields.get("path", "").strip("/"), filename.strip().lstrip("/")) if p)
        dest = self._full(rel)
        if dest is None or dest == self.gcodes:
            return error(400, f"Cannot write to path: {rel}")
        with self._lock:
            if self._loaded() == dest:
                return error(403, "File is loaded, upload not permitted")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
            except OSError:
                return error(500, "Unable to save file")
            item = {"path": self._rel(dest), "root": "gcodes", **self._info(dest)}
        body = {"item": item, "print_started": False, "print_queued": False, "action": "create_file"}
        return as_json(201, body, Location=f"/server/files/gcodes/{quote(self._rel(dest))}")


async def _read_form(
    request: Request, boundary: str, file_dest: Path
) -> tuple[dict[str, str], str | None, str]:
    """Stream a multipart body: form fields into memory, the ``file`` part to ``file_dest`` (sha256 on the fly)."""
    dash = b"--" + boundary.encode("latin-1")
    sep = b"\r\n" + dash
    buf = bytearray()
    chunks = request.body().__aiter__()
    fields: dict[str, str] = {}
    filename: str | None = None
    digest = hashlib.sha256()

    async def more() -> None:
        try:
            buf.extend(await chunks.__anext__())
        except StopAsyncIteration:
            raise BadForm from None

    while (start := buf.find(dash)) < 0:
        await more()
    del buf[: start + len(dash)]
    while True:
        while len(buf) < 2:
            await more()
        if buf[:2] == b"--":
            break
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await more()
        head = bytes(buf[2:end]).decode("utf-8", "replace")
        del buf[: end + 4]
        name, part_filename = _disposition(head)
        is_file = part_filename is not None and name == "file"
        sink = file_dest.open("wb") if is_file else None
        value = bytearray()
        try:
            while True:
                found = buf.find(sep)
                if found >= 0:
                    piece, rest = bytes(buf[:found]), len(sep) + found
                else:
                    keep = len(sep) - 1
                    piece, rest = bytes(buf[: max(0, len(buf) - keep)]), max(0, len(buf) - keep)
                if sink is not None:
                    sink.write(piece)
                    digest.update(piece)
                elif len(value) < 1 << 16:
                    value.extend(piece)
                del buf[:rest]
                if found >= 0:
                    break
                await more()
        finally:
            if sink is not None:
                sink.close()
        if is_file:
            filename = part_filename
        elif name:
            fields[name] = value.decode("utf-8", "replace")
    async for _ in chunks:  # epilogue
        pass
    return fields, filename, digest.hexdigest()


_PARAM = re.compile(r';\s*(\w+)="((?:[^"\\]|\\.)*)"')


def _disposition(head: str) -> tuple[str, str | None]:
    """``name`` and ``filename`` of a part (quoted values; ``%22`` and backslash escapes undone)."""
    name, filename = "", None
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        for pkey, pval in _PARAM.findall(value):
            pval = re.sub(r"\\(.)", r"\1", pval).replace("%22", '"')
            if pkey == "name":
                name = pval
            elif pkey == "filename":
                filename = pval
    return name, filename
