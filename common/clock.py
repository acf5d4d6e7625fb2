"""Time as an injected dependency: a ``Clock`` protocol, the real one, and a manual one for tests.

Anything in Lictor that waits for wall time (check intervals, TTLs, backoffs, Raft tickers)
takes a ``Clock`` instead of calling ``time``/``asyncio.sleep`` directly, so tests can move time
by hand and stay deterministic (the trio ``MockClock`` idea, without autojump).

* ``SystemClock`` reads the running loop's ``time()`` (monotonic) and sleeps with
  ``asyncio.sleep``. It must be used from inside a running event loop.
* ``ManualClock`` only moves when a test calls ``advance()``. Sleepers are woken in deadline
  order; after each wake-up the loop is given a few iterations (``settle_rounds``) so that code
  which only awaits the clock and in-memory futures runs up to its next ``sleep()`` before time
  moves again. Code doing real I/O is not covered by that guarantee.

Note: ``asyncio.timeout()`` and socket timeouts still run on the loop's real clock. The clock
governs *schedules* (when something runs); I/O deadlines stay real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """The two things time-dependent code needs.

    ``monotonic()`` never goes backwards and has an arbitrary origin (seconds, float).
    ``sleep(seconds)`` returns once ``monotonic()`` has advanced by at least ``seconds``;
    a non-positive value only yields to the event loop. It is cancellable.
    """

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: the running event loop's monotonic time."""

    __slots__ = ()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to; for tests.

    ``await clock.advance(25)`` wakes, in deadline order, every sleeper whose deadline falls
    within the next 25 seconds (including sleepers registered by tasks woken along the way),
    setting ``monotonic()`` to each deadline in turn, and ends at ``start + 25``.
    """

    def __init__(self, start: float = 0.0, *, settle_rounds: int = 50) -> None:
        self._now = float(start)
        self._settle_rounds = settle_rounds
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut  # a cancelled sleeper leaves a done future behind; advance() skips it

    @property
    def sleepers(self) -> int:
        """How many tasks are currently parked in ``sleep()``."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The earliest pending wake-up time, or None if nobody sleeps."""
        self._drop_done()
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self) -> None:
        """Give woken tasks ``settle_rounds`` loop iterations to run."""
        for _ in range(self._settle_rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        target = self._now + seconds
        await self.settle()  # let already-runnable tasks reach their sleep() first
        while True:
            self._drop_done()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            self._now = max(self._now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def wait_for_sleepers(self, count: int = 1, *, max_rounds: int = 10_000) -> None:
        """Yield to the loop until at least ``count`` tasks sleep on this clock."""
        for _ in range(max_rounds):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"expected {count} sleepers, have {self.sleepers}")

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
