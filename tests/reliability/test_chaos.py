"""Chaos: the whole farm scenario under 20 % faults on every upstream converges to the fault-free state.

Bambuddy and InvenTree (the simulator) answer 503, drop the connection after doing the write, or hang past the
client's timeout on 20 % of requests (InvenTree also answers writes with "500 database is locked"), with latency
on the rest; every printer sits behind a proxy that breaks
20 % of its connections. Rounds (print tick, filament run, G-code run) repeat until the state matches, bounded.
The final state must equal a fault-free run of the same scenario: no duplicate stock item or part, every usage
row deducted exactly once (per-item quantities and one marker each), spools and back-links the same, every file
on every printer. A last round without faults must then write nothing at all, and print ticks on wiped
stores (faults back on) must find everything already in InvenTree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmsync.services import Services
from farmsync.store import Store
from farmsync_sim.server import SimFarm
from tests.fixtures.store import ManualClock
from tests.reliability.world import (
    PrinterRig,
    close_clients,
    diff,
    exactly_once,
    prepare,
    prints_on_wiped_stores,
    reference_state,
    run_round,
    scenario,
    settings_for,
    sim_writes,
    snapshot,
    until_converged,
)

SEED = 23
FAULTS = {"fault_rate": 0.2, "latency_ms": 3.0, "fault_timeout": 0.3}


@pytest.mark.slow
async def test_faults_everywhere_converge_to_the_fault_free_state(
    sim_farm_factory: Callable[..., SimFarm],
    make_store: Callable[..., tuple[Store, dict[str, Any]]],
    store_backend: str,
    tmp_path: Path,
) -> None:
    clean = sim_farm_factory(scenario=scenario(SEED), seed=SEED)
    prepare(clean)
    expected = await reference_state(clean, tmp_path / "reference")
    assert exactly_once(expected) == []

    faulty = sim_farm_factory(scenario=scenario(SEED), seed=SEED, **FAULTS)
    # InvenTree on SQLite also answers "500 database is locked" to writes (inventree-api.md §6)
    faulty.inventree.knobs.update(fault_kinds={"503": 1.0, "drop": 1.0, "timeout": 1.0, "locked": 1.0})
    prepare(faulty)
    rig = PrinterRig(tmp_path / "printers", fault_rate=0.2, seed=SEED).start()
    clock = ManualClock()
    store, _ = make_store(clock=clock)
    settings = settings_for(
        faulty,
        tmp_path / "data",
        printers_file=rig.printers_file,
        master=rig.master,
        http_timeout_seconds=0.5,
    )
    services = Services(settings, store=store)
    try:
        rounds = await until_converged(
            services,
            lambda: snapshot(faulty) == expected and rig.in_place(),
            advance=clock.advance,
            max_rounds=25,
        )
        state = snapshot(faulty)
        assert exactly_once(state) == []
        assert diff(state, expected) == {}
        injected = sum(1 for sim in (faulty.bambuddy, faulty.inventree) for e in sim.log.entries if e.fault)
        assert injected >= 10, "the simulator hardly faulted: the test proved nothing"
        assert any(e.fault == "locked" for e in faulty.inventree.log.entries)
        assert sum(p.faults["refuse"] + p.faults["cut"] for p in rig.proxies) >= 1

        # Without faults, one more round finds nothing to do: the state is not just equal but settled.
        for sim in (faulty.bambuddy, faulty.inventree):
            sim.knobs.update(fault_rate=0.0, latency_ms=0.0)
            sim.log.clear()
        rig.calm()
        before = rig.writes()
        calm = Services(settings.model_copy(update={"http_timeout_seconds": 10.0}), store=store)
        clock.advance(3600.0)
        final = await run_round(calm)
        await close_clients(calm)
        assert final.clean, final.errors
        assert sim_writes(faulty) == []
        assert rig.writes()[len(before) :] == []
        assert snapshot(faulty) == expected

        # The store is a cache (prints side): under the same faults, print ticks each on a brand-new empty
        # store (a new SQLite file, a new Firestore prefix) find everything in InvenTree and write nothing.
        for sim in (faulty.bambuddy, faulty.inventree):
            sim.knobs.update(**FAULTS)
        wiped = await prints_on_wiped_stores(settings, lambda: make_store(clock=clock)[0], max_rounds=15)
        assert sim_writes(faulty) == []
        assert snapshot(faulty) == expected
        print(
            f"{store_backend}: converged after {rounds} round(s), {injected} simulator faults injected; "
            f"prints clean on a wiped store after {wiped} round(s)"
        )
    finally:
        await close_clients(services)
        rig.stop()
