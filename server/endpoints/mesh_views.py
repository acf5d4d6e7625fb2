"""Catalog.GatewayServices and Health.IngressServiceNodes: the catalog seen through gateway entries."""

from __future__ import annotations

from typing import Any

from lictor.common.filter_schemas import HEALTH_SERVICE_ENTRY_SCHEMA
from lictor.common.structs import check_to_api, node_to_api, service_to_agent_api
from lictor.server.configentry.mesh import gateway_services, ingress_gateways_for
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read, make_filter
from lictor.server.server import Server
from lictor.server.state import catalog as cat
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet


@endpoint("Catalog.GatewayServices", args={"gateway": str})
async def catalog_gateway_services(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    filtered = make_filter(a, None)

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, rows = gateway_services(store, ws, a["gateway"])
        return idx, filtered(rows)
    return await blocking_read(server, a, q, shared="Catalog.GatewayServices")


@endpoint("Health.IngressServiceNodes", args={"service": str})
async def ingress_service_nodes(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Health entries of the ingress gateway instances that route to ``service``."""
    filtered = make_filter(a, HEALTH_SERVICE_ENTRY_SCHEMA)
    passing_only = bool(a.get("passing"))

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        idx, gateways = ingress_gateways_for(store, ws, a["service"])
        out = []
        for gw in gateways:
            gidx, rows = cat.health_service_nodes(store, ws, gw)
            idx = max(idx, gidx)
            for n, s, checks in rows:
                if passing_only and any(c.status != "passing" for c in checks):
                    continue
                out.append({"Node": node_to_api(n), "Service": service_to_agent_api(s),
                            "Checks": [check_to_api(c) for c in checks]})
        return max(idx, 1), filtered(out)
    return await blocking_read(server, a, q, shared="Health.IngressServiceNodes")
