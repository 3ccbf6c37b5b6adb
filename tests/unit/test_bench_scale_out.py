"""bench/scale_out.py at its tiny size: real nginx with the LAN gateway's config, function instances under
functions-framework, one Firestore emulator, the capacity-limited simulator. Like tests/unit/test_bench_smoke.py,
only the JSON's shape and the benchmark's own correctness checks are asserted, never a timing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import run_all, scale_out
from tests.unit.test_bench_smoke import test_each_benchmark_writes_the_shape_run_all_renders as check_shape

pytestmark = pytest.mark.slow
SHIPPED = Path(__file__).resolve().parents[2] / "deploy/lan/nginx/farmsync.conf"


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "scale_out.json"
    assert scale_out.main(["--size", "tiny", "--out", str(path)]) == 0
    return json.loads(path.read_text(encoding="utf-8"))


def test_scale_out_writes_the_shape_run_all_renders(output: dict[str, Any]) -> None:
    check_shape({"scale_out": output}, "scale_out")
    assert "scale_out" in run_all.BENCHMARKS


def test_every_size_syncs_each_run_once_and_charges_each_row_once(output: dict[str, Any]) -> None:
    rows = output["table"]["rows"]
    assert [r["instances"] for r in rows] == list(scale_out.SIZES["tiny"].instances)
    for row in rows:
        assert row["processes"] == row["instances"] * len(scale_out.TARGETS)
        assert row["completed_runs"] > 0 and row["usage_rows"] > 0
        assert row["prints_added"] == scale_out.SIZES["tiny"].new_prints  # prints finished during the storm
        assert row["duplicates"] == row["missing"] == row["unexpected"] == 0, row
        assert row["double_charges"] == row["uncharged"] == row["quantities_wrong"] == 0, row
        assert row["spools_twice"] == row["parts_twice"] == 0 and row["unsettled"] == [], row
        assert row["not_200"] == 0 and row["webhooks"] > scale_out.SIZES["tiny"].webhooks, row
        assert row["backfill_calls"] >= 1 and row["filament_calls"] >= 1
        assert row["prints_made"] > 0 and row["inventree_requests"] > 0
    assert all(t["passed"] for t in output["targets"] if t["passed"] is not None)
    assert output["details"]["server_limit_prints_per_second"] > 0


def test_the_gateway_gets_one_upstream_server_per_instance() -> None:
    site = scale_out.scale_upstreams(
        SHIPPED.read_text(encoding="utf-8"), {"webhook": [1001, 1002, 1003, 1004]}
    )
    block = re.search(r"upstream farmsync_webhook \{(.*?)\}", site, re.S)
    assert block is not None
    assert re.findall(r"server (\S+);", block.group(1)) == [
        f"127.0.0.1:{p}" for p in (1001, 1002, 1003, 1004)
    ]
    assert "keepalive 4;" in block.group(1)  # the rest of the shipped block is kept
    assert site.count("server 127.0.0.1:8092;") == 1  # other upstreams untouched
    with pytest.raises(RuntimeError, match="farmsync_nope"):
        scale_out.scale_upstreams(site, {"nope": [1]})
