"""The idempotency store and how to open the one the settings choose.

Firestore is imported only when chosen, so functions on the SQLite default start without loading grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from farmsync.store.base import AsyncStore, Claim, Counts, Cursor, Outcome, Record, State, Store

if TYPE_CHECKING:
    from farmsync.settings import Settings

__all__ = ["AsyncStore", "Claim", "Counts", "Cursor", "Outcome", "Record", "State", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store STORE_BACKEND names: embedded SQLite at DATA_DIR/sync.sqlite3, or Firestore."""
    if settings.store_backend == "firestore":
        from farmsync.store.firestore import FirestoreStore

        return FirestoreStore(
            project=settings.firestore_project_id,
            prefix=settings.firestore_collection_prefix,
            database=settings.firestore_database,
        )
    from farmsync.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
