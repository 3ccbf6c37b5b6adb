"""This machine's floor for a mirror onto fake Buddy printers: every file PUT to every printer, and nothing else.

``python -m bench.bare_upload PRINTERS_YML SOURCE_DIR REL [REL ...]`` PUTs each ``REL`` of ``SOURCE_DIR`` to every
printer of a link-sync ``printers.yml`` (the file farmsync reads), one transfer at a time per printer (Buddy's
rule) and every printer at once, and prints ``{"seconds": ..., "requests": ..., "bytes": ...}``: the time from the
first connection to the last answer.

It makes only the requests no mirror can avoid: no status call, no listing, no size check after the upload, no
store, no manifest, no digest, no retries. Each request is written with asyncio streams, no HTTP library, and the
files are read into memory before the clock starts. So it is the least CPU a mirror's transfers can cost on this
machine, in a process of its own beside the fakes' processes, as farmsync is. What it takes above the physical
bound (the bytes at the printers' nominal rate) is what this machine's two cores and the fakes' own processes
cost every tool, not farmsync; what farmsync takes above it is farmsync's.

``--checked`` is the same with httpx and the two checks printer-apis.md asks of every mirror: a status GET per
printer before its first PUT, and a size check (GET) after each PUT, the next PUT going out first (as farmsync's
Buddy pipeline does). One ``httpx.AsyncClient`` per printer, two connections each, one TLS context shared and
built before the clock. No listing, stat, store, manifest or digest. What it takes above the bare floor is what
the HTTP library and the checks cost on this machine; what farmsync takes above it is farmsync's own.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from farmsync.gcode.config import load_printers


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response (status line, headers, a Content-Length body); its status code."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _printer(url: str, password: str, files: list[tuple[str, bytes]]) -> int:
    """PUT ``files`` one after the other on one kept-alive connection; the bytes sent."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    sent = 0
    try:
        for rel, data in files:
            head = (
                f"PUT /api/v1/files/usb/{quote(rel)} HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\n"
                f"X-Api-Key: {password}\r\n"
                "Overwrite: ?1\r\n"
                "Content-Type: text/x.gcode\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            writer.write(head.encode("latin-1"))
            writer.write(data)
            await writer.drain()
            status = await _answer(reader)
            if status != 201:
                raise RuntimeError(f"{url}: PUT {rel} answered {status}")
            sent += len(data)
    finally:
        writer.close()
    return sent


async def _checked_printer(
    url: str, password: str, files: list[tuple[str, bytes]], tls: ssl.SSLContext
) -> int:
    """A status GET, then each file PUT and its size checked by a GET, the next PUT sent before the check."""
    async with httpx.AsyncClient(
        base_url=url,
        headers={"X-Api-Key": password},
        limits=httpx.Limits(max_connections=2),
        timeout=60,
        verify=tls,
    ) as client:
        (await client.get("/api/v1/status")).raise_for_status()
        checks = []
        for rel, data in files:
            path = f"/api/v1/files/usb/{quote(rel)}"
            put = await client.put(
                path, content=data, headers={"Overwrite": "?1", "Content-Type": "text/x.gcode"}
            )
            if put.status_code != 201:
                raise RuntimeError(f"{url}: PUT {rel} answered {put.status_code}")
            checks.append(asyncio.ensure_future(_check_size(client, path, len(data))))
        await asyncio.gather(*checks)
    return sum(len(data) for _, data in files)


async def _check_size(client: httpx.AsyncClient, path: str, size: int) -> None:
    info = (await client.get(path)).raise_for_status().json()
    if info.get("size") != size:
        raise RuntimeError(f"{path}: the printer holds {info.get('size')} bytes, {size} were sent")


async def bare_upload(
    printers: list[tuple[str, str]], files: list[tuple[str, bytes]], *, checked: bool = False
) -> dict[str, float]:
    """Every file to every printer; the seconds from the first connection to the last answer."""
    jobs: list[Coroutine[Any, Any, int]]
    if checked:
        tls = ssl.create_default_context()  # built before the clock and shared, as farmsync shares one
        jobs = [_checked_printer(url, password, files, tls) for url, password in printers]
    else:
        jobs = [_printer(url, password, files) for url, password in printers]
    started = time.perf_counter()
    sent = await asyncio.gather(*jobs)
    per_printer = 1 + 2 * len(files) if checked else len(files)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "requests": len(printers) * per_printer,
        "bytes": sum(sent),
    }


def printers_of(config: Path) -> list[tuple[str, str]]:
    """(host URL, password) of each printer in a link-sync printers.yml, read by farmsync's own loader (which
    checks each host is an http(s) URL), before the clock starts."""
    out = []
    for printer in load_printers(config):
        secret = printer.password or printer.api_key
        if printer.host is None or secret is None:
            raise ValueError(f"{config}: printer {printer.name!r} needs a host and a password")
        out.append((printer.host, secret.get_secret_value()))
    return out


def main(argv: list[str]) -> int:
    checked = "--checked" in argv
    argv = [arg for arg in argv if arg != "--checked"]
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    config, source, rels = Path(argv[0]), Path(argv[1]), argv[2:]
    files = [(rel, (source / rel).read_bytes()) for rel in rels]
    print(json.dumps(asyncio.run(bare_upload(printers_of(config), files, checked=checked))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
