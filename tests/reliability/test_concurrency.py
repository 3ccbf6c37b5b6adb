"""Concurrency: 16 invocations at once across 4 processes, mixing every trigger, have exactly-once outcomes.

Each process fires four requests at the same instant through the real function targets (the ``app`` router,
``backfill_tick`` and ``filament_tick``): Bambuddy's webhook, the print tick, backfills (whole and capped),
archives synced by hand, filament usage and full filament runs, all applied. They share only the simulated farm
and the store. Afterwards every completed run has exactly one stock item, every part one IPN, every usage row one
removal, and the state equals a sequential run of the same scenario. The responses agree: across all of them
each run is reported "synced" once and each usage row "applied" once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.services import Services
from farmsync.store import Store
from farmsync_sim.server import SimFarm
from tests.fixtures.log_scan import child_log_path
from tests.fixtures.store import open_spec
from tests.reliability.workers import concurrent_worker
from tests.reliability.world import (
    FarmAddress,
    close_clients,
    diff,
    exactly_once,
    prepare,
    reference_state,
    run_round,
    scenario,
    settings_for,
    snapshot,
)

SEED = 47
RUNS = 40
PLAN = [
    ["webhook", "backfill_tick", "sync_usage", "sync_archive"],
    ["sync_backfill", "filament_tick", "webhook", "sync_filament"],
    ["api_tick", "sync_usage", "backfill_tick", "sync_filament"],
    ["sync_archive", "webhook", "filament_tick", "sync_backfill"],
]


def print_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "archives" in body:
        return [item for one in body["archives"] for item in one["body"].get("items", [])]
    return list(body.get("items", []))


def usage_lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    usage = body.get("usage") or {}
    return list(usage.get("lines", []))


@pytest.mark.slow
async def test_sixteen_concurrent_invocations_do_everything_once(
    sim_farm_factory: Callable[..., SimFarm],
    make_store: Callable[..., tuple[Store, dict[str, Any]]],
    store_backend: str,
    tmp_path: Path,
) -> None:
    clean = sim_farm_factory(scenario=scenario(SEED, runs=RUNS), seed=SEED)
    prepare(clean)
    expected = await reference_state(clean, tmp_path / "reference")

    farm = sim_farm_factory(scenario=scenario(SEED, runs=RUNS), seed=SEED, latency_ms=2.0)
    prepare(farm)
    _, spec = make_store()
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 6.0  # every process is up and waiting by then, even on a busy 2-core machine
    with ctx.Pool(len(PLAN)) as pool:
        outcomes = pool.starmap(
            concurrent_worker,
            [
                (
                    FarmAddress.of(farm),
                    spec,
                    str(tmp_path / "data"),
                    kinds,
                    n,
                    start_at,
                    child_log_path(f"concurrency-{store_backend}-{n}"),
                )
                for n, kinds in enumerate(PLAN)
            ],
        )
    responses = [r for process in outcomes for r in process]
    assert len(responses) == 16
    assert Counter(r["kind"] for r in responses) == Counter(k for kinds in PLAN for k in kinds)
    for response in responses:
        assert response["status"] == 200, response
        for archive in response["body"].get("archives", []):
            assert archive["status"] == 200, archive

    # Whatever was still held or pending when the 16 ended, one more sequential round finishes.
    services = Services(settings_for(farm, tmp_path / "data"), store=open_spec(spec))
    try:
        settle = await run_round(services, gcode=False)
        assert settle.clean, settle.errors
        tick = await services.store.get_value("meta", "last-tick")
        assert tick is not None
    finally:
        await close_clients(services)
        services.sync_store.close()
    state = snapshot(farm)
    assert exactly_once(state) == []
    assert diff(state, expected) == {}

    synced = Counter(
        item["key"] for r in responses for item in print_items(r["body"]) if item["outcome"] == "synced"
    )
    assert synced and all(n == 1 for n in synced.values()), {k: n for k, n in synced.items() if n > 1}
    applied = Counter(
        line["usage_id"] for r in responses for line in usage_lines(r["body"]) if line["outcome"] == "applied"
    )
    assert applied and all(n == 1 for n in applied.values()), {k: n for k, n in applied.items() if n > 1}
    batches = {b for (b, *_), n in state["stock"].items() if str(b).startswith("bambuddy-")}
    completed = {
        f"bambuddy-{r['archive_id']}-{r['id']}"
        for r in farm.bambuddy.state.print_log.values()
        if r["status"] == "completed" and r["archive_id"] is not None
    }
    assert batches == completed
