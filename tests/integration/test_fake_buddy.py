"""The Buddy back end against the fake Buddy printer end to end, and the fake's own quirks checked raw."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import requests
from requests.auth import HTTPDigestAuth

from farmsync.errors import UpstreamConflict
from farmsync.gcode.backends import RemoteEntry, make_backend
from farmsync.gcode.backends.digest import DigestAuth
from farmsync.gcode.backends.prusalink import PrusaLinkBackend
from farmsync_sim.buddy import FakeBuddy, short_name
from tests.fixtures.printers_fake import FakeBuddyFactory

PW = "pw-8101"


def _backend(printer: FakeBuddy, **kwargs: object) -> PrusaLinkBackend:
    backend = make_backend("mk4", "prusalink", printer.url, password=printer.password, timeout=10.0, **kwargs)
    assert isinstance(backend, PrusaLinkBackend)
    return backend


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _paths(entries: list[RemoteEntry]) -> set[str]:
    return {e.path for e in entries}


@pytest.fixture
def printer(fake_buddy: FakeBuddyFactory) -> FakeBuddy:
    return fake_buddy(password=PW)


@pytest.fixture
async def backend(printer: FakeBuddy) -> AsyncIterator[PrusaLinkBackend]:
    made = _backend(printer)
    yield made
    await made.aclose()


# ------------------------------------------------------------------------------------------- back end end to end


async def test_mirror_operations_end_to_end(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    printer.add_file("apple/prusament pla/apple.gcode", b"G28\n" * 10)
    printer.add_file("apple/notes.txt", b"hidden: not printable")
    printer.add_file(".hidden.gcode", b"G28\n")
    assert (await backend.status()).idle

    tree = {e.path: e for e in await backend.list_tree()}
    assert set(tree) == {"apple", "apple/prusament pla", "apple/prusament pla/apple.gcode"}
    assert tree["apple/prusament pla/apple.gcode"].ref == "APPLE/PRUSAM~1/APPLE~1.GCO"
    assert tree["apple/prusament pla/apple.gcode"].size is None

    first = b"G1 X1\n" * 5000
    up = await backend.upload(
        "banana/prusament petg/banana.gcode", _write(tmp_path / "b1", first), size=len(first)
    )
    assert up.verified and up.size == len(first)
    assert printer.files["banana/prusament petg/banana.gcode"].read() == first

    second = b"G1 X2 Y2\n" * 7000
    replaced = await backend.upload(
        "banana/prusament petg/banana.gcode", _write(tmp_path / "b2", second), size=len(second)
    )
    assert replaced.verified and printer.files["banana/prusament petg/banana.gcode"].read() == second
    stat = await backend.stat("banana/prusament petg/banana.gcode")
    assert stat is not None and stat.size == len(second)

    entry = {e.path: e for e in await backend.list_tree()}["banana/prusament petg/banana.gcode"]
    assert await backend.download(entry, tmp_path / "dl") == len(second)
    assert (tmp_path / "dl").read_bytes() == second

    folder = RemoteEntry(path="banana/prusament petg", is_dir=True)
    with pytest.raises(UpstreamConflict, match="not empty"):
        await backend.delete_folder(folder)
    await backend.delete_file(entry)
    await backend.delete_folder(folder)
    await backend.delete_folder(RemoteEntry(path="banana", is_dir=True))
    await backend.make_folder("cherry/stone")
    assert printer.folders == {"apple", "apple/prusament pla", "cherry", "cherry/stone"}
    assert set(printer.files) == {"apple/prusament pla/apple.gcode", "apple/notes.txt", ".hidden.gcode"}
    assert (
        backend.auth.digest.challenges == 1
    )  # one 401 for the whole session: the download's (/api needs none)


async def test_busy_printer_protects_its_job(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    printer.add_file("job.gcode", b"G28\n")
    printer.set_state("PRINTING", job_path="job.gcode")
    status = await backend.status()
    assert (status.state, status.idle) == ("PRINTING", False)
    job = {e.path: e for e in await backend.list_tree()}["job.gcode"]
    with pytest.raises(UpstreamConflict, match="busy"):
        await backend.delete_file(job)
    with pytest.raises(UpstreamConflict, match="busy"):
        await backend.upload("job.gcode", _write(tmp_path / "j", b"G29\n"), size=4)
    assert (await backend.upload("other.gcode", _write(tmp_path / "o", b"G29\n"), size=4)).verified
    printer.set_state("FINISHED")
    assert (await backend.status()).idle
    await backend.delete_file(
        job
    )  # FINISHED with the file still selected: Buddy leaves the print screen first
    assert "job.gcode" not in printer.files


async def test_rescan_of_unchanged_folders_is_304(printer: FakeBuddy, backend: PrusaLinkBackend) -> None:
    printer.add_file("a/b/c.gcode", b"G28\n")
    first = await backend.list_tree()
    printer.clear_log()
    assert await backend.list_tree() == first
    statuses = [e["status"] for e in printer.request_log]
    assert statuses == [304, 304, 304]


async def test_expired_nonce_is_renewed_transparently(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    printer.add_file("a.gcode", b"G28\n")
    entry = {e.path: e for e in await backend.list_tree()}["a.gcode"]  # /api: the key, no challenge
    await backend.download(entry, tmp_path / "one")
    printer.expire_nonces()
    assert await backend.download(entry, tmp_path / "two") == 4
    assert backend.auth.digest.challenges == 2
    assert [e["status"] for e in printer.request_log] == [200, 401, 200, 401, 200]


async def test_long_names_are_made_to_fit_168_bytes(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    folder = "a rather long folder name that is new/and a second one that is also long"
    name = "with a long file name, too, of course.gcode"
    assert len(f"/api/v1/files/usb/{folder}/{name}".replace(" ", "%20")) > 168
    assert (await backend.upload(f"{folder}/{name}", _write(tmp_path / "x", b"G28\n"), size=4)).verified
    assert printer.files[f"{folder}/{name}"].size == 4
    assert all(len(e["path"]) <= 168 for e in printer.request_log)
    assert not any(e["status"] == 414 for e in printer.request_log)


async def test_concurrent_uploads_to_one_printer_take_turns(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    printer.bandwidth = 4_000_000
    data = b"x" * 200_000
    sources = [_write(tmp_path / f"s{i}", data) for i in range(3)]
    results = await asyncio.gather(
        *(backend.upload(f"f{i}.gcode", sources[i], size=len(data)) for i in range(3))
    )
    assert all(r.verified for r in results)
    assert not any(e["status"] == 409 for e in printer.request_log)


async def test_throttle_is_roughly_honoured(fake_buddy: FakeBuddyFactory, tmp_path: Path) -> None:
    printer = fake_buddy(password=PW, bandwidth=200_000)
    backend = _backend(printer)
    data = b"G1\n" * 50_000  # 150 kB at 200 kB/s: about 0.75 s
    started = time.monotonic()
    await backend.upload("slow.gcode", _write(tmp_path / "s", data), size=len(data))
    elapsed = time.monotonic() - started
    await backend.aclose()
    assert 0.375 <= elapsed <= 3.0
    puts = [e for e in printer.request_log if e["method"] == "PUT"]
    assert [e["bytes_in"] for e in puts] == [len(data)]


async def test_several_printers_in_one_process(fake_buddy: FakeBuddyFactory, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    printers = [fake_buddy(password=f"pw{i}", log_path=log if i == 0 else None) for i in range(4)]
    assert len({p.port for p in printers}) == 4
    source = _write(tmp_path / "a", b"G28\n" * 100)
    backends = [_backend(p) for p in printers]
    await asyncio.gather(*(b.upload("a.gcode", source, size=400) for b in backends))
    for b in backends:
        await b.aclose()
    assert all(p.files["a.gcode"].size == 400 for p in printers)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == printers[0].request_log
    assert {"method", "path", "status", "bytes_in", "bytes_out"} <= set(lines[0])


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_256_mib_upload_keeps_memory_flat(
    printer: FakeBuddy, backend: PrusaLinkBackend, tmp_path: Path
) -> None:
    size = 256 << 20
    source = tmp_path / "big.gcode"
    with source.open("wb") as handle:
        handle.truncate(size)  # sparse: reads as zeros without using disk
    await backend.status()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = _vm_hwm_kb()
    result = await backend.upload("big.gcode", source, size=size)
    growth_mb = (_vm_hwm_kb() - before) / 1024
    assert result.verified and printer.files["big.gcode"].size == size
    assert growth_mb < 60, f"peak RSS grew by {growth_mb:.0f} MB"


# ------------------------------------------------------------------------------------------- raw quirks


def _key(printer: FakeBuddy) -> dict[str, str]:
    return {"X-Api-Key": printer.password}


def test_auth_challenges(printer: FakeBuddy) -> None:
    with httpx.Client(base_url=printer.url) as client:
        bare = client.get("/api/v1/status")
        assert bare.status_code == 401
        challenge = bare.headers["WWW-Authenticate"]
        assert challenge.startswith('Digest realm="Printer API", nonce="') and "qop" not in challenge
        assert "algorithm" not in challenge
        wrong = client.get("/api/v1/status", headers={"X-Api-Key": "nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == 'ApiKey realm="Printer API"'
        assert client.get("/api/v1/status", headers=_key(printer)).json()["storage"]["path"] == "/usb/"
        assert client.get("/api/v1/status", auth=DigestAuth("maker", printer.password)).status_code == 200
        # Buddy hashes "maker" whatever user is named, so a client hashing another name is refused
        assert client.get("/api/v1/status", auth=DigestAuth("admin", printer.password)).status_code == 401


def test_old_firmware_mode_refuses_algorithm_param(fake_buddy: FakeBuddyFactory) -> None:
    printer = fake_buddy(password=PW, reject_digest_algorithm=True)
    with httpx.Client(base_url=printer.url) as client:
        assert client.get("/api/v1/status", auth=httpx.DigestAuth("maker", PW)).status_code == 401
        assert client.get("/api/v1/status", auth=DigestAuth("maker", PW)).status_code == 200


def test_listing_shape_short_names_and_etag(printer: FakeBuddy) -> None:
    printer.add_file("spice.gcode", b"G28\n")
    printer.add_file("Spice Rack.gcode", b"G28\n")
    printer.add_file("readme.txt", b"x")
    printer.add_file(".secret.gcode", b"x")
    printer.add_folder("prusament pla")
    assert short_name("spice.gcode", set()) == "SPICE~1.GCO"
    assert short_name("SHORT.GCO", set()) == "SHORT.GCO"
    assert short_name("spice.gcode", {"SPICE~1.GCO"}) == "SPICE~2.GCO"
    with httpx.Client(base_url=printer.url, headers=_key(printer)) as client:
        root = client.get("/api/v1/files/usb/")
        assert root.headers["Transfer-Encoding"] == "chunked" and root.headers["Read-Only"] == "false"
        children = {c["display_name"]: c for c in root.json()["children"]}
        assert set(children) == {"spice.gcode", "Spice Rack.gcode", "prusament pla"}
        assert children["spice.gcode"]["name"] == "SPICE~1.GCO"
        assert children["Spice Rack.gcode"]["name"] == "SPICER~1.GCO"
        assert children["prusament pla"] == {
            **children["prusament pla"],
            "type": "FOLDER",
            "name": "PRUSAM~1",
        }
        assert all("size" not in c for c in children.values())
        one = client.get("/api/v1/files/usb/SPICE~1.GCO").json()
        assert one["size"] == 4 and one["refs"]["download"] == "/usb/SPICE~1.GCO"
        assert client.get("/api/v1/files/usb/spice.GCODE").json()["name"] == "SPICE~1.GCO"
        etag = root.headers["ETag"]
        assert client.get("/api/v1/files/usb", headers={"If-None-Match": etag}).status_code == 304
        printer.add_file("new.gcode", b"G28\n")
        assert client.get("/api/v1/files/usb", headers={"If-None-Match": etag}).status_code == 200
        assert client.get("/api/v1/files/local").status_code == 403
    assert _raw(printer, "GET /api/v1/files/usb/../x").startswith(b"HTTP/1.1 400")  # httpx would normalise it


def test_put_quirks(printer: FakeBuddy) -> None:
    printer.add_file("a/full.gcode", b"G28\n")
    with httpx.Client(base_url=printer.url, headers=_key(printer)) as client:
        url = "/api/v1/files/usb/x.gcode"

        def chunks():
            yield b"G28\n"

        assert client.put(url, content=chunks()).status_code == 411
        assert client.put(url, content=b"").status_code == 501
        assert client.put("/api/v1/files/usb/fw.bbf", content=b"x").status_code == 415
        assert client.put("/api/v1/files/usb/" + "a" * 150 + ".gcode", content=b"x").status_code == 414
        started = time.time()
        assert client.put("/api/v1/files/usb/new/deep/x.gcode", content=b"G28\n").status_code == 201
        made = printer.files["new/deep/x.gcode"]
        assert made.m_timestamp % 2 == 0 and made.m_timestamp >= int(started) - 2
        again = "/api/v1/files/usb/new/deep/x.gcode"
        assert client.put(again, content=b"G29\n").status_code == 409
        assert client.put(again, content=b"G29\n", headers={"Overwrite": "true"}).status_code == 409
        assert client.put(again, content=b"G29\n", headers={"Overwrite": "?1"}).status_code == 201
        assert printer.files["new/deep/x.gcode"].read() == b"G29\n"
        folder = {"Create-Folder": "?1"}
        assert client.put("/api/v1/files/usb/made", headers=folder).status_code == 201
        assert client.put("/api/v1/files/usb/made", headers=folder).status_code == 409
        assert client.put("/api/v1/files/usb/no/parent", headers=folder).status_code == 500
        assert client.put("/api/v1/files/usb/made", headers={"Create-Folder": "true"}).status_code == 501
        assert client.delete("/api/v1/files/usb/a").status_code == 404  # not empty
        assert client.delete("/api/v1/files/usb/made").status_code == 204
        assert client.delete("/api/v1/files/usb/a/full.gcode").status_code == 204
        assert client.delete("/api/v1/files/usb/a").status_code == 204


def test_an_overwrite_needs_room_for_both_copies(fake_buddy: FakeBuddyFactory) -> None:
    # printer-apis.md §2: the space is preallocated and the body goes to a transfer file renamed at the end
    printer = fake_buddy(password=PW, capacity=10)
    printer.add_file("a.gcode", b"G28 X Y\n")  # 8 of the 10 bytes
    with httpx.Client(base_url=printer.url, headers=_key(printer)) as client:
        overwrite = {"Overwrite": "?1"}
        assert client.put("/api/v1/files/usb/a.gcode", content=b"G28\n", headers=overwrite).status_code == 507
        assert printer.files["a.gcode"].read() == b"G28 X Y\n"  # the old copy is untouched
        assert client.put("/api/v1/files/usb/b.gcode", content=b"G1\n").status_code == 507
        assert client.put("/api/v1/files/usb/b.gcode", content=b"G\n").status_code == 201


def test_one_transfer_at_a_time_and_ro_while_it_runs(fake_buddy: FakeBuddyFactory) -> None:
    printer = fake_buddy(password=PW, bandwidth=100_000)
    outcome: dict[str, int] = {}

    def slow_upload() -> None:
        with httpx.Client(base_url=printer.url, headers=_key(printer), timeout=10) as client:
            outcome["slow"] = client.put("/api/v1/files/usb/slow.gcode", content=b"x" * 60_000).status_code

    worker = threading.Thread(target=slow_upload)
    worker.start()
    try:
        with httpx.Client(base_url=printer.url, headers=_key(printer), timeout=10) as client:
            deadline = time.monotonic() + 5
            while client.get("/api/v1/transfer").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.02)
            listing = {c["display_name"]: c for c in client.get("/api/v1/files/usb").json()["children"]}
            assert listing["slow.gcode"]["ro"] is True and "download" not in listing["slow.gcode"]["refs"]
            assert "transfer" in client.get("/api/v1/status").json()
            second = client.put("/api/v1/files/usb/other.gcode", content=b"G28\n")
            assert (second.status_code, second.text) == (409, "Another transfer in progress")
            assert client.delete("/api/v1/files/usb/slow.gcode").status_code == 409
    finally:
        worker.join(10)
    assert outcome["slow"] == 201
    assert printer.files["slow.gcode"].read_only is False


def _raw(printer: FakeBuddy, request_line: str) -> bytes:
    with socket.create_connection(("127.0.0.1", printer.port), timeout=5) as sock:
        sock.sendall(
            f"{request_line} HTTP/1.1\r\nX-Api-Key: {printer.password}\r\nConnection: close\r\n\r\n".encode()
        )
        return sock.recv(4096)


def _raw_request(printer: FakeBuddy) -> bytes:
    return f"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Api-Key: {printer.password}\r\n\r\n".encode()


def test_at_most_three_active_connections(printer: FakeBuddy) -> None:
    busy = [socket.create_connection(("127.0.0.1", printer.port)) for _ in range(3)]
    fourth = socket.create_connection(("127.0.0.1", printer.port))
    try:
        for sock in busy:
            sock.sendall(b"GET /api/v1/status HTTP/1.1\r\n")  # a request that has started: active, not idle
        time.sleep(0.2)
        fourth.sendall(_raw_request(printer))
        fourth.settimeout(0.4)
        with pytest.raises(TimeoutError):
            fourth.recv(1)
        busy[0].close()
        fourth.settimeout(5)
        assert fourth.recv(64).startswith(b"HTTP/1.1 200")
        assert printer.peak_connections == 3
    finally:
        for sock in (*busy, fourth):
            sock.close()


def test_idle_keep_alive_connection_gives_its_slot_up(printer: FakeBuddy) -> None:
    idle = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", printer.port))
        sock.sendall(_raw_request(printer))
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        idle.append(sock)
    try:
        with httpx.Client(base_url=printer.url, headers=_key(printer), timeout=5) as client:
            assert client.get("/api/v1/status").status_code == 200
        assert printer.reaped_connections == 1
        assert printer.peak_connections == 3
    finally:
        for sock in idle:
            sock.close()


def test_link_sync_style_calls(printer: FakeBuddy) -> None:
    """What link-sync 0.2.5 sends (requests + HTTPDigestAuth, 'true' headers) gets what Buddy answers."""
    printer.add_file("apple/old.gcode", b"G28\n")
    auth = HTTPDigestAuth("maker", printer.password)
    base = printer.url
    assert requests.get(f"{base}/api/v1/status", auth=auth, timeout=5).json()["storage"]["path"] == "/usb/"
    root = requests.get(f"{base}/api/v1/files/usb/", auth=auth, timeout=5).json()
    assert requests.get(f"{base}/api/v1/files/usb", auth=auth, timeout=5).json() == root
    folder = next(c for c in root["children"] if c["display_name"] == "apple")
    sub = requests.get(f"{base}/api/v1/files/usb/{folder['name']}", auth=auth, timeout=5).json()
    assert [c["display_name"] for c in sub["children"]] == ["old.gcode"]
    key = {"X-Api-Key": printer.password}
    ignored = {"Overwrite": "true", "Print-After-Upload": "false", "Content-type": "text/x.gcode", **key}
    assert (
        requests.put(
            f"{base}/api/v1/files/usb/APPLE/old.gcode", data=b"G29\n", headers=ignored, timeout=5
        ).status_code
        == 409
    )
    mkdir = requests.put(
        f"{base}/api/v1/files/usb/banana", headers={"Create-Folder": "true"}, auth=auth, timeout=5
    )
    assert mkdir.status_code == 501  # 'true' is not '?1': a 0-byte file upload
    fresh = requests.put(
        f"{base}/api/v1/files/usb/banana/new.gcode", data=b"G28\n", headers=ignored, timeout=5
    )
    assert fresh.status_code == 201
    short = printer.short_path("apple/old.gcode")
    assert requests.delete(f"{base}/api/v1/files/usb/{short}", headers=key, timeout=5).status_code == 204
    assert set(printer.files) == {"banana/new.gcode"}
    assert {e["method"] for e in printer.request_log} == {"GET", "PUT", "DELETE"}
