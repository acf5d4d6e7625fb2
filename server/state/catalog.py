"""Catalog tables: nodes, services and checks, their ``*_txn`` mutators and their queries.

Index rows (all bumped to the writing Raft index):

* ``nodes`` / ``services`` / ``checks``: the tables.
* ``service.<name>``: anything that changes the health view of service <name>: an instance, one
  of its checks, its node, or a node-level check of a node it runs on. Health and catalog queries
  for one service read and watch this row only, which makes 1,000 blocking queries on one
  service cheap and exact.
* ``connect.<name>``: connect-capable instances (sidecar proxies and native apps) for <name>.
* ``coordinates``: the network coordinates (``store.ext["coordinates"]``, written by
  lictor.server.coordinates). A coordinate lives and dies with its node: deleting a node deletes
  its coordinate rows in the same transaction and bumps this row (Consul's deleteNodeTxn), so
  neither reads nor snapshots ever carry the coordinate of a node that is gone.
Watch-only keys: ``node:<name>`` fires for any change to a node, its services or checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from lictor.common.errors import NotFound, ValidationError
from lictor.common.structs import CheckRow, Node, ServiceRow
from lictor.common.types import HealthStatus
from lictor.server.state.store import Store, WriteTxn
from lictor.server.state.watch import WatchSet

__all__ = [
    "check_delete_txn",
    "check_set_txn",
    "coordinates_delete_node_txn",
    "ensure_registration_txn",
    "health_checks_in_state",
    "health_node_checks",
    "health_service_checks",
    "health_service_nodes",
    "node_delete_txn",
    "node_services",
    "node_set_txn",
    "prune_orphan_coordinates",
    "nodes",
    "service_delete_txn",
    "service_index",
    "service_nodes",
    "service_set_txn",
    "services",
]


#: The extension table of network coordinates: (node, segment) -> row (lictor.server.coordinates).
COORDINATES = "coordinates"


def _row(cls: type, data: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in fields and k not in ("create_index", "modify_index")}
    for k in ("tags", "service_tags", "node_checks"):
        if k in kwargs and isinstance(kwargs[k], list):
            kwargs[k] = tuple(kwargs[k])
    if cls is ServiceRow and not kwargs.get("id"):
        kwargs["id"] = kwargs.get("service", "")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValidationError(f"invalid {cls.__name__}: {exc}") from None


def _connect_target(s: ServiceRow) -> str | None:
    if s.kind == "connect-proxy":
        return str(s.proxy.get("DestinationServiceName") or "") or None
    if s.connect.get("Native"):
        return s.service
    return None


# ----- mutators (run inside a caller's transaction) --------------------------------------------

def _services_of_node(store: Store, node: str) -> list[ServiceRow]:
    return [store.services[(node, sid)] for sid in store.services_by_node.get(node, ())]


def _bump_node_services(tx: WriteTxn, node: str) -> None:
    """A node-wide change alters the health view of every service on the node."""
    for s in _services_of_node(tx.store, node):
        tx.bump(f"service.{s.service}")
        target = _connect_target(s)
        if target:
            tx.bump(f"connect.{target}")


def node_set_txn(tx: WriteTxn, data: dict[str, Any]) -> bool:
    """Insert or update a node; returns whether anything changed."""
    store = tx.store
    new: Node = _row(Node, data)
    if not new.node:
        raise ValidationError("Must provide node")
    old = store.nodes.get(new.node)
    if old is not None and old.same_content(new):
        return False
    new = dataclasses.replace(new, create_index=old.create_index if old else tx.index, modify_index=tx.index)
    tx.put(store.nodes, new.node, new)
    tx.bump("nodes")
    tx.touch(f"node:{new.node}")
    _bump_node_services(tx, new.node)
    return True


def service_set_txn(tx: WriteTxn, node: str, data: dict[str, Any]) -> bool:
    store = tx.store
    if node not in store.nodes:
        raise NotFound(f"Node {node!r} is not registered")
    new: ServiceRow = _row(ServiceRow, {**data, "node": node})
    if not new.service:
        raise ValidationError("Must provide service name")
    if not new.id:
        new = dataclasses.replace(new, id=new.service)
    key = (node, new.id)
    old = store.services.get(key)
    if old is not None and old.same_content(new):
        return False
    new = dataclasses.replace(new, create_index=old.create_index if old else tx.index, modify_index=tx.index)
    if old is not None and old.service != new.service:
        tx.index_remove(store.services_by_name, old.service, key)
        tx.bump(f"service.{old.service}")
    if old is not None:
        target = _connect_target(old)
        if target:
            tx.bump(f"connect.{target}")
    tx.put(store.services, key, new)
    tx.index_add(store.services_by_name, new.service, key)
    tx.index_add(store.services_by_node, node, new.id)
    tx.bump("services", f"service.{new.service}")
    target = _connect_target(new)
    if target:
        tx.bump(f"connect.{target}")
    tx.touch(f"node:{node}")
    # checks of this service carry its name and tags
    for cid in list(store.checks_by_service.get(key, ())):
        c = store.checks[(node, cid)]
        if c.service_name != new.service or c.service_tags != new.tags:
            tx.put(store.checks, (node, cid), dataclasses.replace(
                c, service_name=new.service, service_tags=new.tags, modify_index=tx.index))
            tx.bump("checks")
    return True


def check_set_txn(tx: WriteTxn, node: str, data: dict[str, Any], *, now: float) -> bool:
    from lictor.server.state.sessions import session_invalidate_txn

    store = tx.store
    if node not in store.nodes:
        raise NotFound(f"Node {node!r} is not registered")
    new: CheckRow = _row(CheckRow, {**data, "node": node})
    if not new.check_id:
        raise ValidationError("Missing check ID")
    try:
        HealthStatus(new.status)
    except ValueError:
        raise ValidationError(f"Invalid check status {new.status!r}") from None
    svc: ServiceRow | None = None
    if new.service_id:
        svc = store.services.get((node, new.service_id))
        if svc is None:
            raise NotFound(f"Missing service {new.service_id!r} for check {new.check_id!r} on node {node!r}")
        new = dataclasses.replace(new, service_name=svc.service, service_tags=svc.tags)
    key = (node, new.check_id)
    old = store.checks.get(key)
    if old is not None and old.same_content(new):
        return False
    new = dataclasses.replace(new, create_index=old.create_index if old else tx.index, modify_index=tx.index)
    if old is not None and old.service_id and old.service_id != new.service_id:
        tx.index_remove(store.checks_by_service, (node, old.service_id), new.check_id)
        _bump_check_scope(tx, old)
    tx.put(store.checks, key, new)
    tx.index_add(store.checks_by_node, node, new.check_id)
    if new.service_id:
        tx.index_add(store.checks_by_service, (node, new.service_id), new.check_id)
    tx.bump("checks")
    _bump_check_scope(tx, new)
    if new.status == HealthStatus.CRITICAL:
        for sid in list(store.session_checks.get(key, ())):
            session_invalidate_txn(tx, sid, now=now)
    return True


def _bump_check_scope(tx: WriteTxn, c: CheckRow) -> None:
    tx.touch(f"node:{c.node}")
    if c.service_id:
        svc = tx.store.services.get((c.node, c.service_id))
        if svc is not None:
            tx.bump(f"service.{svc.service}")
            target = _connect_target(svc)
            if target:
                tx.bump(f"connect.{target}")
    else:
        _bump_node_services(tx, c.node)


def check_delete_txn(tx: WriteTxn, node: str, check_id: str, *, now: float) -> bool:
    from lictor.server.state.sessions import session_invalidate_txn

    store = tx.store
    key = (node, check_id)
    c = store.checks.get(key)
    if c is None:
        return False
    _bump_check_scope(tx, c)
    tx.delete(store.checks, key)
    tx.index_remove(store.checks_by_node, node, check_id)
    if c.service_id:
        tx.index_remove(store.checks_by_service, (node, c.service_id), check_id)
    tx.bump("checks")
    for sid in list(store.session_checks.get(key, ())):
        session_invalidate_txn(tx, sid, now=now)
    return True


def service_delete_txn(tx: WriteTxn, node: str, service_id: str, *, now: float) -> bool:
    store = tx.store
    key = (node, service_id)
    s = store.services.get(key)
    if s is None:
        return False
    for cid in list(store.checks_by_service.get(key, ())):
        check_delete_txn(tx, node, cid, now=now)
    tx.delete(store.services, key)
    tx.index_remove(store.services_by_name, s.service, key)
    tx.index_remove(store.services_by_node, node, service_id)
    tx.bump("services", f"service.{s.service}")
    target = _connect_target(s)
    if target:
        tx.bump(f"connect.{target}")
    tx.touch(f"node:{node}")
    return True


def node_delete_txn(tx: WriteTxn, node: str, *, now: float) -> bool:
    from lictor.server.state.sessions import session_destroy_txn

    store = tx.store
    if node not in store.nodes:
        return False
    for sid in list(store.services_by_node.get(node, ())):
        service_delete_txn(tx, node, sid, now=now)
    for cid in list(store.checks_by_node.get(node, ())):
        check_delete_txn(tx, node, cid, now=now)
    for sess in list(store.sessions_by_node.get(node, ())):
        session_destroy_txn(tx, sess, now=now)
    coordinates_delete_node_txn(tx, node)
    tx.delete(store.nodes, node)
    tx.bump("nodes")
    tx.touch(f"node:{node}")
    return True


def coordinates_delete_node_txn(tx: WriteTxn, node: str) -> int:
    """Delete every coordinate row of `node` (all segments); bumps ``coordinates`` when any
    went. Returns how many rows were deleted."""
    table = tx.store.ext[COORDINATES]
    if not table:
        return 0
    keys = [k for k in table if k[0] == node]  # one row per segment; segments are few
    for k in keys:
        tx.delete(table, k)
    if keys:
        tx.bump(COORDINATES)
    return len(keys)


def prune_orphan_coordinates(store: Store) -> int:
    """Drop coordinate rows whose node is not in the catalog, outside any transaction: for a
    store just loaded from a snapshot written before node deletes took their coordinates
    along (restore only; deterministic, so every server prunes the same rows)."""
    table = store.ext[COORDINATES]
    orphans = [k for k in table if k[0] not in store.nodes]
    for k in orphans:
        del table[k]
    return len(orphans)


def ensure_registration_txn(tx: WriteTxn, req: dict[str, Any], *, now: float) -> None:
    """Consul's catalog register: a node, optionally one service and checks, in one write."""
    node = req.get("node") or ""
    if not node:
        raise ValidationError("Must provide node")
    if not req.get("skip_node_update") or node not in tx.store.nodes:
        node_set_txn(tx, {
            "node": node, "id": req.get("id", ""), "address": req.get("address", ""),
            "datacenter": req.get("datacenter", ""), "tagged_addresses": req.get("tagged_addresses") or {},
            "meta": req.get("node_meta") or {},
        })
    service = req.get("service")
    if service:
        service_set_txn(tx, node, service)
    for check in req.get("checks") or ():
        check_set_txn(tx, node, check, now=now)


# ----- queries ----------------------------------------------------------------------------------

def _meta_match(meta: dict[str, str], want: dict[str, str] | None) -> bool:
    return not want or all(meta.get(k) == v for k, v in want.items())


def nodes(store: Store, ws: WatchSet | None, *, node_meta: dict[str, str] | None = None) -> tuple[int, list[Node]]:
    store.watch(ws, "nodes")
    rows = [n for n in store.nodes.values() if _meta_match(n.meta, node_meta)]
    rows.sort(key=lambda n: n.node)
    return store.index("nodes"), rows


def services(store: Store, ws: WatchSet | None, *, node_meta: dict[str, str] | None = None,
             match: Callable[[ServiceRow, Node], bool] | None = None) -> tuple[int, dict[str, list[str]]]:
    """Service names with the union of their tags (/v1/catalog/services); only the instances
    ``match`` accepts count (their node passed along), when given."""
    store.watch(ws, "services", "nodes")
    out: dict[str, set[str]] = {}
    for name, keys in store.services_by_name.items():
        tags: set[str] = set()
        seen = False
        for key in keys:
            if node_meta and not _meta_match(store.nodes[key[0]].meta, node_meta):
                continue
            if match is not None and not match(store.services[key], store.nodes[key[0]]):
                continue
            seen = True
            tags.update(store.services[key].tags)
        if seen:
            out[name] = tags
    return store.index("services", "nodes"), {k: sorted(v) for k, v in sorted(out.items())}


def service_index(store: Store, name: str, *, connect: bool = False) -> int:
    """Index of one service's view; the table index when the service never existed (never 0)."""
    key = f"connect.{name}" if connect else f"service.{name}"
    return store.indexes.get(key) or store.index("services", "nodes")


def _instances(store: Store, name: str, connect: bool) -> list[ServiceRow]:
    if not connect:
        rows = [store.services[k] for k in store.services_by_name.get(name, ())]
    else:
        rows = [s for s in store.services.values() if _connect_target(s) == name]
    rows.sort(key=lambda s: (s.node, s.id))
    return rows


def service_nodes(store: Store, ws: WatchSet | None, name: str, *, tags: Iterable[str] = (),
                  connect: bool = False) -> tuple[int, list[tuple[ServiceRow, Node]]]:
    store.watch(ws, f"connect.{name}" if connect else f"service.{name}")
    want = list(tags)
    out = []
    for s in _instances(store, name, connect):
        if want and not all(t in s.tags for t in want):
            continue
        out.append((s, store.nodes[s.node]))
    return service_index(store, name, connect=connect), out


def node_services(store: Store, ws: WatchSet | None, node: str) -> tuple[int, Node | None, list[ServiceRow]]:
    store.watch(ws, f"node:{node}")
    n = store.nodes.get(node)
    rows = sorted(_services_of_node(store, node), key=lambda s: s.id) if n else []
    return store.index("nodes", "services"), n, rows


def _node_checks(store: Store, node: str) -> list[CheckRow]:
    return [store.checks[(node, cid)] for cid in store.checks_by_node.get(node, ())]


def health_service_nodes(store: Store, ws: WatchSet | None, name: str, *, tags: Iterable[str] = (),
                         connect: bool = False) -> tuple[int, list[tuple[Node, ServiceRow, list[CheckRow]]]]:
    """Each instance with its node and the checks that decide its health (node + service checks)."""
    idx, rows = service_nodes(store, ws, name, tags=tags, connect=connect)
    out = []
    for s, n in rows:
        checks = [c for c in _node_checks(store, s.node) if not c.service_id or c.service_id == s.id]
        checks.sort(key=lambda c: (c.service_id != "", c.check_id))
        out.append((n, s, checks))
    return idx, out


def health_node_checks(store: Store, ws: WatchSet | None, node: str) -> tuple[int, list[CheckRow]]:
    store.watch(ws, f"node:{node}")
    rows = sorted(_node_checks(store, node), key=lambda c: c.check_id)
    return store.index("checks"), rows


def health_service_checks(store: Store, ws: WatchSet | None, name: str) -> tuple[int, list[CheckRow]]:
    store.watch(ws, f"service.{name}")
    rows: list[CheckRow] = []
    for key in store.services_by_name.get(name, ()):
        rows += [store.checks[(key[0], cid)] for cid in store.checks_by_service.get(key, ())]
    rows.sort(key=lambda c: (c.node, c.check_id))
    return service_index(store, name), rows


def health_checks_in_state(store: Store, ws: WatchSet | None, state: str) -> tuple[int, list[CheckRow]]:
    store.watch(ws, "checks")
    if state == "any":
        rows = list(store.checks.values())
    else:
        rows = [c for c in store.checks.values() if c.status == state]
    rows.sort(key=lambda c: (c.node, c.check_id))
    return store.index("checks"), rows
