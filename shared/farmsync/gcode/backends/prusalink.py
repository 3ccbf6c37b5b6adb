"""PrusaLink v1 as Buddy firmware speaks it (MK4, MK3.9, MK3.5, XL, MINI, CORE One).

Buddy quirks this back end is built around (printer-apis.md §2):

- listings are one folder level per GET, children carry 8.3 ``name`` + long ``display_name`` and *no size*;
  a folder GET honours ``If-None-Match`` (304), so unchanged folders cost no body;
- request URLs are capped at 168 bytes percent-encoded, so existing folders are addressed by their 8.3 names
  and only the new file keeps its long name; new parents are created first when needed to learn their 8.3 name;
- ``Overwrite: ?1`` is the only "true"; ``Content-Length`` is required and 0-byte files are refused (501);
- one transfer at a time per printer (409 otherwise), enforced here with a lock;
- ``X-Api-Key`` (the password) on every ``/api`` route, digest without qop for downloads; a non-empty folder
  DELETE is a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from farmsync.clients.http import HttpClient, decode_json
from farmsync.errors import UpstreamConflict, UpstreamError, UpstreamNotFound, UpstreamValidation
from farmsync.gcode.backends.base import (
    Kind,
    PrinterStatus,
    ProgressCallback,
    RemoteEntry,
    UploadResult,
)
from farmsync.gcode.backends.common import (
    UPLOAD_RETRY,
    FileBody,
    HttpBackend,
    Sleep,
    UploadVerificationError,
    basename,
    check_path,
    check_wire,
    join,
    local_size,
    name_problem,
    parent_of,
    quote_path,
    quote_segment,
    reworded,
    same_origin_path,
    suffix,
)
from farmsync.gcode.backends.digest import BuddyAuth

PRINTABLE_SUFFIXES = frozenset({".g", ".gc", ".gco", ".gcode", ".bgc", ".bgcode"})
"""What Buddy lists and accepts on PUT (anything else is hidden, and a PUT gets 415)."""
IDLE_STATES = frozenset({"IDLE", "READY", "FINISHED", "STOPPED"})
MAX_URL_BYTES = 168
API_FILES = "/api/v1/files"

ListingCache = MutableMapping[str, tuple[str, dict[str, Any]]]
"""Folder URL -> (ETag, parsed listing). Pass one per printer to keep it across runs."""


def _cf(path: str) -> str:
    """FAT compares names case-insensitively."""
    return path.casefold()


class PrusaLinkBackend(HttpBackend):
    """Buddy firmware's PrusaLink v1 API."""

    kind = Kind.PRUSALINK
    upload_pipeline = 2
    """Uploads the engine may have under way at once: one transfers (the lock below), the other is verified and
    recorded on the second connection, so the printer's link does not idle between files."""
    early_replace = True
    """A file the source changed since our last upload may be replaced before the listing (one stat decides):
    Buddy lists one folder per GET and gives no sizes, so walking a tree costs more than the file's head start."""
    accepts = tuple(
        sorted(PRINTABLE_SUFFIXES)
    )  # the mirror leaves other source files (.3mf) off Buddy printers

    def __init__(
        self,
        name: str,
        host: str,
        *,
        password: str,
        username: str = "maker",
        storage: str = "usb",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        listing_cache: ListingCache | None = None,
        idle_states: Iterable[str] = IDLE_STATES,
        max_connections: int = 2,
        list_concurrency: int = 2,
        transfer_wait: float = 15.0,
    ) -> None:
        self.auth = BuddyAuth(password, username)
        http = HttpClient(
            name,
            host,
            auth=self.auth,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            max_connections=max_connections,  # Buddy serves 3 connections in all; leave one for others
            secrets=[password],
        )
        super().__init__(name, http, sleep=sleep)
        self.storage = storage
        self.idle_states = frozenset(s.upper() for s in idle_states)
        self.listing_cache: ListingCache = listing_cache if listing_cache is not None else {}
        self.transfer_wait = transfer_wait
        self._short: dict[str, str] = {"": ""}
        """casefolded display path -> wire path of 8.3 names (percent-encoded, relative to the storage)."""
        self._transfer_lock = asyncio.Lock()
        self._list_slots = asyncio.Semaphore(list_concurrency)

    # ------------------------------------------------------------------ addressing

    @property
    def _files_root(self) -> str:
        return f"{API_FILES}/{quote_segment(self.storage)}"

    def _url(self, wire: str) -> str:
        return f"{self._files_root}/{wire}" if wire else self._files_root

    def _wire(self, path: str) -> str:
        """The shortest wire path we know for ``path``: 8.3 names for the known prefix, long names after it."""
        if _cf(path) in self._short:
            return self._short[_cf(path)]
        parts = path.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:depth])
            known = self._short.get(_cf(prefix))
            if known is not None:
                rest = quote_path("/".join(parts[depth:]))
                return join(known, rest)
        return quote_path(path)

    def _file_url(self, path: str) -> str:
        """URL for a file we write or verify: parents as short as known, the file itself by its long name."""
        return self._url(join(self._wire(parent_of(path)), quote_segment(basename(path))))

    def _remember(self, path: str, wire: str) -> None:
        self._short[_cf(path)] = wire

    def _forget(self, path: str) -> None:
        prefix = _cf(path)
        for key in [k for k in self._short if k == prefix or k.startswith(prefix + "/")]:
            del self._short[key]

    # ------------------------------------------------------------------ errors

    def translate(self, error: UpstreamError, op: str) -> UpstreamError:
        detail = error.detail
        if error.status == 415 and op == "upload":
            return reworded(
                error, f"{detail}: Buddy stores printable files only (.gcode, .bgcode, .g, .gc, .gco, .bgc)"
            )
        if error.status == 414:
            return reworded(error, f"{detail}: the URL is over Buddy's {MAX_URL_BYTES}-byte limit")
        if error.status == 411:
            return reworded(error, f"{detail}: Buddy needs a Content-Length (no chunked uploads)")
        if error.status == 507:
            # not UpstreamUnavailable: retrying will not free space on the USB drive
            return reworded(error, f"{detail}: the USB drive is full", UpstreamError)
        return error

    # ------------------------------------------------------------------ status

    async def status(self) -> PrinterStatus:
        data = await self.call_json("status", "GET", "/api/v1/status")
        printer = data.get("printer") or {}
        state = str(printer.get("state") or "UNKNOWN").upper()
        notes = []
        if isinstance(data.get("job"), dict) and "progress" in data["job"]:
            notes.append(f"job {data['job'].get('progress')}%")
        if isinstance(data.get("transfer"), dict):
            notes.append(f"transfer {data['transfer'].get('progress', '?')}%")
        return PrinterStatus(state=state, idle=state in self.idle_states, detail=", ".join(notes))

    # ------------------------------------------------------------------ listing

    async def _folder(self, wire: str) -> dict[str, Any]:
        """One folder level, answered from the ETag cache when Buddy says 304."""
        url = self._url(wire)
        cached = self.listing_cache.get(url)
        headers = {"If-None-Match": cached[0]} if cached else None
        async with self._list_slots:
            response = await self.call("list", "GET", url, headers=headers)
            if response.status_code == 304 and cached:
                return cached[1]
            if response.status_code == 304:
                response = await self.call("list", "GET", url)
        data = decode_json(self.name, "GET", url, response)
        if not isinstance(data, dict):
            raise UpstreamError(self.name, "GET", url, "folder listing is not an object")
        etag = response.headers.get("ETag")
        if etag:
            self.listing_cache[url] = (etag, data)
        return data

    def _entry(self, parent: str, parent_wire: str | None, child: dict[str, Any]) -> RemoteEntry | None:
        """A listing child as a RemoteEntry; learns its 8.3 address when the parent's is known."""
        short = str(child.get("name") or "")
        long = str(child.get("display_name") or short)
        problem = name_problem(long) or name_problem(short)
        if problem:
            self.skip(join(parent, long), problem)
            return None
        path = join(parent, long)
        wire = None if parent_wire is None else join(parent_wire, quote_segment(short))
        if wire is not None:
            self._remember(path, wire)
        is_dir = str(child.get("type", "")).upper() == "FOLDER"
        refs = found if isinstance(found := child.get("refs"), dict) else {}
        mtime = child.get("m_timestamp")
        size = child.get("size")
        return RemoteEntry(
            path=path,
            is_dir=is_dir,
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            mtime=float(mtime) if isinstance(mtime, int | float) and mtime else None,
            read_only=bool(child.get("ro", child.get("read_only", False))),
            ref=wire,
            download_ref=None if is_dir else refs.get("download"),
        )

    async def _walk(self, path: str, wire: str, out: list[RemoteEntry]) -> None:
        data = await self._folder(wire)
        subfolders = []
        for child in data.get("children") or []:
            entry = self._entry(path, wire, child) if isinstance(child, dict) else None
            if entry is None:
                continue
            out.append(entry)
            if entry.is_dir:
                subfolders.append(entry)
        await asyncio.gather(*(self._walk(e.path, e.ref or "", out) for e in subfolders))

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        if root:
            await self._learn_existing(root)
            if _cf(root) not in self._short:
                return []
        out: list[RemoteEntry] = []
        await self._walk(root, self._short[_cf(root)], out)
        out.sort(key=lambda e: e.path)
        return out

    async def stat(self, path: str) -> RemoteEntry | None:
        """One file or folder with its size (Buddy lists no sizes); None when it does not exist."""
        path = check_path(path)
        url = self._file_url(path)
        response = await self.call("stat", "GET", url, expect=(404,))
        if response.status_code == 404:
            return None
        data = decode_json(self.name, "GET", url, response)
        if not isinstance(data, dict):
            raise UpstreamError(self.name, "GET", url, "file info is not an object")
        parent = parent_of(path)
        entry = self._entry(parent, self._short.get(_cf(parent)), {**data, "display_name": basename(path)})
        return entry

    # ------------------------------------------------------------------ upload

    async def _learn_existing(self, folder: str) -> None:
        """List down ``folder``'s chain from the deepest known ancestor so its 8.3 names are known."""
        parts = folder.split("/") if folder else []
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if _cf(prefix) in self._short:
                continue
            parent = "/".join(parts[: depth - 1])
            data = await self._folder(self._short[_cf(parent)])
            for child in data.get("children") or []:
                if isinstance(child, dict):
                    self._entry(parent, self._short[_cf(parent)], child)
            if _cf(prefix) not in self._short:
                return  # does not exist yet

    async def _upload_url(self, path: str) -> str:
        url = self._file_url(path)
        if len(url) <= MAX_URL_BYTES:
            return url
        parent = parent_of(path)
        await self._learn_existing(parent)
        url = self._file_url(path)
        if len(url) > MAX_URL_BYTES and _cf(parent) not in self._short:
            await self._make_chain(parent)
            url = self._file_url(path)
        if len(url) > MAX_URL_BYTES:
            raise self.refuse(
                "PUT",
                url[:60] + "...",
                f"{path!r} needs a {len(url)}-byte URL even with 8.3 folder names; Buddy's limit is "
                f"{MAX_URL_BYTES} bytes: shorten the file or folder names",
            )
        return url

    async def _make_chain(self, folder: str) -> None:
        """Create the missing folders of ``folder`` one level at a time, learning each new 8.3 name."""
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if _cf(prefix) in self._short:
                continue
            await self.make_folder(prefix)
            await self._learn_existing(prefix)
            if _cf(prefix) not in self._short:
                raise self.error(
                    UpstreamError, "GET", self._url(self._wire(prefix)), "new folder is not listed"
                )

    async def _wait_transfer_end(self) -> bool:
        """Poll ``/api/v1/transfer`` until no transfer runs (e.g. our own dropped one timing out)."""
        waited = 0.0
        while waited < self.transfer_wait:
            response = await self.call("transfer", "GET", "/api/v1/transfer")
            if response.status_code == 204:
                return True
            await self._sleep(1.0)
            waited += 1.0
        return False

    async def upload(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        path = check_path(path)
        name = basename(path)
        if suffix(name) not in PRINTABLE_SUFFIXES:
            raise self.refuse(
                "PUT", self._file_url(path), f"{name!r} is not printable; Buddy would refuse it (415)"
            )
        if size <= 0:
            raise self.refuse(
                "PUT", self._file_url(path), "0-byte files cannot be stored on Buddy (it answers 501)"
            )
        local_size(source, size)
        body = FileBody(source, size, progress=progress)
        try:
            await body.prepare()  # while the previous file is still on the wire (upload_pipeline)
            async with self._transfer_lock:
                url = await self._upload_url(path)
                headers = {
                    "Overwrite": "?1",
                    "Print-After-Upload": "?0",
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream"
                    if suffix(name) in (".bgcode", ".bgc")
                    else "text/x.gcode",
                }
                try:
                    await self.call("upload", "PUT", url, content=body, headers=headers, retry=UPLOAD_RETRY)
                except UpstreamConflict as exc:
                    if "transfer" not in exc.detail.lower() or not await self._wait_transfer_end():
                        raise
                    await self.call("upload", "PUT", url, content=body, headers=headers, retry=UPLOAD_RETRY)
        finally:
            body.discard()
        # Outside the transfer lock: the next file's PUT runs while this one is checked (upload_pipeline). Yield
        # once first, so that PUT (woken by the lock's release) goes out before this check: at a farm's file
        # boundary every printer's link is idle until its next PUT starts, and the loop serves in turn.
        await asyncio.sleep(0)
        info = await self.call_json("verify", "GET", url)
        remote_size = info.get("size") if isinstance(info, dict) else None
        if remote_size != size:
            raise UploadVerificationError(
                self.name, "GET", url, f"printer holds {remote_size} bytes after upload, {size} were sent"
            )
        parent_wire = self._short.get(_cf(parent_of(path)))
        if parent_wire is not None and info.get("name"):
            self._remember(path, join(parent_wire, quote_segment(str(info["name"]))))
        mtime = info.get("m_timestamp")
        notes = [f"sent {body.passes} times"] if body.passes > 1 else []
        return UploadResult(
            path=path,
            size=size,
            mtime=float(mtime) if isinstance(mtime, int | float) and mtime else None,
            verified=True,
            notes=notes,
        )

    # ------------------------------------------------------------------ delete / mkdir

    def _entry_url(self, entry: RemoteEntry) -> str:
        check_path(entry.path)
        if entry.ref is not None:
            return self._url(check_wire(entry.ref))
        return self._url(self._wire(entry.path))

    async def delete_file(self, entry: RemoteEntry) -> None:
        url = self._entry_url(entry)
        response = await self.call("delete", "DELETE", url, expect=(404,))
        self._forget(entry.path)
        if response.status_code == 404:
            return  # already gone: the goal is reached

    async def delete_folder(self, entry: RemoteEntry) -> None:
        url = self._entry_url(entry)
        response = await self.call("delete", "DELETE", url, expect=(404,))
        if response.status_code == 404:
            # Buddy answers 404 both for "missing" and for "not empty": look which one it is.
            probe = await self.call("delete", "GET", url, expect=(404,))
            if probe.status_code != 404:
                raise self.error(
                    UpstreamConflict,
                    "DELETE",
                    url,
                    "folder is not empty (Buddy deletes empty folders only)",
                    status=404,
                )
        self._forget(entry.path)

    async def make_folder(self, path: str) -> None:
        path = check_path(path)
        url = self._file_url(path)
        if len(url) > MAX_URL_BYTES:
            await self._learn_existing(parent_of(path))
            url = self._file_url(path)
        headers = {"Create-Folder": "?1", "Content-Length": "0"}
        response = await self.call("mkdir", "PUT", url, content=b"", headers=headers, expect=(409, 500))
        if response.status_code == 500 and parent_of(path):
            await self.make_folder(parent_of(path))  # Buddy's Create-Folder makes one level only
            url = self._file_url(path)
            response = await self.call("mkdir", "PUT", url, content=b"", headers=headers, expect=(409,))
        elif response.status_code == 500:
            raise self.error(UpstreamError, "PUT", url, "could not create the folder", status=500)
        if response.status_code == 409:
            existing = await self.call("mkdir", "GET", url, expect=(404,))
            data = decode_json(self.name, "GET", url, existing) if existing.status_code == 200 else {}
            if str(data.get("type", "")).upper() != "FOLDER":
                raise self.error(UpstreamConflict, "PUT", url, "a file with that name exists", status=409)

    # ------------------------------------------------------------------ download

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        if entry.is_dir:
            raise self.error(UpstreamValidation, "GET", entry.path, "cannot download a folder")
        if entry.download_ref:
            url = same_origin_path(self.http.base_url, entry.download_ref)
        else:
            url = "/" + join(quote_segment(self.storage), entry.ref or self._wire(check_path(entry.path)))
        if not url.startswith("/"):
            raise self.error(UpstreamNotFound, "GET", url, "no usable download link")
        return await self.stream_to_file(url, dest, progress=progress)
