"""OctoPrint: recursive listing with SHA-1, streamed multipart uploads, folder form, 409/415 mapping."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.errors import ConfigError, UpstreamConflict, UpstreamValidation
from farmsync.gcode.backends import RemoteEntry, UploadVerificationError
from farmsync.gcode.backends.octoprint import OctoPrintBackend

BASE = "http://octopi.test"
FILES = f"{BASE}/api/files/local"


async def _sleep(_: float) -> None:
    return None


@pytest.fixture
async def backend() -> Any:
    made = OctoPrintBackend("ender", BASE, api_key="octo-key", sleep=_sleep, timeout=5.0)
    yield made
    await made.aclose()


def _source(tmp_path: Path, data: bytes, name: str = "f.gcode") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _info(path: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "name": path.rsplit("/", 1)[-1],
        "display": path.rsplit("/", 1)[-1],
        "path": path,
        "type": "machinecode",
        "size": len(data),
        "date": 1700000000,
        "hash": _sha1(data),
        "origin": "local",
        "refs": {"download": f"{BASE}/downloads/files/local/{path}"},
        **extra,
    }


def test_needs_an_api_key() -> None:
    with pytest.raises(ConfigError):
        OctoPrintBackend("ender", BASE, api_key=None)


@pytest.mark.parametrize(
    ("flags", "idle"),
    [
        ({"operational": True, "ready": True}, True),
        ({"operational": True, "printing": True}, False),
        ({"operational": True, "paused": True}, False),
        ({"operational": False, "error": True}, False),
    ],
)
async def test_status_flags(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, flags: dict[str, bool], idle: bool
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/printer?exclude=temperature%2Csd",
        json={"state": {"text": "Operational", "flags": flags}},
        match_headers={"X-Api-Key": "octo-key"},
    )
    assert (await backend.status()).idle is idle


async def test_not_connected_409_is_not_idle(httpx_mock: HTTPXMock, backend: OctoPrintBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/printer?exclude=temperature%2Csd", status_code=409, text="not operational"
    )
    status = await backend.status()
    assert not status.idle and status.state == "Offline"


async def test_list_tree_is_one_recursive_call_with_sha1(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend
) -> None:
    data = b"G28\n"
    httpx_mock.add_response(
        url=f"{FILES}?recursive=true&force=true",
        json={
            "files": [
                {
                    "name": "prusament_pla",
                    "display": "prusament pla",
                    "path": "prusament_pla",
                    "type": "folder",
                    "children": [_info("prusament_pla/apple.gcode", data)],
                },
                _info("top.gcode", data),
                _info("../evil.gcode", data),
            ],
            "free": 1,
        },
    )
    entries = {e.path: e for e in await backend.list_tree()}
    assert set(entries) == {"prusament pla", "prusament pla/apple.gcode", "top.gcode"}
    apple = entries["prusament pla/apple.gcode"]
    assert apple.hash == ("sha1", _sha1(data)) and apple.size == 4 and apple.mtime == 1700000000
    assert apple.ref == "prusament_pla/apple.gcode"
    assert len(backend.skipped) == 1


async def test_upload_streams_multipart_and_checks_sha1(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, tmp_path: Path
) -> None:
    data = b"G1 X1\n" * 5000
    received: dict[str, Any] = {}

    def upload(request: httpx.Request) -> httpx.Response:
        body = request.read()
        received["length"] = (int(request.headers["Content-Length"]), len(body))
        received["body"] = body
        received["type"] = request.headers["Content-Type"]
        return httpx.Response(
            201, json={"done": True, "files": {"local": {"path": "sub dir/a.gcode", "name": "a.gcode"}}}
        )

    httpx_mock.add_callback(upload, url=FILES, method="POST")
    httpx_mock.add_response(url=f"{FILES}/sub%20dir/a.gcode", json=_info("sub dir/a.gcode", data))
    result = await backend.upload("sub dir/a.gcode", _source(tmp_path, data), size=len(data))
    assert result.verified and result.hash == ("sha1", _sha1(data))
    declared, actual = received["length"]
    assert declared == actual
    body = received["body"]
    assert received["type"].startswith("multipart/form-data; boundary=")
    assert b'name="path"\r\n\r\nsub dir\r\n' in body
    assert b'name="file"; filename="a.gcode"' in body
    assert data in body


async def test_upload_hash_mismatch_is_a_verification_error(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(
        url=FILES, method="POST", status_code=201, json={"files": {"local": {"path": "a.gcode"}}}
    )
    httpx_mock.add_response(url=f"{FILES}/a.gcode", json=_info("a.gcode", b"G29", hash=_sha1(b"other")))
    with pytest.raises(UploadVerificationError, match="SHA-1"):
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)


async def test_bgcode_415_says_what_to_do(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=FILES, method="POST", status_code=415, json={"error": "Could not upload"})
    with pytest.raises(UpstreamValidation, match="bgcode needs a plugin") as caught:
        await backend.upload("a.bgcode", _source(tmp_path, b"GCDE", "a.bgcode"), size=4)
    assert caught.value.status == 415


async def test_upload_409_is_a_conflict_and_503_is_retried(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=FILES, method="POST", status_code=409, text="File is being printed")
    with pytest.raises(UpstreamConflict, match="printed"):
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    httpx_mock.add_response(url=FILES, method="POST", status_code=503)
    httpx_mock.add_response(
        url=FILES, method="POST", status_code=201, json={"files": {"local": {"path": "a.gcode"}}}
    )
    httpx_mock.add_response(url=f"{FILES}/a.gcode", json=_info("a.gcode", b"G28"))
    assert (await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)).notes == ["sent 2 times"]


async def test_make_folder_form_and_existing_folder(httpx_mock: HTTPXMock, backend: OctoPrintBackend) -> None:
    def create(request: httpx.Request) -> httpx.Response:
        body = request.read()
        assert b'name="foldername"\r\n\r\nb\r\n' in body and b'name="path"\r\n\r\na\r\n' in body
        return httpx.Response(409, text="exists")

    httpx_mock.add_callback(create, url=FILES, method="POST")
    httpx_mock.add_response(
        url=f"{FILES}/a/b", json={"name": "b", "path": "a/b", "type": "folder", "children": []}
    )
    await backend.make_folder("a/b")


async def test_delete_is_by_path_404_is_fine_409_is_busy(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend
) -> None:
    httpx_mock.add_response(url=f"{FILES}/sub/a.gcode", method="DELETE", status_code=204)
    httpx_mock.add_response(url=f"{FILES}/gone.gcode", method="DELETE", status_code=404)
    httpx_mock.add_response(url=f"{FILES}/busy.gcode", method="DELETE", status_code=409, text="in use")
    httpx_mock.add_response(url=f"{FILES}/sub", method="DELETE", status_code=204)
    await backend.delete_file(RemoteEntry(path="sub/a.gcode", is_dir=False, ref="sub/a.gcode"))
    await backend.delete_file(RemoteEntry(path="gone.gcode", is_dir=False))
    with pytest.raises(UpstreamConflict):
        await backend.delete_file(RemoteEntry(path="busy.gcode", is_dir=False))
    await backend.delete_folder(RemoteEntry(path="sub", is_dir=True, ref="sub"))


async def test_download_stays_on_the_printer_host(
    httpx_mock: HTTPXMock, backend: OctoPrintBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=f"{BASE}/downloads/files/local/a.gcode", content=b"G28\n")
    entry = RemoteEntry(
        path="a.gcode",
        is_dir=False,
        ref="a.gcode",
        download_ref="http://elsewhere.example/downloads/files/local/a.gcode",
    )
    assert await backend.download(entry, tmp_path / "a.part") == 4
    assert httpx_mock.get_requests()[0].url.host == "octopi.test"
