"""The print pipeline, request by request (pytest-httpx): what it sends for a new part and for a repeat print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from farmsync.prints.pipeline import PrintSync, Unit
from farmsync.services import Services
from farmsync.settings import load_settings
from farmsync.store.sqlite import SqliteStore

BAMBUDDY = "http://bambuddy.test/api/v1"
INVENTREE = "http://inventree.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
ARCHIVE = {
    "id": 42,
    "printer_id": 1,
    "filename": "Benchy.gcode.3mf",
    "content_hash": "abc",
    "print_name": "Benchy " * 30,
    "print_time_seconds": 5400,
    "filament_used_grams": 12.5,
    "filament_type": "PLA",
    "status": "completed",
    "quantity": 3,
    "external_url": None,
    "created_at": "2026-11-22T01:26:52.015387",
}
IPN = "BMB-a9993e364706"  # sha1("abc")[:12]


def query(path: str, *params: str) -> re.Pattern[str]:
    """An InvenTree list URL with ``params`` among its query (paging and defaults are the client's business)."""
    lookaheads = "".join(f"(?=(?:.*&)?{re.escape(p)}(?:&|$))" for p in params)
    return re.compile(f"^{re.escape(INVENTREE + path)}\\?{lookaheads}.*$")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    settings = load_settings(
        "/dev/null",
        bambuddy_base_url=BAMBUDDY,
        bambuddy_api_key="bb_k",
        inventree_base_url=f"{INVENTREE}/api",
        inventree_token="inv-t",
        inventree_part_category_id=5,
        inventree_stock_location_id=8,
        inventree_stock_status=50,
        data_dir=tmp_path,
    )
    return Services(settings, store=SqliteStore(tmp_path / "s.sqlite3"))


def unit(run_id: int) -> Unit:
    return Unit("run", str(run_id), 42, run_id, f"bambuddy-42-{run_id}", "completed", "B1-X1-CARBON")


def mock_common(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BAMBUDDY}/archives/42", json=ARCHIVE, is_reusable=True)
    # the one-time probe for the predecessor's bambuddy-<archive> batches: none here
    httpx_mock.add_response(
        url=query("/api/stock/", "batch_regex=%5Ebambuddy-%5B0-9%5D%2B%24"),
        json={"count": 0, "next": None, "results": []},
        is_optional=True,
    )
    httpx_mock.add_response(
        url=f"{INVENTREE}/api/",
        json={"apiVersion": 425, "version": "1.1"},
        is_reusable=True,
        is_optional=True,
    )


def bodies(httpx_mock: HTTPXMock, method: str, path: str) -> list[dict]:
    return [
        json.loads(r.content) for r in httpx_mock.get_requests() if r.method == method and r.url.path == path
    ]


async def test_new_part_then_repeat_print(services: Services, httpx_mock: HTTPXMock) -> None:
    mock_common(httpx_mock)
    httpx_mock.add_response(
        url=query("/api/stock/", "batch=bambuddy-42-7"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        url=query("/api/part/", f"IPN={IPN}"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{INVENTREE}/api/part/",
        status_code=201,
        json={"pk": 4, "name": "Benchy", "IPN": IPN, "category": 5, "image": None},
    )
    httpx_mock.add_response(
        url=query("/api/part/parameter/template/", "name=Weight"),
        json={"count": 1, "next": None, "results": [{"pk": 1, "name": "Weight", "units": "g"}]},
    )
    httpx_mock.add_response(
        url=query("/api/part/parameter/template/", "name=PrintTime"),
        json={"count": 1, "next": None, "results": [{"pk": 2, "name": "PrintTime", "units": "min"}]},
    )
    httpx_mock.add_response(
        url=query("/api/part/parameter/", "template=1", "part=4"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        url=query("/api/part/parameter/", "template=2", "part=4"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{INVENTREE}/api/part/parameter/",
        status_code=201,
        json={"pk": 9, "part": 4, "template": 1, "data": "12.5"},
        is_reusable=True,
    )
    httpx_mock.add_response(
        url=f"{BAMBUDDY}/archives/42/thumbnail", content=PNG, headers={"Content-Type": "image/png"}
    )
    httpx_mock.add_response(
        method="PATCH", url=f"{INVENTREE}/api/part/4/", json={"pk": 4, "name": "Benchy", "image": "/m/x.png"}
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{INVENTREE}/api/stock/",
        status_code=201,
        json=[{"pk": 77, "part": 4, "quantity": 3, "batch": "bambuddy-42-7"}],
    )
    httpx_mock.add_response(
        method="PATCH",
        url=f"{BAMBUDDY}/archives/42",
        json={**ARCHIVE, "external_url": f"{INVENTREE}/web/part/4/"},
    )
    sync = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree())

    report = await sync.sync_unit(unit(7))

    assert report.outcome == "synced", report.error
    assert report.part == 4 and report.stock_item == 77
    [part] = bodies(httpx_mock, "POST", "/api/part/")
    assert part["IPN"] == IPN and part["category"] == 5 and len(part["name"]) <= 100
    assert len(part["description"]) <= 250 and part["component"] is False and part["purchaseable"] is False
    [stock] = bodies(httpx_mock, "POST", "/api/stock/")
    assert stock == {
        "part": 4,
        "quantity": 3,
        "status": 50,
        "location": 8,
        "batch": "bambuddy-42-7",
        "notes": stock["notes"],
    }
    assert "archive #42" in stock["notes"] and "run #7" in stock["notes"] and isinstance(stock["status"], int)
    params = {p["template"]: p["data"] for p in bodies(httpx_mock, "POST", "/api/part/parameter/")}
    assert params == {1: "12.5", 2: "90"}  # grams; 5400 s in the template's minutes
    [link] = bodies(httpx_mock, "PATCH", "/api/v1/archives/42")
    assert link == {"external_url": f"{INVENTREE}/web/part/4/"}
    image = next(r for r in httpx_mock.get_requests() if r.method == "PATCH" and r.url.path == "/api/part/4/")
    assert b'name="image"' in image.content and f"{IPN}.png".encode() in image.content

    # a repeat print of the same archive: the part is cached, parameters and image are done, the link is set
    httpx_mock.reset()
    httpx_mock.add_response(
        url=f"{BAMBUDDY}/archives/42", json={**ARCHIVE, "external_url": f"{INVENTREE}/web/part/4/"}
    )
    httpx_mock.add_response(url=f"{INVENTREE}/api/", json={"apiVersion": 425}, is_optional=True)
    httpx_mock.add_response(
        url=query("/api/stock/", "batch=bambuddy-42-8"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{INVENTREE}/api/stock/",
        status_code=201,
        json={"pk": 78, "part": 4, "quantity": 3, "batch": "bambuddy-42-8"},
    )
    repeat = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree())

    again = await repeat.sync_unit(unit(8))

    assert again.outcome == "synced" and again.stock_item == 78 and again.writes == ["stock:created"]
    inventree = [
        r for r in httpx_mock.get_requests() if r.url.host == "inventree.test" and r.url.path != "/api/"
    ]
    assert [(r.method, r.url.path) for r in inventree] == [("GET", "/api/stock/"), ("POST", "/api/stock/")]


async def test_existing_batch_is_adopted_not_created(services: Services, httpx_mock: HTTPXMock) -> None:
    """A store that lost its data (or a new one) finds the item InvenTree already has for this run."""
    mock_common(httpx_mock)
    services.sync_store.put_value("part-cache", IPN, {"pk": 4, "params": True, "image": True})
    httpx_mock.add_response(
        url=query("/api/stock/", "batch=bambuddy-42-7"),
        json={
            "count": 1,
            "next": None,
            "results": [{"pk": 55, "part": 4, "quantity": 3, "batch": "bambuddy-42-7"}],
        },
    )
    httpx_mock.add_response(method="PATCH", url=f"{BAMBUDDY}/archives/42", json=ARCHIVE)
    # the part has its image already: the operator page's thumbnail is read once, for the part's first print
    httpx_mock.add_response(
        url=f"{BAMBUDDY}/archives/42/thumbnail", content=PNG, headers={"Content-Type": "image/png"}
    )
    sync = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree())

    report = await sync.sync_unit(unit(7))

    assert report.outcome == "synced" and report.stock_item == 55 and "stock:found-existing" in report.writes
    assert bodies(httpx_mock, "POST", "/api/stock/") == []
    assert services.sync_store.get_value("page-thumb", IPN)["type"] == "image/png"


async def test_upstream_failure_is_released_for_a_retry(services: Services, httpx_mock: HTTPXMock) -> None:
    mock_common(httpx_mock)
    services.sync_store.put_value("part-cache", IPN, {"pk": 4, "params": True, "image": True})
    httpx_mock.add_response(
        url=query("/api/stock/", "batch=bambuddy-42-7"),
        json={"count": 0, "next": None, "results": []},
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{INVENTREE}/api/stock/",
        status_code=400,
        json={"location": ['Invalid pk "8" - object does not exist.']},
    )
    sync = PrintSync(services.settings, services.store, services.bambuddy(), services.inventree())

    report = await sync.sync_unit(unit(7))

    assert report.outcome == "failed" and "location" in (report.error or "")
    record = services.sync_store.get("run", "7")
    assert record is not None and record.state == "failed" and record.attempts == 1 and record.not_before
