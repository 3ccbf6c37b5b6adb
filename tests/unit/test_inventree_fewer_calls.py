"""InvenTreeClient: templates remembered per process, no lookup on a new part, locked writes (issue #17).

Before: every run read both templates again, each parameter of a part created a moment ago was looked up first,
and a write answered ``500 database is locked`` failed whoever made it.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from farmsync.clients.inventree import LOCKED_ATTEMPTS, InvenTreeClient, is_locked
from farmsync.errors import UpstreamError, UpstreamValidation
from tests.unit.test_inventree_client import ROOT, TOKEN, generic_param, info, page, template, url

LOCKED = {"detail": "database is locked"}


@pytest.fixture
async def client():
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    inv = InvenTreeClient(ROOT, TOKEN, timeout=5, sleep=fake_sleep)
    yield inv
    await inv.aclose()


async def test_a_found_template_is_read_once_per_client(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        url=url("/api/parameter/template/", name="Weight", limit=5, offset=0),
        json=page([template(1, "Weight")]),
    )
    first = await client.parameter_template("Weight")
    again = await client.parameter_template("Weight")
    assert first is not None and again is not None and first.pk == again.pk == 1
    assert (
        len(httpx_mock.get_requests(url=url("/api/parameter/template/", name="Weight", limit=5, offset=0)))
        == 1
    )


async def test_a_missing_template_is_asked_for_again(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    exact = url("/api/parameter/template/", name="Weight", limit=5, offset=0)
    search = url("/api/parameter/template/", search="Weight", limit=50, offset=0)
    httpx_mock.add_response(url=exact, json=page([]))
    httpx_mock.add_response(url=search, json=page([]))
    httpx_mock.add_response(url=exact, json=page([template(4, "Weight")]))
    assert await client.parameter_template("Weight") is None
    found = await client.parameter_template("Weight")  # someone created it meanwhile
    assert found is not None and found.pk == 4
    client.forget_parameter_templates()
    httpx_mock.add_response(url=exact, json=page([template(5, "Weight")]))
    refreshed = await client.parameter_template("Weight")
    assert refreshed is not None and refreshed.pk == 5


async def test_a_new_part_gets_its_parameter_without_a_lookup(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/parameter/",
        status_code=201,
        match_json={"template": 1, "data": "12.5", "model_type": "part", "model_id": 4},
        json=generic_param(9, "12.5"),
    )
    got = await client.upsert_part_parameter(4, 1, 12.5, new_part=True)
    assert got.pk == 9
    assert not httpx_mock.get_requests(
        method="GET",
        url=url("/api/parameter/", template=1, model_type="part", model_id=4, limit=50, offset=0),
    )


async def test_a_new_part_that_has_the_parameter_after_all_is_patched(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    """The create's unique check stands behind the skipped lookup."""
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(
        method="POST",
        url=f"{ROOT}/api/parameter/",
        status_code=400,
        json={"non_field_errors": ["The fields model_type, model_id, template must make a unique set."]},
    )
    find = url("/api/parameter/", template=1, model_type="part", model_id=4, limit=50, offset=0)
    httpx_mock.add_response(url=find, json=page([generic_param(9, "1")]))
    httpx_mock.add_response(method="PATCH", url=f"{ROOT}/api/parameter/9/", json=generic_param(9, "2"))
    got = await client.upsert_part_parameter(4, 1, 2, new_part=True)
    assert got.data == "2"


async def test_a_locked_parameter_create_looks_again_before_writing(
    httpx_mock: HTTPXMock, client: InvenTreeClient
):
    httpx_mock.add_response(url=f"{ROOT}/api/", json=info(530))
    httpx_mock.add_response(method="POST", url=f"{ROOT}/api/parameter/", status_code=500, json=LOCKED)
    find = url("/api/parameter/", template=1, model_type="part", model_id=4, limit=50, offset=0)
    httpx_mock.add_response(url=find, json=page([]))
    httpx_mock.add_response(
        method="POST", url=f"{ROOT}/api/parameter/", status_code=201, json=generic_param(9, "3")
    )
    got = await client.upsert_part_parameter(4, 1, 3, new_part=True)
    assert got.pk == 9
    assert len(httpx_mock.get_requests(url=find)) == 1
    assert len(httpx_mock.get_requests(method="POST")) == 2


async def test_a_locked_image_upload_is_retried(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(method="PATCH", url=f"{ROOT}/api/part/4/", status_code=500, json=LOCKED)
    body: dict[str, Any] = {"pk": 4, "name": "Benchy", "image": "/media/part_images/x.png"}
    httpx_mock.add_response(method="PATCH", url=f"{ROOT}/api/part/4/", json=body)
    got = await client.upload_part_image(4, b"\x89PNG", "x.png")
    assert got.image


async def test_other_500s_on_writes_are_not_retried(httpx_mock: HTTPXMock, client: InvenTreeClient):
    httpx_mock.add_response(
        method="PATCH", url=f"{ROOT}/api/part/4/", status_code=500, json={"detail": "boom"}
    )
    with pytest.raises(UpstreamError) as caught:
        await client.upload_part_image(4, b"\x89PNG", "x.png")
    assert not is_locked(caught.value)
    assert len(httpx_mock.get_requests(method="PATCH")) == 1


async def test_locked_gives_up_after_its_attempts(httpx_mock: HTTPXMock, client: InvenTreeClient):
    for _ in range(LOCKED_ATTEMPTS):
        httpx_mock.add_response(method="PATCH", url=f"{ROOT}/api/part/4/", status_code=500, json=LOCKED)
    with pytest.raises(UpstreamError) as caught:
        await client.upload_part_image(4, b"\x89PNG", "x.png")
    assert is_locked(caught.value)
    assert len(httpx_mock.get_requests(method="PATCH")) == LOCKED_ATTEMPTS


def test_is_locked_reads_status_and_message() -> None:
    assert is_locked(UpstreamError("inventree", "POST", "/api/part/", "database is locked", status=500))
    assert not is_locked(UpstreamError("inventree", "POST", "/api/part/", "database is locked", status=503))
    assert not is_locked(UpstreamValidation("inventree", "POST", "/api/part/", "name", status=400))
