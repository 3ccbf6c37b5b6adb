"""Timestamps from upstreams as aware UTC datetimes.

Bambuddy writes naive ISO timestamps that mean UTC (``2026-11-22T01:26:52.015387``) and sometimes adds a ``Z``
right after a write; InvenTree shows minute-resolution ``2026-11-22 04:31`` on tracking rows. Comparing a naive
and an aware datetime raises, so every model field goes through :func:`parse_utc` and comes out aware.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator


def parse_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO string (naive means UTC, ``Z`` accepted), a datetime or a date.

    Empty strings and None give None. Anything unparseable raises ValueError (pydantic reports the field).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"not an ISO timestamp: {value[:40]!r}") from None


def as_utc(value: datetime) -> datetime:
    """Naive means UTC (that is how both upstreams store time); aware values are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_naive_utc_iso(value: datetime) -> str:
    """The form Bambuddy filters compare against: naive ISO in UTC, no offset."""
    return as_utc(value).replace(tzinfo=None).isoformat()


UtcDatetime = Annotated[datetime | None, BeforeValidator(parse_utc)]
"""A pydantic field type: nullable, always aware UTC when set."""
