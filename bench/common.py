"""What every benchmark shares: the command line, the result shape, the machine block and process timing.

A benchmark's JSON (``bench/out/<name>.json``) always has ``name``, ``title``, ``quick``, ``params``, ``table``
(``columns`` as ``[key, header]`` pairs and ``rows``), ``targets`` (each with ``name``, ``goal``, ``value``,
``passed`` and ``note``) and ``notes``, so run_all can render any of them without knowing what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT_DIR = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"
SIZE_NAMES = ("full", "quick", "tiny")


PACE_LOOP = 1_000_000


def machine_pace() -> float:
    """Seconds this machine takes, right now, for a fixed pure-Python loop (the best of three).

    A shared virtual machine's speed drifts: gcode_farm's figures moved by 10-40 % between runs hours apart,
    where the code they exercise had not changed and the load average stayed below 1. Recorded before and after
    every benchmark beside the load average, it tells a slower run from a slower machine."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(PACE_LOOP))
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


@dataclass
class Target:
    """One goal a figure is held against; ``passed`` None means it could not be measured in this run."""

    name: str
    goal: str
    value: Any
    passed: bool | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "goal": self.goal,
            "value": self.value,
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class Result:
    """A benchmark's output, in the shape run_all renders."""

    name: str
    title: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    load_at_start: float = field(default_factory=lambda: round(os.getloadavg()[0], 2))
    pace_at_start: float = field(default_factory=machine_pace)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "quick": self.quick,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self.started, 1),
            # other work on this machine skews timings: the 1-minute load average before and after the run
            "load_average": {"start": self.load_at_start, "end": round(os.getloadavg()[0], 2)},
            # and how fast the machine itself was (lower is faster): the same loop before and after
            "pace_seconds": {"start": self.pace_at_start, "end": machine_pace()},
            "params": self.params,
            "table": {"columns": [list(c) for c in self.columns], "rows": self.rows},
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
            "details": self.details,
        }

    def write(self, out: Path | None = None) -> Path:
        """Write the JSON (atomically) to ``out`` or bench/out/<name>.json and return the path."""
        path = out or OUT_DIR / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` (a small smoke run) and ``--out`` (JSON path)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small run (same as --size quick)")
    p.add_argument(
        "--size",
        choices=SIZE_NAMES,
        default=None,
        help="full (default), quick (a smaller run) or tiny (the smoke test's: checks the code path only)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="where to write the JSON (default bench/out/<name>.json)"
    )
    return p


def size_name(args: argparse.Namespace) -> str:
    """``--size`` if given, else ``quick`` with ``--quick``, else ``full``."""
    return str(args.size or ("quick" if args.quick else "full"))


def finish(result: Result, out: Path | None) -> int:
    """Write the result, print a one-line summary per target, and return the process exit code (0)."""
    path = result.write(out)
    for target in result.targets:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[target.passed]
        print(f"{result.name}: {verdict} {target.name}: {target.value} (goal {target.goal})", file=sys.stderr)
    print(f"{result.name}: wrote {path}", file=sys.stderr)
    return 0


def run_main(
    doc: str | None, run: Callable[..., Result], sizes: Mapping[str, Any], argv: list[str] | None
) -> int:
    """The whole ``main`` of a benchmark without options of its own: parse --size/--quick/--out, run, write."""
    args = parser((doc or "").splitlines()[0]).parse_args(argv)
    size = size_name(args)
    return finish(run(sizes[size], quick=size != "full"), args.out)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(slow: float | None, fast: float | None) -> float | None:
    """``slow / fast`` rounded, or None when either is missing or ``fast`` is 0."""
    if slow is None or not fast:
        return None
    return round(slow / fast, 2)


# --- the machine ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    """``model name`` from /proc/cpuinfo, with family/model, clock and "virtual" when the name alone is vague."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine()
    extra = []
    if "cpu family" in fields and "model" in fields:
        extra.append(f"family {fields['cpu family']} model {fields['model']}")
    with contextlib.suppress(ValueError):
        extra.append(f"{float(fields.get('cpu MHz', '')):.0f} MHz")
    if "hypervisor" in fields.get("flags", "").split():
        extra.append("virtual machine")
    return f"{name} ({', '.join(extra)})" if extra else name


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Where the figures came from: CPU, cores, RAM, OS, Python, date and the commit measured."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": (commit + ("+changes" if dirty else "")) if commit else None,
    }


# --- processes -------------------------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One finished (or killed) subprocess: wall time, exit code, its own peak RSS, and its output."""

    argv: list[str]
    seconds: float
    returncode: int | None
    peak_rss_mb: float
    stdout: str
    stderr: str
    timed_out: bool = False
    cpu_seconds: float = 0.0
    """User + system CPU time of the child (``wait4``): unlike wall time, barely moved by other load."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def outcome(self) -> dict[str, Any]:
        """The figures every benchmark records of a run: wall seconds, exit code, whether it was killed."""
        return {"seconds": round(self.seconds, 2), "returncode": self.returncode, "timed_out": self.timed_out}


_OWN_CMDLINE = Path("/proc/self/cmdline").read_bytes()


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """A process's peak RSS so far (VmHWM of its address space, which starts afresh at exec), in KiB; None
    when /proc does not say (the process is gone, or not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_peak_kib(pid: int) -> int:
    """A child's peak RSS so far (KiB), 0 before it has exec'd or once it has exited."""
    try:
        if Path(f"/proc/{pid}/cmdline").read_bytes() in (_OWN_CMDLINE, b""):
            return 0  # still the fork of this process (its memory is ours), or a zombie
    except OSError:
        return 0
    return vm_hwm_kib(pid) or 0


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    log_dir: Path,
    label: str,
) -> ProcessRun:
    """Run ``argv`` and wait for it with ``os.wait4`` (its CPU time), sampling its own peak RSS on the way.

    The peak is the child's VmHWM from /proc, read every 20 ms once it has exec'd (the last sample before it
    exits). ``wait4``'s ru_maxrss is no good for it: Linux starts a child's ru_maxrss at its parent's RSS when
    it forks and execs, so it reported this (growing) benchmark process, not the tool under test.

    Output goes to files under ``log_dir`` (no pipe can fill up and stall a long run). After ``timeout`` seconds
    the process group is killed and the run is marked ``timed_out``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{label}.stdout", log_dir / f"{label}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = False
        status, usage = 0, None
        peak_kib = 0
        while True:
            peak_kib = max(peak_kib, own_peak_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        argv=list(argv),
        seconds=seconds,
        returncode=proc.returncode,
        peak_rss_mb=round(peak_kib / 1024, 1),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=timed_out,
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 3) if usage else 0.0,
    )


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` holds the seconds the block took."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)
