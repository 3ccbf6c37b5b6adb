"""BambuddyClient against pytest-httpx: paths (exact trailing slashes), parsing, token flow, errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.clients.bambuddy import PROBE_KEY, STREAM_TOKEN_TTL, BambuddyClient, normalise_base
from farmsync.clients.bambuddy_models import SpoolWrite
from farmsync.clients.http import RequestCounters, RetryPolicy
from farmsync.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTransportError,
    UpstreamUnavailable,
    UpstreamValidation,
)

BASE = "http://127.0.0.1:8000/api/v1"
KEY = "bb_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"


def url(path: str, **params: object) -> str:
    return str(httpx.URL(BASE + path, params={k: str(v) for k, v in params.items()}))


def archive(id_: int, **extra: object) -> dict[str, object]:
    return {
        "id": id_,
        "printer_id": 1,
        "filename": f"Part{id_}.gcode.3mf",
        "print_name": None,
        "status": "completed",
        "filament_used_grams": 12.5,
        "created_at": "2026-11-22T01:26:52.015387",
        "extra_data": {"filament_slots": [{"slot_id": 1, "used_g": 12.5, "type": "PLA", "color": "#FF0000"}]},
        "duplicates": None,
        "unknown_new_field": {"x": 1},
        **extra,
    }


def log_entry(id_: int, **extra: object) -> dict[str, object]:
    return {
        "id": id_,
        "archive_id": 100 + id_,
        "print_name": "Benchy",
        "printer_name": "B1-X1-CARBON",
        "printer_id": 1,
        "status": "completed",
        "filament_used_grams": 10.0,
        "created_at": "2026-11-22T01:00:00",
        **extra,
    }


def spool(id_: int, **extra: object) -> dict[str, object]:
    return {
        "id": id_,
        "material": "PLA",
        "brand": "Bambu",
        "color_name": "Black",
        "rgba": "000000FF",
        "label_weight": 1000,
        "core_weight": 250,
        "weight_used": 120.5,
        "tag_uid": "0123456789ABCDEF",
        "archived_at": None,
        "created_at": "2026-11-22T01:26:52",
        "k_profiles": [],
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(sleeps: list[float], clock: Clock):
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    bb = BambuddyClient(
        BASE + "/",
        KEY,
        timeout=5,
        sleep=fake_sleep,
        retry=RetryPolicy(attempts=3, base=0.1),
        counters=RequestCounters(),
        clock=clock,
    )
    yield bb
    await bb.aclose()


# ------------------------------------------------------------------ archives


async def test_list_archives_bare_array_with_trailing_slash(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/archives/", limit=50, offset=0), json=[archive(2), archive(1)])
    archives = await client.list_archives()
    assert [a.id for a in archives] == [2, 1]
    request = httpx_mock.get_request()
    assert request.url.path == "/api/v1/archives/"
    assert request.headers["X-API-Key"] == KEY
    first = archives[0]
    assert first.created_at == datetime(2026, 11, 22, 1, 26, 52, 15387, tzinfo=UTC)
    assert first.display_name == "Part2"
    assert first.is_success
    assert first.filament_slots[0].used_g == 12.5


async def test_list_archives_filters(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url(
            "/archives/", limit=10, offset=20, printer_id=3, date_from="2026-11-01", date_to="2026-11-22"
        ),
        json=[],
    )
    got = await client.list_archives(
        limit=10,
        offset=20,
        printer_id=3,
        date_from=date(2026, 11, 1),
        date_to=datetime(2026, 11, 22, 5, tzinfo=UTC),
    )
    assert got == []


async def test_timestamps_with_z_and_naive_are_both_utc(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/archives/", limit=50, offset=0),
        json=[
            archive(1, created_at="2026-11-22T01:26:52Z", completed_at="2026-11-22T01:26:52"),
            archive(2, created_at="2026-11-22T02:26:52+01:00", started_at=None, completed_at=""),
        ],
    )
    one, two = await client.list_archives()
    assert one.created_at == one.completed_at == datetime(2026, 11, 22, 1, 26, 52, tzinfo=UTC)
    assert two.created_at == datetime(2026, 11, 22, 1, 26, 52, tzinfo=UTC)
    assert two.started_at is None and two.completed_at is None


async def test_iter_archives_overlaps_pages_and_dedupes(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/archives/", limit=3, offset=0), json=[archive(5), archive(4), archive(3)]
    )
    httpx_mock.add_response(
        url=url("/archives/", limit=3, offset=2), json=[archive(3), archive(2), archive(1)]
    )
    httpx_mock.add_response(url=url("/archives/", limit=3, offset=4), json=[archive(1)])
    ids = [a.id async for a in client.iter_archives(page_size=3, overlap=1)]
    assert ids == [5, 4, 3, 2, 1]


async def test_all_archives_stops_at_max_items(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/archives/", limit=3, offset=0), json=[archive(5), archive(4), archive(3)]
    )
    got = await client.all_archives(page_size=3, max_items=2)
    assert [a.id for a in got] == [5, 4]


async def test_get_archive_no_trailing_slash(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=f"{BASE}/archives/7",
        json=archive(7, print_name="Benchy", duplicates=[{"id": 3, "match_type": "hash"}]),
    )
    got = await client.get_archive(7)
    assert got.display_name == "Benchy"
    assert got.duplicates == [{"id": 3, "match_type": "hash"}]


async def test_get_archive_404(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/9", status_code=404, json={"detail": "Archive not found"})
    with pytest.raises(UpstreamNotFound) as info:
        await client.get_archive(9)
    assert str(info.value) == "bambuddy GET /api/v1/archives/9 -> 404: Archive not found"


async def test_set_external_url_patches_only_that_field(httpx_mock: HTTPXMock, client: BambuddyClient):
    link = "http://127.0.0.1:8811/web/part/42/"
    httpx_mock.add_response(
        method="PATCH",
        url=f"{BASE}/archives/7",
        match_json={"external_url": link},
        json=archive(7, external_url=link, archived_at="2026-11-22T01:26:52Z"),
    )
    got = await client.set_external_url(7, link)
    assert got.external_url == link


async def test_patch_missing_scope_is_auth_error(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        method="PATCH",
        url=f"{BASE}/archives/7",
        status_code=403,
        json={"detail": "API key does not have 'can_manage_archives' permission"},
    )
    with pytest.raises(UpstreamAuthError, match="can_manage_archives"):
        await client.set_external_url(7, None)


async def test_patch_is_not_retried_on_503(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    httpx_mock.add_response(method="PATCH", url=f"{BASE}/archives/7", status_code=503)
    with pytest.raises(UpstreamUnavailable):
        await client.update_archive(7, {"notes": "x"})
    assert len(httpx_mock.get_requests()) == 1
    assert sleeps == []


async def test_archive_runs(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/7/runs", json=[log_entry(2), log_entry(1)])
    runs = await client.archive_runs(7)
    assert [r.id for r in runs] == [2, 1]


async def test_archive_runs_accepts_envelope(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/7/runs", json={"items": [log_entry(2)], "total": 1})
    assert [r.id for r in await client.archive_runs(7)] == [2]


async def test_unexpected_shape_is_an_upstream_error(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/archives/", limit=50, offset=0), json={"items": []})
    with pytest.raises(UpstreamError, match="expected a JSON array"):
        await client.list_archives()
    httpx_mock.add_response(url=f"{BASE}/archives/1", json={"id": "abc"})
    with pytest.raises(UpstreamError, match=r"unexpected Archive shape at id"):
        await client.get_archive(1)


# ---------------------------------------------------------------- thumbnails

PNG = b"\x89PNG\r\n\x1a\nfake"


async def test_thumbnail_auth_off_needs_no_token(httpx_mock: HTTPXMock, client: BambuddyClient):
    for _ in range(2):
        httpx_mock.add_response(
            url=f"{BASE}/archives/7/thumbnail",
            content=PNG,
            headers={"Content-Type": "image/png", "ETag": '"1"'},
        )
    first = await client.thumbnail(7)
    second = await client.thumbnail(7)
    assert first is not None and first.data == PNG and first.extension == "png" and first.etag == '"1"'
    assert second is not None
    assert all(r.method == "GET" for r in httpx_mock.get_requests())


async def test_thumbnail_missing_is_none(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail", status_code=404, json={"detail": "Not found"})
    assert await client.thumbnail(7) is None


async def test_thumbnail_token_flow_with_cache_and_expiry(
    httpx_mock: HTTPXMock, client: BambuddyClient, clock: Clock
):
    refused = {"detail": "Valid camera stream token required"}
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail", status_code=401, json=refused)
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": "tok1"})
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail?token=tok1", content=PNG)
    httpx_mock.add_response(url=f"{BASE}/archives/8/thumbnail?token=tok1", content=PNG)
    assert (await client.thumbnail(7)).data == PNG  # type: ignore[union-attr]
    assert (await client.thumbnail(8)).data == PNG  # type: ignore[union-attr]  (cached token, no probe)
    clock.now += STREAM_TOKEN_TTL + 1
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": "tok2"})
    httpx_mock.add_response(url=f"{BASE}/archives/9/thumbnail?token=tok2", content=PNG)
    assert await client.thumbnail(9) is not None
    posts = httpx_mock.get_requests(method="POST")
    assert len(posts) == 2 and all(r.headers["X-API-Key"] == KEY for r in posts)


async def test_thumbnail_renews_token_once_on_401(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail", status_code=401, json={"detail": "token"})
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": "old"})
    httpx_mock.add_response(
        url=f"{BASE}/archives/7/thumbnail?token=old", status_code=401, json={"detail": "x"}
    )
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": "new"})
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail?token=new", content=PNG)
    assert await client.thumbnail(7) is not None


async def test_thumbnail_gives_up_after_fresh_token_refused(httpx_mock: HTTPXMock, client: BambuddyClient):
    client._thumbnails_need_token = True
    for token in ("camtoken-one", "camtoken-two"):
        httpx_mock.add_response(
            method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": token}
        )
        httpx_mock.add_response(
            url=f"{BASE}/archives/7/thumbnail?token={token}", status_code=401, json={"detail": "nope"}
        )
    with pytest.raises(UpstreamAuthError) as info:
        await client.thumbnail(7)
    assert "camtoken" not in str(info.value) and KEY not in str(info.value)
    assert info.value.path == "/api/v1/archives/7/thumbnail"


async def test_thumbnail_with_a_bad_key_fails_on_the_token(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail", status_code=401, json={"detail": "token"})
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/printers/camera/stream-token",
        status_code=401,
        json={"detail": "Authentication required"},
    )
    with pytest.raises(
        UpstreamAuthError,
        match=r"stream-token -> 401: BAMBUDDY_API_KEY was refused by 127\.0\.0\.1:8000 \(Authentication required\)",
    ):
        await client.thumbnail(7)


async def test_stream_token_without_token_field(httpx_mock: HTTPXMock, client: BambuddyClient):
    client._thumbnails_need_token = True
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={})
    with pytest.raises(UpstreamError, match="without a token"):
        await client.thumbnail(7)


# ----------------------------------------------------------------- print log


async def test_print_log_page_and_limit_clamp(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/print-log/", status="completed", printer_id=2, limit=500, offset=0),
        json={"items": [log_entry(3, archive_id=None)], "total": 1},
    )
    page = await client.print_log(status="completed", printer_id=2, limit=10_000)
    assert page.total == 1 and page.items[0].archive_id is None and page.items[0].is_success
    assert await client.has_print_log()  # known from the page, no second request


async def test_print_log_date_filters_are_naive_utc(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/print-log/", date_from="2026-11-22T00:00:00", limit=1, offset=0),
        json={"items": [], "total": 0},
    )
    since = datetime(2026, 11, 22, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    await client.print_log(date_from=since, limit=0)


async def test_iter_print_log_pages_newest_first(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/print-log/", status="completed", limit=2, offset=0),
        json={"items": [log_entry(4), log_entry(3)], "total": 3},
    )
    # Between the pages a new run arrived (total 4): row 3 moved onto page two and is not yielded twice.
    httpx_mock.add_response(
        url=url("/print-log/", status="completed", limit=2, offset=2),
        json={"items": [log_entry(3), log_entry(2)], "total": 4},
    )
    ids = [e.id async for e in client.iter_print_log(status="completed", page_size=2)]
    assert ids == [4, 3, 2]


async def test_iter_print_log_max_items(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/print-log/", limit=2, offset=0), json={"items": [log_entry(4), log_entry(3)], "total": 9}
    )
    ids = [e.id async for e in client.iter_print_log(page_size=2, max_items=1)]
    assert ids == [4]


async def test_has_print_log_false_on_old_bambuddy(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/print-log/", limit=1), status_code=404, json={"detail": "Not Found"})
    assert await client.has_print_log() is False
    assert await client.has_print_log() is False
    assert len(httpx_mock.get_requests()) == 1


async def test_has_print_log_true(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/print-log/", limit=1), json={"items": [], "total": 0})
    assert await client.has_print_log() is True


# ------------------------------------------------------------ printers/spools


async def test_printers_and_printer(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[{"id": 1, "name": "B1-X1-CARBON", "model": "X1C"}])
    httpx_mock.add_response(url=f"{BASE}/printers/1", json={"id": 1, "name": "B1-X1-CARBON"})
    assert [p.name for p in await client.printers()] == ["B1-X1-CARBON"]
    assert (await client.get_printer(1)).id == 1


async def test_spools_no_trailing_slash_and_remaining(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/inventory/spools", include_archived="false"), json=[spool(1)])
    (one,) = await client.spools()
    assert one.remaining_grams == pytest.approx(879.5)
    assert not one.is_archived
    assert httpx_mock.get_request().url.path == "/api/v1/inventory/spools"


async def test_spools_including_archived(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/inventory/spools", include_archived="true"),
        json=[spool(1, archived_at="2026-11-22T01:26:52Z", weight_used=None, label_weight=None)],
    )
    (one,) = await client.spools(include_archived=True)
    assert one.is_archived and one.remaining_grams == 0


async def test_get_spool(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/inventory/spools/3", json=spool(3))
    assert (await client.get_spool(3)).id == 3


async def test_create_spool_sends_only_set_fields(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/inventory/spools",
        match_json={"material": "PLA", "tag_uid": "INV-BATCH-0001", "note": None},
        json=spool(9, tag_uid="INV-BATCH-0001"),
    )
    created = await client.create_spool(SpoolWrite(material="PLA", tag_uid="INV-BATCH-0001", note=None))
    assert created.id == 9


async def test_create_spool_422(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        method="POST",
        url=f"{BASE}/inventory/spools",
        status_code=422,
        json={"detail": [{"type": "missing", "loc": ["body", "material"], "msg": "Field required"}]},
    )
    with pytest.raises(UpstreamValidation) as info:
        await client.create_spool({})
    assert info.value.errors == {"material": ["Field required"]}
    assert "material: Field required" in str(info.value)


async def test_update_spool_patch(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        method="PATCH",
        url=f"{BASE}/inventory/spools/3",
        match_json={"weight_used": 200.0},
        json=spool(3, weight_used=200.0, weight_locked=True),
    )
    got = await client.update_spool(3, {"weight_used": 200.0})
    assert got.weight_locked is True


async def test_find_spool_by_tag(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/inventory/spools/by-tag", tag_uid="0123456789abcdef", include_archived="false"),
        json=spool(1),
    )
    httpx_mock.add_response(
        url=url("/inventory/spools/by-tag", tag_uid="INV-1", include_archived="false"),
        status_code=404,
        json={"detail": "Spool not found"},
    )
    assert (await client.find_spool_by_tag(tag_uid="0123456789abcdef")).id == 1  # type: ignore[union-attr]
    assert await client.find_spool_by_tag(tag_uid="INV-1") is None


async def test_assignments(httpx_mock: HTTPXMock, client: BambuddyClient):
    row = {
        "id": 1,
        "spool_id": 3,
        "printer_id": 1,
        "printer_name": "B1-X1-CARBON",
        "ams_id": 128,
        "tray_id": 0,
        "spool": spool(3),
        "configured": True,
        "created_at": "2026-11-22T01:26:52",
    }
    httpx_mock.add_response(url=f"{BASE}/inventory/assignments", json=[row])
    httpx_mock.add_response(url=url("/inventory/assignments", printer_id=1), json=[])
    (one,) = await client.assignments()
    assert one.spool is not None and one.spool.tag_uid == "0123456789ABCDEF" and one.ams_id == 128
    assert await client.assignments(printer_id=1) == []


async def test_usage_limit_only(httpx_mock: HTTPXMock, client: BambuddyClient):
    row = {
        "id": 11,
        "spool_id": 3,
        "printer_id": 1,
        "weight_used": 12.3,
        "percent_used": 1,
        "status": "completed",
    }
    httpx_mock.add_response(url=url("/inventory/usage", limit=500), json=[row])
    httpx_mock.add_response(url=url("/inventory/spools/3/usage", limit=50), json=[row])
    (usage,) = await client.usage(limit=500)
    assert usage.weight_used == 12.3 and usage.created_at is None
    assert len(await client.spool_usage(3)) == 1


# -------------------------------------------------------- auth and validation


async def test_auth_enabled_false_when_a_wrong_key_passes(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    assert await client.auth_enabled() is False
    assert httpx_mock.get_request().headers["X-API-Key"] == PROBE_KEY


async def test_auth_enabled_true_when_a_wrong_key_is_refused(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/printers/", status_code=401, json={"detail": "Invalid API key"})
    assert await client.auth_enabled() is True


async def test_probe_auth_off(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    httpx_mock.add_response(url=f"{BASE}/updates/version", json={"version": "1.2.5.2"})
    httpx_mock.add_response(url=url("/print-log/", limit=1), json={"items": [], "total": 0})
    probe = await client.probe()
    assert probe.reachable and probe.auth_enabled is False and probe.key_valid is None
    assert probe.version == "1.2.5.2" and probe.has_print_log is True and probe.problems == []


async def test_probe_auth_on_key_valid_old_bambuddy(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=f"{BASE}/printers/", status_code=401, json={"detail": "Authentication required"}
    )
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    httpx_mock.add_response(url=f"{BASE}/updates/version", json={"version": "1.1.0"})
    httpx_mock.add_response(url=url("/print-log/", limit=1), status_code=404, json={"detail": "Not Found"})
    probe = await client.probe()
    assert probe.auth_enabled and probe.key_valid and probe.has_print_log is False
    assert "print-log" in probe.problems[0]


async def test_probe_auth_on_key_refused(httpx_mock: HTTPXMock, client: BambuddyClient):
    for _ in range(2):
        httpx_mock.add_response(
            url=f"{BASE}/printers/", status_code=401, json={"detail": f"Authentication required {KEY}"}
        )
    probe = await client.probe()
    assert probe.auth_enabled and probe.key_valid is False
    assert KEY not in " ".join(probe.problems)


async def test_probe_unreachable(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("refused"))
    probe = await client.probe()
    assert not probe.reachable and "connection failed" in probe.problems[0]
    assert len(sleeps) == 2


async def test_read_retried_on_5xx_then_succeeds(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    httpx_mock.add_response(url=f"{BASE}/printers/", status_code=502)
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    assert await client.printers() == []
    assert len(sleeps) == 1


async def test_read_timeout_retried(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    assert await client.printers() == []


async def test_write_timeout_not_retried(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamTransportError):
        await client.create_spool({"material": "PLA"})
    assert sleeps == [] and len(httpx_mock.get_requests()) == 1


async def test_no_key_sends_no_header(httpx_mock: HTTPXMock):
    bb = BambuddyClient(BASE)
    httpx_mock.add_response(url=f"{BASE}/printers/", json=[])
    await bb.printers()
    assert "X-API-Key" not in httpx_mock.get_request().headers
    await bb.aclose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8000", BASE),
        ("http://127.0.0.1:8000/", BASE),
        ("http://127.0.0.1:8000/api", BASE),
        ("http://127.0.0.1:8000/api/v1/", BASE),
        ("http://127.0.0.1:8000/bb/api/v2", "http://127.0.0.1:8000/bb/api/v2"),
    ],
)
def test_normalise_base(given: str, expected: str):
    assert normalise_base(given) == expected


async def test_iter_archives_stops_when_offset_is_ignored(httpx_mock: HTTPXMock, client: BambuddyClient):
    same = [archive(3), archive(2)]
    for offset in (0, 1, 2):
        httpx_mock.add_response(url=url("/archives/", limit=2, offset=offset), json=same)
    ids = [a.id async for a in client.iter_archives(page_size=2, overlap=1)]
    assert ids == [3, 2]


async def test_print_log_404_marks_it_missing(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(
        url=url("/print-log/", limit=50, offset=0), status_code=404, json={"detail": "Not Found"}
    )
    with pytest.raises(UpstreamNotFound):
        await client.print_log()
    assert await client.has_print_log() is False


async def test_null_totals_and_grams_are_zero(httpx_mock: HTTPXMock, client: BambuddyClient):
    httpx_mock.add_response(url=url("/print-log/", limit=50, offset=0), json={"items": [], "total": None})
    httpx_mock.add_response(
        url=url("/inventory/usage", limit=100), json=[{"id": 1, "spool_id": 2, "weight_used": None}]
    )
    assert (await client.print_log()).total == 0
    assert (await client.usage())[0].weight_used == 0.0


async def test_stream_token_post_is_retried(httpx_mock: HTTPXMock, client: BambuddyClient, sleeps):
    client._thumbnails_need_token = True
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", status_code=503)
    httpx_mock.add_response(method="POST", url=f"{BASE}/printers/camera/stream-token", json={"token": "t1"})
    httpx_mock.add_response(url=f"{BASE}/archives/7/thumbnail?token=t1", content=PNG)
    assert await client.thumbnail(7) is not None
    assert len(sleeps) == 1
