"""Moonraker: flat listing plus folder walk, checksum uploads (422), 403 for a file in use, folder calls."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.errors import UpstreamAuthError, UpstreamConflict, UpstreamError, UpstreamTransportError
from farmsync.gcode.backends import RemoteEntry, UploadVerificationError
from farmsync.gcode.backends.moonraker import MoonrakerBackend

BASE = "http://klipper.test"


async def _sleep(_: float) -> None:
    return None


@pytest.fixture
async def backend() -> Any:
    made = MoonrakerBackend("voron", BASE, api_key="mr-key", sleep=_sleep, timeout=5.0)
    yield made
    await made.aclose()


def _source(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "f.gcode"
    path.write_bytes(data)
    return path


def _dir_url(path: str) -> str:
    return f"{BASE}/server/files/directory?path={path.replace('/', '%2F')}&extended=false"


def _dirs(*names: str) -> dict[str, Any]:
    return {
        "result": {
            "dirs": [{"dirname": n, "modified": 1.5, "size": 4096, "permissions": "rw"} for n in names],
            "files": [],
        }
    }


@pytest.mark.parametrize(
    ("state", "idle"),
    [
        ("standby", True),
        ("complete", True),
        ("cancelled", True),
        ("printing", False),
        ("paused", False),
        ("error", False),
    ],
)
async def test_status(httpx_mock: HTTPXMock, backend: MoonrakerBackend, state: str, idle: bool) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/printer/objects/query?print_stats",
        json={
            "result": {"eventtime": 1.0, "status": {"print_stats": {"state": state, "filename": "a.gcode"}}}
        },
        match_headers={"X-Api-Key": "mr-key"},
    )
    status = await backend.status()
    assert (status.state, status.idle) == (state, idle)


async def test_wrong_key_is_an_auth_error(httpx_mock: HTTPXMock, backend: MoonrakerBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/printer/objects/query?print_stats",
        status_code=401,
        json={"error": {"code": 401, "message": "Unauthorized"}},
    )
    with pytest.raises(UpstreamAuthError, match="Unauthorized"):
        await backend.status()


async def test_list_tree_flat_files_plus_folder_walk(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/server/files/list?root=gcodes",
        json={
            "result": [
                {"path": "a/b.gcode", "modified": 1700000000.5, "size": 10, "permissions": "rw"},
                {"path": "ro.gcode", "modified": 1.0, "size": 1, "permissions": "r"},
                {"path": ".thumbs/x.gcode", "modified": 1.0, "size": 1, "permissions": "rw"},
                {"path": "../x.gcode", "modified": 1.0, "size": 1, "permissions": "rw"},
            ]
        },
    )
    httpx_mock.add_response(url=_dir_url("gcodes"), json=_dirs("a", ".thumbs", "empty"))
    httpx_mock.add_response(url=_dir_url("gcodes/a"), json=_dirs())
    httpx_mock.add_response(url=_dir_url("gcodes/empty"), json=_dirs())
    entries = {e.path: e for e in await backend.list_tree()}
    assert set(entries) == {"a", "a/b.gcode", "empty", "ro.gcode"}
    assert entries["a/b.gcode"].size == 10 and entries["a/b.gcode"].mtime == 1700000000.5
    assert entries["ro.gcode"].read_only and entries["empty"].is_dir
    assert len(backend.skipped) == 1


def _upload_ok(data: bytes, checks: dict[str, Any]) -> Any:
    def respond(request: httpx.Request) -> httpx.Response:
        body = request.read()
        checks["body"] = body
        checks["lengths"] = (int(request.headers["Content-Length"]), len(body))
        item = {
            "path": "sub/a.gcode",
            "root": "gcodes",
            "modified": 1700000001.25,
            "size": len(data),
            "permissions": "rw",
        }
        return httpx.Response(201, json={"item": item, "action": "create_file"}, headers={"Location": "x"})

    return respond


async def test_upload_with_given_sha256_sends_it_before_the_file(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    data = b"G28\n" * 1000
    digest = hashlib.sha256(data).hexdigest()
    checks: dict[str, Any] = {}
    httpx_mock.add_callback(_upload_ok(data, checks), url=f"{BASE}/server/files/upload", method="POST")
    result = await backend.upload("sub/a.gcode", _source(tmp_path, data), size=len(data), sha256=digest)
    assert result.verified and result.hash == ("sha256", digest) and result.mtime == 1700000001.25
    body: bytes = checks["body"]
    assert checks["lengths"][0] == checks["lengths"][1]
    assert body.index(digest.encode()) < body.index(data)
    assert b'name="root"\r\n\r\ngcodes' in body and b'name="path"\r\n\r\nsub' in body


async def test_upload_without_sha256_computes_it_while_streaming(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    data = b"G1 X2\n" * 3000
    checks: dict[str, Any] = {}
    httpx_mock.add_callback(_upload_ok(data, checks), url=f"{BASE}/server/files/upload", method="POST")
    result = await backend.upload("sub/a.gcode", _source(tmp_path, data), size=len(data))
    digest = hashlib.sha256(data).hexdigest()
    assert result.hash == ("sha256", digest)
    body: bytes = checks["body"]
    assert body.index(data) < body.index(b'name="checksum"\r\n\r\n' + digest.encode())
    assert checks["lengths"][0] == checks["lengths"][1]


async def test_checksum_mismatch_422(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/server/files/upload",
        method="POST",
        status_code=422,
        json={"error": {"code": 422, "message": "File checksum mismatch", "traceback": "long"}},
    )
    with pytest.raises(UploadVerificationError, match="checksum mismatch") as caught:
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3, sha256="0" * 64)
    assert "traceback" not in str(caught.value)


async def test_file_in_use_is_a_conflict(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/server/files/upload",
        method="POST",
        status_code=403,
        json={"error": {"code": 403, "message": "File is loaded, upload not permitted"}},
    )
    httpx_mock.add_response(
        url=f"{BASE}/server/files/gcodes/a.gcode",
        method="DELETE",
        status_code=403,
        json={"error": {"code": 403, "message": "File currently in use"}},
    )
    with pytest.raises(UpstreamConflict, match="loaded"):
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    with pytest.raises(UpstreamConflict, match="in use"):
        await backend.delete_file(RemoteEntry(path="a.gcode", is_dir=False))


async def test_delete_file_and_folders(httpx_mock: HTTPXMock, backend: MoonrakerBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/server/files/gcodes/a%20b/c.gcode", method="DELETE", json={"result": {}}
    )
    httpx_mock.add_response(
        url=f"{BASE}/server/files/directory?path=gcodes%2Fempty&force=false",
        method="DELETE",
        json={"result": {}},
    )
    httpx_mock.add_response(
        url=f"{BASE}/server/files/directory?path=gcodes%2Ffull&force=false",
        method="DELETE",
        status_code=400,
        json={"error": {"code": 400, "message": "[Errno 39] Directory not empty"}},
    )
    httpx_mock.add_response(url=_dir_url("gcodes/full"), json=_dirs("x"))
    await backend.delete_file(RemoteEntry(path="a b/c.gcode", is_dir=False))
    await backend.delete_folder(RemoteEntry(path="empty", is_dir=True))
    with pytest.raises(UpstreamConflict, match="not empty"):
        await backend.delete_folder(RemoteEntry(path="full", is_dir=True))


async def test_make_folder_creates_parents_and_tolerates_existing(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend
) -> None:
    posted: list[str] = []
    exists = {"gcodes/old"}

    def mkdir(request: httpx.Request) -> httpx.Response:
        path = json.loads(request.read())["path"]
        posted.append(path)
        if path in exists or path.rpartition("/")[0] not in exists | {"gcodes"}:
            return httpx.Response(400, json={"error": {"code": 400, "message": "nope"}})
        exists.add(path)
        return httpx.Response(200, json={"result": {"action": "create_dir"}})

    def directory(request: httpx.Request) -> httpx.Response:
        path = request.url.params["path"]
        return httpx.Response(200, json=_dirs()) if path in exists else httpx.Response(400, json={})

    httpx_mock.add_callback(mkdir, url=f"{BASE}/server/files/directory", method="POST", is_reusable=True)
    httpx_mock.add_callback(directory, method="GET", is_reusable=True)
    await backend.make_folder("old")
    await backend.make_folder("new/deeper")
    assert posted == ["gcodes/old", "gcodes/new/deeper", "gcodes/new", "gcodes/new/deeper"]


async def test_download_streams_counts_and_reports_progress(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=f"{BASE}/server/files/gcodes/a%20b.gcode", content=b"G28\n" * 50_000)
    seen: list[int] = []
    before = backend.http.counters.total("voron", "GET")
    entry = RemoteEntry(path="a b.gcode", is_dir=False)
    assert await backend.download(entry, tmp_path / "a.part", progress=seen.append) == 200_000
    assert (tmp_path / "a.part").read_bytes() == b"G28\n" * 50_000
    assert sum(seen) == 200_000 and len(seen) > 1
    assert backend.http.counters.total("voron", "GET") == before + 1


async def test_download_errors_pass_through_translate(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/server/files/gcodes/a.gcode", status_code=403, json={"error": {"message": "File in use"}}
    )
    with pytest.raises(UpstreamConflict, match="File in use"):
        await backend.download(RemoteEntry(path="a.gcode", is_dir=False), tmp_path / "a.part")
    assert not (tmp_path / "a.part").exists()


async def test_download_refuses_a_redirect_instead_of_saving_its_page(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(
        status_code=302, headers={"Location": "http://portal.test/login?x=1"}, text="<html>"
    )
    with pytest.raises(UpstreamError, match="redirected to /login") as caught:
        await backend.download(RemoteEntry(path="a.gcode", is_dir=False), tmp_path / "a.part")
    assert caught.value.status == 302
    assert not (tmp_path / "a.part").exists()


class _Dropped(httpx.AsyncByteStream):
    async def __aiter__(self):  # type: ignore[override]
        yield b"G28\n"
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_download_cut_off_mid_body_is_a_transport_error(
    httpx_mock: HTTPXMock, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    httpx_mock.add_callback(lambda request: httpx.Response(200, stream=_Dropped()))
    with pytest.raises(UpstreamTransportError, match="connection dropped"):
        await backend.download(RemoteEntry(path="a.gcode", is_dir=False), tmp_path / "a.part")
    assert len(httpx_mock.get_requests()) == 1  # never retried once the body had started
