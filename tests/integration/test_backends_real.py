"""The OctoPrint and PrusaLink-legacy back ends, end to end against the real programs on loopback.

Unit tests check the back ends against recorded shapes; these check them against OctoPrint 1.11.8 and
PrusaLink 0.8.1 themselves: status, recursive listing, nested upload, replace, download, file and folder
deletes, made through :func:`farmsync.gcode.backends.make_backend` exactly as printers.yml entries would be.
PrusaLink is driven with both of its auth modes (X-Api-Key and digest with qop/MD5-sess).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from farmsync.errors import UpstreamAuthError, UpstreamError
from farmsync.gcode.backends import Kind, PrinterBackend, RemoteEntry, make_backend
from tests.printers.octoprint_server import OctoPrintServer
from tests.printers.prusalink_server import PrusaLinkServer

pytestmark = pytest.mark.printers


@dataclass(frozen=True)
class Target:
    """How to build one back end against one running server."""

    kind: Kind
    auth: str  # "api_key" or "digest"
    idle_state: str


TARGETS = {
    "octoprint": Target(Kind.OCTOPRINT, "api_key", "Operational"),
    "prusalink-legacy-apikey": Target(Kind.PRUSALINK_LEGACY, "api_key", "IDLE"),
    "prusalink-legacy-digest": Target(Kind.PRUSALINK_LEGACY, "digest", "IDLE"),
}


def _build(
    target: Target, octoprint: OctoPrintServer | None, prusalink: PrusaLinkServer | None, **overrides: str
) -> PrinterBackend:
    if target.kind is Kind.OCTOPRINT:
        assert octoprint is not None
        settings = {"host": octoprint.url, "api_key": octoprint.api_key}
    else:
        assert prusalink is not None
        settings = {"host": prusalink.url}
        if target.auth == "digest":
            settings |= {"username": prusalink.username, "password": prusalink.password}
        else:
            settings |= {"api_key": prusalink.api_key}
    settings |= overrides
    return make_backend(f"real-{target.kind.value}", target.kind, timeout=30.0, **settings)  # type: ignore[arg-type]


@pytest.fixture(params=list(TARGETS), ids=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    return TARGETS[request.param]


@pytest.fixture
def server_for(
    request: pytest.FixtureRequest, target: Target
) -> tuple[OctoPrintServer | None, PrusaLinkServer | None]:
    """Only the server this parameter needs (both fixtures are session-wide; they launch together)."""
    if target.kind is Kind.OCTOPRINT:
        return request.getfixturevalue("real_octoprint"), None
    return None, request.getfixturevalue("real_prusalink")


@pytest.fixture
async def backend(
    target: Target, server_for: tuple[OctoPrintServer | None, PrusaLinkServer | None]
) -> AsyncIterator[PrinterBackend]:
    made = _build(target, *server_for)
    try:
        yield made
    finally:
        await made.aclose()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """PrusaLink's view of the disk follows inotify, so a listing may lag a delete by a moment."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still not true after {timeout:.0f} s")
        await asyncio.sleep(0.1)


def _by_path(entries: list[RemoteEntry]) -> dict[str, RemoteEntry]:
    return {e.path: e for e in entries}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_status_is_idle(backend: PrinterBackend, target: Target) -> None:
    status = await backend.status()
    assert status.state == target.idle_state
    assert status.idle is True
    assert "missing" not in status.detail  # the configured storage (local) is there


async def test_mirror_operations_end_to_end(backend: PrinterBackend, target: Target, tmp_path: Path) -> None:
    root = f"e2e-{uuid.uuid4().hex[:8]}"
    first = b"; first\nG28\nG1 X5 Y5\n" * 50
    second = b"; second, longer\nG28\nG1 X50 Y50 F6000\nM84\n" * 70
    nested = b"; nested\nG28\n" * 30

    await backend.make_folder(root)
    await backend.make_folder(root)  # idempotent

    # Upload into folders that do not exist yet: the back end (or the printer) creates the parents.
    deep = await backend.upload(
        f"{root}/sub/deeper/b.gcode", _write(tmp_path / "b.gcode", nested), size=len(nested)
    )
    assert deep.verified and deep.size == len(nested)
    up = await backend.upload(f"{root}/a.gcode", _write(tmp_path / "a1.gcode", first), size=len(first))
    assert up.verified and up.size == len(first)
    if target.kind is Kind.OCTOPRINT:
        assert up.hash == ("sha1", hashlib.sha1(first, usedforsecurity=False).hexdigest())

    tree = _by_path(await backend.list_tree(root))
    assert set(tree) == {f"{root}/a.gcode", f"{root}/sub", f"{root}/sub/deeper", f"{root}/sub/deeper/b.gcode"}
    assert tree[f"{root}/sub"].is_dir and tree[f"{root}/sub/deeper"].is_dir
    assert not tree[f"{root}/a.gcode"].is_dir
    assert tree[f"{root}/a.gcode"].size == len(first)
    assert tree[f"{root}/sub/deeper/b.gcode"].size == len(nested)
    assert not tree[f"{root}/a.gcode"].read_only
    whole = _by_path(await backend.list_tree())
    assert f"{root}/sub/deeper/b.gcode" in whole and root in whole

    # Replace with different content and size.
    replaced = await backend.upload(
        f"{root}/a.gcode", _write(tmp_path / "a2.gcode", second), size=len(second)
    )
    assert replaced.verified and replaced.size == len(second)
    entry = _by_path(await backend.list_tree(root))[f"{root}/a.gcode"]
    assert entry.size == len(second)
    if target.kind is Kind.OCTOPRINT:
        assert entry.hash == ("sha1", hashlib.sha1(second, usedforsecurity=False).hexdigest())
    assert await backend.stat(f"{root}/a.gcode") is not None
    assert await backend.stat(f"{root}/missing.gcode") is None

    # Download what the printer holds.
    dest = tmp_path / "download.part"
    assert await backend.download(entry, dest) == len(second)
    assert dest.read_bytes() == second

    # Delete a file, then the emptied folders bottom-up, then the rest.
    await backend.delete_file(tree[f"{root}/sub/deeper/b.gcode"])

    async def b_gone() -> bool:
        return f"{root}/sub/deeper/b.gcode" not in _by_path(await backend.list_tree(root))

    await _eventually(b_gone, "deleted file still listed")
    await backend.delete_folder(tree[f"{root}/sub/deeper"])
    await backend.delete_folder(tree[f"{root}/sub"])
    await backend.delete_file(entry)

    async def root_empty() -> bool:
        return await backend.list_tree(root) == []

    await _eventually(root_empty, "folder not empty after deletes")
    await backend.delete_folder(_by_path(await backend.list_tree())[root])

    async def root_gone() -> bool:
        return not any(e.path == root or e.path.startswith(root + "/") for e in await backend.list_tree())

    await _eventually(root_gone, "root folder still listed")


async def test_wrong_credentials_are_an_auth_error(
    target: Target, server_for: tuple[OctoPrintServer | None, PrusaLinkServer | None]
) -> None:
    bad = {"password": "wrong"} if target.auth == "digest" else {"api_key": "wrong-key"}
    backend = _build(target, *server_for, **bad)
    try:
        with pytest.raises(UpstreamAuthError):
            await backend.list_tree()
    finally:
        await backend.aclose()


async def test_prusalink_sdcard_storage_is_read_only(real_prusalink: PrusaLinkServer, tmp_path: Path) -> None:
    backend = _build(TARGETS["prusalink-legacy-apikey"], None, real_prusalink, storage="sdcard")
    try:
        assert await backend.list_tree() == []  # the fake MK3S has an empty SD card
        source = _write(tmp_path / "x.gcode", b"G28\n")
        with pytest.raises(UpstreamError):
            await backend.upload("x.gcode", source, size=4)
        assert not (real_prusalink.gcode_dir / "x.gcode").exists()
    finally:
        await backend.aclose()
