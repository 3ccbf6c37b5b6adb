"""The Moonraker back end against the fake Moonraker end to end, and the fake's documented behaviour raw."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from farmsync.errors import UpstreamConflict
from farmsync.gcode.backends import RemoteEntry, make_backend
from farmsync.gcode.backends.moonraker import MoonrakerBackend
from farmsync_sim.moonraker import FakeMoonraker


@pytest.fixture
async def backend(fake_moonraker: FakeMoonraker) -> AsyncIterator[MoonrakerBackend]:
    made = make_backend("voron", "moonraker", fake_moonraker.url, api_key="moonraker-key", timeout=10.0)
    assert isinstance(made, MoonrakerBackend)
    yield made
    await made.aclose()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_mirror_operations_end_to_end(
    fake_moonraker: FakeMoonraker, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    fake_moonraker.add_file("old/a.gcode", b"G28\n")
    fake_moonraker.add_file(".thumbs/a-32x32.png", b"png")
    fake_moonraker.add_file("notes.txt", b"not gcode")
    (fake_moonraker.gcodes / "empty").mkdir()
    assert (await backend.status()).idle

    tree = {e.path: e for e in await backend.list_tree()}
    # every file shows (the planner leaves non-G-code alone); Moonraker's own dot folders never do
    assert set(tree) == {"old", "old/a.gcode", "empty", "notes.txt"}
    assert tree["old/a.gcode"].size == 4 and tree["old/a.gcode"].mtime

    data = b"G1 X1 Y1\n" * 20_000
    up = await backend.upload("new dir/sub/b.gcode", _write(tmp_path / "b", data), size=len(data))
    assert up.verified and up.hash == ("sha256", hashlib.sha256(data).hexdigest())
    digest = hashlib.sha256(b"G29\n").hexdigest()
    replaced = await backend.upload("old/a.gcode", _write(tmp_path / "a", b"G29\n"), size=4, sha256=digest)
    assert replaced.verified and fake_moonraker.files["old/a.gcode"].read() == b"G29\n"

    tree = {e.path: e for e in await backend.list_tree()}
    assert {"new dir", "new dir/sub", "new dir/sub/b.gcode"} <= set(tree)
    assert await backend.download(tree["new dir/sub/b.gcode"], tmp_path / "dl") == len(data)
    assert (tmp_path / "dl").read_bytes() == data

    with pytest.raises(UpstreamConflict):
        await backend.delete_folder(tree["new dir/sub"])
    await backend.delete_file(tree["new dir/sub/b.gcode"])
    await backend.delete_folder(tree["new dir/sub"])
    await backend.delete_folder(tree["new dir"])
    await backend.make_folder("x/y/z")
    await backend.make_folder("x/y")
    assert {"x", "x/y", "x/y/z", "empty", "old", ".thumbs"} == fake_moonraker.folders
    stat = await backend.stat("old/a.gcode")
    assert stat is not None and stat.size == 4


async def test_loaded_file_is_protected(
    fake_moonraker: FakeMoonraker, backend: MoonrakerBackend, tmp_path: Path
) -> None:
    fake_moonraker.add_file("job.gcode", b"G28\n")
    fake_moonraker.set_state("printing", "job.gcode")
    assert not (await backend.status()).idle
    with pytest.raises(UpstreamConflict, match="in use"):
        await backend.delete_file(RemoteEntry(path="job.gcode", is_dir=False))
    with pytest.raises(UpstreamConflict, match="loaded"):
        await backend.upload("job.gcode", _write(tmp_path / "j", b"G29\n"), size=4)
    fake_moonraker.set_state("complete")
    assert (await backend.status()).idle
    await backend.delete_file(RemoteEntry(path="job.gcode", is_dir=False))


def test_raw_upload_checksum_auth_and_errors(fake_moonraker: FakeMoonraker) -> None:
    with httpx.Client(base_url=fake_moonraker.url, timeout=5) as client:
        assert client.get("/server/files/list").status_code == 401
        key = {"X-Api-Key": "moonraker-key"}
        files = {"file": ("a.gcode", b"G28\n")}
        bad = client.post("/server/files/upload", headers=key, files=files, data={"checksum": "0" * 64})
        assert bad.status_code == 422 and "checksum" in bad.json()["error"]["message"].lower()
        good = client.post(
            "/server/files/upload",
            headers=key,
            files=files,
            data={"checksum": hashlib.sha256(b"G28\n").hexdigest(), "path": "p/q"},
        )
        assert good.status_code == 201 and good.headers["Location"] == "/server/files/gcodes/p/q/a.gcode"
        assert good.json()["item"] == {
            **good.json()["item"],
            "path": "p/q/a.gcode",
            "root": "gcodes",
            "size": 4,
        }
        listed = client.get("/server/files/list", headers=key).json()["result"]
        assert [item["path"] for item in listed] == ["p/q/a.gcode"]
        missing = client.get("/server/files/directory", params={"path": "gcodes/nope"}, headers=key)
        assert missing.status_code == 400 and "does not exist" in missing.json()["error"]["message"]
        escape = client.post("/server/files/upload", headers=key, files=files, data={"path": "../../etc"})
        assert escape.status_code == 400
        assert (
            client.post("/server/files/directory", headers=key, json={"path": "gcodes/p"}).status_code == 400
        )
