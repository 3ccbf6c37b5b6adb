"""What a tick, a backfill or a manual sync tells its caller: one line per print, and totals."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ItemOutcome(StrEnum):
    SYNCED = "synced"  # stock created (or adopted) now
    REFRESHED = "refreshed"  # force: parameters, image and link refreshed, no stock added
    SKIPPED = "skipped"  # nothing to do, with a reason (already synced, not a successful print, ...)
    PENDING = "pending"  # not finished: held by another worker or waiting for its retry time
    FAILED = "failed"  # this attempt failed; retried later with backoff
    PARKED = "parked"  # failed too often; shown in /sync/status until someone looks


FINISHED = frozenset({ItemOutcome.SYNCED, ItemOutcome.REFRESHED, ItemOutcome.SKIPPED, ItemOutcome.PARKED})


def retry_time(not_before: float | None) -> datetime | None:
    """The store's retry time (epoch seconds) as an aware datetime, so JSON shows ISO 8601 with a zone."""
    return None if not_before is None else datetime.fromtimestamp(not_before, UTC)


class ItemReport(BaseModel):
    """The result for one unit of stock (a print-log run, or an archive in archive mode)."""

    key: str
    name: str | None = None  # the print's name
    archive_id: int | None = None
    run_id: int | None = None
    outcome: ItemOutcome
    reason: str | None = None
    error: str | None = None
    part: int | None = None
    ipn: str | None = None
    stock_item: int | None = None
    batch: str | None = None
    attempts: int | None = None
    retry_at: datetime | None = (
        None  # failed or waiting: not tried before this; held: when the claim runs out
    )
    writes: list[str] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.outcome in FINISHED


class RunReport(BaseModel):
    """A whole tick or backfill: its items, totals, the cursor before and after, and why it stopped."""

    mode: str
    unit: str
    items: list[ItemReport] = Field(default_factory=list)
    cursor_before: str | None = None  # the window's time, ISO 8601 (Window.label)
    cursor_after: str | None = None
    stopped: str = "complete"  # complete | held | time_budget | max_archives
    seconds: float = 0.0
    bambuddy_requests: int = 0
    inventree_requests: int = 0
    notes: list[str] = Field(default_factory=list)

    def totals(self) -> dict[str, int]:
        out = {outcome.value: 0 for outcome in ItemOutcome}
        for item in self.items:
            out[item.outcome.value] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "totals": self.totals()}

    @property
    def ok(self) -> bool:
        return not any(i.outcome in (ItemOutcome.FAILED, ItemOutcome.PARKED) for i in self.items)
