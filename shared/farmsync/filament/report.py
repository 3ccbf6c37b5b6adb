"""What a filament run and the status page tell their caller: one line per usage row, move and spool."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from farmsync.filament.match import Conflict
from farmsync.filament.writes import Write


class Outcome(StrEnum):
    APPLIED = "applied"  # written now
    PLANNED = "planned"  # dry run: this write would be made
    UNCHANGED = "unchanged"  # already as it should be
    SKIPPED = "skipped"  # not ours to do (status, below the minimum, already done), with a reason
    PENDING = "pending"  # not done yet: no matching spool, held by another run, waiting to retry, conflict
    FAILED = "failed"  # this attempt failed (retried with backoff), or a configuration problem blocks it
    PARKED = "parked"  # refused or failed too often: needs a person


FINISHED = frozenset({Outcome.APPLIED, Outcome.UNCHANGED, Outcome.SKIPPED, Outcome.PARKED})


class UsageLine(BaseModel):
    """One Bambuddy usage row and what happened to it."""

    usage_id: int
    spool_id: int
    status: str | None = None
    grams: float
    print_name: str | None = None
    stock_item: int | None = None
    batch: str | None = None
    outcome: Outcome
    reason: str | None = None
    error: str | None = None
    charged_grams: float | None = None
    depleted: bool = False
    recovered: bool = False

    @property
    def finished(self) -> bool:
        return self.outcome in FINISHED


class MoveLine(BaseModel):
    """One spool that Bambuddy says is loaded (or no longer loaded), and its InvenTree location."""

    stock_item: int | None = None
    batch: str | None = None
    spool_id: int | None = None
    printer: str | None = None
    slot: str | None = None
    from_location: int | None = None
    to_location: int | None = None
    outcome: Outcome
    reason: str | None = None
    error: str | None = None


class SpoolLine(BaseModel):
    """One InvenTree spool and its Bambuddy spool: created, updated or left alone."""

    batch: str | None = None
    stock_item: int | None = None
    spool_id: int | None = None
    action: str  # create | update
    changes: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome
    reason: str | None = None
    error: str | None = None


class LeftOut(BaseModel):
    """Usage of one spool that FILAMENT_USAGE_SUCCESS_STATUSES leaves out (failed, aborted, cancelled runs):
    Bambuddy counts these grams as used, InvenTree still holds them."""

    spool_id: int
    batch: str | None = None
    material: str | None = None
    color_name: str | None = None
    grams: float = 0.0
    rows: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)


class UsageReport(BaseModel):
    lines: list[UsageLine] = Field(default_factory=list)
    cursor_before: int = 0
    cursor_after: int = 0
    rows_read: int = 0
    left_out: list[LeftOut] = Field(default_factory=list)  # of this run's rows, per spool
    history_reads: int = 0  # InvenTree stock-history reads this run made to check for earlier removals
    warnings: list[str] = Field(default_factory=list)


class LocationsReport(BaseModel):
    lines: list[MoveLine] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)  # bad FILAMENT_PRINTER_LOCATION_MAP entries etc.
    warnings: list[str] = Field(default_factory=list)


class SpoolsReport(BaseModel):
    lines: list[SpoolLine] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class FilamentReport(BaseModel):
    """One run of some or all steps. ``writes`` lists what was written (or, in a dry run, would be)."""

    dry_run: bool
    trigger: str = "manual"
    steps: list[str] = Field(default_factory=list)
    usage: UsageReport | None = None
    locations: LocationsReport | None = None
    spools: SpoolsReport | None = None
    conflicts: list[Conflict] = Field(default_factory=list)
    writes: list[Write] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)  # a step that could not run at all
    seconds: float = 0.0
    bambuddy_requests: int = 0
    inventree_requests: int = 0
    names: dict[str, dict[int, str]] = Field(
        default_factory=dict
    )  # locations, stock_items, spools: id -> name

    def totals(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in ("usage", "locations", "spools"):
            step = getattr(self, name)
            if step is None:
                continue
            counts = {o.value: 0 for o in Outcome}
            for line in step.lines:
                counts[line.outcome.value] += 1
            out[name] = {k: v for k, v in counts.items() if v}
        return out

    @property
    def ok(self) -> bool:
        """No failed or parked line and no bad location (conflicts and pending rows are not errors)."""
        for name in ("usage", "locations", "spools"):
            step = getattr(self, name)
            if step is not None and any(
                line.outcome in (Outcome.FAILED, Outcome.PARKED) for line in step.lines
            ):
                return False
        return not self.errors and not (self.locations and self.locations.problems)

    def as_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "totals": self.totals(), "ok": self.ok}


class SpoolView(BaseModel):
    """One side or both of a spool, as the status page lists it."""

    model_config = ConfigDict(defer_build=True)  # built on first use: the status only, not the filament tick

    batch: str | None = None
    stock_item: int | None = None
    part: int | None = None
    part_name: str | None = None
    location: int | None = None
    location_name: str | None = None
    inventree_grams: float | None = None
    spool_id: int | None = None
    material: str | None = None
    color_name: str | None = None
    rgba: str | None = None  # RRGGBBAA, for the page's swatch
    tag_uid: str | None = None
    tray_uuid: str | None = None
    archived: bool = False
    bambuddy_remaining_grams: float | None = None
    drift_grams: float | None = None  # InvenTree minus Bambuddy remaining: informative only, never written
    depleted: str | None = None  # why the spool counts as used up (its InvenTree item ran out)


class LoadedSlot(BaseModel):
    """What one AMS slot holds, with the grams left (InvenTree's figure when the spool is matched)."""

    model_config = ConfigDict(defer_build=True)  # built on first use: the status only

    printer: str | None = None
    printer_id: int
    slot: str
    spool_id: int
    batch: str | None = None
    stock_item: int | None = None
    material: str | None = None
    color_name: str | None = None
    rgba: str | None = None  # RRGGBBAA, for the dashboard's swatch
    label_weight: float | None = None  # grams on the label, for the dashboard's bar
    grams_left: float | None = None
    grams_source: str  # inventree | bambuddy
    location: int | None = None
    target_location: int | None = None


class FilamentStatus(BaseModel):
    """``GET /filament/status``: matching, conflicts, pending usage and what each printer has loaded."""

    model_config = ConfigDict(defer_build=True)  # built on first use: the status only, not the filament tick

    tracking_enabled: bool
    dry_run_default: bool
    batch_source: str
    counts: dict[str, int] = Field(default_factory=dict)
    matched: list[SpoolView] = Field(default_factory=list)
    missing_in_bambuddy: list[SpoolView] = Field(default_factory=list)
    missing_in_inventree: list[SpoolView] = Field(default_factory=list)
    depleted: list[SpoolView] = Field(
        default_factory=list
    )  # no stock left in InvenTree: used up, not missing
    untagged_spools: list[int] = Field(default_factory=list)
    unidentified_items: list[int] = Field(default_factory=list)
    conflicts: list[Conflict] = Field(default_factory=list)
    pending_usage: list[UsageLine] = Field(default_factory=list)
    parked_usage: list[dict[str, Any]] = Field(default_factory=list)
    usage_left_out: list[LeftOut] = Field(default_factory=list)  # in the usage window read, per spool
    usage_left_out_note: str | None = None
    loaded: list[LoadedSlot] = Field(default_factory=list)
    location_problems: list[str] = Field(default_factory=list)
    usage_cursor: int = 0
    warnings: list[str] = Field(default_factory=list)
    last_run: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
