"""Both clients against the simulated farm (farmsync_sim on 127.0.0.1): real HTTP, real paths and bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from farmsync.clients.bambuddy import BambuddyClient
from farmsync.clients.bambuddy_models import SpoolWrite
from farmsync.clients.http import RequestCounters, RetryPolicy
from farmsync.clients.inventree import InvenTreeClient
from farmsync.errors import UpstreamAuthError, UpstreamNotFound, UpstreamValidation
from farmsync_sim.common import tiny_png
from farmsync_sim.server import SimFarm

FAST = RetryPolicy(attempts=2, base=0.0)


@pytest.fixture
def counters() -> RequestCounters:
    return RequestCounters()


@pytest.fixture
async def bambuddy(sim_farm: SimFarm, counters: RequestCounters) -> AsyncIterator[BambuddyClient]:
    async with BambuddyClient(
        sim_farm.bambuddy_url, sim_farm.api_key, retry=FAST, counters=counters
    ) as client:
        yield client


@pytest.fixture
async def inventree(sim_farm: SimFarm, counters: RequestCounters) -> AsyncIterator[InvenTreeClient]:
    async with InvenTreeClient(
        sim_farm.inventree_url + "/api/", sim_farm.token, retry=FAST, counters=counters
    ) as client:
        yield client


# ------------------------------------------------------------------------------------------------ bambuddy


async def test_bambuddy_reads(sim_farm: SimFarm, bambuddy: BambuddyClient, counters: RequestCounters):
    probe = await bambuddy.probe()
    assert probe.reachable and probe.auth_enabled is False and probe.key_valid is None
    assert probe.has_print_log is True and probe.version

    printers = await bambuddy.printers()
    assert printers and (await bambuddy.get_printer(printers[0].id)).name == printers[0].name

    archives = await bambuddy.all_archives(page_size=4, overlap=1)
    assert len(archives) == sim_farm.scenario.facts["archives"]
    assert len({a.id for a in archives}) == len(archives)
    assert all(a.created_at is not None and a.created_at.tzinfo is not None for a in archives)
    one = await bambuddy.get_archive(archives[0].id)
    assert one.id == archives[0].id

    runs = [entry async for entry in bambuddy.iter_print_log(page_size=5)]
    assert len(runs) == sim_farm.scenario.facts["print_log_runs"]
    completed = [entry async for entry in bambuddy.iter_print_log(status="completed", page_size=3)]
    assert completed and all(entry.is_success for entry in completed)
    with_archive = next(entry for entry in completed if entry.archive_id is not None)
    assert with_archive.id in {run.id for run in await bambuddy.archive_runs(with_archive.archive_id)}

    spools = await bambuddy.spools(include_archived=True)
    assert spools and all(s.remaining_grams >= 0 for s in spools)
    assignments = await bambuddy.assignments()
    assert assignments and all(a.spool_id for a in assignments)
    usage = await bambuddy.usage(limit=500)
    assert len(usage) == len({u.id for u in usage}) > 0
    stamps = [u.created_at for u in usage if u.created_at is not None]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert counters.total("bambuddy", "GET") > 5


async def test_bambuddy_writes(bambuddy: BambuddyClient):
    archive = (await bambuddy.list_archives(limit=1))[0]
    updated = await bambuddy.set_external_url(archive.id, "http://127.0.0.1:9/web/part/1/")
    assert updated.external_url == "http://127.0.0.1:9/web/part/1/"
    assert (await bambuddy.set_external_url(archive.id, None)).external_url is None

    created = await bambuddy.create_spool(
        SpoolWrite(material="PETG", tag_uid="00112233AABBCCDD", label_weight=1000)
    )
    assert created.material == "PETG" and created.weight_used == 0
    patched = await bambuddy.update_spool(created.id, {"weight_used": 250.0})
    assert patched.weight_used == 250.0 and patched.remaining_grams == 750.0
    found = await bambuddy.find_spool_by_tag(tag_uid="00112233aabbccdd")
    assert found is not None and found.id == created.id
    assert await bambuddy.find_spool_by_tag(tag_uid="INV-BATCH-0001") is None

    with pytest.raises(UpstreamValidation) as err:
        await bambuddy.create_spool({"brand": "x"})
    assert "material" in err.value.errors


async def test_bambuddy_not_found(bambuddy: BambuddyClient):
    with pytest.raises(UpstreamNotFound, match=r"bambuddy GET /api/v1/archives/999999 -> 404"):
        await bambuddy.get_archive(999999)


async def test_bambuddy_thumbnail_with_auth_off_then_on(sim_farm: SimFarm, counters: RequestCounters):
    async with BambuddyClient(
        sim_farm.bambuddy_url, sim_farm.api_key, retry=FAST, counters=counters
    ) as client:
        archives = await client.all_archives()
        with_thumb = next(a for a in archives if a.thumbnail_path)
        plain = await client.thumbnail(with_thumb.id)
        assert plain is not None and plain.data.startswith(b"\x89PNG")
        assert counters.total("bambuddy", "POST") == 0

    sim_farm.bambuddy.configure({"auth": True})
    async with BambuddyClient(
        sim_farm.bambuddy_url, sim_farm.api_key, retry=FAST, counters=counters
    ) as client:
        assert await client.auth_enabled() is True
        first = await client.thumbnail(with_thumb.id)
        second = await client.thumbnail(with_thumb.id)
        assert first is not None and second is not None and first.data == plain.data
        assert counters.total("bambuddy", "POST") == 1  # one stream token, reused
        probe = await client.probe()
        assert probe.auth_enabled and probe.key_valid is True

    async with BambuddyClient(sim_farm.bambuddy_url, "bb_wrong-key-0000", retry=FAST) as wrong:
        with pytest.raises(UpstreamAuthError) as err:
            await wrong.printers()
        assert "bb_wrong-key-0000" not in str(err.value)
        assert (await wrong.probe()).key_valid is False


# ------------------------------------------------------------------------------------------------ inventree


async def test_inventree_print_flow_legacy(sim_farm: SimFarm, inventree: InvenTreeClient):
    ids = sim_farm.scenario.ids
    sim_farm.inventree.state.api_version = 425  # the layout a real API-425 server has (530 is the default)
    assert await inventree.api_version() == 425
    assert await inventree.parameter_layout() == "legacy"
    category = await inventree.get_category(ids["INVENTREE_PART_CATEGORY_ID"])
    location = await inventree.get_location(ids["INVENTREE_STOCK_LOCATION_ID"])
    assert not category.structural and not location.structural

    part = await inventree.create_part(
        "Benchy " * 30, ipn="BMB-clienttest01", description="d" * 400, category=category.pk
    )
    assert len(part.name) <= 100 and part.component is False and part.purchaseable is False
    assert [p.pk for p in await inventree.parts_by_ipn("bmb-CLIENTTEST01")] == [part.pk]
    assert not part.has_image
    with_image = await inventree.upload_part_image(part.pk, tiny_png("x"), "BMB-clienttest01.png")
    assert with_image.has_image and (await inventree.get_part(part.pk)).has_image

    item = await inventree.create_stock(
        part.pk, 1, location=location.pk, batch="bambuddy-run-1", notes="made"
    )
    assert item.status == 10 and item.batch == "bambuddy-run-1"
    found = await inventree.list_stock(batch="BAMBUDDY-RUN-1", part=part.pk)
    assert [s.pk for s in found] == [item.pk]

    weight = await inventree.find_parameter_template("Weight")
    assert weight is not None
    first = await inventree.upsert_part_parameter(part.pk, weight, 12.5)
    second = await inventree.upsert_part_parameter(part.pk, weight, 14.2)
    assert first.pk == second.pk and second.data == "14.2"
    assert [p.data for p in await inventree.part_parameters(part.pk)] == ["14.2"]
    assert await inventree.part_web_url(part.pk) == f"{sim_farm.inventree_url}/web/part/{part.pk}/"


async def test_inventree_filament_ops(sim_farm: SimFarm, inventree: InvenTreeClient):
    ids = sim_farm.scenario.ids
    spools = await inventree.list_stock(category=ids["FILAMENT_PART_CATEGORY_ID"], in_stock=True, page_size=2)
    assert spools and all(s.part_detail is not None for s in spools)
    spool = max(spools, key=lambda s: s.quantity)
    marker = f"farmsync:test:usage-{spool.pk}:"
    echo = await inventree.remove_stock(spool, 1.234567, notes=marker)
    assert echo.items[0].pk == spool.pk
    after = await inventree.get_stock(spool.pk)
    assert after.quantity == pytest.approx(spool.quantity - 1.23457, abs=1e-6)
    rows = await inventree.find_tracking(marker, item=spool.pk, part=spool.part)
    assert len(rows) == 1 and rows[0].notes == marker
    assert await inventree.find_tracking(marker[:-2], item=spool.pk) == []

    shelf = ids["FILAMENT_SHELF_LOCATION_ID"]
    await inventree.transfer_stock([spool.pk], shelf, notes="moved by test")
    assert (await inventree.get_stock(spool.pk)).location == shelf
    at_shelf = await inventree.list_stock(location=shelf)
    assert spool.pk in {s.pk for s in at_shelf}

    structural = ids["FILAMENT_LOADED_LOCATION_ID"]
    assert (await inventree.get_location(structural)).structural
    with pytest.raises(UpstreamValidation, match="location"):
        await inventree.transfer_stock([after], structural)


async def test_inventree_generic_layout_and_history_after_depletion(
    sim_farm: SimFarm, counters: RequestCounters
):
    sim_farm.inventree.configure({"api_version": 530})
    async with InvenTreeClient(
        sim_farm.inventree_url, sim_farm.token, retry=FAST, counters=counters
    ) as client:
        assert await client.parameter_layout() == "generic"
        part = await client.create_part("Generic part", ipn="BMB-generic01", category=1)
        template = await client.ensure_parameter_template("PrintTime")
        first = await client.upsert_part_parameter(part.pk, template, 5025.0)
        again = await client.upsert_part_parameter(part.pk, template, 5025)
        assert first.pk == again.pk and again.part_pk == part.pk and again.data == "5025"

        item = await client.create_stock(
            part.pk, 5, location=sim_farm.scenario.ids["INVENTREE_STOCK_LOCATION_ID"]
        )
        marker = f"farmsync:test:deplete-{item.pk}:"
        echo = await client.remove_stock(item, 10, notes=marker)
        assert echo.items[0].pk is None
        with pytest.raises(UpstreamNotFound):
            await client.get_stock(item.pk)
        rows = await client.find_tracking(marker, item=item.pk, part=part.pk)
        assert [r.notes for r in rows] == [marker]


async def test_inventree_bad_token(sim_farm: SimFarm):
    async with InvenTreeClient(sim_farm.inventree_url, "inv-wrong-token-000", retry=FAST) as client:
        with pytest.raises(UpstreamAuthError) as err:
            await client.server_info()
        assert "inv-wrong-token-000" not in str(err.value)
        probe = await client.probe()
        assert probe.token_valid is False


async def test_inventree_probe(sim_farm: SimFarm, inventree: InvenTreeClient):
    sim_farm.inventree.state.api_version = 425
    probe = await inventree.probe()
    assert probe.reachable and probe.token_valid and probe.api_version == 425
    assert probe.missing_roles == [] and probe.parameter_layout == "legacy"
