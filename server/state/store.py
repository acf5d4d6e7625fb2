"""The state store: in-memory tables stamped with Raft indexes, write transactions, watches.

Rules of this module (read them before changing it):

* Every write runs inside a :class:`WriteTxn` opened with the Raft index that caused it
  (``store.write_txn(idx)``). Every row it writes carries that index as ModifyIndex (and as
  CreateIndex when new), and every index row it bumps (``"kvs"``, ``"service.web"`` ...) gets it.
* Rows are immutable values; tables are dicts of rows plus secondary indexes. A transaction
  records the inverse of each mutation, so :meth:`WriteTxn.abort` restores the exact previous
  state: a failed multi-op ``Txn`` changes nothing.
* Index rows never move backwards. Deleting a KV entry leaves a tombstone carrying the delete's
  index, so a blocking list query on a prefix sees its index grow; the leader reaps tombstones
  later with a command.
* A commit fires the watch channels of the keys it changed, and only those; a write that changes
  nothing touches nothing and fires nothing.
* Reads take a :class:`WatchSet` and return ``(index, result)``. They never mutate.

The table-specific logic lives in catalog.py, kvs.py and sessions.py as ``*_txn`` functions (run
inside a caller's transaction) and read functions; :class:`Store` only holds the data and the
transaction machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sortedcontainers import SortedList

from lictor.common.structs import CheckRow, KVEntry, Node, ServiceRow, Session
from lictor.server.state.query_cache import QueryCache
from lictor.server.state.watch import Channel, WatchSet

__all__ = ["EXT_TABLES", "Store", "WriteTxn", "register_row_codec", "row_codec"]

_MISSING: Any = object()

# Tables added by features beyond the catalog/KV/sessions core. Each is ``store.ext[name]``: a
# dict from a key (a str, or a tuple of str) to an immutable row. Rows are plain msgpack-able
# values, or frozen dataclasses whose module registers a codec with :func:`register_row_codec`
# so snapshots can carry them. Watches and index rows work as for every other table
# (``tx.put(store.ext[name], key, row)``; ``tx.bump(name)``).
EXT_TABLES: tuple[str, ...] = (
    "ca_roots",          # CA root certificates, by root ID
    "ca_config",         # the CA configuration (one row, key "config")
    "ca_state",          # provider state incl. private keys: never served over HTTP or logged
    "config_entries",    # (kind, name) -> config entry (service-intentions included)
    "acl_tokens", "acl_policies", "acl_roles", "acl_auth_methods", "acl_binding_rules",
    "coordinates",       # node -> network coordinate
    "system_metadata",   # key -> value (cluster ID, autopilot state, ...)
    "prepared_queries",  # ID -> prepared query (API shape), server/prepared_query.py
)

_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}


def register_row_codec(table: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
    """Say how rows of an extension table become msgpack-able values and back (for snapshots)."""
    if table not in EXT_TABLES:
        raise ValueError(f"unknown extension table {table!r}")
    _CODECS[table] = (encode, decode)


def row_codec(table: str) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    return _CODECS.get(table, (lambda v: v, lambda v: v))


class Store:
    """All replicated tables of one server. Mutated only by the FSM, through write transactions."""

    def __init__(self) -> None:
        # catalog
        self.nodes: dict[str, Node] = {}
        self.services: dict[tuple[str, str], ServiceRow] = {}
        self.services_by_name: dict[str, set[tuple[str, str]]] = {}
        self.services_by_node: dict[str, set[str]] = {}
        self.checks: dict[tuple[str, str], CheckRow] = {}
        self.checks_by_node: dict[str, set[str]] = {}
        self.checks_by_service: dict[tuple[str, str], set[str]] = {}
        # kv
        self.kvs: dict[str, KVEntry] = {}
        self.kv_keys: SortedList = SortedList()
        self.tombstones: dict[str, int] = {}
        self.tombstone_keys: SortedList = SortedList()
        self.tombstone_times: dict[str, float] = {}
        """When each tombstone was written: the leader's wall clock carried in the delete's
        command (``WriteTxn.now``), so the leader reaps a tombstone by its own age."""
        self.lock_delay: dict[str, float] = {}  # key -> wall-clock expiry, from command time
        # sessions
        self.sessions: dict[str, Session] = {}
        self.sessions_by_node: dict[str, set[str]] = {}
        self.session_checks: dict[tuple[str, str], set[str]] = {}  # (node, check_id) -> session ids
        self.session_locks: dict[str, set[str]] = {}  # session id -> keys it holds
        # index rows and watch channels
        self.indexes: dict[str, int] = {}
        self._channels: dict[str, Channel] = {}
        self.abandoned = Channel()
        self.latest_index = 0
        # extension tables (see EXT_TABLES)
        self.ext: dict[str, dict[Any, Any]] = {name: {} for name in EXT_TABLES}
        # shared results of expensive reads, valid while latest_index is unchanged
        self.query_cache = QueryCache()

    # ----- indexes and watches -------------------------------------------------------------
    def index(self, *keys: str) -> int:
        """The largest of the named index rows (0 when none was ever written)."""
        get = self.indexes.get
        return max((get(k, 0) for k in keys), default=0)

    def channel(self, key: str) -> Channel:
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = Channel()
        return ch

    def watch(self, ws: WatchSet | None, *keys: str) -> None:
        """Add the current generation of each key, and the abandon channel, to ``ws``."""
        if ws is None:
            return
        for k in keys:
            ws.add(self.channel(k))
        ws.add(self.abandoned)

    def abandon(self) -> None:
        """This store was replaced by a restore: wake every parked query so it reads the new one."""
        self.abandoned.fire()
        for ch in self._channels.values():
            ch.fire()
        self._channels.clear()

    # ----- transactions ---------------------------------------------------------------------
    @contextmanager
    def write_txn(self, idx: int, now: float = 0.0) -> Iterator[WriteTxn]:
        """Run a write at Raft index ``idx``; commit on normal exit, roll back on an exception.
        ``now`` is the leader's wall clock carried in the command (the same on every replica)."""
        if idx <= 0:
            raise ValueError("a write transaction needs the Raft index that caused it")
        tx = WriteTxn(self, idx, now)
        try:
            yield tx
        except BaseException:
            tx.abort()
            raise
        else:
            tx.commit()

    def _fire(self, keys: set[str]) -> None:
        chans = self._channels
        for k in keys:
            ch = chans.pop(k, None)
            if ch is not None:
                ch.fire()


class WriteTxn:
    """The mutations of one write, with an undo log. Create it with :meth:`Store.write_txn`."""

    __slots__ = ("_done", "_touched", "_undo", "index", "now", "store")

    def __init__(self, store: Store, idx: int, now: float = 0.0) -> None:
        self.store = store
        self.index = idx
        self.now = now
        self._undo: list[Callable[[], None]] = []
        self._touched: set[str] = set()
        self._done = False

    # mutations (each records its inverse)
    def put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)
        table[key] = value
        if old is _MISSING:
            self._undo.append(lambda: table.pop(key, None))
        else:
            self._undo.append(lambda: table.__setitem__(key, old))

    def delete(self, table: dict[Any, Any], key: Any) -> Any:
        old = table.pop(key, _MISSING)
        if old is _MISSING:
            return None
        self._undo.append(lambda: table.__setitem__(key, old))
        return old

    def index_add(self, table: dict[Any, set[Any]], key: Any, item: Any) -> None:
        s = table.get(key)
        if s is None:
            s = set()
            self.put(table, key, s)
        if item not in s:
            s.add(item)
            self._undo.append(lambda: s.discard(item))

    def index_remove(self, table: dict[Any, set[Any]], key: Any, item: Any) -> None:
        s = table.get(key)
        if s is None or item not in s:
            return
        s.discard(item)
        self._undo.append(lambda: s.add(item))
        if not s:
            self.delete(table, key)

    def sorted_add(self, sl: SortedList, item: Any) -> None:
        sl.add(item)
        self._undo.append(lambda: sl.remove(item))

    def sorted_remove(self, sl: SortedList, item: Any) -> None:
        sl.remove(item)
        self._undo.append(lambda: sl.add(item))

    def bump(self, *keys: str) -> None:
        """Set the named index rows to this transaction's index and mark their watches to fire."""
        for k in keys:
            self.put(self.store.indexes, k, self.index)
            self._touched.add(k)

    def touch(self, *keys: str) -> None:
        """Mark watch keys (that have no index row) to fire on commit."""
        self._touched.update(keys)

    @property
    def changed(self) -> bool:
        return bool(self._undo)

    def commit(self) -> None:
        assert not self._done, "transaction finished twice"
        self._done = True
        if self._undo:
            self.store.latest_index = max(self.store.latest_index, self.index)
        self.store._fire(self._touched)

    def abort(self) -> None:
        assert not self._done, "transaction finished twice"
        self._done = True
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._touched.clear()
