"""The periodic runner: stagger, no drift, no overlap, skipped (not queued) missed slots."""

from __future__ import annotations

import asyncio
import random

import pytest

from lictor.agent.checks.base import IntervalCheck, StatusHandler
from lictor.agent.checks.scheduler import next_slot
from lictor.agent.checks.testing import RecordingNotifier
from lictor.common.clock import ManualClock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


class SlowFakeCheck(IntervalCheck):
    """Each run takes ``duration`` seconds of the manual clock; records start times."""

    def __init__(self, *, duration: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.duration = duration
        self.starts: list[float] = []
        self.active = 0
        self.max_active = 0

    async def run_once(self) -> tuple[HealthStatus, str]:
        self.starts.append(self._clock.monotonic())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self._clock.sleep(self.duration)
        finally:
            self.active -= 1
        return HealthStatus.PASSING, f"run {len(self.starts)}"


def make(
    notifier: RecordingNotifier, clock: ManualClock, *, interval: float, duration: float, seed: int,
    granularity: float = 0.0,
) -> SlowFakeCheck:
    check = SlowFakeCheck(
        handler=StatusHandler("fake", notifier),
        interval=interval,
        duration=duration,
        timeout=60,
        clock=clock,
        rng=random.Random(seed),
    )
    check.wake_granularity = granularity  # exactly on the interval grid unless a test asks
    return check


async def test_runs_stay_on_the_interval_grid(notifier: RecordingNotifier) -> None:
    clock = ManualClock(1000.0)
    check = make(notifier, clock, interval=10, duration=3, seed=7)
    stagger = random.Random(7).random() * 10
    check.start()
    await clock.advance(95)
    await check.stop()
    origin = 1000.0 + stagger
    assert 0 <= stagger < 10
    assert check.starts == pytest.approx([origin + 10 * k for k in range(len(check.starts))])
    assert len(check.starts) == int((1095 - origin) // 10) + 1
    finished = [t for t in check.starts if t + 3 <= 1095]
    assert notifier.updates("fake") == len(finished)


async def test_runs_start_on_the_wake_granule_never_early_and_do_not_drift(
    notifier: RecordingNotifier,
) -> None:
    clock = ManualClock(1000.0)
    check = make(notifier, clock, interval=10, duration=0.01, seed=7, granularity=0.1)
    stagger = random.Random(7).random() * 10
    check.start()
    await clock.advance(200)
    await check.stop()
    origin = 1000.0 + stagger
    assert len(check.starts) == 20
    for k, start in enumerate(check.starts):
        slot = origin + 10 * k
        assert slot <= start < slot + 0.1 + 1e-9  # at most one granule late, never early
        assert round(start / 0.1, 6).is_integer()  # on the shared 100 ms grid


def test_the_default_wake_granule_is_shared_and_small() -> None:
    from lictor.agent.checks.base import MIN_INTERVAL, WAKE_GRANULARITY
    check = SlowFakeCheck(handler=StatusHandler("x", RecordingNotifier()), interval=10, duration=0)
    assert check.wake_granularity == WAKE_GRANULARITY <= MIN_INTERVAL / 10


async def test_a_short_interval_is_not_stretched_by_the_granule(notifier: RecordingNotifier) -> None:
    clock = ManualClock()
    check = make(notifier, clock, interval=0.5, duration=0.0, seed=3, granularity=0.1)
    check.start()
    await clock.advance(50.0)
    await check.stop()
    gaps = [b - a for a, b in zip(check.starts, check.starts[1:])]
    assert len(check.starts) >= 99 and max(gaps) < 0.5 + 0.05 + 1e-9  # granule capped at interval/10


async def test_a_slow_check_never_overlaps_and_skips_missed_slots(
    notifier: RecordingNotifier, zero_rng: random.Random
) -> None:
    clock = ManualClock()
    check = SlowFakeCheck(
        handler=StatusHandler("fake", notifier),
        interval=10,
        duration=25,  # longer than two intervals
        timeout=60,
        clock=clock,
        rng=zero_rng,
    )
    check.wake_granularity = 0.0
    check.start()
    await clock.advance(100)
    await check.stop()
    assert check.max_active == 1
    # Run at 0 ends at 25: slots 10 and 20 are skipped, the next run starts at 30, and so on.
    assert check.starts == [0, 30, 60, 90]
    assert notifier.updates("fake") == 3  # the run started at 90 was cancelled by stop()


async def test_no_drift_over_many_runs_with_fractional_interval(
    notifier: RecordingNotifier,
) -> None:
    clock = ManualClock()
    check = make(notifier, clock, interval=0.1, duration=0.03, seed=1)
    check.start()
    await clock.advance(30.0)
    await check.stop()
    origin = check.starts[0]
    assert len(check.starts) >= 299
    for k, start in enumerate(check.starts):
        assert start == pytest.approx(origin + 0.1 * k, abs=1e-9)


def test_next_slot() -> None:
    assert next_slot(origin=5, interval=10, now=5, last=0) == 1  # instant run: next slot
    assert next_slot(origin=5, interval=10, now=14.9, last=0) == 1
    assert next_slot(origin=5, interval=10, now=15, last=0) == 2  # exactly on a slot: missed
    assert next_slot(origin=5, interval=10, now=41, last=1) == 4
    # float rounding: "now" a hair before its own slot must not run that slot twice
    assert next_slot(origin=0.1, interval=0.1, now=0.1 + 3 * 0.1 - 1e-15, last=3) == 4
    with pytest.raises(ValueError):
        next_slot(origin=0, interval=0, now=0, last=0)


class HangingCheck(IntervalCheck):
    async def run_once(self) -> tuple[HealthStatus, str]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class BrokenCheck(IntervalCheck):
    async def run_once(self) -> tuple[HealthStatus, str]:
        raise KeyError("boom")


async def test_check_once_turns_a_timeout_into_critical(handler: StatusHandler) -> None:
    check = HangingCheck(handler=handler, interval=10, timeout=0.05)
    assert await check.check_once() == (HealthStatus.CRITICAL, "Timed out (50ms) running check")


async def test_an_unexpected_exception_is_critical_and_the_loop_goes_on(
    notifier: RecordingNotifier, zero_rng: random.Random
) -> None:
    clock = ManualClock()
    check = BrokenCheck(
        handler=StatusHandler("b", notifier), interval=5, clock=clock, rng=zero_rng
    )
    check.start()
    await clock.advance(10)
    assert check.running
    await check.stop()
    assert notifier.updates("b") == 3
    assert notifier.status("b") == HealthStatus.CRITICAL
    assert notifier.output("b") == "KeyError: 'boom'"


async def test_start_stop_lifecycle(handler: StatusHandler) -> None:
    clock = ManualClock()
    check = HangingCheck(handler=handler, interval=10, clock=clock)
    assert check.check_id == "chk" and not check.running
    check.start()
    with pytest.raises(RuntimeError):
        check.start()
    await check.stop()
    await check.stop()  # idempotent
    assert not check.running
    check.start()  # restartable
    await check.stop()


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": 1, "timeout": 0}])
def test_invalid_interval_or_timeout(handler: StatusHandler, kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        HangingCheck(handler=handler, **kwargs)
