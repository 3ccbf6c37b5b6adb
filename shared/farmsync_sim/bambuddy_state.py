"""Bambuddy's data in memory: printers, archives, print-log runs, spools, assignments, usage, keys.

Records are plain dicts shaped like Bambuddy's database rows, so tests can read and edit them directly
(``farm.bambuddy.state.archives[3]["status"] = "failed"``). Every read and write takes ``lock``; the HTTP layer
and tests share one instance across threads. The ``*_json`` methods give the API response shapes.
"""

from __future__ import annotations

import re
import secrets
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from farmsync_sim.common import dump_records, iso, load_records, stable_hex, tiny_png, utcnow

APP_VERSION = "1.2.5.2"
STREAM_TOKEN_LIFETIME = timedelta(minutes=60)
PRINT_LOG_ORDERS = ("released", "start_time")

# The permission flags an API key carries, with Bambuddy's defaults for a new key.
KEY_SCOPES_DEFAULT = {
    "can_queue": True,
    "can_control_printer": False,
    "can_read_status": True,
    "can_manage_library": True,
    "can_manage_inventory": True,
    "can_manage_maintenance": True,
    "can_manage_archives": True,
    "can_manage_projects": True,
    "can_access_cloud": False,
    "can_update_energy_cost": False,
}

PRINTER_DEFAULTS: dict[str, Any] = {
    "serial_number": None,
    "ip_address": None,
    "model": None,
    "location": None,
    "auto_archive": True,
    "is_active": True,
    "nozzle_count": 1,
    "supports_nozzle_flow_type": False,
    "print_hours_offset": 0.0,
    "external_camera_url": None,
    "external_camera_type": None,
    "external_camera_enabled": False,
    "camera_rotation": 0,
    "plate_detection_enabled": False,
    "plate_detection_roi": None,
}

ARCHIVE_DEFAULTS: dict[str, Any] = {
    "printer_id": None,
    "project_id": None,
    "filename": "",
    "file_path": "",
    "file_size": 0,
    "content_hash": None,
    "thumbnail_path": None,
    "timelapse_path": None,
    "source_3mf_path": None,
    "f3d_path": None,
    "object_count": 1,
    "print_name": None,
    "plate_id": 1,
    "print_time_seconds": None,
    "filament_used_grams": None,
    "filament_type": None,
    "filament_color": None,
    "layer_height": 0.2,
    "total_layers": None,
    "nozzle_diameter": 0.4,
    "bed_temperature": 55,
    "bed_type": "Textured PEI Plate",
    "nozzle_temperature": 220,
    "sliced_for_model": None,
    "status": "completed",
    "started_at": None,
    "completed_at": None,
    "extra_data": {},
    "makerworld_url": None,
    "designer": None,
    "external_url": None,
    "is_favorite": False,
    "tags": None,
    "notes": None,
    "cost": None,
    "photos": None,
    "failure_reason": None,
    "quantity": 1,
    "energy_kwh": None,
    "energy_cost": None,
    "created_by_id": None,
    "deleted_at": None,
}

PRINT_LOG_DEFAULTS: dict[str, Any] = {
    "archive_id": None,
    "print_name": None,
    "printer_name": None,
    "printer_id": None,
    "status": "completed",
    "started_at": None,
    "completed_at": None,
    "duration_seconds": None,
    "filament_type": None,
    "filament_color": None,
    "filament_used_grams": None,
    "cost": None,
    "energy_kwh": None,
    "energy_cost": None,
    "failure_reason": None,
    "thumbnail_path": None,
    "created_by_id": None,
    "created_by_username": None,
}

SPOOL_DEFAULTS: dict[str, Any] = {
    "material": "PLA",
    "subtype": None,
    "color_name": None,
    "rgba": None,
    "extra_colors": None,
    "effect_type": None,
    "brand": None,
    "label_weight": 1000,
    "core_weight": 250,
    "core_weight_catalog_id": None,
    "weight_used": 0.0,
    "weight_used_baseline": 0.0,
    "slicer_filament": None,
    "slicer_filament_name": None,
    "nozzle_temp_min": None,
    "nozzle_temp_max": None,
    "note": None,
    "tag_uid": None,
    "tray_uuid": None,
    "data_origin": None,
    "tag_type": None,
    "cost_per_kg": None,
    "weight_locked": False,
    "last_scale_weight": None,
    "last_weighed_at": None,
    "category": None,
    "low_stock_threshold_pct": None,
    "storage_location": None,
    "location_id": None,
    "added_full": None,
    "last_used": None,
    "encode_time": None,
    "archived_at": None,
    "k_profiles": [],
}

ASSIGNMENT_DEFAULTS: dict[str, Any] = {
    "ams_id": 0,
    "tray_id": 0,
    "fingerprint_color": None,
    "fingerprint_type": None,
    "configured": True,
    "pending_config": False,
}

USAGE_DEFAULTS: dict[str, Any] = {
    "printer_id": None,
    "print_name": None,
    "weight_used": 0.0,
    "percent_used": 0,
    "status": "completed",
    "cost": None,
    "archive_id": None,
}

# Assumption: a failed, aborted or cancelled run used this share of the sliced grams when the caller gives none.
PARTIAL_RUN_SHARE = 0.35


def normalize_tag_uid(value: str) -> str:
    """by-tag's query normalisation: keep hex digits, upper-case, keep the last 16."""
    return re.sub(r"[^0-9A-Fa-f]", "", value).upper()[-16:]


def normalize_tray_uuid(value: str) -> str:
    # Assumption: tray_uuid gets the same hex-only upper-casing but is not cut (it is 32 hex long).
    return re.sub(r"[^0-9A-Fa-f]", "", value).upper()


def _sort_key(value: Any) -> tuple[bool, Any]:
    """SQL order for nullable columns: NULL first, then the value."""
    return (value is not None, value if value is not None else "")


def _created_newest_first(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ascending (created_at, descending id): read backwards it is the released order, created_at descending with
    tied rows in ascending id (bambuddy-api.md §2.5), and its created_at column can be bisected for a date range.
    """
    return sorted(rows, key=lambda r: (r["created_at"], -r["id"]))


@dataclass
class _Index:
    """Sorted and grouped views of the print log and the archives, so a request costs its page, not the log.

    Rebuilt when a run or archive is added or removed (``stamp``), never per request. Values a request filters on
    that can change later (status, deleted_at, archive_id) are still read from the rows themselves."""

    stamp: tuple[Any, ...]
    runs: list[dict[str, Any]]  # _created_newest_first order
    run_times: list[datetime]
    runs_by_archive: dict[int, list[dict[str, Any]]]
    archives: list[dict[str, Any]]  # _created_newest_first order
    archive_times: list[datetime]
    archives_by_hash: dict[str, list[dict[str, Any]]]  # by ascending id
    runs_by_start: list[dict[str, Any]] | None = None  # the next release's order, built on first use

    @classmethod
    def build(cls, stamp: tuple[Any, ...], print_log: dict[int, Any], archives: dict[int, Any]) -> _Index:
        runs = _created_newest_first(list(print_log.values()))
        by_archive: dict[int, list[dict[str, Any]]] = {}
        for run in print_log.values():
            if run["archive_id"] is not None:
                by_archive.setdefault(run["archive_id"], []).append(run)
        ordered = _created_newest_first(list(archives.values()))
        by_hash: dict[str, list[dict[str, Any]]] = {}
        for archive in sorted(archives.values(), key=lambda a: a["id"]):
            if archive["content_hash"]:
                by_hash.setdefault(archive["content_hash"], []).append(archive)
        return cls(
            stamp=stamp,
            runs=runs,
            run_times=[r["created_at"] for r in runs],
            runs_by_archive=by_archive,
            archives=ordered,
            archive_times=[a["created_at"] for a in ordered],
            archives_by_hash=by_hash,
        )


def _stamp(table: dict[int, Any]) -> tuple[Any, ...]:
    """What changes when a row is added or removed: the table itself, its size and its newest key."""
    return (id(table), len(table), next(reversed(table), None))


class _Tail:
    """A table's highest id and newest created_at, kept up to date by reading only the rows appended since.

    Rows are added at the end with rising ids (``_next_id``); anything else (a delete, a replaced table, a key
    removed and added again) shows as a count that does not add up and costs one rescan. created_at is never
    edited in place (see :meth:`BambuddyState.index`)."""

    def __init__(self) -> None:
        self.table: dict[int, dict[str, Any]] | None = None
        self.length = 0
        self.last: int | None = None
        self.top = 0
        self.latest: datetime | None = None

    def read(self, table: dict[int, dict[str, Any]]) -> _Tail:
        if table is self.table and (self.last is None or self.last in table):
            added: list[int] = []
            for key in reversed(table):
                if key == self.last:
                    break
                added.append(key)
            if self.length + len(added) == len(table):
                self._take(table, added)
                return self
        self.table, self.length, self.last, self.top, self.latest = table, 0, None, 0, None
        self._take(table, list(table))
        return self

    def _take(self, table: dict[int, dict[str, Any]], keys: list[int]) -> None:
        for key in keys:
            self.top = max(self.top, key)
            created = table[key].get("created_at")
            if created is not None and (self.latest is None or created > self.latest):
                self.latest = created
        self.length = len(table)
        self.last = next(reversed(table), None)


@dataclass
class BambuddyState:
    """Everything the simulated Bambuddy knows. Methods lock; direct dict access should hold ``lock``."""

    printers: dict[int, dict[str, Any]] = field(default_factory=dict)
    archives: dict[int, dict[str, Any]] = field(default_factory=dict)
    print_log: dict[int, dict[str, Any]] = field(default_factory=dict)
    spools: dict[int, dict[str, Any]] = field(default_factory=dict)
    assignments: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: dict[int, dict[str, Any]] = field(default_factory=dict)
    thumbnails: dict[int, bytes] = field(default_factory=dict)
    api_keys: dict[str, dict[str, bool]] = field(default_factory=dict)
    stream_tokens: dict[str, datetime] = field(default_factory=dict)
    auth_enabled: bool = False
    # Assumption: a Bambuddy from before the print log answers its routes like any unknown FastAPI route (404).
    print_log_available: bool = True
    # "released" (1.2.5.2): created_at desc, ties in ascending id. "start_time" (1.2.6 dev):
    # coalesce(started_at, created_at) desc, id desc.
    print_log_order: str = "released"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _index: _Index | None = field(default=None, repr=False, compare=False)
    _tails: dict[int, _Tail] = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------- seed data

    @classmethod
    def from_seed(
        cls, seed: dict[str, Any], *, api_key: str | None = None, auth: bool = False
    ) -> BambuddyState:
        """Build the state from a scenario's ``bambuddy`` section (see :mod:`farmsync_sim.scenarios`)."""
        state = cls(auth_enabled=auth)
        state.load(seed)
        if api_key:
            state.add_api_key(api_key)
        return state

    def load(self, seed: dict[str, Any]) -> None:
        """Replace all data with ``seed``; thumbnails are drawn again for archives with a thumbnail_path."""
        with self.lock:
            self._index = None
            self._tails = {}
            self.printers = {
                k: {**PRINTER_DEFAULTS, **v} for k, v in load_records(seed.get("printers", [])).items()
            }
            self.archives = {
                k: {**ARCHIVE_DEFAULTS, **v} for k, v in load_records(seed.get("archives", [])).items()
            }
            self.print_log = {
                k: {**PRINT_LOG_DEFAULTS, **v} for k, v in load_records(seed.get("print_log", [])).items()
            }
            self.spools = {
                k: {**SPOOL_DEFAULTS, **v} for k, v in load_records(seed.get("spools", [])).items()
            }
            self.assignments = {
                k: {**ASSIGNMENT_DEFAULTS, **v} for k, v in load_records(seed.get("assignments", [])).items()
            }
            self.usage = {k: {**USAGE_DEFAULTS, **v} for k, v in load_records(seed.get("usage", [])).items()}
            now = utcnow()
            for record in (*self.printers.values(), *self.spools.values()):
                record.setdefault("created_at", now)
                record.setdefault("updated_at", record["created_at"])
            for record in (
                *self.archives.values(),
                *self.print_log.values(),
                *self.assignments.values(),
                *self.usage.values(),
            ):
                record.setdefault("created_at", now)
            self.thumbnails = {
                a["id"]: tiny_png(a["content_hash"] or a["id"])
                for a in self.archives.values()
                if a["thumbnail_path"]
            }

    def dump(self) -> dict[str, Any]:
        """The data as a JSON-ready seed (the inverse of :meth:`load`)."""
        with self.lock:
            return {
                "printers": dump_records(self.printers),
                "archives": dump_records(self.archives),
                "print_log": dump_records(self.print_log),
                "spools": dump_records(self.spools),
                "assignments": dump_records(self.assignments),
                "usage": dump_records(self.usage),
            }

    # ----------------------------------------------------------------- helpers

    def index(self) -> _Index:
        """The current :class:`_Index` (caller holds ``lock``); rebuilt only after rows were added or removed.

        created_at, started_at, archive_id and content_hash are read through it: edit them through the methods
        here (or set ``_index`` to None), as the API does; other fields may be edited in place."""
        stamp = (_stamp(self.print_log), _stamp(self.archives))
        if self._index is None or self._index.stamp != stamp:
            self._index = _Index.build(stamp, self.print_log, self.archives)
        return self._index

    def _tail(self, table: dict[int, dict[str, Any]]) -> _Tail:
        """The :class:`_Tail` of ``table`` (caller holds ``lock``); it keeps ``table`` alive, so its id stays its."""
        tail = self._tails.get(id(table))
        if tail is None or tail.table is not table:
            tail = self._tails[id(table)] = _Tail()
        return tail.read(table)

    def _next_id(self, table: dict[int, Any]) -> int:
        """The highest id plus one, as SQLite gives a table without AUTOINCREMENT (a deleted top id comes back)."""
        with self.lock:
            return self._tail(table).top + 1

    def now(self) -> datetime:
        """The time for a new event: wall-clock UTC in whole seconds, never before the newest row stored.

        Seeded scenarios may lie in the future of the machine's clock; this keeps "newest first" true for
        everything added afterwards. Two events in the same second share it, as on the real server.
        """
        with self.lock:
            latest = max(
                (t for t in (self._tail(x).latest for x in (self.archives, self.print_log, self.usage)) if t),
                default=None,
            )
        now = utcnow().replace(microsecond=0)
        if latest is not None and now < latest:
            whole = latest.replace(microsecond=0)
            now = whole if whole == latest else whole + timedelta(seconds=1)
        return now

    def printer(self, printer: int | str) -> dict[str, Any]:
        """A printer by id or by name; KeyError when there is none."""
        with self.lock:
            if isinstance(printer, int):
                return self.printers[printer]
            for record in self.printers.values():
                if record["name"] == printer:
                    return record
        raise KeyError(printer)

    # ----------------------------------------------------------------- auth

    def add_api_key(self, key: str | None = None, **scopes: bool) -> str:
        """Register an API key (``bb_`` + 43 characters); scopes default to a new key's defaults."""
        unknown = set(scopes) - set(KEY_SCOPES_DEFAULT)
        if unknown:
            raise ValueError(f"unknown scope(s): {sorted(unknown)}")
        key = key or "bb_" + secrets.token_urlsafe(32)[:43]
        with self.lock:
            self.api_keys[key] = {**KEY_SCOPES_DEFAULT, **scopes}
        return key

    def issue_stream_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.stream_tokens[token] = utcnow() + STREAM_TOKEN_LIFETIME
        return token

    def stream_token_valid(self, token: str | None) -> bool:
        with self.lock:
            expiry = self.stream_tokens.get(token or "")
        return expiry is not None and expiry > utcnow()

    # ----------------------------------------------------------------- archives and runs

    def add_print(
        self,
        printer: int | str,
        *,
        print_name: str | None = None,
        status: str = "completed",
        grams: float | None = None,
        used_grams: float | None = None,
        duration_s: int | None = None,
        reprint_of: int | None = None,
        content_hash: str | None = None,
        filename: str | None = None,
        failure_reason: str | None = None,
        filament_type: str = "PLA",
        filament_color: str = "#000000",
        usage: bool = True,
        thumbnail: bool = True,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Record a finished run the way Bambuddy does and return its print-log row.

        A new archive is created unless ``reprint_of`` names one; a reprint reuses that archive row (new
        print-log entry, archive status follows the latest run). ``grams`` is a new archive's sliced estimate;
        ``used_grams`` the run's actual use (default: the estimate, or a share of it for an unfinished run). ``content_hash`` may repeat an earlier
        archive's hash: a second archive of the same file. With ``usage`` a usage row is written for the
        first spool assigned to the printer and the spool's ``weight_used`` grows, as the usage tracker does.
        """
        with self.lock:
            machine = self.printer(printer)
            finished = at or self.now()
            if reprint_of is not None:
                archive = self.archives[reprint_of]
                print_name = print_name or archive["print_name"]
                estimate = archive["filament_used_grams"]
                duration_s = duration_s or archive["print_time_seconds"]
            else:
                archive_id = self._next_id(self.archives)
                print_name = print_name or f"Part {archive_id}"
                stem = print_name.replace(" ", "_")
                filename = filename or f"{stem}.gcode.3mf"
                estimate = round(grams, 1) if grams is not None else 12.5
                duration_s = duration_s or 2700
                archive = {
                    **ARCHIVE_DEFAULTS,
                    "id": archive_id,
                    "printer_id": machine["id"],
                    "filename": filename,
                    "file_path": f"archives/{archive_id}/{filename}",
                    "file_size": 180_000 + archive_id * 37,
                    "content_hash": content_hash or stable_hex("content", filename, archive_id, length=64),
                    "thumbnail_path": f"archives/{archive_id}/thumbnail.png" if thumbnail else None,
                    "source_3mf_path": f"archives/{archive_id}/{filename}",
                    "print_name": print_name,
                    "print_time_seconds": duration_s,
                    "filament_used_grams": estimate,
                    "filament_type": filament_type,
                    "filament_color": filament_color,
                    "total_layers": max(10, duration_s // 30),
                    "sliced_for_model": machine.get("model"),
                    "extra_data": {
                        "filament_slots": [
                            {"slot_id": 1, "used_g": estimate, "type": filament_type, "color": filament_color}
                        ]
                    },
                    # Archives carry 1-second resolution timestamps.
                    "created_at": (finished - timedelta(seconds=duration_s)).replace(microsecond=0),
                }
                self.archives[archive_id] = archive
                if thumbnail:
                    self.thumbnails[archive_id] = tiny_png(archive["content_hash"])
            if used_grams is None:
                used_grams = (
                    estimate if status == "completed" else round((estimate or 0) * PARTIAL_RUN_SHARE, 1)
                )
            started = finished - timedelta(seconds=duration_s or 0)
            archive.update(
                status=status,
                started_at=started,
                completed_at=finished,
                failure_reason=failure_reason if status == "failed" else None,
            )
            run = {
                **PRINT_LOG_DEFAULTS,
                "id": self._next_id(self.print_log),
                "archive_id": archive["id"],
                "print_name": print_name,
                "printer_name": machine["name"],
                "printer_id": machine["id"],
                "status": status,
                "started_at": started,
                "completed_at": finished,
                "duration_seconds": duration_s,
                "filament_type": archive["filament_type"],
                "filament_color": archive["filament_color"],
                "filament_used_grams": used_grams,
                "failure_reason": archive["failure_reason"],
                "thumbnail_path": archive["thumbnail_path"],
                # The print log stores created_at in whole seconds.
                "created_at": finished.replace(microsecond=0),
            }
            self.print_log[run["id"]] = run
            if usage:
                slots = sorted(
                    (a for a in self.assignments.values() if a["printer_id"] == machine["id"]),
                    key=lambda a: (a["ams_id"], a["tray_id"]),
                )
                if slots and used_grams:
                    self.add_usage(
                        slots[0]["spool_id"],
                        used_grams,
                        printer_id=machine["id"],
                        print_name=print_name,
                        status=status,
                        archive_id=archive["id"],
                        at=finished,
                    )
            return dict(run)

    def add_upload(
        self,
        print_name: str,
        *,
        filename: str | None = None,
        content_hash: str | None = None,
        thumbnail: bool = True,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A manual upload: an archive with status ``archived`` and no print-log run (not a print)."""
        with self.lock:
            archive_id = self._next_id(self.archives)
            filename = filename or f"{print_name.replace(' ', '_')}.3mf"
            archive = {
                **ARCHIVE_DEFAULTS,
                "id": archive_id,
                "filename": filename,
                "file_path": f"archives/{archive_id}/{filename}",
                "file_size": 150_000 + archive_id * 41,
                "content_hash": content_hash or stable_hex("content", filename, archive_id, length=64),
                "thumbnail_path": f"archives/{archive_id}/thumbnail.png" if thumbnail else None,
                "print_name": print_name,
                "status": "archived",
                "created_at": (at or self.now()).replace(microsecond=0),
            }
            self.archives[archive_id] = archive
            if thumbnail:
                self.thumbnails[archive_id] = tiny_png(archive["content_hash"])
            return archive

    def delete_archive(self, archive_id: int, *, hard: bool = False) -> None:
        """Soft delete hides the archive (404, not listed); hard delete removes it and nulls print-log links."""
        with self.lock:
            if hard:
                for run in self.index().runs_by_archive.get(archive_id, []):
                    if run["archive_id"] == archive_id:
                        run["archive_id"] = None
                del self.archives[archive_id]
                self.thumbnails.pop(archive_id, None)
                self._index = None
            else:
                self.archives[archive_id]["deleted_at"] = utcnow()

    def visible_archive(self, archive_id: int) -> dict[str, Any] | None:
        with self.lock:
            archive = self.archives.get(archive_id)
            return archive if archive is not None and archive["deleted_at"] is None else None

    def update_archive(self, archive_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH semantics: write only the fields sent; status/failure_reason also go to the latest run."""
        with self.lock:
            archive = self.archives[archive_id]
            archive.update(changes)
            if "status" in changes or "failure_reason" in changes:
                runs = self._archive_runs(archive_id)
                if runs:
                    latest = max(runs, key=lambda r: (r["created_at"], r["id"]))
                    for key in ("status", "failure_reason"):
                        if key in changes:
                            latest[key] = changes[key]
            return archive

    def list_archives(
        self,
        *,
        printer_id: int | None = None,
        project_id: int | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Visible archives, created_at descending.

        Assumption: rows created in the same second keep id order (ascending), which is what SQLite's sort
        does with the rowid scan; Bambuddy gives no tiebreaker.
        """
        with self.lock:
            index = self.index()
            low = 0 if date_from is None else bisect_left(index.archive_times, date_from)
            high = len(index.archives) if date_to is None else bisect_left(index.archive_times, date_to)
            return [
                a
                for a in reversed(index.archives[low:high])
                if a["deleted_at"] is None
                and (printer_id is None or a["printer_id"] == printer_id)
                and (project_id is None or a["project_id"] == project_id)
            ]

    def list_print_log(
        self,
        *,
        status: str | None = None,
        printer_id: int | None = None,
        search: str | None = None,
        created_by_username: str | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        archive_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The runs matching every filter given, in the server's order (see :meth:`order_print_log`)."""
        with self.lock:
            if archive_id is not None:
                candidates = self.order_print_log(self._archive_runs(archive_id))
            elif self.print_log_order == "start_time":
                candidates = self._runs_by_start()
            else:
                candidates = self._runs_created(date_from, date_to)[::-1]
            return [
                r
                for r in candidates
                if (status is None or r["status"] == status)
                and (printer_id is None or r["printer_id"] == printer_id)
                and (search is None or search.lower() in (r["print_name"] or "").lower())
                and (created_by_username is None or r["created_by_username"] == created_by_username)
                and (date_from is None or r["created_at"] >= date_from)
                and (date_to is None or r["created_at"] <= date_to)
            ]

    def print_log_page(
        self,
        offset: int,
        limit: int,
        *,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        **filters: Any,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of :meth:`list_print_log` and the total it pages through.

        The common read (the released order, a window on created_at, no other filter) slices the index
        without copying the log: a reader paging through N runs costs N, not N squared."""
        with self.lock:
            filtered = any(v is not None for v in filters.values())
            if self.print_log_order == "start_time":
                if filtered or date_from is not None or date_to is not None:
                    rows = self.list_print_log(date_from=date_from, date_to=date_to, **filters)
                    return rows[offset : offset + limit], len(rows)
                ordered = self._runs_by_start()
                return ordered[offset : offset + limit], len(ordered)
            if filtered:
                rows = self.list_print_log(date_from=date_from, date_to=date_to, **filters)
                return rows[offset : offset + limit], len(rows)
            low, high = self._created_range(date_from, date_to)
            end = high - offset
            page = self.index().runs[max(low, end - limit) : end] if end > low else []
            return page[::-1], high - low

    def _runs_created(self, date_from: datetime | None, date_to: datetime | None) -> list[dict[str, Any]]:
        """Runs with date_from <= created_at <= date_to, oldest first (ties: descending id)."""
        low, high = self._created_range(date_from, date_to)
        return self.index().runs[low:high]

    def _created_range(self, date_from: datetime | None, date_to: datetime | None) -> tuple[int, int]:
        """Where date_from <= created_at <= date_to starts and ends in the index's runs (bisected)."""
        index = self.index()
        low = 0 if date_from is None else bisect_left(index.run_times, date_from)
        high = len(index.runs) if date_to is None else bisect_right(index.run_times, date_to)
        return low, max(low, high)

    def _runs_by_start(self) -> list[dict[str, Any]]:
        index = self.index()
        if index.runs_by_start is None:
            index.runs_by_start = self.order_print_log(list(self.print_log.values()))
        return index.runs_by_start

    def _archive_runs(self, archive_id: int) -> list[dict[str, Any]]:
        """The runs of one archive, in the order they were recorded."""
        return [r for r in self.index().runs_by_archive.get(archive_id, []) if r["archive_id"] == archive_id]

    def order_print_log(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The server's order (bambuddy-api.md §2.5): the released one sorts on created_at alone and SQLite
        returns tied rows in ascending id; the next release sorts on coalesce(started_at, created_at), id."""
        if self.print_log_order == "start_time":
            return sorted(rows, key=lambda r: (r["started_at"] or r["created_at"], r["id"]), reverse=True)
        by_id = sorted(rows, key=lambda r: r["id"])
        return sorted(by_id, key=lambda r: r["created_at"], reverse=True)

    # ----------------------------------------------------------------- spools

    def create_spool(self, data: dict[str, Any]) -> dict[str, Any]:
        """A new spool from validated create fields; tag_uid is stored exactly as sent, duplicates allowed."""
        with self.lock:
            now = utcnow()
            spool = {
                **SPOOL_DEFAULTS,
                **data,
                "id": self._next_id(self.spools),
                "k_profiles": [],
                "created_at": now,
                "updated_at": now,
            }
            self.spools[spool["id"]] = spool
            return spool

    def update_spool(self, spool_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH: setting ``weight_used`` locks the weight unless ``weight_locked`` is sent too."""
        with self.lock:
            spool = self.spools[spool_id]
            changes = dict(changes)
            if "weight_used" in changes and "weight_locked" not in changes:
                changes["weight_locked"] = True
            spool.update(changes)
            spool["updated_at"] = utcnow()
            return spool

    def set_spool_archived(self, spool_id: int, archived: bool) -> dict[str, Any]:
        with self.lock:
            spool = self.spools[spool_id]
            spool["archived_at"] = utcnow() if archived else None
            spool["updated_at"] = utcnow()
            return spool

    def delete_spool(self, spool_id: int) -> None:
        with self.lock:
            del self.spools[spool_id]
            for key in [k for k, a in self.assignments.items() if a["spool_id"] == spool_id]:
                del self.assignments[key]

    def list_spools(self, include_archived: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            rows = [s for s in self.spools.values() if include_archived or s["archived_at"] is None]
            rows.sort(key=lambda s: (s["id"],))
            rows.sort(
                key=lambda s: (_sort_key(s["material"]), _sort_key(s["brand"]), _sort_key(s["color_name"]))
            )
            return rows

    def find_spool_by_tag(
        self, tag_uid: str | None = None, tray_uuid: str | None = None, include_archived: bool = False
    ) -> dict[str, Any] | None:
        """by-tag: tray_uuid first, then tag_uid, comparing upper-cased stored values to the normalised query."""
        with self.lock:
            candidates = sorted(
                (s for s in self.spools.values() if include_archived or s["archived_at"] is None),
                key=lambda s: s["id"],
            )
            if tray_uuid and (wanted := normalize_tray_uuid(tray_uuid)):
                for spool in candidates:
                    if (spool["tray_uuid"] or "").upper() == wanted:
                        return spool
            if tag_uid and (wanted := normalize_tag_uid(tag_uid)):
                for spool in candidates:
                    if (spool["tag_uid"] or "").upper() == wanted:
                        return spool
        return None

    # ----------------------------------------------------------------- assignments and usage

    def assign_spool(
        self, spool_id: int, printer_id: int, ams_id: int = 0, tray_id: int = 0
    ) -> dict[str, Any]:
        """Put a spool in a slot; the slot's previous assignment (one per printer/AMS/tray) is replaced."""
        with self.lock:
            if spool_id not in self.spools or printer_id not in self.printers:
                raise KeyError(spool_id if spool_id not in self.spools else printer_id)
            self.unassign_spool(printer_id, ams_id, tray_id)
            spool = self.spools[spool_id]
            record = {
                **ASSIGNMENT_DEFAULTS,
                "id": self._next_id(self.assignments),
                "spool_id": spool_id,
                "printer_id": printer_id,
                "ams_id": ams_id,
                "tray_id": tray_id,
                "fingerprint_color": spool["rgba"],
                "fingerprint_type": spool["material"],
                "created_at": utcnow(),
            }
            self.assignments[record["id"]] = record
            return record

    def unassign_spool(self, printer_id: int, ams_id: int = 0, tray_id: int = 0) -> bool:
        """Empty a slot; True when something was assigned there."""
        with self.lock:
            keys = [
                k
                for k, a in self.assignments.items()
                if (a["printer_id"], a["ams_id"], a["tray_id"]) == (printer_id, ams_id, tray_id)
            ]
            for key in keys:
                del self.assignments[key]
            return bool(keys)

    def add_usage(
        self,
        spool_id: int,
        weight_used: float,
        *,
        printer_id: int | None = None,
        print_name: str | None = None,
        status: str = "completed",
        archive_id: int | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A usage-history row, as the tracker writes it after a print; the spool's weight_used grows too."""
        with self.lock:
            spool = self.spools[spool_id]
            grams = round(float(weight_used), 1)
            cost = round(grams / 1000.0 * spool["cost_per_kg"], 2) if spool["cost_per_kg"] else None
            at = at or self.now()
            row = {
                **USAGE_DEFAULTS,
                "id": self._next_id(self.usage),
                "spool_id": spool_id,
                "printer_id": printer_id,
                "print_name": print_name,
                "weight_used": grams,
                "percent_used": round(grams / spool["label_weight"] * 100) if spool["label_weight"] else 0,
                "status": status,
                "cost": cost,
                "archive_id": archive_id,
                "created_at": at,
            }
            self.usage[row["id"]] = row
            spool["weight_used"] = round(spool["weight_used"] + grams, 1)
            spool["last_used"] = at
            spool["updated_at"] = at
            return row

    def list_usage(
        self, *, limit: int = 100, printer_id: int | None = None, spool_id: int | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            rows = [
                u
                for u in self.usage.values()
                if (printer_id is None or u["printer_id"] == printer_id)
                and (spool_id is None or u["spool_id"] == spool_id)
            ]
            rows.sort(key=lambda u: (u["created_at"], u["id"]), reverse=True)
            return rows[: max(limit, 0)]

    # ----------------------------------------------------------------- response shapes

    def printer_json(self, printer: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in printer.items() if k not in ("created_at", "updated_at", "access_code")},
            "created_at": iso(printer["created_at"]),
            "updated_at": iso(printer["updated_at"]),
        }

    def spool_json(self, spool: dict[str, Any], *, z_fields: tuple[str, ...] = ()) -> dict[str, Any]:
        """SpoolResponse; ``z_fields`` come back with a Z suffix, as right after the write that set them."""
        out: dict[str, Any] = {"id": spool["id"]}
        for key, value in spool.items():
            if isinstance(value, datetime):
                out[key] = iso(value) + "Z" if key in z_fields else iso(value)
            else:
                out[key] = value
        out["k_profiles"] = list(spool.get("k_profiles") or [])
        return out

    def assignment_json(self, assignment: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            printer = self.printers.get(assignment["printer_id"])
            spool = self.spools.get(assignment["spool_id"])
            return {
                "id": assignment["id"],
                "spool_id": assignment["spool_id"],
                "printer_id": assignment["printer_id"],
                "printer_name": printer["name"] if printer else None,
                "ams_id": assignment["ams_id"],
                "tray_id": assignment["tray_id"],
                "fingerprint_color": assignment["fingerprint_color"],
                "fingerprint_type": assignment["fingerprint_type"],
                "created_at": iso(assignment["created_at"]),
                "spool": self.spool_json(spool) if spool else None,
                "configured": assignment["configured"],
                "pending_config": assignment["pending_config"],
                "ams_label": None,
            }

    @staticmethod
    def usage_json(row: dict[str, Any]) -> dict[str, Any]:
        """The usage row without ``archive_id``: the column exists but the API leaves it out."""
        return {
            "id": row["id"],
            "spool_id": row["spool_id"],
            "printer_id": row["printer_id"],
            "print_name": row["print_name"],
            "weight_used": row["weight_used"],
            "percent_used": row["percent_used"],
            "status": row["status"],
            "cost": row["cost"],
            "created_at": iso(row["created_at"]),
        }

    @staticmethod
    def print_log_json(row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": row["id"]}
        out.update((k, iso(v) if isinstance(v, datetime) else v) for k, v in row.items())
        return out

    def archives_json(self, archives: list[dict[str, Any]], *, detail: bool = False) -> list[dict[str, Any]]:
        """ArchiveResponse for each archive, with run aggregates and duplicate fields computed once per call."""
        with self.lock:
            index = self.index()
            out = []
            for archive in archives:
                same = index.archives_by_hash.get(archive["content_hash"] or "", [])
                live = {archive["content_hash"] or "": [a for a in same if a["deleted_at"] is None]}
                out.append(self._archive_json(archive, self._archive_runs(archive["id"]), live, detail))
            return out

    def _archive_json(
        self,
        archive: dict[str, Any],
        runs: list[dict[str, Any]],
        by_hash: dict[str, list[dict[str, Any]]],
        detail: bool,
    ) -> dict[str, Any]:
        same = by_hash.get(archive["content_hash"] or "", [])
        others = [a for a in same if a["id"] != archive["id"]]
        started, completed = archive["started_at"], archive["completed_at"]
        actual = int((completed - started).total_seconds()) if started and completed else None
        estimate = archive["print_time_seconds"]
        out = {"id": archive["id"], **{k: v for k, v in archive.items() if k != "deleted_at"}}
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = iso(value)
        out.update(
            {
                "project_name": None,
                # Assumption: duplicates are the other live archives with the same content_hash, match "exact";
                # the sequence is the 1-based position by id and the original is the oldest of them.
                "duplicates": [
                    {
                        "id": a["id"],
                        "print_name": a["print_name"],
                        "created_at": iso(a["created_at"]),
                        "match_type": "exact",
                    }
                    for a in others
                ]
                if detail
                else None,
                "duplicate_count": len(others),
                "duplicate_sequence": [a["id"] for a in same].index(archive["id"]) + 1 if others else None,
                "original_archive_id": same[0]["id"] if others and same[0]["id"] != archive["id"] else None,
                "actual_time_seconds": actual,
                # Assumption: time_accuracy is the estimate as a percentage of the actual time, one decimal.
                "time_accuracy": round(estimate / actual * 100, 1) if estimate and actual else None,
                "created_by_username": None,
                "run_count": len(runs),
                "last_run_at": iso(max(r["created_at"] for r in runs)) if runs else None,
                "total_filament_actual_grams": round(sum(r["filament_used_grams"] or 0 for r in runs), 1),
                "successful_run_count": sum(1 for r in runs if r["status"] == "completed"),
                "failed_run_count": sum(1 for r in runs if r["status"] == "failed"),
            }
        )
        return out
