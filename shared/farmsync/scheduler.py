"""The in-process scheduler of ``farmsync serve``: one box needs no cron.

Every POLL_INTERVAL_SECONDS it runs the configured jobs one after another (prints, filament, G-code), each
exactly as its function target would. SYNC_ON_STARTUP runs them once at start. On shutdown no new job starts and
the one in flight is allowed to finish (its claims are completed or released by the pipeline itself); if it
overstays the grace period it is cancelled, and its claims simply expire and are taken over by the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from farmsync.logs import action, get_logger

log = get_logger("scheduler")

JobFunction = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class Job:
    name: str
    run: JobFunction


class Scheduler:
    """Runs ``jobs`` every ``interval`` seconds until stopped."""

    def __init__(
        self, jobs: list[Job], interval: float, *, on_startup: bool = False, grace: float = 60.0
    ) -> None:
        self.jobs = jobs
        self.interval = interval
        self.on_startup = on_startup
        self.grace = grace
        self.last: dict[str, dict[str, Any]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Task[Any] | None = None

    def start(self) -> None:
        if self.jobs and (self.interval > 0 or self.on_startup):
            self._task = asyncio.create_task(self._loop(), name="farmsync-scheduler")

    async def _loop(self) -> None:
        if not self.on_startup and not await self._wait(self.interval):
            return
        while not self._stop.is_set():
            for job in self.jobs:
                if self._stop.is_set():
                    return
                await self._run(job)
            if self.interval <= 0 or not await self._wait(self.interval):
                return

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; True when it is time to run."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return not self._stop.is_set()

    async def _run(self, job: Job) -> None:
        started = time.time()
        self._current = asyncio.create_task(job.run(), name=f"farmsync-{job.name}")
        try:
            result = await asyncio.shield(self._current)
            self.last[job.name] = {"at": started, "ok": True, "seconds": round(time.time() - started, 3)}
            action(
                log,
                "scheduled job finished",
                job=job.name,
                seconds=self.last[job.name]["seconds"],
                summary=_summary(result),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a job's failure must not stop the schedule
            self.last[job.name] = {"at": started, "ok": False, "error": str(exc)[:300]}
            action(log, "scheduled job failed", 40, job=job.name, error=str(exc)[:300])
        finally:
            self._current = None

    async def stop(self) -> None:
        """Start nothing new; let the job in flight finish within the grace period, then cancel it."""
        self._stop.set()
        current = self._current
        if current is not None and not current.done():
            try:
                await asyncio.wait_for(asyncio.shield(current), timeout=self.grace)
            except (TimeoutError, Exception):
                current.cancel()
                with contextlib.suppress(BaseException):
                    await current
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _summary(result: Any) -> Any:
    if hasattr(result, "totals"):
        return result.totals()
    if isinstance(result, dict):
        return result.get("totals") or {k: v for k, v in result.items() if isinstance(v, int | float | str)}
    return None
