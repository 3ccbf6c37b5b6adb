"""The store contract, run unchanged against embedded SQLite and the Firestore emulator.

Every pipeline's exactly-once guarantee rests on these properties, so they are tested with real concurrency:
OS processes racing for the same keys, and for the same expired leases.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from farmsync.errors import LeaseLost
from farmsync.store import Outcome, State, Store
from tests.fixtures.store import ManualClock, open_spec

LEASE = 60.0


def test_fresh_key_is_acquired_once(store: Store) -> None:
    first = store.claim("run", "1", lease_seconds=LEASE)
    second = store.claim("run", "1", lease_seconds=LEASE)
    assert first.held and first.outcome is Outcome.ACQUIRED and not first.takeover
    assert not second.held and second.outcome is Outcome.BUSY
    record = store.get("run", "1")
    assert record is not None and record.state is State.CLAIMED and record.attempts == 1


def test_done_key_is_never_claimed_again(store: Store) -> None:
    claim = store.claim("run", "7", lease_seconds=LEASE)
    store.complete(claim, {"stock_item": 42})
    again = store.claim("run", "7", lease_seconds=LEASE)
    assert again.outcome is Outcome.DONE and not again.held
    assert again.record is not None and again.record.result == {"stock_item": 42}


def test_expired_lease_is_taken_over_and_old_holder_loses(store: Store, clock: ManualClock) -> None:
    old = store.claim("run", "2", lease_seconds=10)
    clock.advance(11)
    new = store.claim("run", "2", lease_seconds=LEASE)
    assert new.outcome is Outcome.TAKEOVER and new.takeover and new.attempts == 2
    with pytest.raises(LeaseLost):
        store.complete(old, {})
    with pytest.raises(LeaseLost):
        store.renew(old, LEASE)
    store.complete(new, {"ok": True})
    assert store.get("run", "2").state is State.DONE  # type: ignore[union-attr]


def test_renew_keeps_the_lease(store: Store, clock: ManualClock) -> None:
    claim = store.claim("run", "3", lease_seconds=10)
    clock.advance(8)
    claim = store.renew(claim, 10)
    clock.advance(8)
    assert store.claim("run", "3", lease_seconds=LEASE).outcome is Outcome.BUSY
    store.complete(claim)


def test_release_backs_off_then_parks(store: Store, clock: ManualClock) -> None:
    claim = store.claim("usage", "9", lease_seconds=LEASE)
    record = store.release(claim, "InvenTree said 503", max_attempts=2, retry_after=30)
    assert record.state is State.FAILED and record.last_error == "InvenTree said 503"
    assert store.claim("usage", "9", lease_seconds=LEASE).outcome is Outcome.BACKOFF
    clock.advance(31)
    second = store.claim("usage", "9", lease_seconds=LEASE)
    assert second.outcome is Outcome.ACQUIRED and second.attempts == 2 and second.takeover
    parked = store.release(second, "still 503", max_attempts=2)
    assert parked.state is State.PARKED
    clock.advance(10_000)
    assert store.claim("usage", "9", lease_seconds=LEASE).outcome is Outcome.PARKED
    forced = store.claim("usage", "9", lease_seconds=LEASE, retry_parked=True)
    assert forced.held and forced.attempts == 3


def test_list_and_counts_by_namespace_and_state(store: Store, clock: ManualClock) -> None:
    for i in range(5):
        claim = store.claim("run", str(i), lease_seconds=LEASE)
        clock.advance(1)
        if i % 2 == 0:
            store.complete(claim, {"i": i})
        else:
            store.release(claim, f"boom {i}", max_attempts=5)
    store.claim("usage", "x", lease_seconds=LEASE)
    counts = store.counts("run")
    assert counts["done"] == 3 and counts["failed"] == 2 and counts["claimed"] == 0
    failed = store.list("run", State.FAILED)
    assert [r.key for r in failed] == ["3", "1"]  # most recently updated first
    assert {r.key for r in store.list("run")} == {"0", "1", "2", "3", "4"}
    assert [r.key for r in store.list("usage")] == ["x"]


def test_cursor_compare_and_set(store: Store) -> None:
    assert store.get_cursor("print-log") is None
    first = store.cas_cursor("print-log", None, {"id": 10})
    assert first is not None and first.version == 1
    assert store.cas_cursor("print-log", None, {"id": 11}) is None
    assert store.cas_cursor("print-log", 5, {"id": 11}) is None
    second = store.cas_cursor("print-log", 1, {"id": 12})
    assert second is not None and second.version == 2
    cursor = store.get_cursor("print-log")
    assert cursor is not None and cursor.value == {"id": 12} and cursor.version == 2


def test_values_round_trip(store: Store) -> None:
    assert store.get_value("part", "BMB-0123456789ab") is None
    store.put_value("part", "BMB-0123456789ab", {"pk": 4})
    assert store.get_value("part", "BMB-0123456789ab") == {"pk": 4}
    store.delete_value("part", "BMB-0123456789ab")
    assert store.get_value("part", "BMB-0123456789ab") is None


def test_keys_with_slashes_and_odd_characters(store: Store) -> None:
    key = "Ash:apple/prusament pla/apple_0.4n.gcode:ab12"
    claim = store.claim("gcode", key, lease_seconds=LEASE)
    store.complete(claim, {"size": 3})
    assert store.get("gcode", key).result == {"size": 3}  # type: ignore[union-attr]


# --- races between OS processes -----------------------------------------------------------------------------------


def _claim_all(spec: dict[str, Any], keys: list[str], start_at: float, lease: float) -> list[tuple[str, str]]:
    store = open_spec(spec)
    time.sleep(max(0.0, start_at - time.time()))
    won = []
    for key in keys:
        claim = store.claim("race", key, lease_seconds=lease)
        if claim.held:
            won.append((key, claim.outcome.value))
    store.close()
    return won


def _race(
    spec: dict[str, Any], keys: list[str], processes: int = 8, lease: float = LEASE
) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4.0  # every child is imported and connected before the gun
    with ctx.Pool(processes) as pool:
        results = pool.starmap(_claim_all, [(spec, keys, start_at, lease)] * processes)
    return [win for result in results for win in result]


def test_eight_processes_claim_200_keys_exactly_once(make_store: Any) -> None:
    _store, spec = make_store()
    keys = [str(i) for i in range(200)]
    wins = _race(spec, keys)
    assert sorted(k for k, _ in wins) == sorted(keys)
    assert all(outcome == "acquired" for _, outcome in wins)


def test_expired_lease_takeover_race_has_one_winner(make_store: Any) -> None:
    store, spec = make_store()
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        assert store.claim("race", key, lease_seconds=0.5).held
    time.sleep(0.6)
    wins = _race(spec, keys)
    assert sorted(k for k, _ in wins) == sorted(keys)
    assert all(outcome == "takeover" for _, outcome in wins)
    for key in keys:
        assert store.get("race", key).attempts == 2  # type: ignore[union-attr]


def test_firestore_marks_only_ephemeral_records_for_ttl(
    firestore_emulator_host: str, clock: ManualClock
) -> None:
    """The TTL policy may delete part/lock claims and G-code write stamps, never a print's or usage row's record."""
    import uuid

    from farmsync.store.firestore import FirestoreStore

    store = FirestoreStore(project="demo-farmsync", prefix=f"ttl{uuid.uuid4().hex[:8]}", clock=clock)
    for namespace in ("part", "run"):
        claim = store.claim(namespace, "k", lease_seconds=LEASE)
        store.complete(claim, {"pk": 1})
    store.put_value("gcode-writes", "Ash:a.gcode", {"at": 1})
    store.put_value("part-cache", "BMB-1", {"pk": 1})
    keys = {d.id: d.to_dict() for d in store.client.collection(f"{store.prefix}_keys").stream()}
    values = {d.id: d.to_dict() for d in store.client.collection(f"{store.prefix}_values").stream()}
    assert "expires_at" in keys["part:k"] and "expires_at" not in keys["run:k"]
    assert (
        "expires_at" in values["gcode-writes:Ash%3Aa.gcode"]
        and "expires_at" not in values["part-cache:BMB-1"]
    )
    assert keys["part:k"]["expires_at"].timestamp() > clock() + 29 * 24 * 3600
    store.close()
