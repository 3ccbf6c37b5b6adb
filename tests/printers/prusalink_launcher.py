"""Start real PrusaLink 0.8 (``prusalink -f -c INI``) with its mDNS announcer switched off.

Run with the PrusaLink virtualenv's Python: ``python prusalink_launcher.py -f -c prusalink.ini``.

PrusaLink's ``ServiceDiscovery`` opens a Zeroconf socket on every interface and announces itself with
multicast. The test suite must only ever talk to 127.0.0.1, so this swaps that one class for a stub before
PrusaLink's own ``main()`` runs. Everything else (HTTP API, serial protocol, file storage) is unchanged.
"""

from __future__ import annotations

import logging
import sys


class _NoServiceDiscovery:
    """Stands in for ``prusa.link.service_discovery.ServiceDiscovery``: announces nothing."""

    def __init__(self, port: int) -> None:
        logging.getLogger(__name__).info("mDNS announcements disabled by farmsync tests (port %s)", port)

    def unregister(self) -> None:
        """Nothing was registered."""


def main() -> int:
    """Patch, then hand over to PrusaLink's own command line."""
    # __main__ first: it installs PrusaLink's logger class before the rest of the package is imported.
    from prusa.link.__main__ import main as prusalink_main
    from prusa.link.printer_adapter import prusa_link

    prusa_link.ServiceDiscovery = _NoServiceDiscovery  # type: ignore[assignment,misc]

    sys.argv[0] = "prusalink"
    return int(prusalink_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
