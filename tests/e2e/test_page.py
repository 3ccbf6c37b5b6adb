"""The operator's page over HTTP (the browser tests are in test_dashboard_browser.py): served from the store with
no upstream request, the sign-in and its cookie, CSRF on every button, the filament plan that is applied only as
shown, the thumbnails served by farmsync, and the banner of a page without a token."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmsync.prints.page import THUMB_MAX_BYTES
from farmsync_sim.server import SimFarm
from tests.fixtures.page import FAILED_PRINT, PAGE_TOKEN, PageFarm, serve_page

pytestmark = pytest.mark.slow
SECTIONS = ("Prints → InvenTree", "Filament", "G-code on printers", "Last 30 days")


@contextlib.contextmanager
def signed_in(page: PageFarm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=page.url, timeout=120) as client:
        answer = client.post("/login", data={"token": PAGE_TOKEN})
        assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_viewing_the_page_ten_times_asks_no_upstream(page_farm: PageFarm) -> None:
    with signed_in(page_farm) as client:
        before = page_farm.upstream_requests()
        for _ in range(10):
            answer = client.get("/")
            assert answer.status_code == 200 and all(s in answer.text for s in SECTIONS)
            for src in re.findall(r'<img[^>]+src="([^"]+)"', answer.text):
                assert src.startswith("/page/thumb/"), src  # never hot-linked
                assert client.get(src).status_code == 200
        assert page_farm.upstream_requests() == before
    # the check counts: a filament run does ask both systems
    with httpx.Client(base_url=page_farm.url, headers={"X-Service-Token": PAGE_TOKEN}, timeout=120) as c:
        c.post("/sync/filament?dry_run=true")
    assert page_farm.upstream_requests() > before


def test_the_page_names_prints_links_them_and_lists_failures(page_farm: PageFarm) -> None:
    with signed_in(page_farm) as client:
        html = client.get("/").text
    names = re.findall(r'<strong class="name">([^<]+)</strong>', html)
    assert names and "3DBenchy" in names
    assert f"<strong>{FAILED_PRINT}</strong>" in html and "503" in html and "parked" in html
    assert re.search(r'href="http://127\.0\.0\.1:\d+/web/part/\d+/"', html)
    assert re.search(r'href="http://127\.0\.0\.1:\d+/web/stock/item/\d+/"', html)
    assert re.search(r'href="http://127\.0\.0\.1:\d+/archives/\d+"', html)
    assert not re.search(r"\b(run|archive):\d", html)  # names, not ids
    assert "<svg" in html and "https://" not in html


def test_thumbnails_are_small_and_served_by_farmsync(page_farm: PageFarm) -> None:
    with signed_in(page_farm) as client:
        src = re.findall(r'<img[^>]+src="([^"]+)"', client.get("/").text)
        assert src
        image = client.get(src[0])
        assert image.headers["content-type"] == "image/png" and image.content.startswith(b"\x89PNG")
        assert len(image.content) <= THUMB_MAX_BYTES
    anonymous = httpx.get(f"{page_farm.url}{src[0]}")
    assert anonymous.status_code == 401


def test_sign_in_keeps_a_strict_http_only_cookie_and_sign_out_ends_it(page_farm: PageFarm) -> None:
    with httpx.Client(base_url=page_farm.url) as client:
        login = client.get("/")
        assert login.status_code == 200 and 'action="/login"' in login.text and "Filament" not in login.text
        wrong = client.post("/login", data={"token": "not-it"})
        assert wrong.status_code == 303
        page = client.get("/")
        assert "That is not the service token." in page.text and 'action="/login"' in page.text
        right = client.post("/login", data={"token": PAGE_TOKEN})
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PAGE_TOKEN not in cookie
        page = client.get("/")
        assert all(s in page.text for s in SECTIONS) and PAGE_TOKEN not in page.text
        signed = client.cookies["farmsync_session"]
        forged = signed[:-4] + ("AAAA" if not signed.endswith("AAAA") else "BBBB")  # a bad signature
        with httpx.Client(base_url=page_farm.url, cookies={"farmsync_session": forged}) as other:
            assert 'action="/login"' in other.get("/").text  # a cookie changed by hand is no session
        out = client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
        assert 'action="/login"' in client.get("/").text
    header = httpx.get(f"{page_farm.url}/", headers={"X-Service-Token": PAGE_TOKEN})
    assert all(s in header.text for s in SECTIONS)
    policy = header.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src" not in policy


def test_every_button_needs_the_session_and_its_csrf_token(page_farm: PageFarm) -> None:
    buttons = ["/page/prints/retry", "/page/filament/apply", "/page/filament/plan", "/page/gcode/preview"]
    buttons += ["/page/gcode/apply", "/logout"]
    writes_before = len(page_farm.farm.inventree.log.writes()) + len(page_farm.farm.bambuddy.log.writes())
    for path in buttons:
        anonymous = httpx.post(
            f"{page_farm.url}{path}", data={"archive": "1", "digest": "x", "printer": "Klipper"}
        )
        assert anonymous.status_code == 401, (path, anonymous.text)
    with signed_in(page_farm) as client:
        for path in buttons:
            forged = client.post(
                path, data={"archive": "1", "digest": "x", "printer": "Klipper", "csrf": "forged"}
            )
            assert forged.status_code == 403 and forged.json()["field"] == "csrf", (path, forged.text)
        csrf = csrf_of(client.get("/").text)
        bad = client.post("/page/prints/retry", data={"archive": "x1", "csrf": csrf})
        assert bad.status_code == 422 and bad.json()["field"] == "archive"
        nobody = client.post("/page/gcode/preview", data={"printer": "Nobody", "csrf": csrf})
        assert nobody.status_code == 422 and nobody.json()["field"] == "printer"
        unseen = client.post("/page/gcode/apply", data={"printer": "Klipper", "csrf": csrf})
        assert unseen.status_code == 303  # applying what was never previewed: refused, and the page says so
        assert "preview the G-code sync of Klipper first" in client.get("/").text
        assert not (page_farm.printer.gcodes / "benchy.gcode").exists()
    after = len(page_farm.farm.inventree.log.writes()) + len(page_farm.farm.bambuddy.log.writes())
    assert after == writes_before


def test_the_filament_plan_is_applied_only_as_shown(page_farm: PageFarm) -> None:
    farm = page_farm.farm
    with signed_in(page_farm) as client:
        html = client.get("/").text
        digest = re.search(r'name="digest" value="([0-9a-f]+)"', html)
        assert digest, "the page shows no plan to apply"
        farm.bambuddy.state.add_usage(1, 12.5, print_name="sneaked in")  # the plan changes behind the page
        farm.inventree.log.clear()
        farm.bambuddy.log.clear()
        refused = client.post("/page/filament/apply", data={"digest": digest.group(1), "csrf": csrf_of(html)})
        assert refused.status_code == 303
        assert farm.inventree.log.writes() == [] and farm.bambuddy.log.writes() == []
        html = client.get("/").text
        assert "the filament plan changed" in html and "sneaked in" not in html
        new = re.search(r'name="digest" value="([0-9a-f]+)"', html)
        assert new and new.group(1) != digest.group(1)
        applied = client.post("/page/filament/apply", data={"digest": new.group(1), "csrf": csrf_of(html)})
        assert applied.status_code == 303
        html = client.get("/").text
        flash = re.search(r'<p class="flash[^>]*>([^<]*)', html)
        assert flash and flash.group(1).startswith("Filament plan applied"), flash
        assert farm.inventree.log.writes(), "the plan shown was not applied"
        assert "Nothing to write: both systems agree." in html, (
            "the page still shows a plan after applying it"
        )


@pytest.fixture
def open_page(sim_farm: SimFarm, fake_moonraker: Any, tmp_path: Path) -> Iterator[PageFarm]:
    yield from serve_page(sim_farm, fake_moonraker, tmp_path, service_api_token="")


def test_without_a_token_the_page_says_anyone_can_use_it(open_page: PageFarm) -> None:
    with httpx.Client(base_url=open_page.url) as client:
        page = client.get("/")
        assert "Open to anyone on the network." in page.text and "SERVICE_API_TOKEN" in page.text
        assert all(s in page.text for s in SECTIONS) and "Sign out" not in page.text
        forged = client.post("/page/gcode/preview", data={"csrf": "forged"})
        assert forged.status_code == 403  # CSRF still holds without a token
        preview = client.post("/page/gcode/preview", data={"printer": "Klipper", "csrf": csrf_of(page.text)})
        assert preview.status_code == 303
        assert "G-code preview: Klipper" in client.get("/").text
