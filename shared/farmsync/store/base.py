"""The idempotency store: claims with leases, results, retries, cursors and small cached values.

Every write farmsync makes to InvenTree, Bambuddy or a printer happens inside a claim on a namespaced key
(``run:1234``, ``usage:88``, ``gcode:Ash:apple.gcode:<sha256>``). A fresh key is won by exactly one caller; an
expired lease is taken over by exactly one caller, who is told so (``Claim.takeover``) because the previous holder
may have half-written; a failed attempt is released with a backoff and, after ``max_attempts``, parked where
status pages show it. Two backends implement this with the same behaviour: embedded SQLite and Firestore.

The interface is synchronous on purpose: both backends are thread-safe, the SQLite one is fastest without an event
loop, and :class:`AsyncStore` moves calls off the loop for async handlers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, ParamSpec, TypeVar

from farmsync.errors import LeaseLost, StoreError
from farmsync.logs import action, get_logger

log = get_logger("store")
Clock = Callable[[], float]
P = ParamSpec("P")
T = TypeVar("T")


class State(StrEnum):
    """Life of a key: claimed (leased, in progress) → done; or failed (retry later) → … → parked (gave up)."""

    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    PARKED = "parked"


class Outcome(StrEnum):
    """Why a claim was or was not granted."""

    ACQUIRED = "acquired"  # fresh key, or a failed key whose backoff has passed
    TAKEOVER = "takeover"  # an expired lease of another caller: look before you write
    DONE = "done"  # finished earlier: nothing to do
    BUSY = "busy"  # another caller holds a live lease
    BACKOFF = "backoff"  # failed recently; retry after ``record.not_before``
    PARKED = "parked"  # failed too often; needs a person (or a forced retry)


@dataclass(frozen=True)
class Record:
    """What the store knows about one key."""

    namespace: str
    key: str
    state: State
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    last_error: str | None = None
    result: dict[str, Any] | None = None
    not_before: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`Store.claim`. ``held`` is true when the caller may now do the work."""

    outcome: Outcome
    record: Record | None
    owner: str | None = None

    @property
    def held(self) -> bool:
        return self.outcome in (Outcome.ACQUIRED, Outcome.TAKEOVER)

    @property
    def takeover(self) -> bool:
        """True when an earlier attempt may have written part of the work: look up before writing."""
        return self.outcome is Outcome.TAKEOVER or (self.held and self.attempts > 1)

    @property
    def attempts(self) -> int:
        return self.record.attempts if self.record else 0

    @property
    def namespace(self) -> str:
        assert self.record is not None
        return self.record.namespace

    @property
    def key(self) -> str:
        assert self.record is not None
        return self.record.key


@dataclass(frozen=True)
class Cursor:
    """A per-stream high-water mark. ``version`` increases by one with every successful compare-and-set."""

    stream: str
    value: Any
    version: int
    updated_at: float = 0.0


@dataclass
class Counts:
    """Keys per state in one namespace (for status pages)."""

    by_state: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, state: str) -> int:
        return self.by_state.get(state, 0)


EPHEMERAL_KEY_NAMESPACES = frozenset({"part", "gcode-lock", "gcode-manifest-lock"})
"""Claims that only serialise work and can be forgotten (the result lives elsewhere). Their records get an
``expires_at`` that a Firestore TTL policy may use; print runs and usage rows never do, because their done mark
is what makes them exactly-once. ``gcode-manifest-lock`` is no longer taken (the manifest is a cursor now); it stays
so the locks earlier versions left behind still expire."""

EPHEMERAL_VALUE_NAMESPACES = frozenset({"gcode-writes"})
"""Cached values that are only hints (when a printer file was last written)."""

EPHEMERAL_RETENTION_SECONDS = 30 * 24 * 3600


def new_owner() -> str:
    return uuid.uuid4().hex


def backoff_seconds(attempts: int, base: float = 30.0, cap: float = 3600.0) -> float:
    """Delay before retrying a key that has failed ``attempts`` times: 30 s, 60 s, 120 s … capped at 1 h."""
    return min(cap, base * 2.0 ** max(0, attempts - 1))


class Store(ABC):
    """The contract both backends honour (see tests/integration/test_store_contract.py)."""

    runs_locally: ClassVar[bool] = False
    """Whether every call is local disk work (SQLite), so callers may share worker trips among calls
    (:func:`farmsync.offload.store_call`); a store across a network keeps one thread per waiting call."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock

    # --- claims -----------------------------------------------------------------------------------------------
    @abstractmethod
    def claim(
        self,
        namespace: str,
        key: str,
        *,
        lease_seconds: float,
        owner: str | None = None,
        retry_parked: bool = False,
    ) -> Claim:
        """Try to take ``namespace:key`` for ``lease_seconds``. Exactly one concurrent caller gets ``held``."""

    def renew(self, claim: Claim, lease_seconds: float) -> Claim:
        """Extend a held lease. Raises LeaseLost when someone else took the key over or it was finished."""
        record = self._update_held(
            claim, lambda r, now: with_changes(r, lease_until=now + lease_seconds, updated_at=now)
        )
        return Claim(claim.outcome, record, claim.owner)

    def complete(self, claim: Claim, result: dict[str, Any] | None = None) -> Record:
        """Mark the key done with a small result record. Raises LeaseLost if the claim is no longer ours."""
        return self._update_held(claim, lambda r, now: completed(r, result, now))

    def release(
        self, claim: Claim, error: str, *, max_attempts: int, retry_after: float | None = None
    ) -> Record:
        """Give the key back after a failed attempt: failed with a backoff, or parked after ``max_attempts``."""
        return self._update_held(claim, lambda r, now: released(r, error, now, max_attempts, retry_after))

    @abstractmethod
    def _update_held(self, claim: Claim, change: Callable[[Record, float], Record]) -> Record:
        """Apply ``change`` to a key the claim still holds, atomically; LeaseLost if it is no longer ours."""

    # --- reads -------------------------------------------------------------------------------------------------
    @abstractmethod
    def get(self, namespace: str, key: str) -> Record | None:
        """The record of one key, or None."""

    @abstractmethod
    def list(self, namespace: str, state: State | None = None, limit: int = 100) -> list[Record]:
        """Keys of a namespace, optionally in one state, most recently updated first."""

    @abstractmethod
    def counts(self, namespace: str) -> Counts:
        """How many keys of the namespace are in each state."""

    # --- cursors -------------------------------------------------------------------------------------------------
    @abstractmethod
    def get_cursor(self, stream: str) -> Cursor | None:
        """The stream's high-water mark, or None before the first set."""

    @abstractmethod
    def cas_cursor(self, stream: str, expected_version: int | None, value: Any) -> Cursor | None:
        """Set the cursor if its version is still ``expected_version`` (None: must not exist yet).

        Returns the new cursor, or None when another caller moved it first.
        """

    # --- small values (caches: part ids per key, InvenTree version, ETags) --------------------------------------
    @abstractmethod
    def get_value(self, namespace: str, key: str) -> Any:
        """A cached JSON value, or None."""

    @abstractmethod
    def put_value(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON value (last write wins; only for values any caller would compute the same)."""

    @abstractmethod
    def delete_value(self, namespace: str, key: str) -> None:
        """Forget a cached value (e.g. a part id InvenTree no longer knows)."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends have nothing to release
        """Release connections."""

    def check(self) -> None:
        """Raise StoreError when the store cannot be reached (used by /validate and /health)."""
        self.get_value("_meta", "ping")


class AsyncStore:
    """Runs a :class:`Store`'s blocking calls in worker threads so async handlers never block the loop.

    A cancelled coroutine cannot stop its thread: a claim already sent still lands. :meth:`wait_idle` waits for
    every call in flight, so a caller that cancelled work (a shutdown, a test's simulated crash) can know the
    store has settled.
    """

    def __init__(self, store: Store, max_workers: int = 16) -> None:
        self.sync = store
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="farmsync-store"
        )
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    # --- the Store contract, typed, each call in a worker thread -------------------------------------------------
    async def claim(
        self,
        namespace: str,
        key: str,
        *,
        lease_seconds: float,
        owner: str | None = None,
        retry_parked: bool = False,
    ) -> Claim:
        return await self.run(
            self.sync.claim,
            namespace,
            key,
            lease_seconds=lease_seconds,
            owner=owner,
            retry_parked=retry_parked,
        )

    async def renew(self, claim: Claim, lease_seconds: float) -> Claim:
        return await self.run(self.sync.renew, claim, lease_seconds)

    async def complete(self, claim: Claim, result: dict[str, Any] | None = None) -> Record:
        return await self.run(self.sync.complete, claim, result)

    async def release(
        self, claim: Claim, error: str, *, max_attempts: int, retry_after: float | None = None
    ) -> Record:
        return await self.run(
            self.sync.release, claim, error, max_attempts=max_attempts, retry_after=retry_after
        )

    async def get(self, namespace: str, key: str) -> Record | None:
        return await self.run(self.sync.get, namespace, key)

    async def list(self, namespace: str, state: State | None = None, limit: int = 100) -> list[Record]:
        return await self.run(self.sync.list, namespace, state, limit)

    async def counts(self, namespace: str) -> Counts:
        return await self.run(self.sync.counts, namespace)

    async def get_cursor(self, stream: str) -> Cursor | None:
        return await self.run(self.sync.get_cursor, stream)

    async def cas_cursor(self, stream: str, expected_version: int | None, value: Any) -> Cursor | None:
        return await self.run(self.sync.cas_cursor, stream, expected_version, value)

    async def get_value(self, namespace: str, key: str) -> Any:
        return await self.run(self.sync.get_value, namespace, key)

    async def put_value(self, namespace: str, key: str, value: Any) -> None:
        await self.run(self.sync.put_value, namespace, key, value)

    async def delete_value(self, namespace: str, key: str) -> None:
        await self.run(self.sync.delete_value, namespace, key)

    async def check(self) -> None:
        await self.run(self.sync.check)

    def __getattr__(self, name: str) -> Any:
        """A backend's own method beyond the contract, run the same way (untyped: prefer adding it above)."""
        method = getattr(self.sync, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(method, *args, **kwargs)

        return call

    async def run(self, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``method(*args, **kwargs)`` in a worker thread, with the caller's context; counted until it ends."""
        context = contextvars.copy_context()
        future = self._executor.submit(context.run, functools.partial(method, *args, **kwargs))
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(self._forget)
        try:
            return await asyncio.wrap_future(future)
        except LeaseLost:
            raise  # a race another worker won: an outcome, not a failure of the store
        except StoreError as exc:
            name = getattr(method, "__name__", "?")
            action(log, "store failed", logging.ERROR, call=name, error=str(exc)[:300])
            raise

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._inflight.discard(future)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no store call is in flight (True), or ``timeout`` passed (False)."""
        with self._lock:
            pending = list(self._inflight)
        _done, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


# --- the claim rules, shared by both backends ----------------------------------------------------------------------


def with_changes(record: Record, **changes: Any) -> Record:
    return dataclasses.replace(record, **changes)


def decide_claim(
    current: Record | None,
    namespace: str,
    key: str,
    owner: str,
    now: float,
    lease_seconds: float,
    retry_parked: bool,
) -> tuple[Outcome, Record]:
    """What a claim on ``current`` results in, and the record to write when it is granted."""
    lease = now + lease_seconds
    if current is None:
        return Outcome.ACQUIRED, Record(
            namespace, key, State.CLAIMED, owner, lease, 1, None, None, None, now, now
        )
    if current.state is State.DONE:
        return Outcome.DONE, current
    if current.state is State.PARKED and not retry_parked:
        return Outcome.PARKED, current
    if current.state is State.CLAIMED:
        if current.lease_until is not None and current.lease_until > now:
            return Outcome.BUSY, current
        return Outcome.TAKEOVER, with_changes(
            current, owner=owner, lease_until=lease, attempts=current.attempts + 1, updated_at=now
        )
    if (
        current.state is State.FAILED
        and current.not_before is not None
        and current.not_before > now
        and not retry_parked
    ):
        return Outcome.BACKOFF, current
    return Outcome.ACQUIRED, with_changes(
        current,
        state=State.CLAIMED,
        owner=owner,
        lease_until=lease,
        attempts=current.attempts + 1,
        not_before=None,
        updated_at=now,
    )


def completed(record: Record, result: dict[str, Any] | None, now: float) -> Record:
    return with_changes(
        record, state=State.DONE, owner=None, lease_until=None, result=result, not_before=None, updated_at=now
    )


def released(record: Record, error: str, now: float, max_attempts: int, retry_after: float | None) -> Record:
    parked = record.attempts >= max_attempts
    delay = retry_after if retry_after is not None else backoff_seconds(record.attempts)
    return with_changes(
        record,
        state=State.PARKED if parked else State.FAILED,
        owner=None,
        lease_until=None,
        last_error=error[:500],
        not_before=None if parked else now + delay,
        updated_at=now,
    )
