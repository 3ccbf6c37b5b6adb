"""What a tick, a backfill or a manual sync tells its caller: totals, and one line per print up to a bound.

A backfill of 10,000 runs must not hold 10,000 lines (about 1 KB each) until it answers: a person reads the
problems and the totals, the API and the page read the same. So a report keeps exact counts of every outcome and
at most ``DETAIL_LIMIT`` lines: every line of a small run; in a long one the problems (failed, parked, pending)
take the place of ordinary lines, and ``items_omitted`` says how many lines were left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr


class ItemOutcome(StrEnum):
    SYNCED = "synced"  # stock created (or adopted) now
    REFRESHED = "refreshed"  # force: parameters, image and link refreshed, no stock added
    SKIPPED = "skipped"  # nothing to do, with a reason (already synced, not a successful print, ...)
    PENDING = "pending"  # not finished: held by another worker or waiting for its retry time
    FAILED = "failed"  # this attempt failed; retried later with backoff
    PARKED = "parked"  # failed too often; shown in /sync/status until someone looks


FINISHED = frozenset({ItemOutcome.SYNCED, ItemOutcome.REFRESHED, ItemOutcome.SKIPPED, ItemOutcome.PARKED})
PROBLEMS = frozenset({ItemOutcome.FAILED, ItemOutcome.PARKED, ItemOutcome.PENDING})
"""Outcomes someone may need to act on: their lines are kept in preference to the others."""
DETAIL_LIMIT = 200
"""At most this many lines in a report (200 lines are about 200 KB, whatever the number of runs)."""


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
    """A whole tick or backfill: totals, at most ``detail_limit`` item lines, the cursor and why it stopped.

    Add lines with :meth:`add`; ``items`` given to the constructor are kept as given (a single archive's runs)."""

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
    detail_limit: int = Field(default_factory=lambda: DETAIL_LIMIT, exclude=True)
    _omitted: dict[ItemOutcome, int] = PrivateAttr(default_factory=dict)

    def add(self, item: ItemReport) -> None:
        """Count ``item``; keep its line while there is room, or in place of an ordinary line if it is a problem."""
        if len(self.items) < self.detail_limit:
            self.items.append(item)
            return
        if item.outcome in PROBLEMS:
            for index in range(len(self.items) - 1, -1, -1):
                if self.items[index].outcome not in PROBLEMS:
                    self._omit(self.items.pop(index))
                    self.items.append(item)
                    return
        self._omit(item)

    def _omit(self, item: ItemReport) -> None:
        self._omitted[item.outcome] = self._omitted.get(item.outcome, 0) + 1

    @property
    def items_omitted(self) -> int:
        """Lines counted in the totals but not kept."""
        return sum(self._omitted.values())

    def totals(self) -> dict[str, int]:
        out = {outcome.value: self._omitted.get(outcome, 0) for outcome in ItemOutcome}
        for item in self.items:
            out[item.outcome.value] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "totals": self.totals(), "items_omitted": self.items_omitted}

    @property
    def ok(self) -> bool:
        totals = self.totals()
        return not (totals[ItemOutcome.FAILED.value] or totals[ItemOutcome.PARKED.value])
