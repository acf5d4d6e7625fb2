"""The seam between the server and its replicated log: one ``apply(data)`` path for every write.

:class:`Replicator` is what the server needs from a log. :class:`LocalLog` is the single-voter,
in-memory log of ``lictor agent -dev``: it assigns the next index, keeps the entry, and applies it
to the FSM at once. The Raft driver (server/raft) implements the same protocol for clusters, so
nothing above this module changes when writes start to replicate.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

from lictor.common.errors import NotLeaderError, ShutdownError
from lictor.server.fsm import FSM

__all__ = ["LocalLog", "Replicator"]


class Replicator(Protocol):
    """A log that orders writes and applies them to an FSM once committed."""

    fsm: FSM

    async def apply(self, data: bytes) -> tuple[int, Any]:
        """Append ``data``, wait until committed and applied; return (index, FSM outcome).

        Raises NotLeaderError (with the leader's address if known), LeadershipLostError when the
        outcome is unknown, ShutdownError when closing. FSM refusals are returned, not raised.
        """
        ...

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None:
        """The leader's server RPC address, or None when no leader is known."""
        ...

    def last_contact(self) -> float:
        """Seconds since this server last heard from the leader (0 on the leader)."""
        ...

    async def verify_leader(self) -> None:
        """Confirm leadership with a quorum (for ?consistent reads); raises NotLeaderError."""
        ...

    def peers(self) -> list[str]: ...

    async def close(self) -> None: ...


class LocalLog:
    """The in-memory single-voter log of dev mode. Keeps a bounded tail of entries."""

    def __init__(self, fsm: FSM, *, address: str, keep_entries: int = 10_000) -> None:
        self.fsm = fsm
        self._address = address
        self._index = fsm.last_applied
        self._entries: deque[tuple[int, bytes]] = deque(maxlen=keep_entries)
        self._closed = False
        self.started_at = time.monotonic()

    @property
    def last_index(self) -> int:
        return self._index

    async def apply(self, data: bytes) -> tuple[int, Any]:
        if self._closed:
            raise ShutdownError("server is shutting down")
        self._index += 1
        self._entries.append((self._index, data))
        return self._index, self.fsm.apply(self._index, data)

    def is_leader(self) -> bool:
        return not self._closed

    def leader(self) -> str | None:
        return self._address

    def last_contact(self) -> float:
        return 0.0

    async def verify_leader(self) -> None:
        if self._closed:
            raise NotLeaderError(None)

    def peers(self) -> list[str]:
        return [self._address]

    async def close(self) -> None:
        self._closed = True
