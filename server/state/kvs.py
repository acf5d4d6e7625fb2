"""The KV table: entries, tombstones, locks and lock-delay, with Consul's semantics.

Index rows: ``kvs`` (any entry written), ``tombstones`` (any entry deleted). Watch keys:
``kv:<key>`` per entry. A list query on a prefix watches the ``kvs`` and ``tombstones`` rows and
reports the largest ModifyIndex under the prefix (tombstones included), or the table index when
the prefix is empty, as Consul does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lictor.common.structs import KVEntry
from lictor.server.state.store import Store, WriteTxn
from lictor.server.state.watch import WatchSet

__all__ = [
    "kvs_delete_cas_txn",
    "kvs_delete_tree_txn",
    "kvs_delete_txn",
    "kvs_get",
    "kvs_keys",
    "kvs_list",
    "kvs_lock_delay",
    "kvs_lock_txn",
    "kvs_set_cas_txn",
    "kvs_set_txn",
    "kvs_unlock_txn",
    "tombstone_reap_txn",
    "tombstones_older_than",
]


def _write(tx: WriteTxn, entry: KVEntry) -> None:
    store = tx.store
    if entry.key not in store.kvs:
        tx.sorted_add(store.kv_keys, entry.key)
    tx.put(store.kvs, entry.key, entry)
    tx.bump("kvs")
    tx.touch(f"kv:{entry.key}")


def kvs_set_txn(tx: WriteTxn, key: str, value: bytes | None, flags: int = 0) -> bool:
    """Plain PUT: keeps the holder of a lock (and its LockIndex) unchanged."""
    old = tx.store.kvs.get(key)
    if old is not None:
        if old.value == value and old.flags == flags:
            return True  # unchanged: no index bump, no watch fires
        entry = dataclasses.replace(old, value=value, flags=flags, modify_index=tx.index)
    else:
        entry = KVEntry(key=key, value=value, flags=flags, create_index=tx.index, modify_index=tx.index)
    _write(tx, entry)
    return True


def kvs_set_cas_txn(tx: WriteTxn, key: str, value: bytes | None, flags: int, cas: int) -> bool:
    """Check-and-set: ``cas == 0`` writes only a new key; otherwise the ModifyIndex must match."""
    old = tx.store.kvs.get(key)
    if cas == 0 and old is not None:
        return False
    if cas != 0 and (old is None or old.modify_index != cas):
        return False
    if old is not None:
        _write(tx, dataclasses.replace(old, value=value, flags=flags, modify_index=tx.index))
    else:
        _write(tx, KVEntry(key=key, value=value, flags=flags, create_index=tx.index, modify_index=tx.index))
    return True


def kvs_lock_txn(tx: WriteTxn, key: str, value: bytes | None, flags: int, session: str) -> bool:
    """Acquire: the session must be valid and the key free or already held by it."""
    store = tx.store
    if session not in store.sessions:
        return False
    old = store.kvs.get(key)
    if old is not None and old.session and old.session != session:
        return False
    if old is not None and old.session == session:
        entry = dataclasses.replace(old, value=value, flags=flags, modify_index=tx.index)
    elif old is not None:
        entry = dataclasses.replace(old, value=value, flags=flags, session=session,
                                    lock_index=old.lock_index + 1, modify_index=tx.index)
    else:
        entry = KVEntry(key=key, value=value, flags=flags, session=session, lock_index=1,
                        create_index=tx.index, modify_index=tx.index)
    _write(tx, entry)
    tx.index_add(store.session_locks, session, key)
    return True


def kvs_unlock_txn(tx: WriteTxn, key: str, value: bytes | None, flags: int, session: str) -> bool:
    """Release: only the holding session may release; the value is written too."""
    store = tx.store
    old = store.kvs.get(key)
    if old is None or old.session != session:
        return False
    _write(tx, dataclasses.replace(old, value=value, flags=flags, session="", modify_index=tx.index))
    tx.index_remove(store.session_locks, session, key)
    return True


def kvs_delete_txn(tx: WriteTxn, key: str) -> bool:
    store = tx.store
    old = store.kvs.get(key)
    if old is None:
        return True
    tx.delete(store.kvs, key)
    tx.sorted_remove(store.kv_keys, key)
    if old.session:
        tx.index_remove(store.session_locks, old.session, key)
    if key not in store.tombstones:
        tx.sorted_add(store.tombstone_keys, key)
    tx.put(store.tombstones, key, tx.index)
    tx.put(store.tombstone_times, key, tx.now)
    tx.bump("kvs", "tombstones")
    tx.touch(f"kv:{key}")
    return True


def kvs_delete_cas_txn(tx: WriteTxn, key: str, cas: int) -> bool:
    old = tx.store.kvs.get(key)
    if old is None:
        return cas == 0  # nothing to delete; Consul treats a missing key as success only for cas=0
    if old.modify_index != cas:
        return False
    return kvs_delete_txn(tx, key)


def kvs_delete_tree_txn(tx: WriteTxn, prefix: str) -> bool:
    for key in list(_keys_with_prefix(tx.store, prefix)):
        kvs_delete_txn(tx, key)
    return True


def tombstone_reap_txn(tx: WriteTxn, upto_index: int) -> int:
    """Drop tombstones written at or before ``upto_index``; returns how many."""
    store = tx.store
    reaped = [k for k, i in store.tombstones.items() if i <= upto_index]
    for k in reaped:
        tx.delete(store.tombstones, k)
        tx.delete(store.tombstone_times, k)
        tx.sorted_remove(store.tombstone_keys, k)
    return len(reaped)


def tombstones_older_than(store: Store, cutoff: float, undated: dict[str, float]) -> int:
    """The largest index ``upto`` such that every tombstone at or below it was written before
    ``cutoff`` (0: none). A reap up to it never takes a younger tombstone, even when the
    leaders' clocks disagreed. ``undated`` gives a time to tombstones a snapshot from before
    tombstone times carried none (the caller dates them when it first sees them)."""
    upto = 0
    for idx, key in sorted((i, k) for k, i in store.tombstones.items()):
        written = store.tombstone_times.get(key, undated.get(key))
        if written is None or written >= cutoff:
            break
        upto = idx
    return upto


def kvs_lock_delay(store: Store, key: str) -> float:
    """Wall-clock time until which ``key`` may not be acquired (0 if none)."""
    return store.lock_delay.get(key, 0.0)


# ----- queries ----------------------------------------------------------------------------------

def _keys_with_prefix(store: Store, prefix: str) -> Any:
    if not prefix:
        return iter(store.kv_keys)
    return store.kv_keys.irange(minimum=prefix, maximum=prefix + "\U0010ffff")


def kvs_get(store: Store, ws: WatchSet | None, key: str) -> tuple[int, KVEntry | None]:
    store.watch(ws, f"kv:{key}")
    return store.index("kvs", "tombstones"), store.kvs.get(key)


def _prefix_index(store: Store, prefix: str, entries: list[KVEntry]) -> int:
    idx = max((e.modify_index for e in entries), default=0)
    if store.tombstones:
        lo, hi = prefix, prefix + "\U0010ffff"
        for k in store.tombstone_keys.irange(minimum=lo, maximum=hi) if prefix else store.tombstone_keys:
            idx = max(idx, store.tombstones[k])
    return idx or store.index("kvs", "tombstones")


def kvs_list(store: Store, ws: WatchSet | None, prefix: str) -> tuple[int, list[KVEntry]]:
    store.watch(ws, "kvs", "tombstones")
    kvs = store.kvs
    entries = [kvs[k] for k in _keys_with_prefix(store, prefix)]
    return _prefix_index(store, prefix, entries), entries


def kvs_keys(store: Store, ws: WatchSet | None, prefix: str, separator: str) -> tuple[int, list[str]]:
    """Keys under ``prefix``, folded at the first ``separator`` after it (Consul's ?keys&separator)."""
    store.watch(ws, "kvs", "tombstones")
    kvs = store.kvs
    out: list[str] = []
    entries: list[KVEntry] = []
    for k in _keys_with_prefix(store, prefix):
        entries.append(kvs[k])
        if separator:
            cut = k.find(separator, len(prefix))
            if cut >= 0:
                folded = k[: cut + len(separator)]
                if not out or out[-1] != folded:
                    out.append(folded)
                continue
        out.append(k)
    return _prefix_index(store, prefix, entries), out
