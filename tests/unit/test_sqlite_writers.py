"""Threads of one process write the SQLite store in turn, never by colliding in SQLite's busy handler."""

from __future__ import annotations

import threading
from pathlib import Path

from farmsync.store.sqlite import SqliteStore


def test_threads_of_one_process_never_meet_in_sqlite_s_lock(tmp_path: Path) -> None:
    # busy_timeout 0: a writer that finds the database locked fails at once instead of sleeping in the busy
    # handler, so any collision between this process's threads shows up as an error
    store = SqliteStore(tmp_path / "s.sqlite3", busy_timeout_ms=0)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(number: int) -> None:
        start.wait()
        try:
            for index in range(150):
                store.put_value("writers", f"{number}-{index}", {"n": index})
                claim = store.claim("writers-claims", f"{number}-{index}", lease_seconds=30)
                store.complete(claim)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert errors == []
    again = SqliteStore(tmp_path / "s.sqlite3")
    assert all(again.get_value("writers", f"{n}-149") == {"n": 149} for n in range(8))
    again.close()
