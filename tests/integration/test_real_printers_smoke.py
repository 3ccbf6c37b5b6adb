"""The real printer programs behave as printer-apis.md §3/§4 says, checked with plain httpx.

These pin down the wire facts the G-code back ends rely on (and would catch a changed pin in
tests/printers/requirements-*.txt): OctoPrint's multipart upload, recursive listing with SHA-1 hashes,
folders and recursive delete; PrusaLink 0.8's status shape, digest auth with qop, X-Api-Key, PUT with
``Overwrite: ?1``, one-level listings with sizes, DELETE, the short window after a write in which the
API still shows the old state (inotify lag), and how to make nested folders that PrusaLink will list.
Where 1.11.8/0.8.1 differ from printer-apis.md (OctoPrint's mkdir of an existing folder) the test says so.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.printers.octoprint_server import OctoPrintServer
from tests.printers.prusalink_server import PrusaLinkServer

pytestmark = pytest.mark.printers

GCODE = b"; farmsync smoke test\nG28\nG1 X10 Y10 F3000\n" * 40


def _unique(prefix: str) -> str:
    """A folder name no other test uses (the servers are shared by the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------- OctoPrint


@pytest.fixture
def octo(real_octoprint: OctoPrintServer) -> Iterator[httpx.Client]:
    """Plain httpx with the admin's API key: no farmsync code between the test and OctoPrint."""
    with httpx.Client(
        base_url=real_octoprint.url, headers={"X-Api-Key": real_octoprint.api_key}, timeout=30
    ) as client:
        yield client


def _octo_find(tree: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    for entry in tree:
        if entry["path"] == path:
            return entry
        found = _octo_find(entry.get("children", []), path)
        if found is not None:
            return found
    return None


def _octo_tree(octo: httpx.Client) -> list[dict[str, Any]]:
    response = octo.get("/api/files/local", params={"recursive": "true", "force": "true"})
    assert response.status_code == 200, response.text
    return response.json()["files"]


def test_octoprint_is_operational_and_needs_a_key(
    octo: httpx.Client, real_octoprint: OctoPrintServer
) -> None:
    printer = octo.get("/api/printer")
    assert printer.status_code == 200, printer.text
    assert printer.json()["state"]["text"] == "Operational"
    assert printer.json()["state"]["flags"]["operational"] is True
    assert octo.get("/api/job").json()["state"] == "Operational"

    assert httpx.get(f"{real_octoprint.url}/api/files", timeout=10).status_code == 403
    assert (
        httpx.get(f"{real_octoprint.url}/api/files", headers={"X-Api-Key": "nope"}, timeout=10).status_code
        == 403
    )


def test_octoprint_upload_list_folder_delete(octo: httpx.Client) -> None:
    folder = _unique("smoke")

    made = octo.post("/api/files/local", data={"foldername": folder, "path": ""})
    assert made.status_code == 201, made.text
    # Idempotent in 1.11.8 (add_folder ignores an existing folder); only a G-code-like name gets 409.
    assert octo.post("/api/files/local", data={"foldername": folder, "path": ""}).status_code == 201
    assert octo.post("/api/files/local", data={"foldername": "x.gcode", "path": folder}).status_code == 409

    # Upload into a folder that does not exist yet: OctoPrint creates it.
    up = octo.post(
        "/api/files/local",
        files={"file": ("cube.gcode", GCODE, "application/octet-stream")},
        data={"path": f"{folder}/sub"},
    )
    assert up.status_code == 201, up.text
    assert up.json()["done"] is True
    assert up.json()["files"]["local"]["path"] == f"{folder}/sub/cube.gcode"

    entry = _octo_find(_octo_tree(octo), f"{folder}/sub/cube.gcode")
    assert entry is not None
    assert entry["type"] == "machinecode"
    assert entry["size"] == len(GCODE)
    assert entry["hash"] == hashlib.sha1(GCODE, usedforsecurity=False).hexdigest()
    assert _octo_find(_octo_tree(octo), f"{folder}/sub")["type"] == "folder"  # type: ignore[index]

    # Existing files are overwritten by default; noOverwrite turns that into 409.
    changed = GCODE + b"M84\n"
    again = octo.post(
        "/api/files/local",
        files={"file": ("cube.gcode", changed, "application/octet-stream")},
        data={"path": f"{folder}/sub"},
    )
    assert again.status_code == 201, again.text
    entry = _octo_find(_octo_tree(octo), f"{folder}/sub/cube.gcode")
    assert entry is not None
    assert entry["hash"] == hashlib.sha1(changed, usedforsecurity=False).hexdigest()
    refused = octo.post(
        "/api/files/local",
        files={"file": ("cube.gcode", GCODE, "application/octet-stream")},
        data={"path": f"{folder}/sub", "noOverwrite": "true"},
    )
    assert refused.status_code == 409

    assert octo.delete(f"/api/files/local/{folder}/sub/cube.gcode").status_code == 204
    assert _octo_find(_octo_tree(octo), f"{folder}/sub/cube.gcode") is None
    assert octo.delete(f"/api/files/local/{folder}/sub/cube.gcode").status_code == 404

    # Folders are deleted recursively.
    octo.post(
        "/api/files/local",
        files={"file": ("left.gcode", GCODE, "application/octet-stream")},
        data={"path": folder},
    ).raise_for_status()
    assert octo.delete(f"/api/files/local/{folder}").status_code == 204
    assert _octo_find(_octo_tree(octo), folder) is None


# ---------------------------------------------------------------------------------------------- PrusaLink


@pytest.fixture
def link(real_prusalink: PrusaLinkServer) -> Iterator[httpx.Client]:
    """Plain httpx with PrusaLink's X-Api-Key (digest is exercised separately)."""
    with httpx.Client(
        base_url=real_prusalink.url, headers={"X-Api-Key": real_prusalink.api_key}, timeout=30
    ) as client:
        yield client


def _put(link: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return link.put(
        f"/api/v1/files/local/{path}", content=body, headers={"Content-Type": "text/x.gcode", **headers}
    )


def _wait_head(link: httpx.Client, path: str, want: int = 200, timeout: float = 10.0) -> list[int]:
    """HEAD until the entry's status is ``want``; return every status seen.

    PrusaLink's file view follows the disk through inotify, so for a moment after a PUT, mkdir or DELETE
    the API still answers with the old state (404 for a new entry, 200 for a deleted one).
    """
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(link.head(f"/api/v1/files/local/{path}").status_code)
        if seen[-1] == want:
            break
        time.sleep(0.05)
    return seen


def test_prusalink_status_is_idle_with_storage_list(link: httpx.Client) -> None:
    status = link.get("/api/v1/status")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["printer"]["state"] == "IDLE"
    storages = {s["path"]: s for s in body["storage"]}  # a list on 0.8 (Buddy sends one object)
    assert storages["/local"]["read_only"] is False
    assert storages["/sdcard"]["read_only"] is True


def test_prusalink_auth_digest_with_qop_and_api_key(real_prusalink: PrusaLinkServer) -> None:
    url = f"{real_prusalink.url}/api/v1/status"
    challenge = httpx.get(url, timeout=10)
    assert challenge.status_code == 401
    www = challenge.headers["WWW-Authenticate"]
    assert www.startswith("Digest ")
    assert 'realm="Administrator"' in www
    assert 'qop="auth"' in www
    assert "opaque=" in www

    ok = httpx.get(url, auth=httpx.DigestAuth(real_prusalink.username, real_prusalink.password), timeout=10)
    assert ok.status_code == 200
    assert ok.http_version == "HTTP/1.0"  # no keep-alive on this server
    assert (
        httpx.get(url, auth=httpx.DigestAuth(real_prusalink.username, "wrong"), timeout=10).status_code == 401
    )

    assert httpx.get(url, headers={"X-Api-Key": real_prusalink.api_key}, timeout=10).status_code == 200
    assert httpx.get(url, headers={"X-Api-Key": "wrong"}, timeout=10).status_code == 403


def test_prusalink_put_overwrite_list_delete(link: httpx.Client, real_prusalink: PrusaLinkServer) -> None:
    folder = _unique("smoke")
    path = f"{folder}/sub/cube.gcode"

    created = _put(link, path, GCODE)  # parents are created on the fly
    assert created.status_code == 201, created.text
    assert _wait_head(link, path)[-1] == 200
    assert (real_prusalink.gcode_dir / path).read_bytes() == GCODE
    assert (
        httpx.head(f"{real_prusalink.url}/api/v1/files/local/{path}", timeout=10).status_code == 200
    )  # no auth

    assert _put(link, path, GCODE).status_code == 409  # exists
    assert _put(link, path, GCODE, Overwrite="true").status_code == 409  # only ?1 means yes
    changed = GCODE + b"M84\n"
    assert _put(link, path, changed, Overwrite="?1").status_code == 201

    # Wire rules for uploads: only G-code content types, and a Content-Length (no chunking).
    assert _put(link, f"{folder}/x.gcode", GCODE, **{"Content-Type": "text/plain"}).status_code == 415
    chunked = link.put(
        f"/api/v1/files/local/{folder}/y.gcode",
        content=iter([GCODE]),
        headers={"Content-Type": "text/x.gcode"},
    )
    assert chunked.status_code == 411
    assert link.put(f"/api/v1/files/local/{folder}/empty", headers={"Create-Folder": "?1"}).status_code == 201
    assert _wait_head(link, f"{folder}/empty")[-1] == 200  # new folders lag behind too

    # Listings are one level deep; children carry sizes (a folder's is the total of its contents).
    top = link.get(f"/api/v1/files/local/{folder}")
    assert top.status_code == 200, top.text
    children = {c["name"]: c for c in top.json()["children"]}
    assert set(children) == {"sub", "empty"}
    assert children["sub"]["type"] == "FOLDER"
    assert "children" not in children["sub"]
    assert children["sub"]["size"] == len(changed)
    assert children["empty"]["size"] == 0
    assert "ETag" in top.headers

    sub = link.get(f"/api/v1/files/local/{folder}/sub").json()
    [file] = sub["children"]
    assert file["name"] == file["display_name"] == "cube.gcode"  # long names, no 8.3 names
    assert file["type"] == "PRINT_FILE"
    assert file["size"] == len(changed)
    assert file["read_only"] is False
    assert file["refs"]["download"].endswith(f"/{path}/raw")

    # DELETE: a non-empty folder needs Force; files go with 204; the read-only SD card refuses.
    assert link.delete(f"/api/v1/files/local/{folder}/sub").status_code == 409
    assert link.delete(f"/api/v1/files/local/{path}").status_code == 204
    assert not (real_prusalink.gcode_dir / path).exists()
    assert _wait_head(link, path, want=404)[-1] == 404
    assert link.delete(f"/api/v1/files/local/{folder}/sub").status_code == 204  # empty now
    assert _wait_head(link, f"{folder}/sub", want=404)[-1] == 404
    assert link.delete(f"/api/v1/files/local/{folder}", headers={"Force": "?1"}).status_code == 204
    assert _wait_head(link, folder, want=404)[-1] == 404
    assert link.delete("/api/v1/files/sdcard/anything.gcode").status_code == 409


def test_prusalink_new_file_is_404_until_inotify_catches_up(link: httpx.Client) -> None:
    """Right after PUT 201 the file may still be 404 for a moment; it must show within seconds."""
    path = f"{_unique('lag')}/fresh.gcode"
    assert _put(link, path, GCODE).status_code == 201
    seen = _wait_head(link, path, timeout=10)
    assert seen[-1] == 200, f"never visible: {seen}"
    assert set(seen[:-1]) <= {404}, seen
    link.delete(f"/api/v1/files/local/{path.split('/')[0]}", headers={"Force": "?1"}).raise_for_status()


def test_prusalink_deep_new_folders_show_when_made_one_level_at_a_time(
    link: httpx.Client, real_prusalink: PrusaLinkServer
) -> None:
    """The way to get a file into new nested folders that PrusaLink 0.8.1 actually lists.

    When one request creates several folder levels (a PUT's automatic parents, ``Create-Folder`` with a
    nested path, or back-to-back mkdirs), PrusaLink's inotify watcher can miss the deeper folders: the
    files are on disk but answer 404 and never appear in listings until PrusaLink restarts. Creating each
    level with ``Create-Folder: ?1`` and waiting until it shows before making the next one avoids that.
    """
    root = _unique("deep")
    levels = [root, f"{root}/a", f"{root}/a/b", f"{root}/a/b/c"]
    for level in levels:
        assert link.put(f"/api/v1/files/local/{level}", headers={"Create-Folder": "?1"}).status_code == 201
        assert _wait_head(link, level)[-1] == 200, f"{level} never showed"
    path = f"{levels[-1]}/deep.gcode"
    assert _put(link, path, GCODE).status_code == 201
    assert _wait_head(link, path)[-1] == 200
    assert (real_prusalink.gcode_dir / path).read_bytes() == GCODE
    [child] = link.get(f"/api/v1/files/local/{levels[-1]}").json()["children"]
    assert child["size"] == len(GCODE)
    assert link.delete(f"/api/v1/files/local/{root}", headers={"Force": "?1"}).status_code == 204
