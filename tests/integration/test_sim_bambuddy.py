"""The simulated Bambuddy answers like the real one (reference: bambuddy-api.md), quirks included."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from farmsync_sim.server import SimFarm

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bb(sim_farm: SimFarm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_farm.bambuddy_url, timeout=5.0) as client:
        yield client


# ------------------------------------------------------------------------------------------ paths and auth


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("/archives", "/archives/"),
        ("/printers", "/printers/"),
        ("/print-log", "/print-log/"),
        ("/inventory/spools/", "/inventory/spools"),
        ("/inventory/assignments/", "/inventory/assignments"),
        ("/inventory/usage/", "/inventory/usage"),
        ("/archives/1/", "/archives/1"),
        ("/inventory/spools/1/", "/inventory/spools/1"),
    ],
)
def test_wrong_trailing_slash_is_404_without_redirect(bb: httpx.Client, wrong: str, right: str) -> None:
    response = bb.get(wrong)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert "location" not in response.headers
    assert bb.get(right).status_code == 200


def test_auth_off_accepts_any_key_or_none(bb: httpx.Client) -> None:
    assert bb.get("/printers/").status_code == 200
    assert bb.get("/printers/", headers={"X-API-Key": "garbage"}).status_code == 200
    assert bb.get("/printers/", headers={"Authorization": "Bearer nonsense"}).status_code == 200


def test_auth_on_needs_a_known_key_in_either_header(sim_farm: SimFarm, bb: httpx.Client) -> None:
    sim_farm.bambuddy.state.auth_enabled = True
    for headers in (
        {},
        {"X-API-Key": "bb_wrong"},
        {"Authorization": "Bearer bb_wrong"},
        {"Authorization": "Token x"},
    ):
        response = bb.get("/printers/", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication required"}
    assert bb.get("/printers/", headers={"X-API-Key": sim_farm.api_key}).status_code == 200
    assert bb.get("/printers/", headers={"Authorization": f"Bearer {sim_farm.api_key}"}).status_code == 200


def test_key_without_scope_gets_403(sim_farm: SimFarm, bb: httpx.Client) -> None:
    sim_farm.bambuddy.state.auth_enabled = True
    readonly = sim_farm.bambuddy.state.add_api_key(can_manage_archives=False)
    headers = {"X-API-Key": readonly}
    assert bb.get("/archives/1", headers=headers).status_code == 200
    response = bb.patch("/archives/1", json={"notes": "x"}, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"detail": "API key does not have 'can_manage_archives' permission"}


# ------------------------------------------------------------------------------------------ archives


def test_archive_list_is_a_bare_array_newest_first_without_status_filter(bb: httpx.Client) -> None:
    archives = bb.get("/archives/", params={"status": "failed", "limit": 100}).json()
    assert isinstance(archives, list)
    created = [a["created_at"] for a in archives]
    assert created == sorted(created, reverse=True)
    statuses = {a["status"] for a in archives}
    assert "completed" in statuses and "archived" in statuses  # status= is not a filter here
    assert all(a["duplicates"] is None for a in archives)
    assert all("Z" not in a["created_at"] and "+" not in a["created_at"] for a in archives)


def test_archive_list_pages_with_limit_and_offset(bb: httpx.Client) -> None:
    everything = [a["id"] for a in bb.get("/archives/", params={"limit": 100}).json()]
    assert len(bb.get("/archives/").json()) == min(50, len(everything))
    pages = [
        a["id"]
        for off in range(0, len(everything), 4)
        for a in bb.get("/archives/", params={"limit": 4, "offset": off}).json()
    ]
    assert pages == everything


def test_archive_detail_404_and_duplicates(sim_farm: SimFarm, bb: httpx.Client) -> None:
    missing = bb.get("/archives/9999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Archive not found"}
    assert bb.get("/archives/abc").status_code == 422
    first = bb.get("/archives/1").json()
    twin_run = sim_farm.bambuddy.state.add_print(
        1, print_name=first["print_name"], content_hash=first["content_hash"]
    )
    detail = bb.get(f"/archives/{twin_run['archive_id']}").json()
    assert twin_run["archive_id"] != 1
    assert detail["duplicate_count"] == len(detail["duplicates"]) >= 1
    assert {"id": 1, "match_type": "exact"}.items() <= detail["duplicates"][0].items()
    assert detail["original_archive_id"] == 1


def test_reprint_reuses_the_archive_and_adds_a_run(sim_farm: SimFarm, bb: httpx.Client) -> None:
    before = bb.get("/archives/1").json()
    run = sim_farm.bambuddy.state.add_print(2, reprint_of=1)
    after = bb.get("/archives/1").json()
    assert run["archive_id"] == 1
    assert after["run_count"] == before["run_count"] + 1
    runs = bb.get("/archives/1/runs").json()
    assert runs[0]["id"] == run["id"] and all(r["archive_id"] == 1 for r in runs)


def test_patch_writes_only_sent_fields_and_null_clears(bb: httpx.Client) -> None:
    original = bb.get("/archives/", params={"limit": 100}).json()
    original_2 = next(a for a in original if a["id"] == 2)
    patched = bb.patch("/archives/2", json={"external_url": "http://inventree.local/part/42/"}).json()
    assert patched["external_url"] == "http://inventree.local/part/42/"
    assert {**patched, "external_url": None} == {**original_2, "external_url": None}
    assert bb.patch("/archives/2", json={"external_url": None}).json()["external_url"] is None
    assert bb.patch("/archives/2", json={"quantity": "many"}).status_code == 422


def test_patch_status_is_copied_to_the_latest_run(bb: httpx.Client) -> None:
    bb.patch("/archives/1", json={"status": "failed", "failure_reason": "warped"})
    latest = bb.get("/archives/1/runs").json()[0]
    assert (latest["status"], latest["failure_reason"]) == ("failed", "warped")


def test_soft_deleted_archive_is_hidden(sim_farm: SimFarm, bb: httpx.Client) -> None:
    sim_farm.bambuddy.state.delete_archive(3)
    assert bb.get("/archives/3").status_code == 404
    assert 3 not in [a["id"] for a in bb.get("/archives/", params={"limit": 100}).json()]
    assert any(r["archive_id"] == 3 for r in bb.get("/print-log/", params={"limit": 500}).json()["items"])


# ------------------------------------------------------------------------------------------ thumbnails


def test_thumbnail_is_png_without_token_when_auth_is_off(bb: httpx.Client) -> None:
    response = bb.get("/archives/1/thumbnail")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert "etag" in response.headers


def test_thumbnail_404_when_archive_has_none(sim_farm: SimFarm, bb: httpx.Client) -> None:
    no_thumb = next(a for a in sim_farm.bambuddy.state.archives.values() if not a["thumbnail_path"])
    assert bb.get(f"/archives/{no_thumb['id']}/thumbnail").status_code == 404


def test_thumbnail_with_auth_needs_stream_token_and_ignores_key(sim_farm: SimFarm, bb: httpx.Client) -> None:
    sim_farm.bambuddy.state.auth_enabled = True
    key = {"X-API-Key": sim_farm.api_key}
    refused = bb.get("/archives/1/thumbnail", headers=key)
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("Valid camera stream token required")
    assert bb.post("/printers/camera/stream-token").status_code == 401
    token = bb.post("/printers/camera/stream-token", headers=key).json()["token"]
    allowed = bb.get("/archives/1/thumbnail", params={"token": token})
    assert allowed.status_code == 200 and allowed.content.startswith(PNG_SIGNATURE)
    assert bb.get("/archives/1/thumbnail", params={"token": "forged"}).status_code == 401


# ------------------------------------------------------------------------------------------ print log, printers


def test_print_log_envelope_filters_and_limits(sim_farm: SimFarm, bb: httpx.Client) -> None:
    body = bb.get("/print-log/", params={"status": "completed", "limit": 3}).json()
    assert set(body) == {"items", "total"}
    assert len(body["items"]) == 3
    assert body["total"] == sum(
        1 for r in sim_farm.bambuddy.state.print_log.values() if r["status"] == "completed"
    )
    assert all(item["status"] == "completed" and item["printer_name"] for item in body["items"])
    created = [i["created_at"] for i in bb.get("/print-log/", params={"limit": 500}).json()["items"]]
    assert created == sorted(created, reverse=True)
    by_printer = bb.get("/print-log/", params={"printer_id": 2}).json()["items"]
    assert by_printer and all(i["printer_id"] == 2 for i in by_printer)
    for bad in ("0", "501", "x"):
        assert bb.get("/print-log/", params={"limit": bad}).status_code == 422


def test_printers_sorted_by_name(bb: httpx.Client) -> None:
    printers = bb.get("/printers/").json()
    names = [p["name"] for p in printers]
    assert names == sorted(names)
    assert printers[0]["id"] != 1  # the spare printer sorts first although it was added last
    assert all("access_code" not in p for p in printers)


# ------------------------------------------------------------------------------------------ spools


def test_spool_create_validation(bb: httpx.Client) -> None:
    assert bb.post("/inventory/spools", json={}).status_code == 422
    assert bb.post("/inventory/spools", json={"material": ""}).status_code == 422
    assert bb.post("/inventory/spools", json={"material": "P" * 51}).status_code == 422
    bad_rgba = bb.post("/inventory/spools", json={"material": "PLA", "rgba": "FF0000"})
    assert bad_rgba.status_code == 422
    assert bad_rgba.json()["detail"][0]["loc"] == ["body", "rgba"]
    created = bb.post("/inventory/spools", json={"material": "PLA", "rgba": "ff0000FF"})
    assert created.status_code == 200
    assert created.json()["label_weight"] == 1000 and created.json()["core_weight"] == 250


def test_tag_uid_is_stored_as_sent_and_not_unique(bb: httpx.Client) -> None:
    first = bb.post("/inventory/spools", json={"material": "PLA", "tag_uid": "04:a1:b2:c3"}).json()
    second = bb.post("/inventory/spools", json={"material": "PLA", "tag_uid": "04:a1:b2:c3"}).json()
    assert first["id"] != second["id"]
    assert first["tag_uid"] == second["tag_uid"] == "04:a1:b2:c3"


def test_by_tag_normalises_the_query_only(sim_farm: SimFarm, bb: httpx.Client) -> None:
    spool = sim_farm.bambuddy.state.spools[1]
    tag = spool["tag_uid"]
    for query in (tag.lower(), ":".join(tag[i : i + 2] for i in range(0, 16, 2)), "FFFF" + tag):
        found = bb.get("/inventory/spools/by-tag", params={"tag_uid": query})
        assert found.status_code == 200 and found.json()["id"] == 1
    assert (
        bb.get("/inventory/spools/by-tag", params={"tray_uuid": spool["tray_uuid"].lower()}).json()["id"] == 1
    )
    bb.post("/inventory/spools", json={"material": "PLA", "tag_uid": "INV-BATCH-0001"})
    missing = bb.get("/inventory/spools/by-tag", params={"tag_uid": "INV-BATCH-0001"})
    assert missing.status_code == 404 and missing.json() == {"detail": "Spool not found"}


def test_setting_weight_used_locks_the_weight(bb: httpx.Client) -> None:
    locked = bb.patch("/inventory/spools/1", json={"weight_used": 321.5}).json()
    assert (locked["weight_used"], locked["weight_locked"]) == (321.5, True)
    unlocked = bb.patch("/inventory/spools/2", json={"weight_used": 10, "weight_locked": False}).json()
    assert unlocked["weight_locked"] is False
    assert bb.get("/inventory/spools/999").json() == {"detail": "Spool not found"}


def test_archived_spools_hidden_and_archived_at_has_z_right_after_write(bb: httpx.Client) -> None:
    archived = bb.post("/inventory/spools/1/archive").json()
    assert archived["archived_at"].endswith("Z")
    assert 1 not in [s["id"] for s in bb.get("/inventory/spools").json()]
    listed = {s["id"]: s for s in bb.get("/inventory/spools", params={"include_archived": "true"}).json()}
    assert not listed[1]["archived_at"].endswith("Z")


def test_spools_sorted_by_material_brand_colour(bb: httpx.Client) -> None:
    spools = bb.get("/inventory/spools").json()
    keys = [(s["material"], s["brand"], s["color_name"]) for s in spools]
    assert keys == sorted(keys)


# ------------------------------------------------------------------------------------------ assignments, usage


def test_assignments_bare_array_with_printer_filter(sim_farm: SimFarm, bb: httpx.Client) -> None:
    everything = bb.get("/inventory/assignments").json()
    assert isinstance(everything, list) and everything
    first = everything[0]
    assert first["printer_name"] == sim_farm.bambuddy.state.printers[first["printer_id"]]["name"]
    assert first["spool"]["id"] == first["spool_id"]
    only = bb.get("/inventory/assignments", params={"printer_id": 2}).json()
    assert only and {a["printer_id"] for a in only} == {2}


def test_assign_and_unassign_from_python(sim_farm: SimFarm, bb: httpx.Client) -> None:
    state = sim_farm.bambuddy.state
    state.assign_spool(6, 1, ams_id=0, tray_id=1)
    slots = {
        (a["ams_id"], a["tray_id"]): a["spool_id"]
        for a in bb.get("/inventory/assignments", params={"printer_id": 1}).json()
    }
    assert slots[(0, 1)] == 6
    assert state.unassign_spool(1, 0, 1) is True
    assert (0, 1) not in {
        (a["ams_id"], a["tray_id"]) for a in bb.get("/inventory/assignments", params={"printer_id": 1}).json()
    }


def test_usage_is_limit_only_newest_first_without_archive_id(sim_farm: SimFarm, bb: httpx.Client) -> None:
    row = sim_farm.bambuddy.state.add_usage(2, 12.34, printer_id=1, print_name="Manual", status="failed")
    usage = bb.get("/inventory/usage", params={"limit": 3, "offset": 2}).json()
    assert isinstance(usage, list) and len(usage) == 3
    assert usage[0]["id"] == row["id"] and usage[0]["weight_used"] == 12.3
    assert all("archive_id" not in u for u in usage)
    ids = [u["id"] for u in bb.get("/inventory/usage", params={"limit": 500}).json()]
    assert ids == sorted(ids, reverse=True)


def test_completed_print_on_a_loaded_printer_writes_usage(sim_farm: SimFarm, bb: httpx.Client) -> None:
    spool_before = bb.get("/inventory/spools/1").json()["weight_used"]
    run = sim_farm.bambuddy.state.add_print("B1-X1-CARBON", print_name="Bracket_v2", grams=20.0)
    newest = bb.get("/inventory/usage", params={"limit": 1}).json()[0]
    assert (newest["spool_id"], newest["weight_used"], newest["print_name"]) == (1, 20.0, "Bracket_v2")
    assert bb.get("/inventory/spools/1").json()["weight_used"] == round(spool_before + 20.0, 1)
    assert bb.get("/print-log/", params={"limit": 1}).json()["items"][0]["id"] == run["id"]


# ------------------------------------------------------------------------------------------ webhook


def test_webhook_payload_and_headers(sim_farm: SimFarm, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    run = sim_farm.bambuddy.state.add_print(
        "B2-P1S", print_name="Cable_clip_holder", grams=12.54, duration_s=2700, thumbnail=False
    )
    response = sim_farm.bambuddy.fire_webhook(webhook_receiver.url, "s3cret", run["id"])
    assert response.status_code == 200
    received = webhook_receiver.requests[-1]
    assert received.headers["authorization"] == "Bearer s3cret"
    assert received.headers["user-agent"] == "Bambuddy/1.0 (+https://github.com/maziggy/bambuddy)"
    assert received.headers["content-type"] == "application/json"
    payload = received.json()
    assert all(isinstance(v, str) for v in payload.values())
    assert payload["event"] == "print_complete" and payload["source"] == "Bambuddy"
    assert payload["printer"] == "B2-P1S" and payload["filename"] == "Cable clip holder"
    assert (payload["duration"], payload["filament_grams"], payload["reason"]) == ("45m", "12.5", "Unknown")
    assert "archive_id" not in payload and "Z" not in payload["timestamp"]
    assert {"title", "message", "timestamp", "app_name"} <= set(payload)


def test_webhook_secret_with_space_is_sent_as_is(sim_farm: SimFarm, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    run = sim_farm.bambuddy.state.add_print(1, status="failed", failure_reason="Spaghetti", duration_s=7200)
    sim_farm.bambuddy.fire_webhook(webhook_receiver.url, "Token abc", run["id"])
    received = webhook_receiver.requests[-1]
    assert received.headers["authorization"] == "Token abc"
    payload = received.json()
    assert (payload["event"], payload["reason"], payload["duration"]) == (
        "print_failed",
        "Spaghetti",
        "2h 0m",
    )


# ------------------------------------------------------------------------------------------ knobs and log


def test_faults_latency_and_request_log(sim_farm: SimFarm) -> None:
    knobs, log = sim_farm.bambuddy.knobs, sim_farm.bambuddy.log
    with httpx.Client(base_url=sim_farm.bambuddy_url, timeout=30) as client:
        knobs.update(fault_rate=1.0, fault_kinds=["503"])
        assert client.get("/printers/").status_code == 503
        knobs.update(fault_kinds=["drop"])
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/printers/")
        knobs.update(fault_kinds=["timeout"], fault_timeout=0.4)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/printers/", timeout=0.2)  # the sim holds the answer 0.4 s
        knobs.update(fault_rate=0.0, latency_ms=80)
        assert client.get("/printers/").elapsed.total_seconds() >= 0.08
        client.patch("/inventory/spools/1", json={"note": "x"})
    # Entries are logged as requests finish; the timed-out one finishes late (on a busy machine, maybe after
    # the last request), so wait for it, and order by start time.
    deadline = time.monotonic() + 30
    while len(log.entries) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    faults = [e.fault for e in sorted(log.entries, key=lambda e: e.time)]
    assert faults == ["503", "drop", "timeout", None, None]
    assert log.counts() == {"GET": 4, "PATCH": 1}
    assert [(w.method, w.path) for w in log.writes()] == [("PATCH", "/api/v1/inventory/spools/1")]


def test_fault_sequence_is_deterministic_for_a_seed(sim_farm: SimFarm) -> None:
    def sequence() -> list[int]:
        sim_farm.bambuddy.knobs.update(fault_rate=0.5, fault_kinds=["503"], fault_seed=42)
        with httpx.Client(base_url=sim_farm.bambuddy_url) as client:
            return [client.get("/printers/").status_code for _ in range(12)]

    first = sequence()
    assert first == sequence()
    assert {200, 503} == set(first)


def test_control_api_is_never_faulted_or_logged(sim_farm: SimFarm) -> None:
    root = sim_farm.bambuddy_url.removesuffix("/api/v1")
    with httpx.Client(base_url=root) as client:
        assert (
            client.patch("/_sim/knobs", json={"fault_rate": 1.0, "fault_kinds": ["drop"]}).status_code == 200
        )
        for _ in range(5):
            assert client.get("/_sim/knobs").json()["fault_rate"] == 1.0
        assert client.patch("/_sim/knobs", json={"fault_rate": 2}).status_code == 400
        run = client.post("/_sim/prints", json={"printer": "B3-A1", "print_name": "Via control"}).json()
        assert run["printer_name"] == "B3-A1"
        assert client.patch("/_sim/config", json={"auth": True}).json()["auth"] is True
        assert client.get("/_sim/requests").json()["entries"] == []
    assert len(sim_farm.bambuddy.log) == 0
    assert sim_farm.bambuddy.state.auth_enabled is True


def test_webhook_through_the_control_api(sim_farm: SimFarm, webhook_receiver) -> None:  # type: ignore[no-untyped-def]
    root = sim_farm.bambuddy_url.removesuffix("/api/v1")
    answer = httpx.post(f"{root}/_sim/webhook", json={"url": webhook_receiver.url, "secret": "s"}).json()
    assert answer["status"] == 200
    newest = max(sim_farm.bambuddy.state.print_log.values(), key=lambda r: r["id"])
    assert webhook_receiver.requests[-1].json()["printer"] == newest["printer_name"]


def test_archive_date_filters_apply_to_created_at(bb: httpx.Client) -> None:
    archives = bb.get("/archives/", params={"limit": 100}).json()
    day = archives[-1]["created_at"][:10]
    same_day = bb.get("/archives/", params={"date_from": day, "date_to": day, "limit": 100}).json()
    assert same_day and all(a["created_at"].startswith(day) for a in same_day)
    assert len(same_day) < len(archives)
    assert bb.get("/archives/", params={"date_from": "not-a-date"}).status_code == 422
