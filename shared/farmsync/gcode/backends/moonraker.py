"""Moonraker (Klipper) file manager API, from its docs (printer-apis.md §4; not run here).

Files come from one flat recursive list of the ``gcodes`` root (G-code extensions only); folders, including empty
ones, from a one-level ``/server/files/directory`` walk that skips dot folders (``.thumbs``). Uploads carry a
SHA-256 ``checksum`` that Moonraker checks itself (422 on mismatch): when the caller gives none it is computed
while streaming and sent as a form field after the file. A file loaded for printing answers 403 ("in use").
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from farmsync.clients.http import HttpClient
from farmsync.errors import UpstreamConflict, UpstreamError, UpstreamValidation
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
)
from farmsync.gcode.paths import in_scope

IDLE_STATES = frozenset({"standby", "complete", "cancelled"})


def _result(data: Any) -> Any:
    """Moonraker wraps most answers in ``{"result": ...}``; the upload answer is not wrapped."""
    return data["result"] if isinstance(data, dict) and "result" in data else data


class MoonrakerBackend(HttpBackend):
    """Moonraker's HTTP API with an optional API key (trusted clients need none)."""

    kind = Kind.MOONRAKER

    def __init__(
        self,
        name: str,
        host: str,
        *,
        api_key: str | None = None,
        storage: str = "gcodes",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        max_connections: int = 4,
    ) -> None:
        http = HttpClient(
            name,
            host,
            headers={"X-Api-Key": api_key} if api_key else {},
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            max_connections=max_connections,
        )
        super().__init__(name, http, sleep=sleep)
        self.root = storage

    def translate(self, error: UpstreamError, op: str) -> UpstreamError:
        message = (error.errors.get("error") or {}).get("message") if isinstance(error.errors, dict) else None
        if isinstance(message, str) and message:
            error = reworded(error, message[:300])  # Moonraker's {"error": {"message"}} without the traceback
        text = error.detail.lower()
        if error.status == 403 and ("in use" in text or "loaded" in text):
            return reworded(error, error.detail, UpstreamConflict)
        if error.status == 422 and op == "upload":
            return reworded(error, f"checksum mismatch: {error.detail}", UploadVerificationError)
        return error

    def _rooted(self, path: str) -> str:
        """``gcodes/<path>`` as Moonraker's folder calls want it (``gcodes`` for the root)."""
        return f"{self.root}/{path}" if path else self.root

    # ------------------------------------------------------------------ status

    async def status(self) -> PrinterStatus:
        data = _result(await self.call_json("status", "GET", "/printer/objects/query?print_stats"))
        stats = ((data or {}).get("status") or {}).get("print_stats") or {}
        state = str(stats.get("state") or "unknown").lower()
        detail = str(stats.get("filename") or "") if state in ("printing", "paused") else ""
        return PrinterStatus(state=state, idle=state in IDLE_STATES, detail=detail)

    # ------------------------------------------------------------------ listing

    async def _directory(self, path: str) -> dict[str, Any] | None:
        """One folder level (``dirs``/``files``), or None when the folder does not exist (400 from Moonraker)."""
        response = await self.call(
            "list",
            "GET",
            "/server/files/directory",
            params={"path": self._rooted(path), "extended": "false"},
            expect=(400, 404),
        )
        if response.status_code in (400, 404):
            return None
        data = _result(response.json())
        return data if isinstance(data, dict) else None

    async def _folders(self, path: str, out: list[RemoteEntry]) -> None:
        data = await self._directory(path)
        subdirs = []
        # /server/files/list shows G-code extensions only (no .bgcode); the directory walk shows every file.
        listed = {e.path for e in out if not e.is_dir}
        for item in (data or {}).get("files") or []:
            name = str(item.get("filename") or "")
            child = join(path, name)
            if not name or name.startswith(".") or child in listed:
                continue
            problem = name_problem(name)
            if problem:
                self.skip(child, problem)
                continue
            out.append(_entry(child, item, is_dir=False))
        for item in (data or {}).get("dirs") or []:
            name = str(item.get("dirname") or "")
            if name.startswith("."):
                continue  # .thumbs and other dot folders belong to Moonraker
            problem = name_problem(name)
            if problem:
                self.skip(join(path, name), problem)
                continue
            child = join(path, name)
            out.append(_entry(child, item, is_dir=True))
            subdirs.append(child)
        await asyncio.gather(*(self._folders(child, out) for child in subdirs))

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        files = _result(await self.call_json("list", "GET", "/server/files/list", params={"root": self.root}))
        out: list[RemoteEntry] = []
        for item in files or []:
            path = str(item.get("path") or "") if isinstance(item, dict) else ""
            problem = path_problem(path)
            if problem:
                self.skip(path, problem)
                continue
            if any(part.startswith(".") for part in path.split("/")):
                continue
            out.append(_entry(path, item, is_dir=False))
        await self._folders("", out)
        return sorted((e for e in out if in_scope(e.path, root) and e.path != root), key=lambda e: e.path)

    async def stat(self, path: str) -> RemoteEntry | None:
        path = check_path(path)
        data = await self._directory(parent_of(path))
        name = basename(path)
        for item in (data or {}).get("files") or []:
            if item.get("filename") == name:
                return _entry(path, item, is_dir=False)
        for item in (data or {}).get("dirs") or []:
            if item.get("dirname") == name:
                return _entry(path, item, is_dir=True)
        return None

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
            raise self.refuse("POST", "/server/files/upload", "refusing to upload a 0-byte file")
        local_size(source, size)
        fields = [("root", self.root), ("print", "false")]
        if parent_of(path):
            fields.append(("path", parent_of(path)))
        if sha256:
            fields.append(("checksum", sha256.lower()))
        body = FileBody(source, size, progress=progress, hash_names=() if sha256 else ("sha256",))
        form = MultipartFileBody(
            fields=fields,
            file_field="file",
            filename=basename(path),
            body=body,
            trailing_hashes=None if sha256 else {"checksum": "sha256"},
        )
        headers = {"Content-Type": form.content_type, "Content-Length": str(form.content_length)}
        response = await self.call(
            "upload", "POST", "/server/files/upload", content=form, headers=headers, retry=UPLOAD_RETRY
        )
        item = (_result(response.json()) or {}).get("item") or {}
        remote_size = item.get("size")
        if remote_size is None:
            entry = await self.stat(path)
            remote_size = entry.size if entry else None
        if remote_size != size:
            raise UploadVerificationError(
                self.name,
                "POST",
                "/server/files/upload",
                f"printer holds {remote_size} bytes, {size} were sent",
            )
        digest = sha256.lower() if sha256 else body.digests.get("sha256")
        modified = item.get("modified")
        return UploadResult(
            path=path,
            size=size,
            mtime=float(modified) if isinstance(modified, int | float) and modified else None,
            verified=True,
            notes=[f"sent {body.passes} times"] if body.passes > 1 else [],
            hash=("sha256", digest) if digest else None,
        )

    # ------------------------------------------------------------------ delete / mkdir / download

    def _file_url(self, path: str) -> str:
        return f"/server/files/{self.root}/{quote_path(check_path(path))}"

    async def delete_file(self, entry: RemoteEntry) -> None:
        url = self._file_url(entry.path)
        response = await self.call("delete", "DELETE", url, expect=(400, 404))
        if response.status_code == 400 and await self.stat(entry.path) is not None:
            raise self.error(UpstreamValidation, "DELETE", url, _message(response), 400)

    async def delete_folder(self, entry: RemoteEntry) -> None:
        path = check_path(entry.path)
        response = await self.call(
            "delete",
            "DELETE",
            "/server/files/directory",
            params={"path": self._rooted(path), "force": "false"},
            expect=(400, 404),
        )
        if response.status_code in (400, 404) and await self._directory(path) is not None:
            raise self.error(
                UpstreamConflict,
                "DELETE",
                "/server/files/directory",
                f"folder not deleted: {_message(response)}",
                400,
            )

    async def make_folder(self, path: str) -> None:
        path = check_path(path)
        response = await self.call(
            "mkdir", "POST", "/server/files/directory", json={"path": self._rooted(path)}, expect=(400,)
        )
        if response.status_code != 400:
            return
        if await self._directory(path) is not None:
            return  # exists already
        parent = parent_of(path)
        if parent and await self._directory(parent) is None:
            await self.make_folder(parent)  # Moonraker creates one level; its parent must exist
            await self.call("mkdir", "POST", "/server/files/directory", json={"path": self._rooted(path)})
            return
        raise self.error(UpstreamValidation, "POST", "/server/files/directory", _message(response), 400)

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        if entry.is_dir:
            raise self.error(UpstreamValidation, "GET", entry.path, "cannot download a folder")
        return await self.stream_to_file(self._file_url(entry.path), dest, progress=progress)


def _entry(path: str, item: dict[str, Any], *, is_dir: bool) -> RemoteEntry:
    modified = item.get("modified")
    size = item.get("size")
    return RemoteEntry(
        path=path,
        is_dir=is_dir,
        size=None if is_dir or not isinstance(size, int) else size,
        mtime=float(modified) if isinstance(modified, int | float) and modified else None,
        read_only=item.get("permissions", "rw") != "rw",
        ref=path,
        download_ref=None,
    )


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or response.reason_phrase)[:300]
    except (ValueError, AttributeError):
        return response.text[:300]
