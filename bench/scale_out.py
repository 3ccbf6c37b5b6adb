"""Scale out: 1, 2 and 4 function instances behind the LAN gateway's nginx, one Firestore (#17, target 9).

Side by side in one run, each size on a fresh simulated farm and a fresh Firestore collection prefix (one
emulator for the whole run): ``n`` instances, each a ``webhook`` and an ``api`` functions-framework process
serving functions/main.py, behind nginx running deploy/lan/nginx/farmsync.conf and farmsync-routes.conf. The
shipped gateway has one server per upstream; it is rendered with ``n`` servers in ``farmsync_webhook`` and
``farmsync_api``, which is what a user scaling out adds (nginx's default round robin, the file's own keepalive).

The load, all at once through the gateway: the webhook storm (webhooks at a fixed concurrency), prints finishing
on the farm meanwhile (each with its usage row, as Bambuddy writes them, and its own webhook), backfill callers
and filament callers (``dry_run=false``, so usage is charged) calling again and again until the storm is over.
InvenTree is the capacity-limited simulator of bench/capacity.py (N requests in service, a service time each,
``database is locked`` when writes collide). Every instance has its own adaptive limit; they share the server.

Correctness is judged strictly, after one settling backfill and filament run: one stock item per completed run
(no duplicate, none missing), each usage row's removal marker once in InvenTree's stock history and every
spool's quantity down by exactly its rows' grams (no double charge), no Bambuddy spool created twice. Throughput
is judged relative to the upstream limit: prints/s until the last print's stock item against N ÷ service time ÷
InvenTree requests per print (counted on an unlimited server, as bench/capacity.py does), and the share of the
server's request capacity used while there was InvenTree work. The machine is shared: see the load average.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from bench import capacity
from bench.backfill import DEFAULT_CONCURRENCY, completed_runs, scenario_for, stock_batches
from bench.backfill import Size as BackfillSize
from bench.common import HOST, ROOT, Result, Target, run_main
from bench.filament_usage import add_rows, quantities
from farmsync.filament.ledger import usage_id_of
from farmsync.filament.run import run_filament
from farmsync.filament.usage import USAGE_STREAM
from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync.services import Services
from farmsync.store import EMULATOR_VARIABLE
from farmsync.store.firestore import FirestoreStore
from farmsync_sim.server import SimFarm
from tests.emulator import FirestoreEmulator
from tests.fixtures.farm import farm_settings
from tests.integration.test_lan_gateway import free_port, nginx_test, render_nginx, stop

NAME = "scale_out"
SOURCE = ROOT / "functions" / "main.py"
TARGETS = ("webhook", "api")  # per instance: the targets this load reaches through the gateway
TOKEN = "bench-service-token"  # loopback-only secrets of a simulated farm
SECRET = "bench-hook-secret"
SERVICE = {"X-Service-Token": TOKEN}
HOOK = {"Authorization": f"Bearer {SECRET}"}
PROJECT = "demo-farmsync"


@dataclass(frozen=True)
class Size:
    instances: tuple[int, ...]
    runs: int  # print-log runs waiting when the storm starts (the completed ones get stock)
    usage_rows: int  # usage rows waiting when the storm starts
    new_prints: int  # prints finishing during the storm, each with a usage row and a webhook
    webhooks: int
    concurrency: int
    backfillers: int
    filament_runners: int
    capacity: int
    service_ms: float
    write_lock_ms: float
    seed: int = 7


SIZES = {
    "full": Size((1, 2, 4), 120, 60, 24, 600, 50, 2, 2, capacity=2, service_ms=40.0, write_lock_ms=4.0),
    "quick": Size((1, 2, 4), 16, 8, 4, 80, 20, 2, 2, capacity=2, service_ms=20.0, write_lock_ms=2.0),
    "tiny": Size((1, 2), 6, 6, 2, 20, 10, 1, 1, capacity=2, service_ms=5.0, write_lock_ms=1.0),
}


# --- the gateway and the instances -------------------------------------------------------------------------------


def scale_upstreams(site: str, servers: dict[str, list[int]]) -> str:
    """farmsync.conf with each named upstream's one ``server`` line turned into one line per instance."""
    for target, ports in servers.items():
        lines = "".join(f"    server {HOST}:{port};\n" for port in ports)
        site, n = re.subn(
            rf"(upstream farmsync_{target} \{{\n)\s*server {re.escape(HOST)}:\d+;\n", rf"\g<1>{lines}", site
        )
        if n != 1:
            raise RuntimeError(
                f"no upstream farmsync_{target} with one server in deploy/lan/nginx/farmsync.conf"
            )
    return site


@dataclass
class Cluster:
    """``n`` instances of each target and nginx in front, every one a child in its own process group."""

    nginx: str
    workdir: Path
    env: dict[str, str]
    instances: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[str, list[int]] = field(default_factory=dict)
    url: str = ""

    def start(self) -> Cluster:
        self.ports = {t: [free_port() for _ in range(self.instances)] for t in TARGETS}
        for target, ports in self.ports.items():
            for index, port in enumerate(ports):
                log = (self.workdir / f"{target}-{index}.log").open("wb")
                with log:
                    self.procs.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "functions_framework",
                                f"--target={target}",
                                f"--source={SOURCE}",
                                f"--host={HOST}",
                                f"--port={port}",
                            ],
                            cwd=self.workdir,
                            env=self.env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    )
        prefix = self.workdir / "nginx"
        listen = free_port()
        main = render_nginx(prefix, listen, {t: ports[0] for t, ports in self.ports.items()})
        site = prefix / "conf" / "farmsync.conf"
        site.write_text(scale_upstreams(site.read_text(encoding="utf-8"), self.ports), encoding="utf-8")
        nginx_test(self.nginx, prefix, main)
        command = [self.nginx, "-p", str(prefix), "-e", str(prefix / "logs/error.log"), "-c", str(main)]
        with (prefix / "logs/stderr.log").open("wb") as log:
            self.procs.append(
                subprocess.Popen(
                    [*command, "-g", "daemon off;"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        self.url = f"http://{HOST}:{listen}"
        self.wait_ready([f"http://{HOST}:{p}/health" for ports in self.ports.values() for p in ports])
        return self

    def wait_ready(self, urls: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = [*urls, f"{self.url}/health"]
        while pending:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].args} exited with {dead[0].returncode}: see {self.workdir}")
            for url in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(url, timeout=2)
                    pending.remove(url)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not up after {timeout:.0f} s: {pending}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time the instances and nginx have used so far: every live process of their process groups
        (functions-framework serves from a gunicorn worker, nginx from its worker), read from /proc."""
        groups = {proc.pid for proc in self.procs}
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) in groups:  # pgrp
                    total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def stop(self) -> None:
        """nginx first (it drains), then the instances; every process group, even after a failure."""
        if self.procs:
            stop(self.procs[-1])
            stop(*self.procs[:-1])


def instance_env(farm: SimFarm, data_dir: Path, emulator: str, prefix: str, rows: int) -> dict[str, str]:
    """What a deployment sets for every instance: one farm, one Firestore (one collection prefix)."""
    ids = farm.ids
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIRESTORE_", "GCODE_", "FILAMENT_"))}
    env.update(
        BAMBUDDY_BASE_URL=farm.bambuddy_url,
        BAMBUDDY_API_KEY=farm.api_key,
        INVENTREE_BASE_URL=farm.inventree_url,
        INVENTREE_TOKEN=farm.token,
        INVENTREE_PART_CATEGORY_ID=str(ids["INVENTREE_PART_CATEGORY_ID"]),
        INVENTREE_STOCK_LOCATION_ID=str(ids["INVENTREE_STOCK_LOCATION_ID"]),
        FILAMENT_TRACKING_ENABLED="true",
        FILAMENT_DRY_RUN="false",
        FILAMENT_PART_CATEGORY_ID=str(ids["FILAMENT_PART_CATEGORY_ID"]),
        FILAMENT_STORAGE_LOCATION_ID=str(ids["FILAMENT_STORAGE_LOCATION_ID"]),
        FILAMENT_LOADED_LOCATION_ID=str(ids["FILAMENT_LOADED_LOCATION_ID"]),
        FILAMENT_PRINTER_LOCATION_MAP=str(ids["FILAMENT_PRINTER_LOCATION_MAP"]),
        FILAMENT_USAGE_LIMIT=str(max(200, rows + 100)),
        SERVICE_API_TOKEN=TOKEN,
        WEBHOOK_SHARED_SECRET=SECRET,
        STORE_BACKEND="firestore",
        FIRESTORE_EMULATOR_HOST=emulator,
        FIRESTORE_PROJECT_ID=PROJECT,
        FIRESTORE_COLLECTION_PREFIX=prefix,
        DATA_DIR=str(data_dir),
        LOG_FORMAT="json",
        LOG_LEVEL="WARNING",
        FARMSYNC_ENV_FILE="/dev/null",
    )
    return env


async def start_usage_after(farm: SimFarm, data_dir: Path, emulator: str, prefix: str, after: int) -> None:
    """Only the bench's usage rows are new: the usage cursor at the last older row, in the shared store."""
    settings = farm_settings(
        farm,
        data_dir,
        store_backend="firestore",
        firestore_emulator_host=emulator,
        firestore_project_id=PROJECT,
        firestore_collection_prefix=prefix,
    )
    services = Services(settings)
    try:
        await services.store.cas_cursor(USAGE_STREAM, None, {"id": after})
    finally:
        await services.aclose()


# --- the load ----------------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the callers saw."""

    webhooks: list[int]
    backfills: list[int]
    filament: list[int]
    prints_added: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    failed_rows: dict[int, str] = field(default_factory=dict)  # usage rows a storm run failed (retried later)


async def storm(size: Size, url: str, farm: SimFarm) -> Load:
    """The webhook storm, prints finishing, backfills and filament runs, all at once through the gateway."""
    load = Load([], [], [])
    done = asyncio.Event()
    printers = sorted(farm.bambuddy.state.printers)[:-1]  # the scenario's last printer is a spare
    limits = httpx.Limits(max_connections=size.concurrency + size.backfillers + size.filament_runners + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def call(kind: list[int], method: str, path: str, **kwargs: Any) -> None:
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                kind.append(0)
                load.errors.append(f"{method} {path}: {exc!r}")
                return
            kind.append(response.status_code)
            if response.status_code != 200:
                load.errors.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
            elif kind is load.filament:
                load.failed_rows.update(failed_rows(response.json()))

        body = {"event": "print_complete", "printer": "B1-X1-CARBON", "filename": "Benchy"}
        gate = asyncio.Semaphore(size.concurrency)

        async def webhook() -> None:
            async with gate:
                await call(load.webhooks, "POST", "/webhooks/bambuddy", json=body, headers=HOOK)

        async def printing() -> None:
            """Prints finish early in the storm, 50 ms apart: Bambuddy writes the run and its usage, then calls
            the hook (not waiting for its answer, so every print is there while the backlog is being synced)."""
            calls = []
            for n in range(size.new_prints):
                await asyncio.sleep(0.05)
                printer = printers[n % len(printers)]
                added = await client.post(
                    f"{farm.bambuddy_root}/_sim/prints", json={"printer": printer, "print_name": f"Scale {n}"}
                )
                added.raise_for_status()
                load.prints_added += 1
                calls.append(asyncio.create_task(webhook()))
            await asyncio.gather(*calls)

        async def again(kind: list[int], path: str) -> None:
            while True:
                await call(kind, "POST", path, headers=SERVICE)
                if done.is_set():
                    return

        async def hooks() -> None:
            await asyncio.gather(*(webhook() for _ in range(size.webhooks)), printing())
            done.set()

        started = time.perf_counter()
        await asyncio.gather(
            hooks(),
            *(again(load.backfills, "/sync/backfill") for _ in range(size.backfillers)),
            *(again(load.filament, "/sync/filament?dry_run=false") for _ in range(size.filament_runners)),
        )
        load.seconds = time.perf_counter() - started
    return load


async def settle(farm: SimFarm, data_dir: Path, emulator: str, prefix: str, rows: int) -> list[str]:
    """The farm's next runs, an hour on (every retry's backoff over): a backfill and a filament run on the
    shared store, after the instances stopped. What they cannot finish is reported."""
    settings = farm_settings(
        farm,
        data_dir,
        store_backend="firestore",
        firestore_emulator_host=emulator,
        firestore_project_id=PROJECT,
        firestore_collection_prefix=prefix,
        filament_tracking_enabled=True,
        filament_dry_run=False,
        filament_usage_limit=max(200, rows + 100),
        log_level="WARNING",
    )
    later = FirestoreStore(project=PROJECT, prefix=prefix, clock=lambda: time.time() + 3600)
    services = Services(settings, store=later)
    try:
        prints = await ticks.backfill(print_sync(services), retry_now=True)
        filament = await run_filament(services, dry_run=False)
    finally:
        await services.aclose()
    totals = prints.totals()
    problems = [f"backfill: {n} {kind}" for kind in ("failed", "parked", "pending") if (n := totals[kind])]
    lines = filament.usage.lines if filament.usage else []
    problems += [
        f"usage {line.usage_id}: {line.outcome} {line.reason or line.error}"
        for line in lines
        if not line.finished
    ]
    return problems


def failed_rows(answer: dict[str, Any]) -> dict[int, str]:
    """Usage rows a filament run's answer says failed this time (retried after a backoff), with the error."""
    lines = (answer.get("usage") or {}).get("lines", [])
    return {
        int(line["usage_id"]): str(line.get("error")) for line in lines if line.get("outcome") == "failed"
    }


# --- what must hold ----------------------------------------------------------------------------------------------


def prints_check(farm: SimFarm) -> dict[str, int]:
    batches = stock_batches(farm)
    expected = {f"bambuddy-{r['archive_id']}-{r['id']}" for r in completed_runs(farm)}
    return {
        "completed_runs": len(expected),
        "duplicates": sum(count - 1 for count in batches.values() if count > 1),
        "missing": len(expected - set(batches)),
        "unexpected": len(set(batches) - expected),
    }


def usage_check(farm: SimFarm, start: dict[str, float], after: int) -> dict[str, Any]:
    """Markers once per row, and every spool down by exactly the grams of its rows that were charged."""
    state = farm.bambuddy.state
    charges = Counter(
        usage_id_of(str(t["notes"]))
        for t in farm.inventree.state.tracking.values()
        if usage_id_of(str(t["notes"]))
    )
    rows = {rid: row for rid, row in state.usage.items() if rid > after}
    known = set(start)
    owed: Counter[str] = Counter()
    expected = set()
    for rid, row in rows.items():
        tag = str(state.spools[row["spool_id"]]["tag_uid"] or "").upper()
        if tag in known and row["status"] == "completed":
            expected.add(rid)
            owed[tag] += float(row["weight_used"])
    now = quantities(farm)
    wrong = sorted(tag for tag in known if abs(start[tag] - owed[tag] - now[tag]) > 1e-3)
    return {
        "usage_rows": len(expected),
        "double_charges": sum(count - 1 for rid, count in charges.items() if rid in rows and count > 1),
        "uncharged": len([rid for rid in expected if charges[rid] == 0]),
        "uncharged_rows": sorted(rid for rid in expected if charges[rid] == 0)[:20],
        "quantities_wrong": len(wrong),
    }


def parts_twice(farm: SimFarm) -> int:
    """Parts sharing an IPN (farmsync finds a print's part by its IPN, creating it under a claim on the IPN)."""
    ipns = Counter(str(p["IPN"]) for p in farm.inventree.state.parts.values() if p.get("IPN"))
    return sum(count - 1 for count in ipns.values() if count > 1)


def spools_created_twice(farm: SimFarm) -> int:
    tags = Counter(
        str(s["tag_uid"]).upper()
        for s in farm.bambuddy.state.spools.values()
        if s.get("tag_uid") and not s.get("archived_at")
    )
    return sum(count - 1 for count in tags.values() if count > 1)


def throughput(farm: SimFarm, size: Size, started: float, ended: float) -> dict[str, Any]:
    """Prints/s until the last stock item the storm made, and InvenTree's busy share until its last write."""
    entries = [e for e in farm.inventree.log.entries if started <= e.time <= ended]
    creates = [
        e.time + e.duration_ms / 1000
        for e in entries
        if e.method == "POST" and e.path == "/api/stock/" and e.status < 300
    ]
    writes = [e.time + e.duration_ms / 1000 for e in entries if e.method != "GET" and e.status < 300]
    prints_span = (max(creates) - started) if creates else None
    work_span = (max(writes) - started) if writes else None
    served = [e for e in entries if e.fault is None and (work_span is None or e.time <= started + work_span)]
    per_second = size.capacity / (size.service_ms / 1000)
    return {
        "prints_made": len(creates),
        "prints_span": round(prints_span, 2) if prints_span else None,
        "work_span": round(work_span, 2) if work_span else None,
        "inventree_requests": len(entries),
        "locked": sum(1 for e in entries if e.fault == "locked"),
        "server_busy": round(len(served) / work_span / per_second, 2) if work_span else None,
    }


# --- one size ----------------------------------------------------------------------------------------------------


def one_size(size: Size, instances: int, emulator: str, nginx: str, workdir: Path) -> dict[str, Any]:
    """One size on a fresh farm and a fresh collection prefix: the storm through the gateway, then the checks."""
    scenario = scenario_for(BackfillSize(runs=size.runs, latency_ms=0.0, seed=size.seed))
    prefix = f"scale{instances}x{os.getpid()}"
    rows = size.usage_rows + size.new_prints
    cluster: Cluster | None = None
    with SimFarm(scenario, seed=size.seed) as farm:
        farm.inventree.knobs.update(
            capacity=size.capacity, service_ms=size.service_ms, write_lock_ms=size.write_lock_ms
        )
        after, _ = add_rows(farm, SimpleNamespace(rows=size.usage_rows, seed=size.seed))  # type: ignore[arg-type]
        asyncio.run(start_usage_after(farm, workdir, emulator, prefix, after))
        start, parts_before = quantities(farm), parts_twice(farm)
        try:
            cluster = Cluster(nginx, workdir, instance_env(farm, workdir, emulator, prefix, rows), instances)
            cluster.start()
            farm.inventree.log.clear()
            cpu_before, own_before = cluster.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
            wall_start = time.time()
            load = asyncio.run(storm(size, cluster.url, farm))
            wall_end = time.time()
            cpu = cluster.cpu_seconds() - cpu_before
            own = resource.getrusage(resource.RUSAGE_SELF)
            own_cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
        finally:
            if cluster is not None:
                cluster.stop()
        made_in_storm = sum(stock_batches(farm).values())
        figures = throughput(farm, size, wall_start, wall_end)
        # the settling runs are bookkeeping, not load: on a quiet server, so a write meets no other write
        farm.inventree.knobs.update(capacity=0, service_ms=0.0, write_lock_ms=0.0)
        unsettled = asyncio.run(settle(farm, workdir, emulator, prefix, rows))
        checks = {
            **prints_check(farm),
            **usage_check(farm, start, after),
            "spools_twice": spools_created_twice(farm),
            "parts_twice": parts_twice(farm) - parts_before,
        }
    answered = [*load.webhooks, *load.backfills, *load.filament]
    return {
        "instances": instances,
        "processes": instances * len(TARGETS),
        **checks,
        "made_in_storm": made_in_storm,
        "prints_added": load.prints_added,
        "webhooks": len(load.webhooks),
        "backfill_calls": len(load.backfills),
        "filament_calls": len(load.filament),
        "not_200": sum(1 for status in answered if status != 200),
        "rows_retried_later": len(load.failed_rows),
        "seconds": round(load.seconds, 2),
        "instances_cpu_s": round(cpu, 1),
        "sim_and_load_cpu_s": round(own_cpu, 1),
        **figures,
        "errors": load.errors[:10],
        "row_errors": sorted(set(load.failed_rows.values()))[:5],
        "unsettled": unsettled[:10],
    }


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Scale out: 1, 2 and 4 function instances behind the LAN gateway, one Firestore (#17, target 9)",
        quick=quick,
        params={
            "instances": list(size.instances),
            "targets_per_instance": list(TARGETS),
            "runs": size.runs,
            "usage_rows": size.usage_rows,
            "new_prints": size.new_prints,
            "webhooks": size.webhooks,
            "concurrency": size.concurrency,
            "backfill_callers": size.backfillers,
            "filament_callers": size.filament_runners,
            "capacity": size.capacity,
            "service_ms": size.service_ms,
            "write_lock_ms": size.write_lock_ms,
            "store": "firestore (emulator)",
            "gateway": "nginx, deploy/lan/nginx/farmsync.conf + farmsync-routes.conf",
        },
    )
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if nginx is None:
        raise RuntimeError("nginx is not installed: apt-get install -y --no-install-recommends nginx")
    server = capacity.Size(
        runs=size.runs,
        capacity=size.capacity,
        service_ms=size.service_ms,
        write_lock_ms=size.write_lock_ms,
        unlimited_latency_ms=0.0,
        seed=size.seed,
    )
    clean = asyncio.run(capacity.backfill_once(server, DEFAULT_CONCURRENCY, adaptive=False, capacity=False))
    # the same backfill in one process with no gateway and no storm, now: what this machine allows at the moment
    alone = asyncio.run(capacity.backfill_once(server, DEFAULT_CONCURRENCY, adaptive=True, capacity=True))
    per_print = clean["inventree_per_print"] or 1.0
    limit = size.capacity / (size.service_ms / 1000) / per_print
    rows = []
    with emulator_host() as emulator, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for instances in size.instances:
            workdir = Path(tmp) / f"x{instances}"
            workdir.mkdir()
            rows.append(one_size(size, instances, emulator, nginx, workdir))
    for row in rows:
        span = row["prints_span"]
        row["prints_per_second"] = round(row["prints_made"] / span, 2) if span else None
        row["of_limit"] = round(row["prints_per_second"] / limit, 2) if row["prints_per_second"] else None
        row["exact"] = not (
            row["duplicates"]
            or row["missing"]
            or row["unexpected"]
            or row["double_charges"]
            or row["uncharged"]
            or row["quantities_wrong"]
            or row["spools_twice"]
            or row["parts_twice"]
        )
    result.rows = rows
    result.columns = [
        ("instances", "instances"),
        ("completed_runs", "runs"),
        ("duplicates", "duplicate stock"),
        ("missing", "missing stock"),
        ("usage_rows", "usage rows"),
        ("double_charges", "double charges"),
        ("uncharged", "uncharged"),
        ("rows_retried_later", "rows retried later"),
        ("not_200", "calls not 200"),
        ("prints_per_second", "prints/s"),
        ("of_limit", "of limit"),
        ("server_busy", "InvenTree busy"),
        ("locked", "locked"),
        ("instances_cpu_s", "instances CPU s"),
        ("seconds", "storm s"),
    ]
    result.targets = [
        Target(
            f"{plural(row['instances'])}: exactly once",
            "0 duplicates, 0 double charges, nothing missing",
            f"{row['duplicates']} duplicates, {row['double_charges']} double charges, "
            f"{row['missing']} runs and {row['uncharged']} rows missing",
            row["exact"],
            f"{row['completed_runs']} runs, {row['usage_rows']} usage rows; quantities wrong on "
            f"{row['quantities_wrong']} spools; {row['spools_twice']} spools and {row['parts_twice']} parts "
            "created twice",
        )
        for row in rows
    ]
    answered = all(row["not_200"] == 0 for row in rows)
    result.targets.append(
        Target(
            "every webhook, backfill and filament call through the gateway answered",
            "200, at every size",
            ", ".join(f"{plural(r['instances'])}: {r['not_200']} not 200" for r in rows),
            answered,
        )
    )
    result.targets += [
        Target(
            f"{plural(row['instances'])}: prints/s against the limit",
            f"reported (limit {limit:.2f} prints/s)",
            f"{row['prints_per_second']} prints/s, {round(100 * (row['of_limit'] or 0))} %",
            None,
            f"InvenTree busy {round(100 * (row['server_busy'] or 0))} % of N ÷ service time while it had work; "
            f"{row['locked']} locked answers; instances used {row['instances_cpu_s']} CPU s in "
            f"{row['seconds']} s",
        )
        for row in rows
    ]
    alone_share = round(alone["prints_per_second"] / limit, 2) if alone["prints_per_second"] else None
    result.targets.append(
        Target(
            "reference: the same backfill in one process, no gateway, no storm (bench/capacity.py's run)",
            f"reported (limit {limit:.2f} prints/s)",
            f"{alone['prints_per_second']} prints/s, {round(100 * (alone_share or 0))} %",
            None,
            f"measured in this run, on this machine's load, SQLite store; exactly once: {alone['exactly_once']}",
        )
    )
    retried = sum(row["rows_retried_later"] for row in rows)
    result.notes = [
        f"limit {limit:.2f} prints/s = {size.capacity} ÷ {size.service_ms:g} ms ÷ {per_print} InvenTree requests "
        "per print (a clean backfill of the same scenario on an unlimited server)",
        "prints/s counts the stock items made during the storm over the time to the last one; the filament "
        "callers' requests share the same server, so 'InvenTree busy' (requests served ÷ the server's N ÷ service "
        "time, until its last write) is the throughput against the limit for the whole load",
        "the gateway is deploy/lan/nginx/farmsync.conf with the webhook and api upstreams rendered with one "
        "server per instance (the shipped file has one), routes from farmsync-routes.conf unchanged",
        "each instance is a webhook and an api functions-framework process; all share one Firestore emulator; "
        "the checks follow one settling backfill and filament run an hour on (backoffs over), on a quiet server",
        f"rows retried later: {retried} usage rows left to a later run by '500 database is locked'; a locked "
        "removal is sent again in the same run once InvenTree's history shows it did not land",
    ]
    result.details = {
        "server_limit_prints_per_second": round(limit, 3),
        "per_print": per_print,
        "rows": rows,
        "in_process_reference": {**alone, "of_limit": alone_share},
    }
    return result


def plural(instances: int) -> str:
    return f"{instances} instance{'s' if instances > 1 else ''}"


@contextlib.contextmanager
def emulator_host() -> Iterator[str]:
    """FIRESTORE_EMULATOR_HOST when it is set, else a fresh emulator (failing loudly), stopped afterwards and
    taken out of this process's environment again (the Google client reads it from there)."""
    if os.environ.get(EMULATOR_VARIABLE):
        yield os.environ[EMULATOR_VARIABLE]
        return
    with FirestoreEmulator() as emulator:
        os.environ[EMULATOR_VARIABLE] = emulator.host
        try:
            yield emulator.host
        finally:
            os.environ.pop(EMULATOR_VARIABLE, None)


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
