"""A table's primary keys grouped by a key computed from each row, so a filter costs its own rows.

The simulators keep their data as plain ``{pk: row}`` dicts and filter them per request; scanning every row
per GET made a long backfill's simulator time grow with the square of its runs. An index only finds
*candidates*: every reader still applies its whole filter to the rows it gets, so an index may hold a row
too many (harmless) but never one too few. Writers call :meth:`RowIndex.file` after adding a row to the
table or changing a field the key reads, and :meth:`RowIndex.drop` after deleting one. Every call is given
the table and rebuilds the index first when the table was replaced or rows were added or deleted behind
its back (a seed load, a test editing the dict).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

Row = dict[str, Any]


class RowIndex:
    """``key(row) -> {pk, ...}`` over one table, remembering the key each pk was filed under."""

    def __init__(self, key: Callable[[Row], Hashable]) -> None:
        self.key = key
        self._groups: dict[Hashable, set[int]] = {}
        self._filed: dict[int, Hashable] = {}
        self._table: dict[int, Row] | None = None

    def file(self, table: dict[int, Row], row: Row) -> None:
        """``row`` (already in ``table``) was added or changed: file it under the key it reads now."""
        if self._stale(table, 0 if row["pk"] in self._filed else 1):
            return
        self._file(row)

    def drop(self, table: dict[int, Row], pk: int) -> None:
        """Row ``pk`` was deleted from ``table``."""
        if self._stale(table, -1 if pk in self._filed else 0):
            return
        self._unfile(pk, self._filed.pop(pk))

    def pks(self, table: dict[int, Row], key: Hashable) -> set[int]:
        """The pks filed under ``key`` (a copy: callers may write to the table while they walk it)."""
        self._stale(table, 0)
        return set(self._groups.get(key, ()))

    def _stale(self, table: dict[int, Row], added: int) -> bool:
        """Rebuild from ``table`` (and say so) unless it is the table indexed, with ``added`` rows more."""
        if table is self._table and len(table) == len(self._filed) + added:
            return False
        self._groups, self._filed, self._table = {}, {}, table
        for row in table.values():
            self._file(row)
        return True

    def _file(self, row: Row) -> None:
        pk = row["pk"]
        new = self.key(row)
        if pk in self._filed:
            old = self._filed[pk]
            if old == new:
                return
            self._unfile(pk, old)
        self._groups.setdefault(new, set()).add(pk)
        self._filed[pk] = new

    def _unfile(self, pk: int, key: Hashable) -> None:
        group = self._groups.get(key)
        if group is not None:
            group.discard(pk)
            if not group:
                del self._groups[key]
