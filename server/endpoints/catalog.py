"""Catalog.* and Health.* endpoints: registration writes and the catalog/health views."""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import ValidationError
from lictor.common.filter import compile_filter
from lictor.common.structs import check_to_api, node_to_api, service_to_agent_api, service_to_catalog_api
from lictor.server.endpoints import endpoint
from lictor.common.filter_schemas import (AGENT_SERVICE_SCHEMA, CATALOG_NODE_SCHEMA, CATALOG_SERVICE_SCHEMA,
                                          HEALTH_CHECK_SCHEMA, HEALTH_SERVICE_ENTRY_SCHEMA)
from lictor.server.configentry.mesh import merged_catalog_rows, merged_health_rows
from lictor.server.endpoints.common import blocking_read, make_filter
from lictor.server.server import Server
from lictor.server.state import catalog as cat
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet


@endpoint("Catalog.Register", write=True, optional={"node": str, "address": str, "checks": list,
                                                          "service": dict, "check": dict})
async def register(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    if not a.get("node"):
        raise ValidationError("Must provide node")
    if not a.get("address") and not a.get("skip_node_update"):
        raise ValidationError("Must provide address")
    a.setdefault("datacenter", server.config.datacenter)
    checks = list(a.get("checks") or [])
    for c in checks:
        if not isinstance(c, dict):
            raise ValidationError(f"Catalog.Register: each check must be a map, got {type(c).__name__}")
        c.setdefault("status", "critical")
        c.setdefault("node", a["node"])
        if c["node"] != a["node"]:
            raise ValidationError("Node in check must match the registration node")
        if not c.get("check_id"):
            if not c.get("name"):
                raise ValidationError("Check must have an ID or a name")
            c["check_id"] = c["name"]
    a["checks"] = checks
    await server.apply(MessageType.REGISTER, a)
    return {"result": True}


@endpoint("Catalog.Deregister", write=True, optional={"node": str, "service_id": str, "check_id": str})
async def deregister(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    if not a.get("node"):
        raise ValidationError("Must provide node")
    await server.apply(MessageType.DEREGISTER, a)
    return {"result": True}


@endpoint("Catalog.ListDatacenters")
async def datacenters(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    return {"result": [server.config.datacenter]}


@endpoint("Catalog.ListNodes")
async def list_nodes(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, CATALOG_NODE_SCHEMA)
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.nodes(store, ws, node_meta=a.get("node_meta"))
        return idx, filtered([node_to_api(n) for n in rows])
    return await blocking_read(server, a, q, shared="Catalog.ListNodes")


@endpoint("Catalog.ListServices")
async def list_services(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Service names with their tags. ``filter`` applies to each instance (Consul's ServiceNode
    shape): a service is listed when an instance matches, with the tags of matching instances."""
    match = None
    if a.get("filter"):
        f = compile_filter(str(a["filter"]), schema=CATALOG_SERVICE_SCHEMA)  # 400 before blocking
        dc = server.config.datacenter

        def match(s: Any, n: Any) -> bool:
            return f.matches(service_to_catalog_api(s, n, datacenter=dc))

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        return cat.services(store, ws, node_meta=a.get("node_meta"), match=match)
    return await blocking_read(server, a, q, shared="Catalog.ListServices")


@endpoint("Catalog.ServiceNodes", args={"service": str}, optional={"node_meta": dict})
async def service_nodes(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, CATALOG_SERVICE_SCHEMA)
    dc = server.config.datacenter

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.service_nodes(store, ws, a["service"], tags=a.get("tags") or (),
                                      connect=bool(a.get("connect")))
        out = [service_to_catalog_api(s, n, datacenter=dc) for s, n in rows
               if not a.get("node_meta") or all(n.meta.get(k) == v for k, v in a["node_meta"].items())]
        if a.get("merge_central_config"):
            idx, out = merged_catalog_rows(store, ws, idx, out)
        return idx, filtered(out)
    return await blocking_read(server, a, q, shared="Catalog.ServiceNodes")


@endpoint("Catalog.ServicesByAddress", optional={"address": str})
async def services_by_address(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """The instances whose own address is ``address`` (the DNS interface's reverse lookups)."""
    addr = str(a.get("address") or "")
    dc = server.config.datacenter

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, "services")
        rows = [service_to_catalog_api(s, store.nodes.get(s.node), datacenter=dc)
                for s in store.services.values() if addr and s.address == addr]
        rows.sort(key=lambda r: (r["ServiceName"], r["Node"], r["ServiceID"]))
        return store.index("services"), rows
    return await blocking_read(server, a, q)


@endpoint("Catalog.NodeServices", args={"node": str})
async def node_services(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, AGENT_SERVICE_SCHEMA)
    """``result`` is {"Node": ..., "Services": {id: service}} or None when the node is unknown;
    with ``list=True`` it is the /v1/catalog/node-services shape (Services as a list)."""
    dc = server.config.datacenter

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, n, rows = cat.node_services(store, ws, a["node"])
        if n is None:
            return idx, None
        services = filtered([service_to_agent_api(s) for s in rows])
        if a.get("list"):
            return idx, {"Node": node_to_api(n), "Services": services}
        return idx, {"Node": node_to_api(n) | {"Datacenter": dc}, "Services": {s["ID"]: s for s in services}}
    return await blocking_read(server, a, q, shared="Catalog.NodeServices")


@endpoint("Health.NodeChecks", args={"node": str})
async def node_checks(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, HEALTH_CHECK_SCHEMA)
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.health_node_checks(store, ws, a["node"])
        return idx, filtered([check_to_api(c) for c in rows])
    return await blocking_read(server, a, q, shared="Health.NodeChecks")


@endpoint("Health.ServiceChecks", args={"service": str})
async def service_checks(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, HEALTH_CHECK_SCHEMA)
    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.health_service_checks(store, ws, a["service"])
        return idx, filtered([check_to_api(c) for c in rows])
    return await blocking_read(server, a, q, shared="Health.ServiceChecks")


@endpoint("Health.ChecksInState", args={"state": str})
async def checks_in_state(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, HEALTH_CHECK_SCHEMA)
    state = a["state"]
    if state not in ("any", "passing", "warning", "critical", "maintenance"):
        raise ValidationError(f"Bad check state {state!r}")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.health_checks_in_state(store, ws, state)
        return idx, filtered([check_to_api(c) for c in rows])
    return await blocking_read(server, a, q, shared="Health.ChecksInState")


@endpoint("Health.ServiceNodes", args={"service": str})
async def health_service_nodes(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, HEALTH_SERVICE_ENTRY_SCHEMA)
    passing_only = bool(a.get("passing"))
    node_meta = a.get("node_meta")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = cat.health_service_nodes(store, ws, a["service"], tags=a.get("tags") or (),
                                             connect=bool(a.get("connect")))
        out = []
        for n, s, checks in rows:
            if passing_only and any(c.status != "passing" for c in checks):
                continue
            if node_meta and not all(n.meta.get(k) == v for k, v in node_meta.items()):
                continue
            out.append({"Node": node_to_api(n), "Service": service_to_agent_api(s),
                        "Checks": [check_to_api(c) for c in checks]})
        if a.get("merge_central_config"):
            idx, out = merged_health_rows(store, ws, idx, out)
        return idx, filtered(out)
    return await blocking_read(server, a, q, shared="Health.ServiceNodes")
