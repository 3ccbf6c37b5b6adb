"""High-water marks that only move forward, whoever else moves them at the same time."""

from __future__ import annotations

import time

from farmsync.store.base import AsyncStore


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
