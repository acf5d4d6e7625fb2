"""Blocking queries, as Consul runs them (agent/blockingquery).

The three musts of a blocking query:

1. **Run the query at least once**, and return at once when ``min_index`` is 0 (not blocking).
2. **Return as soon as the index differs from ``min_index``**: greater means something changed;
   smaller means the index was reset (a snapshot restore), and the client must start over.
3. **Never return an index below 1**, so a client that echoes it back always blocks.

Between runs the query parks on the watch set it filled while reading, plus the store's
``abandoned`` channel (fired when a restore swaps the store), until a channel fires or the wait
(capped at :data:`MAX_WAIT`, plus up to wait/16 of jitter so parked clients do not return in a
herd) runs out. On timeout the last result is returned with its index.

``before_pass`` (optional) is awaited before every run of the query: a ``?consistent`` read
confirms leadership there on each pass, as Consul's blocking loop does, since the query may
park for minutes while leadership moves; it raises to end the query.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lictor.common.clock import Clock
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "BlockingOptions", "blocking_query", "wait_for_change"]

T = TypeVar("T")

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0


@dataclass(frozen=True, slots=True)
class BlockingOptions:
    min_index: int = 0
    wait: float = DEFAULT_WAIT


@dataclass(frozen=True, slots=True)
class _Result(Generic[T]):
    index: int
    value: T


async def blocking_query(
    get_store: Callable[[], Store],
    opts: BlockingOptions,
    query: Callable[[Store, WatchSet | None], tuple[int, T]],
    *,
    rng: random.Random | None = None,
    before_pass: Callable[[], Awaitable[None]] | None = None,
    clock: Clock | None = None,
) -> tuple[int, T]:
    """Run ``query(store, ws)`` until its index differs from ``opts.min_index`` or time runs out.
    ``rng`` draws the jitter and ``clock`` measures the wait (the loop's clock by default)."""
    if opts.min_index <= 0:
        if before_pass is not None:
            await before_pass()
        idx, value = query(get_store(), None)
        return max(idx, 1), value
    wait = min(max(opts.wait, 0.0), MAX_WAIT) or DEFAULT_WAIT
    wait += (rng or _RNG).random() * wait / 16
    now = clock.monotonic if clock is not None else asyncio.get_running_loop().time
    deadline = now() + wait
    while True:
        if before_pass is not None:
            await before_pass()
        ws = WatchSet()
        store = get_store()
        abandoned = getattr(store, "abandoned", None)
        if abandoned is not None:
            ws.add(abandoned)
        idx, value = query(store, ws)
        idx = max(idx, 1)
        if idx != opts.min_index:
            return idx, value
        remaining = deadline - now()
        if remaining <= 0 or not await wait_for_change(ws, remaining, clock):
            return idx, value


async def wait_for_change(ws: WatchSet, timeout: float, clock: Clock | None = None) -> bool:
    """Wait until a channel of `ws` fires (True) or `timeout` seconds pass (False), on
    `clock` (default: the loop's own timer, the cheap path every parked query takes)."""
    if ws.fired:
        return True
    loop = asyncio.get_running_loop()
    if not ws.channels:
        await (clock.sleep(timeout) if clock is not None else asyncio.sleep(timeout))
        return False
    fut: asyncio.Future[None] = loop.create_future()
    for ch in ws.channels:
        ch.add_waiter(fut)
    timer: asyncio.TimerHandle | asyncio.Task[None]
    if clock is None:
        timer = loop.call_later(timeout, _expire, fut)
    else:
        timer = loop.create_task(clock.sleep(timeout))
        timer.add_done_callback(lambda _t: _expire(fut))
    try:
        await fut
    finally:
        timer.cancel()
        for ch in ws.channels:
            ch.remove_waiter(fut)
    return ws.fired


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_RNG = random.Random()
