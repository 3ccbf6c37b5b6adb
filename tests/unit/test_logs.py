"""Logs: one JSON line per action that Cloud Logging understands, readable text on a terminal, no secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from farmsync import logs


@pytest.fixture
def capture() -> io.StringIO:
    stream = io.StringIO()
    yield stream
    logs.configure("text", "WARNING", stream=io.StringIO())


def test_json_lines_carry_severity_message_trace_and_fields(capture: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=capture)
    token = logs.trace_context.set("projects/p/traces/abc123")
    try:
        logs.action(logs.get_logger("prints"), "print synced", unit="run:7", part=4)
    finally:
        logs.trace_context.reset(token)
    entry = json.loads(capture.getvalue())
    assert entry["severity"] == "INFO" and entry["message"] == "print synced"
    assert entry["logging.googleapis.com/trace"] == "projects/p/traces/abc123"
    assert entry["unit"] == "run:7" and entry["part"] == 4 and entry["logger"] == "farmsync.prints"


def test_secrets_are_redacted_from_messages_fields_and_tracebacks(capture: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=capture)
    logs.register_secrets(["inv-0123456789abcdef", "bb_supersecretkey", None, "ab"])
    log = logs.get_logger("web")
    logs.action(
        log,
        "called with inv-0123456789abcdef",
        header="Token inv-0123456789abcdef",
        nested={"k": ["bb_supersecretkey"]},
    )
    try:
        raise RuntimeError("boom bb_supersecretkey")
    except RuntimeError as exc:
        log.error("failed", exc_info=exc)
    text = capture.getvalue()
    assert "inv-0123456789abcdef" not in text and "bb_supersecretkey" not in text
    assert text.count(logs.REDACTED) >= 4


def test_text_format_for_terminals(capture: io.StringIO) -> None:
    logs.configure("text", "INFO", stream=capture)
    logs.action(logs.get_logger("gcode"), "uploaded", printer="Ash", bytes=12)
    line = capture.getvalue().strip()
    assert "INFO" in line and "gcode" in line and "uploaded" in line and "printer=Ash" in line
    assert not line.startswith("{")


def test_levels_filter(capture: io.StringIO) -> None:
    logs.configure("json", "WARNING", stream=capture)
    logs.get_logger("x").info("quiet")
    logs.get_logger("x").log(logging.WARNING, "loud")
    assert [json.loads(line)["message"] for line in capture.getvalue().splitlines()] == ["loud"]


@pytest.mark.parametrize(
    "headers,project,expected",
    [
        (
            {"x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1"},
            "farm",
            "projects/farm/traces/105445aa7843bc8bf206b12000100000",
        ),
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            None,
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ({"x-cloud-trace-context": "not hex/1"}, "farm", None),
        ({}, "farm", None),
    ],
)
def test_trace_from_headers(headers, project, expected) -> None:
    assert logs.trace_from_headers(headers, project) == expected
