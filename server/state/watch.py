"""Watch channels and watch sets: how a blocking query learns that what it read has changed.

A :class:`Channel` is one *generation* of a watched key. Readers collect the current generation of
every key they touch into a :class:`WatchSet`. When a write transaction commits, the store fires
the channels of exactly the keys it changed and forgets them; the next reader gets a new
generation. Firing is synchronous (it only resolves futures), so tests can check ``ws.fired``
without waiting, and the state store stays free of I/O.

Past :data:`SOFT_LIMIT` channels a watch set stops collecting fine-grained channels and relies on
the coarse (table-level) channel the caller passes to :meth:`WatchSet.add_with_limit`, as go-memdb
does: a query over many rows then wakes on any change to the table, which is correct (the query
re-runs and compares indexes) but less precise.
"""

from __future__ import annotations

import asyncio

__all__ = ["SOFT_LIMIT", "Channel", "WatchSet"]

SOFT_LIMIT = 8192


class Channel:
    """One generation of a watched key: fired once, never reset."""

    __slots__ = ("_waiters", "fired")

    def __init__(self) -> None:
        self.fired = False
        self._waiters: set[asyncio.Future[None]] | None = None

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _add_waiter(self, fut: asyncio.Future[None]) -> None:
        if self._waiters is None:
            self._waiters = set()
        self._waiters.add(fut)

    def _remove_waiter(self, fut: asyncio.Future[None]) -> None:
        if self._waiters is not None:
            self._waiters.discard(fut)


class WatchSet:
    """The channels one query read. ``wait()`` returns when any of them fires or on timeout."""

    __slots__ = ("_channels", "_limited")

    def __init__(self) -> None:
        self._channels: list[Channel] = []
        self._limited = False

    def add(self, ch: Channel) -> None:
        self._channels.append(ch)

    def add_with_limit(self, ch: Channel, fallback: Channel) -> None:
        """Add ``ch``, or ``fallback`` once the set holds :data:`SOFT_LIMIT` channels."""
        if self._limited:
            return
        if len(self._channels) >= SOFT_LIMIT:
            self._limited = True
            self._channels.append(fallback)
            return
        self._channels.append(ch)

    def extend(self, channels: list[Channel]) -> None:
        """Add channels collected by another watch set (a shared query result's watches)."""
        self._channels.extend(channels)

    @property
    def channels(self) -> list[Channel]:
        return self._channels

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def fired(self) -> bool:
        return any(ch.fired for ch in self._channels)

    async def wait(self, timeout: float) -> bool:
        """Wait until a channel fires (True) or ``timeout`` seconds pass (False)."""
        if self.fired:
            return True
        if not self._channels:
            await asyncio.sleep(timeout)
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        for ch in self._channels:
            ch._add_waiter(fut)
        handle = loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            handle.cancel()
            for ch in self._channels:
                ch._remove_waiter(fut)
        return self.fired


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
