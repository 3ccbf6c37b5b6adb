"""`farmsync serve`: every route on one port, a tick at start-up, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from farmsync_sim.server import SimFarm


def test_serve_syncs_on_startup_serves_routes_and_stops_on_sigterm(sim_farm: SimFarm, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ids = sim_farm.ids
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "FARMSYNC_ENV_FILE": "/dev/null",
        "BAMBUDDY_BASE_URL": sim_farm.bambuddy_url,
        "BAMBUDDY_API_KEY": sim_farm.api_key,
        "INVENTREE_BASE_URL": sim_farm.inventree_url,
        "INVENTREE_TOKEN": sim_farm.token,
        "INVENTREE_PART_CATEGORY_ID": str(ids["INVENTREE_PART_CATEGORY_ID"]),
        "INVENTREE_STOCK_LOCATION_ID": str(ids["INVENTREE_STOCK_LOCATION_ID"]),
        "SERVICE_API_TOKEN": "svc",
        "WEBHOOK_SHARED_SECRET": "hook",
        "SYNC_ON_STARTUP": "true",
        "POLL_INTERVAL_SECONDS": "3600",
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "farmsync.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                status = httpx.get(
                    f"{base}/sync/status", headers={"X-Service-Token": "svc"}, timeout=2
                ).json()
                if status.get("runs", {}).get("done") == 9:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert status.get("runs", {}).get("done") == 9, status
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert httpx.get(f"{base}/sync/status").status_code == 401
        assert "farmsync" in httpx.get(f"{base}/").text
        # Bambuddy's real webhook: the finish photo as base64 ``image``, a body of about 3.4 MB
        run = sim_farm.bambuddy.state.add_print("B2-P1S", print_name="Photo", content_hash="2" * 64)
        delivery = sim_farm.bambuddy.fire_webhook(
            f"{base}/webhooks/bambuddy", "hook", run["id"], photo_bytes=2_500_000
        )
        image = json.loads(delivery.request.content)["image"]
        assert delivery.status_code == 200 and len(delivery.request.content) > 3_300_000
        assert run["id"] in {i["run_id"] for i in delivery.json()["items"] if i["outcome"] == "synced"}
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    # uvicorn re-raises SIGTERM after its graceful shutdown (systemd counts that as a clean stop)
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "farmsync stopped cleanly" in output
    assert (
        "Traceback" not in output
        and sim_farm.token not in output
        and "svc" not in output.replace("service", "")
    )
    assert image[:64] not in output and image[-64:] not in output
