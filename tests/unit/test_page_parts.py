"""The operator page's small parts: relative times, colours, charts, thumbnails kept small, the plan digest and the
session cookie's signature."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from farmsync.filament.page import plan_digest
from farmsync.filament.writes import Write
from farmsync.prints.page import (
    NO_THUMB_NS,
    THUMB_MAX_BYTES,
    THUMB_NS,
    archive_web_url,
    keep_thumbnail,
)
from farmsync.web import charts
from farmsync.web.dashboard import ago, colour


def test_relative_times_read_like_words() -> None:
    now = 1_000_000.0
    assert ago(None) == "never"
    assert ago(now - 20, now) == "just now"
    assert ago(now - 125, now) == "2 min ago"
    assert ago(now - 3 * 3600, now) == "3 h ago"
    assert ago(now - 86400, now) == "1 day ago" and ago(now - 5 * 86400, now) == "5 days ago"


def test_only_real_colours_reach_the_style_attribute() -> None:
    assert colour("FF6A13FF") == "#ff6a13"
    assert colour("#0a2989") == "#0a2989"
    assert colour("red;background:url(http://x)") is None and colour(None) is None


def test_charts_are_plain_svg_with_escaped_labels() -> None:
    today = dt.date(2026, 12, 6)
    days = charts.days_back(today, 30)
    assert len(days) == 30 and days[-1] == today and days[0] == dt.date(2026, 11, 7)
    svg = charts.stacked_days("Grams", days, {"<PLA>": {today: 12.5}, "PETG": {today: 3}}, "g")
    assert svg.startswith("<svg") and "&lt;PLA&gt;" in svg and "<PLA>" not in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert svg.count("<rect") == 2
    bars = charts.horizontal("Bytes", [("Klipper", 2048.0, "2.0 KiB"), ("<b>", 1.0, "1 B")])
    assert "&lt;b&gt;" in bars and bars.count("<rect") == 2
    assert charts.nice_max(0) == 1 and charts.nice_max(7) == 10 and charts.nice_max(130) == 200
    assert charts.size_text(512) == "512 B" and charts.size_text(3 * 1024 * 1024) == "3.0 MiB"


def test_the_archive_link_is_bambuddys_web_page_not_its_api() -> None:
    assert archive_web_url("http://bb:8000/api/v1", 12) == "http://bb:8000/archives/12"
    assert archive_web_url("http://bb:8000/", 3) == "http://bb:8000/archives/3"


@dataclass
class Thumb:
    data: bytes
    content_type: str


class Values:
    """The store's value API, in memory."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}

    async def put_value(self, namespace: str, key: str, value: Any) -> None:
        self.values[(namespace, key)] = value

    async def get_value(self, namespace: str, key: str) -> Any:
        return self.values.get((namespace, key))


async def test_only_small_plain_images_are_kept() -> None:
    store = Values()
    assert await keep_thumbnail(store, "small", 1, Thumb(b"\x89PNG" + b"0" * 100, "image/png"))  # type: ignore[arg-type]
    assert store.values[(THUMB_NS, "small")]["type"] == "image/png"
    big = Thumb(b"\x89PNG" + b"0" * THUMB_MAX_BYTES, "image/png")
    assert not await keep_thumbnail(store, "big", 2, big)  # type: ignore[arg-type]
    assert (THUMB_NS, "big") not in store.values and "none" in store.values[(NO_THUMB_NS, "2")]
    assert not await keep_thumbnail(store, "svg", 3, Thumb(b"<svg/>", "image/svg+xml"))  # type: ignore[arg-type]
    assert (THUMB_NS, "svg") not in store.values and "none" in store.values[(NO_THUMB_NS, "3")]


async def test_a_run_without_a_picture_never_hides_another_runs_picture_of_the_same_part() -> None:
    # Found by CI: two runs of one part synced at once, the second archive's picture too large; its "none" landed
    # after the first run's picture, and the page's <img> for the part answered 404.
    store = Values()
    assert await keep_thumbnail(store, "BMB-1", 10, Thumb(b"\x89PNG" + b"0" * 100, "image/png"))  # type: ignore[arg-type]
    big = Thumb(b"\x89PNG" + b"0" * THUMB_MAX_BYTES, "image/png")
    assert not await keep_thumbnail(store, "BMB-1", 11, big)  # type: ignore[arg-type]
    assert store.values[(THUMB_NS, "BMB-1")]["data"]


def test_the_plan_digest_is_the_set_of_writes() -> None:
    one = Write(
        system="inventree", method="POST", path="/api/stock/remove/", body={"items": [1]}, purpose="a"
    )
    two = Write(
        system="bambuddy", method="PATCH", path="/api/v1/inventory/spools/3", body={"x": 1}, purpose="b"
    )
    assert plan_digest([one, two]) == plan_digest([two, one])
    changed = two.model_copy(update={"body": {"x": 2}})
    assert plan_digest([one, changed]) != plan_digest([one, two])
    assert plan_digest([one]) != plan_digest([one, two])
