"""Issue #8: cold start of every function target, from process start to its first answer, on SQLite vs Firestore.

Each measurement is a fresh Python process (bench/cold_child.py) that loads functions/main.py through
functions-framework's own loader (``create_app(target, source)``, what ``functions-framework --target`` runs) and
answers one request in-process via ``httpx.ASGITransport``. Two requests per target:

- ``GET /health`` (every target serves it: the store opens and is checked);
- the target's own first request, against a simulated farm and a fake printer on 127.0.0.1 that are already in
  sync (the store has run once: a copy of that SQLite file, or one Firestore prefix every run shares): an idle
  print tick, a dry filament run, a no-op G-code run, ``/sync/status`` for app and api.

Both on SQLite and, side by side, on Firestore (the real emulator when it is installed; issue #17 target 7 holds
the webhook and the ticks to < 0.5 s there). ``python -c pass`` in the same interpreter is the interpreter's
floor; per store, a **floor row** is a fresh interpreter that only imports what a function target on that store
cannot avoid (:data:`FLOOR_IMPORTS`: functions-framework and its ASGI module, httpx, pydantic-settings, and the
Firestore client on Firestore) and answers nothing, so a target above the goal can be compared with the least
any target on that store could take. The child imports httpx as the entry points leave it, without httpx's
command-line client (farmsync.startup; bench/cold_child.py says why). Figures are
medians of N runs, interleaved round-robin so drift hits every configuration alike; one warm-up run is discarded.
Each run also reports the CPU seconds the process used (less sensitive than wall time to other work on a shared
machine), and one extra run per target and store is made under ``python -X importtime`` for the import cost per
package. The library and functions/main.py are byte-compiled first, as an installed package is: a process that
compiles the sources on every start (PYTHONDONTWRITEBYTECODE, a read-only tree) pays that on top.
"""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH, ROOT, Result, Target, median, run_main
from farmsync.settings import load_settings

NAME = "cold_start"
CHILD = BENCH / "cold_child.py"
SOURCE = ROOT / "functions" / "main.py"
SERVICE_TOKEN = "bench-service-token"
HOOK_SECRET = "bench-hook-secret"
SERVICE = {"X-Service-Token": SERVICE_TOKEN}
ALL_TARGETS = ("app", "api", "webhook", "backfill_tick", "filament_tick", "gcode_tick")
FIRESTORE_GOAL_TARGETS = ("webhook", "backfill_tick", "filament_tick", "gcode_tick")
"""Issue #17 target 7: the webhook and the tick targets, to their own first answer, on Firestore."""
GOAL_SECONDS = 0.5
FLOOR_TARGET = "(imports only)"
FLOOR_IMPORTS = {
    "sqlite": ["functions_framework", "functions_framework.aio", "httpx", "pydantic_settings"],
    "firestore": [
        "functions_framework",
        "functions_framework.aio",
        "httpx",
        "pydantic_settings",
        "google.cloud.firestore",
    ],
}
"""What a function target cannot avoid importing, per store: the framework that serves it, the HTTP client every
feature talks through, the settings, and on Firestore the client library the design names."""
IMPORT_TOP = 14  # packages kept per import profile (the rest is summed as "other")


@dataclass(frozen=True)
class Size:
    runs: int
    targets: tuple[str, ...] = ALL_TARGETS
    firestore: bool = True


SIZES = {
    "full": Size(runs=7),
    "quick": Size(runs=2),
    "tiny": Size(runs=1, targets=("app", "backfill_tick"), firestore=False),
}


@dataclass(frozen=True)
class Request:
    label: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


HEALTH = Request("GET /health", "GET", "/health")
WORK = {
    "app": Request("GET /sync/status", "GET", "/sync/status", SERVICE),
    "api": Request("GET /sync/status", "GET", "/sync/status", SERVICE),
    "webhook": Request(
        "POST print_complete (idle tick)",
        "POST",
        "/",
        {"Authorization": f"Bearer {HOOK_SECRET}", "Content-Type": "application/json"},
        {"event": "print_complete"},
    ),
    "backfill_tick": Request("POST (idle print tick)", "POST", "/", SERVICE),
    "filament_tick": Request("POST (dry filament run)", "POST", "/", SERVICE),
    "gcode_tick": Request("POST (no-op G-code run)", "POST", "/", SERVICE),
}


@dataclass(frozen=True)
class Config:
    """One thing to measure: a target, a request and a store (or the bare interpreter)."""

    key: str
    target: str
    request: Request
    store: str  # sqlite | firestore | none
    floor: bool = False  # only FLOOR_IMPORTS[store], no target, no request


# --- the world the functions talk to ---------------------------------------------------------------------------


@contextmanager
def upstreams(workdir: Path) -> Iterator[dict[str, str]]:
    """A simulated farm and one fake Buddy printer on 127.0.0.1, and the environment a deployment would set."""
    from farmsync_sim.buddy import FakeBuddy
    from farmsync_sim.server import SimFarm

    source = workdir / "gcode"
    source.mkdir()
    for name in ("benchy.gcode", "clips/clip.gcode"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"G28\n" * 2048)
    with (
        SimFarm("small") as farm,
        FakeBuddy(password="bench-printer", spool_dir=workdir / "spool") as printer,
    ):
        printers = workdir / "printers.yml"
        printers.write_text(
            f"P1:\n  printer_type: MK4\n  host: {printer.url}\n  username: maker\n  password: bench-printer\n",
            encoding="utf-8",
        )
        ids = farm.ids
        yield {
            "BAMBUDDY_BASE_URL": farm.bambuddy_url,
            "BAMBUDDY_API_KEY": farm.api_key,
            "INVENTREE_BASE_URL": farm.inventree_url,
            "INVENTREE_TOKEN": farm.token,
            "INVENTREE_PART_CATEGORY_ID": str(ids["INVENTREE_PART_CATEGORY_ID"]),
            "INVENTREE_STOCK_LOCATION_ID": str(ids["INVENTREE_STOCK_LOCATION_ID"]),
            "FILAMENT_TRACKING_ENABLED": "true",
            "FILAMENT_PART_CATEGORY_ID": str(ids["FILAMENT_PART_CATEGORY_ID"]),
            "FILAMENT_STORAGE_LOCATION_ID": str(ids["FILAMENT_STORAGE_LOCATION_ID"]),
            "FILAMENT_LOADED_LOCATION_ID": str(ids["FILAMENT_LOADED_LOCATION_ID"]),
            "FILAMENT_PRINTER_LOCATION_MAP": str(ids["FILAMENT_PRINTER_LOCATION_MAP"]),
            "GCODE_PRINTERS_FILE": str(printers),
            "GCODE_SOURCE_DIR": str(source),
            "GCODE_DRY_RUN": "false",
            "SERVICE_API_TOKEN": SERVICE_TOKEN,
            "WEBHOOK_SHARED_SECRET": HOOK_SECRET,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "STORE_BACKEND": "sqlite",
            "FARMSYNC_ENV_FILE": "/dev/null",
        }


def prepare_store(env: dict[str, str], data_dir: Path) -> None:
    """A store that has synced once (prints ticked, printer mirrored), so the measured requests are idle ones.
    The store ``env`` chooses: SQLite in ``data_dir``, or the Firestore prefix every Firestore run then shares
    (an idle run leaves it as it found it)."""
    from farmsync.gcode.service import run_gcode
    from farmsync.prints.service import run_tick
    from farmsync.services import Services

    values = {k.lower(): v for k, v in env.items() if k != "FARMSYNC_ENV_FILE"}
    services = Services(load_settings("/dev/null", **values, data_dir=data_dir))

    async def once() -> None:
        try:
            await run_tick(services)
            await run_gcode(services, dry_run=False)
        finally:
            await services.aclose()

    asyncio.run(once())


def compile_sources() -> None:
    """Byte-compile the library and functions/main.py, as pip does for an installed package, so no run pays
    for compiling them (this environment may set PYTHONDONTWRITEBYTECODE, and the runs never write)."""
    compileall.compile_dir(ROOT / "shared" / "farmsync", quiet=1)
    compileall.compile_file(SOURCE, quiet=1)


@contextmanager
def firestore_emulator() -> Iterator[str | None]:
    """FIRESTORE_EMULATOR_HOST: the one already set, else a fresh emulator; None when it cannot be started."""
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    from tests.emulator import EmulatorError, FirestoreEmulator

    emulator = FirestoreEmulator()
    try:
        emulator.start()
    except EmulatorError as exc:
        print(f"cold_start: no Firestore emulator ({exc}); Firestore runs skipped", file=sys.stderr)
        yield None
        return
    try:
        yield emulator.host
    finally:
        emulator.stop()


# --- one measurement ---------------------------------------------------------------------------------------------


def child_env(base: dict[str, str], store: str, data_dir: Path, emulator: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIRESTORE_", "GCODE_", "FILAMENT_"))}
    env.update(base)
    env["DATA_DIR"] = str(data_dir)
    if store == "firestore" and emulator:
        env.update(firestore_settings(emulator))
    return env


def firestore_settings(emulator: str) -> dict[str, str]:
    """The Firestore store on the emulator, in the one prefix this benchmark's runs share."""
    return {
        "STORE_BACKEND": "firestore",
        "FIRESTORE_EMULATOR_HOST": emulator,
        "FIRESTORE_PROJECT_ID": "demo-farmsync",
        "FIRESTORE_COLLECTION_PREFIX": f"bench{os.getpid()}",
    }


def child_spec(config: Config) -> dict[str, Any]:
    if config.floor:
        return {"mode": "floor", "imports": FLOOR_IMPORTS[config.store]}
    return {
        "mode": "pass" if config.store == "none" else "serve",
        "target": config.target,
        "source": str(SOURCE),
        "method": config.request.method,
        "path": config.request.path,
        "headers": config.request.headers,
        "json": config.request.json,
    }


def measure(config: Config, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Start the child, wait for its line, and split its time into phases (seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(child_spec(config))],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{config.key}: child failed ({proc.returncode}): {proc.stderr[-1500:]}")
    seen = json.loads(lines[-1])
    return {
        "total": seen["response"] - started,
        "startup": seen["main"] - started,
        "harness": seen["harness"] - seen["main"],
        "load": seen["loaded"] - seen["harness"],
        "request": seen["response"] - seen["loaded"],
        "cpu": seen["cpu"],
        "status": seen["status"],
        # the answer itself only when it was an error (results.json stays small)
        "body": seen.get("body", "") if int(seen["status"]) >= 400 else None,
        "grpc_or_firestore_modules": seen.get("grpc_or_firestore_modules", 0),
    }


def import_profile(config: Config, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One more run of ``config`` under ``python -X importtime``: milliseconds of import per top-level package
    (each module's own time, so nothing is counted twice), the biggest first; "total" is every import. Less
    noisy than wall time, though the profiler itself makes imports slower than in the timed runs."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(CHILD), json.dumps(child_spec(config))],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{config.key}: importtime child failed ({proc.returncode}): {proc.stderr[-1500:]}"
        )
    per: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            package = found[2].split(".")[0]
            per[package] = per.get(package, 0.0) + int(found[1]) / 1000
    ranked = sorted(per.items(), key=lambda kv: -kv[1])
    out = {name: round(ms, 1) for name, ms in ranked[:IMPORT_TOP]}
    out["other"] = round(sum(ms for _, ms in ranked[IMPORT_TOP:]), 1)
    out["total"] = round(sum(per.values()), 1)
    return out


def configs_for(size: Size, *, stores: tuple[str, ...]) -> list[Config]:
    """What to measure on ``stores``: the bare interpreter ("none"), and health and work on each store."""
    floor = Request("none: the interpreter's floor", "-", "-")
    configs = [Config("python -c pass", "(python -c pass)", floor, "none")] if "none" in stores else []
    for store in ("sqlite", "firestore"):
        if store in stores:
            imports = Request("none: imports only (see notes)", "-", "-")
            configs.append(Config(f"floor {store}", FLOOR_TARGET, imports, store, floor=True))
    for target in size.targets:
        for store in ("sqlite", "firestore"):
            if store in stores:
                configs.append(Config(f"{target} health {store}", target, HEALTH, store))
                configs.append(Config(f"{target} work {store}", target, WORK[target], store))
    return configs


def rounds(
    configs: list[Config],
    runs: int,
    base: dict[str, str],
    template: Path,
    workdir: Path,
    emulator: str | None,
    samples: dict[str, list[dict[str, Any]]],
    imports: dict[str, dict[str, float]],
) -> None:
    """``runs`` rounds over ``configs``, round-robin; round 0 warms the caches and is discarded. Then one
    import profile of each target's own first request."""
    for index in range(runs + 2):
        for config in configs:
            profile = index == runs + 1
            if profile and (config.store == "none" or config.floor or config.request == HEALTH):
                continue
            run_dir = workdir / f"run-{index}-{config.key.replace(' ', '-')}"
            shutil.copytree(template, run_dir / "data")
            env = child_env(base, config.store, run_dir / "data", emulator)
            if profile:
                imports[config.key] = import_profile(config, env, run_dir)
            else:
                figures = measure(config, env, run_dir)
                if index:
                    samples.setdefault(config.key, []).append(figures)
            shutil.rmtree(run_dir, ignore_errors=True)


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Cold start of the function targets (issue #8)",
        quick=quick,
        params={"runs_per_config": size.runs, "targets": list(size.targets), "python": sys.executable},
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    imports: dict[str, dict[str, float]] = {}
    configs: list[Config] = []
    emulator: str | None = None
    compile_sources()
    result.params["bytecode"] = "library and functions/main.py byte-compiled before the runs"
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        workdir = Path(tmp)
        with upstreams(workdir) as base:
            template = workdir / "template-data"
            prepare_store(base, template)
            # SQLite first, with no emulator running: a JVM warming up on 2 cores would skew every figure.
            configs = configs_for(size, stores=("none", "sqlite"))
            rounds(configs, size.runs, base, template, workdir, None, samples, imports)
            if size.firestore:
                with firestore_emulator() as emulator:
                    if emulator:
                        prepare_store({**base, **firestore_settings(emulator)}, template)
                        firestore = configs_for(size, stores=("firestore",))
                        rounds(firestore, size.runs, base, template, workdir, emulator, samples, imports)
                        configs += firestore
        result.params["firestore"] = (
            "emulator" if emulator else "skipped (no emulator)" if size.firestore else "not in this size"
        )
    result.columns = [
        ("target", "target"),
        ("request", "first request"),
        ("store", "store"),
        ("total", "to first answer s (median)"),
        ("spread", "min–max s"),
        ("cpu", "CPU s (median)"),
        ("startup", "interpreter s"),
        ("harness", "harness (httpx) s"),
        ("load", "load target s"),
        ("request_s", "request s"),
        ("status", "HTTP"),
        ("grpc", "grpc/firestore modules"),
    ]

    def order(config: Config) -> tuple[int, int, int]:
        target = ALL_TARGETS.index(config.target) if config.target in ALL_TARGETS else -1
        return target, config.request != HEALTH, ("none", "sqlite", "firestore").index(config.store)

    for config in sorted(configs, key=order):
        runs = samples.get(config.key, [])
        if not runs:
            continue
        totals = [r["total"] for r in runs]
        row: dict[str, Any] = {
            "target": config.target,
            "request": config.request.label,
            "store": config.store,
            "total": round(median(totals), 3),
            "spread": f"{min(totals):.3f}–{max(totals):.3f}",
            "best": round(min(totals), 3),
            "cpu": round(median([r["cpu"] for r in runs]), 3),
            "startup": round(median([r["startup"] for r in runs]), 3),
        }
        if config.store != "none" and not config.floor:
            row.update(
                harness=round(median([r["harness"] for r in runs]), 3),
                load=round(median([r["load"] for r in runs]), 3),
                request_s=round(median([r["request"] for r in runs]), 3),
                status=",".join(sorted({str(r["status"]) for r in runs})),
                grpc=max(r["grpc_or_firestore_modules"] for r in runs),
            )
        result.rows.append(row)
    result.targets = targets(result.rows)
    result.notes = [
        *firestore_notes(result.rows),
        *floor_notes(result.rows),
        "total = process start → first answer, everything included; 'harness' is the bench's own import of httpx "
        "(for ASGITransport), which a deployed function does not pay to answer /health",
        "the target's own first request talks to a simulated farm / fake printer on 127.0.0.1 with no added latency",
        "CPU s = user + system seconds of the whole process (all its threads) up to its first answer",
        *import_notes(imports),
    ]
    result.details = {"samples": samples, "import_ms": imports}
    return result


def import_notes(imports: dict[str, dict[str, float]]) -> list[str]:
    """The import profile of the webhook's first request per store, the biggest packages first."""
    notes = []
    for store in ("sqlite", "firestore"):
        profile = imports.get(f"webhook work {store}")
        if profile:
            top = ", ".join(
                f"{name} {ms:g}" for name, ms in profile.items() if name not in ("total", "other")
            )
            notes.append(
                f"imports of the webhook's first answer on {store} (-X importtime, ms of each package's own "
                f"modules): {profile['total']:g} in all; {top}; other {profile['other']:g}"
            )
    return notes


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    out = []
    floors = {r["store"]: r for r in rows if r["target"] == FLOOR_TARGET}
    rows = [r for r in rows if r["target"] != FLOOR_TARGET]
    ok_status = all(str(r["status"]).startswith("2") for r in rows if r["store"] != "none")
    for label, picked in (
        ("GET /health", [r for r in rows if r["store"] == "sqlite" and r["request"] == HEALTH.label]),
        (
            "the target's own first request",
            [r for r in rows if r["store"] == "sqlite" and r["request"] != HEALTH.label],
        ),
    ):
        if not picked:
            continue
        worst = max(picked, key=lambda r: r["total"])
        out.append(
            Target(
                f"cold start to first answer on SQLite, {label}, slowest target (#8)",
                f"< {GOAL_SECONDS} s",
                f"{worst['total']} s ({worst['target']})",
                worst["total"] < GOAL_SECONDS,
                f"median of the slowest target; its fastest run {worst['best']} s; without the harness's httpx "
                f"import {worst['total'] - worst['harness']:.3f} s",
            )
        )
    firestore = [
        r
        for r in rows
        if r["store"] == "firestore"
        and r["request"] != HEALTH.label
        and r["target"] in FIRESTORE_GOAL_TARGETS
    ]
    if firestore:
        worst = max(firestore, key=lambda r: r["total"])
        out.append(
            Target(
                "cold start to first answer on Firestore (emulator), the webhook's and the ticks' own first "
                "request, slowest target (#17 target 7)",
                f"< {GOAL_SECONDS} s",
                f"{worst['total']} s ({worst['target']})",
                worst["total"] < GOAL_SECONDS,
                f"median of the slowest target; its fastest run {worst['best']} s, CPU {worst['cpu']} s; without "
                f"the harness's httpx import {worst['total'] - worst['harness']:.3f} s"
                + floor_text(floors, "firestore"),
            )
        )
    out.append(Target("every first request answered 2xx", "2xx", ok_status, ok_status))
    return out


def floor_text(floors: dict[str, dict[str, Any]], store: str) -> str:
    """The floor of ``store`` (median, and its fastest run), for a target's detail; empty when not measured."""
    floor = floors.get(store)
    if not floor:
        return ""
    return (
        f"; the floor (only {', '.join(FLOOR_IMPORTS[store])}) {floor['total']} s, fastest {floor['best']} s"
    )


def floor_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Per store, the floor and what the webhook and the ticks take above it (farmsync's own share)."""
    notes = []
    for store in ("sqlite", "firestore"):
        floor = next((r for r in rows if r["target"] == FLOOR_TARGET and r["store"] == store), None)
        if not floor:
            continue
        above = [
            f"{r['target']} +{r['total'] - floor['total']:.3f} s"
            for r in rows
            if r["store"] == store and r["target"] in FIRESTORE_GOAL_TARGETS and r["request"] != HEALTH.label
        ]
        notes.append(
            f"floor on {store}: {floor['total']} s (fastest {floor['best']} s) for a fresh interpreter importing "
            f"only {', '.join(FLOOR_IMPORTS[store])}, no target loaded, nothing answered"
            + (f"; each target's own first request above it: {', '.join(above)}" if above else "")
        )
    return notes


def firestore_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the Firestore store adds to the same request, per target (same process recipe)."""
    notes = []
    for label, health in (("GET /health", True), ("the target's own first request", False)):
        picked = {
            (r["target"], r["store"]): r
            for r in rows
            if r["store"] != "none"
            and r["target"] != FLOOR_TARGET
            and (r["request"] == HEALTH.label) == health
        }
        deltas = [
            f"{target} +{row['total'] - picked[target, 'sqlite']['total']:.3f} s"
            for (target, store), row in picked.items()
            if store == "firestore" and (target, "sqlite") in picked
        ]
        if deltas:
            notes.append(f"{label} on Firestore (emulator) instead of SQLite: " + ", ".join(deltas))
    return notes


@contextmanager
def _none() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
