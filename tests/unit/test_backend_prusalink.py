"""PrusaLink v1 on Buddy: every call and error case against recorded shapes (pytest-httpx)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.errors import (
    InputError,
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamValidation,
)
from farmsync.gcode.backends import RemoteEntry, UploadVerificationError
from farmsync.gcode.backends.prusalink import PrusaLinkBackend

BASE = "http://buddy.test"
NONCE = "0123456789abcdef"
CHALLENGE = {"WWW-Authenticate": f'Digest realm="Printer API", nonce="{NONCE}"'}


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(request: httpx.Request, password: str = "pw") -> bool:  # noqa: S107
    header = request.headers.get("Authorization", "")
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.removeprefix("Digest ")))
    ha1 = _md5(f"maker:Printer API:{password}")
    ha2 = _md5(f"GET:{fields.get('uri')}")
    expected = _md5(f"{ha1}:{fields.get('nonce')}:{ha2}")
    return fields.get("response") == expected and "qop" not in fields and "algorithm" not in fields


async def _sleep(_: float) -> None:
    return None


@pytest.fixture
async def backend() -> Any:
    made = PrusaLinkBackend("mk4", BASE, password="pw", sleep=_sleep, timeout=5.0)
    yield made
    await made.aclose()


def _authed(backend: PrusaLinkBackend) -> None:
    """Give the back end a nonce so tests need not replay the first 401."""
    from farmsync.gcode.backends.digest import Challenge

    backend.auth.digest._challenge = Challenge(realm="Printer API", nonce=NONCE)


def _source(tmp_path: Path, data: bytes, name: str = "f.gcode") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _folder(children: list[dict[str, Any]], name: str = "usb") -> dict[str, Any]:
    return {"type": "FOLDER", "ro": False, "name": name, "children": children}


def _file(short: str, long: str, *, ro: bool = False, ts: int = 1700000000) -> dict[str, Any]:
    return {
        "name": short,
        "display_name": long,
        "ro": ro,
        "type": "PRINT_FILE",
        "m_timestamp": ts,
        "refs": {"download": f"/usb/{short}"} if not ro else {},
    }


def _dir(short: str, long: str) -> dict[str, Any]:
    return {"name": short, "display_name": long, "ro": False, "type": "FOLDER", "m_timestamp": 1700000000}


# ------------------------------------------------------------------------------------------- auth


async def test_api_reads_carry_the_key_and_need_no_challenge(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    """Buddy checks X-Api-Key on every /api route: a read costs one request, not a 401 and a retry."""
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/status", json={"printer": {"state": "IDLE"}}, is_reusable=True
    )
    assert (await backend.status()).idle
    assert (await backend.status()).idle
    sent = httpx_mock.get_requests()
    assert [r.headers.get("X-Api-Key") for r in sent] == ["pw", "pw"]
    assert not any("Authorization" in r.headers for r in sent)
    assert backend.auth.digest.challenges == 0


DOWNLOAD = RemoteEntry(path="a.gcode", is_dir=False, download_ref="/usb/A~1.GCO")


async def test_download_answers_the_digest_challenge_once_and_reuses_the_nonce(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    seen: list[
        tuple[bool, bool]
    ] = []  # (had Authorization, digest valid) as sent; the flow reuses the request

    def download(request: httpx.Request) -> httpx.Response:
        seen.append(("Authorization" in request.headers, _digest_ok(request)))
        assert "X-Api-Key" not in request.headers
        if not _digest_ok(request):
            return httpx.Response(401, headers=CHALLENGE)
        return httpx.Response(200, content=b"G28\n")

    httpx_mock.add_callback(download, url=f"{BASE}/usb/A~1.GCO", is_reusable=True)
    assert await backend.download(DOWNLOAD, tmp_path / "one") == 4
    assert await backend.download(DOWNLOAD, tmp_path / "two") == 4
    # one 401, then two authorised GETs on the same nonce
    assert seen == [(False, False), (True, True), (True, True)]
    assert backend.auth.digest.challenges == 1


async def test_stale_nonce_is_rechallenged(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    stale = {"WWW-Authenticate": 'Digest realm="Printer API", nonce="fedcba9876543210", stale=true'}
    httpx_mock.add_response(url=f"{BASE}/usb/A~1.GCO", status_code=401, headers=stale)
    httpx_mock.add_response(url=f"{BASE}/usb/A~1.GCO", content=b"G28\n")
    assert await backend.download(DOWNLOAD, tmp_path / "a") == 4
    retry = httpx_mock.get_requests()[-1]
    assert 'nonce="fedcba9876543210"' in retry.headers["Authorization"]


async def test_wrong_password_is_an_auth_error_without_looping(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    refused = {"WWW-Authenticate": 'ApiKey realm="Printer API"'}
    httpx_mock.add_response(url=f"{BASE}/api/v1/status", status_code=401, headers=refused)
    with pytest.raises(UpstreamAuthError) as caught:
        await backend.status()
    assert "pw" not in str(caught.value)
    httpx_mock.add_response(url=f"{BASE}/usb/A~1.GCO", status_code=401, headers=CHALLENGE, is_reusable=True)
    with pytest.raises(UpstreamAuthError):
        await backend.download(DOWNLOAD, tmp_path / "a")
    assert (
        len(httpx_mock.get_requests()) == 3
    )  # the key once; the digest challenge answered once, refused again


@pytest.mark.parametrize(
    ("state", "idle"),
    [("IDLE", True), ("READY", True), ("FINISHED", True), ("STOPPED", True)]
    + [(s, False) for s in ("PRINTING", "PAUSED", "BUSY", "ATTENTION", "ERROR", "UNKNOWN")],
)
async def test_idle_states(httpx_mock: HTTPXMock, backend: PrusaLinkBackend, state: str, idle: bool) -> None:
    _authed(backend)
    httpx_mock.add_response(url=f"{BASE}/api/v1/status", json={"printer": {"state": state}})
    status = await backend.status()
    assert (status.state, status.idle) == (state, idle)


# ------------------------------------------------------------------------------------------- listing


async def test_list_tree_walks_one_level_per_get_by_short_names(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb",
        json=_folder([_dir("APPLEP~1", "apple pie"), _file("TOP~1.GCO", "top.gcode", ro=True)]),
    )
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/APPLEP~1",
        json=_folder([_dir("PRUSAM~1", "prusament pla")], "APPLEP~1"),
    )
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/APPLEP~1/PRUSAM~1",
        json=_folder([_file("APPLE_~1.GCO", "apple_0.4n.gcode")], "PRUSAM~1"),
    )
    entries = {e.path: e for e in await backend.list_tree()}
    assert set(entries) == {
        "apple pie",
        "apple pie/prusament pla",
        "apple pie/prusament pla/apple_0.4n.gcode",
        "top.gcode",
    }
    deep = entries["apple pie/prusament pla/apple_0.4n.gcode"]
    assert deep.size is None and deep.mtime == 1700000000 and not deep.is_dir
    assert deep.ref == "APPLEP~1/PRUSAM~1/APPLE_~1.GCO"
    assert deep.download_ref == "/usb/APPLE_~1.GCO"
    assert entries["top.gcode"].read_only and entries["top.gcode"].download_ref is None
    assert entries["apple pie"].is_dir


async def test_list_tree_sends_if_none_match_and_reuses_304(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    _authed(backend)
    listing = _folder([_file("A~1.GCO", "a.gcode")])
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb", json=listing, headers={"ETag": '"42"'})
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb", status_code=304, match_headers={"If-None-Match": '"42"'}
    )
    first = await backend.list_tree()
    second = await backend.list_tree()
    assert first == second and [e.path for e in second] == ["a.gcode"]


async def test_engine_can_pass_the_listing_cache(httpx_mock: HTTPXMock) -> None:
    cache: dict[str, tuple[str, Any]] = {"/api/v1/files/usb": ('"7"', _folder([_file("B~1.GCO", "b.gcode")]))}
    backend = PrusaLinkBackend("mk4", BASE, password="pw", sleep=_sleep, listing_cache=cache)
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb", status_code=304, match_headers={"If-None-Match": '"7"'}
    )
    assert [e.path for e in await backend.list_tree()] == ["b.gcode"]
    await backend.aclose()


async def test_listing_skips_unsafe_names(httpx_mock: HTTPXMock, backend: PrusaLinkBackend) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb",
        json=_folder([_file("X~1.GCO", "../evil.gcode"), _file("OK~1.GCO", "ok.gcode"), _dir("..", "..")]),
    )
    assert [e.path for e in await backend.list_tree()] == ["ok.gcode"]
    assert len(backend.skipped) == 2 and "evil" in backend.skipped[0]


async def test_stat_returns_the_size(httpx_mock: HTTPXMock, backend: PrusaLinkBackend) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/a%20b.gcode", json={**_file("AB~1.GCO", "a b.gcode"), "size": 12}
    )
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/missing.gcode", status_code=404)
    entry = await backend.stat("a b.gcode")
    assert entry is not None and entry.size == 12 and entry.path == "a b.gcode"
    assert await backend.stat("missing.gcode") is None


# ------------------------------------------------------------------------------------------- upload


def _put_ok(expected: bytes) -> Any:
    def respond(request: httpx.Request) -> httpx.Response:
        assert request.read() == expected
        return httpx.Response(201)

    return respond


async def test_upload_headers_body_and_size_verification(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    data = b"G28\nG1 X10\n" * 100
    url = f"{BASE}/api/v1/files/usb/new%20folder/part+1.gcode"  # sub-delimiters stay raw
    httpx_mock.add_callback(_put_ok(data), url=url, method="PUT")
    httpx_mock.add_response(
        url=url,
        method="GET",
        json={**_file("PART_1~1.GCO", "part+1.gcode", ts=1700000100), "size": len(data)},
    )
    progress: list[int] = []
    result = await backend.upload(
        "new folder/part+1.gcode", _source(tmp_path, data), size=len(data), progress=progress.append
    )
    assert result.verified and result.size == len(data) and result.mtime == 1700000100
    assert sum(progress) == len(data)
    put = httpx_mock.get_requests(method="PUT")[0]
    assert put.headers["Overwrite"] == "?1"
    assert put.headers["Print-After-Upload"] == "?0"
    assert put.headers["Content-Length"] == str(len(data))
    assert put.headers["X-Api-Key"] == "pw"
    assert "Authorization" not in put.headers and "Transfer-Encoding" not in put.headers


async def test_upload_refuses_empty_and_unprintable_files_without_sending(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    with pytest.raises(UpstreamValidation, match="0-byte"):
        await backend.upload("empty.gcode", _source(tmp_path, b""), size=0)
    with pytest.raises(UpstreamValidation, match="not printable"):
        await backend.upload("fw.bbf", _source(tmp_path, b"x", "fw.bbf"), size=1)
    assert httpx_mock.get_requests() == []


async def test_upload_rejects_traversal(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    for bad in ("../x.gcode", "/abs.gcode", "a\\b.gcode", "a/\x00.gcode"):
        with pytest.raises(InputError):
            await backend.upload(bad, _source(tmp_path, b"x"), size=1)
    with pytest.raises(InputError):
        await backend.delete_file(RemoteEntry(path="a/../../b.gcode", is_dir=False))
    with pytest.raises(InputError):
        await backend.delete_file(RemoteEntry(path="b.gcode", is_dir=False, ref="A/../../B.GCO"))
    with pytest.raises(InputError):
        await backend.list_tree("/usb")
    assert httpx_mock.get_requests() == []


async def test_url_over_168_bytes_fails_before_sending(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    name = "é" * 40 + ".gcode"  # 40 x 6 bytes percent-encoded
    with pytest.raises(UpstreamValidation, match="168"):
        await backend.upload(name, _source(tmp_path, b"G28\n"), size=4)
    assert httpx_mock.get_requests() == []


async def test_long_parents_are_addressed_by_their_short_names(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    first, second = (
        "a rather long folder name for testing the url limit",
        "and another long folder name under it",
    )
    name = "the file with a long name.gcode"
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb", json=_folder([_dir("ARATHE~1", first)]))
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/ARATHE~1", json=_folder([_dir("ANDANO~1", second)]))
    url = f"{BASE}/api/v1/files/usb/ARATHE~1/ANDANO~1/the%20file%20with%20a%20long%20name.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json={**_file("THEFIL~1.GCO", name), "size": 4})
    assert len(backend._file_url(f"{first}/{second}/{name}")) > 168  # with long names it would not fit
    result = await backend.upload(f"{first}/{second}/{name}", _source(tmp_path, b"G28\n"), size=4)
    assert result.verified
    assert len(httpx_mock.get_requests(method="PUT")[0].url.raw_path) <= 168


async def test_missing_long_parents_are_created_to_learn_short_names(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    folder = "a brand new folder with a very long name that does not exist yet"
    name = "and a file name that is also rather long.gcode"
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb", json=_folder([]))
    mkdir = f"{BASE}/api/v1/files/usb/a%20brand%20new%20folder%20with%20a%20very%20long%20name%20that%20does%20not%20exist%20yet"
    httpx_mock.add_response(url=mkdir, method="PUT", status_code=201, match_headers={"Create-Folder": "?1"})
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb", json=_folder([_dir("ABRAND~1", folder)]))
    url = f"{BASE}/api/v1/files/usb/ABRAND~1/and%20a%20file%20name%20that%20is%20also%20rather%20long.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json={**_file("ANDAFI~1.GCO", name), "size": 4})
    assert (await backend.upload(f"{folder}/{name}", _source(tmp_path, b"G28\n"), size=4)).verified


async def test_upload_retries_408_and_503_sending_the_whole_file_again(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    data = b"x" * 300_000
    url = f"{BASE}/api/v1/files/usb/a.gcode"
    bodies: list[int] = []

    def put(request: httpx.Request) -> httpx.Response:
        bodies.append(len(request.read()))
        return httpx.Response([408, 503, 201][len(bodies) - 1])

    httpx_mock.add_callback(put, url=url, method="PUT", is_reusable=True)
    httpx_mock.add_response(url=url, method="GET", json={**_file("A~1.GCO", "a.gcode"), "size": len(data)})
    progress: list[int] = []
    result = await backend.upload(
        "a.gcode", _source(tmp_path, data), size=len(data), progress=progress.append
    )
    assert bodies == [len(data)] * 3
    assert sum(progress) == len(data)
    assert result.notes == ["sent 3 times"]


async def test_upload_retries_a_dropped_connection(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    url = f"{BASE}/api/v1/files/usb/a.gcode"
    httpx_mock.add_exception(httpx.RemoteProtocolError("peer closed"), url=url, method="PUT")
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json={**_file("A~1.GCO", "a.gcode"), "size": 3})
    assert (await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)).verified


async def test_size_mismatch_after_upload_is_a_verification_error(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    url = f"{BASE}/api/v1/files/usb/a.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json={**_file("A~1.GCO", "a.gcode"), "size": 2})
    with pytest.raises(UploadVerificationError, match="2 bytes") as caught:
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    assert caught.value.retryable


async def test_transfer_in_progress_waits_for_the_printer_then_resends(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    url = f"{BASE}/api/v1/files/usb/a.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=409, text="Another transfer in progress")
    httpx_mock.add_response(url=f"{BASE}/api/v1/transfer", json={"id": 1, "progress": 50})
    httpx_mock.add_response(url=f"{BASE}/api/v1/transfer", status_code=204)
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json={**_file("A~1.GCO", "a.gcode"), "size": 3})
    assert (await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)).verified


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (409, "File is busy", UpstreamConflict, "busy"),
        (409, "File already exists", UpstreamConflict, "exists"),
        (411, "Length required", UpstreamValidation, "Content-Length"),
        (414, "URI Too Long", UpstreamValidation, "168"),
        (415, "Not a GCODE", UpstreamValidation, "printable"),
        (422, "Bad name", UpstreamValidation, "Bad name"),
        (507, "Insufficient storage", UpstreamError, "full"),
        (404, "Not found", UpstreamNotFound, "Not found"),
    ],
)
async def test_upload_status_mapping(
    httpx_mock: HTTPXMock,
    backend: PrusaLinkBackend,
    tmp_path: Path,
    status: int,
    body: str,
    error: type[UpstreamError],
    words: str,
) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/a.gcode", method="PUT", status_code=status, text=body
    )
    with pytest.raises(error, match=words) as caught:
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    assert caught.value.status == status and caught.value.system == "mk4"
    assert not caught.value.retryable


# ------------------------------------------------------------------------------------------- delete / mkdir


async def test_delete_file_by_short_ref_with_api_key(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/APPLE/A~1.GCO", method="DELETE", status_code=204)
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/APPLE/GONE~1.GCO", method="DELETE", status_code=404)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/APPLE/BUSY~1.GCO", method="DELETE", status_code=409, text="File is busy"
    )
    await backend.delete_file(RemoteEntry(path="apple/a.gcode", is_dir=False, ref="APPLE/A~1.GCO"))
    await backend.delete_file(RemoteEntry(path="apple/gone.gcode", is_dir=False, ref="APPLE/GONE~1.GCO"))
    with pytest.raises(UpstreamConflict, match="busy"):
        await backend.delete_file(RemoteEntry(path="apple/busy.gcode", is_dir=False, ref="APPLE/BUSY~1.GCO"))
    assert all(r.headers["X-Api-Key"] == "pw" for r in httpx_mock.get_requests())


async def test_delete_folder_tells_non_empty_from_missing(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    _authed(backend)
    full = f"{BASE}/api/v1/files/usb/FULL"
    gone = f"{BASE}/api/v1/files/usb/GONE"
    httpx_mock.add_response(url=full, method="DELETE", status_code=404)
    httpx_mock.add_response(url=full, method="GET", json=_folder([_file("A~1.GCO", "a.gcode")], "FULL"))
    httpx_mock.add_response(url=gone, method="DELETE", status_code=404)
    httpx_mock.add_response(url=gone, method="GET", status_code=404)
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/EMPTY", method="DELETE", status_code=204)
    with pytest.raises(UpstreamConflict, match="not empty"):
        await backend.delete_folder(RemoteEntry(path="full", is_dir=True, ref="FULL"))
    await backend.delete_folder(RemoteEntry(path="gone", is_dir=True, ref="GONE"))
    await backend.delete_folder(RemoteEntry(path="empty", is_dir=True, ref="EMPTY"))


async def test_make_folder_one_level_at_a_time(httpx_mock: HTTPXMock, backend: PrusaLinkBackend) -> None:
    _authed(backend)
    child = f"{BASE}/api/v1/files/usb/a/b"
    httpx_mock.add_response(url=child, method="PUT", status_code=500, text="Parent folder does not exist")
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/a", method="PUT", status_code=201)
    httpx_mock.add_response(url=child, method="PUT", status_code=201)
    await backend.make_folder("a/b")
    puts = httpx_mock.get_requests(method="PUT")
    assert all(r.headers["Create-Folder"] == "?1" and r.headers["Content-Length"] == "0" for r in puts)


async def test_make_folder_that_exists_is_fine_unless_it_is_a_file(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend
) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/d", method="PUT", status_code=409, text="Already exists"
    )
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/d", method="GET", json=_folder([], "D"))
    await backend.make_folder("d")
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/usb/f.gcode", method="PUT", status_code=409)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/f.gcode", method="GET", json={**_file("F~1.GCO", "f.gcode"), "size": 1}
    )
    with pytest.raises(UpstreamConflict):
        await backend.make_folder("f.gcode")


async def test_download_follows_refs_download(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    httpx_mock.add_response(url=f"{BASE}/usb/APPLE/A~1.GCO", content=b"G28\n" * 1000)
    dest = tmp_path / "a.part"
    entry = RemoteEntry(
        path="apple/a.gcode", is_dir=False, ref="APPLE/A~1.GCO", download_ref="/usb/APPLE/A~1.GCO"
    )
    assert await backend.download(entry, dest) == 4000
    assert dest.read_bytes() == b"G28\n" * 1000


async def test_a_redirect_is_never_taken_for_success(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    _authed(backend)
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/usb/a.gcode",
        method="DELETE",
        status_code=302,
        headers={"Location": "/login?x=1"},
    )
    with pytest.raises(UpstreamError, match="redirected to /login") as caught:
        await backend.delete_file(RemoteEntry(path="a.gcode", is_dir=False))
    assert caught.value.status == 302


Callback = Any  # an async (httpx.Request) -> httpx.Response


async def _size_check(request: httpx.Request) -> httpx.Response:
    """A size check's answer: the file's info, 4 bytes (the size _upload_two's files have)."""
    name = request.url.path.rsplit("/", 1)[1]
    return httpx.Response(200, json={**_file(name.upper(), name), "size": 4})


async def _upload_two(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path, put: Callback, check: Callback
) -> list[Any]:
    """a.gcode and b.gcode (4 bytes each) uploaded at once, as the engine's upload_pipeline does; PUTs answered by
    ``put``, the size checks by ``check``."""
    httpx_mock.add_callback(put, method="PUT", is_reusable=True)
    httpx_mock.add_callback(check, method="GET", is_reusable=True)
    a = backend.upload("a.gcode", _source(tmp_path, b"G1a\n", "a.gcode"), size=4)
    b = backend.upload("b.gcode", _source(tmp_path, b"G1b\n", "b.gcode"), size=4)
    return list(await asyncio.wait_for(asyncio.gather(a, b), 10))


async def test_the_next_put_does_not_wait_for_the_last_files_check(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    """Buddy takes one transfer at a time, but checking the last file is not a transfer: the second file's PUT
    goes out while the first's size check is still unanswered (the engine's upload_pipeline relies on it)."""
    _authed(backend)
    second_put = asyncio.Event()

    async def put(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/b.gcode"):
            second_put.set()
        return httpx.Response(201)

    async def check(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[1]
        if name == "a.gcode":
            await (
                second_put.wait()
            )  # answered only once b's PUT arrived: never, if the lock covered the check
        return httpx.Response(200, json={**_file(name.upper(), name), "size": 4})

    done = await _upload_two(httpx_mock, backend, tmp_path, put, check)
    assert [r.path for r in done] == ["a.gcode", "b.gcode"] and all(r.verified for r in done)
    assert backend.upload_pipeline == 2


async def test_the_next_put_goes_out_before_the_last_files_check(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    """The printer's link is idle from one PUT's answer to the next PUT: the next PUT is sent first, and the
    last file's size check after it (at a farm's file boundary each printer's check would otherwise queue on the
    one event loop before every printer's next PUT)."""
    _authed(backend)

    async def put(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201)

    done = await _upload_two(httpx_mock, backend, tmp_path, put, _size_check)
    assert all(r.verified for r in done)
    sent = [(r.method, r.url.path.rsplit("/", 1)[1]) for r in httpx_mock.get_requests()]
    assert sent == [("PUT", "a.gcode"), ("PUT", "b.gcode"), ("GET", "a.gcode"), ("GET", "b.gcode")]


async def test_the_next_file_is_read_while_the_last_one_is_on_the_wire(
    httpx_mock: HTTPXMock, backend: PrusaLinkBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second upload opens its file and reads its first chunk while it waits for Buddy's one transfer slot,
    so its PUT starts sending the moment the first one is answered (at a farm's file boundary the thread pool is
    busy, and reading only then left the link idle)."""
    from farmsync.gcode.backends import common

    _authed(backend)
    b_read = asyncio.Event()
    real_open = open

    def watching_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith("b.gcode"):
            b_read.set()
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(common, "open", watching_open, raising=False)

    async def put(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/a.gcode"):
            await asyncio.wait_for(b_read.wait(), 5)  # times out if b is only read once a's PUT is answered
        return httpx.Response(201)

    done = await _upload_two(httpx_mock, backend, tmp_path, put, _size_check)
    assert all(r.verified for r in done)
    bodies = {r.url.path.rsplit("/", 1)[1]: r.content for r in httpx_mock.get_requests() if r.method == "PUT"}
    assert bodies == {"a.gcode": b"G1a\n", "b.gcode": b"G1b\n"}


async def test_a_prepared_file_is_closed_when_its_upload_never_starts(tmp_path: Path) -> None:
    from farmsync.gcode.backends.common import FileBody

    body = FileBody(_source(tmp_path, b"G28\n" * 10), 40, chunk_size=16)
    await body.prepare()
    assert body._ready is not None
    handle = body._ready[0]
    body.discard()
    assert handle.closed and body._ready is None
    assert b"".join([chunk async for chunk in body]) == b"G28\n" * 10  # still sendable, from the start


async def test_an_unreadable_file_is_a_local_error_before_the_transfer(tmp_path: Path) -> None:
    from farmsync.gcode.backends.common import FileBody, LocalFileChanged

    with pytest.raises(LocalFileChanged, match="cannot read"):
        await FileBody(tmp_path / "gone.gcode", 4).prepare()
