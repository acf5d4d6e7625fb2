"""Sharing one query's result among every reader of the same store state.

When a change wakes a thousand blocking queries on one service, each would re-run the same query
and build the same rows. :class:`QueryCache` lets the first re-run compute it and the others
reuse it: an entry is valid only for the store object it was computed on and only while
``store.latest_index`` is unchanged (any committed write moves it), so a hit is exactly what a
re-run would return. The entry also keeps the watch channels the query collected; they are still
the current generations, because no commit has fired anything since. Callers must treat a cached
result as immutable (the HTTP layer only encodes it, and caches the encoding by identity).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from lictor.server.state.watch import Channel, WatchSet

__all__ = ["QueryCache"]

Query = Callable[[Any, WatchSet | None], tuple[int, Any]]


class QueryCache:
    def __init__(self, max_entries: int = 512) -> None:
        self._entries: OrderedDict[Hashable, tuple[int, int, Any, list[Channel]]] = OrderedDict()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def run(self, store: Any, key: Hashable, query: Query, ws: WatchSet | None) -> tuple[int, Any]:
        """``query(store, ws)``, or its shared result for the store's current state."""
        latest = store.latest_index
        ent = self._entries.get(key)
        if ent is not None and ent[0] == latest:
            self.hits += 1
            self._entries.move_to_end(key)
            if ws is not None:
                ws.extend(ent[3])
            return ent[1], ent[2]
        self.misses += 1
        local = WatchSet()
        idx, value = query(store, local)
        self._entries[key] = (latest, idx, value, local.channels)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        if ws is not None:
            ws.extend(local.channels)
        return idx, value
