"""Issue #8: cold start of every function target, from process start to its first answer, on SQLite vs Firestore.

Each measurement is a fresh Python process (bench/cold_child.py) that loads functions/main.py through
functions-framework's own loader (``create_app(target, source)``, what ``functions-framework --target`` runs) and
answers one request in-process via ``httpx.ASGITransport``. Two requests per target:

- ``GET /health`` (every target serves it: the store opens and is checked), on SQLite and, side by side, on
  Firestore (the real emulator when it is installed; the google-cloud/grpc import is the cost to compare);
- the target's own first request on SQLite, against a simulated farm and a fake printer on 127.0.0.1 that are
  already in sync (the store is a copy of one that has run once): an idle print tick, a dry filament run, a
  no-op G-code run, ``/sync/status`` for app and api.

``python -c pass`` in the same interpreter is the floor. Figures are medians of N runs, interleaved round-robin
so drift hits every configuration alike; one warm-up run is discarded.
"""

from __future__ import annotations

import asyncio
import json
import os
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
GOAL_SECONDS = 0.5


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
    """A store that has synced once (prints ticked, printer mirrored), so the measured requests are idle ones."""
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
        env.update(
            STORE_BACKEND="firestore",
            FIRESTORE_EMULATOR_HOST=emulator,
            FIRESTORE_PROJECT_ID="demo-farmsync",
            FIRESTORE_COLLECTION_PREFIX=f"bench{os.getpid()}",
        )
    return env


def measure(config: Config, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Start the child, wait for its line, and split its time into phases (seconds)."""
    spec = {
        "mode": "pass" if config.store == "none" else "serve",
        "target": config.target,
        "source": str(SOURCE),
        "method": config.request.method,
        "path": config.request.path,
        "headers": config.request.headers,
        "json": config.request.json,
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(spec)],
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
        "status": seen["status"],
        # the answer itself only when it was an error (results.json stays small)
        "body": seen.get("body", "") if int(seen["status"]) >= 400 else None,
        "grpc_or_firestore_modules": seen.get("grpc_or_firestore_modules", 0),
    }


def configs_for(size: Size, *, stores: tuple[str, ...]) -> list[Config]:
    """What to measure on ``stores``: the bare interpreter ("none"), health and work on SQLite, health on Firestore."""
    floor = Request("none: the interpreter's floor", "-", "-")
    configs = [Config("python -c pass", "(python -c pass)", floor, "none")] if "none" in stores else []
    for target in size.targets:
        if "sqlite" in stores:
            configs.append(Config(f"{target} health sqlite", target, HEALTH, "sqlite"))
            configs.append(Config(f"{target} work sqlite", target, WORK[target], "sqlite"))
        if "firestore" in stores:
            configs.append(Config(f"{target} health firestore", target, HEALTH, "firestore"))
    return configs


def rounds(
    configs: list[Config],
    runs: int,
    base: dict[str, str],
    template: Path,
    workdir: Path,
    emulator: str | None,
    samples: dict[str, list[dict[str, Any]]],
) -> None:
    """``runs`` rounds over ``configs``, round-robin; round 0 warms the caches and is discarded."""
    for index in range(runs + 1):
        for config in configs:
            run_dir = workdir / f"run-{index}-{config.key.replace(' ', '-')}"
            shutil.copytree(template, run_dir / "data")
            env = child_env(base, config.store, run_dir / "data", emulator)
            figures = measure(config, env, run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
            if index:
                samples.setdefault(config.key, []).append(figures)


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Cold start of the function targets (issue #8)",
        quick=quick,
        params={"runs_per_config": size.runs, "targets": list(size.targets), "python": sys.executable},
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    configs: list[Config] = []
    emulator: str | None = None
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        workdir = Path(tmp)
        with upstreams(workdir) as base:
            template = workdir / "template-data"
            prepare_store(base, template)
            # SQLite first, with no emulator running: a JVM warming up on 2 cores would skew every figure.
            configs = configs_for(size, stores=("none", "sqlite"))
            rounds(configs, size.runs, base, template, workdir, None, samples)
            if size.firestore:
                with firestore_emulator() as emulator:
                    if emulator:
                        firestore = configs_for(size, stores=("firestore",))
                        rounds(firestore, size.runs, base, template, workdir, emulator, samples)
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
            "startup": round(median([r["startup"] for r in runs]), 3),
        }
        if config.store != "none":
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
        "total = process start → first answer, everything included; 'harness' is the bench's own import of httpx "
        "(for ASGITransport), which a deployed function does not pay to answer /health",
        "the target's own first request talks to a simulated farm / fake printer on 127.0.0.1 with no added latency",
    ]
    result.details = {"samples": samples}
    return result


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    out = []
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
                f"cold start to first answer on SQLite, {label}, slowest target",
                f"< {GOAL_SECONDS} s",
                f"{worst['total']} s ({worst['target']})",
                worst["total"] < GOAL_SECONDS,
                f"median of the slowest target; its fastest run {worst['best']} s; without the harness's httpx "
                f"import {worst['total'] - worst['harness']:.3f} s",
            )
        )
    out.append(Target("every first request answered 2xx", "2xx", ok_status, ok_status))
    return out


def firestore_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the Firestore store adds to GET /health, per target (same request, same process recipe)."""
    sqlite = {r["target"]: r for r in rows if r["store"] == "sqlite" and r["request"] == HEALTH.label}
    firestore = {r["target"]: r for r in rows if r["store"] == "firestore"}
    deltas = [f"{t} +{firestore[t]['total'] - sqlite[t]['total']:.3f} s" for t in sqlite if t in firestore]
    if not deltas:
        return []
    return ["GET /health on Firestore (emulator) instead of SQLite: " + ", ".join(deltas)]


@contextmanager
def _none() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
