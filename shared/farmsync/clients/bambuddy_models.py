"""What farmsync reads from Bambuddy (see /work/shared/reference/bambuddy-api.md).

Models are liberal: unknown fields are ignored and almost everything is nullable, because Bambuddy adds fields
often and fills few of them for manual uploads. Times are aware UTC (:mod:`farmsync.clients.timeutil`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from farmsync.clients.parsing import FloatOrZero, IntOrZero
from farmsync.clients.timeutil import UtcDatetime

SUCCESS_STATUS = "completed"
"""The only archive / print-log status that means "a good print came off the plate"."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class FilamentSlot(_Model):
    """One filament of a multi-colour print, from ``extra_data.filament_slots`` (grams from the 3MF)."""

    slot_id: int | None = None
    used_g: float | None = None
    type: str | None = None
    color: str | None = None


class Archive(_Model):
    """A print archive (``/archives/``). One archive can stand for several runs (``run_count``)."""

    id: int
    printer_id: int | None = None
    project_id: int | None = None
    project_name: str | None = None
    filename: str | None = None
    file_path: str | None = None
    file_size: int | None = None
    content_hash: str | None = None
    thumbnail_path: str | None = None
    print_name: str | None = None
    plate_id: int | None = None
    print_time_seconds: int | None = None
    actual_time_seconds: int | None = None
    filament_used_grams: float | None = None
    filament_type: str | None = None
    filament_color: str | None = None
    layer_height: float | None = None
    total_layers: int | None = None
    nozzle_diameter: float | None = None
    sliced_for_model: str | None = None
    status: str | None = None
    started_at: UtcDatetime = None
    completed_at: UtcDatetime = None
    created_at: UtcDatetime = None
    extra_data: dict[str, Any] | None = None
    makerworld_url: str | None = None
    designer: str | None = None
    external_url: str | None = None
    is_favorite: bool | None = None
    tags: str | None = None
    notes: str | None = None
    cost: float | None = None
    failure_reason: str | None = None
    quantity: int | None = 1
    duplicates: list[dict[str, Any]] | None = None
    duplicate_count: int | None = None
    created_by_username: str | None = None
    run_count: int | None = None
    last_run_at: UtcDatetime = None
    total_filament_actual_grams: float | None = None
    successful_run_count: int | None = None
    failed_run_count: int | None = None

    @property
    def is_success(self) -> bool:
        return self.status == SUCCESS_STATUS

    @property
    def display_name(self) -> str:
        """``print_name``, else the file name without its ``.gcode.3mf``/``.3mf``/``.gcode`` suffix."""
        if self.print_name:
            return self.print_name
        name = (self.filename or "").rsplit("/", 1)[-1]
        for suffix in (".gcode.3mf", ".3mf", ".gcode"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name or f"archive {self.id}"

    @property
    def filament_slots(self) -> list[FilamentSlot]:
        """The per-filament grams breakdown; empty when Bambuddy did not record one."""
        raw = (self.extra_data or {}).get("filament_slots")
        if not isinstance(raw, list):
            return []
        return [FilamentSlot.model_validate(item) for item in raw if isinstance(item, dict)]


class PrintLogEntry(_Model):
    """One physical run (``/print-log/``), kept even when its archive is deleted (``archive_id`` null)."""

    id: int
    archive_id: int | None = None
    print_name: str | None = None
    printer_name: str | None = None
    printer_id: int | None = None
    status: str | None = None
    started_at: UtcDatetime = None
    completed_at: UtcDatetime = None
    duration_seconds: int | None = None
    filament_type: str | None = None
    filament_color: str | None = None
    filament_used_grams: float | None = None
    cost: float | None = None
    energy_kwh: float | None = None
    energy_cost: float | None = None
    failure_reason: str | None = None
    thumbnail_path: str | None = None
    created_by_id: int | None = None
    created_by_username: str | None = None
    created_at: UtcDatetime = None

    @property
    def is_success(self) -> bool:
        return self.status == SUCCESS_STATUS


class PrintLogPage(_Model):
    """One page of ``/print-log/``: ``total`` counts every match of the filter, not just this page."""

    items: list[PrintLogEntry] = Field(default_factory=list)
    total: IntOrZero = 0


class Printer(_Model):
    id: int
    name: str
    serial_number: str | None = None
    ip_address: str | None = None
    model: str | None = None
    location: str | None = None
    is_active: bool | None = None
    nozzle_count: int | None = None
    created_at: UtcDatetime = None
    updated_at: UtcDatetime = None


class Spool(_Model):
    """A spool of Bambuddy's built-in inventory. There is no ``remaining`` field: see :attr:`remaining_grams`."""

    id: int
    material: str | None = None
    subtype: str | None = None
    brand: str | None = None
    color_name: str | None = None
    rgba: str | None = None
    extra_colors: str | None = None
    effect_type: str | None = None
    label_weight: float | None = None
    core_weight: float | None = None
    weight_used: float | None = None
    weight_locked: bool | None = None
    slicer_filament: str | None = None
    slicer_filament_name: str | None = None
    nozzle_temp_min: int | None = None
    nozzle_temp_max: int | None = None
    note: str | None = None
    cost_per_kg: float | None = None
    category: str | None = None
    storage_location: str | None = None
    location_id: int | None = None
    tag_uid: str | None = None
    tray_uuid: str | None = None
    data_origin: str | None = None
    tag_type: str | None = None
    last_used: UtcDatetime = None
    archived_at: UtcDatetime = None
    created_at: UtcDatetime = None
    updated_at: UtcDatetime = None

    @property
    def remaining_grams(self) -> float:
        """What Bambuddy's UI shows: ``max(0, label_weight - weight_used)``."""
        return max(0.0, (self.label_weight or 0.0) - (self.weight_used or 0.0))

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class SpoolWrite(_Model):
    """Fields for ``POST``/``PATCH /inventory/spools``. Only fields that were set are sent (null clears).

    Setting ``weight_used`` makes Bambuddy set ``weight_locked=true`` unless ``weight_locked`` is sent too.
    """

    material: str | None = None
    subtype: str | None = None
    brand: str | None = None
    color_name: str | None = None
    rgba: str | None = None
    extra_colors: str | None = None
    effect_type: str | None = None
    label_weight: int | None = None
    core_weight: int | None = None
    weight_used: float | None = None
    weight_locked: bool | None = None
    slicer_filament: str | None = None
    slicer_filament_name: str | None = None
    nozzle_temp_min: int | None = None
    nozzle_temp_max: int | None = None
    note: str | None = None
    cost_per_kg: float | None = None
    category: str | None = None
    storage_location: str | None = None
    location_id: int | None = None
    tag_uid: str | None = None
    tray_uuid: str | None = None
    data_origin: str | None = None
    tag_type: str | None = None


class SpoolAssignment(_Model):
    """A spool in an AMS slot. ``ams_id`` 0–3 AMS, 128–135 AMS-HT, 254/255 external; ``tray_id`` 0–3."""

    id: int | None = None
    spool_id: int
    printer_id: int
    printer_name: str | None = None
    ams_id: int
    tray_id: int
    fingerprint_color: str | None = None
    fingerprint_type: str | None = None
    configured: bool | None = None
    pending_config: bool | None = None
    ams_label: str | None = None
    spool: Spool | None = None
    created_at: UtcDatetime = None


class UsageRecord(_Model):
    """A filament usage row (``/inventory/usage``): grams in ``weight_used``; no archive id in the API."""

    id: int
    spool_id: int
    printer_id: int | None = None
    print_name: str | None = None
    weight_used: FloatOrZero = 0.0
    percent_used: float | None = None
    status: str | None = None
    cost: float | None = None
    created_at: UtcDatetime = None


class BambuddyProbe(_Model):
    """What ``/validate`` learns from one look at Bambuddy.

    ``auth_enabled`` False means any key passes, so ``key_valid`` is None (cannot be known).
    """

    reachable: bool
    version: str | None = None
    auth_enabled: bool | None = None
    key_valid: bool | None = None
    has_print_log: bool | None = None
    problems: list[str] = Field(default_factory=list)
