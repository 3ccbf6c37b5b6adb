"""Seeded scenarios: deterministic, shaped like a real farm, loadable from JSON, and resettable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx

from farmsync_sim.scenarios import Scenario, make_scenario, scenario_by_name
from farmsync_sim.server import SimFarm


def test_same_seed_same_farm_other_seed_other_farm() -> None:
    assert make_scenario(seed=3).to_json() == make_scenario(seed=3).to_json()
    assert make_scenario(seed=3).to_json() != make_scenario(seed=4).to_json()


def test_large_scenario_has_reprints_shared_hashes_failures_and_uploads() -> None:
    scenario = make_scenario(runs=500, repeat_ratio=0.5, seed=1)
    runs = scenario.bambuddy["print_log"]
    archives = scenario.bambuddy["archives"]
    assert len(runs) == 500
    runs_per_archive = Counter(r["archive_id"] for r in runs)
    assert max(runs_per_archive.values()) > 1  # reprints: several runs, one archive id
    hashes = Counter(a["content_hash"] for a in archives)
    assert max(hashes.values()) > 1  # separate archives of the same file
    assert {"completed", "failed"} <= {r["status"] for r in runs}
    uploads = [a for a in archives if a["status"] == "archived"]
    assert uploads and not {a["id"] for a in uploads} & set(runs_per_archive)
    assert any(a["thumbnail_path"] is None for a in archives if a["status"] != "archived")
    assert {u["status"] for u in scenario.bambuddy["usage"]} >= {"completed", "failed"}


def test_spool_and_stock_mismatches_are_built_in() -> None:
    scenario = scenario_by_name("small")
    tags = {s["tag_uid"] for s in scenario.bambuddy["spools"]}
    batches = {i["batch"] for i in scenario.inventree["stock_items"]}
    assert scenario.facts["missing_in_bambuddy_batch"] in batches - tags
    assert scenario.facts["missing_in_inventree_tag"] in tags - batches
    assert len(tags & batches) >= 3
    misplaced = next(
        i for i in scenario.inventree["stock_items"] if i["batch"] == scenario.facts["misplaced_spool_tag"]
    )
    spool = next(s for s in scenario.bambuddy["spools"] if s["tag_uid"] == misplaced["batch"])
    assert any(a["spool_id"] == spool["id"] for a in scenario.bambuddy["assignments"])
    assert misplaced["location"] == scenario.ids["FILAMENT_SHELF_LOCATION_ID"]


def test_json_round_trip_and_bundled_file(sim_farm_factory: Callable[..., SimFarm]) -> None:
    original = make_scenario(runs=5, seed=9, name="roundtrip")
    restored = Scenario.from_dict(__import__("json").loads(original.to_json()))
    assert restored.to_json() == original.to_json()
    tiny = scenario_by_name("tiny")
    farm = sim_farm_factory(tiny, seed=2)
    total = httpx.get(f"{farm.bambuddy_url}/print-log/").json()["total"]
    assert total == len(tiny.bambuddy["print_log"])


def test_large_farm_serves_500_runs(sim_farm_factory: Callable[..., SimFarm]) -> None:
    farm = sim_farm_factory("large")
    with httpx.Client(base_url=farm.bambuddy_url) as client:
        page = client.get("/print-log/", params={"status": "completed", "limit": 500}).json()
        assert page["total"] == len(page["items"]) > 300
        ids = {
            a["id"]
            for off in range(0, 500, 100)
            for a in client.get("/archives/", params={"limit": 100, "offset": off}).json()
        }
        assert len(ids) == len(farm.bambuddy.state.archives)


def test_reset_restores_the_scenario(sim_farm: SimFarm) -> None:
    state = sim_farm.bambuddy.state
    before = state.dump()
    state.add_print(1, print_name="Extra")
    state.delete_archive(1)
    sim_farm.inventree.state.api_version = 425
    sim_farm.bambuddy.knobs.update(latency_ms=50)
    sim_farm.bambuddy.configure({"print_log_order": "start_time"})
    sim_farm.reset()
    assert state.dump() == before
    assert sim_farm.bambuddy.state is state
    assert sim_farm.inventree.state.api_version == 530
    assert sim_farm.bambuddy.knobs.latency_ms == 0
    assert sim_farm.bambuddy.state.print_log_order == "released"
