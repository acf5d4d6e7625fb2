"""ManualClock and SystemClock."""

from __future__ import annotations

import asyncio

import pytest

from lictor.common.clock import ManualClock, SystemClock


async def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock(100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 5), ("a", 2), ("c", 9)]]
    await clock.wait_for_sleepers(3)
    await clock.advance(6)
    assert woke == [("a", 102.0), ("b", 105.0)]
    assert clock.monotonic() == 106.0 and clock.sleepers == 1
    await clock.advance(3)
    assert woke[-1] == ("c", 109.0)
    await asyncio.gather(*tasks)


async def test_manual_clock_follows_chains_of_sleeps_within_one_advance() -> None:
    clock = ManualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(10)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(ticker())
    await clock.wait_for_sleepers()
    await clock.advance(35)
    assert ticks == [10, 20, 30]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert clock.sleepers == 0 and clock.next_deadline() is None


async def test_manual_clock_rejects_going_backwards() -> None:
    with pytest.raises(ValueError):
        await ManualClock().advance(-1)


async def test_system_clock_is_the_loop_clock() -> None:
    clock = SystemClock()
    loop = asyncio.get_running_loop()
    t0 = clock.monotonic()
    assert abs(t0 - loop.time()) < 0.05
    await clock.sleep(0.01)
    await clock.sleep(-1)  # non-positive: just yields
    assert clock.monotonic() >= t0 + 0.01
