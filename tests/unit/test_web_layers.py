"""The web layer sits on top (#14): features know nothing of HTTP, handlers are imported rather than named by
strings, the webhook and tick targets stay small, inputs are pydantic models the API description reads, and no
markup is built from f-strings."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from farmsync.web import openapi
from farmsync.web.app import ROUTES
from farmsync.web.handlers.prints import BackfillQuery
from farmsync.web.router import Route

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "shared" / "farmsync"
MARKUP = re.compile(r"<[a-zA-Z/!]")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("feature", ["prints", "filament"])
def test_features_do_not_import_the_web_layer(feature: str) -> None:
    for path in sorted((LIBRARY / feature).rglob("*.py")):
        web = sorted(
            m for m in imported_modules(path) if m == "farmsync.web" or m.startswith("farmsync.web.")
        )
        assert not web, f"{path.relative_to(ROOT)} imports {web}"


def test_the_cli_borrows_nothing_from_http() -> None:
    web = sorted(m for m in imported_modules(LIBRARY / "commands.py") if m.startswith("farmsync.web.router"))
    assert not web


def test_handlers_are_imported_not_named_by_strings() -> None:
    """Every handler is a function of farmsync.web (no ``module:function`` strings loaded on first call)."""
    by_name = [r.path for r in ROUTES if ":" in r.handler.__qualname__]
    assert not by_name, by_name
    assert {r.handler.__module__.rsplit(".", 1)[0] for r in ROUTES} <= {
        "farmsync.web",
        "farmsync.web.handlers",
    }


def test_no_markup_is_built_from_f_strings() -> None:
    """The page and its charts are Jinja2 templates with autoescape; Python code only computes what they show."""
    found = []
    for path in sorted((LIBRARY / "web").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if MARKUP.search(text):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


SMALL_TARGET = """
import asyncio, json, sys
import httpx
from functions_framework import create_app

async def main():
    app = create_app(sys.argv[1], sys.argv[2])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        status = (await http.get("/health")).status_code
    print(json.dumps({"status": status, "modules": sorted(m for m in sys.modules if m.startswith("farmsync"))}))

asyncio.run(main())
"""


@pytest.mark.parametrize("target", ["webhook", "backfill_tick", "filament_tick"])
def test_a_single_route_target_answers_health_without_the_route_table(target: str, tmp_path: Path) -> None:
    env = {"FARMSYNC_ENV_FILE": "/dev/null", "DATA_DIR": str(tmp_path), "STORE_BACKEND": "sqlite"}
    done = subprocess.run(
        [sys.executable, "-c", SMALL_TARGET, target, str(ROOT / "functions" / "main.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FIRESTORE")}, **env},
        check=True,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    loaded = set(answer["modules"])
    assert "farmsync.web.app" not in loaded and "farmsync.web.dashboard" not in loaded
    assert not {"farmsync.prints.pipeline", "farmsync.filament.run"} & loaded


def test_query_parameters_are_documented_from_the_models() -> None:
    backfill = next(r for r in ROUTES if r.path == "/sync/backfill")
    assert backfill.query is BackfillQuery
    described = openapi.build()["paths"]["/sync/backfill"]["post"]["parameters"]
    assert [p["name"] for p in described] == list(BackfillQuery.model_fields)
    retry = next(p for p in described if p["name"] == "retry")
    assert retry["schema"] == {"type": "string", "enum": ["now"]}


async def test_a_refusal_names_what_the_model_expects() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route as StarletteRoute

    from farmsync.web.handlers import prints
    from farmsync.web.router import Router

    async def anyone(route: Route, call: object) -> None:
        return None

    router = Router([Route("POST", "/sync/backfill", prints.backfill, "none")], anyone)

    async def endpoint(request: Request):
        return await router.dispatch(request)

    app = Starlette(routes=[StarletteRoute("/{path:path}", endpoint, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        retry = (await http.post("/sync/backfill?retry=later")).json()
        budget = (await http.post("/sync/backfill?budget_seconds=0")).json()
    assert retry["status"] == 422 and retry["field"] == "retry" and retry["expected"] == "now"
    assert budget["field"] == "budget_seconds" and budget["expected"] == "an integer from 1 to 86400"
    assert budget["error"] == "query parameter 'budget_seconds' must be an integer from 1 to 86400, got 0"
