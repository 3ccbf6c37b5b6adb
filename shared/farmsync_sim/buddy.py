"""A fake Prusa printer on Buddy firmware (MK4 & co.) speaking PrusaLink v1, quirks included (printer-apis.md §2).

What it imitates, and farmsync's back end and link-sync 0.2.5 both rely on:

- auth: digest without qop/algorithm (realm "Printer API", user ignored, nonce = 8 hex boot secret + 8 hex uptime
  seconds, valid ``nonce_ttl`` s, then ``stale=true``) or ``X-Api-Key`` equal to the password (wrong key: 401 with
  ``WWW-Authenticate: ApiKey realm="Printer API"``); with both headers the last one wins;
- a FAT USB stick: 8.3 short names generated like FAT (``spice.gcode`` -> ``SPICE~1.GCO``), long ``display_name``,
  both accepted in URLs case-insensitively; ``m_timestamp`` in even seconds, set when an upload finishes;
- listings one level per GET, no sizes (size only on a single-file GET), dot files and non-printable files hidden,
  ``ETag``/``If-None-Match`` -> 304, listings sent chunked;
- PUT: URL > 168 bytes -> 414, ``Content-Length`` required (411, chunked too), 0 bytes -> 501, not printable -> 415,
  one transfer at a time -> 409, ``Overwrite: ?1`` only (``true`` is ignored -> 409 exists), busy file -> 409,
  parents created, ``Create-Folder: ?1`` = one-level mkdir (409 exists, 500 parent missing), no room for the
  whole new file beside the one it overwrites (a preallocated transfer file, renamed at the end) -> 507,
  ``ro:true`` while a transfer runs, idle body for ``active_timeout`` s -> 408, disconnect -> 400;
- DELETE: 204, busy or transferring file -> 409, non-empty folder -> 404 (no ``Force``);
- at most 3 connections and an optional bandwidth cap (see :mod:`farmsync_sim.fakehttp`); a request log.

File contents live in a spool directory on disk, so multi-GB uploads do not grow memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from urllib.request import parse_http_list, parse_keqv_list

from farmsync_sim.fakehttp import (
    BodyTimeout,
    BodyTruncated,
    FakeHttpServer,
    Request,
    Response,
    as_json,
    file_chunks,
    text,
)

REALM = "Printer API"
PRINTABLE = (".g", ".gc", ".gco", ".gcode", ".bgc", ".bgcode")
STATES = ("IDLE", "BUSY", "PRINTING", "PAUSED", "FINISHED", "STOPPED", "ERROR", "ATTENTION", "READY")
READY_STATES = ("IDLE", "READY", "FINISHED", "STOPPED")
BUSY_STATES = ("PRINTING", "PAUSED", "BUSY")
TRUE_ONLY = "?1"
SFN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$%'-_@~`!(){}^#&")


def printable(name: str) -> bool:
    return name.lower().endswith(PRINTABLE)


def short_name(long: str, taken: set[str]) -> str:
    """An 8.3 name for ``long`` as FAT makes it: upper case, invalid characters dropped or ``_``, ``~N`` tail when
    anything was lost or the name is taken. (FAT switches to hashed tails after ~4 collisions; we keep counting.)"""
    name = long.strip().lstrip(".")
    lossy = name != long
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""

    def clean(part: str) -> str:
        nonlocal lossy
        out = []
        for ch in part.upper():
            if ch in " .":
                lossy = True
            elif ch in SFN_CHARS:
                out.append(ch)
            else:
                out.append("_")
                lossy = True
        return "".join(out)

    b, e = clean(base), clean(ext)
    if len(b) > 8 or len(e) > 3:
        lossy = True
    b, e = b[:8] or "_", e[:3]
    suffix = f".{e}" if e else ""
    if not lossy and (b + suffix).upper() not in taken:
        return b + suffix
    for n in itertools.count(1):
        tail = f"~{n}"
        candidate = b[: 8 - len(tail)] + tail + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def fat_time(now: float | None = None) -> int:
    """FAT stores seconds in steps of 2."""
    t = int(time.time() if now is None else now)
    return t - t % 2


@dataclass
class _Node:
    long: str
    short: str
    is_dir: bool
    parent: _Node | None
    uid: int
    mtime: int
    children: dict[str, _Node] = field(default_factory=dict)
    size: int = 0
    blob: Path | None = None
    transferring: bool = False
    version: int = 0

    def find(self, name: str) -> _Node | None:
        node = self.children.get(name.casefold())
        if node is not None:
            return node
        upper = name.upper()
        return next((c for c in self.children.values() if c.short == upper), None)

    @property
    def display_path(self) -> str:
        parts: list[str] = []
        node: _Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.long)
            node = node.parent
        return "/".join(reversed(parts))

    @property
    def short_path(self) -> str:
        parts: list[str] = []
        node: _Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.short)
            node = node.parent
        return "/".join(reversed(parts))

    def walk(self) -> list[_Node]:
        out = []
        for child in self.children.values():
            out.append(child)
            if child.is_dir:
                out.extend(child.walk())
        return out


@dataclass(frozen=True)
class FakeFile:
    """A file on the fake's USB stick as tests see it."""

    path: str
    short_path: str
    size: int
    m_timestamp: int
    read_only: bool
    blob: Path | None

    def read(self) -> bytes:
        return self.blob.read_bytes() if self.blob else b""

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        if self.blob:
            with self.blob.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


class FakeBuddy(FakeHttpServer):
    """An in-process Buddy printer: ``with FakeBuddy(password="pw") as printer: ... printer.url ...``."""

    server_name = "fake-buddy"

    def __init__(
        self,
        *,
        password: str = "buddy-secret",  # noqa: S107 - a fake printer's default
        state: str = "IDLE",
        bandwidth: float | None = None,
        max_connections: int | None = 3,
        overflow: Literal["wait", "refuse"] = "wait",
        url_limit: int = 168,
        capacity: int = 32 << 30,
        nonce_ttl: float = 300.0,
        reject_digest_algorithm: bool = False,
        spool_dir: Path | str | None = None,
        port: int = 0,
        log_path: Path | str | None = None,
        active_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        name: str = "buddy",
    ) -> None:
        super().__init__(
            port=port,
            bandwidth=bandwidth,
            max_connections=max_connections,
            overflow=overflow,
            idle_timeout=idle_timeout,
            active_timeout=active_timeout,
            log_path=log_path,
        )
        self.name = name
        self.password = password
        self.url_limit = url_limit
        self.capacity = capacity
        self.nonce_ttl = nonce_ttl
        self.reject_digest_algorithm = reject_digest_algorithm
        self._own_spool = spool_dir is None
        self.spool = Path(spool_dir or tempfile.mkdtemp(prefix="fake-buddy-"))
        self.spool.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._uids = itertools.count(1)
        self._root = _Node("usb", "USB", True, None, 0, 0)
        self._state = state.upper()
        self._job: _Node | None = None
        self._job_id = 0
        self._transfer: dict[str, Any] | None = None
        self._boot = time.monotonic()
        self._secret = secrets.token_hex(4)
        self.challenges = 0
        """401 digest challenges sent (stale ones included)."""

    def stop(self) -> None:
        super().stop()
        if self._own_spool:
            shutil.rmtree(self.spool, ignore_errors=True)

    def __enter__(self) -> FakeBuddy:
        self.start()
        return self

    # ------------------------------------------------------------------ test-facing state

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str, job_path: str | None = None) -> None:
        """Set ``printer.state``; ``job_path`` (display path) selects the file being printed."""
        state = state.upper()
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        with self._lock:
            if job_path is not None:
                node = self._resolve(job_path.split("/"))
                if node is None or node.is_dir:
                    raise ValueError(f"no file {job_path!r} on the fake printer")
                self._job = node
                self._job_id += 1
            elif state in ("IDLE", "READY"):
                self._job = None
            self._state = state

    @property
    def job_path(self) -> str | None:
        with self._lock:
            return self._job.display_path if self._job else None

    @property
    def files(self) -> dict[str, FakeFile]:
        """Every file (hidden and non-printable ones too) by display path."""
        with self._lock:
            return {
                n.display_path: FakeFile(
                    n.display_path, n.short_path, n.size, n.mtime, n.transferring, n.blob
                )
                for n in self._root.walk()
                if not n.is_dir
            }

    @property
    def folders(self) -> set[str]:
        with self._lock:
            return {n.display_path for n in self._root.walk() if n.is_dir}

    def short_path(self, path: str) -> str:
        with self._lock:
            node = self._resolve(path.split("/"))
            if node is None:
                raise KeyError(path)
            return node.short_path

    def add_folder(self, path: str) -> None:
        with self._lock:
            self._ensure_dirs(path.split("/"))

    def add_file(self, path: str, data: bytes = b"", *, mtime: float | None = None) -> FakeFile:
        """Put a file on the stick directly (no HTTP), creating parents."""
        parts = path.split("/")
        with self._lock:
            parent = self._ensure_dirs(parts[:-1])
            node = parent.find(parts[-1]) or self._new_child(parent, parts[-1], is_dir=False)
            node.blob = self.spool / f"f{node.uid}"
            node.blob.write_bytes(data)
            node.size = len(data)
            node.mtime = fat_time(mtime)
            parent.version += 1
            return self.files[node.display_path]

    def expire_nonces(self) -> None:
        """Age every nonce issued so far past ``nonce_ttl`` (the next digest request gets ``stale=true``)."""
        self._boot -= self.nonce_ttl + 2

    def bytes_received(self) -> int:
        return sum(entry["bytes_in"] for entry in self.request_log)

    # ------------------------------------------------------------------ file system

    def _resolve(self, parts: list[str]) -> _Node | None:
        node: _Node | None = self._root
        for part in parts:
            if not part:
                continue
            if node is None or not node.is_dir:
                return None
            node = node.find(part)
        return node

    def _new_child(self, parent: _Node, long: str, *, is_dir: bool) -> _Node:
        taken = {c.short for c in parent.children.values()}
        node = _Node(long, short_name(long, taken), is_dir, parent, next(self._uids), fat_time())
        parent.children[long.casefold()] = node
        parent.version += 1
        return node

    def _ensure_dirs(self, parts: list[str]) -> _Node:
        node = self._root
        for part in parts:
            if not part:
                continue
            child = node.find(part)
            if child is None:
                child = self._new_child(node, part, is_dir=True)
            elif not child.is_dir:
                raise FileExistsError(part)
            node = child
        return node

    def _remove(self, node: _Node) -> None:
        assert node.parent is not None
        node.parent.children.pop(node.long.casefold(), None)
        node.parent.version += 1
        if node.blob is not None:
            with contextlib.suppress(OSError):
                node.blob.unlink()

    def _used(self) -> int:
        return sum(n.size for n in self._root.walk() if not n.is_dir)

    def _busy(self, node: _Node) -> bool:
        return self._job is node and self._state in BUSY_STATES

    # ------------------------------------------------------------------ auth

    def _nonce(self) -> str:
        return f"{self._secret}{int(time.monotonic() - self._boot) & 0xFFFFFFFF:08x}"

    def _authorized(self, request: Request) -> Response | None:
        """None when authorised, else the 401 answer. The last auth header sent decides (like Buddy)."""
        if not self.password:
            return text(
                401,
                "Login disabled",
                **{"WWW-Authenticate": f'Digest realm="{REALM}", nonce="{self._nonce()}"'},
            )
        chosen: tuple[str, str] | None = None
        for key, value in request.headers.items:
            if key.lower() == "x-api-key":
                chosen = ("key", value)
            elif key.lower() == "authorization" and value.lower().startswith("digest "):
                chosen = ("digest", value[7:])
        if chosen and chosen[0] == "key":
            if secrets.compare_digest(chosen[1].encode(), self.password.encode()):
                return None
            return text(401, "Unauthorized", **{"WWW-Authenticate": f'ApiKey realm="{REALM}"'})
        stale = False
        if chosen:
            fields = {k.lower(): v for k, v in parse_keqv_list(parse_http_list(chosen[1])).items()}
            verdict = self._check_digest(request.method, fields)
            if verdict == "ok":
                return None
            stale = verdict == "stale"
        self.challenges += 1
        challenge = f'Digest realm="{REALM}", nonce="{self._nonce()}"' + (", stale=true" if stale else "")
        return text(401, "Unauthorized", **{"WWW-Authenticate": challenge})

    def _check_digest(self, method: str, fields: dict[str, str]) -> str:
        nonce = fields.get("nonce", "")
        if len(nonce) != 16 or not nonce.startswith(self._secret):
            return "bad"
        if self.reject_digest_algorithm and "algorithm" in fields:
            return "bad"  # older firmware choked on algorithm=
        ha1 = _md5(f"maker:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{fields.get('uri', '')}")
        if not secrets.compare_digest(fields.get("response", ""), _md5(f"{ha1}:{nonce}:{ha2}")):
            return "bad"
        issued = int(nonce[8:], 16)
        if time.monotonic() - self._boot - issued > self.nonce_ttl:
            return "stale"
        return "ok"

    # ------------------------------------------------------------------ routing

    async def handle(self, request: Request) -> Response:
        if len(request.target.encode("latin-1", "replace")) > self.url_limit:
            return text(414, "URI Too Long", Connection="close")
        path = request.path
        if path == "/" or path.startswith(("/thumb/",)):
            return text(404, "Not found")
        denied = self._authorized(request)
        if denied is not None:
            return denied
        method = request.method
        if path.startswith("/api/v1/files"):
            return await self._files(request)
        if path.startswith("/usb/") and method in ("GET", "HEAD"):
            return self._download(request)
        if method not in ("GET", "HEAD"):
            return text(405, "Method not allowed")
        if path == "/api/version":
            return as_json(200, self._version())
        if path == "/api/v1/info":
            return as_json(200, {"hostname": self.name, "serial": "FAKE-BUDDY", "nozzle_diameter": 0.4})
        if path == "/api/v1/status":
            return as_json(200, self._status())
        if path == "/api/v1/storage":
            return as_json(
                200,
                {
                    "storage_list": [
                        {"path": "/usb/", "name": "usb", "type": "USB", "read_only": False, "available": True}
                    ]
                },
            )
        if path == "/api/v1/transfer":
            with self._lock:
                return as_json(200, self._transfer_info()) if self._transfer else Response(204)
        if path == "/api/v1/job":
            with self._lock:
                return as_json(200, self._job_info()) if self._job else Response(204)
        return text(404, "Not found")

    def _version(self) -> dict[str, Any]:
        return {
            "api": "2.0.0",
            "server": "2.1.2",
            "nozzle_diameter": 0.4,
            "text": "PrusaLink",
            "hostname": self.name,
            "capabilities": {"upload-by-put": True},
        }

    def _transfer_info(self) -> dict[str, Any]:
        assert self._transfer is not None
        t = self._transfer
        size = max(t["size"], 1)
        return {
            "id": t["id"],
            "time_transferring": int(time.monotonic() - t["started"]),
            "progress": round(100.0 * t["transferred"] / size, 1),
            "transferred": t["transferred"],
        }

    def _job_info(self) -> dict[str, Any]:
        assert self._job is not None
        return {"id": self._job_id, "progress": 0.0, "time_remaining": 3600, "time_printing": 0}

    def _status(self) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = {
                "storage": {"path": "/usb/", "name": "usb", "read_only": False},
                "printer": {
                    "state": self._state,
                    "temp_nozzle": 24.1,
                    "target_nozzle": 0.0,
                    "temp_bed": 23.9,
                    "target_bed": 0.0,
                    "axis_z": 12.5,
                    "flow": 100,
                    "speed": 100,
                    "fan_hotend": 0,
                    "fan_print": 0,
                },
            }
            if self._job is not None and self._state in ("PRINTING", "PAUSED", "FINISHED", "STOPPED"):
                data["job"] = {**self._job_info(), "filament_change_in": 0}
            if self._transfer:
                data["transfer"] = self._transfer_info()
            return data

    # ------------------------------------------------------------------ /api/v1/files

    async def _files(self, request: Request) -> Response:
        rest = request.path[len("/api/v1/files") :]
        if rest and not rest.startswith("/"):
            return text(404, "Not found")
        parts = [p for p in rest.split("/") if p]  # duplicate slashes collapse
        if not parts:
            return text(404, "Not found")
        if parts[0] != "usb":
            return text(403, "Forbidden")
        parts = parts[1:]
        if any(p in (".", "..") for p in parts):
            return text(400, "Bad path")
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get(request, parts)
        if method == "PUT":
            return await self._put(request, parts)
        if method == "DELETE":
            return self._delete(parts)
        if method == "POST":
            return self._print(parts)
        return text(405, "Method not allowed")

    def _child_json(self, node: _Node, *, with_size: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": node.short,
            "ro": node.transferring,
            "type": "FOLDER" if node.is_dir else "PRINT_FILE",
            "m_timestamp": node.mtime,
        }
        if not node.is_dir:
            refs = {
                "icon": f"/thumb/s/usb/{quote(node.short_path)}",
                "thumbnail": f"/thumb/l/usb/{quote(node.short_path)}",
            }
            if not node.transferring:
                refs["download"] = f"/usb/{quote(node.short_path)}"
            item["refs"] = refs
            if with_size:
                item["size"] = node.size
        item["display_name"] = node.long
        return item

    @staticmethod
    def _etag(node: _Node) -> str:
        return f'"{zlib.crc32(f"{node.uid}:{node.version}".encode())}"'

    def _listed(self, node: _Node) -> bool:
        return not node.long.startswith(".") and (node.is_dir or printable(node.long))

    def _get(self, request: Request, parts: list[str]) -> Response:
        with self._lock:
            node = self._resolve(parts)
            if node is None:
                return text(404, "Not found")
            printing = "true" if self._job is not None and self._state in BUSY_STATES else "false"
            headers = {"Read-Only": "false", "Currently-Printing": printing}
            if not node.is_dir:
                return as_json(200, self._child_json(node, with_size=True), **headers)
            etag = self._etag(node)
            sent = request.headers.get("if-none-match")
            if sent and sent.removeprefix("W/") == etag:
                return Response(304, b"", {"ETag": etag, **headers})
            data: dict[str, Any] = {
                "type": "FOLDER",
                "ro": False,
                "name": node.short if node.parent else "usb",
                "children": [self._child_json(c) for c in node.children.values() if self._listed(c)],
            }
            if node.parent is not None:
                data["m_timestamp"] = node.mtime
                data["display_name"] = node.long
            return as_json(200, data, chunked=True, ETag=etag, **headers)

    def _download(self, request: Request) -> Response:
        parts = [p for p in request.path[len("/usb/") :].split("/") if p]
        with self._lock:
            node = self._resolve(parts)
            if node is None or node.is_dir or node.transferring or node.blob is None:
                return text(404, "Not found")
            blob, size = node.blob, node.size
        return Response(
            200, file_chunks(blob), {"Content-Type": "application/octet-stream"}, content_length=size
        )

    def _print(self, parts: list[str]) -> Response:
        with self._lock:
            node = self._resolve(parts)
            if node is None or node.is_dir:
                return text(404, "Not found")
            if self._state not in READY_STATES or node.transferring:
                return text(409, "Printer is busy")
            self._job, self._job_id, self._state = node, self._job_id + 1, "PRINTING"
            return Response(204)

    def _delete(self, parts: list[str]) -> Response:
        with self._lock:
            node = self._resolve(parts)
            if node is None or node.parent is None:
                return text(404, "Not found")
            if node.is_dir:
                if node.children:
                    return text(404, "Not found")  # Buddy: a non-empty folder is "other error" -> 404
                self._remove(node)
                return Response(204)
            if node.transferring:
                return text(409, "File is being transferred")
            if self._busy(node):
                return text(409, "File is busy")
            if self._job is node:  # FINISHED/STOPPED with the file still selected: leave the print screen
                self._job = None
                self._state = "IDLE" if self._state in ("FINISHED", "STOPPED") else self._state
            self._remove(node)
            return Response(204)

    def _mkdir(self, parts: list[str]) -> Response:
        with self._lock:
            parent = self._resolve(parts[:-1])
            if parent is None or not parent.is_dir:
                return text(500, "Parent folder does not exist")
            if parent.find(parts[-1]) is not None:
                return text(409, "Already exists")
            node = self._new_child(parent, parts[-1], is_dir=True)
            node.mtime = fat_time()
            return Response(201, b"", {"Location": f"/api/v1/files/usb/{quote(node.short_path)}"})

    async def _put(self, request: Request, parts: list[str]) -> Response:
        if not parts:
            return text(409, "Conflicting upload path")
        if request.headers.get("create-folder") == TRUE_ONLY:
            return self._mkdir(parts)
        length = request.content_length
        if length is None or request.chunked:
            return text(411, "Length required", Connection="close")
        if length < 0:
            return text(400, "Bad Content-Length")
        if length == 0:
            return text(501, "0-sized files aren't implemented")
        name = parts[-1]
        if not printable(name):
            return text(415, "Not a GCODE")
        wants_print = (request.headers.get("print-after-upload") or "").strip() in ("?1", "1", "true")
        overwrite = request.headers.get("overwrite") == TRUE_ONLY
        with self._lock:
            if self._transfer is not None:
                return text(409, "Another transfer in progress")
            node: _Node | None = self._root
            for part in parts[:-1]:
                assert node is not None
                child = node.find(part)
                if child is not None and not child.is_dir:
                    return text(409, "Conflicting upload path")
                node = child
                if node is None:
                    break
            existing = node.find(name) if node is not None else None
            if existing is not None:
                if existing.is_dir:
                    return text(409, "Conflicting upload path")
                if not overwrite:
                    return text(409, "File already exists")
                if self._busy(existing) or existing.transferring:
                    return text(409, "File is busy")
            if wants_print and self._state not in READY_STATES:
                return text(409, "Printer is not ready")
            # the body is preallocated in a transfer file renamed over the old one at the end: both need room
            if self._used() + length > self.capacity:
                return text(507, "Insufficient storage")
            parent = self._ensure_dirs(parts[:-1])
            target = existing or self._new_child(parent, name, is_dir=False)
            target.transferring = True
            parent.version += 1
            self._transfer = {
                "id": next(self._uids),
                "size": length,
                "transferred": 0,
                "started": time.monotonic(),
                "node": target,
            }
        return await self._receive(request, parent, target, existing is None, length, wants_print)

    async def _receive(
        self, request: Request, parent: _Node, target: _Node, is_new: bool, length: int, wants_print: bool
    ) -> Response:
        part = self.spool / f"t{target.uid}.part"
        ok = False
        try:
            with part.open("wb") as out:
                async for chunk in request.body():
                    out.write(chunk)
                    assert self._transfer is not None
                    self._transfer["transferred"] += len(chunk)
            ok = True
        except BodyTimeout:
            return text(408, "Request timeout", Connection="close")
        except BodyTruncated:
            return text(400, "Truncated body", Connection="close")
        finally:
            with self._lock:
                self._transfer = None
                target.transferring = False
                parent.version += 1
                if ok:
                    blob = self.spool / f"f{target.uid}"
                    os.replace(part, blob)
                    target.blob, target.size, target.mtime = blob, length, fat_time()
                else:
                    with contextlib.suppress(OSError):
                        part.unlink()
                    if is_new:
                        self._remove(target)
        if wants_print:
            with self._lock:
                if self._state in READY_STATES:
                    self._job, self._job_id, self._state = target, self._job_id + 1, "PRINTING"
        return Response(201, b"", {"Location": f"/api/v1/files/usb/{quote(target.short_path)}"})


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
