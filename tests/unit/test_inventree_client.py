"""InvenTreeClient against pytest-httpx: paging, both parameter layouts, stock calls, errors, versions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from farmsync.clients.http import RequestCounters, RetryPolicy
from farmsync.clients.inventree import (
    InvenTreeClient,
    decimal_text,
    normalise_root,
    parameter_text,
    part_web_url,
    safe_filename,
    tracking_notes_match,
    truncate,
)
from farmsync.clients.inventree_models import StockItem, StockStatus
from farmsync.errors import (
    InputError,
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTransportError,
    UpstreamUnavailable,
    UpstreamValidation,
)

ROOT = "http://127.0.0.1:8811"
TOKEN = "inv-0123456789abcdef0123456789abcdef01234567-20271122"


def url(path: str, **params: object) -> str:
    def text(v: object) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return str(httpx.URL(ROOT + path, params={k: text(v) for k, v in params.items()}))


def info(api: int | None = 425) -> dict[str, Any]:
    body: dict[str, Any] = {"server": "InvenTree", "version": "1.2.0 dev", "instance": "InvenTree"}
    if api is not None:
        body["apiVersion"] = api
    return body


def part(pk: int, **extra: object) -> dict[str, Any]:
    return {
        "pk": pk,
        "name": "Benchy",
        "IPN": "BMB-0123456789ab",
        "description": "3DBenchy",
        "category": 1,
        "image": None,
        "thumbnail": "/static/img/blank_image.thumbnail.png",
        "active": True,
        "component": False,
        "tags": [],
        **extra,
    }


def stock(pk: int, **extra: object) -> dict[str, Any]:
    return {
        "pk": pk,
        "part": 4,
        "quantity": 1.0,
        "batch": "bambuddy-42",
        "location": 1,
        "status": 10,
        "status_text": "OK",
        "notes": "",
        "in_stock": True,
        "updated": "2026-11-22 04:31",
        "part_detail": {"pk": 4, "IPN": "BMB-0123456789ab", "name": "Benchy", "image": None},
        **extra,
    }


def page(results: list[Any], *, count: int | None = None, next_: str | None = None) -> dict[str, Any]:
    return {
        "count": len(results) if count is None else count,
        "next": next_,
        "previous": None,
        "results": results,
    }


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def client(sleeps: list[float]):
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    inv = InvenTreeClient(
        ROOT + "/api/",
        TOKEN,
        timeout=5,
        sleep=fake_sleep,
        retry=RetryPolicy(attempts=3, base=0.1),
        counters=RequestCounters(),
    )
    yield inv
    await inv.aclose()


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# -------------------------------------------------------------------- server


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://127.0.0.1:8811", ROOT),
        ("http://127.0.0.1:8811/", ROOT),
        ("http://127.0.0.1:8811/api", ROOT),
        ("http://127.0.0.1:8811/api/", ROOT),
        (" http://127.0.0.1:8811/inventree/API/ ", ROOT + "/inventree"),
    ],
)
def test_normalise_root(given: str, root: str):
    assert normalise_root(given) == root


async def test_server_info_cached_and_token_header(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425) | {"customize": {"x": 1}})
    assert await client.api_version() == 425
    assert (await client.server_info()).version == "1.2.0 dev"
    request = httpx_mock.get_request()
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.headers["Accept"] == "application/json"


async def test_token_prefix_is_not_doubled(httpx_mock: HTTPXMock):
    inv = InvenTreeClient(ROOT, f"Token {TOKEN}")
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info())
    await inv.server_info()
    assert httpx_mock.get_request().headers["Authorization"] == f"Token {TOKEN}"
    await inv.aclose()


@pytest.mark.parametrize(
    "detail",
    [
        "Invalid token.",
        "Authentication credentials were not provided.",
        "Invalid token header. No credentials provided.",
    ],
)
async def test_401_bodies(httpx_mock: HTTPXMock, client: InvenTreeClient, detail: str):
    httpx_mock.add_response(
        url=f"{ROOT}/api/", status_code=401, json={"detail": detail}, headers={"WWW-Authenticate": "Token"}
    )
    with pytest.raises(UpstreamAuthError) as err:
        await client.server_info()
    assert (
        str(err.value)
        == f"inventree GET /api/ -> 401: INVENTREE_TOKEN was refused by 127.0.0.1:8811 ({detail})"
    )
    assert TOKEN not in str(err.value)


async def test_403_no_role(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=f"{ROOT}/api/part/4/",
        status_code=403,
        json={"detail": "You do not have permission to perform this action."},
    )
    with pytest.raises(UpstreamAuthError, match="permission"):
        await client.get_part(4)


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        (425, f"{ROOT}/web/part/4/"),
        (327, f"{ROOT}/web/part/4/"),
        (326, f"{ROOT}/part/4/"),
        (200, f"{ROOT}/part/4/"),
    ],
)
async def test_part_web_url_per_version(
    httpx_mock: HTTPXMock, client: InvenTreeClient, api: int, expected: str
):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(api))
    assert await client.part_web_url(4) == expected


async def test_part_web_url_uses_web_url(httpx_mock: HTTPXMock):
    inv = InvenTreeClient("http://127.0.0.1:8811/api", TOKEN, web_url="https://inventree.example/")
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    assert await inv.part_web_url(7) == "https://inventree.example/web/part/7/"
    await inv.aclose()
    assert part_web_url("http://x", 7, None) == "http://x/part/7/"


async def test_sub_path_deployment(httpx_mock: HTTPXMock):
    inv = InvenTreeClient("http://127.0.0.1:8811/inventree/api/", TOKEN)
    httpx_mock.add_response(url=f"{ROOT}/inventree/api/part/4/", status_code=404, json={"detail": "No Part"})
    with pytest.raises(UpstreamNotFound) as err:
        await inv.get_part(4)
    assert err.value.path == "/inventree/api/part/4/"
    await inv.aclose()


# --------------------------------------------------------------------- parts


async def test_parts_by_ipn_returns_all_pages(httpx_mock: HTTPXMock, client: InvenTreeClient):
    nxt = url("/api/part/", IPN="BMB-1", limit=10, offset=1)
    httpx_mock.add_response(
        url=url("/api/part/", IPN="BMB-1", limit=10, offset=0), json=page([part(4)], count=2, next_=nxt)
    )
    httpx_mock.add_response(url=nxt, json=page([part(9, name="Benchy v2")], count=2))
    parts = await client.parts_by_ipn("BMB-1")
    assert [p.pk for p in parts] == [4, 9]
    assert parts[0].ipn == "BMB-0123456789ab" and not parts[0].has_image


async def test_parts_by_ipn_in_category_none_found(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=url("/api/part/", IPN="X", category=1, limit=10, offset=0), json=page([]))
    assert await client.parts_by_ipn("X", category=1) == []


async def test_plain_list_answer_is_one_page(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=url("/api/part/", IPN="X", limit=10, offset=0), json=[part(4), part(5)])
    assert len(await client.parts_by_ipn("X")) == 2


async def test_create_part_sets_every_flag_and_truncates(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/part/", status_code=201, json=part(12))
    created = await client.create_part("N" * 150, ipn="BMB-1", description="é" * 300, category=1, units="pcs")
    assert created.pk == 12
    body = sent_json(httpx_mock.get_request())
    assert len(body["name"]) == 100 and body["name"].endswith("…")
    assert len(body["description"]) == 250
    assert body["IPN"] == "BMB-1" and body["category"] == 1 and body["units"] == "pcs"
    flags = {
        k: body[k]
        for k in ("component", "trackable", "assembly", "purchaseable", "salable", "virtual", "active")
    }
    assert flags == {
        "component": False,
        "trackable": False,
        "assembly": False,
        "purchaseable": False,
        "salable": False,
        "virtual": False,
        "active": True,
    }
    assert "keywords" not in body


async def test_create_part_unique_set_error(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/part/",
        status_code=400,
        json={"non_field_errors": ["The fields name, IPN, revision must make a unique set."]},
    )
    with pytest.raises(UpstreamValidation) as err:
        await client.create_part("Benchy", ipn="BMB-1")
    assert err.value.errors == {
        "non_field_errors": ["The fields name, IPN, revision must make a unique set."]
    }
    assert str(err.value).endswith("-> 400: The fields name, IPN, revision must make a unique set.")


async def test_create_part_is_not_retried(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/part/", status_code=502)
    with pytest.raises(UpstreamUnavailable):
        await client.create_part("Benchy")
    assert sleeps == [] and len(httpx_mock.get_requests()) == 1


async def test_get_part_404_shapes(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=f"{ROOT}/api/part/4/", status_code=404, json={"detail": "No Part matches the given query."}
    )
    with pytest.raises(UpstreamNotFound, match=r"GET /api/part/4/ -> 404: No Part matches the given query\."):
        await client.get_part(4)
    httpx_mock.add_response(
        url=f"{ROOT}/api/part/5/",
        status_code=404,
        json={"detail": "API endpoint not found", "url": f"{ROOT}/api/part/5/?token=abcdefgh"},
    )
    with pytest.raises(UpstreamNotFound) as err:
        await client.get_part(5)
    assert "API endpoint not found" in str(err.value) and "abcdefgh" not in str(err.value)


async def test_get_part_retried_on_500_then_succeeds(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    httpx_mock.add_response(url=f"{ROOT}/api/part/4/", status_code=500, text="Server Error")
    httpx_mock.add_response(url=f"{ROOT}/api/part/4/", json=part(4, image="/media/part_images/x.png"))
    got = await client.get_part(4)
    assert got.has_image and len(sleeps) == 1


async def test_read_timeout_retried(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    httpx_mock.add_response(url=f"{ROOT}/api/part/4/", json=part(4))
    assert (await client.get_part(4)).pk == 4
    assert len(sleeps) == 1


async def test_upload_part_image_multipart(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="PATCH", url=f"{ROOT}/api/part/4/", json=part(4, image="/media/part_images/BMB-abc.png")
    )
    got = await client.upload_part_image(4, b"\x89PNG....", "thumbs/BMB abc?.png")
    assert got.has_image
    request = httpx_mock.get_request()
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    body = request.content
    assert b'name="image"' in body and b'filename="BMB-abc-.png"' in body and b"\x89PNG...." in body


def test_safe_filename():
    assert safe_filename("BMB-0123.png") == "BMB-0123.png"
    assert safe_filename("../x/y z", "image/jpeg") == "y-z.jpg"
    assert safe_filename("...", "image/png") == "image.png"


async def test_category_and_location(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=f"{ROOT}/api/part/category/2/",
        json={"pk": 2, "name": "Filament", "structural": False, "icon": ""},
    )
    httpx_mock.add_response(
        url=f"{ROOT}/api/stock/location/3/",
        json={"pk": 3, "name": "Printers", "structural": True, "pathstring": "Printers", "owner": None},
    )
    assert (await client.get_category(2)).structural is False
    assert (await client.get_location(3)).structural is True


async def test_location_404(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=f"{ROOT}/api/stock/location/99/",
        status_code=404,
        json={"detail": "No StockLocation matches the given query."},
    )
    with pytest.raises(UpstreamNotFound, match="No StockLocation"):
        await client.get_location(99)


# --------------------------------------------------------------------- stock


async def test_create_stock_list_answer_and_int_status(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/stock/", status_code=201, json=[stock(14)])
    item = await client.create_stock(
        4,
        1,
        location=1,
        batch="bambuddy-42",
        status=StockStatus.ATTENTION,
        notes="Printed",
        delete_on_deplete=False,
    )
    assert item.pk == 14 and item.part_detail is not None and item.part_detail.ipn == "BMB-0123456789ab"
    assert item.updated == datetime(2026, 11, 22, 4, 31, tzinfo=UTC)
    body = sent_json(httpx_mock.get_request())
    assert body == {
        "part": 4,
        "quantity": 1,
        "status": 50,
        "location": 1,
        "batch": "bambuddy-42",
        "notes": "Printed",
        "delete_on_deplete": False,
    }
    assert type(body["status"]) is int and type(body["quantity"]) is int


async def test_create_stock_object_answer(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="POST", url=f"{ROOT}/api/stock/", status_code=201, json=stock(15, quantity=742.5)
    )
    item = await client.create_stock(4, 742.5)
    assert item.pk == 15 and item.quantity == 742.5
    assert sent_json(httpx_mock.get_request())["status"] == 10


async def test_create_stock_empty_list_is_an_error(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/stock/", status_code=201, json=[])
    with pytest.raises(UpstreamError, match="created no stock item"):
        await client.create_stock(4, 1)


async def test_create_stock_refuses_string_status(client: InvenTreeClient):
    with pytest.raises(InputError, match="integer"):
        await client.create_stock(4, 1, status="50")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        await client.create_stock(4, 1, status=True)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"quantity": "Quantity is required"}, "quantity: Quantity is required"),
        ({"part": "Valid part must be supplied"}, "part: Valid part must be supplied"),
        (
            {"location": ["Stock items cannot be located into structural stock locations!"]},
            "location: Stock items cannot be located into structural stock locations!",
        ),
        (
            {
                "quantity": [
                    "Ensure this value is greater than or equal to 0.",
                    "Quantity must be greater than zero",
                ]
            },
            "quantity: Ensure this value is greater than or equal to 0.; Quantity must be greater than zero",
        ),
    ],
)
async def test_create_stock_400_shapes(httpx_mock: HTTPXMock, client: InvenTreeClient, body, detail):
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/stock/", status_code=400, json=body)
    with pytest.raises(UpstreamValidation) as err:
        await client.create_stock(4, 1)
    assert err.value.detail == detail
    assert err.value.errors == body


async def test_list_stock_by_batch_sends_limit_and_follows_next(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    first = url(
        "/api/stock/", batch="bambuddy-42", part=4, part_detail=True, location_detail=False, limit=2, offset=0
    )
    second = url(
        "/api/stock/", batch="bambuddy-42", part=4, part_detail=True, location_detail=False, limit=2, offset=2
    )
    httpx_mock.add_response(url=first, json=page([stock(1), stock(2)], count=3, next_=second))
    httpx_mock.add_response(url=second, json=page([stock(3)], count=3))
    items = await client.list_stock(batch="bambuddy-42", part=4, page_size=2)
    assert [i.pk for i in items] == [1, 2, 3]


async def test_list_stock_exact_location(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=url(
            "/api/stock/",
            location=3,
            cascade=False,
            in_stock=True,
            part_detail=True,
            location_detail=True,
            limit=100,
            offset=0,
        ),
        json=page([stock(1, location_detail={"pk": 3, "name": "X1C", "pathstring": "Printers/X1C"})]),
    )
    (item,) = await client.list_stock(location=3, in_stock=True, location_detail=True)
    assert item.location_detail is not None and item.location_detail.pathstring == "Printers/X1C"


async def test_list_stock_by_category(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=url("/api/stock/", category=2, part_detail=True, location_detail=False, limit=100, offset=0),
        json=[stock(1)],
    )
    assert len(await client.list_stock(category=2)) == 1


async def test_list_stock_bad_part_filter(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        status_code=400,
        json={"part": ["Select a valid choice. That choice is not one of the available choices."]},
    )
    with pytest.raises(UpstreamValidation, match="part: Select a valid choice"):
        await client.list_stock(part=999)


async def test_list_stock_unknown_shape(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(json={"detail": "odd"})
    with pytest.raises(UpstreamError, match=r"expected a list or \{count, results\}"):
        await client.list_stock()


async def test_get_and_update_stock(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=url("/api/stock/14/", part_detail=True), json=stock(14))
    httpx_mock.add_response(
        method="PATCH",
        url=f"{ROOT}/api/stock/14/",
        match_json={"delete_on_deplete": False, "status": 55},
        json=stock(14, delete_on_deplete=False, status=55),
    )
    assert (await client.get_stock(14)).pk == 14
    got = await client.update_stock(14, {"delete_on_deplete": False, "status": StockStatus.DAMAGED})
    assert got.status == 55 and got.delete_on_deplete is False


async def test_get_stock_depleted_is_not_found(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        url=url("/api/stock/14/", part_detail=True),
        status_code=404,
        json={"detail": "No StockItem matches the given query."},
    )
    with pytest.raises(UpstreamNotFound):
        await client.get_stock(14)


async def test_conflict_is_mapped(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="PATCH", url=f"{ROOT}/api/stock/14/", status_code=409, json={"detail": "locked"}
    )
    with pytest.raises(UpstreamConflict, match="locked"):
        await client.update_stock(14, {"notes": "x"})


async def test_transfer_whole_quantity(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=url("/api/stock/2/", part_detail=True), json=stock(2, quantity=742.5))
    echo = {"items": [{"pk": 2, "quantity": "742.50000", "status": None}], "notes": "unload", "location": 2}
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/stock/transfer/",
        status_code=201,
        match_json={
            "items": [{"pk": 2, "quantity": "742.5"}, {"pk": 3, "quantity": "10"}],
            "location": 2,
            "notes": "unload",
        },
        json=echo,
    )
    given = StockItem.model_validate(stock(3, quantity=10.0))
    result = await client.transfer_stock([2, given], 2, notes="unload")
    assert result.items[0].quantity == 742.5 and result.location == 2


async def test_transfer_structural_target(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/stock/transfer/",
        status_code=400,
        json={"location": ["Structural locations cannot be assigned stock items"]},
    )
    with pytest.raises(UpstreamValidation, match="location: Structural"):
        await client.transfer_stock([StockItem(pk=2, part=4, quantity=1)], 3)


async def test_remove_stock_notes_key_and_rounding(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/stock/remove/",
        status_code=201,
        match_json={"items": [{"pk": 14, "quantity": "12.34568"}], "notes": "bambuddy:usage-7:"},
        json={"items": [{"pk": None, "quantity": "12.34568", "status": None}], "notes": "bambuddy:usage-7:"},
    )
    result = await client.remove_stock(14, 12.3456789, notes="bambuddy:usage-7:")
    assert result.items[0].pk is None  # depleted and deleted


async def test_remove_stock_nested_items_error(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    body = {"items": [{"quantity": ["Ensure that there are no more than 5 decimal places."]}]}
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/stock/remove/", status_code=400, json=body)
    with pytest.raises(UpstreamValidation) as err:
        await client.remove_stock(StockItem(pk=14, part=4), 1, notes="x")
    assert err.value.detail == "items: quantity: Ensure that there are no more than 5 decimal places."
    assert sleeps == []


async def test_remove_stock_timeout_is_not_retried(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamTransportError):
        await client.remove_stock(14, 1, notes="x")
    assert sleeps == [] and len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.3456789, "12.34568"),
        (0.000001, "0"),
        (1e-05, "0.00001"),
        (742.5, "742.5"),
        (10, "10"),
        (-0.0, "0"),
    ],
)
def test_decimal_text(value: float, text: str):
    assert decimal_text(value) == text


# ------------------------------------------------------------------ tracking


def track(pk: int, notes: str, item: int | None = 14) -> dict[str, Any]:
    return {
        "pk": pk,
        "item": item,
        "date": "2026-11-22 04:33",
        "deltas": {"removed": 12.34, "quantity": 297.66},
        "label": "Stock manually removed",
        "notes": notes,
        "tracking_type": 12,
        "user": 1,
    }


async def test_find_tracking_by_item_before_450(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/stock/track/", search="bambuddy:archive-4:", item=14, limit=50, offset=0),
        json=page([track(25, "bambuddy:archive-42:"), track(26, "bambuddy:archive-4:")]),
    )
    rows = await client.find_tracking("bambuddy:archive-4:", item=14, part=4)
    assert [r.pk for r in rows] == [26]
    assert rows[0].date == datetime(2026, 11, 22, 4, 33, tzinfo=UTC)


async def test_find_tracking_by_part_from_450(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=url("/api/stock/track/", search="m:1:", part=4, limit=50, offset=0),
        json=page([track(30, "m:1:", item=None)]),
    )
    (row,) = await client.find_tracking("m:1:", item=14, part=4)
    assert row.item is None


async def test_find_tracking_deleted_item_is_not_found(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        status_code=400,
        json={"item": ["Select a valid choice. That choice is not one of the available choices."]},
    )
    with pytest.raises(UpstreamNotFound, match="Select a valid choice"):
        await client.find_tracking("m:1:", item=14)


async def test_find_tracking_needs_a_filter(client: InvenTreeClient):
    with pytest.raises(InputError):
        await client.find_tracking("m:1:")


async def test_search_tracking_by_part_since_a_date_in_big_pages(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    httpx_mock.add_response(
        url=url(
            "/api/stock/track/",
            search="bambuddy:usage:",
            part=4,
            min_date="2026-11-29",
            limit=500,
            offset=0,
        ),
        json=page([track(30, "bambuddy:usage:7:", item=None), track(31, "bambuddy:usage:8:")]),
    )
    rows = await client.search_tracking("bambuddy:usage:", part=4, min_date=date(2026, 11, 29), page_size=500)
    assert [r.pk for r in rows] == [30, 31] and rows[0].item is None


def test_tracking_notes_match_is_exact():
    assert tracking_notes_match(" bambuddy:archive-42: ", "bambuddy:archive-42:")
    assert not tracking_notes_match("bambuddy:archive-42:", "bambuddy:archive-4")
    assert not tracking_notes_match(None, "x")


# ---------------------------------------------------------------- parameters

LEGACY_T = f"{ROOT}/api/part/parameter/template/"
GENERIC_T = f"{ROOT}/api/parameter/template/"


def template(pk: int, name: str, **extra: object) -> dict[str, Any]:
    return {"pk": pk, "name": name, "units": "g", "description": "", "checkbox": False, **extra}


def legacy_param(pk: int, data: str) -> dict[str, Any]:
    return {"pk": pk, "part": 4, "template": 1, "data": data, "data_numeric": float(data), "note": ""}


def generic_param(pk: int, data: str) -> dict[str, Any]:
    return {"pk": pk, "model_type": "part.part", "model_id": 4, "template": 1, "data": data, "note": ""}


async def test_layout_from_version(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(429))
    assert await client.parameter_layout() == "legacy"


async def test_layout_generic_from_430(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(430))
    assert await client.parameter_layout() == "generic"


@pytest.mark.parametrize(("status", "layout"), [(404, "legacy"), (200, "generic")])
async def test_layout_probe_without_version(httpx_mock: HTTPXMock, client: InvenTreeClient, status, layout):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(None))
    body = {"detail": "API endpoint not found", "url": GENERIC_T} if status == 404 else page([])
    httpx_mock.add_response(url=url("/api/parameter/template/", limit=1), status_code=status, json=body)
    assert await client.parameter_layout() == layout


async def test_legacy_upsert_patches_existing(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/", template=1, part=4, limit=50, offset=0),
        json=page([legacy_param(7, "12.5")]),
    )
    httpx_mock.add_response(
        method="PATCH",
        url=f"{ROOT}/api/part/parameter/7/",
        match_json={"data": "14.2"},
        json=legacy_param(7, "14.2"),
    )
    got = await client.upsert_part_parameter(4, 1, 14.2)
    assert got.data == "14.2" and got.part_pk == 4


async def test_legacy_upsert_creates_when_missing(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/", template=1, part=4, limit=50, offset=0), json=page([])
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/part/parameter/",
        status_code=201,
        match_json={"template": 1, "data": "5025", "part": 4, "note": "seconds"},
        json=legacy_param(8, "5025"),
    )
    got = await client.upsert_part_parameter(4, 1, 5025.0, note="seconds")
    assert got.pk == 8


async def test_upsert_unchanged_writes_nothing(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/", template=1, part=4, limit=50, offset=0),
        json=page([legacy_param(7, "12.5")]),
    )
    got = await client.upsert_part_parameter(4, 1, "12.5")
    assert got.pk == 7
    assert not httpx_mock.get_requests(method="PATCH") and not httpx_mock.get_requests(method="POST")


async def test_generic_upsert_creates_with_model_type(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=url("/api/parameter/", template=1, model_type="part", model_id=4, limit=50, offset=0),
        json=page([]),
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/parameter/",
        status_code=201,
        match_json={"template": 1, "data": "12.5", "model_type": "part", "model_id": 4},
        json=generic_param(9, "12.5"),
    )
    got = await client.upsert_part_parameter(4, 1, 12.5)
    assert got.part_pk == 4 and got.model_type == "part.part"


async def test_generic_upsert_race_falls_back_to_patch(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    find = url("/api/parameter/", template=1, model_type="part", model_id=4, limit=50, offset=0)
    httpx_mock.add_response(url=find, json=page([]))
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/parameter/",
        status_code=400,
        json={"non_field_errors": ["The fields model_type, model_id, template must make a unique set."]},
    )
    httpx_mock.add_response(url=find, json=page([generic_param(9, "1")]))
    httpx_mock.add_response(
        method="PATCH", url=f"{ROOT}/api/parameter/9/", match_json={"data": "2"}, json=generic_param(9, "2")
    )
    got = await client.upsert_part_parameter(4, 1, 2)
    assert got.data == "2"


async def test_upsert_other_validation_error_propagates(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/", template=1, part=4, limit=50, offset=0), json=page([])
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/part/parameter/",
        status_code=400,
        json={"data": ["Could not convert abc to g"]},
    )
    with pytest.raises(UpstreamValidation, match="data: Could not convert abc to g"):
        await client.upsert_part_parameter(4, 1, "abc")


async def test_part_parameters_generic(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    other = generic_param(10, "3") | {"model_id": 5}
    httpx_mock.add_response(
        url=url("/api/parameter/", model_type="part", model_id=4, limit=50, offset=0),
        json=page([generic_param(9, "1"), other]),
    )
    assert [p.pk for p in await client.part_parameters(4)] == [9]


async def test_find_template_legacy_exact(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/template/", name="Weight", limit=5, offset=0),
        json=[template(1, "Weight")],
    )
    found = await client.find_parameter_template("Weight")
    assert found is not None and found.pk == 1


async def test_find_template_case_variant_via_search(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=url("/api/parameter/template/", name="Weight", limit=5, offset=0), json=page([])
    )
    httpx_mock.add_response(
        url=url("/api/parameter/template/", search="Weight", limit=50, offset=0),
        json=page([template(2, "PrintWeight"), template(3, "weight", model_type="part.part")]),
    )
    found = await client.find_parameter_template("Weight")
    assert found is not None and found.pk == 3


async def test_ensure_template_creates_generic_with_model_type(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=url("/api/parameter/template/", name="PrintTime", limit=5, offset=0), json=page([])
    )
    httpx_mock.add_response(
        url=url("/api/parameter/template/", search="PrintTime", limit=50, offset=0), json=page([])
    )
    httpx_mock.add_response(
        method="POST",
        url=GENERIC_T,
        status_code=201,
        match_json={"name": "PrintTime", "units": "", "description": "Slicer estimate", "model_type": "part"},
        json=template(5, "PrintTime", units="", model_type="part.part"),
    )
    created = await client.ensure_parameter_template("PrintTime", description="Slicer estimate")
    assert created.pk == 5


async def test_ensure_template_creates_legacy_without_model_type(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    httpx_mock.add_response(
        url=url("/api/part/parameter/template/", name="Weight", limit=5, offset=0), json=[]
    )
    httpx_mock.add_response(
        url=url("/api/part/parameter/template/", search="Weight", limit=50, offset=0), json=[]
    )
    httpx_mock.add_response(
        method="POST",
        url=LEGACY_T,
        status_code=201,
        match_json={"name": "Weight", "units": "g", "description": ""},
        json=template(1, "Weight"),
    )
    assert (await client.ensure_parameter_template("Weight", units="g")).pk == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.5, "12.5"), (5025.0, "5025"), (0.1 + 0.2, "0.3"), (7, "7"), (" 1h ", "1h"), (True, "true")],
)
def test_parameter_text(value: Any, text: str):
    assert parameter_text(value) == text


def test_truncate():
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdef", 5) == "abcd…"
    assert truncate(None, 5) == ""


# ---------------------------------------------------------------------- probe


async def test_probe_reports_missing_roles(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    roles = {
        "username": "sync",
        "is_superuser": False,
        "roles": {
            "part": ["view", "add", "change"],
            "part_category": ["view"],
            "stock": ["view"],
            "stock_location": None,
        },
    }
    httpx_mock.add_response(url=f"{ROOT}/api/user/roles/", json=roles)
    probe = await client.probe()
    assert probe.token_valid and probe.username == "sync" and probe.api_version == 425
    assert probe.missing_roles == ["stock.add", "stock.change", "stock_location.view"]
    assert probe.parameter_layout == "legacy"


async def test_roles(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/user/roles/", json={"roles": {"part": ["view"], "stock": None}})
    assert await client.roles() == {"part": ["view"], "stock": []}


async def test_probe_superuser(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=f"{ROOT}/api/user/roles/", json={"username": "admin", "is_superuser": True, "roles": {}}
    )
    probe = await client.probe()
    assert probe.problems == [] and probe.parameter_layout == "generic"


async def test_probe_bad_token(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", status_code=401, json={"detail": "Invalid token."})
    probe = await client.probe()
    assert (
        probe.reachable
        and probe.token_valid is False
        and probe.problems == ["INVENTREE_TOKEN was refused by 127.0.0.1:8811 (Invalid token.)"]
    )


async def test_probe_unreachable(httpx_mock: HTTPXMock, client: InvenTreeClient, sleeps):
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("refused"))
    probe = await client.probe()
    assert not probe.reachable and len(sleeps) == 2


async def test_probe_without_token(httpx_mock: HTTPXMock):
    inv = InvenTreeClient(ROOT)
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(425))
    probe = await inv.probe()
    assert "Authorization" not in httpx_mock.get_request().headers
    assert probe.token_valid is None and "no InvenTree token configured" in probe.problems
    await inv.aclose()


async def test_paging_stops_at_count_even_if_next_is_set(httpx_mock: HTTPXMock, client: InvenTreeClient):
    first = url("/api/stock/", part_detail=True, location_detail=False, limit=2, offset=0)
    httpx_mock.add_response(url=first, json=page([stock(1), stock(2)], count=2, next_=first))
    assert len(await client.list_stock(page_size=2)) == 2


async def test_null_quantity_is_zero(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=url("/api/stock/1/", part_detail=True), json=stock(1, quantity=None))
    assert (await client.get_stock(1)).quantity == 0.0


async def test_list_stock_batch_regex_with_limit(httpx_mock: HTTPXMock, client: InvenTreeClient):
    first = url(
        "/api/stock/",
        batch_regex="^bambuddy-[0-9]+$",
        part_detail=True,
        location_detail=False,
        limit=1,
        offset=0,
    )
    httpx_mock.add_response(url=first, json=page([stock(1)], count=5, next_=first + "&more"))
    items = await client.list_stock(batch_regex=r"^bambuddy-[0-9]+$", limit=1)
    assert [i.pk for i in items] == [1]
