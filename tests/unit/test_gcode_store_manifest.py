"""The store-backed manifest, the lease lock and the write guard, on SQLite and the Firestore emulator."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from farmsync.errors import StoreError
from farmsync.gcode.guard import LOCK_NAMESPACE, WriteGuard, lock_key, store_lock, try_lock
from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.plan import Action, LocalFile, Op
from farmsync.gcode.report import ActionReport, ActionResult
from farmsync.gcode.store_manifest import LEGACY_NAMESPACE, STREAM, StoreManifestStore
from farmsync.store.base import Outcome

AT = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def record(n: int) -> ManifestRecord:
    return ManifestRecord(sha256=f"{n:064x}", size=n, mtime=1000.0 + n, uploaded_at=AT)


def test_save_load_forget_round_trip(store):
    manifest = StoreManifestStore(store)
    assert manifest.load("Ash") == {}
    manifest.save("Ash", "apple/pla.gcode", record(1))
    manifest.save("Ash", "__odd__.gcode", record(2))  # a name Firestore would refuse as a map key
    manifest.save("ash", "b.gcode", record(3))  # printer names are separate keys
    assert manifest.load("Ash") == {"apple/pla.gcode": record(1), "__odd__.gcode": record(2)}
    manifest.forget("Ash", "apple/pla.gcode")
    manifest.forget("Ash", "never/there.gcode")
    assert manifest.load("Ash") == {"__odd__.gcode": record(2)}
    assert manifest.load("ash") == {"b.gcode": record(3)}


def test_merge_keeps_the_later_upload_of_each_path_in_one_write(store):
    manifest = StoreManifestStore(store)
    newer = record(1).model_copy(update={"uploaded_at": AT.replace(hour=13)})
    manifest.save("Ash", "kept.gcode", newer)
    manifest.save("Ash", "replaced.gcode", record(2))
    older = record(9)  # uploaded_at AT: older than ``newer``
    changed = manifest.merge(
        "Ash",
        {
            "kept.gcode": older,
            "replaced.gcode": record(3).model_copy(update={"uploaded_at": AT.replace(hour=14)}),
            "new.gcode": record(4),
        },
    )
    assert changed == 2
    loaded = manifest.load("Ash")
    assert loaded["kept.gcode"] == newer
    assert loaded["replaced.gcode"].size == 3
    assert loaded["new.gcode"] == record(4)
    assert manifest.merge("Ash", {"kept.gcode": older}) == 0


def test_corrupt_value_is_an_error_not_an_empty_manifest(store):
    store.put_value(LEGACY_NAMESPACE, "Ash", {"files": [{"sha256": "x"}]})
    assert store.cas_cursor(STREAM + "Bishop", None, {"files": [{"path": "", "sha256": "x"}]}) is not None
    for printer in ("Ash", "Bishop"):
        with pytest.raises(StoreError, match="unexpected content"):
            StoreManifestStore(store).load(printer)
        with pytest.raises(StoreError, match="unexpected content"):
            StoreManifestStore(store).save(printer, "a.gcode", record(1))


def test_a_manifest_kept_as_a_value_by_an_earlier_version_is_read_and_moved_by_the_first_write(store):
    files = [{"path": "a.gcode", **record(1).model_dump(mode="json")}]
    store.put_value(LEGACY_NAMESPACE, "Ash", {"printer": "Ash", "files": files})
    manifest = StoreManifestStore(store)
    assert manifest.load("Ash") == {"a.gcode": record(1)}
    manifest.forget("Ash", "never/there.gcode")  # nothing to change: nothing moves
    assert store.get_cursor(STREAM + "Ash") is None
    manifest.save("Ash", "b.gcode", record(2))
    assert store.get_value(LEGACY_NAMESPACE, "Ash") is None
    assert manifest.load("Ash") == {"a.gcode": record(1), "b.gcode": record(2)}


class CountingStore:
    """Passes every call through to a real store and counts the ones that write."""

    WRITES = frozenset({"claim", "renew", "complete", "release", "cas_cursor", "put_value", "delete_value"})

    def __init__(self, store):
        self.inner, self.writes = store, []

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name in self.WRITES:
            self.writes.append(name)
        return attribute


def test_a_save_is_one_conditional_write(store):
    """Every upload ends in a save, with every printer of a farm saving at once: one write transaction each."""
    counting = CountingStore(store)
    manifest = StoreManifestStore(counting)
    for n in range(3):
        manifest.save("Ash", f"{n}.gcode", record(n))
    manifest.forget("Ash", "1.gcode")
    assert counting.writes == ["cas_cursor"] * 4


def test_a_save_that_keeps_losing_races_gives_up_with_a_clear_error(store, monkeypatch):
    monkeypatch.setattr(type(store), "cas_cursor", lambda self, stream, version, value: None)
    naps: list[float] = []
    with pytest.raises(StoreError, match="lost a race"):
        StoreManifestStore(store, sleep=naps.append).save("Ash", "a.gcode", record(1))
    assert len(naps) == 100 and max(naps) <= 0.1


def test_concurrent_saves_lose_nothing(make_store):
    store, _ = make_store()
    manifest = StoreManifestStore(store)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(5):
                manifest.save("Ash", f"w{w}/f{i}.gcode", record(w * 10 + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(manifest.load("Ash")) == 20


def test_lock_is_exclusive_reusable_and_expires(store, clock):
    with store_lock(store, "t-lock", "k") as held:
        assert held.held
        assert try_lock(store, "t-lock", "k", lease_seconds=5).outcome is Outcome.BUSY
        with (
            pytest.raises(StoreError, match="still held"),
            store_lock(store, "t-lock", "k", wait_seconds=0.05, sleep=lambda s: None),
        ):
            pass
    for _ in range(5):  # released locks are free again at once, and never park
        with store_lock(store, "t-lock", "k"):
            pass
    stuck = try_lock(store, "t-lock", "k", lease_seconds=5)  # a holder that dies without releasing
    assert stuck.held
    clock.advance(6)
    assert try_lock(store, "t-lock", "k", lease_seconds=5).outcome is Outcome.TAKEOVER


def upload(path: str = "a.gcode") -> Action:
    local = LocalFile(path, Path("/dev/null"), 3, 0.0)
    return Action(Op.UPLOAD, path, "missing", 3, local, sha256="ab" * 32)


def ok() -> ActionReport:
    return ActionReport(op="upload", path="a.gcode", result=ActionResult.OK)


async def test_guard_refuses_a_file_another_run_is_writing(store):
    first, second = WriteGuard(store), WriteGuard(store)
    assert await first.allow("Ash", upload())
    assert not await second.allow("Ash", upload())
    assert await second.allow("Bishop", upload())  # other printer, other lock
    assert await second.allow("Ash", upload("b.gcode"))
    await first.done("Ash", upload(), ok())
    await second.aclose()


async def test_write_after_a_run_started_is_skipped_but_a_later_run_writes_again(store, clock):
    early = WriteGuard(store)
    writer = WriteGuard(store)
    assert await writer.allow("Ash", upload())
    await writer.done("Ash", upload(), ok())
    # planned from a listing made before that upload: its plan is stale
    assert not await early.allow("Ash", upload())
    assert "meanwhile" in early.skipped[-1][2]
    clock.advance(1)
    later = WriteGuard(store)  # listed after the upload; if it still plans one, the file vanished: upload
    assert await later.allow("Ash", upload())
    await later.failed("Ash", upload(), ok())
    assert try_lock(store, LOCK_NAMESPACE, lock_key("Ash", "a.gcode"), lease_seconds=1).held


async def test_failed_write_releases_the_lock(store):
    first = WriteGuard(store)
    assert await first.allow("Ash", upload())
    await first.failed("Ash", upload(), ok())
    assert await WriteGuard(store).allow("Ash", upload())


class FailingStore(CountingStore):
    """A real store whose ``fail`` calls raise StoreError (the store went away mid-write)."""

    def __init__(self, store, *fail):
        super().__init__(store)
        self.fail = set(fail)

    def __getattr__(self, name):
        if name in self.fail:

            def broken(*args, **kwargs):
                raise StoreError(f"{name} failed")

            return broken
        return super().__getattr__(name)


def free(store, path: str = "a.gcode") -> bool:
    return try_lock(store, LOCK_NAMESPACE, lock_key("Ash", path), lease_seconds=1).held


async def test_a_written_check_that_fails_gives_the_lock_back(store):
    with pytest.raises(StoreError, match="get_value failed"):
        await WriteGuard(FailingStore(store, "get_value")).allow("Ash", upload())
    assert free(store)


async def test_a_failed_check_is_reported_even_when_the_lock_cannot_be_given_back(store, clock):
    with pytest.raises(StoreError, match="get_value failed"):
        await WriteGuard(FailingStore(store, "get_value", "release")).allow("Ash", upload())
    clock.advance(61)  # the lock left behind expires with its lease
    assert free(store)


async def test_a_record_that_fails_still_gives_the_lock_back(store):
    guard = WriteGuard(FailingStore(store, "put_value"))
    assert await guard.allow("Ash", upload())
    with pytest.raises(StoreError, match="put_value failed"):
        await guard.done("Ash", upload(), ok())
    assert free(store)


async def test_each_guard_step_is_one_trip_to_a_worker_thread(store):
    """Asking (lock + written check) and recording (write + release) are one trip each, not two: at a farm's
    start every printer asks at once, and each trip waits its turn in the event loop."""
    trips: list[str] = []
    guard = WriteGuard(store)
    real = guard._call

    async def counted(fn, /, *args, **kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    guard._call = counted
    assert await guard.allow("Ash", upload())
    assert len(trips) == 1
    await guard.done("Ash", upload(), ok())
    assert len(trips) == 2
    assert free(store)


async def test_lease_is_renewed_while_a_slow_write_runs(make_store):
    store, _ = make_store()  # real clock
    guard = WriteGuard(store, lease_seconds=0.3)
    assert await guard.allow("Ash", upload())
    await asyncio.sleep(0.6)  # twice the lease: only renewal keeps it
    assert (
        try_lock(store, LOCK_NAMESPACE, lock_key("Ash", "a.gcode"), lease_seconds=1).outcome is Outcome.BUSY
    )
    await guard.done("Ash", upload(), ok())
    assert try_lock(store, LOCK_NAMESPACE, lock_key("Ash", "a.gcode"), lease_seconds=1).held


async def test_engine_releases_the_lock_of_a_failed_write(store, tmp_path):
    from farmsync.errors import UpstreamConflict
    from farmsync.gcode.engine import MirrorContext, MirrorOptions, run_mirror
    from tests.unit.gcode_fakes import FakeFarm, FakePrinter, printer_config, write_tree

    write_tree(tmp_path / "master", {"a.gcode": "G1 a\n"})
    farm = FakeFarm([FakePrinter("Ash")])
    farm["Ash"].fail[("upload", "a.gcode")] = UpstreamConflict("Ash", "PUT", "/a", "busy")
    configs, options = [printer_config("Ash")], MirrorOptions(dry_run=False)
    manifest = StoreManifestStore(store)

    async def run() -> str:
        guard = WriteGuard(store)
        context = MirrorContext(farm.factory, manifest, guard)
        report = await run_mirror(configs, tmp_path / "master", options, context)
        return report.printer("Ash").actions[0].result.value

    assert await run() == "failed"
    farm["Ash"].fail.clear()
    assert await run() == "ok"  # the failed attempt's lock did not outlive it
    assert manifest.load("Ash")["a.gcode"].size == 5
