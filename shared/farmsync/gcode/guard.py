"""Store-backed locks for the G-code mirror: a short lease lock, and the engine's write guard.

The idempotency store's claims are built for "do this once, ever" (``complete`` makes a key done for good). A
printer write is different: the plan is computed from what the printer holds *now*, so the same upload must be
allowed again later when the file has vanished from the printer. So claims are used here only as **lease locks**
that are released after the write, and a separate value remembers *when* each printer path was last written.

:class:`WriteGuard` decides per write:

- lock ``gcode-lock:<printer>:<path>`` is held by another run -> skip (someone is writing that file right now);
- the path was written by anyone *after this run started* (so after it listed the printer) -> skip: the plan
  was made from a printer state that no longer holds, and the next run re-plans from a fresh listing;
- otherwise write, then record the time and release the lock (also on failure, via ``failed``; a crashed run's lock simply expires, it is renewed only while its holder is alive).

Clocks: "after this run started" compares the writer's clock with ours. Skew between hosts can only cause a
redundant upload (overwrite semantics make it harmless) or delay a legitimate one to the next run; it can never
lose a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from farmsync.errors import LeaseLost, StoreError
from farmsync.gcode.plan import Action, Op
from farmsync.gcode.report import ActionReport
from farmsync.offload import store_call
from farmsync.store.base import Claim, Store, new_owner

log = logging.getLogger(__name__)

LOCK_NAMESPACE = "gcode-lock"
WRITES_NAMESPACE = "gcode-writes"
NEVER_PARK = 2**62
"""max_attempts for releasing a lock: every acquisition counts as an attempt, and a lock must never park."""


# --- a short lease lock ----------------------------------------------------------------------------------------


def try_lock(
    store: Store, namespace: str, key: str, *, lease_seconds: float, owner: str | None = None
) -> Claim:
    """One attempt at the lock. ``retry_parked`` makes released (failed/parked) records free again."""
    return store.claim(namespace, key, lease_seconds=lease_seconds, owner=owner, retry_parked=True)


def unlock(store: Store, claim: Claim) -> None:
    """Give the lock back so the next claim is granted at once; a lock lost to expiry is only logged."""
    try:
        store.release(claim, "released", max_attempts=NEVER_PARK, retry_after=0.0)
    except LeaseLost:
        log.warning("lock %s:%s expired before it was released", claim.namespace, claim.key)


@contextlib.contextmanager
def store_lock(
    store: Store,
    namespace: str,
    key: str,
    *,
    lease_seconds: float = 15.0,
    wait_seconds: float = 30.0,
    poll_seconds: float = 0.02,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Claim]:
    """Hold ``namespace:key`` for a short critical section (blocking). StoreError when not granted in time.

    For read-modify-write of one store value; keep the section far shorter than ``lease_seconds``.
    """
    deadline = time.monotonic() + wait_seconds
    delay = poll_seconds
    while True:
        claim = try_lock(store, namespace, key, lease_seconds=lease_seconds)
        if claim.held:
            break
        if time.monotonic() >= deadline:
            raise StoreError(f"lock {namespace}:{key} is still held by another run after {wait_seconds:g} s")
        sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield claim
    finally:
        unlock(store, claim)


# --- the mirror's write guard ----------------------------------------------------------------------------------


def lock_key(printer: str, path: str) -> str:
    """One lock per printer file, whatever the operation: an upload and a delete of one file never overlap."""
    return f"{printer}:{path}"


class WriteGuard:
    """The :class:`farmsync.gcode.engine.Guard` every mirror run uses, kept in the store; make one per run.

    Create it *before* the run lists any printer: its start time is the line between writes the run's plan
    already saw and writes that happened behind its back.
    """

    def __init__(self, store: Store, *, lease_seconds: float = 60.0, started_at: float | None = None) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.started_at = store.clock() if started_at is None else started_at
        self.owner = new_owner()
        self._call = store_call(store)
        self._held: dict[tuple[str, str], tuple[Claim, asyncio.Task[None]]] = {}
        self.skipped: list[tuple[str, str, str]] = []
        """(printer, path, why) for every write this guard refused, for tests and logs."""

    async def allow(self, printer: str, action: Action) -> bool:
        """Lock the printer file and check nobody wrote it since this run started; False skips the write."""
        claim, why = await self._call(self._claim_unwritten, lock_key(printer, action.path))
        if claim is None:
            self.skipped.append((printer, action.path, why))
            return False
        renewal = asyncio.create_task(self._renew(claim))
        self._held[(printer, action.path)] = (claim, renewal)
        return True

    def _claim_unwritten(self, key: str) -> tuple[Claim | None, str]:
        """The lock on ``key`` if it is free and nobody wrote ``key`` since this run started; else None and why.

        Both store calls in one trip to a worker thread, so the lock is given back right where it was taken when
        the check refuses or fails, and asking costs one trip per file, not two."""
        claim = try_lock(self.store, LOCK_NAMESPACE, key, lease_seconds=self.lease_seconds, owner=self.owner)
        if not claim.held:
            return None, "another run is writing this file"
        try:
            last = self.store.get_value(WRITES_NAMESPACE, key)
        except BaseException:
            # the check's error is the one to report; a lock that cannot be given back expires with its lease
            with contextlib.suppress(Exception):
                unlock(self.store, claim)
            raise
        if isinstance(last, dict) and float(last.get("at") or 0) >= self.started_at:
            unlock(self.store, claim)
            return None, f"written by another run ({last.get('op')}) meanwhile"
        return claim, ""

    async def done(self, printer: str, action: Action, report: ActionReport) -> None:
        """Remember when (and what) this run wrote, then give the lock back: one trip to a worker thread."""
        record: dict[str, Any] = {"at": self.store.clock(), "op": action.op.value, "owner": self.owner}
        if action.op in (Op.UPLOAD, Op.REPLACE):
            record["sha256"] = action.sha256
        claim = await self._stop_renewal(printer, action.path)
        await self._call(self._record_and_unlock, lock_key(printer, action.path), record, claim)

    def _record_and_unlock(self, key: str, record: dict[str, Any], claim: Claim | None) -> None:
        try:
            self.store.put_value(WRITES_NAMESPACE, key, record)
        finally:
            if claim is not None:
                unlock(self.store, claim)

    async def failed(self, printer: str, action: Action, report: ActionReport) -> None:
        """Give the lock back: nothing was written, a later run may try again."""
        await self._release(printer, action.path)

    async def _release(self, printer: str, path: str) -> None:
        claim = await self._stop_renewal(printer, path)
        if claim is not None:
            await self._call(unlock, self.store, claim)

    async def _stop_renewal(self, printer: str, path: str) -> Claim | None:
        """Stop renewing this guard's lock on ``path`` and hand the claim back to be released (None: none held)."""
        held = self._held.pop((printer, path), None)
        if held is None:
            return None
        claim, renewal = held
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        return claim

    async def _renew(self, claim: Claim) -> None:
        """Keep the lease alive while a slow upload runs (30 KB/s printers take minutes per file)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                claim = await self._call(self.store.renew, claim, self.lease_seconds)
            except LeaseLost:
                log.warning("lost the write lock on %s during the write", claim.key)
                return
            except StoreError as exc:
                log.warning("could not renew the write lock on %s: %s", claim.key, exc)

    async def aclose(self) -> None:
        """Release whatever is still held (a cancelled run)."""
        for printer, path in list(self._held):
            await self._release(printer, path)
