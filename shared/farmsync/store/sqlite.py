"""The embedded default store: one SQLite file, safe across threads and processes.

WAL lets readers run beside a writer; every claim, renew, complete and release is one ``BEGIN IMMEDIATE``
transaction, so the read-check-write of a claim cannot interleave with another process's. Within one process the
writers take turns on a lock first: threads that met in ``BEGIN IMMEDIATE`` would each wait in SQLite's busy
handler, which sleeps 1, 2, 5 … 100 ms between tries however soon the lock is free (32 printers finishing a file
at once make ~100 one-row writes from the worker threads); other processes still meet SQLite's lock and its
``busy_timeout``. The tables carry a ``farmsync_`` prefix so they can share an
existing ``sync.sqlite3`` with the ledger tables already in it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from farmsync.errors import LeaseLost, StoreError
from farmsync.store.base import (
    Claim,
    Clock,
    Counts,
    Cursor,
    Outcome,
    Record,
    State,
    Store,
    decide_claim,
    new_owner,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS farmsync_keys (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result TEXT,
    not_before REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS farmsync_keys_state ON farmsync_keys (namespace, state, updated_at);
CREATE TABLE IF NOT EXISTS farmsync_cursors (
    stream TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS farmsync_values (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""

COLUMNS = "namespace, key, state, owner, lease_until, attempts, last_error, result, not_before, created_at, updated_at"


class SqliteStore(Store):
    """Store backed by a SQLite file (default ``DATA_DIR/sync.sqlite3``); one connection per thread."""

    runs_locally = True

    def __init__(self, path: str | Path, clock: Clock = time.time, busy_timeout_ms: int = 30000) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = threading.RLock()  # one writer at a time in this process (see the module doc)
        try:
            self._connection().executescript(SCHEMA)  # executescript manages its own transaction
            self._identity = self._file_identity()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite store {self.path}: cannot open: {exc}") from None

    def _file_identity(self) -> tuple[int, int]:
        info = os.stat(self.path)
        return info.st_dev, info.st_ino

    def _still_there(self) -> None:
        """Refuse to work on a file that was deleted or replaced while open: SQLite would go on writing into the
        unlinked file, and every claim and done mark made from then on would be lost with it."""
        try:
            same = self._file_identity() == self._identity
        except OSError:
            same = False
        if not same:
            raise StoreError(
                f"sqlite store {self.path}: the file was deleted or replaced while farmsync was running; "
                "restart farmsync to open it again"
            )

    # --- plumbing --------------------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._still_there()
        db = self._connection()
        with self._writer:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite store {self.path}: cannot start a transaction: {exc}") from None
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._still_there()
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from None

    @staticmethod
    def _record(row: tuple[Any, ...] | None) -> Record | None:
        if row is None:
            return None
        ns, key, state, owner, lease, attempts, error, result, not_before, created, updated = row
        return Record(
            ns,
            key,
            State(state),
            owner,
            lease,
            attempts,
            error,
            json.loads(result) if result else None,
            not_before,
            created,
            updated,
        )

    def _fetch(self, db: sqlite3.Connection, namespace: str, key: str) -> Record | None:
        row = db.execute(
            f"SELECT {COLUMNS} FROM farmsync_keys WHERE namespace=? AND key=?", (namespace, key)
        ).fetchone()
        return self._record(row)

    def _write(self, db: sqlite3.Connection, record: Record) -> None:
        db.execute(
            f"INSERT OR REPLACE INTO farmsync_keys ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.namespace,
                record.key,
                record.state.value,
                record.owner,
                record.lease_until,
                record.attempts,
                record.last_error,
                json.dumps(record.result) if record.result is not None else None,
                record.not_before,
                record.created_at,
                record.updated_at,
            ),
        )

    # --- claims ----------------------------------------------------------------------------------------------------
    def claim(
        self,
        namespace: str,
        key: str,
        *,
        lease_seconds: float,
        owner: str | None = None,
        retry_parked: bool = False,
    ) -> Claim:
        owner = owner or new_owner()
        now = self.clock()
        with self._transaction() as db:
            current = self._fetch(db, namespace, key)
            outcome, record = decide_claim(current, namespace, key, owner, now, lease_seconds, retry_parked)
            if outcome in (Outcome.ACQUIRED, Outcome.TAKEOVER):
                self._write(db, record)
                return Claim(outcome, record, owner)
            return Claim(outcome, current)

    def _update_held(self, claim: Claim, change: Callable[[Record, float], Record]) -> Record:
        if not claim.held or claim.record is None:
            raise LeaseLost(f"{claim.outcome} claims cannot be changed")
        with self._transaction() as db:
            current = self._fetch(db, claim.namespace, claim.key)
            if current is None or current.owner != claim.owner or current.state is not State.CLAIMED:
                raise LeaseLost(f"lease on {claim.namespace}:{claim.key} is no longer ours")
            record = change(current, self.clock())
            self._write(db, record)
            return record

    # --- reads -----------------------------------------------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Record | None:
        rows = self._read(
            f"SELECT {COLUMNS} FROM farmsync_keys WHERE namespace=? AND key=?", (namespace, key)
        )
        return self._record(rows[0]) if rows else None

    def list(self, namespace: str, state: State | None = None, limit: int = 100) -> list[Record]:
        if state is None:
            rows = self._read(
                f"SELECT {COLUMNS} FROM farmsync_keys WHERE namespace=? ORDER BY updated_at DESC LIMIT ?",
                (namespace, limit),
            )
        else:
            rows = self._read(
                f"SELECT {COLUMNS} FROM farmsync_keys WHERE namespace=? AND state=? "
                "ORDER BY updated_at DESC LIMIT ?",
                (namespace, State(state).value, limit),
            )
        return [r for r in (self._record(row) for row in rows) if r is not None]

    def counts(self, namespace: str) -> Counts:
        rows = self._read(
            "SELECT state, COUNT(*) FROM farmsync_keys WHERE namespace=? GROUP BY state", (namespace,)
        )
        return Counts({state: n for state, n in rows})

    # --- cursors ---------------------------------------------------------------------------------------------------
    def get_cursor(self, stream: str) -> Cursor | None:
        rows = self._read("SELECT value, version, updated_at FROM farmsync_cursors WHERE stream=?", (stream,))
        if not rows:
            return None
        value, version, updated = rows[0]
        return Cursor(stream, json.loads(value), version, updated)

    def cas_cursor(self, stream: str, expected_version: int | None, value: Any) -> Cursor | None:
        now = self.clock()
        with self._transaction() as db:
            row = db.execute("SELECT version FROM farmsync_cursors WHERE stream=?", (stream,)).fetchone()
            current = row[0] if row else None
            if current != expected_version:
                return None
            version = (current or 0) + 1
            db.execute(
                "INSERT OR REPLACE INTO farmsync_cursors (stream, value, version, updated_at) "
                "VALUES (?,?,?,?)",
                (stream, json.dumps(value), version, now),
            )
            return Cursor(stream, value, version, now)

    # --- values ----------------------------------------------------------------------------------------------------
    def get_value(self, namespace: str, key: str) -> Any:
        rows = self._read("SELECT value FROM farmsync_values WHERE namespace=? AND key=?", (namespace, key))
        return json.loads(rows[0][0]) if rows else None

    def put_value(self, namespace: str, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO farmsync_values (namespace, key, value, updated_at) VALUES (?,?,?,?)",
                (namespace, key, json.dumps(value), self.clock()),
            )

    def delete_value(self, namespace: str, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM farmsync_values WHERE namespace=? AND key=?", (namespace, key))

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
