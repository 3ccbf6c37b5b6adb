"""The simulated InvenTree answers like the real one (reference: inventree-api.md), quirks included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from farmsync_sim.common import tiny_png
from farmsync_sim.server import SimFarm

# Small-scenario layout (see farmsync_sim.scenarios): category 2 Filament with 3 PLA / 4 PETG below it,
# 5 structural; location 1 Storage > 2 shelf, 3 structural Printers > 4..7 per printer, 8 print output.
PRINTERS_LOCATION = 3
SHELF = 2
OUTPUT = 8


@pytest.fixture
def inv(sim_farm: SimFarm) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {sim_farm.token}"}
    with httpx.Client(base_url=sim_farm.inventree_url, headers=headers, timeout=5.0) as client:
        yield client


def make_part(inv: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = inv.post("/api/part/", json={"name": "Benchy", "category": 1, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def make_stock(inv: httpx.Client, part: int, quantity: float = 1000, **fields: Any) -> dict[str, Any]:
    response = inv.post("/api/stock/", json={"part": part, "quantity": quantity, "location": SHELF, **fields})
    assert response.status_code == 201, response.text
    return response.json()[0]


def set_api(farm: SimFarm, version: int) -> None:
    farm.inventree.state.api_version = version


# ------------------------------------------------------------------------------------------ auth and routing


def test_root_is_open_but_rejects_a_bad_token(sim_farm: SimFarm, inv: httpx.Client) -> None:
    open_root = httpx.get(f"{sim_farm.inventree_url}/api/")
    assert open_root.status_code == 200
    # The default is the newest server run for real (inventree-api.md §6); 425 stays one switch away.
    assert open_root.json()["apiVersion"] == 530 and isinstance(open_root.json()["apiVersion"], int)
    set_api(sim_farm, 425)
    assert httpx.get(f"{sim_farm.inventree_url}/api/").json()["apiVersion"] == 425
    assert open_root.json()["system_health"] is None
    assert inv.get("/api/").json()["system_health"] is True
    bad = httpx.get(f"{sim_farm.inventree_url}/api/", headers={"Authorization": "Token garbage"})
    assert bad.status_code == 401
    assert bad.json() == {"detail": "Invalid token."}
    assert bad.headers["www-authenticate"] == "Token"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "Authentication credentials were not provided."),
        ("Token inv-0000000000000000000000000000000000000000-20990101", "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Bearer inv-x", "Authentication credentials were not provided."),
    ],
)
def test_401_bodies(sim_farm: SimFarm, header: str | None, detail: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{sim_farm.inventree_url}/api/part/", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == "Token"
    assert response.headers["content-type"] == "application/json"


def test_scheme_word_is_case_insensitive_and_roleless_user_gets_403(sim_farm: SimFarm) -> None:
    url = f"{sim_farm.inventree_url}/api/part/"
    assert httpx.get(url, headers={"Authorization": f"token {sim_farm.token}"}).status_code == 200
    state = sim_farm.inventree.state
    viewer = state.add_user("viewer", "pw", roles=False, staff=False)
    forbidden = httpx.get(url, headers={"Authorization": f"Token {state.issue_token(viewer['pk'])}"})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "You do not have permission to perform this action."}


def test_token_endpoint_with_basic_auth(sim_farm: SimFarm) -> None:
    url = f"{sim_farm.inventree_url}/api/user/token/"
    good = httpx.get(url, params={"name": "farmsync"}, auth=("admin", "inventree"))
    assert good.status_code == 200 and good.json()["token"] == sim_farm.token
    bad = httpx.get(url, auth=("admin", "wrong"))
    assert (bad.status_code, bad.json()) == (401, {"detail": "Invalid username/password."})


def test_unknown_paths_non_numeric_ids_and_missing_slash(inv: httpx.Client) -> None:
    for path in ("/api/part/abc/", "/api/nothing/", "/api/part/1", "/api/stock"):
        response = inv.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "API endpoint not found", "url": str(inv.base_url.join(path))}
    assert inv.get("/api/part/9999/").json() == {"detail": "No Part matches the given query."}
    assert inv.delete("/api/part/").json() == {"detail": 'Method "DELETE" not allowed.'}
    malformed = inv.post("/api/part/", content=b"{'name': 1}", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("JSON parse error - ")


# ------------------------------------------------------------------------------------------ lists and filters


def test_lists_plain_without_limit_and_paged_with_it(inv: httpx.Client) -> None:
    plain = inv.get("/api/stock/").json()
    assert isinstance(plain, list) and len(plain) == 6
    page = inv.get("/api/stock/", params={"limit": 4}).json()
    assert (page["count"], len(page["results"]), page["previous"]) == (6, 4, None)
    assert page["next"].startswith(str(inv.base_url)) and "offset=4" in page["next"]
    last = httpx.get(page["next"], headers=inv.headers).json()
    assert last["next"] is None and len(last["results"]) == 2 and "offset" not in last["previous"]


def test_unknown_filters_and_missing_location_are_ignored(inv: httpx.Client) -> None:
    every_part = inv.get("/api/part/").json()
    assert inv.get("/api/part/", params={"has_image": "true"}).json() == every_part
    assert len(inv.get("/api/stock/", params={"location": 9999}).json()) == 6
    refused = inv.get("/api/stock/", params={"part": 9999})
    assert refused.status_code == 400
    assert refused.json() == {
        "part": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert inv.get("/api/part/", params={"category": 9999}).status_code == 400


def test_ipn_lookup_is_exact_and_case_insensitive(inv: httpx.Client) -> None:
    found = inv.get("/api/part/", params={"IPN": "fil-pla-basic-black", "limit": 2}).json()
    assert found["count"] == 1 and found["results"][0]["IPN"] == "FIL-PLA-BASIC-BLACK"
    assert inv.get("/api/part/", params={"IPN": "FIL-PLA", "limit": 2}).json()["count"] == 0
    regex = inv.get("/api/part/", params={"IPN_regex": "^fil-petg"}).json()
    assert regex and all(p["IPN"].startswith("FIL-PETG") for p in regex)


def test_category_filters_include_subcategories(inv: httpx.Client) -> None:
    filament = inv.get("/api/part/", params={"category": 2}).json()
    assert {p["category"] for p in filament} == {3, 4}
    assert inv.get("/api/part/", params={"category": 2, "cascade": "false"}).json() == []
    stock = inv.get("/api/stock/", params={"category": 2}).json()
    assert len(stock) == 6


def test_location_filter_cascades_by_default(inv: httpx.Client) -> None:
    loaded = inv.get("/api/stock/", params={"location": PRINTERS_LOCATION}).json()
    assert loaded and all(4 <= i["location"] <= 7 for i in loaded)
    assert inv.get("/api/stock/", params={"location": PRINTERS_LOCATION, "cascade": "false"}).json() == []
    under_storage = inv.get("/api/stock/", params={"location": 1}).json()
    assert {i["location"] for i in under_storage} == {SHELF}


def test_batch_is_iexact_and_details_are_opt_in(sim_farm: SimFarm, inv: httpx.Client) -> None:
    batch = sim_farm.inventree.state.stock_items[1]["batch"]
    found = inv.get("/api/stock/", params={"batch": batch.lower()}).json()
    assert [i["pk"] for i in found] == [1]
    assert inv.get("/api/stock/", params={"batch": batch[:-1]}).json() == []
    assert "part_detail" not in found[0] and "location_detail" not in found[0]
    detailed = inv.get(
        "/api/stock/", params={"batch": batch, "part_detail": "true", "location_detail": "true"}
    ).json()[0]
    assert detailed["part_detail"]["IPN"].startswith("FIL-")
    assert detailed["location_detail"]["pathstring"].startswith("Printers/")


# ------------------------------------------------------------------------------------------ parts


def test_part_create_needs_only_a_name_and_applies_flag_defaults(inv: httpx.Client) -> None:
    assert inv.post("/api/part/", json={}).json() == {"name": ["This field is required."]}
    part = inv.post("/api/part/", json={"name": "Loose part"}).json()
    assert part["category"] is None and part["IPN"] is None and part["full_name"] == "Loose part"
    flags = {
        k: part[k]
        for k in ("active", "component", "purchaseable", "salable", "trackable", "assembly", "virtual")
    }
    assert flags == {
        "active": True,
        "component": True,
        "purchaseable": True,
        "salable": False,
        "trackable": False,
        "assembly": False,
        "virtual": False,
    }


def test_part_create_validation(inv: httpx.Client) -> None:
    too_long = inv.post("/api/part/", json={"name": "x", "description": "é" * 251})
    assert too_long.json() == {"description": ["Ensure this field has no more than 250 characters."]}
    assert inv.post("/api/part/", json={"name": "x", "description": "é" * 250}).status_code == 201
    assert inv.post("/api/part/", json={"name": "n" * 101}).status_code == 400
    assert inv.post("/api/part/", json={"name": "x", "category": 9999}).json() == {
        "category": ['Invalid pk "9999" - object does not exist.']
    }
    assert inv.post("/api/part/", json={"name": "x", "category": "abc"}).json() == {
        "category": ["Incorrect type. Expected pk value, received str."]
    }
    assert inv.post("/api/part/", json={"name": "x", "category": 5}).status_code == 400


def test_name_ipn_revision_must_be_unique_but_ipn_may_repeat(inv: httpx.Client) -> None:
    make_part(inv, IPN="BMB-0123456789ab")
    again = inv.post("/api/part/", json={"name": "Benchy", "IPN": "BMB-0123456789ab", "category": 1})
    assert again.json() == {"non_field_errors": ["The fields name, IPN, revision must make a unique set."]}
    make_part(inv, name="Other", IPN="BMB-0123456789ab")
    assert inv.get("/api/part/", params={"IPN": "BMB-0123456789AB"}).json().__len__() == 2


def test_part_image_upload_multipart(sim_farm: SimFarm, inv: httpx.Client) -> None:
    part = make_part(inv, IPN="BMB-img")
    assert part["image"] is None and part["thumbnail"] == "/static/img/blank_image.thumbnail.png"
    png = tiny_png("thumb")
    uploaded = inv.patch(f"/api/part/{part['pk']}/", files={"image": ("BMB-img.png", png, "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["image"] == "/media/part_images/BMB-img.png"
    assert uploaded.json()["thumbnail"] == "/media/part_images/BMB-img.thumbnail.png"
    assert sim_farm.inventree.state.part_images["part_images/BMB-img.png"] == png
    fake = inv.patch(
        f"/api/part/{part['pk']}/", files={"image": ("fake.png", b"not an image at all", "image/png")}
    )
    assert fake.status_code == 400
    assert fake.json()["image"][0].startswith("Upload a valid image.")
    cleared = inv.patch(f"/api/part/{part['pk']}/", json={"image": None}).json()
    assert cleared["image"] is None


def test_category_and_location_detail_show_structural(inv: httpx.Client) -> None:
    category = inv.get("/api/part/category/5/").json()
    assert category["structural"] is True and category["pathstring"] == "Library"
    sub = inv.get("/api/part/category/3/").json()
    assert (sub["parent"], sub["pathstring"], sub["level"]) == (2, "Filament/PLA", 1)
    location = inv.get(f"/api/stock/location/{PRINTERS_LOCATION}/", params={"path_detail": "true"}).json()
    assert location["structural"] is True and location["path"][0]["name"] == "Printers"
    assert inv.get("/api/stock/location/99/").json() == {
        "detail": "No StockLocation matches the given query."
    }
    assert inv.get("/api/part/category/99/").json() == {"detail": "No PartCategory matches the given query."}


# ------------------------------------------------------------------------------------------ stock create


def test_stock_create_returns_a_list_with_part_detail(inv: httpx.Client) -> None:
    part = make_part(inv)
    response = inv.post(
        "/api/stock/", json={"part": part["pk"], "quantity": 1, "location": OUTPUT, "batch": "bambuddy-42"}
    )
    assert response.status_code == 201
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["part_detail"]["pk"] == part["pk"]
    assert body[0]["delete_on_deplete"] is True and body[0]["status"] == 10


@pytest.mark.parametrize(("sent", "stored"), [(50, 50), ("50", 10), ("OK", 10), (99, 10), (True, 10)])
def test_stock_status_only_honoured_as_a_valid_int(inv: httpx.Client, sent: Any, stored: int) -> None:
    part = make_part(inv, name=f"status-{sent!r}")
    assert make_stock(inv, part["pk"], status=sent)["status"] == stored


def test_stock_create_errors(inv: httpx.Client) -> None:
    part = make_part(inv)["pk"]
    assert make_stock(inv, part, quantity=0)["quantity"] == 0
    assert inv.post("/api/stock/", json={"part": part, "quantity": -1}).json() == {
        "quantity": ["Ensure this value is greater than or equal to 0.", "Quantity must be greater than zero"]
    }
    assert inv.post("/api/stock/", json={"part": part}).json() == {"quantity": "Quantity is required"}
    assert inv.post("/api/stock/", json={"quantity": 1}).json() == {"part": "Valid part must be supplied"}
    assert inv.post("/api/stock/", json={"part": 9999, "quantity": 1}).json() == {
        "part": "Valid part must be supplied"
    }
    assert inv.post("/api/stock/", json={"part": part, "quantity": "abc"}).json() == {
        "quantity": ["Invalid value"]
    }
    assert inv.post("/api/stock/", json={"part": part, "quantity": 1, "location": 9999}).json() == {
        "location": ['Invalid pk "9999" - object does not exist.']
    }
    structural = inv.post("/api/stock/", json={"part": part, "quantity": 1, "location": PRINTERS_LOCATION})
    assert structural.json() == {
        "location": ["Stock items cannot be located into structural stock locations!"]
    }


def test_patch_stock_delete_on_deplete(inv: httpx.Client) -> None:
    item = make_stock(inv, make_part(inv)["pk"])
    patched = inv.patch(f"/api/stock/{item['pk']}/", json={"delete_on_deplete": False}).json()
    assert patched["delete_on_deplete"] is False
    assert inv.get(f"/api/stock/{item['pk']}/").json()["delete_on_deplete"] is False


# ------------------------------------------------------------------------------------------ transfer


def test_transfer_whole_keeps_pk_and_partial_splits(inv: httpx.Client) -> None:
    item = make_stock(inv, make_part(inv)["pk"], quantity=1000)
    whole = inv.post(
        "/api/stock/transfer/",
        json={"items": [{"pk": item["pk"], "quantity": 1000}], "location": 4, "notes": "load B1"},
    )
    assert whole.status_code == 201
    assert whole.json() == {
        "items": [{"pk": item["pk"], "quantity": "1000.00000", "status": None}],
        "notes": "load B1",
        "location": 4,
    }
    assert inv.get(f"/api/stock/{item['pk']}/").json()["location"] == 4
    split = inv.post(
        "/api/stock/transfer/", json={"items": [{"pk": item["pk"], "quantity": 100}], "location": SHELF}
    )
    assert split.status_code == 201
    left = inv.get(f"/api/stock/{item['pk']}/").json()
    assert (left["quantity"], left["location"]) == (900.0, 4)
    moved = [
        i
        for i in inv.get("/api/stock/", params={"location": SHELF, "cascade": "false"}).json()
        if i["batch"] == item["batch"] and i["part"] == item["part"]
    ]
    assert len(moved) == 1 and moved[0]["pk"] != item["pk"] and moved[0]["quantity"] == 100.0
    codes = [t["tracking_type"] for t in inv.get("/api/stock/track/", params={"item": item["pk"]}).json()]
    assert codes == [42, 20, 1]
    child_codes = [
        t["tracking_type"] for t in inv.get("/api/stock/track/", params={"item": moved[0]["pk"]}).json()
    ]
    assert child_codes[0] == 40


def test_transfer_over_quantity_moves_everything(inv: httpx.Client) -> None:
    item = make_stock(inv, make_part(inv)["pk"], quantity=900)
    assert (
        inv.post(
            "/api/stock/transfer/", json={"items": [{"pk": item["pk"], "quantity": 5000}], "location": 4}
        ).status_code
        == 201
    )
    after = inv.get(f"/api/stock/{item['pk']}/").json()
    assert (after["quantity"], after["location"]) == (900.0, 4)


def test_transfer_validation_and_structural_target(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    item = make_stock(inv, make_part(inv)["pk"])["pk"]
    structural = {"items": [{"pk": item, "quantity": 1}], "location": PRINTERS_LOCATION}
    assert inv.post("/api/stock/transfer/", json=structural).json() == {
        "location": [f'Invalid pk "{PRINTERS_LOCATION}" - object does not exist.']
    }
    set_api(sim_farm, 530)
    assert inv.post("/api/stock/transfer/", json=structural).json() == {
        "location": ["Structural locations cannot be assigned stock items"]
    }
    assert inv.post("/api/stock/transfer/", json={"items": [{"pk": item}], "location": 4}).json() == {
        "items": [{"quantity": ["This field is required."]}]
    }
    assert inv.post("/api/stock/transfer/", json={"items": [], "location": 4}).json() == {
        "non_field_errors": ["A list of stock items must be provided"]
    }
    assert inv.post(
        "/api/stock/transfer/", json={"items": [{"pk": 99999, "quantity": 1}], "location": 4}
    ).json() == {"items": [{"pk": ['Invalid pk "99999" - object does not exist.']}]}


# ------------------------------------------------------------------------------------------ remove and tracking


def test_remove_records_notes_and_clamps_decimals(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    item = make_stock(inv, make_part(inv)["pk"], quantity=310)["pk"]
    body = {"items": [{"pk": item, "quantity": 12.34}], "notes": "bambuddy:archive-42:filament"}
    response = inv.post("/api/stock/remove/", json=body)
    assert response.status_code == 201
    assert response.json() == {
        "items": [{"pk": item, "quantity": "12.34000", "status": None}],
        "notes": body["notes"],
    }
    assert inv.get(f"/api/stock/{item}/").json()["quantity"] == 297.66
    entry = inv.get("/api/stock/track/", params={"item": item}).json()[0]
    assert (entry["tracking_type"], entry["notes"], entry["deltas"]) == (
        12,
        body["notes"],
        {"removed": 12.34, "quantity": 297.66},
    )
    assert "part" not in entry  # API 425 has no part on tracking rows
    inv.post("/api/stock/remove/", json={"items": [{"pk": item, "quantity": 1}], "note": "ignored"})
    assert inv.get("/api/stock/track/", params={"item": item}).json()[0]["notes"] == ""
    too_fine = inv.post("/api/stock/remove/", json={"items": [{"pk": item, "quantity": 0.123456}]})
    assert too_fine.json() == {
        "items": [{"quantity": ["Ensure that there are no more than 5 decimal places."]}]
    }


def test_depletion_deletes_item_and_history_before_450(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    item = make_stock(inv, make_part(inv)["pk"], quantity=10)["pk"]
    response = inv.post(
        "/api/stock/remove/", json={"items": [{"pk": item, "quantity": 50}], "notes": "x:run-1:"}
    )
    assert response.status_code == 201 and response.json()["items"][0]["pk"] is None
    assert inv.get(f"/api/stock/{item}/").status_code == 404
    assert inv.get("/api/stock/track/", params={"item": item}).status_code == 400
    assert inv.get("/api/stock/track/", params={"search": "x:run-1:"}).json() == []


@pytest.mark.parametrize(("version", "final_recorded"), [(450, False), (530, True)])
def test_depletion_keeps_history_from_450(
    sim_farm: SimFarm, inv: httpx.Client, version: int, final_recorded: bool
) -> None:
    set_api(sim_farm, version)
    part = make_part(inv)["pk"]
    item = make_stock(inv, part, quantity=10)["pk"]
    inv.post("/api/stock/remove/", json={"items": [{"pk": item, "quantity": 4}], "notes": "x:run-1:"})
    inv.post("/api/stock/remove/", json={"items": [{"pk": item, "quantity": 6}], "notes": "x:run-2:"})
    assert inv.get(f"/api/stock/{item}/").status_code == 404
    assert inv.get("/api/stock/track/", params={"item": item}).status_code == 400
    history = inv.get("/api/stock/track/", params={"part": part}).json()
    assert history and all(t["item"] is None and t["part"] == part for t in history)
    notes = [t["notes"] for t in history]
    assert "x:run-1:" in notes
    assert ("x:run-2:" in notes) is final_recorded


def test_part_filter_on_tracking_only_from_450(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    part = make_part(inv)["pk"]
    make_stock(inv, part)
    everything = len(inv.get("/api/stock/track/").json())
    assert len(inv.get("/api/stock/track/", params={"part": part}).json()) == everything  # ignored at 425
    set_api(sim_farm, 450)
    assert len(inv.get("/api/stock/track/", params={"part": part}).json()) == 1


def test_tracking_search_is_a_case_insensitive_substring_newest_first(inv: httpx.Client) -> None:
    item = make_stock(inv, make_part(inv)["pk"])["pk"]
    for marker in ("bambuddy:archive-42:", "bambuddy:archive-43:"):
        inv.post("/api/stock/remove/", json={"items": [{"pk": item, "quantity": 1}], "notes": marker})
    assert len(inv.get("/api/stock/track/", params={"item": item, "search": "ARCHIVE-4"}).json()) == 2
    exact = inv.get("/api/stock/track/", params={"item": item, "search": "archive-42", "limit": 5}).json()
    assert exact["count"] == 1
    newest = inv.get("/api/stock/track/", params={"item": item}).json()
    assert [t["notes"] for t in newest[:2]] == ["bambuddy:archive-43:", "bambuddy:archive-42:"]
    assert inv.get("/api/stock/track/", params={"item": 99999}).status_code == 400


def test_stock_status_codes(inv: httpx.Client) -> None:
    values = inv.get("/api/stock/status/").json()["values"]
    assert {v["key"] for v in values.values()} == {10, 50, 55, 60, 65, 70, 75, 85}
    assert values["OK"]["label"] == "OK"


# ------------------------------------------------------------------------------------------ parameters


def test_template_name_filter_is_exact_and_case_sensitive(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    found = inv.get("/api/part/parameter/template/", params={"name": "Weight"}).json()
    assert [(t["name"], t["units"]) for t in found] == [("Weight", "g")]
    assert inv.get("/api/part/parameter/template/", params={"name": "weight"}).json() == []
    assert inv.get("/api/parameter/template/").json() == {
        "detail": "API endpoint not found",
        "url": str(inv.base_url.join("/api/parameter/template/")),
    }


def test_legacy_parameters_with_unit_validation_and_uniqueness(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 425)  # written against a real API-425 server
    part = make_part(inv)["pk"]
    url = "/api/part/parameter/"
    bad = inv.post(url, json={"part": part, "template": 1, "data": "abc"})
    assert (bad.status_code, bad.json()) == (400, {"data": ["Could not convert abc to g"]})
    good = inv.post(url, json={"part": part, "template": 1, "data": "0.0125 kg"})
    assert good.status_code == 201
    assert (good.json()["data"], good.json()["data_numeric"], good.json()["part"]) == (
        "0.0125 kg",
        12.5,
        part,
    )
    duplicate = inv.post(url, json={"part": part, "template": 1, "data": 13})
    assert duplicate.json() == {"non_field_errors": ["The fields part, template must make a unique set."]}
    free_text = inv.post(url, json={"part": part, "template": 2, "data": "1h 23m"}).json()
    assert free_text["data_numeric"] is None
    listed = inv.get(url, params={"part": part, "template": 1, "limit": 1}).json()["results"][0]
    patched = inv.patch(f"{url}{listed['pk']}/", json={"data": "14.2"})
    assert patched.status_code == 200 and patched.json()["data_numeric"] == 14.2
    assert inv.post(url, json={"part": part, "template": 1, "data": ""}).status_code == 400


def test_generic_parameters_from_430(sim_farm: SimFarm, inv: httpx.Client) -> None:
    set_api(sim_farm, 430)
    part = make_part(inv)["pk"]
    assert inv.get("/api/part/parameter/").json()["detail"] == "API endpoint not found"
    assert inv.get("/api/part/parameter/template/").status_code == 404
    template = inv.get("/api/parameter/template/", params={"name": "Weight", "limit": 1}).json()["results"][0]
    assert template["model_type"] == "part.part"
    body = {"model_type": "part", "model_id": part, "template": template["pk"], "data": "12.5"}
    created = inv.post("/api/parameter/", json=body)
    assert created.status_code == 201
    assert (created.json()["model_type"], created.json()["model_id"], created.json()["data_numeric"]) == (
        "part.part",
        part,
        12.5,
    )
    assert inv.post("/api/parameter/", json=body).json() == {
        "non_field_errors": ["The fields model_type, model_id, template must make a unique set."]
    }
    assert (
        inv.post("/api/parameter/", json={**body, "data": "abc", "template": template["pk"]}).status_code
        == 400
    )
    listed = inv.get("/api/parameter/", params={"model_type": "part", "model_id": part}).json()
    assert [p["pk"] for p in listed] == [created.json()["pk"]]
    embedded = inv.get(f"/api/part/{part}/", params={"parameters": "true"}).json()["parameters"]
    assert embedded[0]["model_id"] == part
