"""OctoPrint's file API (printer-apis.md §4): one recursive listing with SHA-1 hashes, multipart uploads.

OctoPrint may sanitise names on disk; entries are addressed by their ``path`` (kept in ``ref``) and shown by their
``display`` name. Uploads overwrite by default. A stock install answers 415 to ``.bgcode`` (a plugin is needed).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from farmsync.clients.http import HttpClient
from farmsync.errors import ConfigError, UpstreamConflict, UpstreamError, UpstreamValidation
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
    MultipartFileBody,
    Sleep,
    UploadVerificationError,
    basename,
    check_path,
    join,
    local_size,
    name_problem,
    parent_of,
    path_problem,
    quote_path,
    reworded,
    same_origin_path,
)
from farmsync.gcode.paths import in_scope

BUSY_FLAGS = ("printing", "paused", "pausing", "cancelling", "resuming", "finishing")


class OctoPrintBackend(HttpBackend):
    """OctoPrint 1.x REST API with an application or user API key."""

    kind = Kind.OCTOPRINT
    # A stock OctoPrint stores machine code only: .bgcode, .3mf and the like get 415 (printer-apis.md §3), so
    # the mirror leaves them off it instead of failing every run.
    accepts = (".g", ".gco", ".gcode")

    def __init__(
        self,
        name: str,
        host: str,
        *,
        api_key: str | None,
        storage: str = "local",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        max_connections: int = 4,
    ) -> None:
        if not api_key:
            raise ConfigError(f"{name}: octoprint needs api_key")
        http = HttpClient(
            name,
            host,
            headers={"X-Api-Key": api_key},
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            max_connections=max_connections,
        )
        super().__init__(name, http, sleep=sleep)
        self.storage = storage
        self._files = f"/api/files/{storage}"

    def translate(self, error: UpstreamError, op: str) -> UpstreamError:
        if error.status == 415 and op == "upload":
            return reworded(
                error,
                "OctoPrint refused the file type (415); a stock install takes .gcode only, .bgcode needs a "
                "plugin such as OctoPrint-PrusaBgcode",
                UpstreamValidation,
            )
        if error.status == 409 and op in ("upload", "delete"):
            return reworded(
                error, f"{error.detail or 'conflict'} (the file is probably being printed)", UpstreamConflict
            )
        return error

    # ------------------------------------------------------------------ status

    async def status(self) -> PrinterStatus:
        response = await self.call(
            "status", "GET", "/api/printer", params={"exclude": "temperature,sd"}, expect=(409,)
        )
        if response.status_code == 409:
            return PrinterStatus(
                state="Offline", idle=False, detail="OctoPrint is not connected to the printer"
            )
        data = response.json()
        state = data.get("state") or {}
        flags = state.get("flags") or {}
        busy = [flag for flag in BUSY_FLAGS if flags.get(flag)]
        idle = bool(flags.get("operational")) and not busy and not flags.get("error")
        return PrinterStatus(state=str(state.get("text") or "Unknown"), idle=idle, detail=", ".join(busy))

    # ------------------------------------------------------------------ listing

    def _entry(self, parent: str, item: dict[str, Any]) -> RemoteEntry | None:
        display = str(item.get("display") or item.get("name") or "")
        ref = str(item.get("path") or join(parent, str(item.get("name") or "")))
        problem = name_problem(display) or path_problem(ref)
        if problem:
            self.skip(join(parent, display), problem)
            return None
        is_dir = item.get("type") == "folder"
        refs = found if isinstance(found := item.get("refs"), dict) else {}
        size = item.get("size")
        date = item.get("date")
        digest = item.get("hash")
        return RemoteEntry(
            path=join(parent, display),
            is_dir=is_dir,
            size=None if is_dir or not isinstance(size, int) else size,
            mtime=float(date) if isinstance(date, int | float) and date else None,
            hash=("sha1", digest) if isinstance(digest, str) and digest else None,
            ref=ref,
            download_ref=None if is_dir else refs.get("download"),
        )

    def _flatten(self, parent: str, items: list[Any], out: list[RemoteEntry]) -> None:
        for item in items:
            entry = self._entry(parent, item) if isinstance(item, dict) else None
            if entry is None:
                continue
            out.append(entry)
            if entry.is_dir:
                self._flatten(entry.path, item.get("children") or [], out)

    async def _tree(self) -> list[RemoteEntry]:
        data = await self.call_json("list", "GET", self._files, params={"recursive": "true", "force": "true"})
        out: list[RemoteEntry] = []
        self._flatten("", data.get("files") or [], out)
        return out

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        entries = await self._tree()
        return sorted((e for e in entries if in_scope(e.path, root) and e.path != root), key=lambda e: e.path)

    async def stat(self, path: str) -> RemoteEntry | None:
        path = check_path(path)
        url = f"{self._files}/{quote_path(path)}"
        response = await self.call("stat", "GET", url, expect=(404,))
        if response.status_code == 404:
            return None
        data = response.json()
        entry = self._entry(parent_of(path), {**data, "display": data.get("display") or basename(path)})
        return entry

    # ------------------------------------------------------------------ upload

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
        if size <= 0:
            raise self.refuse("POST", self._files, "refusing to upload a 0-byte file")
        local_size(source, size)
        body = FileBody(source, size, progress=progress, hash_names=("sha1",))
        form = MultipartFileBody(
            fields=[("path", parent_of(path)), ("select", "false"), ("print", "false")],
            file_field="file",
            filename=basename(path),
            body=body,
            file_content_type="application/octet-stream",
        )
        headers = {"Content-Type": form.content_type, "Content-Length": str(form.content_length)}
        response = await self.call(
            "upload", "POST", self._files, content=form, headers=headers, retry=UPLOAD_RETRY
        )
        stored = _stored_path(response) or path
        entry = await self.stat_ref(stored, path)
        if entry is None or entry.size != size:
            got = None if entry is None else entry.size
            raise UploadVerificationError(
                self.name,
                "GET",
                f"{self._files}/{quote_path(stored)}",
                f"printer holds {got} bytes, {size} were sent",
            )
        sha1 = body.digests.get("sha1")
        if entry.hash and sha1 and entry.hash[1].lower() != sha1:
            raise UploadVerificationError(
                self.name,
                "GET",
                f"{self._files}/{quote_path(stored)}",
                "SHA-1 on the printer differs from the file sent",
            )
        notes = [f"sent {body.passes} times"] if body.passes > 1 else []
        if stored != path:
            notes.append(f"stored as {stored!r}")
        return UploadResult(
            path=path,
            size=size,
            mtime=entry.mtime,
            verified=True,
            notes=notes,
            hash=entry.hash or (("sha1", sha1) if sha1 else None),
        )

    async def stat_ref(self, ref: str, display_path: str) -> RemoteEntry | None:
        """Info for the file OctoPrint stored at ``ref`` (its sanitised path), reported under ``display_path``."""
        url = f"{self._files}/{quote_path(check_path(ref, what='ref'))}"
        response = await self.call("verify", "GET", url, expect=(404,))
        if response.status_code == 404:
            return None
        data = response.json()
        return self._entry(parent_of(display_path), {**data, "display": basename(display_path), "path": ref})

    # ------------------------------------------------------------------ delete / mkdir / download

    def _entry_url(self, entry: RemoteEntry) -> str:
        check_path(entry.path)
        return f"{self._files}/{quote_path(check_path(entry.ref, what='ref') if entry.ref else entry.path)}"

    async def delete_file(self, entry: RemoteEntry) -> None:
        await self.call("delete", "DELETE", self._entry_url(entry), expect=(404,))

    async def delete_folder(self, entry: RemoteEntry) -> None:
        """OctoPrint deletes folders recursively; the caller has emptied it anyway."""
        await self.call("delete", "DELETE", self._entry_url(entry), expect=(404,))

    async def make_folder(self, path: str) -> None:
        path = check_path(path)
        form = MultipartFileBody(
            fields=[("foldername", basename(path)), ("path", parent_of(path))],
            file_field="",
            filename="",
            body=None,
        )
        headers = {"Content-Type": form.content_type, "Content-Length": str(form.content_length)}
        response = await self.call("mkdir", "POST", self._files, content=form, headers=headers, expect=(409,))
        if response.status_code == 409:
            existing = await self.stat(path)
            if existing is None or not existing.is_dir:
                raise self.error(
                    UpstreamConflict, "POST", self._files, f"{path!r} exists and is not a folder", 409
                )

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        check_path(entry.path)
        if entry.is_dir:
            raise self.error(UpstreamValidation, "GET", entry.path, "cannot download a folder")
        ref = entry.ref or entry.path
        url = (
            same_origin_path(self.http.base_url, entry.download_ref)
            if entry.download_ref
            else f"/downloads/files/{self.storage}/{quote_path(check_path(ref, what='ref'))}"
        )
        return await self.stream_to_file(url, dest, progress=progress)


def _stored_path(response: httpx.Response) -> str | None:
    """Where OctoPrint says it stored the upload (``files.local.path``)."""
    try:
        data = response.json()
    except ValueError:
        return None
    files = data.get("files") if isinstance(data, dict) else None
    for info in (files or {}).values():
        if isinstance(info, dict) and isinstance(path := info.get("path"), str) and path:
            return path
    return None
