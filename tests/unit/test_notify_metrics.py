"""Notification payloads and URL handling, metric recording, and what importing them costs a cold start."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from farmsync import metrics
from farmsync.errors import ConfigError
from farmsync.notify import Event, request_for, secret_parts, where
from farmsync.settings import load_settings

EVENT = Event(
    "parked",
    "parked:run:7",
    "farmsync: print parked: Bénchy 🚢",
    "Bénchy failed\r\nX-Injected: 1",
    "high",
    ("warning",),
)


def test_ntfy_sends_text_with_title_priority_and_tags_headers() -> None:
    request = request_for("ntfy", EVENT)
    assert request["content"] == EVENT.message.encode("utf-8")
    headers = request["headers"]
    assert headers["Priority"] == "high" and headers["Tags"] == "warning"
    title = headers["Title"]
    assert title.isascii() and title.startswith("=?UTF-8?B?") and title.endswith("?=")
    assert base64.b64decode(title[10:-2]).decode("utf-8") == EVENT.title
    plain = request_for("ntfy", Event("x", "k", "line one\r\nInjected: yes", "m"))["headers"]["Title"]
    assert "\r" not in plain and "\n" not in plain


def test_home_assistant_and_slack_payloads() -> None:
    body = request_for("homeassistant", EVENT)["json"]
    assert body == {
        "event": "parked",
        "key": "parked:run:7",
        "title": EVENT.title,
        "message": EVENT.message,
        "priority": "high",
        "tags": ["warning"],
    }
    assert request_for("slack", EVENT) == {"json": {"text": f"*{EVENT.title}*\n{EVENT.message}"}}


def test_the_url_is_masked_to_its_host_and_its_secret_parts_are_known() -> None:
    url = "https://user:pw@ha.lan:8123/api/webhook/farm-7Hq2x9?token=abcdef"
    assert where(url) == "https://ha.lan:8123/…"
    parts = secret_parts(url)
    assert url in parts and "/api/webhook/farm-7Hq2x9" in parts and "farm-7Hq2x9" in parts
    assert "token=abcdef" in parts
    assert "webhook" not in parts and "api" not in parts  # plain words would redact ordinary log text
    assert secret_parts("") == []


def test_notify_settings_refuse_bad_values_without_echoing_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("/dev/null", notify_url="ntfy.sh/secret-topic-99")
    assert "secret-topic-99" not in str(caught.value.problems)
    assert any("NOTIFY_URL" in p and "http" in p for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        load_settings("/dev/null", notify_events="parked,fire")
    assert any("NOTIFY_EVENTS" in p and "fire" in p for p in caught.value.problems)
    with pytest.raises(ConfigError):
        load_settings("/dev/null", notify_style="email")
    settings = load_settings("/dev/null", notify_url="https://ntfy.sh/t-123456", notify_style="slack")
    assert settings.masked()["NOTIFY_URL"] == "********" and settings.masked()["NOTIFY_STYLE"] == "slack"


def test_recording_does_not_import_prometheus_client() -> None:
    """Features record into plain dicts: the 140 ms import is paid by the first scrape, not a cold start."""
    code = (
        "import sys\n"
        "import farmsync.services, farmsync.prints.tick, farmsync.filament.run, farmsync.gcode.service\n"
        "from farmsync import metrics\n"
        "metrics.print_outcome('synced'); metrics.run_duration('gcode', 1.0)\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_durations_fill_cumulative_buckets() -> None:
    metrics.reset()
    for seconds in (0.05, 0.7, 0.7, 4000.0):
        metrics.run_duration("print_tick", seconds)
    metrics.grams_subtracted(12.5, None)
    metrics.grams_subtracted(0, "PLA")  # nothing subtracted: no series
    text = metrics.exposition(store_up=True)[0].decode()
    metrics.reset()
    samples = {
        (s.name, s.labels.get("le"), s.labels.get("material")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("farmsync_run_duration_seconds_bucket", "0.1", None)] == 1
    assert samples[("farmsync_run_duration_seconds_bucket", "1.0", None)] == 3
    assert samples[("farmsync_run_duration_seconds_bucket", "1800.0", None)] == 3
    assert samples[("farmsync_run_duration_seconds_bucket", "+Inf", None)] == 4
    assert samples[("farmsync_run_duration_seconds_sum", None, None)] == pytest.approx(4001.45)
    assert samples[("farmsync_filament_subtracted_grams_total", None, "unknown")] == 12.5
    assert not any(k[2] == "PLA" for k in samples)
