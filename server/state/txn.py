"""Consul's multi-operation ``Txn``: KV, node, service and check verbs applied atomically.

``txn_apply_txn`` runs every operation inside the caller's write transaction. If any operation
fails, it raises :class:`TxnAborted` carrying every error (with its op index) so the caller's
transaction rolls back and nothing is half-applied; otherwise it returns the per-op results.
Read-only operation lists are answered by :func:`txn_read` without a Raft write, as Consul does.
"""

from __future__ import annotations

from typing import Any

from lictor.common.errors import LictorError
from lictor.common.structs import KVEntry
from lictor.server.state import catalog, kvs
from lictor.server.state.store import Store, WriteTxn

__all__ = ["READ_VERBS", "TxnAborted", "is_read_only", "txn_apply_txn", "txn_read"]

READ_VERBS = {"get", "get-tree", "check-index", "check-session", "check-not-exists"}


class TxnAborted(LictorError):
    error_code = "TxnAborted"  # stable across RPC (lictor.common.rpc.errmap)

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(e["What"] for e in errors))


def is_read_only(ops: list[dict[str, Any]]) -> bool:
    return all(op["verb"] in READ_VERBS for op in ops)


def _kv_result(e: KVEntry) -> dict[str, Any]:
    return {"KV": e}


def _kv_op(store: Store, tx: WriteTxn | None, op: dict[str, Any]) -> tuple[list[Any], str | None]:
    verb, key = op["verb"], op.get("key", "")
    value, flags = op.get("value"), int(op.get("flags") or 0)
    index, session = int(op.get("index") or 0), op.get("session") or ""
    cur = store.kvs.get(key)
    if verb == "get":
        return ([{"KV": cur}] if cur else []), (None if cur else f'key "{key}" doesn\'t exist')
    if verb == "get-tree":
        return [{"KV": e} for e in kvs.kvs_list(store, None, key)[1]], None
    if verb == "check-index":
        if cur is None:
            return [], f'key "{key}" doesn\'t exist'
        if cur.modify_index != index:
            return [], f'current modify index {cur.modify_index} != {index}'
        return [{"KV": cur}], None
    if verb == "check-session":
        if cur is None:
            return [], f'key "{key}" doesn\'t exist'
        if cur.session != session:
            return [], f'current session {cur.session!r} != {session!r}'
        return [{"KV": cur}], None
    if verb == "check-not-exists":
        return [], (f'key "{key}" exists' if cur is not None else None)
    assert tx is not None
    if verb == "set":
        kvs.kvs_set_txn(tx, key, value, flags)
    elif verb == "cas":
        if not kvs.kvs_set_cas_txn(tx, key, value, flags, index):
            return [], f'failed to set key "{key}", index is stale'
    elif verb == "lock":
        if not kvs.kvs_lock_txn(tx, key, value, flags, session):
            return [], f'failed to lock key "{key}", lock is already held or session is invalid'
    elif verb == "unlock":
        if not kvs.kvs_unlock_txn(tx, key, value, flags, session):
            return [], f'failed to unlock key "{key}", lock isn\'t held, or is held by another session'
    elif verb == "delete":
        kvs.kvs_delete_txn(tx, key)
        return [], None
    elif verb == "delete-tree":
        kvs.kvs_delete_tree_txn(tx, key)
        return [], None
    elif verb == "delete-cas":
        if not kvs.kvs_delete_cas_txn(tx, key, index):
            return [], f'failed to delete key "{key}", index is stale'
        return [], None
    else:
        return [], f"unknown KV verb {verb!r}"
    return [{"KV": store.kvs[key]}], None


def _cas_ok(row: Any, index: int) -> bool:
    return (row is None and index == 0) or (row is not None and row.modify_index == index)


def _node_op(store: Store, tx: WriteTxn | None, op: dict[str, Any], now: float) -> tuple[list[Any], str | None]:
    verb, node = op["verb"], op.get("node") or {}
    name = node.get("node", "")
    cur = store.nodes.get(name)
    if verb == "get":
        return ([{"Node": cur}] if cur else []), (None if cur else f'node "{name}" doesn\'t exist')
    assert tx is not None
    if verb in ("set", "cas"):
        if verb == "cas" and not _cas_ok(cur, int(node.get("modify_index") or 0)):
            return [], f'failed to set node "{name}", index is stale'
        catalog.node_set_txn(tx, node)
        return [{"Node": store.nodes[name]}], None
    if verb in ("delete", "delete-cas"):
        if verb == "delete-cas" and not _cas_ok(cur, int(node.get("modify_index") or 0)):
            return [], f'failed to delete node "{name}", index is stale'
        catalog.node_delete_txn(tx, name, now=now)
        return [], None
    return [], f"unknown node verb {verb!r}"


def _service_op(store: Store, tx: WriteTxn | None, op: dict[str, Any], now: float) -> tuple[list[Any], str | None]:
    verb, node, svc = op["verb"], op.get("node", ""), op.get("service") or {}
    sid = svc.get("id") or svc.get("service", "")
    cur = store.services.get((node, sid))
    if verb == "get":
        return ([{"Service": cur}] if cur else []), (None if cur else f'service "{sid}" on node "{node}" doesn\'t exist')
    assert tx is not None
    if verb in ("set", "cas"):
        if verb == "cas" and not _cas_ok(cur, int(svc.get("modify_index") or 0)):
            return [], f'failed to set service "{sid}" on node "{node}", index is stale'
        catalog.service_set_txn(tx, node, svc)
        return [{"Service": store.services[(node, sid)]}], None
    if verb in ("delete", "delete-cas"):
        if verb == "delete-cas" and not _cas_ok(cur, int(svc.get("modify_index") or 0)):
            return [], f'failed to delete service "{sid}" on node "{node}", index is stale'
        catalog.service_delete_txn(tx, node, sid, now=now)
        return [], None
    return [], f"unknown service verb {verb!r}"


def _check_op(store: Store, tx: WriteTxn | None, op: dict[str, Any], now: float) -> tuple[list[Any], str | None]:
    verb, check = op["verb"], op.get("check") or {}
    node, cid = check.get("node", ""), check.get("check_id", "")
    cur = store.checks.get((node, cid))
    if verb == "get":
        return ([{"Check": cur}] if cur else []), (None if cur else f'check "{cid}" on node "{node}" doesn\'t exist')
    assert tx is not None
    if verb in ("set", "cas"):
        if verb == "cas" and not _cas_ok(cur, int(check.get("modify_index") or 0)):
            return [], f'failed to set check "{cid}" on node "{node}", index is stale'
        catalog.check_set_txn(tx, node, check, now=now)
        return [{"Check": store.checks[(node, cid)]}], None
    if verb in ("delete", "delete-cas"):
        if verb == "delete-cas" and not _cas_ok(cur, int(check.get("modify_index") or 0)):
            return [], f'failed to delete check "{cid}" on node "{node}", index is stale'
        catalog.check_delete_txn(tx, node, cid, now=now)
        return [], None
    return [], f"unknown check verb {verb!r}"


def _run(store: Store, tx: WriteTxn | None, ops: list[dict[str, Any]], now: float
         ) -> tuple[list[Any], list[dict[str, Any]]]:
    results: list[Any] = []
    errors: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        try:
            kind = op["kind"]
            if kind == "kv":
                res, err = _kv_op(store, tx, op)
            elif kind == "node":
                res, err = _node_op(store, tx, op, now)
            elif kind == "service":
                res, err = _service_op(store, tx, op, now)
            elif kind == "check":
                res, err = _check_op(store, tx, op, now)
            else:
                res, err = [], f"unknown operation kind {kind!r}"
        except LictorError as exc:
            res, err = [], str(exc)
        if err:
            errors.append({"OpIndex": i, "What": err})
        else:
            results.extend(res)
    return results, errors


def txn_apply_txn(tx: WriteTxn, ops: list[dict[str, Any]], *, now: float) -> list[Any]:
    results, errors = _run(tx.store, tx, ops, now)
    if errors:
        raise TxnAborted(errors)
    return results


def txn_read(store: Store, ops: list[dict[str, Any]]) -> tuple[int, list[Any], list[dict[str, Any]]]:
    results, errors = _run(store, None, ops, 0.0)
    return store.latest_index, results, errors

