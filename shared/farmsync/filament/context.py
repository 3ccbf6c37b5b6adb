"""One filament run's view of both systems, read once and kept current as the steps write.

Steps share a :class:`FilamentSync`: the InvenTree filament items (in stock, filament category and its
subcategories), every Bambuddy spool (archived ones too, so a retired spool is never re-created), the match
index, part facts and location checks, each read at most once per run. Writes update the view (a removal lowers
a quantity, a transfer changes a location), so later steps of the same run, dry or not, see what earlier steps
did or would have done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from farmsync.clients.bambuddy import BambuddyClient
from farmsync.clients.bambuddy_models import Spool, SpoolAssignment, UsageRecord
from farmsync.clients.inventree import InvenTreeClient
from farmsync.clients.inventree_models import StockItem
from farmsync.errors import UpstreamNotFound
from farmsync.filament.ledger import Ledger
from farmsync.filament.match import FilamentIndex, TagField, build_index
from farmsync.filament.parts import KNOWN_TEMPLATE_NAMES, PartInfo, part_info, template_names_needed
from farmsync.filament.writes import Executor
from farmsync.settings import Settings
from farmsync.store import AsyncStore

Hook = Callable[[str, str], None]
"""Called as ``hook(point, key)`` at crash-test points (``after_claim``, ``after_remove``, ``before_done``,
``spool_after_claim``, ``spool_after_create``); tests raise from it to stop a run dead."""


@dataclass(frozen=True)
class LocationCheck:
    """Whether stock can be moved into a location, and if not, why (in words a person can act on)."""

    pk: int
    ok: bool
    name: str | None = None
    problem: str | None = None


class FilamentSync:
    """Settings, store, clients, the executor and the run's view of both systems."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        bambuddy: BambuddyClient,
        inventree: InvenTreeClient,
        *,
        dry_run: bool,
        hook: Hook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bambuddy = bambuddy
        self.inventree = inventree
        self.dry_run = dry_run
        self.executor = Executor(bambuddy, inventree, dry_run=dry_run)
        self.hook: Hook = hook or (lambda point, key: None)
        self.items: dict[int, StockItem] = {}
        self.spools: dict[int, Spool] = {}
        self.index: FilamentIndex = FilamentIndex(source=self.source)
        self._parts: dict[int, PartInfo] = {}
        self._template_names: dict[int, str] | None = None
        self._template_lock = asyncio.Lock()
        self._locations: dict[int, LocationCheck] = {}
        self._assignments: list[SpoolAssignment] | None = None
        self._as_read: tuple[dict[int, StockItem], dict[int, Spool]] = ({}, {})
        self.usage_rows: list[UsageRecord] = []  # the usage window the usage step read
        self.ledger: Ledger | None = None  # InvenTree's usage markers seen this run (set by the usage step)
        self.loaded = False

    @property
    def source(self) -> TagField:
        return "tray_uuid" if self.settings.filament_batch_source == "tray_uuid" else "tag_uid"

    # --- reading ---------------------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read filament stock and spools and match them (once per run)."""
        if self.loaded:
            return
        category = self.settings.filament_part_category_id
        items = await self.inventree.list_stock(
            category=category, in_stock=True, part_detail=True, location_detail=True
        )
        spools = await self.bambuddy.spools(include_archived=True)
        self.items = {i.pk: i for i in items if i.quantity > 0}
        self.spools = {s.id: s for s in spools}
        self._as_read = (dict(self.items), dict(self.spools))
        self.reindex()
        self.loaded = True

    async def assignments(self) -> list[SpoolAssignment]:
        """Bambuddy's spool assignments (what each printer slot holds), read once per run."""
        if self._assignments is None:
            self._assignments = await self.bambuddy.assignments()
        return self._assignments

    def dry_view(self) -> FilamentSync:
        """A dry run over what this run read, reading nothing again and writing nothing (the page's status
        after a run). It starts from both systems as they are now: as read, when this run was dry (its planned
        writes did not happen), or with this run's writes in, when it was real."""
        view = FilamentSync(
            self.settings, self.store, self.bambuddy, self.inventree, dry_run=True, hook=self.hook
        )
        if self.loaded:
            items, spools = self._as_read if self.dry_run else (self.items, self.spools)
            view.items, view.spools, view._as_read = dict(items), dict(spools), (dict(items), dict(spools))
            view.reindex()
        view._parts, view._template_names = self._parts, self._template_names
        view._locations, view._assignments = self._locations, self._assignments
        view.usage_rows, view.ledger, view.loaded = self.usage_rows, self.ledger, self.loaded
        return view

    def reindex(self) -> None:
        self.index = build_index(self.items.values(), self.spools.values(), self.source)

    async def part(self, item: StockItem) -> PartInfo:
        """Spool facts of the item's part (parameters read once per part per run)."""
        if item.part not in self._parts:
            parameters = await self.inventree.part_parameters(item.part)
            names = await self.template_names() if template_names_needed(parameters) else None
            detail = item.part_detail
            self._parts[item.part] = part_info(
                item.part,
                parameters,
                names=names,
                units=detail.units if detail else None,
                name=(detail.full_name or detail.name) if detail else None,
            )
        return self._parts[item.part]

    async def prefetch_parts(self, items: Iterable[StockItem]) -> None:
        """Read the spool facts of many parts at once (one request each, concurrently, not in turn)."""
        first_of_part = {item.part: item for item in items if item.part not in self._parts}
        await asyncio.gather(*(self.part(item) for item in first_of_part.values()))

    async def prefetch_locations(self, checks: Iterable[tuple[int, str]]) -> None:
        """Check many target locations at once (``(pk, setting)`` pairs)."""
        wanted = {pk: setting for pk, setting in checks if pk not in self._locations}
        await asyncio.gather(*(self.location(pk, setting) for pk, setting in wanted.items()))

    async def template_names(self) -> dict[int, str]:
        """Template pk → name for the known names, for servers whose parameter rows omit ``template_detail``."""
        async with self._template_lock:  # concurrent part reads need the names once, not once each
            if self._template_names is None:
                found: dict[int, str] = {}
                for name in KNOWN_TEMPLATE_NAMES:
                    template = await self.inventree.find_parameter_template(name)
                    if template is not None:
                        found[template.pk] = template.name
                self._template_names = found
        return self._template_names

    async def location(self, pk: int, setting: str) -> LocationCheck:
        """Check a target location once per run: it must exist and must not be structural."""
        if pk not in self._locations:
            try:
                location = await self.inventree.get_location(pk)
            except UpstreamNotFound:
                check = LocationCheck(
                    pk, False, None, f"{setting}: location {pk} does not exist in InvenTree"
                )
            else:
                name = location.pathstring or location.name
                if location.structural:
                    problem = f"{setting}: location {pk} ({name}) is structural: InvenTree refuses to hold stock there"
                    check = LocationCheck(pk, False, name, problem)
                else:
                    check = LocationCheck(pk, True, name)
            self._locations[pk] = check
        return self._locations[pk]

    def location_name(self, pk: int) -> str | None:
        """A location's path as people know it, when this run has checked it already (no request)."""
        check = self._locations.get(pk)
        return check.name if check else None

    # --- keeping the view current ------------------------------------------------------------------------------
    def removed(self, pk: int, left: float, *, gone: bool) -> None:
        """A removal was made (or planned) leaving ``left`` stock units; ``gone``: the item was depleted."""
        item = self.items.get(pk)
        if item is None:
            return
        if gone or left <= 0:
            self.items.pop(pk, None)
        else:
            self.items[pk] = item.model_copy(update={"quantity": left})

    def moved(self, pk: int, location: int) -> None:
        item = self.items.get(pk)
        if item is not None:
            self.items[pk] = item.model_copy(update={"location": location, "location_detail": None})

    def spool_created(self, spool: Spool) -> None:
        self.spools[spool.id] = spool

    def spool_updated(self, spool: Spool) -> None:
        self.spools[spool.id] = spool

    def now(self) -> float:
        """The store's clock (tests move it by hand), for reading lease expiry without claiming."""
        return self.store.sync.clock()
