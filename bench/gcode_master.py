"""A large master folder re-synced with nothing to do: bytes of the master read, with and without the hash cache.

#17 target 2: a no-op re-sync of a master with 1,000 files / 2 GiB reads no file contents. Side by side in one
run, on the same master and the same fake Buddy printers (unthrottled, on 127.0.0.1): the first sync, a no-op
re-sync with the hash cache farmsync keeps in DATA_DIR (what farmsync does), and a no-op re-sync with a cold
cache (what every run did before: hash every file to compare it with the upload manifest). The engine runs
in-process so the bytes the hasher read are counted exactly; the process's own read count (``rchar`` in
/proc/self/io, which includes the HTTP responses) is reported beside it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, Target, ratio, run_main
from bench.gcode_sync import fake_printers, write_printers_yml
from farmsync.gcode.backends import backend_for
from farmsync.gcode.config import load_printers
from farmsync.gcode.engine import MirrorContext, MirrorOptions, run_mirror
from farmsync.gcode.local import DIGEST_CACHE_FILE, DigestCache
from farmsync.gcode.store_manifest import StoreManifestStore
from farmsync.store.sqlite import SqliteStore

NAME = "gcode_master"
MIB = 1 << 20


@dataclass(frozen=True)
class Size:
    files: int
    file_bytes: int
    printers: int = 1


SIZES = {
    "full": Size(files=1000, file_bytes=2 * MIB),
    "quick": Size(files=200, file_bytes=256 * 1024),
    "tiny": Size(files=12, file_bytes=4096),
}


def make_master(root: Path, size: Size) -> None:
    block = os.urandom(64 * 1024)
    for index in range(size.files):
        folder = root / f"batch{index // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"part{index:04d}.gcode").open("wb") as out:
            remaining = size.file_bytes
            out.write(index.to_bytes(4, "big"))  # every file differs
            remaining -= 4
            while remaining > 0:
                out.write(block[: min(remaining, len(block))])
                remaining -= len(block)


def process_reads() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


async def one_run(configs: list[Any], master: Path, data: Path, digests: DigestCache) -> dict[str, Any]:
    store = SqliteStore(data / "sync.sqlite3")  # where farmsync keeps the upload manifest
    context = MirrorContext(backend_for, StoreManifestStore(store), digests=digests)
    before = process_reads()
    started = time.perf_counter()
    try:
        report = await run_mirror(configs, master, MirrorOptions(dry_run=False), context)
    finally:
        store.close()
    seconds = time.perf_counter() - started
    actions = [a for p in report.printers for a in p.actions]
    return {
        "seconds": round(seconds, 2),
        "uploads": sum(1 for a in actions if a.op in ("upload", "replace")),
        "skips": sum(1 for a in actions if a.op == "skip"),
        "master_bytes_read": digests.bytes_read,
        "files_hashed": digests.reads,
        "process_bytes_read": process_reads() - before,
        "exit_code": report.exit_code,
    }


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="No-op re-sync of a large master folder: bytes read with and without the hash cache",
        quick=quick,
        params={"files": size.files, "file_bytes": size.file_bytes, "printers": size.printers},
    )
    with tempfile.TemporaryDirectory(prefix="farmsync-bench-") as tmp:
        work = Path(tmp)
        master, data = work / "master", work / "data"
        make_master(master, size)
        with fake_printers(size.printers, None, work, "master") as printers:
            configs = load_printers(write_printers_yml(work / "printers.yml", printers))
            cache_file = data / DIGEST_CACHE_FILE
            first = asyncio.run(one_run(configs, master, data, DigestCache(cache_file)))
            warm = asyncio.run(one_run(configs, master, data, DigestCache(cache_file)))
            cold = asyncio.run(one_run(configs, master, data, DigestCache()))
    total = size.files * size.file_bytes
    result.columns = [
        ("run", "run"),
        ("uploads", "uploads"),
        ("skips", "skips"),
        ("files_hashed", "files hashed"),
        ("master_mib_read", "master MiB read"),
        ("process_mib_read", "process MiB read"),
        ("seconds", "wall s"),
    ]
    for label, figures in (
        ("first sync", first),
        ("no-op, hash cache kept (farmsync)", warm),
        ("no-op, cold cache (before)", cold),
    ):
        result.rows.append(
            {
                "run": label,
                **figures,
                "master_mib_read": round(figures["master_bytes_read"] / MIB, 1),
                "process_mib_read": round(figures["process_bytes_read"] / MIB, 1),
            }
        )
    result.targets = [
        Target(
            "no-op re-sync reads no master contents",
            "0 bytes of the master read",
            warm["master_bytes_read"],
            warm["master_bytes_read"] == 0 and warm["uploads"] == 0 and first["uploads"] == size.files,
            f"master {size.files} files, {round(total / MIB)} MiB; cold cache read "
            f"{round(cold['master_bytes_read'] / MIB)} MiB and took {ratio(cold['seconds'], warm['seconds'])}× longer",
        )
    ]
    result.details = {"first": first, "warm": warm, "cold": cold}
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
