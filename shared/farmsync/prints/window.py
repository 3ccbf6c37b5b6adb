"""The print cursor: a time window on ``created_at`` and the runs in it already finished.

The real print log cannot be read "down to an id": the released Bambuddy sorts on whole-second ``created_at``
with ties in ascending id, the next release sorts on start time, and a run's status can change after it first
appears (bambuddy-api.md §2.5, §11). What every version can answer is ``date_from`` on ``created_at``. So the
cursor keeps:

- ``time``: every run created before it is finished (synced, skipped or parked);
- ``done``: the finished runs created since ``time - MARGIN``, so re-reading the window costs no store read.

A tick reads ``date_from = time - MARGIN`` and works on every run in the answer that is not in ``done``, in any
order the server returns. The margin covers runs committed late with an earlier ``created_at``, concurrent ticks
and archives whose ``created_at`` is the print's start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from farmsync.clients.timeutil import parse_utc

MARGIN = timedelta(hours=1)
HOLD_LIMIT = timedelta(days=2)
"""An in-progress run holds the window open at most this long behind the newest run (a stuck status)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One print-log run (or archive) in the window, as the cursor sees it."""

    id: int
    created_at: datetime | None
    wanted: bool  # a unit to sync (completed, or any finished print when SYNC_SUCCESS_ONLY is off)
    in_progress: bool = False  # still printing: holds the window open until it finishes


@dataclass
class Window:
    """The cursor's value, read from and written to the store as plain JSON."""

    time: datetime | None = None
    done: dict[int, float] = field(default_factory=dict)  # id -> created_at (epoch seconds)
    legacy_id: int | None = None  # an old id-only cursor: every id at or below it was finished

    @classmethod
    def load(cls, value: Any) -> Window:
        """The cursor from the store; an old ``{"id": n}`` cursor becomes ``legacy_id`` (migrated on write)."""
        if not isinstance(value, dict):
            return cls()
        if "time" not in value:
            legacy = value.get("id")
            return cls(legacy_id=int(legacy)) if legacy else cls()
        done = value.get("done") or {}
        return cls(
            time=parse_utc(value["time"]) if value["time"] else None,
            done={int(k): float(v) for k, v in done.items()},
        )

    def dump(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat() if self.time else None,
            "done": {str(k): v for k, v in sorted(self.done.items())},
        }

    def since(self) -> datetime | None:
        """``date_from`` for the next read: the cursor's time minus the margin (None: read everything)."""
        return self.time - MARGIN if self.time else None

    def is_done(self, row: Row) -> bool:
        return row.id in self.done or (self.legacy_id is not None and row.id <= self.legacy_id)

    @property
    def label(self) -> str | None:
        """How reports show the cursor: its time, ISO 8601 in UTC with the zone (as every time in farmsync JSON)."""
        return self.time.astimezone(UTC).isoformat() if self.time else None


def advance(
    before: Window, rows: Sequence[Row], finished: Iterable[int], *, keep_legacy: bool = False
) -> Window:
    """The window after a pass over ``rows`` (everything read since ``before.since()``).

    ``finished`` are the ids finished in this pass. The new time stops at the oldest run still open (not finished,
    or printing); with none open it moves to the newest run seen. It never moves back past ``before.time`` unless
    an open run lies behind it (that run must stay inside the next window).
    """
    finished_now = set(finished)
    newest = max((r.created_at for r in rows if r.created_at), default=None)
    open_times: list[datetime] = []
    for row in rows:
        if row.created_at is None:
            continue
        printing = row.in_progress and newest is not None and row.created_at >= newest - HOLD_LIMIT
        unfinished = row.wanted and not before.is_done(row) and row.id not in finished_now
        if printing or unfinished:
            open_times.append(row.created_at)
    time: datetime | None
    if open_times:
        time = min(open_times)
    else:
        time = max((t for t in (newest, before.time) if t is not None), default=None)
    if time is None:
        return before
    floor = (time - MARGIN).timestamp()
    done = {k: v for k, v in before.done.items() if v >= floor}
    for row in rows:
        if row.created_at is None or row.created_at.timestamp() < floor:
            continue
        if row.id in finished_now or (row.wanted and before.is_done(row)):
            done[row.id] = row.created_at.timestamp()
    return Window(time=time, done=done, legacy_id=before.legacy_id if keep_legacy else None)


def merge(mine: Window, theirs: Window) -> Window:
    """Two ticks moved the cursor at once: the later time, and every run either of them finished near it.

    Safe because finishing is permanent (done, skipped and parked stay so) and a run one tick left open is still
    inside the window the later time opens (MARGIN)."""
    times = [t for t in (mine.time, theirs.time) if t is not None]
    time = max(times) if times else None
    if time is None:
        return mine
    floor = (time - MARGIN).timestamp()
    done = {k: v for k, v in {**theirs.done, **mine.done}.items() if v >= floor}
    return Window(time=time, done=done)
