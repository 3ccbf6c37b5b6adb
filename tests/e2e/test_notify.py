"""Operator notifications end to end: parked prints, spool conflicts and failing printers reach a small HTTP
receiver on 127.0.0.1 in each payload style, once per event across runs, instances and restarts; a receiver
that is down never fails the sync and is tried again next run; the URL's secret never reaches a log.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from farmsync import logs, metrics, notify
from farmsync.filament.run import run_filament
from farmsync.gcode.service import run_gcode
from farmsync.prints.service import run_tick
from farmsync.services import Services, set_services
from farmsync.settings import load_settings
from farmsync.store import AsyncStore, State, Store
from farmsync.web.serve import create_app
from farmsync_sim.scenarios import scenario_by_name
from farmsync_sim.server import SimFarm
from tests.emulator import free_port
from tests.fixtures.farm import farm_settings
from tests.fixtures.log_scan import register_test_secret
from tests.fixtures.sim import WebhookReceiver
from tests.fixtures.store import open_spec

SECRET = "tk-notify-Zq81xYp3LmW0"  # the part of the URL that is the credential (an ntfy topic, a webhook id)
register_test_secret(SECRET, "notification URL (tests/e2e/test_notify.py)")
MISSING_CATEGORY = 987654  # InvenTree refuses parts in it: every print fails, and parks at once


def url_of(receiver: WebhookReceiver) -> str:
    return receiver.url.replace("/webhooks/bambuddy", f"/alerts/{SECRET}")


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/alerts/{SECRET}"


@pytest.fixture
def tiny(sim_farm_factory: Callable[..., SimFarm]) -> SimFarm:
    return sim_farm_factory(scenario_by_name("tiny"), seed=4)


@pytest.fixture
async def instance(
    tiny: SimFarm, make_store: Callable[..., tuple[Store, dict[str, Any]]], tmp_path: Path
) -> AsyncIterator[Callable[..., Services]]:
    """``instance(spec=None, **settings)``: a farmsync process's services; the same ``spec`` is the same store
    (a restart, or a second instance beside the first)."""
    made: list[Services] = []
    specs: dict[str, Any] = {}

    def make(spec: dict[str, Any] | None = None, **overrides: Any) -> Services:
        if spec is None:
            store, specs["last"] = make_store()
        else:
            store = open_spec(spec)
        values = {"inventree_part_category_id": MISSING_CATEGORY, "sync_max_attempts": 1, **overrides}
        services = Services(farm_settings(tiny, tmp_path, **values), store=store)
        set_services(services)
        made.append(services)
        return services

    make.specs = specs  # type: ignore[attr-defined]
    metrics.reset()
    yield make
    for services in made:
        await services.aclose()
    set_services(None)


def completed_runs(farm: SimFarm) -> list[int]:
    return sorted(r["id"] for r in farm.scenario.bambuddy["print_log"] if r["status"] == "completed")


def decode_title(value: str) -> str:
    if value.startswith("=?UTF-8?B?") and value.endswith("?="):
        return base64.b64decode(value[10:-2]).decode("utf-8")
    return value


@pytest.mark.parametrize("style", ["ntfy", "homeassistant", "slack"])
async def test_parked_prints_are_notified_once_across_runs_and_restarts(
    style: str, tiny: SimFarm, instance: Any, webhook_receiver: WebhookReceiver
) -> None:
    services = instance(notify_url=url_of(webhook_receiver), notify_style=style)
    report = await run_tick(services)
    parked = [i for i in report.items if i.outcome.value == "parked"]
    assert [i.run_id for i in parked] == completed_runs(tiny) and len(parked) == 3
    received = list(webhook_receiver.requests)
    assert len(received) == 3
    assert all(r.method == "POST" and r.path == f"/alerts/{SECRET}" for r in received)
    if style == "ntfy":
        for r in received:
            assert r.headers["priority"] == "high" and r.headers["tags"] == "warning,package"
            assert decode_title(r.headers["title"]).startswith("farmsync: print parked: ")
            assert r.headers["content-type"].startswith("text/plain")
        texts = [r.body.decode("utf-8") for r in received]
    elif style == "homeassistant":
        bodies = [r.json() for r in received]
        assert {b["event"] for b in bodies} == {"parked"}
        assert sorted(b["key"] for b in bodies) == sorted(f"parked:run:{n}" for n in completed_runs(tiny))
        texts = [b["message"] for b in bodies]
    else:
        bodies = [r.json() for r in received]
        assert all(set(b) == {"text"} and b["text"].startswith("*farmsync: print parked") for b in bodies)
        texts = [b["text"] for b in bodies]
    assert all("parked" in t and "3DBenchy" in t and "--retry-now" in t for t in texts)

    await run_tick(services)  # a second run: still parked, nothing new
    restarted = instance(instance.specs["last"], notify_url=url_of(webhook_receiver), notify_style=style)
    await run_tick(restarted)  # a restart (or another instance) on the same store
    assert len(webhook_receiver.requests) == 3
    records = await restarted.store.list("notify", State.DONE, 10)
    assert sorted(r.key for r in records) == sorted(f"parked:run:{n}" for n in completed_runs(tiny))


async def test_a_receiver_that_is_down_fails_nothing_and_is_retried_next_run(
    tiny: SimFarm, instance: Any, webhook_receiver: WebhookReceiver
) -> None:
    stream = io.StringIO()
    logs.configure("json", "DEBUG", stream=stream)
    try:
        down = instance(notify_url=closed_port_url())
        report = await run_tick(down)
        assert [i.outcome.value for i in report.items] == ["parked"] * 3  # the sync itself went its way
        webhook_receiver.status = 500  # up, but failing
        failing = instance(instance.specs["last"], notify_url=url_of(webhook_receiver))
        await run_tick(failing)
        assert len(webhook_receiver.requests) == 1  # the first failure stops this run's sends
        webhook_receiver.status = 200
        await run_tick(failing)
        await run_tick(failing)
    finally:
        logs.configure("json", "INFO")
    assert len(webhook_receiver.requests) == 1 + 3  # one refused, then each parked print exactly once
    lines = stream.getvalue()
    assert '"notification failed; retried next run"' in lines and '"severity": "WARNING"' in lines
    assert "could not be reached" in lines and "answered HTTP 500" in lines
    assert SECRET not in lines and "/alerts/" not in lines
    assert "http://127.0.0.1:" in lines  # the host is named, the path is not


async def test_the_url_secret_stays_out_of_every_log(
    tiny: SimFarm, instance: Any, webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs each request's URL at INFO: it must come out redacted
    stream = io.StringIO()
    logs.configure("text", "DEBUG", stream=stream)
    try:
        webhook_receiver.status = 503
        await run_tick(instance(notify_url=url_of(webhook_receiver)))  # refused: logged, kept for later
        webhook_receiver.status = 200
        with_query = url_of(webhook_receiver) + "?auth=" + SECRET
        await run_tick(instance(instance.specs["last"], notify_url=with_query))
    finally:
        logs.configure("json", "INFO")
    assert [r.path for r in webhook_receiver.requests] == [f"/alerts/{SECRET}"] + [
        f"/alerts/{SECRET}?auth={SECRET}"
    ] * 3
    assert "answered HTTP 503" in stream.getvalue()
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)
    for text in (stream.getvalue(), caplog.text, "\n".join(r.getMessage() for r in caplog.records)):
        assert SECRET not in text
    from farmsync.cli import cli

    config = CliRunner().invoke(
        cli,
        ["config", "--json"],
        env={"NOTIFY_URL": url_of(webhook_receiver), "FARMSYNC_ENV_FILE": "/dev/null"},
    )
    assert (
        config.exit_code == 0 and SECRET not in config.output and '"NOTIFY_URL": "********"' in config.output
    )


async def test_a_spool_conflict_is_notified_once_and_dry_runs_send_nothing(
    tiny: SimFarm, instance: Any, webhook_receiver: WebhookReceiver
) -> None:
    state = tiny.bambuddy.state
    tag = state.spools[2]["tag_uid"]
    twin = state.create_spool({"material": "PLA", "tray_uuid": tag.lower()})
    settings = {
        "notify_url": url_of(webhook_receiver),
        "notify_style": "homeassistant",
        "filament_tracking_enabled": True,
    }
    services = instance(**settings)
    dry = await run_filament(services, dry_run=True)
    assert len(dry.conflicts) == 1 and webhook_receiver.requests == []
    report = await run_filament(services, dry_run=False)
    assert len(report.conflicts) == 1
    await run_filament(instance(instance.specs["last"], **settings), dry_run=False)
    [sent] = webhook_receiver.requests
    body = sent.json()
    assert body["event"] == "conflict" and body["key"].startswith(f"conflict:{report.conflicts[0].key}:")
    assert f"{2} active Bambuddy spools carry batch" in body["message"] and tag in body["message"]
    assert twin["id"] in report.conflicts[0].spools


async def test_a_failing_printer_is_notified_once_per_streak(
    tmp_path: Path,
    make_store: Any,
    fake_buddy: Any,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every run in the same second, as on a fast machine: a new streak must still be a new event (CI once lost
    # the second message when streaks were named by the second they began).
    monkeypatch.setattr(notify, "time", SimpleNamespace(time=lambda: 1796583130.25))
    master = tmp_path / "master"
    master.mkdir()
    (master / "a.gcode").write_bytes(b"G1 X1\n" * 100)
    ash = fake_buddy(password="pw-ash-1234", name="Ash")
    printers = tmp_path / "printers.yml"
    gone = closed_port_url().rsplit("/alerts", 1)[0]

    def farm(bishop_url: str) -> None:
        printers.write_text(
            f"Ash:\n  printer_type: MK4\n  host: {ash.url}\n  username: maker\n  password: pw-ash-1234\n"
            f"Bishop:\n  printer_type: MK4\n  host: {bishop_url}\n  username: maker\n"
            "  password: pw-bishop-1234\n"
        )

    farm(gone)
    store, spec = make_store()
    settings = load_settings(
        "/dev/null",
        gcode_printers_file=printers,
        gcode_source_dir=master,
        data_dir=tmp_path / "data",
        notify_url=url_of(webhook_receiver),
        notify_style="slack",
        http_timeout_seconds=2,
    )
    services = Services(settings, store=store)
    try:
        first = await run_gcode(services, dry_run=False)
        assert (
            first.printer("Bishop").status.value == "failed" and first.printer("Ash").status.value == "synced"
        )
        await run_gcode(services, dry_run=False)  # still failing: the same streak
        [sent] = webhook_receiver.requests
        assert sent.json()["text"].startswith("*farmsync: G-code sync failed on Bishop*\nBishop (")
        bishop = fake_buddy(password="pw-bishop-1234", name="Bishop")
        farm(bishop.url)
        back = await run_gcode(services, dry_run=False)
        assert back.printer("Bishop").status.value == "synced"
        farm(gone)
        await run_gcode(Services(settings, store=open_spec(spec)), dry_run=False)  # a new streak, restarted
        assert len(webhook_receiver.requests) == 2
        assert [r.json()["text"].split("*")[1] for r in webhook_receiver.requests] == [
            "farmsync: G-code sync failed on Bishop"
        ] * 2
    finally:
        await services.aclose()


def failed_printer(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, status="failed", kind="MK4", error="GET /api/v1/status: timed out", failures=[]
    )


async def test_two_instances_that_see_the_same_first_failure_send_one_message(
    make_store: Any, webhook_receiver: WebhookReceiver
) -> None:
    """Both instances read "no streak" before either writes one: the compare-and-set gives the streak one id."""
    first, spec = make_store()
    stores = [AsyncStore(first), AsyncStore(open_spec(spec))]  # two instances on one store
    settings = load_settings("/dev/null", notify_url=url_of(webhook_receiver), notify_style="slack")
    sent: list[str] = []
    try:
        for _ in range(3):
            outcomes = await asyncio.gather(
                *(
                    notify.gcode_failures(settings, store, [failed_printer("Ash"), failed_printer("Bishop")])
                    for store in stores * 2
                )
            )
            sent += [key for outcome in outcomes for key in outcome.sent]
            await notify.gcode_failures(settings, stores[1], [SimpleNamespace(name="Ash", status="synced")])
    finally:
        for store in stores:
            store.shutdown()
        stores[1].sync.close()
    assert len(sent) == len(set(sent)) == 4  # Ash: three streaks; Bishop: one streak all along
    assert sum(key.startswith("gcode-failed:Bishop:") for key in sent) == 1
    titles = [r.json()["text"].split("\n")[0] for r in webhook_receiver.requests]
    assert sorted(titles) == ["*farmsync: G-code sync failed on Ash*"] * 3 + [
        "*farmsync: G-code sync failed on Bishop*"
    ]


async def test_a_streak_begun_before_the_upgrade_is_not_announced_again(
    make_store: Any, webhook_receiver: WebhookReceiver
) -> None:
    """Streaks used to be plain values named by their start second; the event that was sent then stays sent."""
    store, _ = make_store()
    settings = load_settings("/dev/null", notify_url=url_of(webhook_receiver), notify_style="slack")
    store.put_value(notify.LEGACY_STREAKS, "gcode:Ash", 1796500000)
    claim = store.claim(
        notify.NAMESPACE, "gcode-failed:Ash:1796500000", lease_seconds=60, owner="an-earlier-version"
    )
    store.complete(claim, {"at": 1796500000})
    store.put_value(notify.LEGACY_STREAKS, "gcode:Bishop", 1796400000)  # ended while the old version was off
    async_store = AsyncStore(store)
    try:
        outcome = await notify.gcode_failures(
            settings, async_store, [failed_printer("Ash"), SimpleNamespace(name="Bishop", status="synced")]
        )
        assert outcome.sent == [] and webhook_receiver.requests == []
        assert store.get_value(notify.LEGACY_STREAKS, "gcode:Ash") is None
        assert store.get_value(notify.LEGACY_STREAKS, "gcode:Bishop") is None
        outcome = await notify.gcode_failures(
            settings, async_store, [failed_printer("Ash"), failed_printer("Bishop")]
        )
    finally:
        async_store.shutdown()
    assert len(outcome.sent) == 1 and outcome.sent[0].startswith("gcode-failed:Bishop:")
    assert outcome.sent[0] != "gcode-failed:Bishop:1796400000"  # a new streak, not the one that ended


async def test_notify_test_route_and_command(
    tiny: SimFarm, instance: Any, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    services = instance(notify_url=url_of(webhook_receiver), notify_style="ntfy")
    transport = httpx.ASGITransport(app=create_app(services, schedule=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.post("/notify/test")).status_code == 401
        response = await client.post("/notify/test", headers={"X-Service-Token": "svc-token-for-tests"})
    assert response.status_code == 200, response.text
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    assert response.json() == {"sent": True, "style": "ntfy", "target": f"http://127.0.0.1:{port}/…"}
    assert SECRET not in response.text
    [sent] = webhook_receiver.requests
    assert sent.headers["title"] == "farmsync: test notification" and sent.headers["priority"] == "low"

    off = instance()
    transport = httpx.ASGITransport(app=create_app(off, schedule=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/notify/test", headers={"X-Service-Token": "svc-token-for-tests"})
    assert response.status_code == 409 and response.json()["field"] == "NOTIFY_URL"


def test_notify_test_command(webhook_receiver: WebhookReceiver) -> None:
    from farmsync.cli import cli

    env = {"FARMSYNC_ENV_FILE": "/dev/null", "NOTIFY_URL": closed_port_url(), "NOTIFY_STYLE": "slack"}
    result = CliRunner().invoke(cli, ["notify", "--test"], env=env)
    assert result.exit_code == 2 and "could not be reached" in result.output and SECRET not in result.output
    env["NOTIFY_URL"] = url_of(webhook_receiver)
    result = CliRunner().invoke(cli, ["notify", "--test"], env=env)
    assert result.exit_code == 0, result.output
    assert webhook_receiver.requests[-1].json()["text"].startswith("*farmsync: test notification*")
