"""Crash and chaos with the store wiped between rounds: filament usage is still subtracted exactly once.

The store is only a cache of InvenTree's stock history (the usage ledger), so losing it must cost requests,
never a second charge. Chaos: 20 % faults on both simulators (503s, writes whose answer is lost, hangs past the
timeout) and every usage round on an empty store (a new SQLite file, a new Firestore prefix). Crash: waves of
worker processes killed with SIGKILL in the middle of usage rounds, each wave on a new, empty store, then rounds
on empty stores until the state settles. Both must end equal to a trouble-free run: every row's marker once in
the history, every spool's quantity exact.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.services import Services
from farmsync.store import Store
from farmsync_sim.server import SimFarm
from tests.fixtures.log_scan import child_log_path
from tests.fixtures.store import ManualClock
from tests.reliability.usage_loss import add_rows, usage_crash_worker, usage_reference, usage_round
from tests.reliability.workers import kill_wave
from tests.reliability.world import (
    FarmAddress,
    close_clients,
    diff,
    exactly_once,
    prepare,
    scenario,
    settings_for,
    sim_writes,
    snapshot,
)

MakeStore = Callable[..., tuple[Store, dict[str, Any]]]
FAULTS = {"fault_rate": 0.2, "latency_ms": 3.0, "fault_timeout": 0.3}


async def settle_on_empty_stores(
    farm: SimFarm, make_store: MakeStore, settings: Any, expected: dict[str, Any], max_rounds: int
) -> int:
    """Usage rounds, each on a new empty store, until one is clean and the farm equals ``expected``."""
    errors: list[str] = []
    for number in range(1, max_rounds + 1):
        store, _ = make_store(clock=ManualClock())
        services = Services(settings, store=store)
        try:
            report = await usage_round(services)
        finally:
            await close_clients(services)
        errors = report.errors + [
            f"usage {line.usage_id}: {line.error}" for line in report.usage.lines if line.error
        ]
        if report.ok and not report.errors and snapshot(farm) == expected:
            return number
    raise AssertionError(f"not settled after {max_rounds} rounds on empty stores; last errors: {errors[:10]}")


@pytest.mark.slow
async def test_usage_under_faults_with_the_store_wiped_every_round(
    sim_farm_factory: Callable[..., SimFarm], make_store: MakeStore, store_backend: str, tmp_path: Path
) -> None:
    seed = 29
    clean = sim_farm_factory(scenario=scenario(seed), seed=seed, api_version=530)
    prepare(clean)
    add_rows(clean, 80, batch=0)
    expected = await usage_reference(clean, tmp_path / "reference")
    assert exactly_once(expected) == []

    faulty = sim_farm_factory(scenario=scenario(seed), seed=seed, api_version=530, **FAULTS)
    prepare(faulty)
    add_rows(faulty, 80, batch=0)
    settings = settings_for(faulty, tmp_path / "data", http_timeout_seconds=0.5)
    rounds = await settle_on_empty_stores(faulty, make_store, settings, expected, max_rounds=25)
    state = snapshot(faulty)
    assert exactly_once(state) == [] and diff(state, expected) == {}
    injected = sum(1 for sim in (faulty.bambuddy, faulty.inventree) for e in sim.log.entries if e.fault)
    assert injected >= 10, "the simulator hardly faulted: the test proved nothing"

    for sim in (faulty.bambuddy, faulty.inventree):  # calm, and yet another empty store: nothing to write
        sim.knobs.update(fault_rate=0.0, latency_ms=0.0)
        sim.log.clear()
    calm = Services(settings.model_copy(update={"http_timeout_seconds": 10.0}), store=make_store()[0])
    final = await usage_round(calm)
    await close_clients(calm)
    assert final.ok and sim_writes(faulty) == [] and snapshot(faulty) == expected
    print(f"{store_backend}: settled after {rounds} round(s) on empty stores, {injected} faults injected")


@pytest.mark.slow
async def test_killed_usage_workers_and_a_lost_store_charge_nothing_twice(
    sim_farm_factory: Callable[..., SimFarm], make_store: MakeStore, store_backend: str, tmp_path: Path
) -> None:
    seed, waves, workers_per_wave, rows = 37, 3, 3, 24
    clean = sim_farm_factory(scenario=scenario(seed), seed=seed, api_version=425)
    prepare(clean)
    for wave in range(waves):
        add_rows(clean, rows, batch=wave)
    expected = await usage_reference(clean, tmp_path / "reference")

    farm = sim_farm_factory(scenario=scenario(seed), seed=seed, api_version=425, latency_ms=25.0)
    prepare(farm)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    rng = random.Random(seed)
    for wave in range(waves):
        add_rows(farm, rows, batch=wave)
        _, spec = make_store()  # the store is lost between waves: each wave starts on an empty one
        workers = [
            ctx.Process(
                target=usage_crash_worker,
                args=(
                    FarmAddress.of(farm),
                    spec,
                    str(tmp_path / "data"),
                    ready,
                    child_log_path(f"usage-loss-{store_backend}-{wave}-{n}"),
                ),
                daemon=True,
            )
            for n in range(workers_per_wave)
        ]
        kill_wave(workers, ready, rng, (0.2, 1.5), wave)
    assert farm.inventree.log.count(method="POST", path="/api/stock/remove/") > 0, "the kills proved nothing"

    settings = settings_for(farm, tmp_path / "data", lease_seconds=2.0)
    await settle_on_empty_stores(farm, make_store, settings, expected, max_rounds=6)
    state = snapshot(farm)
    assert exactly_once(state) == [] and diff(state, expected) == {}
