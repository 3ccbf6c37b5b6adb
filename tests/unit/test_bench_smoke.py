"""Every benchmark's code path at a tiny size, so bench/ cannot rot unnoticed.

Only the shape of the JSON and the benchmarks' own correctness checks are asserted (files mirrored, stock made
exactly once, requests answered), never a timing: performance is judged by ``make bench``, not by tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import (
    backfill,
    capacity,
    cold_start,
    filament_usage,
    gcode_farm,
    gcode_master,
    gcode_sync,
    long_log,
    run_all,
    webhook_storm,
)

BENCHES = {
    "backfill": backfill,
    "gcode_sync": gcode_sync,
    "gcode_farm": gcode_farm,
    "cold_start": cold_start,
    "filament_usage": filament_usage,
    "webhook_storm": webhook_storm,
    "gcode_master": gcode_master,
    "capacity": capacity,
    "long_log": long_log,
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    results = {}
    for name, module in BENCHES.items():
        path = out / f"{name}.json"
        assert module.main(["--size", "tiny", "--out", str(path)]) == 0
        results[name] = json.loads(path.read_text(encoding="utf-8"))
    return results


@pytest.mark.parametrize("name", list(BENCHES))
def test_each_benchmark_writes_the_shape_run_all_renders(
    outputs: dict[str, dict[str, Any]], name: str
) -> None:
    data = outputs[name]
    assert data["name"] == name and data["quick"] is True and data["title"]
    assert isinstance(data["params"], dict) and isinstance(data["notes"], list)
    assert set(data["load_average"]) == {"start", "end"}
    assert 0 < data["pace_seconds"]["start"] < 5 and 0 < data["pace_seconds"]["end"] < 5  # the machine's pace
    columns = data["table"]["columns"]
    assert columns and all(len(c) == 2 and all(isinstance(x, str) for x in c) for c in columns)
    first = columns[0][0]
    assert data["table"]["rows"] and all(first in row for row in data["table"]["rows"])
    assert data["targets"]
    for target in data["targets"]:
        assert {"name", "goal", "value", "passed", "note"} <= set(target)
        assert target["passed"] in (True, False, None)


def test_webhook_storm_answers_every_webhook_with_fewer_ticks(outputs: dict[str, dict[str, Any]]) -> None:
    data = outputs["webhook_storm"]
    ours, base = data["details"]["coalesced"], data["details"]["baseline"]
    size = webhook_storm.SIZES["tiny"]
    assert ours["ok"] == base["ok"] == size.webhooks
    assert base["ticks"] == size.webhooks  # the baseline really runs one tick per webhook
    assert 1 <= ours["ticks"] < base["ticks"]


def test_gcode_master_no_op_reads_nothing_with_the_cache(outputs: dict[str, dict[str, Any]]) -> None:
    details = outputs["gcode_master"]["details"]
    files = gcode_master.SIZES["tiny"].files
    assert details["first"]["uploads"] == files
    assert details["warm"]["master_bytes_read"] == 0 and details["warm"]["skips"] == files
    assert details["cold"]["files_hashed"] == files  # the baseline really hashes everything


def test_backfill_counts_each_kind_and_makes_stock_once(outputs: dict[str, dict[str, Any]]) -> None:
    data = outputs["backfill"]
    concurrent, sequential = data["details"]["concurrent"], data["details"]["sequential"]
    assert concurrent["exactly_once"] and sequential["exactly_once"]
    assert concurrent["prints"] == sequential["prints"] > 0
    assert concurrent["concurrency"] == backfill.DEFAULT_CONCURRENCY and sequential["concurrency"] == 1
    kinds = concurrent["kinds"]
    assert set(kinds) == {"idle tick", "new part", "repeat part (reprint)", "repeat part (new archive)"}
    assert kinds["idle tick"]["synced"] == 0
    assert all(kinds[k]["synced"] == 1 for k in kinds if k != "idle tick")
    assert all(kinds[k]["print_log_reads"] == 1 for k in kinds)


def test_backfill_new_part_stays_within_eight_inventree_requests(outputs: dict[str, dict[str, Any]]) -> None:
    kinds = outputs["backfill"]["details"]["concurrent"]["kinds"]
    assert kinds["new part"]["inventree"] <= 8
    assert outputs["backfill"]["details"]["new_part_425"]["inventree"] <= 8
    assert kinds["repeat part (reprint)"]["inventree"] == 2


def test_capacity_runs_every_plan_against_the_limited_server(outputs: dict[str, dict[str, Any]]) -> None:
    data = outputs["capacity"]
    rows = data["table"]["rows"]
    limited = [r for r in rows if r["server"].startswith("N=")]
    assert [(r["run"].startswith("farmsync"), r["concurrency"]) for r in limited] == [
        (True, backfill.DEFAULT_CONCURRENCY),
        (True, capacity.HIGH),
        (False, 1),
        (False, backfill.DEFAULT_CONCURRENCY),
        (False, capacity.HIGH),
    ]
    assert all(r["exactly_once"] and r["failed"] == 0 and r["prints"] > 0 for r in rows)
    assert all(r["final_limit"] is None for r in limited if not r["run"].startswith("farmsync"))
    assert data["details"]["server_limit_prints_per_second"] > 0


def test_long_log_backfills_every_size_once(outputs: dict[str, dict[str, Any]]) -> None:
    rows = outputs["long_log"]["table"]["rows"]
    assert [r["runs"] for r in rows] == list(long_log.SIZES["tiny"])
    assert all(r["exactly_once"] and r["not_synced"] == 0 and r["peak_rss_mb"] > 0 for r in rows)


def test_gcode_sync_mirrors_with_every_tool_it_found(outputs: dict[str, dict[str, Any]]) -> None:
    data = outputs["gcode_sync"]
    rows = {row["tool"]: row for row in data["table"]["rows"]}
    assert rows["farmsync"]["mirrored"] is True
    assert rows["physical bound"]["first_vs_bound"] == 1.0
    tools = data["details"]["tools"]
    assert tools["farmsync"]["noop"]["uploads"] == 0
    assert tools["farmsync"]["changed"]["uploads"] == gcode_sync.SIZES["tiny"].printers
    if gcode_sync.LINK_SYNC.exists():
        assert rows["link-sync"]["mirrored"] is True
    else:
        assert "setup_linksync" in rows["link-sync"]["mirrored"]
    assert data["details"]["memory"]["farmsync"]["peak_rss_mb"] > 0
    bambu = data["details"]["bambu"]  # the throttled Bambu fakes' row
    assert all(bambu[phase]["mirrored"] for phase in ("first", "noop", "changed"))
    assert bambu["noop"]["uploads"] == 0 and bambu["changed"]["uploads"] == gcode_sync.SIZES["tiny"].printers


def test_gcode_farm_mirrors_onto_fakes_in_their_own_processes(outputs: dict[str, dict[str, Any]]) -> None:
    data = outputs["gcode_farm"]
    size = gcode_farm.SIZES["tiny"]
    assert size.per_worker < size.farms[0]  # more than one worker process serves the fakes
    rows = {(row["printers"], row["tool"]): row for row in data["table"]["rows"]}
    count = size.farms[0]
    assert rows[(count, "farmsync")]["mirrored"] is True
    assert rows[(count, "physical bound")]["first_vs_bound"] == 1.0
    ours = data["details"]["farms"][str(count)]["farmsync"]
    assert ours["first"]["uploads"] == [count * size.files]
    # each changed run changes the file again, and every one of them is uploaded once per printer
    assert ours["noop"]["uploads"] == [0] and ours["changed"]["uploads"] == [count * size.changed_runs]
    assert len(ours["changed"]["runs"]) == size.changed_runs > 1
    assert ours["first"]["timelines"][0]["uploading"] > 0  # read from the fakes' own request logs
    assert ours["first"]["peak_rss_mb"] > 0 and ours["first"]["cpu_seconds"] > 0
    # the same runs against `farmsync serve`, one POST each: same uploads, the service's own CPU and memory
    served = data["details"]["farms"][str(count)][gcode_farm.SERVED]
    assert rows[(count, gcode_farm.SERVED)]["mirrored"] is True
    assert served["first"]["uploads"] == [count * size.files]
    assert served["noop"]["uploads"] == [0] and served["changed"]["uploads"] == [count * size.changed_runs]
    assert served["first"]["engine_seconds"] > 0 and served["first"]["cpu_seconds"] > 0
    assert served["first"]["peak_rss_mb"] > 0
    names = [target["name"] for target in data["targets"]]
    assert f"{count} printers, {gcode_farm.SERVED}: one file changed vs its own bound" in names
    # this machine's floor: the same files PUT by bench/bare_upload.py and nothing else, on a farm of its own
    floor = data["details"]["farms"][str(count)][gcode_farm.BARE]
    assert rows[(count, gcode_farm.BARE)]["mirrored"] is True
    assert floor["first"]["requests"] == count * size.files and floor["changed"]["requests"] == count
    bytes_bound = size.files * size.file_bytes / size.bandwidth
    assert floor["first"]["seconds"] >= bytes_bound * 0.95  # the fakes' pace holds for it too
    assert f"{count} printers: this machine's floor, bare PUTs (first sync / one file changed)" in names
    # the same PUTs with httpx, a status GET per printer and a size check per file
    checked = data["details"]["farms"][str(count)][gcode_farm.CHECKED]
    assert rows[(count, gcode_farm.CHECKED)]["mirrored"] is True
    assert checked["first"]["requests"] == count * (1 + 2 * size.files)
    assert checked["changed"]["requests"] == count * 3
    assert checked["first"]["seconds"] >= bytes_bound * 0.95
    assert f"{count} printers: the floor with httpx and the checks (first sync / one file changed)" in names
    if gcode_sync.LINK_SYNC.exists():
        assert rows[(count, "link-sync")]["mirrored"] is True
    else:
        assert "setup_linksync" in rows[(count, "link-sync")]["mirrored"]


def test_cold_start_answers_every_first_request(outputs: dict[str, dict[str, Any]]) -> None:
    rows = outputs["cold_start"]["table"]["rows"]
    served = [r for r in rows if r["store"] != "none" and r["target"] != cold_start.FLOOR_TARGET]
    floors = [r for r in rows if r["target"] == cold_start.FLOOR_TARGET]
    assert [r["store"] for r in floors] == ["sqlite"] and floors[0]["total"] > 0  # tiny: no Firestore
    assert {r["target"] for r in served} == set(cold_start.SIZES["tiny"].targets)
    assert all(r["status"] == "200" for r in served)
    assert all(r["grpc"] == 0 for r in served if r["store"] == "sqlite")


def test_filament_usage_subtracts_every_row_once(outputs: dict[str, dict[str, Any]]) -> None:
    ours = outputs["filament_usage"]["details"]["farmsync"]
    assert ours["applied"] == filament_usage.SIZES["tiny"].rows
    assert ours["exactly_once"] and ours["repeat_writes"] == 0


def test_run_all_renders_results_and_failures(outputs: dict[str, dict[str, Any]]) -> None:
    benchmarks = [{**data, "status": "ok"} for data in outputs.values()]
    benchmarks.append({"name": "broken", "status": "failed (exit 1)", "error": "Traceback: boom"})
    results = run_all.merge(benchmarks, "tiny", ["a note"])
    assert {"cpu", "cores", "ram_gib", "python", "date"} <= set(results["machine"])
    text = run_all.render(results)
    assert "## Targets" in text and "Note: a note" in text and "Not measured: failed (exit 1)" in text
    for data in outputs.values():
        assert f"## {data['title']}" in text
        assert (
            f"took {data['pace_seconds']['start']} s before and {data['pace_seconds']['end']} s after" in text
        )


def test_run_all_reruns_one_benchmark_and_keeps_the_others(
    outputs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    earlier = {"size": "tiny", "benchmarks": {"backfill": {**outputs["backfill"], "status": "ok"}}}
    (tmp_path / "results-tiny.json").write_text(json.dumps(earlier), encoding="utf-8")
    code = run_all.main(
        ["--size", "tiny", "--only", "filament_usage", "--no-setup", "--out-dir", str(tmp_path)]
    )
    assert code == 0
    merged = json.loads((tmp_path / "results-tiny.json").read_text(encoding="utf-8"))
    assert list(merged["benchmarks"]) == ["backfill", "filament_usage"]
    assert merged["benchmarks"]["filament_usage"]["status"] == "ok"
    markdown = (tmp_path / "RESULTS-tiny.md").read_text(encoding="utf-8")
    assert markdown.startswith("# farmsync benchmarks") and outputs["backfill"]["title"] in markdown


def test_a_farm_verdict_is_not_decided_by_rounding() -> None:
    """5.79 s on a 5.243 s bound is 1.104×: over a 1.10× goal, though two decimals would print 1.1."""
    bound_first, bound_changed = 5 * 256 * 1024 / 250_000, 256 * 1024 / 250_000
    phases = {
        "first": {"seconds": 5.79, "mirrored": True},
        "noop": {"seconds": 0.5},
        "changed": {"seconds": 1.25, "mirrored": True},
    }
    first, _, changed = gcode_farm.time_targets(
        "32 printers", phases, bound_first, bound_changed, served=True
    )
    assert first.passed is False and first.value == "1.104×"
    assert changed.passed is True and changed.value == "1.192×"
