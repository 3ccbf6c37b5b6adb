"""Issue #6: the G-code mirror against link-sync on throttled fake Buddy printers, and its memory on a 1 GiB file.

Side by side in one run, each tool on its own fresh set of fake printers (FakeBuddy, throttled like a real MK4):
a first sync, a no-op re-sync and a re-sync after one file changed, plus the physical bound (bytes per printer ÷
bandwidth; printers upload in parallel, so that is the best any tool can do). Both tools run as users run them, in
a subprocess from their console script: ``farmsync gcode -c printers.yml -s SRC -g --json`` and ``link-sync -c
printers.yml -s SRC -d /usb/ -g`` (printer-apis.md §1.8), so interpreter start-up is part of every figure.

Memory: one 1 GiB file (sparse, reads as zeros) to 4 unthrottled fakes; the peak RSS of the tool's own process
comes from its VmHWM in /proc (bench.common.run_process).

The changed file keeps its size and gets an mtime 5 minutes ahead, so link-sync's only rule (source newer than the
printer's copy + 60 s) sees it too; farmsync sees it by content (its upload manifest's sha256).

Bambu row (issue #18): farmsync alone onto as many fake Bambu printers (tests/printers/fake_bambu.py: implicit FTPS
with session reuse, Mosquitto for the state), each capped at 100 KB/s as a Bambu printer writes (75–150 KB/s), with
files a fifth of the Buddy row's size so the run stays short. ``--no-bambu`` leaves it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    VENV_BIN,
    ProcessRun,
    Result,
    Target,
    finish,
    median,
    parser,
    ratio,
    run_process,
    size_name,
)
from farmsync_sim.buddy import FakeBuddy

NAME = "gcode_sync"
LINK_SYNC = ROOT / ".bench-venvs" / "link-sync" / "bin" / "link-sync"
FOLDERS = ("", "brackets", "brackets/wall", "enclosures/lids", "tools/clips/small", "spares/2026")
MIB = 1 << 20
NOOP_RUNS = 3
BAMBU_BANDWIDTH = 100_000  # bytes per second: a Bambu printer writes 75–150 KB/s (bambu-printers.md §2)
BAMBU_SHRINK = 5  # Bambu files are a fifth of the Buddy row's, or the full run would take 7 minutes


@dataclass(frozen=True)
class Size:
    printers: int
    files: int
    file_bytes: int
    bandwidth: float  # bytes per second per printer
    big_bytes: int  # the memory run's one file
    big_printers: int
    link_sync_timeout: float


SIZES = {
    "full": Size(8, 20, 2 * MIB, 500_000, 1024 * MIB, 4, 1200.0),
    "quick": Size(4, 6, MIB // 2, 500_000, 128 * MIB, 4, 300.0),
    "tiny": Size(2, 3, 64 * 1024, 4_000_000, 8 * MIB, 2, 60.0),
}


def farmsync_bin() -> Path:
    """The farmsync console script of the interpreter running the bench (the project's .venv normally)."""
    beside = Path(sys.executable).with_name("farmsync")
    return beside if beside.exists() else VENV_BIN / "farmsync"


# --- the master folder ---------------------------------------------------------------------------------------


def make_source(root: Path, size: Size) -> list[str]:
    """``size.files`` files of ``size.file_bytes`` random bytes in nested folders; returns their relative paths."""
    paths = []
    for index in range(size.files):
        folder = FOLDERS[index % len(FOLDERS)]
        name = f"Part {index:02d} long name v2.gcode" if index % 4 == 3 else f"part_{index:02d}.gcode"
        rel = f"{folder}/{name}" if folder else name
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(index).randbytes(size.file_bytes))
        paths.append(rel)
    return paths


def change_file(path: Path) -> str:
    """New content of the same size and an mtime 5 minutes ahead; returns the new sha256."""
    data = random.Random(f"changed-{time.time()}").randbytes(path.stat().st_size)
    path.write_bytes(data)
    ahead = time.time() + 300
    os.utime(path, (ahead, ahead))
    return hashlib.sha256(data).hexdigest()


# --- fake printers ------------------------------------------------------------------------------------------


@contextmanager
def fake_printers(count: int, bandwidth: float | None, workdir: Path, tag: str) -> Iterator[list[FakeBuddy]]:
    """``count`` fake Buddy printers on 127.0.0.1 with their files spooled under ``workdir``; stopped after."""
    printers: list[FakeBuddy] = []
    try:
        for index in range(count):
            printer = FakeBuddy(
                password=f"pw-{tag}-{index}",
                bandwidth=bandwidth,
                spool_dir=workdir / f"spool-{tag}-{index}",
                name=f"{tag}{index}",
            )
            printers.append(printer.start())
        yield printers
    finally:
        for printer in printers:
            printer.stop()
        for index in range(count):
            shutil.rmtree(workdir / f"spool-{tag}-{index}", ignore_errors=True)


def write_printers_yml(path: Path, printers: list[FakeBuddy]) -> Path:
    """link-sync's printer file (four keys per printer), which farmsync reads as is."""
    lines = []
    for index, printer in enumerate(printers):
        lines += [
            f"Printer{index:02d}:",
            "  printer_type: MK4",
            f"  host: {printer.url}",
            "  username: maker",
            f"  password: {printer.password}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def bambu_printers(count: int, workdir: Path) -> Iterator[list[Any]]:
    """``count`` throttled fake Bambu printers (X1C) on 127.0.0.1, sharing one throwaway CA; stopped after."""
    from tests.printers.fake_bambu import FakeBambu, make_pki

    pki = make_pki(workdir / "bambu-pki")
    printers: list[Any] = []
    try:
        for index in range(count):
            fake = FakeBambu(
                workdir / f"bambu-{index}",
                pki,
                serial=f"01S00C{index:09d}",
                bandwidth=BAMBU_BANDWIDTH,
                push_interval=30.0,
            )
            printers.append(fake.start())
        yield printers
    finally:
        for fake in printers:
            fake.stop()


def bambu_phases(size: Size, workdir: Path) -> dict[str, Any]:
    """farmsync's first sync, no-op re-sync and one changed file onto throttled fake Bambu printers."""
    source = workdir / "src-bambu"
    bambu_size = Size(**{**size.__dict__, "file_bytes": size.file_bytes // BAMBU_SHRINK})
    paths = make_source(source, bambu_size)
    out: dict[str, Any] = {"bytes_per_printer": bambu_size.files * bambu_size.file_bytes}
    with bambu_printers(size.printers, workdir) as printers:
        config = workdir / "printers-bambu.yml"
        config.write_text("".join(fake.printers_yml(f"Bambu{i:02d}") for i, fake in enumerate(printers)))
        argv = tool_argv("farmsync", config, source, workdir / "data-bambu")
        for phase in ("first", "noop", "changed"):
            check = change_file(source / paths[0]) if phase == "changed" else None
            run = run_process(
                argv,
                cwd=workdir,
                env=tool_env(),
                timeout=size.link_sync_timeout,
                log_dir=workdir / "logs",
                label=f"bambu-{phase}",
            )
            out[phase] = {
                **run.outcome(),
                "uploads": farmsync_uploads(run),
                "engine_seconds": engine_seconds(run),
                "mirrored": all(_bambu_holds(fake, source, paths, check) for fake in printers),
            }
            if not run.ok:
                out[phase]["stderr_tail"] = run.stderr[-2000:]
    shutil.rmtree(source, ignore_errors=True)
    return out


def _bambu_holds(fake: Any, source: Path, paths: list[str], check: str | None) -> bool:
    held = fake.files("farmsync")
    if any(len(held.get(f"farmsync/{rel}", b"")) != (source / rel).stat().st_size for rel in paths):
        return False
    return check is None or hashlib.sha256(held[f"farmsync/{paths[0]}"]).hexdigest() == check


def requests_so_far(printers: list[FakeBuddy]) -> int:
    return sum(len(p.request_log) for p in printers)


def mirrored(printers: list[FakeBuddy], source: Path, paths: list[str], check: str | None = None) -> bool:
    """Every printer holds every source file at its size (and ``check``'s sha256 for paths[0] when given)."""
    for printer in printers:
        files = printer.files
        for rel in paths:
            held = files.get(rel)
            if held is None or held.size != (source / rel).stat().st_size:
                return False
        if check is not None and files[paths[0]].sha256 != check:
            return False
    return True


# --- the tools ----------------------------------------------------------------------------------------------


def tool_argv(tool: str, config: Path, source: Path, data_dir: Path) -> list[str]:
    if tool == "farmsync":
        return [
            str(farmsync_bin()),
            "gcode",
            "-c",
            str(config),
            "-s",
            str(source),
            "-g",
            "--json",
            "--data-dir",
            str(data_dir),
        ]
    return [str(LINK_SYNC), "-c", str(config), "-s", str(source), "-d", "/usb/", "-g"]


def tool_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FARMSYNC_", "GCODE_")) and k != "DATA_DIR"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("COLUMNS", None)
    # an installed tool runs from bytecode: this machine's PYTHONDONTWRITEBYTECODE=1 made farmsync (an editable
    # install, never byte-compiled) compile its own modules from source on every run, link-sync (compiled by pip)
    # not
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def farmsync_uploads(run: ProcessRun) -> int | None:
    """Uploads (and replacements) the farmsync report says succeeded, from its --json output."""
    try:
        report = json.loads(run.stdout)
    except ValueError:
        return None
    return sum(
        1
        for printer in report.get("printers", [])
        for action in printer.get("actions", [])
        if action.get("op") in ("upload", "replace") and action.get("result") == "ok"
    )


def sync_phases(tool: str, size: Size, source: Path, paths: list[str], workdir: Path) -> dict[str, Any]:
    """First sync, no-op re-sync (NOOP_RUNS times: it is short, so one busy moment on the machine would decide it)
    and one changed file, for one tool on fresh fakes."""
    out: dict[str, Any] = {"tool": tool}
    logs = workdir / "logs"
    with fake_printers(size.printers, size.bandwidth, workdir, tool.replace("-", "")) as printers:
        config = write_printers_yml(workdir / f"printers-{tool}.yml", printers)
        argv = tool_argv(tool, config, source, workdir / f"data-{tool}")
        timeout = size.link_sync_timeout if tool == "link-sync" else size.link_sync_timeout / 2
        for phase in ("first", "noop", "changed"):
            expected_sha = change_file(source / paths[0]) if phase == "changed" else None
            runs = []
            for attempt in range(NOOP_RUNS if phase == "noop" else 1):
                before = requests_so_far(printers)
                run = run_process(
                    argv,
                    cwd=workdir,
                    env=tool_env(),
                    timeout=timeout,
                    log_dir=logs,
                    label=f"{tool}-{phase}-{attempt}",
                )
                figures: dict[str, Any] = {
                    **run.outcome(),
                    "peak_rss_mb": run.peak_rss_mb,
                    "requests": requests_so_far(printers) - before,
                    "mirrored": mirrored(printers, source, paths, expected_sha),
                }
                if tool == "farmsync":
                    figures.update(uploads=farmsync_uploads(run), engine_seconds=engine_seconds(run))
                if not run.ok:
                    figures["stderr_tail"] = run.stderr[-2000:]
                runs.append(figures)
                if run.timed_out:
                    break
            out[phase] = {**runs[0], "seconds": round(median([r["seconds"] for r in runs]), 2)}
            if len(runs) > 1:
                out[phase]["runs"] = [r["seconds"] for r in runs]
                out[phase]["mirrored"] = all(r["mirrored"] for r in runs)
                if tool == "farmsync":
                    out[phase]["uploads"] = sum(r["uploads"] or 0 for r in runs)
                    out[phase]["engine_seconds"] = median([r["engine_seconds"] or 0.0 for r in runs])
            if runs[-1]["timed_out"]:
                break
        out["digest_challenges"] = sum(p.challenges for p in printers)
    return out


def report_span(run: ProcessRun) -> tuple[float, float] | None:
    """When the mirror itself started and finished (epoch seconds), from farmsync's --json report."""
    try:
        report = json.loads(run.stdout)
        began = datetime.fromisoformat(report["started_at"]).timestamp()
        ended = datetime.fromisoformat(report["finished_at"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    return began, ended


def engine_seconds(run: ProcessRun) -> float | None:
    """The mirror's own time from farmsync's --json report (started_at → finished_at): no interpreter start-up."""
    span = report_span(run)
    return None if span is None else round(span[1] - span[0], 3)


def memory_run(tool: str, size: Size, workdir: Path) -> dict[str, Any]:
    """One ``size.big_bytes`` file to ``size.big_printers`` unthrottled fakes; the tool's peak RSS."""
    source = workdir / f"big-{tool}"
    source.mkdir()
    big = source / "huge_print.gcode"
    with big.open("wb") as handle:
        handle.truncate(size.big_bytes)  # sparse: no disk used for the source
    try:
        with fake_printers(size.big_printers, None, workdir, f"mem{tool.replace('-', '')}") as printers:
            config = write_printers_yml(workdir / f"printers-mem-{tool}.yml", printers)
            argv = tool_argv(tool, config, source, workdir / f"data-mem-{tool}")
            run = run_process(
                argv,
                cwd=workdir,
                env=tool_env(),
                timeout=size.link_sync_timeout,
                log_dir=workdir / "logs",
                label=f"{tool}-memory",
            )
            ok = all(
                p.files.get("huge_print.gcode") and p.files["huge_print.gcode"].size == size.big_bytes
                for p in printers
            )
    finally:
        shutil.rmtree(source, ignore_errors=True)
    return {
        **run.outcome(),
        "peak_rss_mb": run.peak_rss_mb,
        "mirrored": bool(ok),
        "mb_per_second": round(size.big_bytes * size.big_printers / MIB / run.seconds, 1)
        if run.seconds
        else None,
    }


# --- the benchmark ------------------------------------------------------------------------------------------


def run(size: Size, *, quick: bool, bambu: bool = True) -> Result:
    per_printer = size.files * size.file_bytes
    bound_first = per_printer / size.bandwidth
    bound_changed = size.file_bytes / size.bandwidth
    have_link_sync = LINK_SYNC.exists()
    result = Result(
        name=NAME,
        title="G-code mirror: farmsync vs link-sync on fake Buddy printers (issue #6)",
        quick=quick,
        params={
            "printers": size.printers,
            "files": size.files,
            "file_mib": round(size.file_bytes / MIB, 3),
            "bandwidth_kb_s": size.bandwidth / 1000,
            "bytes_per_printer": per_printer,
            "memory_file_mib": size.big_bytes // MIB,
            "memory_printers": size.big_printers,
            "link_sync": "0.2.5 (.bench-venvs/link-sync)" if have_link_sync else "not installed",
        },
    )
    with tempfile.TemporaryDirectory(prefix="bench-gcode-") as tmp:
        workdir = Path(tmp)
        tools: dict[str, dict[str, Any]] = {}
        memory: dict[str, dict[str, Any]] = {}
        for tool in ("farmsync", "link-sync"):
            if tool == "link-sync" and not have_link_sync:
                continue
            source = workdir / f"src-{tool}"
            paths = make_source(source, size)
            tools[tool] = sync_phases(tool, size, source, paths, workdir)
            memory[tool] = memory_run(tool, size, workdir)
            shutil.rmtree(source, ignore_errors=True)
        bambu_run = bambu_phases(size, workdir) if bambu else None

    def phase(tool: str, name: str) -> dict[str, Any]:
        return tools.get(tool, {}).get(name, {})

    fs, ls = "farmsync", "link-sync"
    result.columns = [
        ("tool", "tool"),
        ("first", "first sync s"),
        ("first_vs_bound", "× bound"),
        ("noop", f"no-op re-sync s (median of {NOOP_RUNS})"),
        ("changed", "1 file changed s"),
        ("requests", "requests (first / no-op / changed)"),
        ("memory_rss", f"peak RSS MB, {size.big_bytes // MIB} MiB → {size.big_printers} printers"),
        ("memory_seconds", "that run s"),
        ("mirrored", "all files mirrored"),
    ]
    for tool in (fs, ls):
        if tool not in tools:
            result.rows.append({"tool": tool, "mirrored": "not run: bash bench/setup_linksync.sh"})
            continue
        first = phase(tool, "first").get("seconds")
        result.rows.append(
            {
                "tool": tool,
                "first": first,
                "first_vs_bound": ratio(first, bound_first),
                "noop": phase(tool, "noop").get("seconds"),
                "changed": phase(tool, "changed").get("seconds"),
                "requests": " / ".join(
                    str(phase(tool, p).get("requests", "–")) for p in ("first", "noop", "changed")
                ),
                "memory_rss": memory[tool]["peak_rss_mb"],
                "memory_seconds": memory[tool]["seconds"],
                "mirrored": all(phase(tool, p).get("mirrored") for p in ("first", "noop", "changed"))
                and memory[tool]["mirrored"],
            }
        )
    result.rows.append(
        {
            "tool": "physical bound",
            "first": round(bound_first, 2),
            "first_vs_bound": 1.0,
            "noop": 0.0,
            "changed": round(bound_changed, 2),
        }
    )
    if bambu_run is not None:
        bambu_bound = bambu_run["bytes_per_printer"] / BAMBU_BANDWIDTH
        bambu_first = bambu_run["first"]["seconds"]
        result.rows.append(
            {
                "tool": f"farmsync → Bambu fakes ({BAMBU_BANDWIDTH // 1000} KB/s, files ÷{BAMBU_SHRINK})",
                "first": bambu_first,
                "first_vs_bound": ratio(bambu_first, bambu_bound),
                "noop": bambu_run["noop"]["seconds"],
                "changed": bambu_run["changed"]["seconds"],
                "mirrored": all(bambu_run[p]["mirrored"] for p in ("first", "noop", "changed")),
            }
        )
        result.rows.append(
            {
                "tool": "physical bound (Bambu)",
                "first": round(bambu_bound, 2),
                "first_vs_bound": 1.0,
                "noop": 0.0,
                "changed": round(size.file_bytes / BAMBU_SHRINK / BAMBU_BANDWIDTH, 2),
            }
        )

    fs_first = phase(fs, "first").get("seconds")
    ls_first = phase(ls, "first").get("seconds")
    speedup = ratio(ls_first, fs_first)
    fs_noop = phase(fs, "noop").get("seconds")
    fs_rss = memory.get(fs, {}).get("peak_rss_mb")
    within = ratio(fs_first, bound_first)
    result.targets = [
        Target(
            "farmsync first sync vs the physical bound",
            "≤ 1.15× bound",
            f"{within}×",
            None if within is None else within <= 1.15 and bool(phase(fs, "first").get("mirrored")),
            f"{fs_first} s vs {bound_first:.2f} s ({per_printer / MIB:.3g} MiB per printer at "
            f"{size.bandwidth / 1000:g} KB/s)",
        ),
        Target(
            "farmsync first sync vs link-sync",
            f"≥ 3× faster on {os.cpu_count()} cores",
            f"{speedup}×" if speedup else "n/a",
            None if speedup is None else speedup >= 3.0,
            f"{fs_first} s vs {ls_first} s" if ls_first else "link-sync not installed",
        ),
        Target(
            f"no-op re-sync of {size.printers} printers",
            "< 1 s",
            f"{fs_noop} s",
            None if fs_noop is None else fs_noop < 1.0 and phase(fs, "noop").get("uploads") == 0,
            f"wall time of the whole command, median of {phase(fs, 'noop').get('runs')}; the mirror itself "
            f"(farmsync's report: started → finished) took {phase(fs, 'noop').get('engine_seconds')} s, the rest "
            "is interpreter start-up and imports",
        ),
        Target(
            f"farmsync peak RSS, {size.big_bytes // MIB} MiB file to {size.big_printers} printers",
            "< 100 MB",
            f"{fs_rss} MB",
            None if fs_rss is None else fs_rss < 100 and bool(memory[fs]["mirrored"]),
            f"link-sync: {memory[ls]['peak_rss_mb']} MB" if ls in memory else "",
        ),
    ]
    result.notes.append(
        "the memory run's time is not a speed figure: unthrottled, the fakes (all in the bench's own process) are "
        "the bottleneck, and farmsync feeds all printers at once where link-sync feeds cpu_count"
    )
    if ls in tools:
        result.notes.append(
            "link-sync syncs at most cpu_count printers at once (a thread pool sized by cores), one file at a "
            f"time each: {size.printers} printers on {os.cpu_count()} cores take "
            f"~{-(-size.printers // (os.cpu_count() or 1))} rounds of the per-printer time"
        )
        result.notes.append(
            f"401 digest challenges sent by the fakes: farmsync {tools[fs]['digest_challenges']}, "
            f"link-sync {tools[ls]['digest_challenges']} (link-sync builds a new session per request)"
        )
    result.details = {
        "tools": tools,
        "memory": memory,
        "bound": {"first": bound_first, "changed": bound_changed},
        "bambu": bambu_run,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__.splitlines()[0])
    options.add_argument("--no-bambu", action="store_true", help="leave out the Bambu fakes' row")
    args = options.parse_args(argv)
    size = size_name(args)
    return finish(run(SIZES[size], quick=size != "full", bambu=not args.no_bambu), args.out)


if __name__ == "__main__":
    sys.exit(main())
