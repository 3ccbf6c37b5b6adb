"""Tell an operator when something needs a person: a print parked, a spool conflict, a printer's G-code failing.

One outbound webhook (NOTIFY_URL) in one of three payload styles (NOTIFY_STYLE):

- ``ntfy``: POST the message as the text body, with ``Title``, ``Priority`` and ``Tags`` headers (a non-ASCII
  title is sent RFC 2047 encoded, which ntfy decodes);
- ``homeassistant``: POST JSON ``{"event", "title", "message", "priority", "tags", "key"}`` to a Home Assistant
  webhook trigger (``/api/webhook/<id>``);
- ``slack``: POST JSON ``{"text": ...}``, which Slack, Mattermost and Discord's ``/slack`` endpoints accept.

**Once per event.** Each event has a key (``parked:run:12``, ``conflict:<tag>:<hash>``,
``gcode-failed:<printer>:<streak>``) claimed in the store's ``notify`` namespace before sending and marked done
after, so a restart or a second instance does not send it again. A failed send releases the claim at once: the
next run tries again (a parked print is re-read from the store, a conflict or a failing printer is still there).
Sending never fails the sync that found the event: each request has NOTIFY_TIMEOUT_SECONDS, the first failure
stops this run's remaining sends (the receiver is down; they wait for the next run), and errors are logged at
WARNING naming only the URL's scheme and host, since the rest of it (an ntfy topic, a webhook id) is the secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from farmsync import metrics
from farmsync.errors import InputError, StoreError
from farmsync.logs import RedactingFilter, action, get_logger, register_secrets
from farmsync.security import secret_parts
from farmsync.settings import Settings
from farmsync.store import AsyncStore, State, cursors

if TYPE_CHECKING:
    from farmsync.filament.match import Conflict

log = get_logger("notify")

NAMESPACE = "notify"  # one claim per event: done = notified
STREAK_STREAM = "notify-streak:gcode:"  # + printer name: a cursor whose value names the current streak
LEGACY_STREAKS = "notify-streak"  # values written before streaks were cursors: when a streak began (seconds)
MAX_PER_RUN = 20
"""At most this many events are sent by one run; the rest follow on later runs (a backlog never floods)."""
MARKS_READ = 2000
TEXT_LIMIT = 600


@dataclass(frozen=True)
class Event:
    """One thing to tell a person. ``key`` names it for the once-only mark; ``kind`` is one of NOTIFY_EVENTS."""

    kind: str
    key: str
    title: str
    message: str
    priority: str = "default"  # ntfy's words: min, low, default, high, urgent
    tags: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one call sent, and what it left for the next run."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: int = 0


# --- the URL is a secret -------------------------------------------------------------------------------------
# secret_parts (what of the URL a log line must not show) lives in farmsync.security, so the process's
# services register it without importing this module.


def where(url: str) -> str:
    """What a log line may say about the target: scheme, host and port (never user, path or query)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/…"


_httpx_filtered = False


def _protect_httpx_logs() -> None:
    """httpx logs every request's URL (at INFO); run those lines through the same redaction as farmsync's."""
    global _httpx_filtered
    if not _httpx_filtered:
        logging.getLogger("httpx").addFilter(RedactingFilter())
        _httpx_filtered = True


# --- payloads --------------------------------------------------------------------------------------------------


def _header_text(text: str) -> str:
    """A header value: one line, and RFC 2047 (UTF-8, base64) when it is not plain ASCII."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def request_for(style: str, event: Event) -> dict[str, Any]:
    """The keyword arguments of ``httpx.post`` for one event in one payload style."""
    if style == "ntfy":
        headers = {
            "Title": _header_text(event.title),
            "Priority": event.priority,
            "Content-Type": "text/plain; charset=utf-8",
        }
        if event.tags:
            headers["Tags"] = ",".join(event.tags)
        return {"content": event.message.encode("utf-8"), "headers": headers}
    if style == "homeassistant":
        return {
            "json": {
                "event": event.kind,
                "key": event.key,
                "title": event.title,
                "message": event.message,
                "priority": event.priority,
                "tags": list(event.tags),
            }
        }
    return {"json": {"text": f"*{event.title}*\n{event.message}"}}


# --- sending ----------------------------------------------------------------------------------------------------


def enabled(settings: Settings, kind: str) -> bool:
    return settings.notifies(kind)


async def post(settings: Settings, event: Event) -> None:
    """Send one event now. Raises NotifyFailed with a message that carries no part of the URL but its host."""
    import httpx

    from farmsync.clients.http import tls_context_for

    url = settings.notify_url.get_secret_value()
    register_secrets(secret_parts(url))
    _protect_httpx_logs()
    try:
        async with httpx.AsyncClient(
            timeout=settings.notify_timeout_seconds, follow_redirects=False, verify=tls_context_for(url)
        ) as client:
            response = await client.post(url, **request_for(settings.notify_style.value, event))
    except httpx.TimeoutException:
        raise NotifyFailed(f"{where(url)} timed out after {settings.notify_timeout_seconds:g} s") from None
    except Exception as exc:  # any failure, named by its type only: its text may quote the URL
        raise NotifyFailed(f"{where(url)} could not be reached ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise NotifyFailed(f"{where(url)} answered HTTP {response.status_code}")


class NotifyFailed(Exception):
    """A notification did not go out (its text is safe to log)."""


async def deliver(settings: Settings, store: AsyncStore, events: Sequence[Event]) -> Outcome:
    """Send each event not notified before, once across restarts and instances; never raises.

    Keys already marked are read in one listing first, so a run with nothing new costs one store read.
    """
    outcome = Outcome()
    events = [e for e in events if enabled(settings, e.kind)]
    if not events:
        return outcome
    try:
        done = {r.key for r in await store.list(NAMESPACE, State.DONE, MARKS_READ)}
    except StoreError as exc:
        action(log, "notifications skipped: store unavailable", logging.WARNING, error=str(exc)[:200])
        return outcome
    fresh = [e for e in dict((e.key, e) for e in events).values() if e.key not in done]
    lease = settings.notify_timeout_seconds + 30
    for index, event in enumerate(fresh):
        if len(outcome.sent) + len(outcome.failed) >= MAX_PER_RUN or outcome.failed:
            outcome.deferred = len(fresh) - index
            break
        try:
            claim = await store.claim(NAMESPACE, event.key, lease_seconds=lease)
            if not claim.held:
                continue
            try:
                await post(settings, event)
            except NotifyFailed as exc:
                await store.release(claim, str(exc), max_attempts=1_000_000, retry_after=0)
                outcome.failed.append(event.key)
                metrics.notification(event.kind, "failed")
                action(
                    log,
                    "notification failed; retried next run",
                    logging.WARNING,
                    event=event.key,
                    style=settings.notify_style.value,
                    error=str(exc),
                )
                continue
            await store.complete(claim, {"at": time.time(), "title": event.title[:120]})
        except StoreError as exc:
            action(log, "notification not recorded: store unavailable", logging.WARNING, error=str(exc)[:200])
            break
        outcome.sent.append(event.key)
        metrics.notification(event.kind, "sent")
        action(log, "notification sent", event=event.key, style=settings.notify_style.value)
    return outcome


async def send_test(settings: Settings) -> dict[str, Any]:
    """``farmsync notify --test`` and ``POST /notify/test``: one message now, no store, no once-only mark."""
    if not settings.notify_url.get_secret_value():
        raise InputError(
            "notifications are off (NOTIFY_URL is not set)",
            field="NOTIFY_URL",
            expected="the webhook URL to notify",
            status_code=409,
        )
    event = Event(
        "test",
        "test",
        "farmsync: test notification",
        "farmsync can reach you here: parked prints, spool conflicts and failing G-code syncs will be sent.",
        priority="low",
        tags=("white_check_mark",),
    )
    target = where(settings.notify_url.get_secret_value())
    try:
        await post(settings, event)
    except NotifyFailed as exc:
        return {"sent": False, "style": settings.notify_style.value, "target": target, "error": str(exc)}
    return {"sent": True, "style": settings.notify_style.value, "target": target}


def _clip(text: str | None, limit: int = TEXT_LIMIT) -> str:
    """One line of at most ``limit`` characters (an upstream error may span lines)."""
    from farmsync.clients.inventree import truncate  # here, not at import: services import this module

    return truncate(" ".join((text or "").split()), limit)


# --- the three events ----------------------------------------------------------------------------------------


def never_raises(function: Callable[..., Awaitable[Outcome]]) -> Callable[..., Awaitable[Outcome]]:
    """The sync that found an event must not fail because telling someone about it did."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Outcome:
        try:
            return await function(*args, **kwargs)
        except Exception as exc:
            action(log, "notifications skipped", logging.WARNING, error=type(exc).__name__)
            return Outcome()

    return wrapper


@never_raises
async def parked_prints(settings: Settings, store: AsyncStore, names: dict[str, str | None]) -> Outcome:
    """Every parked print in the store (``names``: print names by ``run:12`` this run saw) not notified yet."""
    if not enabled(settings, "parked"):
        return Outcome()
    events: list[Event] = []
    try:
        for namespace in ("run", "archive"):
            for record in await store.list(namespace, State.PARKED, 500):
                label = f"{namespace}:{record.key}"
                name = names.get(label)
                what = f"{name!r} ({namespace} {record.key})" if name else f"print {namespace} {record.key}"
                events.append(
                    Event(
                        "parked",
                        f"parked:{label}",
                        f"farmsync: print parked: {_clip(name or label, 60)}",
                        f"{what} failed {record.attempts} times and is parked: {_clip(record.last_error)}. "
                        "Retry it with `farmsync backfill --retry-now` once the cause is fixed.",
                        priority="high",
                        tags=("warning", "package"),
                    )
                )
    except StoreError as exc:
        action(log, "notifications skipped: store unavailable", logging.WARNING, error=str(exc)[:200])
        return Outcome()
    return await deliver(settings, store, events)


def conflict_key(conflict: Conflict) -> str:
    """``conflict:<tag>:<hash>``: the same conflict keeps its key; a changed one (another item, another
    spool) is a new event."""
    digest = hashlib.sha256(
        repr((conflict.kind, conflict.key, sorted(conflict.stock_items), sorted(conflict.spools))).encode(
            "utf-8"
        )
    ).hexdigest()[:12]
    return f"conflict:{conflict.key}:{digest}"


@never_raises
async def spool_conflicts(settings: Settings, store: AsyncStore, conflicts: Iterable[Conflict]) -> Outcome:
    """Each filament conflict not notified yet."""
    if not enabled(settings, "conflict"):
        return Outcome()
    events = [
        Event(
            "conflict",
            conflict_key(c),
            "farmsync: spool conflict",
            f"{_clip(c.detail)}. Batches: {', '.join(c.batches) or '-'}. Nothing is written for these spools "
            "until it is resolved in InvenTree or Bambuddy.",
            tags=("warning", "spool_of_thread"),
        )
        for c in conflicts
    ]
    return await deliver(settings, store, events)


@never_raises
async def gcode_failures(settings: Settings, store: AsyncStore, printers: Iterable[Any]) -> Outcome:
    """Printers whose G-code run failed (``status == "failed"``): once per run of consecutive failures.

    A printer's streak starts at its first failed run and ends at its next run that reached it; each streak
    is one event, so a printer that stays offline all night sends one message, not one per tick."""
    if not enabled(settings, "gcode_failed"):
        return Outcome()
    events: list[Event] = []
    try:
        for printer in printers:
            status = getattr(printer.status, "value", printer.status)
            streak = await _gcode_streak(store, printer.name, failing=status == "failed")
            if streak is not None:
                events.append(_gcode_event(printer, streak))
    except StoreError as exc:
        action(log, "notifications skipped: store unavailable", logging.WARNING, error=str(exc)[:200])
        return Outcome()
    return await deliver(settings, store, events)


async def _gcode_streak(store: AsyncStore, name: str, *, failing: bool) -> str | None:
    """The id of the printer's current streak of failures, starting one if this run is its first; None if reached.

    The streak lives in a cursor, so starting or ending one is a compare-and-set: two instances that see the
    same first failure agree on one id (the loser of the race re-reads the winner's), and every streak gets an
    id no earlier one had (``<seconds>.<version>``), even when a printer fails, recovers and fails again within
    one second. A streak recorded as a plain value by an earlier version keeps its id (``<seconds>``), so an
    upgrade does not announce a failure that was already announced."""

    def decide(version: int | None, value: Any) -> Any:
        if version is None:  # no cursor yet: the earlier version's plain value (seconds), if any
            current = str(int(value)) if isinstance(value, int | float) else None
        else:
            current = value.get("since") if isinstance(value, dict) else None
            if failing == (current is not None):
                return cursors.UNCHANGED  # the streak goes on, or there is none to end
        since = (current or f"{int(time.time())}.{(version or 0) + 1}") if failing else None
        return {"since": since}

    written = await store.run(
        cursors.update,
        store.sync,
        STREAK_STREAM + name,
        decide,
        what=f"the failure streak of {name}",
        legacy=(LEGACY_STREAKS, f"gcode:{name}"),
        attempts=5,
    )
    return written.get("since") if isinstance(written, dict) else None


def _gcode_event(printer: Any, since: str) -> Event:
    failures = list(getattr(printer, "failures", []))
    if printer.error:
        detail = printer.error
    elif failures:
        first = failures[0]
        path = getattr(first, "path", "?")
        detail = f"{len(failures)} file(s) failed, first {path}: {getattr(first, 'error', None) or 'failed'}"
    else:
        detail = "the run failed"
    return Event(
        "gcode_failed",
        f"gcode-failed:{printer.name}:{since}",
        f"farmsync: G-code sync failed on {_clip(printer.name, 60)}",
        f"{printer.name} ({printer.kind or 'printer'}): {_clip(detail)}. You will hear again only after it "
        "has synced once.",
        priority="high",
        tags=("warning", "printer"),
    )
