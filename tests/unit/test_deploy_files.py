"""The deploy/ artefacts checked without a cloud, Docker or systemd: the scripts parse and pass shellcheck, the
Google Cloud scripts' dry runs issue the right gcloud commands, the Firestore indexes cover the store's queries,
the systemd units, nginx routes and function targets agree, and the image's build context is complete."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from farmsync.settings import Settings
from farmsync.web.app import ROUTES, api_router, app_router

ROOT = Path(__file__).resolve().parents[2]
GCP = ROOT / "deploy/gcp"
LAN = ROOT / "deploy/lan"
SHELL_SCRIPTS = sorted([*GCP.glob("*.sh"), *(LAN / "bin").iterdir()])
SECRETS = {
    "BAMBUDDY_API_KEY": "bb_dry-run-key",
    "INVENTREE_TOKEN": "inv-dry-run-token",
    "SERVICE_API_TOKEN": "svc-dry-run-token",
    "WEBHOOK_SHARED_SECRET": "hook-dry-run-secret",
}
# target -> (access, secrets it gets)
FUNCTIONS = {
    "app": ("private", set(SECRETS)),
    "api": ("private", {"BAMBUDDY_API_KEY", "INVENTREE_TOKEN", "SERVICE_API_TOKEN"}),
    "webhook": ("public", {"BAMBUDDY_API_KEY", "INVENTREE_TOKEN", "WEBHOOK_SHARED_SECRET"}),
    "backfill_tick": ("private", {"BAMBUDDY_API_KEY", "INVENTREE_TOKEN"}),
    "filament_tick": ("private", {"BAMBUDDY_API_KEY", "INVENTREE_TOKEN"}),
    "gcode_tick": ("private", set()),
}


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed: apt-get install -y --no-install-recommends {package}", pytrace=False
        )
    return path


def main_py_targets() -> set[str]:
    """The function targets functions/main.py defines (every ``@aio.http`` function)."""
    tree = ast.parse((ROOT / "functions/main.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.AsyncFunctionDef)
        and any(ast.unparse(d) == "aio.http" for d in node.decorator_list)
    }


def test_the_deploy_tables_know_every_function_target() -> None:
    assert main_py_targets() == set(FUNCTIONS)


# --- shell --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert os.access(script, os.X_OK), f"chmod +x {script}"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = require("shellcheck", "shellcheck")
    lint = subprocess.run([shellcheck, "--severity=info", str(script)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


# --- Google Cloud -------------------------------------------------------------------------------------------------


@pytest.fixture
def no_gcloud(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose ``gcloud`` only records that it was called: a dry run must never call it."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    calls = tmp_path / "gcloud-calls"
    fake = bin_dir / "gcloud"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 3\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    yield env
    assert not calls.exists(), f"a dry run called gcloud: {calls.read_text()}"


def write_env(tmp_path: Path, **extra: str) -> Path:
    """A settings file like a user's .env: trailing comments, quotes, commas in values."""
    lines = [
        "BAMBUDDY_BASE_URL=http://10.0.0.5:8000/api/v1   # Bambuddy API base",
        'INVENTREE_BASE_URL="http://10.0.0.3:1337"',
        "INVENTREE_PART_CATEGORY_ID=26",
        "INVENTREE_STOCK_LOCATION_ID=98",
        "FILAMENT_PRINTER_LOCATION_MAP=B1:93,B2:94   # prefix:location",
        "PART_KEY_FIELDS=content_hash,filename",
        "FILAMENT_TRACKING_ENABLED=true",
        "PART_IPN_PREFIX=O'B",
        "GCODE_SOURCE_DIR=",
        "DATA_DIR=./data",
        "STORE_BACKEND=sqlite",
        *(f"{k}={v}" for k, v in SECRETS.items()),
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    path = tmp_path / "farmsync.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_script(name: str, env: dict[str, str], **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GCP / name)], env={**env, **variables}, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def commands(stdout: str) -> list[list[str]]:
    lines = [shlex.split(line) for line in stdout.splitlines() if line.strip()]
    assert all(line[0] == "gcloud" for line in lines), stdout
    return lines


def flags(command: list[str]) -> dict[str, str]:
    """``--name=value`` and bare ``--name`` flags of one command (bare ones map to "")."""
    out: dict[str, str] = {}
    for arg in command:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


def deploy_dry_run(
    tmp_path: Path, env: dict[str, str], **variables: str
) -> tuple[list[list[str]], Path, str]:
    build = tmp_path / "build/gcp"
    result = run_script(
        "deploy.sh",
        env,
        DRY_RUN="1",
        PROJECT="farm-project",
        REGION="europe-west3",
        PREFIX="fs",
        ENV_FILE=variables.pop("ENV_FILE", None) or str(write_env(tmp_path)),
        BUILD_DIR=str(build),
        **variables,
    )
    assert result.returncode == 0, result.stderr
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr
    return commands(result.stdout), build, result.stderr


def test_deploy_dry_run_deploys_every_target_with_the_right_flags(
    tmp_path: Path, no_gcloud: dict[str, str]
) -> None:
    lines, build, _ = deploy_dry_run(tmp_path, no_gcloud)
    assert all("--quiet" in line for line in lines)
    run_sa = "fs-run@farm-project.iam.gserviceaccount.com"
    deploys = {line[3]: flags(line) for line in lines if line[1:3] == ["functions", "deploy"]}
    assert set(deploys) == {f"fs-{t.replace('_', '-')}" for t in FUNCTIONS}
    env_yaml = None
    for target, (access, secrets) in FUNCTIONS.items():
        f = deploys[f"fs-{target.replace('_', '-')}"]
        assert "--gen2" in f and "--trigger-http" in f
        assert f["--runtime"] == "python311" and f["--entry-point"] == target
        assert (
            f["--source"] == str(build)
            and f["--region"] == "europe-west3"
            and f["--project"] == "farm-project"
        )
        assert f["--service-account"] == run_sa
        assert re.fullmatch(r"\d+Mi", f["--memory"]) and re.fullmatch(r"\d+s", f["--timeout"])
        public = "--allow-unauthenticated" in f
        assert public == (access == "public") and public != ("--no-allow-unauthenticated" in f)
        mounted = dict(item.split("=", 1) for item in f["--set-secrets"].split(",")) if secrets else {}
        assert mounted == {key: f"fs-{key.lower().replace('_', '-')}:latest" for key in secrets}
        assert ("--clear-secrets" in f) == (not secrets)
        assert "--set-env-vars" not in f  # values with commas (FILAMENT_PRINTER_LOCATION_MAP) need the file
        env_yaml = env_yaml or f["--env-vars-file"]
        assert f["--env-vars-file"] == env_yaml
    # the functions' environment: the .env's settings as farmsync reads them, Firestore forced, no secrets
    environment = yaml.safe_load(Path(env_yaml).read_text())
    assert environment["STORE_BACKEND"] == "firestore"
    assert environment["FIRESTORE_PROJECT_ID"] == "farm-project"
    assert environment["FIRESTORE_COLLECTION_PREFIX"] == "fs" and environment["LOG_FORMAT"] == "json"
    assert environment["BAMBUDDY_BASE_URL"] == "http://10.0.0.5:8000/api/v1"
    assert environment["INVENTREE_BASE_URL"] == "http://10.0.0.3:1337"
    assert environment["FILAMENT_PRINTER_LOCATION_MAP"] == "B1:93,B2:94"
    assert environment["PART_IPN_PREFIX"] == "O'B" and environment["INVENTREE_PART_CATEGORY_ID"] == "26"
    assert not set(environment) & {*SECRETS, "DATA_DIR", "GCODE_SOURCE_DIR", "PORT"}
    assert {k.lower() for k in environment} <= set(Settings.model_fields)
    assert all(isinstance(v, str) for v in environment.values())
    assert (build / "main.py").is_file() and (build / "farmsync/web/app.py").is_file()

    # every secret is created, fed from stdin (never argv) and readable by the functions' account only
    for key in SECRETS:
        name = f"fs-{key.lower().replace('_', '-')}"
        assert ["gcloud", "secrets", "create", name] == lines_for(lines, "secrets", "create", name)[0][:4]
        [add] = lines_for(lines, "secrets", "versions", "add", name)
        assert flags(add)["--data-file"] == "-"
        [binding] = lines_for(lines, "secrets", "add-iam-policy-binding", name)
        assert flags(binding)["--member"] == f"serviceAccount:{run_sa}"
        assert flags(binding)["--role"] == "roles/secretmanager.secretAccessor"

    # Cloud Scheduler: the print and filament ticks (filament is on in the .env), with OIDC; no G-code job
    jobs = {line[5]: flags(line) for line in lines if line[1:5] == ["scheduler", "jobs", "create", "http"]}
    assert set(jobs) == {"fs-backfill-tick", "fs-filament-tick"}
    scheduler_sa = "fs-scheduler@farm-project.iam.gserviceaccount.com"
    for name, f in jobs.items():
        assert f["--oidc-service-account-email"] == scheduler_sa
        assert f["--oidc-token-audience"] == f["--uri"] and f["--http-method"] == "POST"
        assert f["--location"] == "europe-west3" and f["--schedule"].count(" ") == 4
        [invoker] = lines_for(lines, "functions", "add-invoker-policy-binding", name)
        assert flags(invoker)["--member"] == f"serviceAccount:{scheduler_sa}"
    invoked = {line[3] for line in lines if line[1:3] == ["functions", "add-invoker-policy-binding"]}
    assert invoked == set(jobs)  # nobody but the scheduler's account may call a private function

    # Firestore in Native mode, the composite indexes of firestore.indexes.json, TTL on expires_at
    [database] = lines_for(lines, "firestore", "databases", "create")
    assert flags(database)["--type"] == "firestore-native"
    created = [index_spec(line) for line in lines_for(lines, "firestore", "indexes", "composite", "create")]
    assert created == shipped_indexes("fs")
    ttl = {
        flags(line)["--collection-group"]
        for line in lines_for(lines, "firestore", "fields", "ttls", "update")
    }
    assert ttl == {
        o["collectionGroup"].replace("farmsync_", "fs_") for o in shipped_field_overrides() if o["ttl"]
    }
    assert all("--enable-ttl" in line for line in lines_for(lines, "firestore", "fields", "ttls", "update"))


def lines_for(lines: list[list[str]], *words: str) -> list[list[str]]:
    return [line for line in lines if line[1 : 1 + len(words)] == list(words)]


def index_spec(line: list[str]) -> tuple[str, list[tuple[str, str]]]:
    fields = []
    for arg in line:
        if arg.startswith("--field-config="):
            config = dict(part.split("=", 1) for part in arg.removeprefix("--field-config=").split(","))
            fields.append((config["field-path"], config["order"].upper()))
    return flags(line)["--collection-group"], fields


def shipped_indexes(prefix: str = "farmsync") -> list[tuple[str, list[tuple[str, str]]]]:
    import json

    data = json.loads((GCP / "firestore.indexes.json").read_text())
    return [
        (
            index["collectionGroup"].replace("farmsync_", f"{prefix}_"),
            [(f["fieldPath"], f["order"]) for f in index["fields"]],
        )
        for index in data["indexes"]
        if index["queryScope"] == "COLLECTION"
    ]


def shipped_field_overrides() -> list[dict[str, Any]]:
    import json

    return json.loads((GCP / "firestore.indexes.json").read_text())["fieldOverrides"]


def test_deploy_dry_run_schedules_gcode_when_configured_and_uses_a_vpc_connector(
    tmp_path: Path, no_gcloud: dict[str, str]
) -> None:
    env_file = write_env(tmp_path, GCODE_SOURCE_DIR="/srv/gcode")
    lines, _, _ = deploy_dry_run(tmp_path, no_gcloud, ENV_FILE=str(env_file), VPC_CONNECTOR="farm-lan")
    jobs = {line[5] for line in lines if line[1:5] == ["scheduler", "jobs", "create", "http"]}
    assert jobs == {"fs-backfill-tick", "fs-filament-tick", "fs-gcode-tick"}
    for line in lines_for(lines, "functions", "deploy"):
        assert flags(line)["--vpc-connector"] == "farm-lan"
        assert flags(line)["--egress-settings"] == "private-ranges-only"


@pytest.mark.parametrize(
    "variables,message",
    [
        ({"PROJECT": ""}, "set PROJECT"),
        ({"PREFIX": "Farm_Sync"}, "PREFIX must be"),
        ({"ENV_FILE": "/nonexistent/.env"}, "copy .env.example"),
        ({"SERVICE_API_TOKEN_LINE": "change-me"}, "change-me"),
    ],
)
def test_deploy_refuses_before_touching_anything(
    tmp_path: Path, no_gcloud: dict[str, str], variables: dict[str, str], message: str
) -> None:
    values = {"DRY_RUN": "1", "PROJECT": "farm-project", "ENV_FILE": str(write_env(tmp_path))}
    if variables.pop("SERVICE_API_TOKEN_LINE", None):
        values["ENV_FILE"] = str(write_env(tmp_path, SERVICE_API_TOKEN="change-me"))
    values |= variables
    result = run_script("deploy.sh", no_gcloud, **values, BUILD_DIR=str(tmp_path / "build/gcp"))
    assert result.returncode == 1 and message in result.stderr and result.stdout == ""


def test_teardown_dry_run_removes_what_deploy_made(tmp_path: Path, no_gcloud: dict[str, str]) -> None:
    kept = run_script("teardown.sh", no_gcloud, DRY_RUN="1", PROJECT="farm-project", PREFIX="fs")
    assert kept.returncode == 0, kept.stderr
    lines = commands(kept.stdout)
    assert all("--quiet" in line for line in lines)
    assert {line[3] for line in lines_for(lines, "functions", "delete")} == {
        f"fs-{t.replace('_', '-')}" for t in FUNCTIONS
    }
    assert {line[4] for line in lines_for(lines, "scheduler", "jobs", "delete")} == {
        "fs-backfill-tick",
        "fs-filament-tick",
        "fs-gcode-tick",
    }
    assert not lines_for(lines, "secrets", "delete") and not lines_for(lines, "firestore")
    everything = run_script(
        "teardown.sh",
        no_gcloud,
        DRY_RUN="1",
        PROJECT="farm-project",
        PREFIX="fs",
        DELETE_SECRETS="1",
        DELETE_DATA="1",
    )
    lines = commands(everything.stdout)
    assert len(lines_for(lines, "secrets", "delete")) == 4
    [bulk] = lines_for(lines, "firestore", "bulk-delete")
    assert flags(bulk)["--collection-ids"] == "fs_keys,fs_cursors,fs_values"


def test_shipped_indexes_cover_the_store_queries() -> None:
    """Build the queries FirestoreStore.list() sends (offline client) and derive the composite index each needs:
    equality fields ascending, then the order-by fields. firestore.indexes.json must hold exactly those."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore
    from google.cloud.firestore_v1.query import Query
    from google.cloud.firestore_v1.types import StructuredQuery

    from farmsync.store.base import State
    from farmsync.store.firestore import FirestoreStore

    sent: list[Any] = []

    def stream(self: Query, *args: Any, **kwargs: Any) -> Iterator[Any]:
        sent.append(self._to_protobuf())
        return iter(())

    client = firestore.Client(project="offline", credentials=AnonymousCredentials())
    store = FirestoreStore(project="offline", client=client)
    original = Query.stream
    Query.stream = stream  # type: ignore[method-assign]
    try:
        store.list("run", State.FAILED)
        store.list("run")
    finally:
        Query.stream = original  # type: ignore[method-assign]
    needed = []
    for query in sent:
        where = query.where
        filters = [f.field_filter for f in where.composite_filter.filters] or [where.field_filter]
        equality = [
            (f.field.field_path, "ASCENDING")
            for f in filters
            if f.op == StructuredQuery.FieldFilter.Operator.EQUAL
        ]
        order = [
            (
                o.field.field_path,
                "DESCENDING" if o.direction == StructuredQuery.Direction.DESCENDING else "ASCENDING",
            )
            for o in query.order_by
        ]
        needed.append((query.from_[0].collection_id, equality + order))
    assert sorted(needed) == sorted(shipped_indexes())


# --- LAN: systemd units, nginx routes ------------------------------------------------------------------------------


def unit(name: str) -> ConfigParser:
    parser = ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((LAN / "systemd" / name).read_text())
    return parser


def upstream_ports() -> dict[str, int]:
    text = (LAN / "nginx/farmsync.conf").read_text()
    return {
        name: int(port)
        for name, port in re.findall(r"upstream farmsync_(\w+) \{\s*server 127\.0\.0\.1:(\d+);", text)
    }


def nginx_locations() -> list[tuple[bool, str, str | None, bool]]:
    """(exact, path, upstream target or None, loopback only) for each location of farmsync-routes.conf."""
    text = re.sub(
        r"#[^\n]*", "", (LAN / "nginx/farmsync-routes.conf").read_text()
    )  # comments may hold braces
    out = []
    for exact, path, body in re.findall(r"location\s+(=\s+)?(/\S*)\s*\{(.*?)\}", text, flags=re.S):
        upstream = re.search(r"proxy_pass http://farmsync_(\w+);", body)
        out.append((bool(exact), path, upstream.group(1) if upstream else None, "deny all;" in body))
    return out


def route_to(path: str) -> tuple[str | None, bool]:
    """nginx's choice for a path (an exact match, else the longest prefix): (target, loopback only)."""
    locations = nginx_locations()
    for exact, location, target, local in locations:
        if exact and location == path:
            return target, local
    matches = [
        (len(loc), target, local)
        for exact, loc, target, local in locations
        if not exact and path.startswith(loc)
    ]
    _, target, local = max(matches, key=lambda match: match[0])
    return target, local


def test_units_targets_ports_and_nginx_upstreams_agree() -> None:
    ports = upstream_ports()
    assert set(ports) == set(FUNCTIONS) and len(set(ports.values())) == len(ports)
    assert 8088 not in ports.values()
    for target in FUNCTIONS:
        service = unit(f"farmsync-{target.replace('_', '-')}.service")
        argv = shlex.split(service["Service"]["ExecStart"])
        assert argv[0] == "/opt/farmsync/.venv/bin/functions-framework"
        assert flags(argv) == {
            "--target": target,
            "--source": "/opt/farmsync/functions/main.py",
            "--host": "127.0.0.1",
            "--port": str(ports[target]),
        }
        assert service["Service"]["EnvironmentFile"] == "/etc/farmsync/farmsync.env"
        assert (
            service["Service"]["User"] == "farmsync" and service["Install"]["WantedBy"] == "farmsync.target"
        )
    for tick in ("backfill", "filament", "gcode"):
        timer = unit(f"farmsync-schedule-{tick}.timer")
        assert (
            timer["Timer"]["Unit"] == f"farmsync-schedule-{tick}.service"
            and timer["Timer"]["OnUnitActiveSec"]
        )
        service = unit(f"farmsync-schedule-{tick}.service")
        assert service["Service"]["Type"] == "oneshot"
        assert service["Service"]["EnvironmentFile"] == "/etc/farmsync/farmsync.env"  # SERVICE_API_TOKEN
        script, url = shlex.split(service["Service"]["ExecStart"])
        assert script == "/opt/farmsync/deploy/lan/bin/farmsync-tick"
        assert os.access(ROOT / script.removeprefix("/opt/farmsync/"), os.X_OK)
        path = url.removeprefix("http://127.0.0.1:8088")
        assert route_to(path) == (f"{tick}_tick", True)  # the tick target, and only from this machine
        assert f"farmsync-{tick}-tick.service" in service["Unit"]["Wants"]


def test_one_box_unit_runs_farmsync_serve_and_excludes_the_gateway() -> None:
    """The one-box case needs one unit, not seven: ``farmsync serve`` holds every route and the scheduler."""
    service = unit("farmsync-serve.service")
    assert shlex.split(service["Service"]["ExecStart"]) == ["/opt/farmsync/.venv/bin/farmsync", "serve"]
    assert service["Service"]["EnvironmentFile"] == "/etc/farmsync/farmsync.env"
    assert (
        service["Service"]["User"] == "farmsync"
        and service["Service"]["WorkingDirectory"] == "/var/lib/farmsync"
    )
    assert service["Install"]["WantedBy"] == "multi-user.target"
    assert service["Unit"]["Conflicts"] == "farmsync.target"  # both answer on port 8088
    assert "PartOf" not in service["Unit"]


def test_compose_mounts_printers_yml_and_the_master_folder() -> None:
    service = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["farmsync"]
    assert "./gcode:/gcode" in service["volumes"]
    assert service["environment"]["GCODE_PRINTERS_FILE"] == "/gcode/printers.yml"
    assert "GCODE_SOURCE_DIR" not in service["environment"]  # set in .env: the mirror stays off until then
    assert (
        service["working_dir"] == "/gcode"
    )  # `farmsync gcode -s master` finds printers.yml, as link-sync did
    assert ignored("gcode/printers.yml")  # the operator's printers (and passwords) stay out of the image


def test_nginx_sends_every_route_to_a_target_that_serves_it() -> None:
    serves = {
        "app": {(r.method, r.path) for r in app_router.routes},
        "api": {(r.method, r.path) for r in api_router.routes},
        "webhook": {("POST", "/webhooks/bambuddy")},
    }
    for route in ROUTES:
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        target, local = route_to(path)
        assert target is not None and not local, route.path
        assert (route.method, route.path) in serves[target], (route.method, route.path, target)
    assert route_to("/nope") == (None, False) and route_to("/sync") == (None, False)


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """systemd's own checker, on a scratch root holding the units, stub executables and the system's units."""
    analyze = require("systemd-analyze", "systemd")
    root = tmp_path / "root"
    (root / "etc/systemd").mkdir(parents=True)
    shutil.copytree(LAN / "systemd", root / "etc/systemd/system")
    system_units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    stubs = ("functions-framework", "farmsync")
    for exe in (*(f"opt/farmsync/.venv/bin/{s}" for s in stubs), "opt/farmsync/deploy/lan/bin/farmsync-tick"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    units = sorted(p.name for p in (LAN / "systemd").iterdir())
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


# --- Docker -------------------------------------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per .dockerignore line, in Docker's matching rules (** crosses folders, * does not)."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        out.append((not negate, re.compile(regex + r"\Z")))
    return out


def ignored(relative: str) -> bool:
    """Whether Docker leaves ``relative`` out of the build context: the last pattern matching it or a parent wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for exclude, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            verdict = exclude
    return verdict


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def copies() -> list[tuple[list[str], str]]:
    out = []
    for instruction, args in dockerfile():
        if instruction == "COPY":
            assert "--from" not in args
            *sources, destination = shlex.split(args)
            out.append((sources, destination))
    return out


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "data/sync.sqlite3", ".env", "build/gcp/main.py",
                 "shared/farmsync/__pycache__/cli.cpython-311.pyc", "shared/farmsync.egg-info/PKG-INFO",
                 ".printer-venvs/octoprint/bin/python", ".bench-venvs/x/bin/python", "tests/conftest.py"):  # fmt: skip
        assert ignored(path), path
    assert not ignored("shared/farmsync/web/templates/dashboard.css")
    assert ignored("shared/farmsync_sim/server.py")  # the simulator and the demo are no part of the image


def test_the_image_carries_no_simulator() -> None:
    """shared/farmsync_sim is its own distribution for the demo, tests and benchmarks: never copied in."""
    sources = [source for sources, _ in copies() for source in sources]
    assert "shared/farmsync" in sources
    assert not any(s in ("shared", "shared/", ".", "./") or "farmsync_sim" in s for s in sources), sources
    assert not any("farmsync_sim" in args for _, args in dockerfile())


def test_dockerfile_copies_only_what_exists_and_survives_dockerignore() -> None:
    for sources, _ in copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is copied but .dockerignore leaves it out"
    steps = [(i, a) for i, a in dockerfile() if i in ("COPY", "RUN")]
    requirements = steps.index(("COPY", "requirements.txt ./"))
    assert steps[requirements + 1] == ("RUN", "pip install -r requirements.txt")
    package = next(
        n for n, step in enumerate(steps) if step[0] == "RUN" and "pip install --no-deps ." in step[1]
    )
    assert package > steps.index(("COPY", "shared/farmsync ./shared/farmsync")) > requirements
    assert ("WORKDIR", "/app") in dockerfile() and ("CMD", '["farmsync", "serve"]') in dockerfile()
    env = " ".join(a for i, a in dockerfile() if i == "ENV")
    assert "DATA_DIR=/data" in env and "PORT=8088" in env


def test_the_image_build_context_makes_a_complete_package(tmp_path: Path) -> None:
    """Replay the Dockerfile's COPY steps into a scratch /app (honouring .dockerignore) and let setuptools build
    from it: the package, its data files, the console script, and requirements.txt as its dependencies."""
    app = tmp_path / "app"
    app.mkdir()
    for sources, destination in copies():
        if not destination.startswith("./"):
            continue  # the scripts for /usr/local/bin
        for source in sources:
            target = app / (Path(source).name if destination == "./" else destination.removeprefix("./"))
            files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and not ignored(relative):
                    copy = target if file == ROOT / source else target / file.relative_to(ROOT / source)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, copy)
    egg, lib = tmp_path / "egg", tmp_path / "lib"
    egg.mkdir()
    setup = [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q"]
    result = subprocess.run(
        [*setup, "egg_info", f"--egg-base={egg}", "build_py", f"--build-lib={lib}"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = egg / "farmsync.egg-info"
    # The package declares pyproject's ranges (core, then the extras); the image installs the lock first.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = (info / "requires.txt").read_text().split("\n[", 1)[0].split()
    assert [Requirement(r) for r in core] == [Requirement(r) for r in declared["dependencies"]]
    assert "[firestore]" in (info / "requires.txt").read_text()
    assert "farmsync = farmsync.cli:main" in (info / "entry_points.txt").read_text()
    for data in ("web/templates/dashboard.css", "web/openapi.json", "py.typed"):
        assert (lib / "farmsync" / data).is_file(), data
    built = sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*"))
    assert not [p for p in built if "sim" in p.split("/") or "farmsync_sim" in p or p.endswith("demo.py")]
    assert not (info / "entry_points.txt").read_text().count("farmsync.commands")
    assert (app / "functions/main.py").is_file()


def compose_files() -> list[Path]:
    return [ROOT / "compose.yaml", LAN / "compose.functions.yaml"]


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_compose_files_parse_and_reference_files_that_exist(path: Path) -> None:
    """Only .env (the user's copy of .env.example), data/ and gcode/ (made at run time) may be missing."""
    compose = yaml.safe_load(path.read_text())
    base = path.parent
    targets = main_py_targets()
    scripts = {Path(s).name for sources, d in copies() if d.startswith("/usr/local/bin") for s in sources}
    for name, service in compose["services"].items():
        if "build" in service:
            context = (base / service["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
        else:
            assert "image" in service, name
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            resolved = (base / source).resolve()
            if resolved == ROOT / ".env":
                assert (ROOT / ".env.example").is_file()
                assert volume["bind"]["create_host_path"] is False  # a missing .env fails instead of a folder
            elif resolved not in (ROOT / "data", ROOT / "gcode"):
                assert resolved.exists(), (name, source)
        command = service.get("command") or []
        if command and command[0] == "functions-framework":
            f = flags(command)
            assert f["--target"] in targets and f["--source"] == "/app/functions/main.py", name
        elif command:
            assert command[0] in scripts, (name, command)
    if path.name == "compose.functions.yaml":
        assert {t.replace("_", "-") for t in targets} <= set(compose["services"])
        nginx = (LAN / "nginx/compose.conf").read_text()
        for target in targets:
            assert f"upstream farmsync_{target} {{\n    server {target.replace('_', '-')}:8080;" in nginx


def test_gcloud_parses_the_deploy_commands_that_matter_most(
    tmp_path: Path, no_gcloud: dict[str, str]
) -> None:
    """Real gcloud (google-cloud-cli, which the Firestore emulator package brings) with an empty config and no
    account: each distinct shape of the function deploys, scheduler jobs, index and TTL commands must get past
    argument parsing and stop only at "no active account". (gcloud costs about a second per call, so the other,
    plainer commands are left to the dry-run tests above.)"""
    gcloud = require("gcloud", "google-cloud-cli")
    env_file = write_env(tmp_path, GCODE_SOURCE_DIR="/srv/gcode")
    lines, _, _ = deploy_dry_run(tmp_path, no_gcloud, ENV_FILE=str(env_file), VPC_CONNECTOR="farm-lan")
    job = next(line for line in lines if line[1:5] == ["scheduler", "jobs", "create", "http"])
    update = [
        *job[:3],
        "update",
        *[a for a in job[4:] if not a.startswith("--headers")],
        "--update-headers=A=b",
    ]
    wanted = (
        ("functions", "deploy"),
        ("functions", "add-invoker-policy-binding"),
        ("scheduler", "jobs"),
        ("firestore", "indexes", "composite"),
        ("firestore", "fields", "ttls"),
    )
    shapes = {
        (tuple(line[1:3]), frozenset(flags(line))): line
        for line in [*lines, update]
        if any(tuple(line[1 : 1 + len(w)]) == w for w in wanted)
    }
    assert len(shapes) == 8, sorted(shapes)
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(config),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    }

    def parse(argv: list[str]) -> tuple[list[str], str]:
        result = subprocess.run(
            [gcloud, *argv[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        return argv, result.stdout + result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        for argv, output in pool.map(parse, shapes.values()):
            assert "do not currently have an active account" in output, (shlex.join(argv), output)
