"""An upstream's 404 means "no such object" (often an id the caller gave): it is a 404 naming the system, never
a 502, which would tell the operator that Bambuddy or InvenTree is broken when it is not."""

from __future__ import annotations

import json

import httpx

from farmsync.errors import UpstreamConflict, UpstreamNotFound, UpstreamTransportError, UpstreamUnavailable
from farmsync.web.router import error_response
from tests.hostile.conftest import SERVICE, assert_clean_answer


async def test_an_archive_bambuddy_does_not_have_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/sync/archive/424242", headers=SERVICE)
    assert_clean_answer(response)
    assert response.status_code == 404, response.text[:300]
    assert "424242" in response.json()["error"]


def test_only_an_upstream_failure_is_a_502() -> None:
    """Any upstream 404 that reaches the router (not only an archive the caller named) is a 404 naming it."""
    missing = error_response(UpstreamNotFound("inventree", "GET", "/api/part/9/", status=404))
    assert missing.status_code == 404
    assert json.loads(missing.body)["system"] == "inventree"
    for failure in (
        UpstreamUnavailable("bambuddy", "GET", "/api/v1/archives/", status=503),
        UpstreamTransportError("Ash", "POST", "/api/v1/files/usb/a.gcode", "timed out"),
        UpstreamConflict("inventree", "POST", "/api/stock/", status=409),
    ):
        assert error_response(failure).status_code == 502
