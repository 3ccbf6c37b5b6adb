"""Routes that belong to no one feature: health, the OpenAPI description, /validate, /metrics, /notify/test."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.responses import JSONResponse, Response

from farmsync import __version__
from farmsync.errors import ConfigError, StoreError
from farmsync.services import get_services
from farmsync.web.call import Call


async def health(call: Call) -> Any:
    """Liveness without auth: the process answers and its store works (``store_status`` ok or unavailable, 503
    when unavailable: a store file deleted under a running process, a DATA_DIR it cannot use, Firestore without
    credentials or unreachable). Says nothing secret."""
    services = get_services()
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "store": services.settings.store_backend.value,
        "store_status": "ok",
    }
    try:
        await services.store.check()
    except (StoreError, ConfigError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        return JSONResponse(
            {
                **body,
                "status": "degraded",
                "store_status": "unavailable",
                "error": "; ".join(problems),
                "problems": problems,
            },
            status_code=503,
        )
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


async def metrics(call: Call) -> Any:
    """Prometheus text: what this process counted (see farmsync.metrics), and whether the store answers."""
    from farmsync.metrics import exposition

    services = get_services()
    try:
        await services.store.check()
        store_up = True
    except StoreError:
        store_up = False
    body, content_type = exposition(store_up=store_up)
    return Response(body, media_type=content_type)


async def notify_test(call: Call) -> Any:
    """Send one test notification to NOTIFY_URL now (409 when it is not set; the body says if it arrived)."""
    from farmsync.notify import send_test

    result = await send_test(get_services().settings)
    return result, (200 if result["sent"] else 502)
