"""PreparedQuery.* endpoints: create/update/delete through the log, get/list, execute and explain.

Who may do what is decided in server/acl/rpc_rules.py (query:write on the name for writes,
query:read for reads, the Token redacted without acl:read). Execute reads the catalog with the
query's own Token when it has one, else the caller's, and drops the instances that token may not
read, as Consul does.
"""

from __future__ import annotations

import random
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import NotFound, ValidationError
from lictor.common.structs import check_to_api, node_to_api, service_to_agent_api
from lictor.server.acl.enforce import authorizer_for
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read
from lictor.server.prepared_query import TABLE, filter_nodes, new_id, parse_query, render, resolve
from lictor.server.server import Server
from lictor.server.state import catalog as cat
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

_rng = random.SystemRandom()


@endpoint("PreparedQuery.Apply", write=True)
async def apply(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    op = a.get("op")
    if op == "delete":
        qid = str(a.get("id") or "")
        if not qid:
            raise ValidationError("Must provide a query ID")
        await server.apply(MessageType.PREPARED_QUERY, {"op": "delete", "id": qid})
        return {"result": True}
    if op not in ("create", "update"):
        raise ValidationError(f"Unknown prepared query operation {op!r}")
    q = parse_query(a.get("query"))
    if op == "create":
        q["ID"] = new_id(server.store)
    else:
        qid = str(a.get("id") or "")
        if not qid:
            raise ValidationError("Must provide a query ID")
        if qid not in server.store.ext[TABLE]:
            raise NotFound(f"Cannot modify non-existent prepared query: '{qid}'")
        q["ID"] = qid
    result = await server.apply(MessageType.PREPARED_QUERY, {"op": op, "query": q})
    return {"result": result if isinstance(result, str) else q["ID"]}


@endpoint("PreparedQuery.Get")
async def get(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    qid = str(a.get("id") or "")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, TABLE)
        row = store.ext[TABLE].get(qid)
        return store.index(TABLE), ([dict(row)] if row is not None else None)
    out = await blocking_read(server, a, q)
    if out["result"] is None:
        raise NotFound("Query not found")
    return out


@endpoint("PreparedQuery.List")
async def list_(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, TABLE)
        rows = sorted(store.ext[TABLE].values(), key=lambda r: (r["CreateIndex"], r["ID"]))
        return store.index(TABLE), [dict(r) for r in rows]
    return await blocking_read(server, a, q)


@endpoint("PreparedQuery.Explain")
async def explain(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    name = str(a.get("query") or "")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, TABLE)
        stored = resolve(store, name)
        return store.index(TABLE), (None if stored is None else {"Query": render(stored, name)})
    out = await blocking_read(server, a, q)
    if out["result"] is None:
        raise NotFound("Query not found")
    return out


def _readable(authz: Any, row: dict[str, Any]) -> bool:
    if authz is None:
        return True
    return authz.allowed("node", "read", str(row["Node"].get("Node") or "")) and \
        authz.allowed("service", "read", str(row["Service"].get("Service") or ""))


@endpoint("PreparedQuery.Execute")
async def execute(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    name = str(a.get("query") or "")
    stored = resolve(server.store, name)
    if stored is None:
        raise NotFound("Query not found")
    query = render(stored, name)
    # the query's own token reads the catalog when it has one (Consul's rule), else the caller's
    authz = authorizer_for(server, query.get("Token") or a.get("token"))
    svc = query["Service"]
    connect = bool(svc["Connect"]["Enabled"] or a.get("connect"))
    limit = int(a.get("limit") or 0)
    if limit < 0:
        raise ValidationError("limit must be >= 0")
    dc = server.config.datacenter

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.health_service_nodes(store, ws, svc["Service"], connect=connect)
        api = [{"Node": node_to_api(n) | {"Datacenter": dc}, "Service": service_to_agent_api(s),
                "Checks": [check_to_api(c) for c in checks]} for n, s, checks in rows]
        nodes = [r for r in filter_nodes(query, api) if _readable(authz, r)]
        _rng.shuffle(nodes)  # Near sorting, when asked, happens on the agent that has coordinates
        if limit:
            nodes = nodes[:limit]
        # Failover: only this datacenter is known (no WAN federation yet), so there is no other
        # datacenter to fail over to and Failovers stays 0.
        return idx, {"Service": svc["Service"], "Nodes": nodes, "DNS": dict(query.get("DNS") or {"TTL": ""}),
                     "Datacenter": dc, "Failovers": 0,
                     "Near": svc.get("Near") or ""}  # "Near": for the agent to sort by; not served
    return await blocking_read(server, {k: v for k, v in a.items() if k not in ("min_index", "wait")}, q)
