"""The operator's page in a real browser: headless Chromium, driven by chromedriver over plain W3C WebDriver HTTP,
signs in to a ``farmsync serve`` app over the simulated farm (tests/fixtures/page.py), reads each section, and
presses each button (retry a parked print, apply the filament plan, preview then apply a G-code sync) end to end
against the simulator. No console error and no request to anything but farmsync are allowed; the page must fit a
390 px phone. Screenshots go to tests/output/screens/ for a person to look at."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.page import FAILED_PRINT, PAGE_TOKEN, PageFarm, free_port, wait_for

pytestmark = pytest.mark.slow
SCREENS = Path(__file__).resolve().parents[1] / "output" / "screens"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed: apt-get install -y --no-install-recommends {package}", pytrace=False
        )
    return path


class WebDriver:
    """Just enough W3C WebDriver over HTTP (chromedriver) for a page, a script, a screenshot and the logs."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        self.session = ""

    def start(self, profile: Path) -> None:
        options = {
            "binary": require("chromium", "chromium"),
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"],
        }
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})[
            "sessionId"
        ]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise AssertionError(f"WebDriver {method} {path}: {value}")
        return value

    def command(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        found = self.command("POST", "/element", {"using": "css selector", "value": css})
        return str(next(iter(found.values())))

    def click(self, css: str) -> None:
        """Click like a person (the form submits, the page navigates; chromedriver waits for the load)."""
        self.command("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        self.command("POST", f"/element/{self.find(css)}/value", {"text": text})

    def accept_confirm(self) -> str:
        """Accept the page's confirm() step, returning its words."""
        deadline = time.monotonic() + 10
        while True:
            response = self.http.get(f"/session/{self.session}/alert/text")
            if response.status_code == 200:
                words = str(response.json()["value"])
                self.command("POST", "/alert/accept", {})
                return words
            if time.monotonic() > deadline:
                raise AssertionError("no confirm dialog appeared")
            time.sleep(0.05)

    def wait_for_text(self, css: str, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = self.script(f"var e = document.querySelector({css!r}); return e ? e.textContent : null")
            if found and text in found:
                return str(found)
            if time.monotonic() > deadline:
                raise AssertionError(f"{css} never said {text!r} (it says {found!r})")
            time.sleep(0.1)

    def requests(self) -> list[tuple[str, str]]:
        """(URL, the URL of the document that asked) of every request since the last call (Chrome's performance
        log: its Network.requestWillBeSent events)."""
        seen = []
        for entry in self.command("POST", "/se/log", {"type": "performance"}):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                params = message["params"]
                seen.append((params["request"]["url"], params.get("documentURL", "")))
        return seen

    def script(self, source: str) -> Any:
        return self.command("POST", "/execute/sync", {"script": source, "args": []})

    def console(self, settle: float = 0.0) -> list[dict[str, Any]]:
        """Browser log entries since the last call (chromedriver's goog:loggingPrefs log), gathered for ``settle``
        seconds: Chromium asks for /favicon.ico only after the load event, so its error comes late."""
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + settle
        while True:
            entries += self.command("POST", "/se/log", {"type": "browser"})
            if time.monotonic() >= deadline:
                return entries
            time.sleep(0.1)

    def full_page_png(self, width: int) -> bytes:
        """A screenshot of the whole page at this window width (the window grows to the page's height)."""
        self.command("POST", "/window/rect", {"width": width, "height": 900})
        chrome_height = self.script("return window.outerHeight - window.innerHeight")
        height = self.script("return document.documentElement.scrollHeight")
        self.command("POST", "/window/rect", {"width": width, "height": height + chrome_height})
        return base64.b64decode(self.command("GET", "/screenshot"))

    def close(self) -> None:
        if self.session:
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                self.command("DELETE", "")
        self.http.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromedriver = require("chromedriver", "chromium-driver")
    port = free_port()
    with (tmp_path / "chromedriver.log").open("wb") as log:
        proc = subprocess.Popen(
            [chromedriver, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    driver = WebDriver(f"http://127.0.0.1:{port}")
    try:
        wait_for(f"http://127.0.0.1:{port}/status")
        driver.start(tmp_path / "chromium-profile")
        yield driver
    finally:
        driver.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def screenshot(browser: WebDriver, name: str, width: int) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    path.write_bytes(browser.full_page_png(width))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000
    return path


class Watch:
    """What the browser did besides what the test asked: console errors and requests to other hosts."""

    def __init__(self, browser: WebDriver, origin: str) -> None:
        self.browser, self.origin = browser, origin
        self.errors: list[Any] = []
        self.foreign: list[str] = []
        self.requests = 0
        browser.requests()  # what the browser did before (its own new-tab page) is not the page's doing

    def check(self, settle: float = 0.5) -> None:
        self.errors += [e for e in self.browser.console(settle=settle) if e["level"] == "SEVERE"]
        for url, document in self.browser.requests():
            if not document.startswith(self.origin + "/") and not url.startswith(("http:", "https:")):
                continue  # the browser's own pages (chrome://...), not something this page asked for
            self.requests += 1
            if not (url.startswith(self.origin + "/") or url.startswith("data:")):
                self.foreign.append(f"{url} (asked by {document})")
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.foreign == [], f"the page asked another host: {self.foreign}"


def flash(browser: WebDriver) -> str:
    return str(browser.script("var e = document.querySelector('.flash'); return e ? e.textContent : ''"))


def test_sign_in_read_every_section_and_press_every_button(page_farm: PageFarm, browser: WebDriver) -> None:
    url, farm = page_farm.url, page_farm.farm
    watch = Watch(browser, url)
    browser.open(f"{url}/")
    assert browser.script("return document.querySelectorAll('section h2').length") == 1  # sign in only
    browser.type("#token", PAGE_TOKEN)
    browser.click(".login button")
    browser.wait_for_text("section h2", "Prints")
    watch.check()
    page = browser.script(
        """
        const text = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent.trim());
        return {
          sections: text("section h2"),
          prints: text(".prints .name"),
          failures: text(".failures strong"),
          thumbs: [...document.querySelectorAll("img.thumb")].map((i) => i.complete && i.naturalWidth > 0),
          links: [...document.querySelectorAll(".links a")].map((a) => a.textContent.trim()),
          spools: text("table.spools tbody tr td:first-child"),
          states: text("table.spools .badge"),
          printers: text(".printers strong"),
          charts: document.querySelectorAll("svg.chart").length,
          plan: text(".plan li").length,
          banner: document.querySelectorAll(".banner").length,
          cookie: document.cookie,
        };
        """
    )
    assert page["sections"] == ["Prints → InvenTree", "Filament", "G-code on printers", "Last 30 days"]
    assert "3DBenchy" in page["prints"] and page["failures"] == [FAILED_PRINT]
    assert page["thumbs"] and all(page["thumbs"]), page["thumbs"]
    assert {"stock item", "Bambuddy archive", "3DBenchy"} <= set(page["links"])
    assert any("PLA Black" in s for s in page["spools"]) and "loaded" in page["states"]
    assert "in storage" in page["states"], page["states"]
    assert page["printers"] == ["Klipper"] and page["charts"] == 3 and page["plan"] > 0
    assert page["banner"] == 0 and page["cookie"] == ""  # HttpOnly: the script cannot read the session
    hover = browser.script("return document.querySelector('.prints time').getAttribute('title')")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", hover)
    print(f"\noperator page screenshots: {screenshot(browser, 'page-desktop', 1280)}")

    # Retry the parked print: it becomes stock in InvenTree and leaves the failures list
    batches_before = {i["batch"] for i in farm.inventree.state.stock_items.values()}
    browser.click(".failures button")
    assert "Retried " + FAILED_PRINT in browser.wait_for_text(".flash", "Retried")
    assert "1 synced" in flash(browser), flash(browser)
    assert browser.script("return document.querySelectorAll('.failures li').length") == 0
    assert FAILED_PRINT in browser.script("return document.querySelector('.prints .name').textContent")
    assert len({i["batch"] for i in farm.inventree.state.stock_items.values()} - batches_before) == 1
    watch.check()

    # Apply the filament plan shown (after the confirm step): InvenTree's stock goes down
    grams_before = sum(i["quantity"] for i in farm.inventree.state.stock_items.values())
    farm.inventree.log.clear()
    browser.click("#filament button.primary")
    assert "Write these" in browser.accept_confirm()
    browser.wait_for_text(".flash", "Filament plan applied")
    assert farm.inventree.log.find(method="POST", path="/api/stock/remove/")
    assert sum(i["quantity"] for i in farm.inventree.state.stock_items.values()) < grams_before
    assert "Nothing to write" in browser.script("return document.querySelector('#filament').textContent")
    watch.check()

    # G-code: preview (nothing is copied), then apply (the files land on the printer)
    browser.click("#gcode form[action='/page/gcode/preview'] button")
    browser.wait_for_text(".flash", "G-code preview: Klipper: dry run: 2 to upload")
    assert not (page_farm.printer.gcodes / "benchy.gcode").exists()
    browser.click("#gcode button.primary")
    browser.accept_confirm()
    browser.wait_for_text(".flash", "G-code synced: Klipper: 2 uploaded")
    assert (page_farm.printer.gcodes / "benchy.gcode").read_bytes() == (
        page_farm.master / "benchy.gcode"
    ).read_bytes()
    gcode = browser.script("return document.querySelector('#gcode').textContent")
    assert "2 in step · 0 to upload · 0 to delete" in gcode and "synced" in gcode
    watch.check()

    print(f"after the buttons: {screenshot(browser, 'page-desktop-after', 1280)}")

    # A phone: everything fits 390 px, nothing scrolls sideways
    phone = screenshot(browser, "page-390px", 390)
    overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"at 390 px the page scrolls sideways {overflow} px ({phone})"
    print(f"phone screenshot: {phone}")

    browser.click("header button")  # sign out
    browser.wait_for_text("section h2", "Sign in")  # a click's navigation may finish after click returns
    assert browser.script("return document.querySelectorAll('#token').length") == 1
    watch.check()
    assert watch.requests > 5  # the performance log does see the page's requests

    # the console check is only worth something if console errors do reach the log
    browser.script("console.error('farmsync console probe')")
    assert any("farmsync console probe" in entry["message"] for entry in browser.console())


def test_a_hostile_print_name_is_shown_as_text(page_farm: PageFarm, browser: WebDriver) -> None:
    name = '<img src=x onerror="document.title=1">Evil & co'
    page_farm.farm.bambuddy.state.add_print(2, print_name=name, usage=False)
    with httpx.Client(base_url=page_farm.url, headers={"X-Service-Token": PAGE_TOKEN}, timeout=60) as client:
        assert client.post("/sync/backfill").status_code == 200
    watch = Watch(browser, page_farm.url)
    browser.open(f"{page_farm.url}/")
    browser.type("#token", PAGE_TOKEN)
    browser.click(".login button")
    browser.wait_for_text("section h2", "Prints")
    assert name in browser.script("return document.querySelector('.prints .name').textContent")
    assert browser.script("return document.title") == "farmsync"
    watch.check()
