"""The simulated InvenTree's indexed filters answer exactly what a scan of every row would (issue #17, target 8).

Before: every ``GET /api/stock/?batch=`` and ``GET /api/part/?IPN=`` filtered every stock item or part, each
part's stock figures and each item's tracking count walked whole tables, and a new pk took the max of its
table, so a long backfill cost the simulator time quadratic in runs. These tests build a state through the
API with case-only differences, repeated keys, batch and IPN edits, splits, merges and deletes (both delete
rules: history gone before API 450, kept with item=null from 450), then hold every indexed answer to the
plain definition computed from the raw tables.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from farmsync_sim.inventree_state import InvenTreeState
from farmsync_sim.server import SimFarm

LOCATIONS = [2, 4, 5, 8]  # non-structural locations of the small scenario
BATCHES = ["run-1", "RUN-1", "Run-2", "run-2", "", None]
IPNS = ["ipn-a", "IPN-A", "Ipn-B", None]
NAMES = ["Benchy", "Clip"]
REVISIONS = ["", "r1"]


@pytest.fixture
def inv(sim_farm: SimFarm) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {sim_farm.token}"}
    with httpx.Client(base_url=sim_farm.inventree_url, headers=headers, timeout=5.0) as client:
        yield client


def plain_unique_clash(
    state: InvenTreeState, name: str, ipn: str | None, revision: str, exclude: int
) -> bool:
    return ipn is not None and any(
        p["pk"] != exclude and (p["name"], p["IPN"], p["revision"]) == (name, ipn, revision)
        for p in state.parts.values()
    )


def churn(state: InvenTreeState, inv: httpx.Client, seed: int, steps: int = 160) -> None:
    """Random parts, items and edits through the API; part uniqueness is checked against the plain scan."""
    rng = random.Random(seed)
    for _ in range(steps):
        parts, items = sorted(state.parts), sorted(state.stock_items)
        action = rng.choice(["part", "part", "ipn", "stock", "stock", "stock", "batch", "move", "remove"])
        if action == "part":
            body = {"name": rng.choice(NAMES), "IPN": rng.choice(IPNS), "revision": rng.choice(REVISIONS)}
            clash = plain_unique_clash(state, body["name"], body["IPN"], body["revision"], exclude=-1)
            response = inv.post("/api/part/", json=body)
            assert response.status_code == (400 if clash else 201), response.text
        elif action == "ipn":
            part = state.parts[rng.choice(parts)]
            ipn = rng.choice(IPNS)
            clash = plain_unique_clash(state, part["name"], ipn, part["revision"], exclude=part["pk"])
            response = inv.patch(f"/api/part/{part['pk']}/", json={"IPN": ipn})
            assert response.status_code == (400 if clash else 200), response.text
        elif action == "stock":
            body = {
                "part": rng.choice(parts),
                "quantity": rng.choice([1, 5, 10, 50]),
                "location": rng.choice(LOCATIONS),
                "batch": rng.choice(BATCHES),
            }
            assert inv.post("/api/stock/", json=body).status_code == 201
        elif action == "batch" and items:
            response = inv.patch(f"/api/stock/{rng.choice(items)}/", json={"batch": rng.choice(BATCHES)})
            assert response.status_code == 200, response.text
        elif action == "move" and items:
            pk = rng.choice(items)
            row: dict[str, Any] = {"pk": pk, "quantity": rng.choice([1, 2, 1000])}
            if rng.random() < 0.5:
                row["batch"] = rng.choice([b for b in BATCHES if b is not None])
            if state.api_version >= 512 and rng.random() < 0.5:
                row["merge"] = True
            body = {"items": [row], "location": rng.choice(LOCATIONS)}
            assert inv.post("/api/stock/transfer/", json=body).status_code == 201
        elif action == "remove" and items:
            body = {"items": [{"pk": rng.choice(items), "quantity": rng.choice([1, 3, 1000])}], "notes": "x"}
            assert inv.post("/api/stock/remove/", json=body).status_code == 201


def pks(rows: list[dict[str, Any]]) -> list[int]:
    return [r["pk"] for r in rows]


def check_against_scan(state: InvenTreeState, inv: httpx.Client) -> None:
    items = list(state.stock_items.values())
    parts = list(state.parts.values())
    assert items and parts
    for batch in [b for b in BATCHES if b] + ["nope"]:
        expected = sorted(i["pk"] for i in items if (i["batch"] or "").lower() == batch.lower())
        assert pks(inv.get("/api/stock/", params={"batch": batch}).json()) == expected
        by_batch = sorted(
            (i for i in items if (i["batch"] or "").lower() == batch.lower()), key=lambda i: i["pk"]
        )
        ordered = sorted(by_batch, key=lambda i: i["quantity"], reverse=True)
        assert pks(inv.get("/api/stock/", params={"batch": batch, "ordering": "-quantity"}).json()) == pks(
            ordered
        )
        page = inv.get("/api/stock/", params={"batch": batch, "limit": 2, "offset": 1}).json()
        assert (page["count"], pks(page["results"])) == (len(expected), expected[1:3])
        for part in state.parts:
            both = [pk for pk in expected if state.stock_items[pk]["part"] == part]
            assert pks(inv.get("/api/stock/", params={"batch": batch, "part": part}).json()) == both
    for part in parts:
        mine = [i for i in items if i["part"] == part["pk"]]
        assert pks(inv.get("/api/stock/", params={"part": part["pk"]}).json()) == sorted(pks(mine))
        available = [i for i in mine if InvenTreeState.in_stock(i)]
        shown = inv.get(f"/api/part/{part['pk']}/").json()
        assert (shown["in_stock"], shown["stock_item_count"]) == (
            sum(i["quantity"] for i in available),
            len(available),
        )
    for ipn in ["ipn-a", "IPN-B", "ipn-c"]:
        expected = sorted(p["pk"] for p in parts if (p["IPN"] or "").lower() == ipn.lower())
        assert pks(inv.get("/api/part/", params={"IPN": ipn}).json()) == expected
        assert pks(inv.get("/api/part/", params={"IPN": ipn, "category": 1, "cascade": "false"}).json()) == [
            pk for pk in expected if state.parts[pk]["category"] == 1
        ]
        by_name = sorted(
            sorted((state.parts[pk] for pk in expected), key=lambda p: p["pk"]), key=lambda p: p["name"]
        )
        assert pks(inv.get("/api/part/", params={"IPN": ipn, "ordering": "name"}).json()) == pks(by_name)
    for item in items:
        history = [t for t in state.tracking.values() if t["item"] == item["pk"]]
        newest_first = sorted(history, key=lambda t: (t["date"], t["pk"]), reverse=True)
        assert pks(inv.get("/api/stock/track/", params={"item": item["pk"]}).json()) == pks(newest_first)
        assert inv.get(f"/api/stock/{item['pk']}/").json()["tracking_items"] == len(history)
    if state.api_version >= 450:  # the part filter on tracking rows exists from API 450
        for part in parts:
            history = [t for t in state.tracking.values() if t["part"] == part["pk"]]
            newest_first = sorted(history, key=lambda t: (t["date"], t["pk"]), reverse=True)
            assert pks(inv.get("/api/stock/track/", params={"part": part["pk"]}).json()) == pks(newest_first)
            for item in sorted({t["item"] for t in history if t["item"] is not None})[:3]:
                both = [t for t in newest_first if t["item"] == item and "x" in t["notes"].lower()]
                answer = inv.get(
                    "/api/stock/track/", params={"part": part["pk"], "item": item, "search": "x"}
                )
                assert pks(answer.json()) == pks(both)
    assert pks(inv.get("/api/stock/").json()) == sorted(state.stock_items)
    assert pks(inv.get("/api/part/").json()) == sorted(state.parts)


@pytest.mark.parametrize(("api_version", "seed"), [(530, 1), (530, 2), (440, 3)])
def test_indexed_filters_match_the_plain_scan(
    sim_farm: SimFarm, inv: httpx.Client, api_version: int, seed: int
) -> None:
    state = sim_farm.inventree.state
    state.api_version = api_version
    churn(state, inv, seed)
    assert len(state.stock_items) > 20 and len(state.parts) > 5
    assert any((i["batch"] or "") == "" for i in state.stock_items.values())
    check_against_scan(state, inv)


def test_new_pks_stay_above_every_pk_ever_given(sim_farm: SimFarm, inv: httpx.Client) -> None:
    state = sim_farm.inventree.state
    part = inv.post("/api/part/", json={"name": "Benchy"}).json()["pk"]
    first = inv.post("/api/stock/", json={"part": part, "quantity": 2, "location": 2}).json()[0]["pk"]
    assert first == max(state.stock_items)
    inv.post("/api/stock/remove/", json={"items": [{"pk": first, "quantity": 2}]})
    assert first not in state.stock_items
    again = inv.post("/api/stock/", json={"part": part, "quantity": 2, "location": 2}).json()[0]["pk"]
    assert again == first + 1  # never reused, like a database sequence


def test_rows_changed_behind_the_index_are_still_found(sim_farm: SimFarm, inv: httpx.Client) -> None:
    """A test (or a seed load) editing the tables directly: the index notices added or deleted rows."""
    state = sim_farm.inventree.state
    batch = state.stock_items[1]["batch"]
    assert pks(inv.get("/api/stock/", params={"batch": batch}).json()) == [1]
    del state.stock_items[1]
    assert inv.get("/api/stock/", params={"batch": batch}).json() == []
    state.load(state.dump())
    assert inv.get("/api/stock/", params={"batch": batch}).json() == []
    check_against_scan(state, inv)


def test_parameters_and_images_match_the_plain_scan(sim_farm: SimFarm, inv: httpx.Client) -> None:
    """Parameter uniqueness and lists per part, and image names taken or freed, against the raw tables."""
    from farmsync_sim.common import tiny_png

    state = sim_farm.inventree.state
    rng = random.Random(11)
    parts = [inv.post("/api/part/", json={"name": f"P{n}"}).json()["pk"] for n in range(6)]
    for _ in range(60):
        part, template = rng.choice(parts), rng.choice([1, 2])
        clash = any(
            (p["model_type"], p["model_id"], p["template"]) == ("part.part", part, template)
            for p in state.parameters.values()
        )
        body = {"model_type": "part", "model_id": part, "template": template, "data": "12"}
        assert inv.post("/api/parameter/", json=body).status_code == (400 if clash else 201)
        if rng.random() < 0.2:
            victim = rng.choice(sorted(state.parameters))
            assert inv.delete(f"/api/parameter/{victim}/").status_code == 204
        name = rng.choice(["a.png", "b.png"])
        if rng.random() < 0.3:
            assert inv.patch(f"/api/part/{part}/", json={"image": None}).status_code == 200
        else:
            others = {p["image"] for p in state.parts.values() if p["pk"] != part and p["image"]}
            shown = inv.patch(
                f"/api/part/{part}/", files={"image": (name, tiny_png(name), "image/png")}
            ).json()
            assert (shown["image"] == f"/media/part_images/{name}") == (f"part_images/{name}" not in others)
        used = {p["image"] for p in state.parts.values() if p["image"]}
        assert set(state.part_images) == used  # a file no part shows is gone
    for part in parts:
        mine = sorted(p["pk"] for p in state.parameters.values() if p["model_id"] == part)
        listed = inv.get("/api/parameter/", params={"model_type": "part", "model_id": part}).json()
        assert pks(listed) == mine
        embedded = inv.get(f"/api/part/{part}/", params={"parameters": "true"}).json()["parameters"]
        assert pks(embedded) == mine
