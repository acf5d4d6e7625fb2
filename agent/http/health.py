"""/v1/health/*: node, checks, service, connect, state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, json_response, route
from lictor.agent.http.catalog import peer_view

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


@route("GET", "/v1/health/node/{node}", acl=ACL("node", "read", "node"))
async def node_checks(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Health.NodeChecks", blocking_args(opts, node=req.match_info["node"]))
    return json_response(req, peer_view(req, out["result"], []), meta=out, shared=True)


@route("GET", "/v1/health/checks/{service}", acl=ACL("service", "read", "service"))
async def service_checks(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Health.ServiceChecks", blocking_args(opts, service=req.match_info["service"]))
    return json_response(req, peer_view(req, out["result"], []), meta=out, shared=True)


async def _service(req: web.Request, agent: Agent, connect: bool) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    passing = "passing" in req.query and req.query.get("passing", "").lower() not in ("false", "0")
    out = await agent.rpc("Health.ServiceNodes", blocking_args(
        opts, service=req.match_info["service"], tags=req.query.getall("tag", []), passing=passing,
        connect=connect, merge_central_config="merge-central-config" in req.query))
    if req.query.get("peer"):
        return json_response(req, [], meta=out)
    if req.query.get("near"):  # issue 4: sorted by estimated RTT (lictor.agent.http.cluster)
        from lictor.agent.http.cluster import sort_near
        rows = await sort_near(req, agent, out["result"], lambda r: (r.get("Node") or {}).get("Node"))
        return json_response(req, rows, meta=out)
    return json_response(req, peer_view(req, out["result"], []), meta=out, shared=True)


@route("GET", "/v1/health/service/{service}", acl=ACL("service", "read", "service"))
async def service_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _service(req, agent, False)


@route("GET", "/v1/health/connect/{service}", acl=ACL("service", "read", "service"))
async def connect_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _service(req, agent, True)


@route("GET", "/v1/health/state/{state}", acl=ACL("node", "list"))
async def state(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Health.ChecksInState", blocking_args(opts, state=req.match_info["state"]))
    return json_response(req, peer_view(req, out["result"], []), meta=out, shared=True)
