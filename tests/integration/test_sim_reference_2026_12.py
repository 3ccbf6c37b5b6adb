"""The simulator has each fact found by running real servers in 2026-12.

Sources: bambuddy-api.md §2.5, §6 and §11 (Bambuddy 1.2.5.2 and the 1.2.6 dev branch) and inventree-api.md §6
(InvenTree 1.5.0 dev, API 530). One test per stated fact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from farmsync_sim.server import SimFarm
from farmsync_sim.webhook import IMAGE_MAX_BYTES

PRINTER = "B1-X1-CARBON"


@pytest.fixture
def bb(sim_farm: SimFarm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_farm.bambuddy_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def inv(sim_farm: SimFarm) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {sim_farm.token}"}
    with httpx.Client(base_url=sim_farm.inventree_url, headers=headers, timeout=5.0) as client:
        yield client


def log_ids(bb: httpx.Client, **params: str) -> list[int]:
    return [r["id"] for r in bb.get("/print-log/", params={"limit": 500, **params}).json()["items"]]


# ------------------------------------------------------------------------------------------ print log (§2.5)


def test_print_log_created_at_is_whole_seconds(sim_farm: SimFarm, bb: httpx.Client) -> None:
    sim_farm.bambuddy.state.add_print(PRINTER, at=datetime(2027, 1, 1, 8, 0, 0, 734_001))
    for item in bb.get("/print-log/", params={"limit": 500}).json()["items"]:
        assert "." not in item["created_at"], item["created_at"]


def test_released_order_lists_same_second_runs_in_ascending_id(sim_farm: SimFarm, bb: httpx.Client) -> None:
    state = sim_farm.bambuddy.state
    second = datetime(2027, 1, 1, 9, 0, 0)
    first = state.add_print(PRINTER, at=second)
    other = state.add_print("B2-P1S", at=second + timedelta(microseconds=400_000))
    newest = state.add_print(PRINTER, at=second + timedelta(seconds=1))
    assert log_ids(bb)[:3] == [newest["id"], first["id"], other["id"]]  # 23, 24: not 24, 23


def test_new_runs_share_a_second_when_they_finish_together(sim_farm: SimFarm) -> None:
    state = sim_farm.bambuddy.state
    runs = [state.add_print(PRINTER) for _ in range(2)]
    first, second = (state.print_log[r["id"]]["created_at"] for r in runs)
    # whole seconds, and no artificial one-second step between runs: ties happen as on the real server
    assert first.microsecond == second.microsecond == 0 and timedelta(0) <= second - first <= timedelta(
        seconds=1
    )


def test_next_release_orders_by_start_time_then_id(sim_farm: SimFarm, bb: httpx.Client) -> None:
    state = sim_farm.bambuddy.state
    end = datetime(2027, 1, 2, 12, 0, 0)
    short = state.add_print(PRINTER, duration_s=600, at=end)
    long = state.add_print("B2-P1S", duration_s=4 * 3600, at=end + timedelta(seconds=30))
    assert log_ids(bb)[:2] == [long["id"], short["id"]]  # the released order: created_at desc
    root = sim_farm.bambuddy_url.removesuffix("/api/v1")
    switched = httpx.patch(
        f"{root}/_sim/config", json={"print_log_order": "start_time"}
    )  # for other processes
    assert switched.json()["print_log_order"] == "start_time"
    ids = log_ids(bb)
    assert ids.index(short["id"]) < ids.index(long["id"])  # started later lists first
    tie = state.add_print(PRINTER, duration_s=600, at=end)  # same start as ``short``: id desc
    assert log_ids(bb)[:2] == [tie["id"], short["id"]]
    with pytest.raises(ValueError, match="print_log_order"):
        sim_farm.bambuddy.configure({"print_log_order": "random"})


@pytest.mark.parametrize("order", ["released", "start_time"])
def test_date_from_filters_on_created_at_in_both_orders(
    sim_farm: SimFarm, bb: httpx.Client, order: str
) -> None:
    sim_farm.bambuddy.configure({"print_log_order": order})
    state = sim_farm.bambuddy.state
    cut = datetime(2027, 2, 1, 10, 0, 0)
    before = state.add_print(PRINTER, duration_s=60, at=cut - timedelta(seconds=1))
    at_cut = state.add_print(PRINTER, duration_s=8 * 3600, at=cut)  # started long before the cut
    after = state.add_print(PRINTER, duration_s=60, at=cut + timedelta(minutes=1))
    ids = log_ids(bb, date_from=cut.isoformat())
    assert set(ids) == {at_cut["id"], after["id"]} and before["id"] not in ids
    assert bb.get("/print-log/", params={"date_from": cut.isoformat()}).json()["total"] == 2


def test_status_patched_on_the_archive_is_copied_to_its_latest_run(
    sim_farm: SimFarm, bb: httpx.Client
) -> None:
    run = sim_farm.bambuddy.state.add_print(PRINTER, status="failed")
    assert bb.patch(f"/archives/{run['archive_id']}", json={"status": "completed"}).status_code == 200
    assert run["id"] in log_ids(bb, status="completed")


# ------------------------------------------------------------------------------------------ soft delete (§11)


def test_soft_delete_hides_the_archive_but_the_run_keeps_its_archive_id(
    sim_farm: SimFarm, bb: httpx.Client
) -> None:
    run = sim_farm.bambuddy.state.add_print(PRINTER, print_name="Soon gone")
    archive_id = run["archive_id"]
    assert httpx.delete(
        f"{sim_farm.bambuddy_url.removesuffix('/api/v1')}/_sim/archives/{archive_id}"
    ).is_success
    response = bb.get(f"/archives/{archive_id}")
    assert (response.status_code, response.json()) == (404, {"detail": "Archive not found"})
    assert archive_id not in [a["id"] for a in bb.get("/archives/", params={"limit": 500}).json()]
    entry = next(
        r for r in bb.get("/print-log/", params={"limit": 500}).json()["items"] if r["id"] == run["id"]
    )
    assert entry["archive_id"] == archive_id


# ------------------------------------------------------------------------------------------ webhooks (§6, §11)


def test_webhook_carries_the_finish_photo_as_base64_image(sim_farm: SimFarm, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    run = sim_farm.bambuddy.state.add_print(PRINTER)
    sim_farm.bambuddy.fire_webhook(webhook_receiver.url, "s", run["id"], photo_bytes=IMAGE_MAX_BYTES)
    body = webhook_receiver.requests[-1].body
    payload = json.loads(body)
    assert len(base64.b64decode(payload["image"])) == IMAGE_MAX_BYTES
    assert 3_300_000 < len(body) < 3_500_000  # "a body can reach about 3.4 MB"
    assert payload["finish_photo_url"] == f"/api/v1/archives/{run['archive_id']}/photos/finish.jpg"
    assert all(isinstance(v, str) for v in payload.values())
    assert webhook_receiver.requests[-1].headers["authorization"] == "Bearer s"


def test_webhook_leaves_out_a_photo_over_the_limit_and_small_ones_stay_small(
    sim_farm: SimFarm, webhook_receiver
) -> None:  # type: ignore[no-untyped-def]
    run = sim_farm.bambuddy.state.add_print(PRINTER)
    sim_farm.bambuddy.fire_webhook(webhook_receiver.url, None, run["id"], photo_bytes=IMAGE_MAX_BYTES + 1)
    big = json.loads(webhook_receiver.requests[-1].body)
    assert "image" not in big and "finish_photo_url" in big
    sim_farm.bambuddy.fire_webhook(webhook_receiver.url, None, run["id"], photo_bytes=807_000)
    assert 1_070_000 < len(webhook_receiver.requests[-1].body) < 1_090_000  # 807 KB photo: ~1,076,480 bytes


def test_failed_run_webhook_adds_progress_when_asked(sim_farm: SimFarm, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    run = sim_farm.bambuddy.state.add_print(PRINTER, status="failed")
    sim_farm.bambuddy.fire_webhook(webhook_receiver.url, None, run["id"], progress="40")
    payload = json.loads(webhook_receiver.requests[-1].body)
    assert payload["event"] == "print_failed" and payload["progress"] == "40"


# ------------------------------------------------------------------------------------------ scope probe (§11)


@pytest.mark.parametrize(
    ("path", "flag"),
    [("/archives/999999", "can_manage_archives"), ("/inventory/spools/999999", "can_manage_inventory")],
)
def test_write_scope_probe_answers_403_without_and_404_with_the_scope(
    sim_farm: SimFarm, bb: httpx.Client, path: str, flag: str
) -> None:
    state = sim_farm.bambuddy.state
    state.auth_enabled = True
    without = state.add_api_key(**{flag: False})
    refused = bb.patch(path, json={}, headers={"X-API-Key": without})
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": f"API key does not have '{flag}' permission"},
    )
    allowed = bb.patch(path, json={}, headers={"X-API-Key": sim_farm.api_key})
    assert allowed.status_code == 404


# ------------------------------------------------------------------------------------------ InvenTree (§6)


def test_default_api_version_is_530_and_425_stays_selectable(sim_farm: SimFarm, inv: httpx.Client) -> None:
    assert inv.get("/api/").json()["apiVersion"] == 530
    sim_farm.inventree.configure({"api_version": 425})
    assert inv.get("/api/").json()["apiVersion"] == 425


def test_database_is_locked_on_writes_only_and_the_write_does_not_happen(
    sim_farm: SimFarm, inv: httpx.Client
) -> None:
    sim_farm.inventree.knobs.update(fault_rate=1.0, fault_kinds={"locked": 1.0})
    parts = len(sim_farm.inventree.state.parts)
    response = inv.post("/api/part/", json={"name": "Locked out", "category": 1})
    assert (response.status_code, response.json()) == (500, {"detail": "database is locked"})
    assert len(sim_farm.inventree.state.parts) == parts
    assert inv.get("/api/part/", params={"limit": 1}).status_code == 200  # reads are not locked
    assert sim_farm.inventree.log.entries[0].fault == "locked"
    sim_farm.bambuddy.knobs.update(fault_rate=1.0, fault_kinds={"locked": 1.0})
    with httpx.Client(base_url=sim_farm.bambuddy_url) as bb:
        assert bb.patch("/archives/1", json={"notes": "x"}).status_code == 200  # Bambuddy has no such fault


def test_structural_category_refuses_parts_with_the_real_message(
    sim_farm: SimFarm, inv: httpx.Client
) -> None:
    structural = next(pk for pk, c in sim_farm.inventree.state.categories.items() if c["structural"])
    assert inv.get(f"/api/part/category/{structural}/").json()["structural"] is True
    response = inv.post("/api/part/", json={"name": "Nowhere", "category": structural})
    assert response.status_code == 400
    assert "Parts cannot be assigned to structural part categories!" in json.dumps(response.json())


def test_depleting_removal_deletes_the_item_but_its_history_keeps_the_part(inv: httpx.Client) -> None:
    part = inv.post("/api/part/", json={"name": "Spool PLA", "category": 1}).json()["pk"]
    item = inv.post("/api/stock/", json={"part": part, "quantity": 10, "location": 1}).json()[0]["pk"]
    marker = "bambuddy:usage:run-1"
    assert (
        inv.post(
            "/api/stock/remove/", json={"items": [{"pk": item, "quantity": 50}], "notes": marker}
        ).status_code
        == 201
    )
    assert inv.get(f"/api/stock/{item}/").status_code == 404
    history = inv.get("/api/stock/track/", params={"part": part}).json()
    assert any(marker in (h.get("notes") or "") and h["item"] is None for h in history)
