"""Logging: one line per action, JSON that Cloud Logging understands, or a readable line on a terminal.

Every record passes a redaction filter that replaces the configured secret values (tokens, keys, printer
passwords) wherever they appear, so a secret cannot reach a log even through an upstream's error text.
Keys of the action go in ``extra={"fields": {...}}`` and become top-level JSON fields.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

REDACTED = "[redacted]"
_secrets: set[str] = set()
trace_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("farmsync_trace", default=None)

LOGGER_NAME = "farmsync"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values that must never appear in a log line (shorter than 4 characters would redact noise)."""
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Render the message once, scrub secrets from it and from structured fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = _redact_value(fields)
        return True


SEVERITY = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}


class JsonFormatter(logging.Formatter):
    """Cloud Logging's structured format: severity, message, time, trace and the action's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        trace = trace_context.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  prints  synced run  run=12 part=4``: readable in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        name = record.name.removeprefix(f"{LOGGER_NAME}.")
        fields = getattr(record, "fields", None) or {}
        tail = "  ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{stamp} {record.levelname:<7} {name:<8} {record.getMessage()}" + (
            f"  {tail}" if tail else ""
        )
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def trace_from_headers(headers: Mapping[str, str], project: str | None) -> str | None:
    """Cloud Logging's trace name from ``X-Cloud-Trace-Context`` or W3C ``traceparent``, if the request has one."""
    trace_id = None
    cloud = headers.get("x-cloud-trace-context")
    if cloud:
        trace_id = cloud.split("/", 1)[0].strip()
    elif headers.get("traceparent"):
        parts = headers["traceparent"].split("-")
        trace_id = parts[1] if len(parts) >= 2 else None
    if not trace_id or not all(c in "0123456789abcdefABCDEF" for c in trace_id):
        return None
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


def configure(log_format: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install one handler on the farmsync logger (idempotent: a second call replaces the first)."""
    stream = stream or sys.stderr
    use_json = log_format == "json" or (
        log_format == "auto" and not getattr(stream, "isatty", lambda: False)()
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def action(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one action with its keys as structured fields."""
    logger.log(level, message, extra={"fields": fields})


class _ConsoleStream:
    """A file-like stream that prints through a rich console, so lines land above a live progress bar."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> int:
        line = text.rstrip("\n")
        if line:
            self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered: each write is printed at once."""


@contextlib.contextmanager
def through_console(console: Console) -> Iterator[None]:
    """While a rich progress bar is live, route the farmsync log handlers through its console.

    Writing to stderr directly would print onto the bar (``0:00:0205:49:09 WARNING …``); rich prints console
    output above a live display instead. The handlers get their own streams back afterwards.
    """
    logger = logging.getLogger(LOGGER_NAME)
    swapped = []
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            swapped.append((handler, handler.setStream(_ConsoleStream(console))))
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
