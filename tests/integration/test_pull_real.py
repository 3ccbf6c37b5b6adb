"""``run_pull`` against the real programs: OctoPrint 1.11.8 and PrusaLink 0.8.1 on loopback.

Files are put on the printers with the real back ends, under a folder of their own (the servers are shared by
the whole session), then pulled through each program's own download route (``refs.download``).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from farmsync.gcode.backends.base import PrinterBackend
from farmsync.gcode.cli import default_backend_factory
from farmsync.gcode.config import PrinterConfig
from farmsync.gcode.engine import MirrorOptions
from farmsync.gcode.pull import run_pull
from farmsync.gcode.pull_report import PullResult
from tests.fixtures.manifest import MemoryManifestStore
from tests.printers.octoprint_server import OctoPrintServer
from tests.printers.prusalink_server import PrusaLinkServer

pytestmark = pytest.mark.printers

SAME = b"; on both printers\nG28\nG1 X1 Y1\n" * 40
CLASH_OCTO = b"; clash from octoprint\nG28\n" * 30
CLASH_MK3 = b"; clash from prusalink\nG28\n" * 30  # same size, other bytes


@pytest.fixture
def configs(real_octoprint: OctoPrintServer, real_prusalink: PrusaLinkServer) -> list[PrinterConfig]:
    return [
        PrinterConfig.model_validate(
            {
                "name": "Octo",
                "kind": "octoprint",
                "host": real_octoprint.url,
                "api_key": real_octoprint.api_key,
            }
        ),
        PrinterConfig.model_validate(
            {
                "name": "MK3",
                "kind": "prusalink-legacy",
                "host": real_prusalink.url,
                "username": real_prusalink.username,
                "password": real_prusalink.password,
            }
        ),
    ]


@pytest.fixture
async def backends(configs: list[PrinterConfig]) -> AsyncIterator[dict[str, PrinterBackend]]:
    made = {c.name: default_backend_factory(c) for c in configs}
    try:
        yield made
    finally:
        for backend in made.values():
            await backend.aclose()


async def put(backend: PrinterBackend, path: str, data: bytes, tmp_path: Path) -> None:
    local = tmp_path / "upload" / uuid.uuid4().hex
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    await backend.upload(path, local, size=len(data))


async def remove_tree(backend: PrinterBackend, root: str) -> None:
    with contextlib.suppress(Exception):
        entries = await backend.list_tree(root)
        for entry in sorted(entries, key=lambda e: (e.is_dir, -e.path.count("/"))):
            with contextlib.suppress(Exception):
                await (backend.delete_folder(entry) if entry.is_dir else backend.delete_file(entry))


async def test_pull_from_octoprint_and_prusalink(configs, backends, tmp_path):
    root = f"pull-{uuid.uuid4().hex[:8]}"
    octo, mk3 = backends["Octo"], backends["MK3"]
    await put(octo, f"{root}/octo-only.gcode", b"; sliced for octoprint\nG28\n" * 20, tmp_path)
    await put(mk3, f"{root}/sub/mk3-only.gcode", b"; uploaded on the MK3\nG28\n" * 25, tmp_path)
    for backend in (octo, mk3):
        await put(backend, f"{root}/same.gcode", SAME, tmp_path)
    await put(octo, f"{root}/clash.gcode", CLASH_OCTO, tmp_path)
    await put(mk3, f"{root}/clash.gcode", CLASH_MK3, tmp_path)
    master = tmp_path / "master"
    master.mkdir()
    try:
        options = MirrorOptions(dry_run=False, destination=root)
        report = await run_pull(configs, master, options, default_backend_factory, MemoryManifestStore())
    finally:
        for backend in (octo, mk3):
            await remove_tree(backend, root)

    got = {(p.name, f.path): f.result for p in report.printers for f in p.files}
    assert got[("Octo", f"{root}/octo-only.gcode")] is PullResult.PULLED
    assert got[("MK3", f"{root}/sub/mk3-only.gcode")] is PullResult.PULLED
    assert {got[("Octo", f"{root}/same.gcode")], got[("MK3", f"{root}/same.gcode")]} == {
        PullResult.PULLED,
        PullResult.SKIPPED,
    }
    assert (master / "octo-only.gcode").read_bytes() == b"; sliced for octoprint\nG28\n" * 20
    assert (master / "sub/mk3-only.gcode").read_bytes() == b"; uploaded on the MK3\nG28\n" * 25
    assert (master / "same.gcode").read_bytes() == SAME
    assert not (master / "clash.gcode").exists()
    (conflict,) = report.conflicts
    assert conflict.target == "clash.gcode"
    assert {(c.where, c.size, c.sha256) for c in conflict.copies} == {
        ("Octo", len(CLASH_OCTO), hashlib.sha256(CLASH_OCTO).hexdigest()),
        ("MK3", len(CLASH_MK3), hashlib.sha256(CLASH_MK3).hexdigest()),
    }
    assert report.exit_code == 2
    assert not list(master.rglob("*.farmsync-part"))
