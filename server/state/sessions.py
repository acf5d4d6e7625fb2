"""Sessions: creation against a node's health checks, invalidation, and the locks they hold.

Index row ``sessions``; watch key ``session:<id>``. Invalidating a session (destroy, a linked
check going critical, its node leaving) releases or deletes every key it holds, according to its
Behavior, and starts the lock-delay on each key from the command's timestamp.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lictor.common.errors import Conflict, NotFound, ValidationError
from lictor.common.structs import Session
from lictor.common.types import HealthStatus
from lictor.server.state.store import Store, WriteTxn
from lictor.server.state.watch import WatchSet

__all__ = [
    "session_create_txn",
    "session_destroy_txn",
    "session_get",
    "session_invalidate_txn",
    "session_list",
    "session_node",
]


def _linked_checks(s: Session) -> list[str]:
    return list(s.node_checks) + [c["ID"] for c in s.service_checks if c.get("ID")]


def session_create_txn(tx: WriteTxn, data: dict[str, Any]) -> None:
    store = tx.store
    fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                              if k not in ("create_index", "modify_index")}
    sess = Session(**fields)
    if not sess.id:
        raise ValidationError("Must provide session ID")
    if sess.behavior not in ("release", "delete"):
        raise ValidationError(f"Invalid session behavior {sess.behavior!r}")
    if sess.node not in store.nodes:  # Consul answers this with 500, not 404
        raise Conflict(f"Missing node registration for {sess.node!r}")
    if sess.id in store.sessions:
        raise Conflict(f"Session {sess.id!r} already exists")
    for cid in _linked_checks(sess):
        check = store.checks.get((sess.node, cid))
        if check is None:
            raise NotFound(f"Missing check '{cid}' registration")
        if check.status == HealthStatus.CRITICAL:
            raise Conflict(f"Check '{cid}' is in critical state")
    sess = dataclasses.replace(sess, create_index=tx.index, modify_index=tx.index)
    tx.put(store.sessions, sess.id, sess)
    tx.index_add(store.sessions_by_node, sess.node, sess.id)
    for cid in _linked_checks(sess):
        tx.index_add(store.session_checks, (sess.node, cid), sess.id)
    tx.bump("sessions")
    tx.touch(f"session:{sess.id}")


def session_destroy_txn(tx: WriteTxn, session_id: str, *, now: float) -> bool:
    """Delete a session, releasing or deleting what it holds. Returns whether it existed."""
    from lictor.server.state.kvs import kvs_delete_txn

    store = tx.store
    sess = store.sessions.get(session_id)
    if sess is None:
        return False
    for key in sorted(store.session_locks.get(session_id, ())):
        entry = store.kvs.get(key)
        if entry is None or entry.session != session_id:
            continue
        if sess.lock_delay > 0:
            tx.put(store.lock_delay, key, now + sess.lock_delay)
        if sess.behavior == "delete":
            kvs_delete_txn(tx, key)
        else:
            tx.put(store.kvs, key, dataclasses.replace(entry, session="", modify_index=tx.index))
            tx.bump("kvs")
            tx.touch(f"kv:{key}")
    tx.delete(store.session_locks, session_id)
    # prepared queries tied to the session go with it (Consul's rule)
    queries = store.ext["prepared_queries"]
    for qid in [q["ID"] for q in queries.values() if q.get("Session") == session_id]:
        tx.delete(queries, qid)
        tx.bump("prepared_queries")
    tx.delete(store.sessions, session_id)
    tx.index_remove(store.sessions_by_node, sess.node, session_id)
    for cid in _linked_checks(sess):
        tx.index_remove(store.session_checks, (sess.node, cid), session_id)
    tx.bump("sessions")
    tx.touch(f"session:{session_id}")
    return True


session_invalidate_txn = session_destroy_txn


def session_get(store: Store, ws: WatchSet | None, session_id: str) -> tuple[int, Session | None]:
    store.watch(ws, f"session:{session_id}")
    return store.index("sessions"), store.sessions.get(session_id)


def session_list(store: Store, ws: WatchSet | None) -> tuple[int, list[Session]]:
    store.watch(ws, "sessions")
    return store.index("sessions"), sorted(store.sessions.values(), key=lambda s: s.create_index)


def session_node(store: Store, ws: WatchSet | None, node: str) -> tuple[int, list[Session]]:
    store.watch(ws, "sessions")
    rows = [store.sessions[i] for i in store.sessions_by_node.get(node, ())]
    return store.index("sessions"), sorted(rows, key=lambda s: s.create_index)
