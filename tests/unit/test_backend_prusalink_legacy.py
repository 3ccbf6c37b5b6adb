"""PrusaLink 0.8 (MK3 + Raspberry Pi): list storage, digest with qop/MD5-sess, the inotify view's lag, Force.

:class:`Link08` models what the real 0.8.1 does with its file view (printer-apis.md §3 and the back end's
docstring): the disk changes at once, the view one inotify pass later, and nothing made inside a folder before its
watch exists ever reaches the view. Here one ``sleep`` of the back end is one inotify pass.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.errors import (
    ConfigError,
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
    UpstreamValidation,
)
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


class Link08:
    """PrusaLink 0.8.1's v1 file API over a disk and a lagging, inotify-fed view (sizes; None for a folder)."""

    def __init__(self) -> None:
        self.disk: dict[str, int | None] = {}
        self.view: dict[str, int | None] = {}
        self.watched: set[str] = {""}
        self.events: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.unlink_fails: set[str] = set()
        self.passes = 0

    def inotify_pass(self) -> None:
        """Apply the queued events: what they name gets into (or out of) the view, a new folder gets a watch."""
        self.passes += 1
        events, self.events = self.events, []
        for kind, path in events:
            if kind == "delete":
                self.view.pop(path, None)
                self.watched.discard(path)
            elif path in self.disk:
                self.view[path] = self.disk[path]
                if self.disk[path] is None:
                    self.watched.add(path)

    def _changed(self, kind: str, path: str) -> None:
        if path.rpartition("/")[0] in self.watched:  # no watch on the parent yet: the event never comes
            self.events.append((kind, path))

    def _mkdirs(self, path: str) -> bool:
        """mkdir -p; False when a file is in the way (PrusaLink then answers a bare 500)."""
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            level = "/".join(parts[:depth])
            if level not in self.disk:
                self.disk[level] = None
                self._changed("create", level)
            elif self.disk[level] is not None:
                return False
        return True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self._answer(request)
        self.requests.append((request.method, self._path(request), response.status_code))
        return response

    @staticmethod
    def _path(request: httpx.Request) -> str:
        return unquote(request.url.path.removeprefix("/api/v1/files/local").strip("/"))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = self._path(request)
        if request.method == "HEAD":
            return httpx.Response(200 if path == "" or path in self.view else 404)
        if request.method == "GET":
            if path not in self.view and path != "":
                return httpx.Response(404)
            if path == "" or self.view[path] is None:
                children = [
                    {**_file(p.rpartition("/")[2], size)}
                    if size is not None
                    else _folder(p.rpartition("/")[2])
                    for p, size in sorted(self.view.items())
                    if p.rpartition("/")[0] == path
                ]
                return httpx.Response(200, json={"type": "FOLDER", "name": path, "children": children})
            return httpx.Response(200, json=_file(path.rpartition("/")[2], self.view[path]))
        if request.method == "PUT" and request.headers.get("Create-Folder") == "?1":
            return httpx.Response(201 if self._mkdirs(path) else 500)
        if request.method == "PUT":
            if not self._mkdirs(path.rpartition("/")[0]) if "/" in path else False:
                return httpx.Response(500)
            existed = path in self.disk
            self.disk[path] = len(request.read())
            self._changed("modify" if existed else "create", path)
            return httpx.Response(201)
        if request.method == "DELETE":
            if path not in self.view:
                return httpx.Response(404, text="Not Found")
            if path not in self.disk or path in self.unlink_fails:  # unlink() raises: a bare 500
                return httpx.Response(500, text="<html>500 - Internal Server Error</html>")
            del self.disk[path]
            self._changed("delete", path)
            return httpx.Response(204)
        return httpx.Response(405)


def _folder(name: str) -> dict[str, Any]:
    return {"name": name, "display_name": name, "type": "FOLDER", "read_only": False, "size": 0}


@pytest.fixture
def link(httpx_mock: HTTPXMock) -> Link08:
    fake = Link08()
    httpx_mock.add_callback(fake, is_reusable=True)
    return fake


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
async def on_link(link: Link08, slept: list[float]) -> Any:
    """A back end whose every sleep lets the fake's inotify loop run once."""

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        link.inotify_pass()

    made = PrusaLinkLegacyBackend("mk3", BASE, api_key="key", sleep=sleep, timeout=5.0)
    yield made
    await made.aclose()


def test_needs_credentials() -> None:
    with pytest.raises(ConfigError):
        PrusaLinkLegacyBackend("mk3", BASE, username="maker")


async def test_status_reads_the_storage_list(httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/status",
        json={
            "printer": {"state": "IDLE"},
            "storage": [
                {"path": "/local", "name": "PrusaLink gcodes", "read_only": False, "free_space": 1},
                {"path": "/sdcard", "name": "SD Card", "read_only": True},
            ],
        },
        match_headers={"X-Api-Key": "key"},
    )
    status = await backend.status()
    assert status.idle and status.state == "IDLE"
    assert status.detail == "storages: local, sdcard"  # by path: 0.8.1's names are labels


@pytest.mark.parametrize(
    ("storages", "missing"),
    [
        ([{"path": "/local", "name": "PrusaLink gcodes"}], False),
        ([{"name": "local"}], False),  # the name alone, as the spec's examples have it
        ([{"path": "/usb/", "name": "usb"}], True),  # an object, as Buddy sends it
        ([{"path": "/sdcard", "name": "SD Card"}], True),
    ],
)
async def test_status_finds_the_configured_storage_by_path_or_name(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend, storages: list[dict[str, str]], missing: bool
) -> None:
    payload: Any = storages[0] if storages[0].get("path") == "/usb/" else storages
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/status", json={"printer": {"state": "IDLE"}, "storage": payload}
    )
    detail = (await backend.status()).detail
    assert ("configured storage 'local' is missing" in detail) is missing


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
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/sub", method="HEAD")  # the folder is there
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
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/a", method="HEAD")
    httpx_mock.add_response(
        url=f"{BASE}/api/v1/files/local/a/b",
        method="PUT",
        status_code=201,
        match_headers={"Create-Folder": "?1"},
    )
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/a/b", method="HEAD")
    await backend.make_folder("a/b")


# ------------------------------------------------------------------ the inotify view (Link08)


async def test_upload_makes_new_folders_one_visible_level_at_a_time(
    link: Link08, on_link: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    """One PUT making three folders leaves the file on disk but never in the view; level by level works."""
    result = await on_link.upload("a/b/c/x.gcode", _source(tmp_path, b"G28"), size=3)
    assert result.verified
    assert link.view == {"a": None, "a/b": None, "a/b/c": None, "a/b/c/x.gcode": 3}
    writes = [(m, p) for m, p, _ in link.requests if m == "PUT"]
    assert writes == [("PUT", "a"), ("PUT", "a/b"), ("PUT", "a/b/c"), ("PUT", "a/b/c/x.gcode")]
    for level in ("a", "a/b", "a/b/c"):  # each level was seen in the view before anything went inside it
        made = link.requests.index(("PUT", level, 201))
        inside = next(
            i for i, (m, p, _) in enumerate(link.requests) if m == "PUT" and p.startswith(level + "/")
        )
        assert ("HEAD", level, 200) in link.requests[made:inside]


async def test_make_folder_of_a_nested_path_goes_level_by_level(
    link: Link08, on_link: PrusaLinkLegacyBackend
) -> None:
    await on_link.make_folder("a/b/c")
    assert link.view == {"a": None, "a/b": None, "a/b/c": None}
    await on_link.make_folder("a/b/c")  # idempotent: 0.8.1 answers 201 for an existing folder
    assert link.view == {"a": None, "a/b": None, "a/b/c": None}


async def test_folders_listed_or_made_need_no_check_before_a_put(
    link: Link08, on_link: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    link.disk, link.view = {"old": None}, {"old": None}
    link.watched.add("old")
    await on_link.list_tree()
    await on_link.upload("old/x.gcode", _source(tmp_path, b"G28"), size=3)
    await on_link.upload("new/x.gcode", _source(tmp_path, b"G28"), size=3)
    before_second = len(link.requests)
    await on_link.upload("new/y.gcode", _source(tmp_path, b"G28"), size=3)
    assert "old" not in [p for m, p, _ in link.requests if m == "HEAD"]
    assert link.requests[before_second][0] == "PUT"  # straight to the upload, no HEAD


async def test_a_folder_the_view_missed_is_reported_not_written_into(
    link: Link08, on_link: PrusaLinkLegacyBackend, slept: list[float], tmp_path: Path
) -> None:
    """Left over from an older upload: on disk, not in the view. Writing into it would hide the file too."""
    link.disk = {"a": None, "a/lost": None}
    link.view = {"a": None}
    link.watched.add("a")
    with pytest.raises(UpstreamError, match="restarting PrusaLink") as caught:
        await on_link.upload("a/lost/x.gcode", _source(tmp_path, b"G28"), size=3)
    assert "a/lost" in str(caught.value)
    assert ("PUT", "a/lost/x.gcode") not in [(m, p) for m, p, _ in link.requests]
    assert 4.0 <= sum(slept) <= 6.0


async def test_make_folder_over_a_file_is_a_conflict(link: Link08, on_link: PrusaLinkLegacyBackend) -> None:
    link.disk, link.view = {"x.gcode": 3}, {"x.gcode": 3}
    with pytest.raises(UpstreamConflict, match="file with that name"):
        await on_link.make_folder("x.gcode")


async def test_replace_waits_while_the_old_size_is_reported(
    link: Link08, on_link: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    link.disk, link.view = {"a.gcode": 5}, {"a.gcode": 5}
    result = await on_link.upload("a.gcode", _source(tmp_path, b"G28\nM84\n"), size=8)
    assert result.verified and result.size == 8 and link.view["a.gcode"] == 8
    checks = [p for m, p, _ in link.requests if m == "GET"]
    assert len(checks) >= 2  # the first answer (the old size) did not count


async def test_verification_fails_when_the_size_stays_wrong(
    httpx_mock: HTTPXMock, tmp_path: Path, slept: list[float]
) -> None:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backend = PrusaLinkLegacyBackend("mk3", BASE, api_key="key", sleep=sleep)
    url = f"{BASE}/api/v1/files/local/a.gcode"
    httpx_mock.add_response(url=url, method="PUT", status_code=201)
    httpx_mock.add_response(url=url, method="GET", json=_file("a.gcode", 5), is_reusable=True)
    with pytest.raises(UploadVerificationError, match=r"holds 5 bytes .* 3 were sent"):
        await backend.upload("a.gcode", _source(tmp_path, b"G28"), size=3)
    await backend.aclose()
    assert 4.0 <= sum(slept) <= 6.0


async def test_delete_again_while_the_view_lags_is_not_an_error(
    link: Link08, on_link: PrusaLinkLegacyBackend
) -> None:
    """The second DELETE finds the file in the view but not on disk: 500 until the view catches up."""
    link.disk = {"a.gcode": 3}
    link.view = {"a.gcode": 3}
    entry = RemoteEntry(path="a.gcode", is_dir=False)
    await on_link.delete_file(entry)
    await on_link.delete_file(entry)
    assert [s for m, _, s in link.requests if m == "DELETE"] == [204, 500]
    assert "a.gcode" not in link.view
    await on_link.delete_file(entry)  # and once the view has caught up: 404, also fine
    assert link.requests[-1] == ("DELETE", "a.gcode", 404)


async def test_delete_folder_again_while_the_view_lags_is_not_an_error(
    link: Link08, on_link: PrusaLinkLegacyBackend
) -> None:
    link.disk = {"d": None}
    link.view = {"d": None}
    entry = RemoteEntry(path="d", is_dir=True)
    await on_link.delete_folder(entry)
    await on_link.delete_folder(entry)
    assert [s for m, _, s in link.requests if m == "DELETE"] == [204, 500]


async def test_a_500_on_delete_stands_when_the_file_stays(
    link: Link08, on_link: PrusaLinkLegacyBackend, slept: list[float]
) -> None:
    link.disk = {"a.gcode": 3}
    link.view = {"a.gcode": 3}
    link.unlink_fails.add("a.gcode")
    with pytest.raises(UpstreamUnavailable) as caught:
        await on_link.delete_file(RemoteEntry(path="a.gcode", is_dir=False))
    assert caught.value.status == 500
    assert 4.0 <= sum(slept) <= 6.0


# ------------------------------------------------------------------ listing ETags (whole seconds)


def _listing_headers(served: str, changed: str) -> dict[str, str]:
    return {
        "ETag": 'W/"e1"',
        "Date": f"Sun, 22 Nov 2026 {served} GMT",
        "Last-Modified": f"Sun, 22 Nov 2026 {changed} GMT",
    }


async def test_listing_from_the_second_of_a_change_is_not_revalidated(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    """The ETag is Last-Modified to the second: a change later in that second would still get a 304."""
    root = f"{BASE}/api/v1/files/local"
    httpx_mock.add_response(
        url=root,
        json={"type": "FOLDER", "children": [_file("a.gcode", 3)]},
        headers=_listing_headers("10:00:05", "10:00:05"),
    )
    httpx_mock.add_response(url=root, json={"type": "FOLDER", "children": [_file("a.gcode", 8)]})
    assert (await backend.list_tree())[0].size == 3
    assert (await backend.list_tree())[0].size == 8
    assert "If-None-Match" not in httpx_mock.get_requests()[1].headers
    assert backend.listing_cache == {}


async def test_listing_served_after_the_last_change_is_revalidated(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    root = f"{BASE}/api/v1/files/local"
    httpx_mock.add_response(
        url=root,
        json={"type": "FOLDER", "children": [_file("a.gcode", 3)]},
        headers=_listing_headers("10:00:06", "10:00:05"),
    )
    httpx_mock.add_response(url=root, status_code=304, match_headers={"If-None-Match": 'W/"e1"'})
    assert (await backend.list_tree())[0].size == 3
    assert (await backend.list_tree())[0].size == 3


async def test_download_uses_the_printers_link(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend, tmp_path: Path
) -> None:
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/a.gcode/raw", content=b"G28\n")
    entry = RemoteEntry(path="a.gcode", is_dir=False, download_ref="/api/v1/files/local/a.gcode/raw")
    assert await backend.download(entry, tmp_path / "x") == 4


async def test_a_folder_deleted_between_two_listings_is_left_out(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    """The parent's listing (the view a moment ago) names ``a/gone``; by the time it is listed, it is 404."""
    root = f"{BASE}/api/v1/files/local"
    httpx_mock.add_response(url=root, json={"type": "FOLDER", "children": [_folder("a")]})
    httpx_mock.add_response(
        url=f"{root}/a", json={"type": "FOLDER", "children": [_folder("gone"), _file("keep.gcode", 3)]}
    )
    httpx_mock.add_response(url=f"{root}/a/gone", status_code=404, text="File Not Found")
    assert [e.path for e in await backend.list_tree()] == ["a", "a/keep.gcode"]


async def test_listing_a_missing_root_is_still_not_found(
    httpx_mock: HTTPXMock, backend: PrusaLinkLegacyBackend
) -> None:
    httpx_mock.add_response(url=f"{BASE}/api/v1/files/local/nope", status_code=404, text="File Not Found")
    with pytest.raises(UpstreamNotFound):
        await backend.list_tree("nope")
