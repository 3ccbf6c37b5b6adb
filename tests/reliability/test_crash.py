"""Crash: worker processes killed with SIGKILL at random moments leave nothing that later rounds cannot finish.

Waves of spawned worker processes run rounds (print tick, applied filament run, applied G-code run) against the
same simulated farm, printers and store, with LEASE_SECONDS=2 and some latency so that every kill lands in the
middle of work: between a claim and its write, between a write and its done-mark, in an upload. Each worker is
killed after a random short delay; between waves the dead workers' leases run out, so the next wave's workers
take their keys over for real. Then rounds run again in this process, on a store clock moved past every lease
(the G-code write locks last 60 s whatever LEASE_SECONDS says), until the state settles. It must equal a
run of the same scenario without crashes: no duplicates, every usage row deducted once, every file in place.
Print ticks on wiped stores (right after the kills, and once settled) must create nothing twice.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.services import Services
from farmsync.store import State, Store
from farmsync_sim.server import SimFarm
from tests.fixtures.log_scan import child_log_path
from tests.fixtures.store import open_spec
from tests.reliability.workers import crash_worker, kill_wave
from tests.reliability.world import (
    FarmAddress,
    PrinterRig,
    close_clients,
    diff,
    exactly_once,
    prepare,
    prints_on_wiped_stores,
    reference_state,
    scenario,
    settings_for,
    sim_writes,
    snapshot,
    until_converged,
)

SEED = 31
WAVES = 3
WORKERS = 3
LEASE_SECONDS = 2.0


class ShiftedClock:
    """Wall-clock time plus an offset the test moves forward: leases of dead workers expire at once."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.mark.slow
async def test_killed_workers_leave_a_state_later_rounds_finish(
    sim_farm_factory: Callable[..., SimFarm],
    make_store: Callable[..., tuple[Store, dict[str, Any]]],
    store_backend: str,
    tmp_path: Path,
) -> None:
    clean = sim_farm_factory(scenario=scenario(SEED), seed=SEED)
    prepare(clean)
    expected = await reference_state(clean, tmp_path / "reference")

    farm = sim_farm_factory(scenario=scenario(SEED), seed=SEED, latency_ms=25.0)
    prepare(farm)
    rig = PrinterRig(tmp_path / "printers", seed=SEED).start()
    _, spec = make_store()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    rng = random.Random(SEED)
    killed = 0
    interrupted: list[str] = []
    try:
        for wave in range(WAVES):
            workers = [
                ctx.Process(
                    target=crash_worker,
                    args=(
                        FarmAddress.of(farm),
                        spec,
                        str(tmp_path / "data"),
                        str(rig.printers_file),
                        str(rig.master),
                        ready,
                        child_log_path(f"crash-{store_backend}-{wave}-{n}"),
                    ),
                    daemon=True,
                )
                for n in range(WORKERS)
            ]
            kill_wave(workers, ready, rng, (0.3, 2.5), wave)
            killed += len(workers)
            probe = open_spec(spec)
            for namespace in ("run", "filament-usage", "part", "filament-spool-create", "gcode-lock"):
                interrupted += [f"{namespace}:{r.key}" for r in probe.list(namespace, State.CLAIMED, 100)]
            probe.close()
            time.sleep(LEASE_SECONDS + 0.2)  # the next wave takes the dead workers' keys over
        assert killed == WAVES * WORKERS
        assert sim_writes(farm), "the workers wrote nothing before they died: the kills proved nothing"
        print(f"{store_backend}: {killed} workers killed; claims they left held: {len(interrupted)}")

        # The store is a cache (prints side): lose every claim and done-mark the dead workers left, and run
        # print ticks on brand-new stores (a new SQLite file, a new Firestore prefix): nothing twice.
        wiped_settings = settings_for(farm, tmp_path / "data", lease_seconds=LEASE_SECONDS)
        await prints_on_wiped_stores(wiped_settings, lambda: make_store()[0], max_rounds=4)
        assert exactly_once(snapshot(farm)) == []

        clock = ShiftedClock(offset=600.0)
        services = Services(
            settings_for(
                farm,
                tmp_path / "data",
                printers_file=rig.printers_file,
                master=rig.master,
                lease_seconds=LEASE_SECONDS,
            ),
            store=open_spec(spec, clock),
        )
        try:
            await until_converged(
                services,
                lambda: snapshot(farm) == expected and rig.in_place(),
                advance=clock.advance,
                max_rounds=6,
            )
        finally:
            await close_clients(services)
            services.sync_store.close()
        state = snapshot(farm)
        assert exactly_once(state) == []
        assert diff(state, expected) == {}
        for sim in (farm.bambuddy, farm.inventree):
            sim.log.clear()
        await prints_on_wiped_stores(wiped_settings, lambda: make_store()[0], max_rounds=2)
        assert sim_writes(farm) == [] and snapshot(farm) == expected
    finally:
        rig.stop()
