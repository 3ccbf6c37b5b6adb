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
