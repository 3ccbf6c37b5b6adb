"""Issue #4: how fast a backfill turns the print log into InvenTree stock, and what each print costs upstream.

Side by side in one run, each on a fresh simulated farm and a fresh SQLite store: the backfill at the default
SYNC_CONCURRENCY and the same backfill one print at a time (SYNC_CONCURRENCY=1). Every request waits
``latency_ms`` in the simulator, as a real Bambuddy/InvenTree on the LAN would, so wall time is dominated by
round trips, which is what concurrency is for.

Requests per print are counted from the simulators' request logs, not estimated. After the concurrent backfill
the bench adds one print of each kind and runs one tick for it: a new part, a reprint of a synced archive, and a
new archive of an already known file (same content hash, so the same part); then an idle tick. A tick always
reads the print log once (that is its idle cost), so that request is counted apart from the print's own.
"""

from __future__ import annotations

import asyncio
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, Target, ratio, run_main
from farmsync.prints import tick as ticks
from farmsync.prints.service import print_sync
from farmsync.services import Services
from farmsync.settings import Settings
from farmsync_sim.scenarios import Scenario, make_scenario
from farmsync_sim.server import SimFarm
from tests.fixtures.farm import farm_settings

NAME = "backfill"
DEFAULT_CONCURRENCY = int(Settings.model_fields["sync_concurrency"].default)
PRINT_LOG = re.compile(r"^/api/v1/print-log/?$")
ID_SEGMENT = re.compile(r"/\d+(?=/|$)")


@dataclass(frozen=True)
class Size:
    runs: int  # print-log runs in the scenario (the `large` preset has 500)
    latency_ms: float
    seed: int = 1


SIZES = {
    "full": Size(runs=500, latency_ms=50.0),
    "quick": Size(runs=60, latency_ms=20.0),
    "tiny": Size(runs=12, latency_ms=0.0),
}


def scenario_for(size: Size) -> Scenario | str:
    """The `large` preset for the full run (500 runs, half of them repeat parts), a smaller twin otherwise."""
    if size.runs == 500:
        return "large"
    return make_scenario(
        name=f"bench-{size.runs}", runs=size.runs, repeat_ratio=0.5, seed=size.seed, printers=6, spools=16
    )


def endpoint(method: str, path: str) -> str:
    """``GET /api/part/{id}/`` style: ids folded so counts group by endpoint."""
    return method + " " + ID_SEGMENT.sub("/{id}", path)


def stock_batches(farm: SimFarm) -> Counter[str]:
    return Counter(
        str(i["batch"])
        for i in farm.inventree.state.stock_items.values()
        if str(i["batch"]).startswith("bambuddy-")
    )


def completed_runs(farm: SimFarm) -> list[dict[str, Any]]:
    return [
        r
        for r in farm.bambuddy.state.print_log.values()
        if r["status"] == "completed" and r["archive_id"] is not None
    ]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def backfill_once(
    size: Size, concurrency: int, *, measure_kinds: bool, api_version: int | None = None
) -> dict[str, Any]:
    """One backfill on a fresh farm and store; with ``measure_kinds`` also the per-kind ticks afterwards."""
    extra = {"api_version": api_version} if api_version is not None else {}
    farm = SimFarm(scenario_for(size), seed=size.seed, latency_ms=size.latency_ms, **extra).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
            settings = farm_settings(farm, Path(tmp), sync_concurrency=concurrency, log_level="WARNING")
            services = Services(settings)
            try:
                cpu_before = cpu_seconds()
                started = time.perf_counter()
                report = await ticks.backfill(print_sync(services))
                wall = time.perf_counter() - started
                cpu = cpu_seconds() - cpu_before
                out = summarize(farm, report, wall, cpu, concurrency, size)
                if measure_kinds:
                    out["kinds"] = await per_kind(farm, services)
            finally:
                await services.aclose()
    finally:
        farm.stop()
    return out


def summarize(
    farm: SimFarm, report: ticks.RunReport, wall: float, cpu: float, concurrency: int, size: Size
) -> dict[str, Any]:
    """Figures of one backfill, checked for exactly-once (one stock item per completed run, no duplicate)."""
    totals = report.totals()
    synced = totals["synced"]
    bambuddy = farm.bambuddy.log.entries
    inventree = farm.inventree.log.entries
    batches = stock_batches(farm)
    expected = {f"bambuddy-{r['archive_id']}-{r['id']}" for r in completed_runs(farm)}
    requests = len(bambuddy) + len(inventree)
    return {
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "prints": synced,
        "units": len(report.items),
        "prints_per_second": round(synced / wall, 2) if wall else None,
        "bambuddy_requests": len(bambuddy),
        "inventree_requests": len(inventree),
        "requests_per_print": round(requests / synced, 2) if synced else None,
        "inventree_per_print": round(len(inventree) / synced, 2) if synced else None,
        "bambuddy_per_print": round(len(bambuddy) / synced, 2) if synced else None,
        # how many requests were in flight on average: requests x latency / wall
        "effective_parallelism": round(requests * size.latency_ms / 1000 / wall, 2) if wall else None,
        "cpu_seconds": round(cpu, 2),
        "exactly_once": set(batches) == expected and set(batches.values()) <= {1},
        "failed": totals["failed"] + totals["parked"],
        "by_endpoint": dict(
            Counter(endpoint(e.method, e.path) for e in [*bambuddy, *inventree]).most_common()
        ),
    }


async def per_kind(farm: SimFarm, services: Services) -> dict[str, dict[str, Any]]:
    """One tick per kind of print, with the requests each cost (the tick's own print-log read counted apart)."""
    state = farm.bambuddy.state
    printer = next(iter(state.printers.values()))["name"]
    original = state.archives[min(r["archive_id"] for r in completed_runs(farm))]
    await ticks.tick(print_sync(services))  # a backfill leaves the cursor alone: bring it to the head first
    kinds: dict[str, dict[str, Any]] = {}
    kinds["idle tick"] = await one_tick(farm, services, None)
    kinds["new part"] = await one_tick(
        farm,
        services,
        lambda: state.add_print(printer, print_name="Bench new part", content_hash="b" * 64),
    )
    kinds["repeat part (reprint)"] = await one_tick(
        farm, services, lambda: state.add_print(printer, reprint_of=original["id"])
    )
    kinds["repeat part (new archive)"] = await one_tick(
        farm,
        services,
        lambda: state.add_print(
            printer,
            print_name=original["print_name"],
            filename=original["filename"],
            content_hash=original["content_hash"],
            grams=original["filament_used_grams"],
            duration_s=original["print_time_seconds"],
        ),
    )
    return kinds


async def one_tick(farm: SimFarm, services: Services, add: Any) -> dict[str, Any]:
    if add is not None:
        add()
    farm.bambuddy.log.clear()
    farm.inventree.log.clear()
    started = time.perf_counter()
    report = await ticks.tick(print_sync(services))
    seconds = time.perf_counter() - started
    bambuddy = farm.bambuddy.log.entries
    inventree = farm.inventree.log.entries
    reads = [e for e in bambuddy if e.method == "GET" and PRINT_LOG.match(e.path)]
    own = [e for e in bambuddy if e not in reads]
    return {
        "synced": report.totals()["synced"],
        "seconds": round(seconds, 3),
        "tick_bambuddy": len(bambuddy),
        "tick_inventree": len(inventree),
        "print_log_reads": len(reads),
        "bambuddy": len(own),
        "inventree": len(inventree),
        "requests": [endpoint(e.method, e.path) for e in [*own, *inventree]],
    }


def where_time_goes(concurrent: dict[str, Any], sequential: dict[str, Any], size: Size) -> list[str]:
    """The speed-up explained from request counts, latency and concurrency, and what concurrency added."""
    latency = size.latency_ms / 1000
    notes = []
    for label, figures in (("sequential", sequential), ("concurrent", concurrent)):
        requests = figures["bambuddy_requests"] + figures["inventree_requests"]
        notes.append(
            f"{label}: {requests} requests × {size.latency_ms:g} ms = {requests * latency:.1f} s of waiting in "
            f"{figures['seconds']} s, so {figures['effective_parallelism']} requests in flight on average "
            f"(CPU {figures['cpu_seconds']} s, the in-process simulators included)"
        )
    ideal = (sequential["bambuddy_requests"] + sequential["inventree_requests"]) * latency
    notes.append(
        f"the sequential run's round trips spread perfectly over {concurrent['concurrency']} workers would take "
        f"{ideal / concurrent['concurrency']:.1f} s; measured {concurrent['seconds']} s"
    )
    extra = {
        key: n - sequential["by_endpoint"].get(key, 0)
        for key, n in concurrent["by_endpoint"].items()
        if n > sequential["by_endpoint"].get(key, 0)
    }
    if extra:
        listed = ", ".join(f"{key} +{n}" for key, n in sorted(extra.items(), key=lambda kv: -kv[1]))
        notes.append(f"requests the concurrent run made beyond the sequential one: {listed}")
    return notes if latency else notes[-1:] if extra else []


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Backfill: print log → InvenTree stock (issue #4)",
        quick=quick,
        params={
            "runs": size.runs,
            "scenario": "large" if size.runs == 500 else f"make_scenario(runs={size.runs}, repeat_ratio=0.5)",
            "latency_ms": size.latency_ms,
            "default_concurrency": DEFAULT_CONCURRENCY,
            "store": "sqlite",
        },
    )
    concurrent = asyncio.run(backfill_once(size, DEFAULT_CONCURRENCY, measure_kinds=True))
    sequential = asyncio.run(backfill_once(size, 1, measure_kinds=False))
    small = Size(runs=12, latency_ms=size.latency_ms, seed=size.seed)  # the older layout: only its new part
    legacy = asyncio.run(backfill_once(small, DEFAULT_CONCURRENCY, measure_kinds=True, api_version=425))
    new_425 = legacy["kinds"]["new part"]
    speedup = ratio(sequential["seconds"], concurrent["seconds"])
    result.columns = [
        ("run", "run"),
        ("concurrency", "concurrency"),
        ("prints", "prints synced"),
        ("seconds", "wall s"),
        ("prints_per_second", "prints/s"),
        ("speedup", "speed-up"),
        ("inventree_per_print", "InvenTree req/print"),
        ("bambuddy_per_print", "Bambuddy req/print"),
        ("effective_parallelism", "req in flight"),
        ("exactly_once", "exactly once"),
    ]
    result.rows = [
        {"run": "farmsync (default)", **concurrent, "speedup": speedup},
        {"run": "sequential baseline", **sequential, "speedup": 1.0},
    ]
    kinds = concurrent["kinds"]
    for kind, figures in kinds.items():
        result.rows.append(
            {
                "run": f"one tick: {kind}",
                "concurrency": DEFAULT_CONCURRENCY,
                "prints": figures["synced"],
                "seconds": figures["seconds"],
                "inventree_per_print": figures["inventree"],
                "bambuddy_per_print": figures["bambuddy"],
            }
        )
    repeat = max(kinds["repeat part (reprint)"]["inventree"], kinds["repeat part (new archive)"]["inventree"])
    idle = kinds["idle tick"]
    new = kinds["new part"]
    result.targets = [
        Target(
            "InvenTree requests for a new part (API 530; API 425 reported)",
            "≤ 8",
            new["inventree"],
            new["inventree"] <= 8,
            f"API 425: {new_425['inventree']} ({', '.join(r for r in new_425['requests'] if '/api/v1/' not in r)})",
        ),
        Target(
            "speed-up over one print at a time",
            f"≥ 5× at SYNC_CONCURRENCY={DEFAULT_CONCURRENCY}",
            f"{speedup}×",
            None if speedup is None else speedup >= 5.0,
            f"{concurrent['seconds']} s vs {sequential['seconds']} s",
        ),
        Target(
            "InvenTree requests for a repeat-part print",
            "≤ 2",
            repeat,
            repeat <= 2,
            "reprint: {} ({}); new archive of a known file: {} ({})".format(
                kinds["repeat part (reprint)"]["inventree"],
                ", ".join(r for r in kinds["repeat part (reprint)"]["requests"] if "/api/v1/" not in r)
                or "none",
                kinds["repeat part (new archive)"]["inventree"],
                ", ".join(r for r in kinds["repeat part (new archive)"]["requests"] if "/api/v1/" not in r)
                or "none",
            ),
        ),
        Target(
            "idle tick",
            "1 Bambuddy + 0 InvenTree requests",
            f"{idle['tick_bambuddy']} + {idle['tick_inventree']}",
            idle["tick_bambuddy"] == 1 and idle["tick_inventree"] == 0,
        ),
        Target(
            "exactly once",
            "one stock item per completed run, in both runs",
            concurrent["exactly_once"] and sequential["exactly_once"],
            concurrent["exactly_once"] and sequential["exactly_once"],
        ),
    ]
    result.notes = where_time_goes(concurrent, sequential, size)
    result.notes.append(
        f"new part in one tick: {new['inventree']} InvenTree + {new['bambuddy']} Bambuddy requests "
        f"({', '.join(new['requests'])}); the process's first part also reads the server info and the two "
        "parameter templates, once per process"
    )
    result.details = {"concurrent": concurrent, "sequential": sequential, "new_part_425": new_425}
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
