"""Run every benchmark, merge their JSON into bench/results.json and render bench/RESULTS.md (``make bench``).

Each benchmark runs in its own subprocess (``python -m bench.<name> --out bench/out/<name>.json``), so one that
fails or hangs costs only its own figures: it is recorded as failed and the rest still run. link-sync's venv is
built first (bench/setup_linksync.sh, idempotent). A full run writes bench/results.json and bench/RESULTS.md; a
``--quick`` (or ``--size tiny``) run writes bench/out/results-<size>.json and RESULTS-<size>.md instead, so a
smoke run never overwrites the figures the README quotes. ``--only NAME`` re-measures some benchmarks and keeps
the others' earlier figures of the same size (each benchmark records when it ran and the machine's load then).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH, OUT_DIR, PACE_LOOP, ROOT, machine_info, parser, size_name

BENCHMARKS = (
    "backfill",
    "gcode_sync",
    "gcode_farm",
    "gcode_master",
    "cold_start",
    "filament_usage",
    "webhook_storm",
    "capacity",
    "long_log",
    "scale_out",
)
TIMEOUTS = {"full": 1800.0, "quick": 600.0, "tiny": 120.0}
VERDICT = {True: "✅ pass", False: "❌ fail", None: "–"}


def ensure_link_sync() -> str | None:
    """Build link-sync's venv if needed; None when it is there, else why not (gcode_sync then runs alone)."""
    try:
        subprocess.run(["bash", str(BENCH / "setup_linksync.sh")], check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bench/setup_linksync.sh failed: {exc}"
    return None


def available(name: str) -> str | None:
    """Why a benchmark cannot run here (its library part is missing), or None."""
    if name == "filament_usage" and importlib.util.find_spec("farmsync.filament.run") is None:
        return "farmsync.filament.run is not there yet"
    return None


def run_benchmark(name: str, size: str, out_dir: Path) -> dict[str, Any]:
    """Run one benchmark in a subprocess; returns its JSON, or a stub saying why there is none."""
    out = out_dir / f"{name}.json"
    out.unlink(missing_ok=True)  # never merge figures left over from an earlier run
    missing = available(name)
    if missing:
        return {"name": name, "status": "skipped", "error": missing}
    log = out_dir / f"{name}.log"
    started = time.monotonic()
    status = "ok"
    with log.open("w", encoding="utf-8") as handle:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", f"bench.{name}", "--size", size, "--out", str(out)],
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUTS[size],
                check=False,
            )
            if proc.returncode != 0:
                status = f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {TIMEOUTS[size]:.0f} s"
    seconds = round(time.monotonic() - started, 1)
    print(f"run_all: {name}: {status} in {seconds} s (log: {log})", file=sys.stderr)
    if status != "ok" or not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        return {"name": name, "status": status if status != "ok" else "failed (no output)", "error": tail}
    data = json.loads(out.read_text(encoding="utf-8"))
    data["status"] = "ok"
    data["wall_seconds"] = seconds
    return data


def keep_others(path: Path, size: str, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With ``--only``: the earlier results of the benchmarks not re-run (same size), then the fresh ones, in order."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    if earlier.get("size") != size:
        return fresh
    by_name = {**earlier.get("benchmarks", {}), **{b["name"]: b for b in fresh}}
    order = [n for n in BENCHMARKS if n in by_name] + [n for n in by_name if n not in BENCHMARKS]
    return [by_name[n] for n in order]


def merge(benchmarks: list[dict[str, Any]], size: str, notes: list[str]) -> dict[str, Any]:
    return {
        "machine": machine_info(),
        "size": size,
        "notes": notes,
        "benchmarks": {b["name"]: b for b in benchmarks},
    }


# --- Markdown --------------------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def render(results: dict[str, Any]) -> str:
    """RESULTS.md: the machine, every target's verdict, then one section per benchmark."""
    machine = results["machine"]
    command = "python -m bench.run_all" + ("" if results["size"] == "full" else f" --size {results['size']}")
    lines = [
        "# farmsync benchmarks",
        "",
        f"Generated by `{command}` (`make bench` runs the full size) on {machine['date']}, commit "
        f"`{machine.get('commit') or 'unknown'}`. Every benchmark compares side by side in one run; all figures "
        "below come from this machine.",
        "",
        *table(
            ["machine", ""],
            [
                ["CPU", machine["cpu"]],
                ["cores", machine["cores"]],
                ["RAM", f"{machine['ram_gib']} GiB"],
                ["OS", machine["os"]],
                ["Python", f"{machine['python']} ({machine['implementation']})"],
            ],
        ),
        "",
        "## Targets",
        "",
    ]
    verdicts = []
    for name, bench in results["benchmarks"].items():
        if bench.get("status") != "ok":
            verdicts.append([name, "(did not run)", "", bench.get("status"), "❌ fail"])
            continue
        for target in bench["targets"]:
            verdicts.append(
                [name, target["name"], target["goal"], target["value"], VERDICT[target["passed"]]]
            )
    lines += table(["benchmark", "target", "goal", "measured", "result"], verdicts)
    for note in results.get("notes", []):
        lines += ["", f"Note: {note}"]
    for name, bench in results["benchmarks"].items():
        lines += ["", f"## {bench.get('title', name)}", ""]
        if bench.get("status") != "ok":
            lines += [
                f"Not measured: {bench.get('status')}.",
                "",
                "```",
                str(bench.get("error", ""))[-1500:],
                "```",
            ]
            continue
        params = ", ".join(f"{k}={cell(v)}" for k, v in bench["params"].items())
        load = bench.get("load_average") or {}
        pace = bench.get("pace_seconds")
        pace_text = (
            f" A fixed CPU loop ({PACE_LOOP:,} squares, best of 3) took {pace['start']} s before and "
            f"{pace['end']} s after: the machine's own pace then."
            if pace
            else ""
        )
        lines += [
            f"`bench/{name}.py` — {params}. Finished {bench.get('finished_at')}, took "
            f"{bench.get('wall_seconds', bench.get('seconds'))} s; 1-minute load average {load.get('start')} before, "
            f"{load.get('end')} after (on {machine['cores']} cores).{pace_text}",
            "",
        ]
        columns = bench["table"]["columns"]
        lines += table(
            [h for _, h in columns], [[row.get(k) for k, _ in columns] for row in bench["table"]["rows"]]
        )
        if bench["notes"]:
            lines.append("")
            lines += [f"- {note}" for note in bench["notes"]]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=None, help="run only these benchmarks")
    p.add_argument("--no-setup", action="store_true", help="do not build link-sync's venv first")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where each benchmark's JSON and log go")
    args = p.parse_args(argv)
    size = size_name(args)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    if not args.no_setup and (problem := ensure_link_sync()):
        notes.append(problem)
    benchmarks = [run_benchmark(name, size, out_dir) for name in (args.only or BENCHMARKS)]
    if size == "full" and args.out is None and out_dir == OUT_DIR:
        json_path, md_path = BENCH / "results.json", BENCH / "RESULTS.md"
    else:
        json_path = args.out or out_dir / f"results-{size}.json"
        md_path = json_path.with_name(f"RESULTS-{size}.md")
    if args.only:
        benchmarks = keep_others(json_path, size, benchmarks)
    results = merge(benchmarks, size, notes)
    write_atomic(json_path, json.dumps(results, indent=2, default=str) + "\n")
    write_atomic(md_path, render(results))
    print(f"run_all: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0 if all(b.get("status") == "ok" for b in benchmarks) else 1


if __name__ == "__main__":
    sys.exit(main())
