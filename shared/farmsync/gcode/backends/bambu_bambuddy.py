"""Printers that Bambuddy already knows, named in printers.yml by their Bambuddy name (``bambuddy: B1-X1-CARBON``).

Bambuddy's ``GET /printers/`` gives each printer's name, serial, IP address and model (bambuddy-api.md §5); it never
shows the LAN access code to API keys, so printers.yml keeps ``access_code``. Looked up once per back end, when the
printer is first contacted, so reading printers.yml needs no network.
"""

from __future__ import annotations

from typing import Any

from farmsync.errors import UpstreamNotFound, UpstreamValidation
from farmsync.gcode.backends.bambu_models import BambuTarget, Resolver


def bambuddy_resolver(name: str, printer_name: str, *, settings: Any = None) -> Resolver:
    """Find ``printer_name`` (case-insensitive) in Bambuddy's printer list: IP, serial and model."""

    async def resolve() -> BambuTarget:
        from farmsync.clients.bambuddy import BambuddyClient
        from farmsync.settings import load_settings

        s = settings or load_settings()
        if not s.bambuddy_base_url:
            raise UpstreamValidation(
                name, "GET", "/printers/", "bambuddy: set BAMBUDDY_BASE_URL to look it up"
            )
        async with BambuddyClient(
            s.bambuddy_base_url, s.bambuddy_api_key.get_secret_value(), timeout=s.http_timeout_seconds
        ) as client:
            printers = await client.printers()
        wanted = printer_name.casefold()
        for printer in printers:
            if printer.name.casefold() == wanted:
                if not printer.ip_address or not printer.serial_number:
                    raise UpstreamValidation(
                        name,
                        "GET",
                        "/printers/",
                        f"Bambuddy has no IP address or serial for {printer.name!r}",
                    )
                return BambuTarget(printer.ip_address, printer.serial_number.upper(), printer.model)
        known = ", ".join(p.name for p in printers) or "none"
        raise UpstreamNotFound(
            name, "GET", "/printers/", f"Bambuddy has no printer named {printer_name!r} (known: {known})"
        )

    return resolve
