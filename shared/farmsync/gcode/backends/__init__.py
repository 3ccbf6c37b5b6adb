"""Printer back ends: one per API a printer speaks, all behind :class:`PrinterBackend`.

:func:`make_backend` turns one printers.yml entry into a back end; the engine never imports a back end module.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from farmsync.errors import ConfigError
from farmsync.gcode.backends.base import Kind, PrinterBackend, PrinterStatus, RemoteEntry, UploadResult
from farmsync.gcode.backends.common import Sleep, UploadVerificationError
from farmsync.gcode.backends.moonraker import MoonrakerBackend
from farmsync.gcode.backends.octoprint import OctoPrintBackend
from farmsync.gcode.backends.prusalink import PrusaLinkBackend
from farmsync.gcode.backends.prusalink_legacy import PrusaLinkLegacyBackend

__all__ = [
    "Kind",
    "MoonrakerBackend",
    "OctoPrintBackend",
    "PrinterBackend",
    "PrinterStatus",
    "PrusaLinkBackend",
    "PrusaLinkLegacyBackend",
    "RemoteEntry",
    "UploadResult",
    "UploadVerificationError",
    "bambu_backend_for",
    "make_backend",
    "normalise_host",
]


def normalise_host(name: str, host: str) -> str:
    """``host`` as a base URL: a bare ``192.168.0.2[:port]`` gets ``http://``; only http(s) is accepted."""
    host = host.strip()
    if "://" not in host:
        host = "http://" + host
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: host {host!r} is not an http(s) address")
    if parts.username or parts.password:
        raise ConfigError(f"{name}: put credentials in username/password/api_key, not in host")
    return host.rstrip("/")


def bambu_backend_for(printer: Any, *, timeout: float = 30.0, settings: Any = None) -> PrinterBackend:
    """A Bambu printer's back end (FTPS and MQTT modules are imported only here). ``settings`` (Bambuddy's URL
    and key) serve printers named by ``bambuddy``; None reads them from the environment when first needed."""
    from farmsync.gcode.backends.bambu import BambuBackend
    from farmsync.gcode.backends.bambu_bambuddy import bambuddy_resolver
    from farmsync.gcode.backends.bambu_models import FTP_PORT, MQTT_PORT

    if printer.access_code is None:
        raise ConfigError(f"{printer.name}: a Bambu printer needs access_code")
    resolve = (
        bambuddy_resolver(printer.name, printer.bambuddy, settings=settings) if printer.bambuddy else None
    )
    return BambuBackend(
        printer.name,
        access_code=printer.access_code.get_secret_value(),
        host=printer.host,
        serial=printer.serial,
        model=printer.printer_type,
        storage=printer.card_folder,
        ca_bundle=printer.ca_bundle,
        ftp_port=printer.ftp_port or FTP_PORT,
        mqtt_port=printer.mqtt_port or MQTT_PORT,
        timeout=timeout,
        resolve=resolve,
    )


def make_backend(
    name: str,
    kind: Kind | str,
    host: str,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    storage: str | None = None,
    timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
    listing_cache: MutableMapping[str, tuple[str, Any]] | None = None,
) -> PrinterBackend:
    """Build the back end for one printer.

    ``storage`` defaults per kind (``usb``, ``local``, ``local``, ``gcodes``). ``listing_cache`` (PrusaLink
    kinds) keeps folder listings with their ETags, so a caller that keeps one dict per printer across runs
    re-scans unchanged folders with 304s. Missing credentials raise :class:`ConfigError`.
    """
    try:
        kind = Kind(kind)
    except ValueError:
        raise ConfigError(
            f"{name}: unknown kind {kind!r} (one of {', '.join(k.value for k in Kind)})"
        ) from None
    if kind is Kind.BAMBU:
        raise ConfigError(
            f"{name}: Bambu printers are built from their printers.yml entry (bambu_backend_for)"
        )
    base = normalise_host(name, host)
    common: dict[str, Any] = {"timeout": timeout, "transport": transport, "sleep": sleep}
    if kind is Kind.PRUSALINK:
        secret = password or api_key
        if not secret:
            raise ConfigError(f"{name}: prusalink needs password (the PrusaLink password, also its API key)")
        return PrusaLinkBackend(
            name,
            base,
            password=secret,
            username=username or "maker",
            storage=storage or "usb",
            listing_cache=listing_cache,
            **common,
        )
    if kind is Kind.PRUSALINK_LEGACY:
        return PrusaLinkLegacyBackend(
            name,
            base,
            username=username,
            password=password,
            api_key=api_key,
            storage=storage or "local",
            listing_cache=listing_cache,
            **common,
        )
    if kind is Kind.OCTOPRINT:
        return OctoPrintBackend(name, base, api_key=api_key, storage=storage or "local", **common)
    return MoonrakerBackend(name, base, api_key=api_key, storage=storage or "gcodes", **common)


def backend_for(printer: Any, *, timeout: float = 30.0, listing_cache: Any = None) -> PrinterBackend:
    """The back end for one printers.yml entry (:class:`farmsync.gcode.config.PrinterConfig`)."""

    def secret(value: Any) -> str | None:
        return None if value is None else value.get_secret_value()

    if printer.kind is Kind.BAMBU:
        return bambu_backend_for(printer, timeout=timeout)

    return make_backend(
        name=printer.name,
        kind=printer.kind,
        host=printer.host,
        username=printer.username,
        password=secret(printer.password),
        api_key=secret(printer.api_key),
        storage=printer.storage.strip("/") if printer.storage else None,
        timeout=timeout,
        listing_cache=listing_cache,
    )
