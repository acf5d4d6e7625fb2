"""The periodic runner shared by every interval check.

Rules (each one has a test in ``test_check_scheduler.py``):

* The first run is staggered by ``rng.random() * interval`` (a value in ``[0, interval)``), so a
  thousand checks registered at once do not fire together.
* Runs are aligned to a fixed grid ``origin + k * interval`` on the injected clock; the next slot
  is computed from the origin, never by adding ``interval`` to "now", so a schedule does not drift.
* The next run is only scheduled after the current one has completed: two runs of one check
  never overlap.
* A run that overruns its slot makes the runner skip to the next grid slot strictly in the
  future. Missed slots are skipped, not queued.
* With ``granularity`` > 0 a run starts at its slot rounded *up* to a multiple of
  ``granularity`` on the clock (never early, at most ``granularity`` late, still no drift: the
  slots themselves stay on the interval grid). Every check of an agent uses the same
  granularity, so the checks due within one granule wake the process once, together. On a
  2-core VM a wake-up from sleep costs far more than the Python a check runs (cold caches):
  1,000 HTTP checks at 10 s took 7.5% of a core woken one by one and 3.5% with a 100 ms
  granule (bench/cluster/checks_cpu.py).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable

from lictor.common.clock import Clock

__all__ = ["align_up", "next_slot", "run_periodic"]

log = logging.getLogger("lictor.checks")


def next_slot(*, origin: float, interval: float, now: float, last: int) -> int:
    """The index of the next grid slot to run in: the first ``k > last`` with
    ``origin + k * interval > now``.

    ``last`` is the slot of the run that just finished; the result is always greater, so a run
    that finished instantly (``now`` exactly on its own slot, or a hair before it because of
    float rounding) never runs twice in the same slot.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    k = math.floor((now - origin) / interval) + 1
    # Float rounding can put origin + k * interval a hair at or before now: step past it.
    while origin + k * interval <= now:
        k += 1
    return max(k, last + 1)


def align_up(t: float, granularity: float) -> float:
    """``t`` rounded up to a multiple of ``granularity`` (``t`` itself when granularity <= 0)."""
    if granularity <= 0:
        return t
    return math.ceil(t / granularity) * granularity


async def run_periodic(
    run: Callable[[], Awaitable[None]],
    *,
    interval: float,
    clock: Clock,
    rng: random.Random,
    name: str = "",
    granularity: float = 0.0,
) -> None:
    """Call ``run()`` on the interval grid forever (until cancelled). ``run`` must not raise."""
    granularity = min(granularity, interval / 10)  # never more than a tenth of the interval
    stagger = rng.random() * interval
    now = clock.monotonic()
    origin = now + stagger
    await clock.sleep(align_up(origin, granularity) - now)
    slot = 0
    while True:
        await run()
        now = clock.monotonic()
        following = next_slot(origin=origin, interval=interval, now=now, last=slot)
        if following > slot + 1:
            skipped = following - slot - 1
            log.debug("check %s overran its interval: skipped %d run(s)", name, skipped)
        slot = following
        await clock.sleep(align_up(origin + slot * interval, granularity) - clock.monotonic())
