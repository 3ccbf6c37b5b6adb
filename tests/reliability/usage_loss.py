"""Usage rounds on a store that keeps getting lost: the helpers and the worker process of test_usage_store_loss.

Both farms of a comparison get the same usage rows in the same order (so the same ids), the troubled one a batch
at a time between waves, the reference all at once. A round is one applied usage step, as the filament tick runs
it; every round here starts on an empty store, so only InvenTree's history can stop a second charge.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from farmsync.filament.report import FilamentReport
from farmsync.services import Services
from farmsync_sim.server import SimFarm
from tests.reliability.world import FarmAddress, close_clients, settings_for, snapshot


def add_rows(farm: SimFarm, count: int, *, batch: int) -> None:
    """``count`` small completed usage rows over the first four spools (none runs out), the same for every farm."""
    rng = random.Random(1000 + batch)
    for n in range(count):
        farm.bambuddy.state.add_usage(
            1 + rng.randrange(4), round(rng.uniform(0.5, 2.0), 1), print_name=f"w{batch}-{n}"
        )


async def usage_round(services: Services) -> FilamentReport:
    from farmsync.filament.run import run_filament

    return await run_filament(services, steps=["usage"], dry_run=False, trigger="tick")


async def usage_reference(farm: SimFarm, data_dir: Path) -> dict[str, Any]:
    """The trouble-free outcome: two usage rounds on one store."""
    from farmsync.store.sqlite import SqliteStore

    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(data_dir / f"reference-{time.monotonic_ns()}.sqlite3")
    services = Services(settings_for(farm, data_dir), store=store)
    try:
        for _ in range(2):
            report = await usage_round(services)
            assert report.ok and not report.errors, report.errors
    finally:
        await services.aclose()
    return snapshot(farm)


def usage_crash_worker(
    address: FarmAddress, spec: dict[str, Any], data_dir: str, ready: Any, log_path: str
) -> None:
    """Run usage rounds forever on the store ``spec`` names (the parent kills this process with SIGKILL)."""
    from tests.fixtures.log_scan import capture_to_file

    capture_to_file(log_path)
    asyncio.run(_usage_loop(address, spec, Path(data_dir), ready))


async def _usage_loop(address: FarmAddress, spec: dict[str, Any], data_dir: Path, ready: Any) -> None:
    from tests.fixtures.store import open_spec

    settings = settings_for(address, data_dir, lease_seconds=2.0, http_timeout_seconds=10.0)
    services = Services(settings, store=open_spec(spec))
    ready.put(os.getpid())
    try:
        while True:
            await usage_round(services)
    finally:
        await close_clients(services)
