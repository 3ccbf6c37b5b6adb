"""The adaptive limit on requests in flight (issue #17, target 3), on a fake clock: no test waits or times.

Before it existed the client sent whatever its callers sent: a fixed concurrency left a 2-worker InvenTree idle
at 1 and queued work (and colliding writes) in it at 8.
"""

from __future__ import annotations

import asyncio

import pytest

from farmsync.clients.limit import AdaptiveLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def answer(
    limit: AdaptiveLimit, clock: Clock, rtt: float, *, kind: str = "GET /a", overloaded: bool = False
) -> None:
    ticket = await limit.acquire()
    clock.now += rtt
    limit.release(ticket, kind, overloaded=overloaded)


async def fill(limit: AdaptiveLimit, clock: Clock, rtt: float, kind: str = "GET /a") -> None:
    """As many requests as allowed sent together, answered together after ``rtt``."""
    tickets = [await limit.acquire() for _ in range(limit.allowed)]
    clock.now += rtt
    for ticket in tickets:
        limit.release(ticket, kind, overloaded=False)


async def test_grows_while_the_server_keeps_up() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=2, maximum=10, clock=clock)
    for _ in range(5):
        await fill(limit, clock, 0.05)
    assert limit.allowed >= 4  # up to one more per round trip
    for _ in range(50):
        await fill(limit, clock, 0.05)
    assert limit.allowed == 10  # never past the maximum


async def test_does_not_grow_when_the_limit_is_not_in_use() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=4, clock=clock)
    for _ in range(50):
        await answer(limit, clock, 0.05)  # one at a time: nothing says more would be served
    assert limit.allowed == 4


async def test_backs_off_on_overload_answers() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=10, backoff=0.5, clock=clock)
    await answer(limit, clock, 0.05, overloaded=True)
    assert limit.allowed == 5
    await answer(limit, clock, 0.05, overloaded=True)
    assert limit.allowed == 2
    for _ in range(5):
        await answer(limit, clock, 0.05, overloaded=True)
    assert limit.allowed == 1 and limit.cuts == 7  # never below the minimum


async def test_a_burst_of_failures_from_one_round_trip_cuts_once() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=8, backoff=0.5, clock=clock)
    tickets = [await limit.acquire() for _ in range(8)]
    clock.now += 0.1
    for ticket in tickets:
        limit.release(ticket, "POST /a", overloaded=True)
    assert limit.allowed == 4 and limit.cuts == 1


async def test_backs_off_when_latency_grows() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=8, backoff=0.5, tolerance=2.0, clock=clock)
    await answer(limit, clock, 0.05)
    await answer(limit, clock, 0.09)  # slower, within tolerance
    await answer(limit, clock, 0.2)  # one late answer (a busy machine) is not queueing yet
    assert limit.allowed == 8
    for _ in range(3):
        await answer(limit, clock, 0.15)  # 3x the fastest, again and again: the server is queueing
    assert limit.allowed <= 4 and limit.cuts >= 1


async def test_each_kind_of_request_is_compared_with_itself() -> None:
    """A template read at 17 ms and a part read at 170 ms are both normal; only a kind's own history counts."""
    clock = Clock()
    limit = AdaptiveLimit(initial=8, clock=clock)
    await answer(limit, clock, 0.017, kind="GET /api/parameter/template/")
    await answer(limit, clock, 0.170, kind="GET /api/part/{id}/")
    await answer(limit, clock, 0.180, kind="GET /api/part/{id}/")
    assert limit.cuts == 0


async def test_waits_for_room_and_a_cancelled_waiter_loses_no_wake_up() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=1, maximum=1, clock=clock)
    held = await limit.acquire()
    first = asyncio.ensure_future(limit.acquire())
    second = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    assert not first.done() and not second.done() and limit.in_flight == 1
    first.cancel()
    limit.release(held, "GET /a", overloaded=False)
    ticket = await asyncio.wait_for(second, 1)
    assert limit.in_flight == 1
    limit.release(ticket, "GET /a", overloaded=False)
    assert limit.in_flight == 0


async def test_slot_gives_the_slot_back_on_errors() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=2, clock=clock)
    with pytest.raises(RuntimeError):
        async with limit.slot("GET /a") as outcome:
            outcome.overloaded = True
            raise RuntimeError("boom")
    assert limit.in_flight == 0 and limit.cuts == 1


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimit(initial=0)
    with pytest.raises(ValueError):
        AdaptiveLimit(backoff=1.5)


async def test_the_http_client_keeps_to_the_limit_and_learns_from_answers() -> None:
    import httpx

    from farmsync.clients.http import NO_RETRY, HttpClient, RequestCounters
    from farmsync.errors import UpstreamError

    busy = {"now": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        busy["now"] += 1
        busy["peak"] = max(busy["peak"], busy["now"])
        await asyncio.sleep(0.1)  # long enough that the first three are all inside, even on a busy machine
        busy["now"] -= 1
        if request.url.path == "/locked":
            return httpx.Response(500, json={"detail": "database is locked"})
        if request.url.path == "/busy":
            return httpx.Response(503, json={"detail": "Service Unavailable"})
        return httpx.Response(200, json={})

    limit = AdaptiveLimit(initial=3, maximum=3)
    client = HttpClient(
        "inventree",
        "http://127.0.0.1:9",
        transport=httpx.MockTransport(handler),
        limit=limit,
        retry=NO_RETRY,
        counters=RequestCounters(),
    )
    try:
        await asyncio.gather(*(client.request("GET", f"/ok/{n}") for n in range(12)))
        assert busy["peak"] == 3 and limit.in_flight == 0
        with pytest.raises(UpstreamError):
            await client.request("POST", "/locked")  # two writes met: no reason to send fewer
        assert limit.cuts == 0 and limit.in_flight == 0
        with pytest.raises(UpstreamError):
            await client.request("POST", "/busy")
        assert limit.cuts == 1 and limit.allowed == 2 and limit.in_flight == 0
    finally:
        await client.aclose()


async def test_queueing_never_becomes_the_norm() -> None:
    """Answers slowed by queueing do not raise the fastest time, so the limit keeps backing off."""
    clock = Clock()
    limit = AdaptiveLimit(initial=32, backoff=0.7, clock=clock)
    await answer(limit, clock, 0.04)
    seen = []
    for _ in range(12):
        await fill(limit, clock, 0.1)  # 2.5x: the server is queueing what we send
        seen.append(limit.allowed)
    assert seen[:10] == sorted(seen[:10], reverse=True) and min(seen) == 1


async def test_a_server_that_got_slower_for_good_is_learnt_at_the_minimum() -> None:
    clock = Clock()
    limit = AdaptiveLimit(initial=2, minimum=1, backoff=0.5, clock=clock)
    await answer(limit, clock, 0.04)
    for _ in range(3):
        await answer(limit, clock, 0.2)  # 5x slower, even one at a time
    cuts = limit.cuts
    for _ in range(20):
        await fill(limit, clock, 0.2)
    assert limit.cuts == cuts and limit.allowed > 1  # the new pace is normal now: it grows again
