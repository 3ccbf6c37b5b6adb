"""``GET /metrics`` end to end: known runs against the simulator and fake printers, then a scrape through the
route table, parsed with Prometheus' own parser, whose numbers must match what the runs did exactly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from farmsync import metrics
from farmsync.clients.http import COUNTERS
from farmsync.services import Services, set_services
from farmsync.settings import load_settings
from farmsync.store.sqlite import SqliteStore
from farmsync.web.app import api_router
from farmsync.web.serve import create_app
from farmsync_sim.scenarios import scenario_by_name
from farmsync_sim.server import SimFarm
from tests.fixtures.farm import farm_settings

TOKEN = "svc-token-for-tests"


@pytest.fixture
def tiny(sim_farm_factory: Callable[..., SimFarm]) -> SimFarm:
    return sim_farm_factory(scenario_by_name("tiny"), seed=3)


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    metrics.reset()
    COUNTERS.reset()
    yield
    metrics.reset()


@pytest.fixture
async def app_for(tmp_path: Path) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """``app_for(settings)``: the ``farmsync serve`` app on a fresh SQLite store, driven through ASGI."""
    made: list[tuple[Services, httpx.AsyncClient]] = []

    def build(settings: Any, *, token: str | None = TOKEN) -> httpx.AsyncClient:
        services = Services(settings, store=SqliteStore(tmp_path / f"store-{len(made)}.sqlite3"))
        set_services(services)
        headers = {"X-Service-Token": token} if token else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services, schedule=False)),
            base_url="http://127.0.0.1",
            headers=headers,
        )
        made.append((services, client))
        return client

    yield build
    for services, client in made:
        await client.aclose()
        await services.aclose()
    set_services(None)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (sample name, sorted labels)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def get_metrics(client: httpx.AsyncClient) -> dict[Any, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return scrape(response.text)


async def test_backfill_and_filament_runs_are_counted_exactly(tiny: SimFarm, tmp_path: Path, app_for):
    settings = farm_settings(
        tiny, tmp_path, filament_tracking_enabled=True, filament_dry_run=False, sync_concurrency=2
    )
    client = app_for(settings)
    before = await get_metrics(client)
    assert value(before, "farmsync_prints_total", outcome="synced") == 0
    assert value(before, "farmsync_store_up") == 1
    tiny.bambuddy.log.clear()
    tiny.inventree.log.clear()

    backfill = await client.post("/sync/backfill")
    assert backfill.status_code == 200, backfill.text
    body = backfill.json()
    completed = [r for r in tiny.scenario.bambuddy["print_log"] if r["status"] == "completed"]
    assert body["totals"]["synced"] == len(completed) == 3

    filament = await client.post("/sync/filament", params={"dry_run": "false"})
    assert filament.status_code == 200, filament.text
    lines = filament.json()["usage"]["lines"]
    charged = [line for line in lines if line["outcome"] == "applied"]
    spools = {s["id"]: s for s in tiny.scenario.bambuddy["spools"]}
    expected_grams: dict[str, float] = {}
    for row in tiny.scenario.bambuddy["usage"]:
        if row["status"] == "completed":
            material = spools[row["spool_id"]]["material"]
            expected_grams[material] = expected_grams.get(material, 0.0) + row["weight_used"]
    assert sum(line["charged_grams"] for line in charged) == pytest.approx(sum(expected_grams.values()))

    after = await get_metrics(client)
    assert value(after, "farmsync_prints_total", outcome="synced") == 3
    assert value(after, "farmsync_prints_total", outcome="failed") == 0
    assert value(after, "farmsync_prints_total", outcome="parked") == 0
    for material, grams in expected_grams.items():
        assert value(after, "farmsync_filament_subtracted_grams_total", material=material) == pytest.approx(
            grams
        )
    # the HTTP layer's counts are exactly what the simulator saw, per system and method
    for system, sim in (("bambuddy", tiny.bambuddy), ("inventree", tiny.inventree)):
        seen = sim.log.counts()
        assert seen, system
        for method, n in seen.items():
            assert value(after, "farmsync_upstream_requests_total", system=system, method=method) == n
    assert total(after, "farmsync_upstream_errors_total") == 0
    # one backfill and one filament run, each observed once
    assert value(after, "farmsync_run_duration_seconds_count", kind="backfill") == 1
    assert value(after, "farmsync_run_duration_seconds_count", kind="filament") == 1
    assert value(after, "farmsync_run_duration_seconds_sum", kind="backfill") == pytest.approx(
        body["seconds"], abs=0.01
    )
    assert value(after, "farmsync_run_duration_seconds_bucket", kind="backfill", le="+Inf") == 1

    again = await client.post("/sync/backfill")
    assert again.json()["totals"]["synced"] == 0
    final = await get_metrics(client)
    assert value(final, "farmsync_prints_total", outcome="synced") == 3
    assert value(final, "farmsync_run_duration_seconds_count", kind="backfill") == 2


async def test_upstream_errors_are_counted_per_attempt(tiny: SimFarm, tmp_path: Path, app_for):
    client = app_for(farm_settings(tiny, tmp_path))
    tiny.bambuddy.knobs.update(fault_rate=1.0, fault_kinds={"503": 1.0, "drop": 1.0})
    tiny.bambuddy.log.clear()
    response = await client.post("/sync/backfill")
    assert response.status_code == 502, response.text
    samples = await get_metrics(client)
    attempts = total(samples, "farmsync_upstream_requests_total", system="bambuddy")
    assert attempts >= 1
    assert total(samples, "farmsync_upstream_errors_total", system="bambuddy") == attempts
    assert total(samples, "farmsync_upstream_errors_total", system="inventree") == 0


async def test_gcode_files_and_bytes_per_printer(tmp_path: Path, app_for, fake_buddy) -> None:
    master = tmp_path / "master"
    files = {"a.gcode": b"G1 X1\n" * 1000, "sub/b.gcode": b"G1 Y2\n" * 300}
    for rel, data in files.items():
        (master / rel).parent.mkdir(parents=True, exist_ok=True)
        (master / rel).write_bytes(data)
    ash = fake_buddy(password="pw-ash-1234", name="Ash")
    bishop = fake_buddy(password="pw-bishop-1234", name="Bishop")
    bishop.add_file("old.gcode", b"G1 Z9\n")
    printers = tmp_path / "printers.yml"
    printers.write_text(
        "".join(
            f"{name}:\n  printer_type: MK4\n  host: {p.url}\n  username: maker\n  password: {p.password}\n"
            for name, p in (("Ash", ash), ("Bishop", bishop))
        )
    )
    settings = load_settings(
        "/dev/null",
        gcode_printers_file=printers,
        gcode_source_dir=master,
        service_api_token=TOKEN,
        data_dir=tmp_path / "data",
    )
    client = app_for(settings)
    dry = await client.post("/sync/gcode")
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    samples = await get_metrics(client)
    assert total(samples, "farmsync_gcode_files_total") == 0  # a dry run writes nothing, counts nothing

    run = await client.post("/sync/gcode", params={"dry_run": "false"})
    assert run.status_code == 200, run.text
    samples = await get_metrics(client)
    size = sum(len(d) for d in files.values())
    for name in ("Ash", "Bishop"):
        assert value(samples, "farmsync_gcode_files_total", printer=name, outcome="uploaded") == 2
        assert value(samples, "farmsync_gcode_uploaded_bytes_total", printer=name) == size
        assert value(samples, "farmsync_gcode_files_total", printer=name, outcome="failed") == 0
    assert value(samples, "farmsync_gcode_files_total", printer="Bishop", outcome="deleted") == 1
    assert value(samples, "farmsync_gcode_files_total", printer="Ash", outcome="deleted") == 0
    assert ash.bytes_received() == size
    assert sorted(bishop.files) == sorted(ash.files) and len(ash.files) == 2  # old.gcode is gone
    assert value(samples, "farmsync_run_duration_seconds_count", kind="gcode") == 2


async def test_metrics_need_the_service_token_unless_opened(tiny: SimFarm, tmp_path: Path, app_for):
    closed = app_for(farm_settings(tiny, tmp_path), token=None)
    refused = await closed.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["field"] == "X-Service-Token" and "farmsync_" not in refused.text
    wrong = await closed.get("/metrics", headers={"X-Service-Token": "nope"})
    assert wrong.status_code == 401

    opened = app_for(farm_settings(tiny, tmp_path, metrics_public=True), token=None)
    response = await opened.get("/metrics")
    assert response.status_code == 200 and "farmsync_store_up 1.0" in response.text
    # the setting opens /metrics only: other manual routes still ask for the token
    assert (await opened.get("/sync/status")).status_code == 401


async def test_the_api_target_serves_metrics_too(tiny: SimFarm, tmp_path: Path) -> None:
    """The ``api`` function target's router has the route (the ``app`` target shares serve's table)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    services = Services(farm_settings(tiny, tmp_path), store=SqliteStore(tmp_path / "api.sqlite3"))
    set_services(services)
    metrics.print_outcome("synced")

    async def endpoint(request: Request) -> Any:
        return await api_router.dispatch(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        assert (await client.get("/metrics")).status_code == 401
        response = await client.get("/metrics", headers={"X-Service-Token": TOKEN})
    await services.aclose()
    set_services(None)
    assert value(scrape(response.text), "farmsync_prints_total", outcome="synced") == 1


def test_store_down_reads_zero_and_the_registry_is_not_the_global_one() -> None:
    from prometheus_client import REGISTRY

    metrics.print_outcome("parked")
    body, _ = metrics.exposition(store_up=False)
    samples = scrape(body.decode())
    assert value(samples, "farmsync_store_up") == 0
    assert value(samples, "farmsync_prints_total", outcome="parked") == 1
    assert "farmsync_prints_total" not in json.dumps([s.name for f in REGISTRY.collect() for s in f.samples])
    metrics.reset()
    assert value(scrape(metrics.exposition(store_up=True)[0].decode()), "farmsync_prints_total") == 0
