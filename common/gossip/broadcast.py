"""The transmit-limited broadcast queue (memberlist ``queue.go``).

State changes (alive, suspect, dead) are not sent on their own: they ride on the packets we
send anyway (pings, acks, gossip rounds) until each has been transmitted
``retransmit_limit(mult, n) = mult * ceil(log10(n + 1))`` times, enough for an epidemic to reach
all ``n`` members with high probability.

Rules:

* A new broadcast about a member *invalidates* any queued broadcast about the same member: only
  the newest news about a member is worth spreading.
* ``get_broadcasts`` hands out the least-transmitted first and, among equals, the newest, and
  packs greedily: a broadcast that does not fit is skipped and smaller ones may still go.
* A broadcast leaves the queue when transmitted ``limit`` times or invalidated; if it carried a
  ``notify`` token, the token is put in ``finished`` (``leave()`` waits on its own broadcast).
* The queue is bounded (``max_depth``); the most-transmitted broadcasts are dropped first.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["BroadcastQueue", "retransmit_limit"]


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    return retransmit_mult * int(math.ceil(math.log10(n + 1)))


@dataclass(slots=True)
class _Broadcast:
    key: str | None
    payload: bytes
    id: int
    transmits: int = 0
    notify: Hashable | None = None


class BroadcastQueue:
    __slots__ = ("retransmit_mult", "max_depth", "finished", "_by_key", "_items", "_next_id")

    def __init__(self, *, retransmit_mult: int, max_depth: int = 4096) -> None:
        self.retransmit_mult = retransmit_mult
        self.max_depth = max_depth
        self.finished: set[Hashable] = set()
        self._by_key: dict[str, _Broadcast] = {}
        self._items: dict[int, _Broadcast] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: str | None, payload: bytes, *, notify: Hashable | None = None) -> None:
        """Queue ``payload`` (an encoded message) about member ``key`` (None: never invalidated)."""
        if key is not None:
            old = self._by_key.pop(key, None)
            if old is not None:
                self._finish(old)
        self._next_id += 1
        b = _Broadcast(key=key, payload=payload, id=self._next_id, notify=notify)
        self._items[b.id] = b
        if key is not None:
            self._by_key[key] = b
        if len(self._items) > self.max_depth:
            self.prune(self.max_depth)

    def prune(self, max_retain: int) -> None:
        """Keep only the ``max_retain`` least-transmitted (then newest) broadcasts."""
        if len(self._items) <= max_retain:
            return
        ranked = sorted(self._items.values(), key=lambda b: (b.transmits, -b.id))
        for b in ranked[max_retain:]:
            self._remove(b)

    def get_broadcasts(self, *, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Up to ``limit - overhead`` bytes of payloads; each one given counts as a transmit."""
        if not self._items:
            return []
        budget = limit - overhead
        max_tx = retransmit_limit(self.retransmit_mult, num_nodes)
        out: list[bytes] = []
        for b in sorted(self._items.values(), key=lambda b: (b.transmits, -b.id)):
            if budget < 2:
                break
            size = len(b.payload)
            if size > budget:
                continue
            budget -= size
            out.append(b.payload)
            b.transmits += 1
            if b.transmits >= max_tx:
                self._remove(b)
        return out

    def _remove(self, b: _Broadcast) -> None:
        self._items.pop(b.id, None)
        if b.key is not None and self._by_key.get(b.key) is b:
            del self._by_key[b.key]
        self._finish(b)

    def _finish(self, b: _Broadcast) -> None:
        self._items.pop(b.id, None)
        if b.notify is not None:
            self.finished.add(b.notify)
