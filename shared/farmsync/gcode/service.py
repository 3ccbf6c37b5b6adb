"""One G-code run, the same for ``farmsync gcode``, the scheduled tick and the routes (``POST /sync/gcode``).

Every run keeps its state in the project's store, so a command-line run and a tick on the same farm (or several
service instances) see each other's uploads: the upload manifest (:mod:`farmsync.gcode.store_manifest`), the
write guard's locks (:mod:`farmsync.gcode.guard`) and each printer's last result (:mod:`farmsync.gcode.status`).
The store is the one STORE_BACKEND names; its SQLite default (DATA_DIR/sync.sqlite3) needs no setup, so a
command-line user gets it without configuring anything. DATA_DIR also holds the cache of local file hashes.

:func:`mirror_printers` and :func:`pull_printers` are the runs themselves, given the printers and options (the command line picks
them from its flags); :func:`run_gcode` is the farm's run from settings (GCODE_*: the printers file, the master
folder, destination, relative-to, suffixes, concurrency, ignore-state, dry run (default on, GCODE_DRY_RUN) and
pull mode (GCODE_PULL, default off)), recorded for the status page; :func:`gcode_status` reads that page's data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farmsync import metrics
from farmsync.errors import InputError, StoreError
from farmsync.gcode.backends.base import PrinterBackend
from farmsync.gcode.config import PrinterConfig, load_printers
from farmsync.gcode.engine import BackendFactory, MirrorContext, MirrorListener, MirrorOptions, run_mirror
from farmsync.gcode.guard import WriteGuard
from farmsync.gcode.local import DIGEST_CACHE_FILE, DigestCache
from farmsync.gcode.old_manifest import import_old_manifests
from farmsync.gcode.report import ActionResult, MirrorReport, PrinterReport
from farmsync.gcode.status import read_status, record_status
from farmsync.gcode.store_manifest import StoreManifestStore
from farmsync.logs import action, get_logger, register_secrets
from farmsync.services import Services
from farmsync.settings import Settings
from farmsync.store.base import Store

# pulls import their modules when they run: a mirror run (the CLI's, a tick) never needs them
if TYPE_CHECKING:
    from farmsync.gcode.pull_report import PullReport
    from farmsync.gcode.status import GcodeReport

log = get_logger("gcode")

LISTING_CACHE = "gcode-listing-cache"


@dataclass(frozen=True)
class GcodeHome:
    """Where a G-code run keeps its state (the store, DATA_DIR) and how it reaches the printers."""

    store: Store
    data_dir: Path
    backend_factory: BackendFactory

    @classmethod
    def of(cls, services: Services) -> GcodeHome:
        return cls(services.sync_store, services.settings.data_dir, backend_factory(services))


async def _manifest(home: GcodeHome) -> tuple[StoreManifestStore, list[str]]:
    """The manifest in the store, after reading the old one into it (once); notes say what was read."""
    manifest = StoreManifestStore(home.store)
    return manifest, await asyncio.to_thread(import_old_manifests, home.data_dir, manifest)


def _digests(home: GcodeHome) -> DigestCache:
    return DigestCache(home.data_dir / DIGEST_CACHE_FILE)


async def mirror_printers(
    home: GcodeHome,
    printers: Sequence[PrinterConfig],
    source: Path,
    options: MirrorOptions,
    *,
    listener: MirrorListener | None = None,
    excluded: Sequence[PrinterConfig] = (),
    notes: Sequence[str] = (),
) -> MirrorReport:
    """Mirror ``source`` onto ``printers`` behind the store's write guard (see :func:`run_mirror`)."""
    manifest, imported = await _manifest(home)
    guard = WriteGuard(home.store)  # made before any printer is listed: its start time matters
    context = MirrorContext(home.backend_factory, manifest, guard, _digests(home), listener)
    try:
        return await run_mirror(
            printers, source, options, context, excluded=excluded, notes=[*notes, *imported]
        )
    finally:
        await guard.aclose()


async def pull_printers(
    home: GcodeHome,
    printers: Sequence[PrinterConfig],
    source: Path,
    options: MirrorOptions,
    *,
    excluded: Sequence[PrinterConfig] = (),
    notes: Sequence[str] = (),
) -> PullReport:
    """Copy printer-only files of ``printers`` into ``source`` (see :func:`run_pull`); no printer is written."""
    from farmsync.gcode.pull import run_pull

    manifest, imported = await _manifest(home)
    context = MirrorContext(home.backend_factory, manifest, digests=_digests(home))
    return await run_pull(printers, source, options, context, excluded=excluded, notes=[*notes, *imported])


# --- the farm's run, from settings -------------------------------------------------------------------------


def mirror_options(settings: Settings, *, dry_run: bool | None = None) -> MirrorOptions:
    """The engine's options from GCODE_* settings. An empty GCODE_DESTINATION means each printer's own
    ``destination`` key, else the storage root (as the command line does without ``-d``)."""
    return MirrorOptions(
        destination=settings.gcode_destination or None,
        relative_to=settings.gcode_relative_to,
        suffixes=tuple(settings.gcode_suffixes),
        dry_run=settings.gcode_dry_run if dry_run is None else dry_run,
        ignore_state=settings.gcode_ignore_state,
        concurrency=settings.gcode_concurrency,
    )


def load_farm(settings: Settings) -> list[PrinterConfig]:
    """printers.yml of GCODE_PRINTERS_FILE; its secrets are registered so no log line can carry them."""
    settings.require("gcode")
    printers = load_printers(settings.gcode_printers_file)
    register_secrets(
        secret.get_secret_value()
        for p in printers
        for secret in (p.password, p.api_key, p.access_code)
        if secret is not None
    )
    return printers


def backend_factory(services: Services) -> BackendFactory:
    """The real back ends, each printer keeping its folder listings (with ETags) for the life of the process,
    so a tick re-lists an unchanged Buddy folder with a 304."""
    caches: MutableMapping[str, Any] = services.state.setdefault(LISTING_CACHE, {})
    timeout = services.settings.http_timeout_seconds

    def build(printer: PrinterConfig) -> PrinterBackend:
        from farmsync.gcode.backends import backend_for

        return backend_for(printer, timeout=timeout, listing_cache=caches.setdefault(printer.name, {}))

    return build


async def run_gcode(
    services: Services,
    *,
    dry_run: bool | None = None,
    pull: bool | None = None,
    trigger: str = "tick",
    only: str | None = None,
) -> GcodeReport:
    """One mirror (or pull) run over every printer of the printers file, recorded for the status page.

    ConfigError when GCODE_SOURCE_DIR is unset or printers.yml is invalid (the router answers 503). ``only``
    names one printer of the file (the operator page's per-printer button); another name is a 422.
    """
    settings = services.settings
    started = time.monotonic()
    printers = await asyncio.to_thread(load_farm, settings)
    if only is not None:
        printers = [p for p in printers if p.name == only]
        if not printers:
            raise InputError(
                f"no printer named {only[:60]!r} in the printers file",
                field="printer",
                expected="the name of a printer in GCODE_PRINTERS_FILE",
                status_code=422,
            )
    assert settings.gcode_source_dir is not None  # load_farm required it
    options = mirror_options(settings, dry_run=dry_run)
    home = GcodeHome.of(services)
    report: GcodeReport
    if settings.gcode_pull if pull is None else pull:
        report = await pull_printers(home, printers, settings.gcode_source_dir, options)
    else:
        report = await mirror_printers(home, printers, settings.gcode_source_dir, options)
    metrics.run_duration("gcode", time.monotonic() - started)
    count_files(report)
    try:
        await record_status(home.store, report, trigger=trigger)
    except StoreError as exc:  # the run itself happened: report it, say the status page missed it
        log.error("gcode status not recorded: %s", exc)
        report.notes.append(f"status not recorded in the store: {exc}")
    if settings.notifies("gcode_failed"):  # farmsync.notify is loaded only when it has something to send
        from farmsync import notify

        await notify.gcode_failures(settings, services.store, report.printers)
    action(
        log,
        "gcode run finished",
        mode="mirror" if isinstance(report, MirrorReport) else report.mode,
        dry_run=report.dry_run,
        trigger=trigger,
        exit_code=report.exit_code,
    )
    return report


def count_files(report: GcodeReport) -> None:
    """Files and bytes per printer for /metrics: uploaded (new or replaced), deleted, failed writes."""
    if report.dry_run:
        return
    for printer in report.printers:
        if not isinstance(printer, PrinterReport):  # a pull's printer
            metrics.gcode_files(printer.name, "failed", len(printer.failures))
            continue
        uploaded = printer.count(op="upload", result=ActionResult.OK) + printer.count(
            op="replace", result=ActionResult.OK
        )
        metrics.gcode_files(printer.name, "uploaded", uploaded, printer.bytes_uploaded)
        metrics.gcode_files(printer.name, "deleted", printer.count(op="delete", result=ActionResult.OK))
        metrics.gcode_files(printer.name, "failed", len(printer.failures))


async def run_scheduled(services: Services) -> GcodeReport:
    """The scheduled tick (``farmsync serve``'s scheduler, ``farmsync tick gcode``, the function target)."""
    return await run_gcode(services, trigger="tick")


async def gcode_status(services: Services) -> dict[str, Any]:
    """Each printer's last result (``deferred`` ones also listed apart) and the last run (GET /gcode/status)."""
    return await read_status(services.store)
