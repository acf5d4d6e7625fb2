"""Catalog views of the mesh: /v1/catalog/gateway-services/:gateway and /v1/health/ingress/:service.

(``?merge-central-config`` on /v1/catalog/service and /v1/health/service is a flag those routes
pass to their endpoints; the merge itself is lictor.server.configentry.mesh.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, json_response, route

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


@route("GET", "/v1/catalog/gateway-services/{gateway}", acl=ACL("service", "read", "gateway"))
async def gateway_services(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.GatewayServices", blocking_args(opts, gateway=req.match_info["gateway"]))
    return json_response(req, out["result"], meta=out, shared=True)


@route("GET", "/v1/health/ingress/{service}", acl=ACL("service", "read", "service"))
async def ingress_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    passing = "passing" in req.query and req.query.get("passing", "").lower() not in ("false", "0")
    out = await agent.rpc("Health.IngressServiceNodes", blocking_args(opts, service=req.match_info["service"],
                                                                      passing=passing))
    return json_response(req, out["result"], meta=out, shared=True)
