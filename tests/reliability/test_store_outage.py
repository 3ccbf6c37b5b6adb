"""Store outage: Firestore goes away in the middle of a tick; ticks fail cleanly, then recover exactly once.

A private emulator (its own port; the session's emulator is never touched) holds this test's store.

- While it is down, every store call must fail within seconds as a StoreError (a tick must not hang until the
  function's own timeout kills it), the router answers 503 with a one-line JSON error and no traceback, and
  InvenTree receives no write at all: every write happens under a claim, and no claim can be taken.
- Mid-run: the emulator is stopped while a tick holds the claim of a print whose stock item it has just
  created. That one item is the only write beyond the outage, exactly what its claim allowed.
- Recovery semantics, decided here: Firestore keeps its data through an outage, so the emulator is brought back
  on the SAME port with the data it had when it stopped (exported just before the stop, imported at start). The
  dead tick's claim is then still there; once its lease runs out the next tick takes it over, finds the stock
  item by batch instead of creating a second one, and the farm ends exactly as a run without an outage.
  A store that comes back EMPTY is a different event (data loss, not an outage): every done mark is gone, and
  test_findings.py shows what farmsync then does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from farmsync.errors import StoreError
from farmsync.prints import tick as ticks
from farmsync.prints.pipeline import PrintSync
from farmsync.prints.service import print_sync
from farmsync.services import Services, set_services
from farmsync.store.firestore import FirestoreStore
from farmsync.web.app import app_router
from farmsync_sim.server import SimFarm
from tests.emulator import PROJECT, SDK_LAUNCHER, EmulatorError, FirestoreEmulator, _sdk_root
from tests.fixtures.store import ManualClock
from tests.reliability.world import close_clients, scenario, settings_for

SEED = 59
FAIL_FAST_SECONDS = 30.0
"""How long one tick may take to give up on a dead store (the client's own defaults retry for minutes)."""


class Emulator(FirestoreEmulator):
    """The test emulator with extra launcher flags (``--import-data``), on a port chosen by the caller."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        super().__init__(port)
        self.extra = extra

    def start(self, timeout: float = 60.0) -> Emulator:
        launcher = _sdk_root() / SDK_LAUNCHER
        self._proc = subprocess.Popen(
            [str(launcher), "start", "--host=127.0.0.1", f"--port={self.port}", *self.extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmulatorError(f"the Firestore emulator exited early; log: {self._log.name}")
            try:
                if httpx.get(f"http://{self.host}/", timeout=1).text.strip() == "Ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise EmulatorError(f"the Firestore emulator did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop, and wait until the port refuses connections (the JVM outlives its launcher briefly)."""
        super().stop()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{self.host}/", timeout=0.5)
            except httpx.HTTPError:
                return
            time.sleep(0.1)
        raise EmulatorError(f"the Firestore emulator on {self.host} still answers after stop()")

    def export(self, directory: Path) -> Path:
        """Everything the emulator holds, as an export the next emulator can ``--import-data``."""
        directory.mkdir(parents=True, exist_ok=True)
        answer = httpx.post(
            f"http://{self.host}/emulator/v1/projects/{PROJECT}:export",
            json={"database": f"projects/{PROJECT}/databases/(default)", "export_directory": str(directory)},
            timeout=60,
        )
        answer.raise_for_status()
        metadata = sorted(directory.rglob("*.overall_export_metadata"))
        assert metadata, f"no export metadata in {directory}: {answer.text[:200]}"
        return metadata[-1]


@contextlib.contextmanager
def emulator_env(host: str) -> Iterator[None]:
    """FIRESTORE_EMULATOR_HOST as the Firestore client reads it at construction; restored after."""
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


def private_store(host: str, prefix: str, clock: Callable[[], float]) -> FirestoreStore:
    with emulator_env(host):
        return FirestoreStore(project=PROJECT, prefix=prefix, clock=clock)


def run_in_thread(work: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """(finished in time, result or exception): a hung store call must not hang the suite with it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:
            box["result"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), box.get("result")


def batches(farm: SimFarm) -> Counter[str]:
    return Counter(
        str(i["batch"])
        for i in farm.inventree.state.stock_items.values()
        if str(i["batch"]).startswith("bambuddy-")
    )


def completed(farm: SimFarm) -> set[str]:
    return {
        f"bambuddy-{r['archive_id']}-{r['id']}"
        for r in farm.bambuddy.state.print_log.values()
        if r["status"] == "completed" and r["archive_id"] is not None
    }


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A private emulator; whatever the test leaves running is stopped."""
    started = Emulator().start()
    yield started
    started.stop()


@pytest.mark.slow
@pytest.mark.firestore
def test_a_store_call_fails_fast_while_firestore_is_down(emulator: Emulator) -> None:
    """Each store call must give up within seconds: a tick is bounded by its function's timeout."""
    store = private_store(emulator.host, "down", time.time)
    assert store.get("run", "1") is None
    emulator.stop()
    started = time.monotonic()
    finished, result = run_in_thread(lambda: store.get("run", "1"), FAIL_FAST_SECONDS)
    assert finished, (
        f"FirestoreStore.get still blocked after {FAIL_FAST_SECONDS:.0f} s with the emulator down: the "
        "Firestore client's default retry (deadline 60-300 s per call) runs under the store's own retries"
    )
    assert isinstance(result, StoreError), repr(result)
    assert "firestore store" in str(result) and time.monotonic() - started < FAIL_FAST_SECONDS


@pytest.mark.slow
@pytest.mark.firestore
async def test_outage_mid_tick_fails_cleanly_and_recovers_exactly_once(
    emulator: Emulator, sim_farm_factory: Callable[..., SimFarm], tmp_path: Path
) -> None:
    farm = sim_farm_factory(scenario=scenario(SEED, runs=16), seed=SEED)
    clock = ManualClock()
    prefix = f"outage{os.getpid()}"
    settings = settings_for(farm, tmp_path, sync_concurrency=1, lease_seconds=5.0, http_timeout_seconds=10.0)
    services = Services(settings, store=private_store(emulator.host, prefix, clock))
    set_services(services)
    try:
        first = await ticks.tick(print_sync(services))
        assert first.ok and batches(farm) and set(batches(farm).values()) == {1}

        # New prints arrive; the tick that syncs them is frozen right after its first stock item exists.
        state = farm.bambuddy.state
        for n in range(4):
            state.add_print(1 + n % 4, print_name=f"outage part {n}")
        frozen, resume = threading.Event(), threading.Event()
        victim: dict[str, Any] = {}

        def hook(step: str, unit: Any) -> None:
            if step == "after_stock" and not victim:
                victim["batch"] = unit.batch
                frozen.set()
                resume.wait(120)

        def frozen_tick() -> Any:
            async def go() -> Any:
                own = Services(settings, store=services.sync_store)
                sync = PrintSync(own.settings, own.store, own.bambuddy(), own.inventree(), hook=hook)
                try:
                    return await ticks.tick(sync)
                finally:
                    await close_clients(own)

            return asyncio.run(go())

        box: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: box.update(result=_catch(frozen_tick)), daemon=True)
        runner.start()
        assert await asyncio.to_thread(frozen.wait, 60), "the tick never reached a stock item"
        snapshot_file = emulator.export(tmp_path / "export")
        emulator.stop()
        farm.inventree.log.clear()
        farm.bambuddy.log.clear()
        stopped_at = time.monotonic()
        resume.set()
        await asyncio.to_thread(runner.join, FAIL_FAST_SECONDS)
        assert not runner.is_alive(), (
            f"the tick did not fail within {FAIL_FAST_SECONDS:.0f} s of the store going down"
        )
        assert isinstance(box["result"], StoreError), repr(box["result"])
        assert time.monotonic() - stopped_at < FAIL_FAST_SECONDS
        assert farm.inventree.log.writes() == [], "InvenTree was written after the store went down"

        # During the outage: the router answers 503 with a clear JSON error, and writes nothing anywhere.
        async def endpoint(request: Request) -> Response:
            return await app_router.dispatch(request)

        app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://farmsync.test", timeout=60
        ) as client:
            for method, path, headers in [
                ("POST", "/webhooks/bambuddy", {"Authorization": "Bearer hook-secret-for-tests"}),
                ("POST", "/sync/backfill", {"X-Service-Token": "svc-token-for-tests"}),
                ("GET", "/sync/status", {"X-Service-Token": "svc-token-for-tests"}),
                ("GET", "/health", {}),
            ]:
                kwargs: dict[str, Any] = {"json": {"event": "print_complete"}} if method == "POST" else {}
                answer = await asyncio.wait_for(
                    client.request(method, path, headers=headers, **kwargs), FAIL_FAST_SECONDS
                )
                assert answer.status_code == 503, (path, answer.status_code, answer.text[:300])
                body = answer.json()
                assert "firestore store" in body["error"] and "Traceback" not in answer.text, body
                assert "\n" not in body["error"]
        assert farm.inventree.log.writes() == [] and farm.bambuddy.log.writes() == []

        # Recovery: the same port, the data it held when it stopped; the dead tick's lease runs out.
        back = Emulator(emulator.port, extra=(f"--import-data={snapshot_file}",)).start()
        try:
            restored = private_store(back.host, prefix, clock)
            held = await reachable(restored, "run", victim["batch"].rsplit("-", 1)[1])
            assert held is not None and held.state.value == "claimed", held
            recovering = Services(settings, store=restored)
            set_services(recovering)
            clock.advance(settings.lease_seconds + 1)
            report = await ticks.tick(print_sync(recovering))
            assert report.ok, report.totals()
            taken_over = [i for i in report.items if "stock:found-after-retry" in i.writes]
            assert [i.batch for i in taken_over] == [victim["batch"]]
            await close_clients(recovering)
            restored.close()
        finally:
            back.stop()
        assert batches(farm) == Counter(completed(farm)), "a stock item is missing or was made twice"
    finally:
        set_services(None)
        await close_clients(services)


async def reachable(store: FirestoreStore, namespace: str, key: str) -> Any:
    """The record once the store answers again (gRPC reconnects with backoff after an outage)."""
    started = time.monotonic()
    while True:
        try:
            record = await asyncio.to_thread(store.get, namespace, key)
        except StoreError:
            if time.monotonic() - started > 60:
                raise
            await asyncio.sleep(0.5)
            continue
        print(f"store reachable again after {time.monotonic() - started:.1f} s")
        return record


def _catch(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except BaseException as exc:
        return exc
