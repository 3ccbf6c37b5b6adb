"""The idempotency store and how to open the one the settings choose.

Firestore is imported only when chosen, so functions on the SQLite default start without loading grpc.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from farmsync.errors import ConfigError, StoreError
from farmsync.store.base import AsyncStore, Claim, Counts, Cursor, Outcome, Record, State, Store

if TYPE_CHECKING:
    from farmsync.settings import Settings

EMULATOR_VARIABLE = "FIRESTORE_EMULATOR_HOST"

__all__ = ["AsyncStore", "Claim", "Counts", "Cursor", "Outcome", "Record", "State", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store STORE_BACKEND names: embedded SQLite at DATA_DIR/sync.sqlite3, or Firestore.

    A store that cannot work as configured (no Google credentials, a DATA_DIR that is missing and cannot be
    made, is not a folder or cannot be written) is a ConfigError naming the setting: 503 on routes, one line and
    exit 1 on the command line, never a traceback.
    """
    if settings.store_backend == "firestore":
        if settings.firestore_emulator_host and not os.environ.get(EMULATOR_VARIABLE):
            # written in .env: the Google client reads only the environment (which wins when both are set)
            os.environ[EMULATOR_VARIABLE] = settings.firestore_emulator_host
        from farmsync.store.firestore import FirestoreStore

        return FirestoreStore(
            project=settings.firestore_project_id,
            prefix=settings.firestore_collection_prefix,
            database=settings.firestore_database,
        )
    from farmsync.store.sqlite import SqliteStore

    usable_data_dir(settings.data_dir)
    try:
        return SqliteStore(settings.sqlite_path)
    except StoreError as exc:  # e.g. a sync.sqlite3 this user may not open
        raise ConfigError(f"DATA_DIR: {exc}") from None


def usable_data_dir(path: Path) -> None:
    """DATA_DIR must be a folder this process can create and write, else a ConfigError naming it and the path
    (an existing ``.env``'s ``DATA_DIR=/data`` on a host where a normal user cannot make ``/data``)."""
    shown = str(path)
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"DATA_DIR: {shown!r} is not a folder")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"DATA_DIR: cannot create the folder {shown!r}: {exc.strerror}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".farmsync-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"DATA_DIR: cannot write in {shown!r}: {exc.strerror}") from None
