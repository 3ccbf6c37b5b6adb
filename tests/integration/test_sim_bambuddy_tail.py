"""The simulated Bambuddy's new ids and clock read only the rows added since they last looked (issue #17, target 8).

Before: every new print took the max id of the archives and of the print log and the newest created_at of
three whole tables, so adding runs cost time growing with the log. These tests hold the followed values to
their plain definitions (max id + 1, as SQLite without AUTOINCREMENT gives; newest created_at) through
appends, hard deletes of the top id and of others, and a reload.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from farmsync_sim.bambuddy_state import BambuddyState
from farmsync_sim.server import SimFarm

FUTURE = datetime(2031, 1, 1, 12, 0, 0)


def plain_latest(state: BambuddyState) -> datetime | None:
    rows = [r for t in (state.archives, state.print_log, state.usage) for r in t.values()]
    return max((r["created_at"] for r in rows), default=None)


def check(state: BambuddyState) -> None:
    for table in (state.archives, state.print_log, state.spools, state.usage):
        assert state._next_id(table) == max(table, default=0) + 1
    latest = plain_latest(state)
    now = state.now()
    assert latest is None or now >= latest
    if latest is not None and latest > datetime.utcnow():
        assert now - latest < timedelta(seconds=1)


def test_ids_and_clock_follow_appends_and_deletes(sim_farm: SimFarm) -> None:
    state = sim_farm.bambuddy.state
    rng = random.Random(5)
    printers = [p["name"] for p in state.printers.values()]
    check(state)
    for step in range(200):
        action = rng.choice(
            ["print", "print", "future", "upload", "delete_top", "delete_any", "spool", "unspool"]
        )
        if action == "print":
            state.add_print(rng.choice(printers), duration_s=rng.randrange(60, 600))
        elif action == "future":
            state.add_print(
                rng.choice(printers), at=FUTURE + timedelta(seconds=step, microseconds=rng.randrange(10**6))
            )
        elif action == "upload":
            state.add_upload(f"upload {step}")
        elif action == "delete_top" and state.archives:
            state.delete_archive(max(state.archives), hard=True)
        elif action == "delete_any" and state.archives:
            state.delete_archive(rng.choice(sorted(state.archives)), hard=True)
        elif action == "spool":
            state.create_spool({"material": "PLA"})
        elif action == "unspool" and state.spools:
            state.delete_spool(max(state.spools))
        check(state)
    assert state.now() >= FUTURE
    top = max(state.archives)
    state.delete_archive(top, hard=True)
    assert state.add_upload("reuses the top id")["id"] == top  # a deleted top id comes back, as in SQLite
    seed: dict[str, Any] = state.dump()
    state.load(seed)
    check(state)
    # A seed listing rows out of id order: the top id is not the last row added, and deleting it is noticed.
    seed["archives"] = list(reversed(seed["archives"]))
    state.load(seed)
    check(state)
    state.delete_archive(max(state.archives), hard=True)
    check(state)
