"""Filament usage: N Bambuddy usage rows subtracted from InvenTree exactly once, at 50 ms per request.

Side by side in one run, each on a fresh simulated farm (same seed, same rows): farmsync's usage step
(``run_filament(services, steps=["usage"], dry_run=False)`` on a fresh SQLite store: spools side by side, each
spool's rows in order, and a look at InvenTree's history once per scope) and a bare sequential loop that makes
the same HTTP calls per row with farmsync's own clients (read the item, post the removal) but keeps no claims,
intents, history look-ups or cursor, so it is neither crash-safe nor safe against a lost store. Target (#17
item 5): the usage step at least 4x faster than the loop.

Exactly-once is checked, not assumed: every batch ends at its starting quantity minus its rows' grams, every
row's removal marker is in the stock history once, a second run writes nothing, and neither does a third run on
an empty store (the store lost: InvenTree's history is the ledger).
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, Target, ratio, run_main
from farmsync.clients.bambuddy import BambuddyClient
from farmsync.clients.inventree import InvenTreeClient
from farmsync.filament.run import run_filament
from farmsync.filament.usage import USAGE_STREAM, marker
from farmsync.filament.writes import remove_body
from farmsync.services import Services
from farmsync.settings import Settings, load_settings
from farmsync.store.sqlite import SqliteStore
from farmsync_sim.server import SimFarm

NAME = "filament_usage"


@dataclass(frozen=True)
class Size:
    rows: int
    latency_ms: float
    seed: int = 3


SIZES = {
    "full": Size(rows=150, latency_ms=50.0),
    "quick": Size(rows=60, latency_ms=50.0),
    "tiny": Size(rows=5, latency_ms=0.0),
}


def settings_for(farm: SimFarm, data_dir: Path, rows: int) -> Settings:
    ids = farm.ids
    return load_settings(
        "/dev/null",
        bambuddy_base_url=farm.bambuddy_url,
        bambuddy_api_key=farm.api_key,
        inventree_base_url=farm.inventree_url,
        inventree_token=farm.token,
        filament_tracking_enabled=True,
        filament_dry_run=False,
        filament_part_category_id=ids["FILAMENT_PART_CATEGORY_ID"],
        filament_storage_location_id=ids["FILAMENT_STORAGE_LOCATION_ID"],
        filament_loaded_location_id=ids["FILAMENT_LOADED_LOCATION_ID"],
        filament_printer_location_map=ids["FILAMENT_PRINTER_LOCATION_MAP"],
        filament_usage_limit=max(200, rows + 100),
        data_dir=data_dir,
        log_level="WARNING",
    )


def add_rows(farm: SimFarm, size: Size) -> tuple[int, dict[str, float]]:
    """Add ``size.rows`` completed usage rows on spools InvenTree knows; returns (last old row id, grams per batch)."""
    state = farm.bambuddy.state
    batches = {str(i["batch"]).upper() for i in farm.inventree.state.stock_items.values()}
    matched = sorted(s["id"] for s in state.spools.values() if str(s["tag_uid"] or "").upper() in batches)
    before = max(state.usage, default=0)
    rng = random.Random(size.seed)
    charged: dict[str, float] = {}
    for n in range(size.rows):
        spool = matched[n % len(matched)]
        grams = round(rng.uniform(1.0, 4.0), 1)  # small: no spool runs out, so every row is a plain removal
        state.add_usage(spool, grams, print_name=f"bench part {n}")
        tag = str(state.spools[spool]["tag_uid"]).upper()
        charged[tag] = charged.get(tag, 0.0) + grams
    return before, charged


def quantities(farm: SimFarm) -> dict[str, float]:
    return {str(i["batch"]).upper(): float(i["quantity"]) for i in farm.inventree.state.stock_items.values()}


def exactly_once(farm: SimFarm, start: dict[str, float], charged: dict[str, float], after: int) -> bool:
    """Quantities moved by exactly the rows' grams and each new row's marker appears once in the history."""
    now = quantities(farm)
    moved = all(abs(start[tag] - grams - now[tag]) < 1e-3 for tag, grams in charged.items())
    wanted = {marker(r) for r in farm.bambuddy.state.usage if r > after}
    notes = [str(t["notes"]) for t in farm.inventree.state.tracking.values()]
    return moved and all(notes.count(m) == 1 for m in wanted)


def request_counts(farm: SimFarm) -> tuple[int, int]:
    return len(farm.bambuddy.log), len(farm.inventree.log)


async def farmsync_run(size: Size) -> dict[str, Any]:
    with (
        SimFarm("small", seed=size.seed, latency_ms=size.latency_ms) as farm,
        tempfile.TemporaryDirectory() as tmp,
    ):
        after, charged = add_rows(farm, size)
        start = quantities(farm)
        services = Services(settings_for(farm, Path(tmp), size.rows))
        try:
            await services.store.cas_cursor(
                USAGE_STREAM, None, {"id": after}
            )  # only the bench's rows are new
            farm.bambuddy.log.clear()
            farm.inventree.log.clear()
            started = time.perf_counter()
            report = await run_filament(services, steps=["usage"], dry_run=False)
            wall = time.perf_counter() - started
            bambuddy, inventree = request_counts(farm)
            applied = (
                sum(1 for line in report.usage.lines if line.outcome == "applied") if report.usage else 0
            )
            once = exactly_once(farm, start, charged, after)
            farm.bambuddy.log.clear()
            farm.inventree.log.clear()
            again = await run_filament(services, steps=["usage"], dry_run=False)
            repeat_writes = len(farm.inventree.log.writes()) + len(farm.bambuddy.log.writes())
            lost = Services(services.settings, store=SqliteStore(Path(tmp) / "lost.sqlite3"))
            try:
                await lost.store.cas_cursor(USAGE_STREAM, None, {"id": after})
                farm.inventree.log.clear()
                started = time.perf_counter()
                relost = await run_filament(lost, steps=["usage"], dry_run=False)
                lost_wall = time.perf_counter() - started
                lost_writes = len(farm.inventree.log.writes())
                history_reads = relost.usage.history_reads if relost.usage else None
            finally:
                await lost.aclose()
        finally:
            await services.aclose()
    return {
        "seconds": round(wall, 2),
        "rows": size.rows,
        "applied": applied,
        "bambuddy_requests": bambuddy,
        "inventree_requests": inventree,
        "exactly_once": once and not again.errors,
        "repeat_writes": repeat_writes,
        "lost_store_writes": lost_writes,
        "lost_store_seconds": round(lost_wall, 2),
        "lost_store_history_reads": history_reads,
        "spools": len({line.spool_id for line in report.usage.lines}) if report.usage else 0,
        "concurrency": services.settings.sync_concurrency,
        "errors": report.errors,
    }


async def baseline_run(size: Size) -> dict[str, Any]:
    """The bare sequential loop: the same per-row calls, no store, no claims, no intents, no cursor."""
    with SimFarm("small", seed=size.seed, latency_ms=size.latency_ms) as farm:
        after, charged = add_rows(farm, size)
        start = quantities(farm)
        settings = settings_for(farm, Path("/nonexistent"), size.rows)
        bambuddy = BambuddyClient(settings.bambuddy_base_url, settings.bambuddy_api_key.get_secret_value())
        inventree = InvenTreeClient(settings.inventree_root_url, settings.inventree_token.get_secret_value())
        farm.bambuddy.log.clear()
        farm.inventree.log.clear()
        started = time.perf_counter()
        try:
            rows = await bambuddy.usage(limit=settings.filament_usage_limit)
            spools = {
                s.id: str(s.tag_uid or "").upper() for s in await bambuddy.spools(include_archived=True)
            }
            items = await inventree.list_stock(category=settings.filament_part_category_id, in_stock=True)
            by_batch = {str(i.batch or "").upper(): i.pk for i in items}
            applied = 0
            for row in sorted((r for r in rows if r.id > after), key=lambda r: r.id):
                pk = by_batch.get(spools.get(row.spool_id, ""))
                if pk is None or row.status != "completed":
                    continue
                await inventree.get_stock(pk)
                await inventree.http.request_json(
                    "POST", "/api/stock/remove/", json=remove_body(pk, row.weight_used, marker(row.id))
                )
                applied += 1
            wall = time.perf_counter() - started
        finally:
            await bambuddy.aclose()
            await inventree.aclose()
        bb, inv = request_counts(farm)
        once = exactly_once(farm, start, charged, after)
    return {
        "seconds": round(wall, 2),
        "rows": size.rows,
        "applied": applied,
        "bambuddy_requests": bb,
        "inventree_requests": inv,
        "exactly_once": once,
        "repeat_writes": None,
        "lost_store_writes": None,
    }


def run(size: Size, *, quick: bool) -> Result:
    result = Result(
        name=NAME,
        title="Filament usage: spools in parallel, rows subtracted exactly once (vs a bare sequential loop)",
        quick=quick,
        params={"rows": size.rows, "latency_ms": size.latency_ms, "scenario": "small", "store": "sqlite"},
    )
    ours = asyncio.run(farmsync_run(size))
    base = asyncio.run(baseline_run(size))
    result.columns = [
        ("run", "run"),
        ("applied", "rows subtracted"),
        ("seconds", "wall s"),
        ("rows_per_second", "rows/s"),
        ("vs_baseline", "time vs baseline"),
        ("inventree_per_row", "InvenTree req/row"),
        ("bambuddy_requests", "Bambuddy req"),
        ("exactly_once", "exactly once"),
        ("repeat_writes", "writes on a 2nd run"),
        ("lost_store_writes", "writes, store lost"),
    ]
    parallel = f"farmsync usage step ({ours['spools']} spools in parallel)"
    for label, figures in ((parallel, ours), ("bare sequential loop (not crash-safe)", base)):
        result.rows.append(
            {
                "run": label,
                **figures,
                "rows_per_second": round(figures["applied"] / figures["seconds"], 1)
                if figures["seconds"]
                else None,
                "vs_baseline": ratio(figures["seconds"], base["seconds"]),
                "inventree_per_row": round(figures["inventree_requests"] / figures["applied"], 2)
                if figures["applied"]
                else None,
            }
        )
    speedup = ratio(base["seconds"], ours["seconds"])
    once = (
        ours["exactly_once"]
        and ours["repeat_writes"] == 0
        and ours["lost_store_writes"] == 0
        and ours["applied"] == size.rows
    )
    result.targets = [
        Target(
            "every row subtracted exactly once",
            "quantities and history markers exact; 0 writes on a repeat, 0 on an empty store",
            once,
            once,
        ),
        Target(
            "spools in parallel vs the bare sequential loop (#17 item 5)",
            "≥ 4× at 50 ms per request",
            f"{speedup}×",
            (speedup or 0) >= 4.0 if size.latency_ms >= 50 else None,
            f"{ours['seconds']} s vs {base['seconds']} s for {size.rows} rows over {ours['spools']} spools",
        ),
    ]
    per_row = size.latency_ms / 1000 * (base["inventree_requests"] - 1) / max(1, base["applied"])
    result.notes = [
        f"the loop pays {size.rows} × {per_row:.2f} s of round trips one after another "
        f"({(base['inventree_requests'] - 1) / max(1, base['applied']):.0f} InvenTree requests per row); the usage "
        f"step runs up to SYNC_CONCURRENCY={ours['concurrency']} spools at once, each spool's rows in order, "
        "so its floor is the busiest spool's rows",
        f"a rerun on an empty store (the store lost) took {ours['lost_store_seconds']} s with "
        f"{ours['lost_store_history_reads']} history reads and wrote nothing",
    ]
    result.details = {"farmsync": ours, "baseline": base}
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main(__doc__, run, SIZES, argv)


if __name__ == "__main__":
    sys.exit(main())
