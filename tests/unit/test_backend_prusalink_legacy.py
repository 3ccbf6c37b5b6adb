"""PrusaLink 0.8 (MK3 + Raspberry Pi): list storage, digest with qop/MD5-sess, 404 lag after PUT, Force."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.errors import ConfigError, UpstreamAuthError, UpstreamConflict, UpstreamValidation
from farmsync.gcode.backends import RemoteEntry, UploadVerificationError
from farmsync.gcode.backends.prusalink_legacy import PrusaLinkLegacyBackend

BASE = "http://mk3.test"
CHALLENGE = {
    "WWW-Authenticate": 'Digest realm="Administrator", qop="auth", algorithm="MD5-sess", nonce="n0nce", opaque="0paque"'
}


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(request: httpx.Request) -> bool:
    """Checks the RFC 2617 MD5-sess response the way PrusaLink's server does."""
    header = request.headers.get("Authorization", "")
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.removeprefix("Digest ")))
    if (
        fields.get("opaque") != "0paque"
        or fields.get("qop") != "auth"
        or fields.get("algorithm") != "MD5-sess"
    ):
        return False
    ha1 = _md5(f"{_md5('maker:Administrator:secret')}:{fields['nonce']}:{fields['cnonce']}")
    ha2 = _md5(f"{request.method}:{fields['uri']}")
    expected = _md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
    return fields.get("response") == expected


async def _sleep(_: float) -> None:
    return None


def _make(**kwargs: Any) -> PrusaLinkLegacyBackend:
    kwargs.setdefault("api_key", "key")
    return PrusaLinkLegacyBackend("mk3", BASE, sleep=_sleep, timeout=5.0, **kwargs)


@pytest.fixture
async def backend() -> Any:
    made = _make()
    yield made
    await made.aclose()


def _source(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "f.gcode"
    path.write_bytes(data)
    return path


def _file(name: str, size: int) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": name,
        "type": "PRINT_FILE",
        "read_only": False,
        "m_timestamp": 1700000000,
        "size": size,
        "refs": {"download": f"/api/v1/files/local/{name}/raw"},
    }


def test_needs_credentials() -> None:
    with pytest.raises(ConfigError):
        PrusaLinkLegacyBackend("mk3", BASE, username="maker")


async def test_status_reads_the_storage_list(httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/status",
        json={
            "printer": {"state": "IDLE"},
            "storage": [
                {"path": "/local", "name": "local", "read_only": False, "free_space": 1},
                {"path": "/sdcard", "name": "sdcard", "read_only": True},
            ],
        },
        match_headers={"X-Api-Key": "key"},
    )
    status = await backend.status()
    assert status.idle and status.state == "IDLE" and "local" in status.detail


async def test_wrong_api_key_403_is_an_auth_error(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    httpx_mock.add_response(url=f"{BASE}/api/v1/status", status_code=403, text="Bad X-Api-Key.")
    with pytest.raises(UpstreamAuthError) as caught:
        await backend.status()
    assert "key" not in str(caught.value).lower().replace("x-api-key", "")


async def test_digest_md5_sess_with_qop_and_opaque_reuses_the_nonce(httpx_mock: HTTPXMock) -> None:
    seen: list[str] = []

    def status(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        seen.append(re.search(r"nc=(\w+)", header).group(1) if "nc=" in header else "-")
        if not _digest_ok(request):
            return httpx.Response(401, headers=CHALLENGE)
        return httpx.Response(200, json={"printer": {"state": "PRINTING"}, "storage": []})

    httpx_mock.add_callback(status, url=f"{BASE}/api/v1/status", is_reusable=True)
    backend = _make(api_key=None, username="maker", password="secret")
    assert not (await backend.status()).idle
    assert not (await backend.status()).idle
    await backend.aclose()
    assert seen == ["-", "00000001", "00000002"]


async def test_digest_put_is_preauthenticated(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    """The upload body is never sent into a 401: a GET gets the nonce first."""
    sent: list[tuple[str, bool]] = []

    def any_request(request: httpx.Request) -> httpx.Response:
        ok = _digest_ok(request)
        sent.append((request.method, ok))
        if not ok:
            return httpx.Response(401, headers=CHALLENGE)
        if request.method == "PUT":
            return httpx.Response(201)
        if request.url.path == "/api/v1/status":
            return httpx.Response(200, json={"printer": {"state": "IDLE"}})
        return httpx.Response(200, json=_file("a.gcode", 3))

    httpx_mock.add_callback(any_request, is_reusable=True)
    backend = _make(api_key=None, username="maker", password="secret")
    assert (await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)).verified
    await backend.aclose()
    assert sent == [("GET", False), ("GET", True), ("PUT", True), ("GET", True)]


async def test_listing_has_long_names_sizes_and_read_only(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/local",
        json={
            "type": "FOLDER",
            "name": "local",
            "read_only": False,
            "children": [
                {"name": "apple pie", "type": "FOLDER", "read_only": False, "m_timestamp": 1, "size": 99},
                {**_file("locked.gcode", 5), "read_only": True},
            ],
        },
        headers={"ETag": 'W/"1"'},
    )
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/local/apple%20pie",
        json={"type": "FOLDER", "name": "apple pie", "children": [_file("a long name.gcode", 1234)]},
    )
    entries = {e.path: e for e in await backend.list_tree()}
    assert entries["apple pie"].is_dir and entries["apple pie"].size is None
    assert entries["apple pie/a long name.gcode"].size == 1234
    assert entries["apple pie/a long name.gcode"].download_ref == "/api/v1/files/local/a long name.gcode/raw"
    assert entries["locked.gcode"].read_only


async def test_upload_headers_and_the_404_lag_after_put(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    url = f"{BASE}/api/v1/files/local/sub/a.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", status_code=404)
    httpx_mock.add_response(url=url, method="GET", status_code=404)
    httpx_mock.add_response(url=url, method="GET", json=_file("a.gcode", 3))
    result = await backend.upload("sub/a.gcode", _source(tmp_path, b"G28"), size=3)
    assert result.verified and result.mtime == 1700000000
    put = httpx_mock.get_requests(method="PUT")[0]
    assert put.headers["Content-Type"] == "text/x.gcode"
    assert put.headers["Overwrite"] == "?1"
    assert put.headers["Content-Length"] == "3"
    assert put.headers["X-Api-Key"] == "key"


async def test_verification_gives_up_after_a_bounded_wait(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backend = PrusaLinkLegacyBackend("mk3", BASE, api_key="key", sleep=sleep)
    url = f"{BASE}/api/v1/files/local/a.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", status_code=404, is_reusable=True)
    with pytest.raises(UploadVerificationError, match="did not appear"):
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    await backend.aclose()
    assert 2.0 <= sum(slept) <= 6.0


async def test_sdcard_is_read_only(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    backend = _make(storage="sdcard")
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/sdcard", json={"type": "FOLDER", "children": [_file("x.gcode", 1)]}
    )
    assert all(e.read_only for e in await backend.list_tree())
    with pytest.raises(UpstreamValidation, match="read-only"):
        await backend.upload("y.gcode", _source(tmp_path, b"G"), size=1)
    with pytest.raises(UpstreamValidation, match="read-only"):
        await backend.delete_file(RemoteEntry(path="x.gcode", is_dir=False))
    await backend.aclose()
    assert len(httpx_mock.get_requests()) == 1


async def test_delete_folder_not_empty_is_a_conflict(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/local/full", method="DELETE", status_code=409, text="Directory is not empty"
    )
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/gone.gcode", method="DELETE", status_code=404)
    with pytest.raises(UpstreamConflict, match="not empty"):
        await backend.delete_folder(RemoteEntry(path="full", is_dir=True))
    await backend.delete_file(RemoteEntry(path="gone.gcode", is_dir=False))
    assert "Force" not in httpx_mock.get_requests()[0].headers


async def test_make_folder_uses_create_folder(httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/local/a/b",
        method="PUT",
        status_code=201,
        match_headers={"Create-Folder": "?1"},
    )
    await backend.make_folder("a/b")


async def test_download_uses_the_printers_link(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/a.gcode/raw", content=b"G28\n")
    entry = RemoteEntry(path="a.gcode", is_dir=False, download_ref="/api/v1/files/local/a.gcode/raw")
    assert await backend.download(entry, tmp_path / "x") == 4
