"""The operator's subcommands against the simulated farm: the same library as the routes, tables or --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from farmsync.cli import cli
from farmsync.services import set_services
from farmsync_sim.server import SimFarm


@pytest.fixture
def env_file(sim_farm: SimFarm, tmp_path: Path) -> Path:
    ids = sim_farm.ids
    path = tmp_path / "farm.env"
    path.write_text(
        "\n".join(
            [
                f"BAMBUDDY_BASE_URL={sim_farm.bambuddy_url}",
                f"BAMBUDDY_API_KEY={sim_farm.api_key}",
                f"INVENTREE_BASE_URL={sim_farm.inventree_url}/api",
                f"INVENTREE_TOKEN={sim_farm.token}",
                f"INVENTREE_PART_CATEGORY_ID={ids['INVENTREE_PART_CATEGORY_ID']}",
                f"INVENTREE_STOCK_LOCATION_ID={ids['INVENTREE_STOCK_LOCATION_ID']}",
                "FILAMENT_TRACKING_ENABLED=true",
                f"FILAMENT_PART_CATEGORY_ID={ids['FILAMENT_PART_CATEGORY_ID']}",
                f"FILAMENT_STORAGE_LOCATION_ID={ids['FILAMENT_STORAGE_LOCATION_ID']}",
                f"FILAMENT_LOADED_LOCATION_ID={ids['FILAMENT_LOADED_LOCATION_ID']}",
                f"FILAMENT_PRINTER_LOCATION_MAP={ids['FILAMENT_PRINTER_LOCATION_MAP']}",
                f"DATA_DIR={tmp_path / 'data'}",
                "LOG_FORMAT=json",
                "",
            ]
        )
    )
    yield path
    set_services(None)


def invoke(env_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--env-file", str(env_file), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_backfill_status_and_idempotent_rerun(env_file: Path, sim_farm: SimFarm) -> None:
    code, out = invoke(env_file, "backfill", "--json")
    report = json.loads(out)
    assert code == 0 and report["totals"]["synced"] == 9
    code, out = invoke(env_file, "backfill")
    assert code == 0 and "9 skipped" in out and "InvenTree 0" in out
    code, out = invoke(env_file, "status", "--json")
    status = json.loads(out)
    assert status["runs"] == {"done": 9} and status["last_backfill"]["totals"]["skipped"] == 9
    code, out = invoke(env_file, "status")
    assert code == 0 and "9 done" in out


def test_backfill_retry_now(env_file: Path, sim_farm: SimFarm) -> None:
    sim_farm.inventree.knobs.update(fault_rate=1.0, fault_kinds={"locked": 1.0})
    code, out = invoke(env_file, "backfill")
    assert code != 0 and "9 failed" in out
    sim_farm.inventree.knobs.update(fault_rate=0.0)
    code, out = invoke(env_file, "backfill")
    assert "9 pending" in out and "wait for their retry time" in out
    code, out = invoke(env_file, "backfill", "--retry-now")
    assert code == 0 and "9 synced" in out and "retried now: 9" in out


def test_tick_and_sync_archive(env_file: Path) -> None:
    code, out = invoke(env_file, "tick", "prints", "--json")
    assert code == 0 and json.loads(out)["cursor_after"].startswith("20")  # the cursor is a time now
    code, out = invoke(env_file, "sync", "archive", "1", "--force", "--json")
    assert code == 0 and {i["outcome"] for i in json.loads(out)["items"]} == {"refreshed"}


def test_validate_table_and_json(env_file: Path) -> None:
    code, out = invoke(env_file, "validate", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out = invoke(env_file, "validate")
    assert code == 0 and "bambuddy" in out and "warning" in out and "INVENTREE_STOCK_LOCATION_ID" in out


def test_filament_dry_run_then_apply(env_file: Path, sim_farm: SimFarm) -> None:
    code, out = invoke(env_file, "filament", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] and dry["writes"]
    assert sim_farm.bambuddy.log.writes() == [] and sim_farm.inventree.log.writes() == []
    code, out = invoke(env_file, "filament", "--apply")
    assert code == 0 and "filament applied" in out
    assert sim_farm.bambuddy.log.writes() or sim_farm.inventree.log.writes()
    code, out = invoke(env_file, "filament", "--step", "spools", "--json")
    assert code == 0 and json.loads(out)["writes"] == []


def test_filament_status_shows_depleted_spools_and_grams_left_out(env_file: Path, sim_farm: SimFarm) -> None:
    state = sim_farm.bambuddy.state
    tag = state.spools[3]["tag_uid"]
    item = next(i for i in sim_farm.inventree.state.stock_items.values() if i["batch"] == tag)
    state.add_usage(3, item["quantity"] + 5.0)
    code, out = invoke(env_file, "filament", "--step", "usage")
    assert code == 0 and "left out" in out and "FILAMENT_USAGE_SUCCESS_STATUSES" in out
    code, out = invoke(env_file, "filament", "--step", "usage", "--apply")
    assert code == 0 and "depleted" in out
    code, out = invoke(env_file, "filament", "--status", "--json")
    status = json.loads(out)
    assert code == 0 and [v["tag_uid"] for v in status["depleted"]] == [tag]
    code, out = invoke(env_file, "filament", "--status")
    assert code == 0 and "1 depleted" in out and f"depleted {state.spools[3]['material']}" in out
    assert tag in out and "left out" in out


def test_filament_refuses_when_tracking_is_off(env_file: Path) -> None:
    env_file.write_text(
        env_file.read_text().replace("FILAMENT_TRACKING_ENABLED=true", "FILAMENT_TRACKING_ENABLED=false")
    )
    result = CliRunner().invoke(cli, ["--env-file", str(env_file), "filament"], standalone_mode=False)
    assert result.exception is not None and "tracking is off" in str(result.exception).lower()
