"""Cursors changed by several callers at once: high-water marks that only move forward, and values kept by
read, change and compare-and-set (a lost race reads again and decides again)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from farmsync.errors import StoreError
from farmsync.store.base import AsyncStore, Store

UNCHANGED: Any = object()
"""What a change function of :func:`update` returns when there is nothing to write."""


async def advance(store: AsyncStore, stream: str, value: int, *, rounds: int = 20) -> int:
    """Move ``stream``'s cursor (``{"id": n}``) forward to ``value`` unless another worker already moved it
    further; return where it stands. A compare-and-set loop: a lost race re-reads and decides again."""
    for _ in range(rounds):
        cursor = await store.get_cursor(stream)
        current = int(cursor.value.get("id", 0)) if cursor else 0
        if current >= value:
            return current
        moved = await store.cas_cursor(
            stream, cursor.version if cursor else None, {"id": value, "at": time.time()}
        )
        if moved is not None:
            return value
    return value


def read(store: Store, stream: str, *, legacy: tuple[str, str] | None = None) -> tuple[int | None, Any]:
    """(version, value) of ``stream``'s cursor; before its first write, (None, the ``legacy`` value or None)."""
    cursor = store.get_cursor(stream)
    if cursor is not None:
        return cursor.version, cursor.value
    return None, store.get_value(*legacy) if legacy is not None else None


def update(
    store: Store,
    stream: str,
    change: Callable[[int | None, Any], Any],
    *,
    what: str,
    legacy: tuple[str, str] | None = None,
    attempts: int = 100,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Write ``change(version, value)`` to ``stream``'s cursor by compare-and-set, reading again after a lost race
    (with a short random pause); return what was written, or the current value when ``change`` returned
    :data:`UNCHANGED`. ``legacy`` (namespace, key) names a plain value an earlier version kept instead: it is the
    value until the first write, which moves it into the cursor. Blocking, like the store.

    Two callers that start from the same read agree on one outcome: one write wins, the other re-reads it."""
    for attempt in range(attempts):
        version, value = read(store, stream, legacy=legacy)
        new = change(version, value)
        if new is UNCHANGED:
            return value
        if store.cas_cursor(stream, version, new) is not None:
            if version is None and legacy is not None and value is not None:
                store.delete_value(*legacy)
            return new
        sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
    raise StoreError(f"{what}: {attempts} writes in a row lost a race; try again")
