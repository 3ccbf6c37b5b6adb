"""The LAN gateway for real: Debian's nginx running deploy/lan/nginx/*, the six function targets under
functions-framework on loopback sharing one SQLite store, the simulated farm and a fake Moonraker, and the
timers' own tick script (deploy/lan/bin/farmsync-tick). Only the ports differ from a LAN install."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmsync_sim.server import SimFarm
from farmsync_sim.webhook import fire_webhook

ROOT = Path(__file__).resolve().parents[2]
LAN = ROOT / "deploy/lan"
TARGETS = ("app", "api", "webhook", "backfill_tick", "filament_tick", "gcode_tick")
TOKEN = "svc-token-for-tests"
SERVICE = {"X-Service-Token": TOKEN}
HOOK_SECRET = "hook-secret-for-tests"
pytestmark = pytest.mark.slow

# Which target serves each gateway route: stopping a target must turn exactly its routes into 502.
ROUTES: dict[str, list[tuple[str, str]]] = {
    "app": [("GET", "/"), ("GET", "/health"), ("GET", "/openapi.json")],
    "api": [
        ("GET", "/validate"),
        ("GET", "/sync/status"),
        ("POST", "/sync/archive/1"),
        ("POST", "/sync/backfill"),
        ("GET", "/filament/status"),
        ("POST", "/sync/filament"),
        ("POST", "/sync/filament/spools"),
        ("POST", "/sync/filament/locations"),
        ("POST", "/sync/filament/usage"),
        ("GET", "/gcode/status"),
        ("POST", "/sync/gcode"),
    ],
    "webhook": [("POST", "/webhooks/bambuddy")],
    "backfill_tick": [("POST", "/ticks/backfill")],
    "filament_tick": [("POST", "/ticks/filament")],
    "gcode_tick": [("POST", "/ticks/gcode")],
}


def require(tool: str, package: str) -> str:
    """The tool's path, or a loud failure naming the Debian package (never a skip)."""
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(
            f"{tool} is not installed: apt-get install -y --no-install-recommends {package}", pytrace=False
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(*procs: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop children and everything in their process groups (gunicorn's master and its worker): signal all
    first, then wait, so shutdowns overlap."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def render_nginx(prefix: Path, listen: int, ports: dict[str, int]) -> Path:
    """deploy/lan/nginx/farmsync.conf with loopback ports and logs under ``prefix``, inside an nginx.conf of its
    own (pid, logs, temp paths under tmp); farmsync-routes.conf is used unchanged. Returns the nginx.conf."""
    conf = prefix / "conf"
    (conf / "snippets").mkdir(parents=True)
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir()
    shutil.copy(LAN / "nginx/farmsync-routes.conf", conf / "snippets/farmsync-routes.conf")
    site = (LAN / "nginx/farmsync.conf").read_text(encoding="utf-8")
    for target, port in ports.items():
        site, n = re.subn(
            rf"(upstream farmsync_{target} \{{\s*server )127\.0\.0\.1:\d+;", rf"\g<1>127.0.0.1:{port};", site
        )
        assert n == 1, f"no upstream farmsync_{target} in farmsync.conf"
    site, n = re.subn(r"listen 8088;", f"listen 127.0.0.1:{listen};", site)
    assert n == 1
    site, n = re.subn(r"\n\s*listen \[::\]:8088;", "", site)
    assert n == 1
    site = site.replace("/var/log/nginx/", f"{prefix}/logs/")
    (conf / "farmsync.conf").write_text(site, encoding="utf-8")
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = conf / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # as root, workers must reach the temp dirs under tmp
        + f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\n    access_log {prefix}/logs/access.log;\n{temp}\n    include farmsync.conf;\n}}\n",
        encoding="utf-8",
    )
    return main


def nginx_test(nginx: str, prefix: Path, main: Path) -> None:
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(prefix), "-e", str(prefix / "logs/error.log"), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


class Gateway:
    """nginx plus the six targets, each a child in its own process group."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.nginx = require("nginx", "nginx")
        self.tmp = tmp
        self.env = env
        self.ports = {target: free_port() for target in TARGETS}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = {target: tmp / f"{target}.log" for target in TARGETS}

    def start(self) -> Gateway:
        for target in TARGETS:
            with self.logs[target].open("wb") as log:
                self.procs[target] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "functions_framework",
                        f"--target={target}",
                        f"--source={ROOT / 'functions/main.py'}",
                        "--host=127.0.0.1",
                        f"--port={self.ports[target]}",
                    ],
                    cwd=self.tmp,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        prefix = self.tmp / "nginx"
        main = render_nginx(prefix, self.port, self.ports)
        nginx_test(self.nginx, prefix, main)
        command = [self.nginx, "-p", str(prefix), "-e", str(prefix / "logs/error.log"), "-c", str(main)]
        with (prefix / "logs/stderr.log").open("wb") as log:
            self.procs["nginx"] = subprocess.Popen(
                [*command, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.access_log = prefix / "logs/farmsync.access.log"
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {**{t: f"http://127.0.0.1:{p}/health" for t, p in self.ports.items()}, "nginx": self.url}
        while pending:
            for name, url in list(pending.items()):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.output(name)}")
                try:
                    httpx.get(url, timeout=1)
                    del pending[name]
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"not up after {timeout} s: {sorted(pending)}")
            time.sleep(0.1)

    def output(self, name: str) -> str:
        path = self.logs.get(name) or self.tmp / "nginx/logs/error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if "nginx" in self.procs:
            stop(self.procs["nginx"], sig=signal.SIGQUIT)
        stop(*(self.procs[target] for target in TARGETS if target in self.procs))


@pytest.fixture
def gateway(sim_farm: SimFarm, fake_moonraker: Any, tmp_path: Path) -> Iterator[Gateway]:
    ids = sim_farm.ids
    master = tmp_path / "master"
    master.mkdir()
    (master / "benchy.gcode").write_bytes(b"G28\nG1 X10\n" * 50)
    printers = tmp_path / "printers.yml"
    printers.write_text(
        f"Klipper:\n  kind: moonraker\n  host: {fake_moonraker.url}\n  api_key: moonraker-key\n"
    )
    settings = {
        "BAMBUDDY_BASE_URL": sim_farm.bambuddy_url,
        "BAMBUDDY_API_KEY": sim_farm.api_key,
        "INVENTREE_BASE_URL": sim_farm.inventree_url,
        "INVENTREE_TOKEN": sim_farm.token,
        "INVENTREE_PART_CATEGORY_ID": ids["INVENTREE_PART_CATEGORY_ID"],
        "INVENTREE_STOCK_LOCATION_ID": ids["INVENTREE_STOCK_LOCATION_ID"],
        "FILAMENT_TRACKING_ENABLED": "true",
        "FILAMENT_PART_CATEGORY_ID": ids["FILAMENT_PART_CATEGORY_ID"],
        "FILAMENT_STORAGE_LOCATION_ID": ids["FILAMENT_STORAGE_LOCATION_ID"],
        "FILAMENT_LOADED_LOCATION_ID": ids["FILAMENT_LOADED_LOCATION_ID"],
        "FILAMENT_PRINTER_LOCATION_MAP": ids["FILAMENT_PRINTER_LOCATION_MAP"],
        "GCODE_SOURCE_DIR": master,
        "GCODE_PRINTERS_FILE": printers,
        "SERVICE_API_TOKEN": TOKEN,
        "WEBHOOK_SHARED_SECRET": HOOK_SECRET,
        "DATA_DIR": tmp_path / "data",
        "STORE_BACKEND": "sqlite",
        "LOG_FORMAT": "json",
        "FARMSYNC_ENV_FILE": "/dev/null",
    }
    env = {**os.environ, **{k: str(v) for k, v in settings.items()}}
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    gw = Gateway(tmp_path, env)
    try:
        yield gw.start()
    finally:
        gw.stop()


def tick(url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    """The command the systemd timers run (farmsync-schedule-*.service), with the token from its environment."""
    env = {k: v for k, v in os.environ.items() if k != "SERVICE_API_TOKEN"}
    if token is not None:
        env["SERVICE_API_TOKEN"] = token
    return subprocess.run(
        [str(LAN / "bin/farmsync-tick"), url], env=env, capture_output=True, text=True, timeout=120
    )


def test_gateway_routes_the_predecessor_paths_to_the_targets(gateway: Gateway, sim_farm: SimFarm) -> None:
    require("curl", "curl")
    gw = gateway.url
    with httpx.Client(base_url=gw, timeout=60) as client:
        # health, dashboard and the API description without auth; manual routes and ticks need the token
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["store"] == "sqlite"
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert client.get("/openapi.json").json()["openapi"] == "3.0.3"
        for target in ("api", "backfill_tick", "filament_tick", "gcode_tick"):
            for method, path in ROUTES[target]:
                refused = client.request(method, path)
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.json()["field"] == "X-Service-Token"
        assert client.post("/webhooks/bambuddy", json={"event": "test"}).status_code == 401
        for path in ("/sync", "/filament", "/gcode", "/ticks", "/ticks/other", "/webhooks", "/nope"):
            not_routed = client.get(path)
            assert not_routed.status_code == 404 and not_routed.json()["error"] == "no such route", path

        # Bambuddy's own webhook call through the gateway syncs the completed prints
        delivery = fire_webhook(
            f"{gw}/webhooks/bambuddy", HOOK_SECRET, printer="B1-X1-CARBON", filename="Benchy"
        )
        assert delivery.status_code == 200, delivery.text
        synced = delivery.json()["totals"]["synced"]
        assert synced > 0
        # ... into the store the api target reads (one SQLite file shared by every target)
        status = client.get("/sync/status", headers=SERVICE).json()
        assert status["runs"]["done"] == synced
        # Bambuddy's real body with the finish photo as base64 ``image`` (about 3.4 MB) passes the gateway
        photographed = sim_farm.bambuddy.state.add_print("B2-P1S", print_name="Photo", content_hash="1" * 64)
        with_photo = sim_farm.bambuddy.fire_webhook(
            f"{gw}/webhooks/bambuddy", HOOK_SECRET, photographed["id"], photo_bytes=2_500_000
        )
        assert with_photo.status_code == 200 and len(with_photo.request.content) > 3_300_000
        synced += with_photo.json()["totals"]["synced"]
        assert photographed["id"] in {i["run_id"] for i in with_photo.json()["items"]}
        secret_in_query = client.post(f"/webhooks/bambuddy?secret={HOOK_SECRET}", json={"event": "test"})
        assert secret_in_query.status_code == 200 and secret_in_query.json()["triggered"] is False

        # the timers' tick script, through the gateway's loopback-only /ticks/* routes
        backfill = tick(f"{gw}/ticks/backfill", TOKEN)
        assert backfill.returncode == 0, backfill.stderr
        assert json.loads(backfill.stdout)["totals"]["synced"] == 0  # the webhook already synced everything
        filament = tick(f"{gw}/ticks/filament", TOKEN)
        assert filament.returncode == 0, filament.stderr
        assert json.loads(filament.stdout)["dry_run"] is True
        gcode = tick(f"{gw}/ticks/gcode", TOKEN)
        assert gcode.returncode == 0, gcode.stderr
        printers = client.get("/gcode/status", headers=SERVICE).json()["printers"]
        assert [(p["name"], p["status"]) for p in printers] == [("Klipper", "dry_run")]
        refused_tick = tick(f"{gw}/ticks/backfill", None)
        assert refused_tick.returncode == 1 and "HTTP 401" in refused_tick.stderr

        # the manual routes, as the predecessor's README calls them
        assert client.get("/validate", headers=SERVICE).json()["ok"] is True
        assert client.post("/sync/backfill?max_archives=1", headers=SERVICE).status_code == 200
        archive = client.post("/sync/archive/1?force=true", headers=SERVICE)
        assert archive.status_code == 200, archive.text
        assert client.get("/filament/status", headers=SERVICE).status_code == 200
        for path in (
            "/sync/filament",
            "/sync/filament/spools",
            "/sync/filament/locations",
            "/sync/filament/usage",
        ):
            run = client.post(f"{path}?dry_run=true", headers=SERVICE)
            assert run.status_code == 200 and run.json()["dry_run"] is True, (path, run.text)
        assert client.post("/sync/gcode", headers=SERVICE).status_code == 200
        # the api target's own counters, in Prometheus' text format
        scraped = client.get("/metrics", headers=SERVICE)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert 'farmsync_upstream_requests_total{method="GET",system="bambuddy"}' in scraped.text
        assert 'farmsync_run_duration_seconds_count{kind="filament"} 4.0' in scraped.text

    # a webhook secret sent as ?secret= stays out of the access log (it logs $uri, not the request line)
    access = gateway.access_log.read_text()
    assert "/webhooks/bambuddy" in access and HOOK_SECRET not in access
    for target in TARGETS:
        output = gateway.output(target)
        assert HOOK_SECRET not in output and sim_farm.token not in output and TOKEN not in output


def test_compose_scheduler_runs_every_tick_once(gateway: Gateway, tmp_path: Path) -> None:
    """deploy/lan/bin/farmsync-schedule reads the token from the .env with farmsync's parser (comment and all)."""
    require("curl", "curl")
    env_file = tmp_path / "scheduler.env"
    env_file.write_text(f"SERVICE_API_TOKEN={TOKEN}   # required as X-Service-Token\n")
    env = {k: v for k, v in os.environ.items() if k != "SERVICE_API_TOKEN"}
    env |= {
        "ONCE": "1",
        "FARMSYNC_TICKS": "backfill filament gcode",
        "TICK_URL_TEMPLATE": f"{gateway.url}/ticks/%s",
        "FARMSYNC_ENV_FILE": str(env_file),
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        [str(LAN / "bin/farmsync-schedule")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(reports) == 3


def test_stopping_a_target_takes_down_exactly_its_routes(gateway: Gateway) -> None:
    """The routing table, proved from outside: a stopped target's routes answer 502 (as JSON), the rest answer."""
    stopped: list[str] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for target in ("filament_tick", "api", "webhook", "backfill_tick", "gcode_tick", "app"):
            stop(gateway.procs[target])
            stopped.append(target)
            for owner, routes in ROUTES.items():
                for method, path in routes:
                    response = client.request(method, path)
                    if owner in stopped:
                        assert response.status_code == 502, (target, method, path, response.text)
                        assert "not running" in response.json()["error"]
                    else:
                        assert response.status_code != 502, (target, owner, method, path)


def test_shipped_nginx_configs_pass_nginx_t(tmp_path: Path) -> None:
    """farmsync.conf (LAN) and compose.conf (Docker) as shipped, logs moved to tmp and the compose service names
    resolved to loopback, with the routes snippet where both include it."""
    nginx = require("nginx", "nginx")
    for name in ("farmsync.conf", "compose.conf"):
        prefix = tmp_path / name
        conf = prefix / "conf"
        (conf / "snippets").mkdir(parents=True)
        (prefix / "logs").mkdir()
        shutil.copy(LAN / "nginx/farmsync-routes.conf", conf / "snippets/farmsync-routes.conf")
        site = (
            (LAN / "nginx" / name).read_text(encoding="utf-8").replace("/var/log/nginx/", f"{prefix}/logs/")
        )
        site = re.sub(r"server [a-z-]+:8080;", "server 127.0.0.1:8080;", site)
        (conf / "site.conf").write_text(site, encoding="utf-8")
        main = conf / "nginx.conf"
        main.write_text(
            f"pid {prefix}/nginx.pid;\nevents {{}}\nhttp {{\n    access_log off;\n    include site.conf;\n}}\n",
            encoding="utf-8",
        )
        nginx_test(nginx, prefix, main)
