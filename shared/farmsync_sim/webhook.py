"""Bambuddy's outbound webhook: the generic notification payload, sent the way Bambuddy sends it.

Bambuddy has no webhook subsystem of its own; a "webhook" notification provider POSTs JSON whose values are all
strings, with no archive id. The only auth it can send is an ``Authorization`` header built from the provider's
``auth_header`` setting. :func:`fire_webhook` reproduces one delivery so the farmsync webhook route can be tested.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

import httpx

USER_AGENT = "Bambuddy/1.0 (+https://github.com/maziggy/bambuddy)"
APP_NAME = "Bambuddy"

EVENT_FOR_STATUS = {
    "completed": "print_complete",
    "failed": "print_failed",
    "aborted": "print_stopped",
    "stopped": "print_stopped",
    "cancelled": "print_stopped",
}

_SEP = "\u2501" * 17
# Bambuddy's default title/body templates for the print events ({name} placeholders).
TEMPLATES: dict[str, tuple[str, str]] = {
    "print_complete": (
        "\u2705 Print Completed",
        f"{_SEP}\n\U0001f5a8 {{printer}}\n\U0001f4c4 {{filename}}\n\u23f1 Time: {{duration}}\n"
        "\U0001f9f5 Filament: {filament_grams}g",
    ),
    "print_failed": (
        "\u274c Print Failed",
        f"{_SEP}\n\U0001f5a8 {{printer}}\n\U0001f4c4 {{filename}}\n\u23f1 Time: {{duration}}\n\u26a0 Reason: {{reason}}",
    ),
    "print_stopped": (
        "\u23f9 Print Stopped",
        f"{_SEP}\n\U0001f5a8 {{printer}}\n\U0001f4c4 {{filename}}\n\u23f1 Time: {{duration}}",
    ),
    "test": (
        "\U0001f514 Bambuddy Test",
        f"{_SEP}\nThis is a test notification. If you see this, notifications are working!",
    ),
}


def format_duration(seconds: int | float | None) -> str:
    """Bambuddy's duration text: ``"45m"``, ``"2h 0m"``, or ``"Unknown"``."""
    if seconds is None:
        return "Unknown"
    seconds = int(seconds)
    hours, minutes = seconds // 3600, (seconds % 3600) // 60
    return f"{hours}h {minutes}m" if hours > 0 else f"{minutes}m"


def format_grams(grams: float | str | None) -> str:
    if grams is None or grams == 0:
        return "Unknown"
    return grams if isinstance(grams, str) else f"{float(grams):.1f}"


def build_payload(
    event: str = "print_complete",
    *,
    printer: str = "Unknown",
    filename: str = "Unknown",
    duration: int | float | str | None = None,
    filament_grams: float | str | None = None,
    reason: str | None = None,
    title: str | None = None,
    message: str | None = None,
    field_title: str = "title",
    field_message: str = "message",
    **extra: Any,
) -> dict[str, str]:
    """The generic JSON body, every value a string. ``filename`` gets underscores turned into spaces.

    ``duration`` may be seconds (formatted like Bambuddy) or ready text; ``filament_grams`` a number or text.
    ``extra`` adds the sometimes-present keys (``progress``, ``filament_details``, ``finish_photo_url``, ...).
    The ``test`` event carries only title, message, timestamp and source.
    """
    variables = {
        "printer": str(printer),
        "filename": str(filename).replace("_", " "),
        "duration": duration if isinstance(duration, str) else format_duration(duration),
        "filament_grams": format_grams(filament_grams),
        "reason": str(reason) if reason else "Unknown",
    }
    template_title, template_body = TEMPLATES.get(event, (event.replace("_", " ").title(), ""))
    rendered_title = title if title is not None else template_title.format(**variables)
    rendered_body = message if message is not None else template_body.format(**variables)
    payload = {
        field_title or "title": rendered_title,
        field_message or "message": rendered_body,
        "timestamp": datetime.now().isoformat(),
        "source": APP_NAME,
    }
    if event == "test":
        return payload
    payload.update({"event": event, **variables, "app_name": APP_NAME})
    payload.update({key: str(value) for key, value in extra.items() if value is not None})
    return payload


IMAGE_MAX_BYTES = 2_500_000
"""Bambuddy attaches the finish photo as base64 ``image`` only up to this size (bambuddy-api.md §6)."""


def finish_photo(size: int, *, seed: int = 0) -> bytes:
    """A stand-in finish photo of exactly ``size`` bytes (a JPEG header, then filler that base64 can't shrink)."""
    header = b"\xff\xd8\xff\xe0"
    filler = hashlib.shake_256(f"photo-{seed}".encode()).digest(max(0, size - len(header)))
    return (header + filler)[:size]


def finish_photo_fields(archive_id: int | None, photo: bytes) -> dict[str, str]:
    """What a finish photo adds to the payload: its URL, and the photo itself as base64 when small enough."""
    fields = {"finish_photo_url": f"/api/v1/archives/{archive_id}/photos/finish.jpg"}
    if len(photo) <= IMAGE_MAX_BYTES:
        fields["image"] = base64.b64encode(photo).decode("ascii")
    return fields


def webhook_headers(secret: str | None) -> dict[str, str]:
    """Bambuddy's headers: a secret with a space is sent as is, otherwise as ``Bearer <secret>``."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    secret = (secret or "").strip()
    if secret:
        headers["Authorization"] = secret if " " in secret else f"Bearer {secret}"
    return headers


def fire_webhook(
    url: str,
    secret: str | None,
    event: str = "print_complete",
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    **fields: Any,
) -> httpx.Response:
    """POST one Bambuddy webhook delivery to ``url`` and return the receiver's response (no retries).

    Bambuddy counts 200/201/202/204 as delivered and never retries; a caller wanting that rule checks the
    returned status itself. ``fields`` go to :func:`build_payload`.
    """
    payload = build_payload(event, **fields)
    with httpx.Client(timeout=timeout, transport=transport) as client:
        return client.post(url, json=payload, headers=webhook_headers(secret))
