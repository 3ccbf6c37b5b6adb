"""Functions on the SQLite default must start without importing grpc or the Firestore client."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from farmsync.settings import load_settings
from farmsync.store import open_store
store = open_store(load_settings('/dev/null', data_dir=sys.argv[1]))
store.check()
heavy = sorted(m for m in sys.modules if m.startswith(('grpc', 'google.cloud.firestore', 'google.api_core')))
print(','.join(heavy))
"""


def test_sqlite_store_does_not_import_grpc_or_firestore(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


NOTIFY_CODE = """
import asyncio, sys
from farmsync.settings import load_settings
from farmsync.services import Services
import farmsync.web.handlers.prints, farmsync.web.handlers.filament, farmsync.prints.service, farmsync.filament.service
services = Services(load_settings('/dev/null', data_dir=sys.argv[1], notify_url=sys.argv[2]))
print('farmsync.notify' in sys.modules, services.settings.notifies('parked'))
"""


def test_ticks_with_notifications_off_do_not_import_notify(tmp_path) -> None:
    """#17 target 7: the webhook's and the ticks' cold start does not pay for farmsync.notify unless NOTIFY_URL
    is set (the services still register the URL's secret parts, from farmsync.security)."""

    def run(url: str) -> str:
        args = [sys.executable, "-c", NOTIFY_CODE, str(tmp_path), url]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()

    assert run("") == "False False"
    assert run("https://ntfy.example.test/farm-topic-123") == "False True"
