"""Watch channels and watch sets: how a blocking query learns that what it read has changed.

A :class:`Channel` is one *generation* of a watched key. Readers collect the current generation of
every key they touch into a :class:`WatchSet`. When a write transaction commits, the store fires
the channels of exactly the keys it changed and forgets them; the next reader gets a new
generation. Firing is synchronous (it only resolves futures), so tests can check ``ws.fired``
without waiting, and the state store stays free of I/O: this module imports no asyncio; waiting
for a watch set is :func:`lictor.server.blocking.wait_for_change`.

Past :data:`SOFT_LIMIT` channels a watch set stops collecting fine-grained channels and relies on
the coarse (table-level) channel the caller passes to :meth:`WatchSet.add_with_limit`, as go-memdb
does: a query over many rows then wakes on any change to the table, which is correct (the query
re-runs and compares indexes) but less precise.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["SOFT_LIMIT", "Channel", "WatchSet"]

SOFT_LIMIT = 8192


class Waiter(Protocol):
    """What a channel wakes: an ``asyncio.Future[None]`` in practice."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...


class Channel:
    """One generation of a watched key: fired once, never reset."""

    __slots__ = ("_waiters", "fired")

    def __init__(self) -> None:
        self.fired = False
        self._waiters: set[Waiter] | None = None

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def add_waiter(self, fut: Waiter) -> None:
        if self._waiters is None:
            self._waiters = set()
        self._waiters.add(fut)

    def remove_waiter(self, fut: Waiter) -> None:
        if self._waiters is not None:
            self._waiters.discard(fut)


class WatchSet:
    """The channels one query read (``fired`` once any of them fired)."""

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
