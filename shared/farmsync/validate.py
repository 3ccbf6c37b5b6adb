"""``/validate`` and ``farmsync validate``: is every connection, id and template what the settings promise?

Each check says ok, a warning (works, but worth knowing: Bambuddy auth off means any key passes) or an error
(a sync would fail). Nothing here writes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farmsync.clients.bambuddy import WRITE_SCOPE_NAMES
from farmsync.errors import ConfigError, StoreError, UpstreamError, UpstreamNotFound
from farmsync.security import token_warnings
from farmsync.services import Services
from farmsync.settings import Settings

if TYPE_CHECKING:
    from farmsync.clients.bambuddy import BambuddyClient
    from farmsync.clients.inventree import InvenTreeClient
    from farmsync.gcode.config import PrinterConfig


class Checks:
    """Collects check results in the order they ran."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, level: str, message: str, **details: Any) -> None:
        self.items.append({"check": name, "level": level, "message": message, **details})

    @property
    def ok(self) -> bool:
        return not any(item["level"] == "error" for item in self.items)


async def _location(
    checks: Checks, inventree: InvenTreeClient, name: str, pk: int | None, *, required: bool
) -> None:
    if pk is None:
        if required:
            checks.add(name, "error", "not set")
        return
    try:
        location = await inventree.get_location(pk)
    except UpstreamNotFound:
        checks.add(name, "error", f"stock location {pk} does not exist")
        return
    if location.structural:
        checks.add(
            name,
            "error",
            f"stock location {pk} ({location.name}) is structural: stock cannot be placed there",
        )
    else:
        checks.add(name, "ok", f"stock location {pk} ({location.name})")


async def _category(
    checks: Checks, inventree: InvenTreeClient, name: str, pk: int | None, *, required: bool
) -> None:
    if pk is None:
        if required:
            checks.add(name, "error", "not set")
        return
    try:
        category = await inventree.get_category(pk)
    except UpstreamNotFound:
        checks.add(name, "error", f"part category {pk} does not exist")
        return
    if category.structural:
        checks.add(
            name,
            "error",
            f"part category {pk} ({category.name}) is structural: parts cannot be created there",
        )
    else:
        checks.add(name, "ok", f"part category {pk} ({category.name})")


async def _write_scopes(
    checks: Checks, bambuddy: BambuddyClient, settings: Settings, *, auth_enabled: bool | None
) -> None:
    """The Bambuddy writes the settings ask for need the key's write scopes (a 403 only shows at write time)."""
    needed = []
    if settings.sync_archive_external_link:
        needed.append(("archives", "the back-link from each archive to its InvenTree part"))
    if settings.filament_tracking_enabled:
        needed.append(("spools", "the spools farmsync creates and updates in Bambuddy"))
    for scope, purpose in needed:
        flag = WRITE_SCOPE_NAMES[scope]
        try:
            allowed = await bambuddy.has_write_scope(scope)
        except UpstreamError as exc:
            checks.add(f"bambuddy.scope.{scope}", "warning", f"could not check {flag}: {exc}")
            continue
        if allowed and auth_enabled is False:
            checks.add(f"bambuddy.scope.{scope}", "ok", f"Bambuddy auth is off: any key may write {scope}")
        elif allowed:
            checks.add(f"bambuddy.scope.{scope}", "ok", f"the API key may write {scope} ({flag})")
        else:
            checks.add(
                f"bambuddy.scope.{scope}",
                "error",
                f"the API key lacks {flag}: {purpose} cannot be written",
            )


def _bambu_printers(printers_file: Path) -> list[PrinterConfig]:
    """The Bambu printers of printers.yml (none when there is no such file)."""
    from farmsync.gcode.backends.base import Kind
    from farmsync.gcode.config import load_printers

    if not printers_file.exists():
        return []
    return [p for p in load_printers(printers_file) if p.kind is Kind.BAMBU]


async def bambu_printer_checks(
    checks: Checks, printers_file: Path, *, settings: Settings | None, timeout: float
) -> None:
    """Each Bambu printer of printers.yml, all at once: TLS handshake (and whether the certificate was verified),
    FTPS login, the mirror's card folder, MQTT login and print state. Other kinds are checked by their runs."""
    from farmsync.gcode.backends import bambu_backend_for
    from farmsync.gcode.backends.bambu import BambuBackend

    try:
        printers = await asyncio.to_thread(_bambu_printers, Path(printers_file))
    except ConfigError as exc:
        checks.add("printers.yml", "error", str(exc))
        return

    async def probe(printer: PrinterConfig) -> list[tuple[str, str, str]]:
        backend = bambu_backend_for(printer, timeout=timeout, settings=settings)
        assert isinstance(backend, BambuBackend)  # the printers are Bambu ones
        try:
            return await backend.probe()
        finally:
            await backend.aclose()

    results = await asyncio.gather(*(probe(p) for p in printers))
    for printer, found in zip(printers, results, strict=True):
        for check, level, message in found:
            checks.add(f"{printer.name} {check}", level, message)


async def run_validation(services: Services) -> dict[str, Any]:
    settings = services.settings
    checks = Checks()
    for line in token_warnings(settings):
        checks.add(line.split(" ", 1)[0], "warning", line)
    try:
        await services.store.check()
        checks.add("store", "ok", f"{settings.store_backend.value} store answers")
    except (
        StoreError
    ) as exc:  # a ConfigError (no credentials, unusable DATA_DIR) is not a check: exit 1 / 503
        checks.add("store", "error", str(exc))

    if settings.bambuddy_base_url:
        probe = await services.bambuddy().probe()
        if not probe.reachable:
            checks.add("bambuddy", "error", "; ".join(probe.problems) or "unreachable")
        elif probe.key_valid is False:
            checks.add("bambuddy", "error", "; ".join(probe.problems))
        elif probe.auth_enabled is False:
            checks.add(
                "bambuddy",
                "warning",
                "reachable, but Bambuddy auth is off: any API key is accepted, so the "
                "configured key was not checked",
                version=probe.version,
                print_log=probe.has_print_log,
            )
        else:
            checks.add(
                "bambuddy",
                "ok",
                "reachable and the API key is accepted",
                version=probe.version,
                print_log=probe.has_print_log,
            )
        if probe.reachable and probe.key_valid is not False:
            await _write_scopes(checks, services.bambuddy(), settings, auth_enabled=probe.auth_enabled)
        if probe.reachable and probe.has_print_log is False:
            checks.add("bambuddy.print_log", "warning", "no print log: prints are synced per archive")
    else:
        checks.add("bambuddy", "error", "BAMBUDDY_BASE_URL is not set")

    if settings.inventree_base_url:
        inventree = services.inventree()
        probe_it = await inventree.probe()
        if not probe_it.reachable or probe_it.token_valid is False:
            checks.add("inventree", "error", "; ".join(probe_it.problems) or "unreachable")
        else:
            level = "warning" if probe_it.problems else "ok"
            checks.add(
                "inventree",
                level,
                "; ".join(probe_it.problems) or "reachable and the token is accepted",
                version=probe_it.version,
                api_version=probe_it.api_version,
                parameter_layout=probe_it.parameter_layout,
            )
            try:
                await _category(
                    checks,
                    inventree,
                    "INVENTREE_PART_CATEGORY_ID",
                    settings.inventree_part_category_id,
                    required=True,
                )
                await _location(
                    checks,
                    inventree,
                    "INVENTREE_STOCK_LOCATION_ID",
                    settings.inventree_stock_location_id,
                    required=True,
                )
                for name in ("Weight", "PrintTime"):
                    template = await inventree.find_parameter_template(name)
                    if template is None:
                        checks.add(
                            f"template.{name}", "warning", f"no '{name}' parameter template: not written"
                        )
                    else:
                        checks.add(
                            f"template.{name}",
                            "ok",
                            f"template {template.pk} ({template.units or 'no units'})",
                        )
                if settings.filament_tracking_enabled:
                    await _category(
                        checks,
                        inventree,
                        "FILAMENT_PART_CATEGORY_ID",
                        settings.filament_part_category_id,
                        required=True,
                    )
                    await _location(
                        checks,
                        inventree,
                        "FILAMENT_STORAGE_LOCATION_ID",
                        settings.filament_storage_location_id,
                        required=settings.filament_return_unassigned_to_storage,
                    )
                    for prefix, pk in settings.filament_printer_location_map.items():
                        await _location(
                            checks, inventree, f"FILAMENT_PRINTER_LOCATION_MAP[{prefix}]", pk, required=True
                        )
            except UpstreamError as exc:
                checks.add("inventree", "error", str(exc))
    else:
        checks.add("inventree", "error", "INVENTREE_BASE_URL is not set")

    await bambu_printer_checks(
        checks, settings.gcode_printers_file, settings=settings, timeout=settings.http_timeout_seconds
    )
    return {"ok": checks.ok, "checks": checks.items}
