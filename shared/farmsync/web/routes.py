"""Routes that belong to no one feature: health, the OpenAPI description, and /validate."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.responses import JSONResponse

from farmsync import __version__
from farmsync.errors import StoreError
from farmsync.services import get_services
from farmsync.web.call import Call


async def health(call: Call) -> Any:
    """Liveness without auth: the process answers and its store opens. Says nothing secret."""
    services = get_services()
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "store": services.settings.store_backend.value,
    }
    try:
        await services.store.check()
    except StoreError as exc:
        return JSONResponse({**body, "status": "degraded", "error": str(exc)}, status_code=503)
    return body


@lru_cache(maxsize=1)
def _openapi_text() -> str:
    return resources.files("farmsync.web").joinpath("openapi.json").read_text(encoding="utf-8")


async def openapi(call: Call) -> Any:
    """The API description kept in the repository (shared/farmsync/web/openapi.json)."""
    return json.loads(_openapi_text())


async def validate(call: Call) -> Any:
    """Check every configured connection and id; see farmsync.validate."""
    from farmsync.validate import run_validation

    report = await run_validation(get_services())
    return report, (200 if report["ok"] else 502)
