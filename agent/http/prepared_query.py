"""/v1/query: prepared queries (create, list, read, update, delete, execute, explain).

The ACL decisions live with the RPC endpoints (server/acl/rpc_rules.py: query:write on the name
for writes, query:read for reads; execute reads the catalog with the query's token), so these
routes declare ``ACL("none")`` and pass the request's token through ``agent.rpc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


@route("POST", "/v1/query", acl=ACL("none", "write"))
async def create(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    out = await agent.rpc("PreparedQuery.Apply", {"op": "create", "query": body})
    return json_response(req, {"ID": out["result"]})


@route("GET", "/v1/query", acl=ACL("none", "read"))
async def list_(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("PreparedQuery.List", blocking_args(opts))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/query/{id}", acl=ACL("none", "read"))
async def get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("PreparedQuery.Get", blocking_args(opts, id=req.match_info["id"]))
    return json_response(req, out["result"], meta=out)


@route("PUT", "/v1/query/{id}", acl=ACL("none", "write"))
async def update(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    qid = req.match_info["id"]
    if isinstance(body, dict) and body.get("ID") not in (None, "", qid):
        raise ValidationError(f"Query ID in the body ({body.get('ID')!r}) does not match the path ({qid!r})")
    await agent.rpc("PreparedQuery.Apply", {"op": "update", "id": qid, "query": body})
    return web.Response(status=200)


@route("DELETE", "/v1/query/{id}", acl=ACL("none", "write"))
async def delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    await agent.rpc("PreparedQuery.Apply", {"op": "delete", "id": req.match_info["id"]})
    return web.Response(status=200)


@route("GET", "/v1/query/{id}/execute", acl=ACL("none", "read"))
async def execute(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    limit = req.query.get("limit", "0")
    if not limit.isdigit():
        raise ValidationError(f"Bad limit {limit!r}: expected a non-negative integer")
    args = blocking_args(opts, query=req.match_info["id"], agent_node=agent.node_name,
                         connect="connect" in req.query and req.query.get("connect", "").lower() != "false")
    out = await agent.rpc("PreparedQuery.Execute", args)
    result = dict(out["result"])
    near = req.query.get("near") or result.get("Near", "")
    result.pop("Near", None)
    if near:  # Consul's Near: the closest instances first, by network coordinates
        from lictor.agent.coordinates import sort_by_distance
        from lictor.agent.http.cluster import near_coordinates

        mine, coords = await near_coordinates(agent, near)
        result["Nodes"] = sort_by_distance(result["Nodes"], mine, coords, lambda r: (r.get("Node") or {}).get("Node"))
    if int(limit):
        result["Nodes"] = result["Nodes"][: int(limit)]
    return json_response(req, result, meta=out)


@route("GET", "/v1/query/{id}/explain", acl=ACL("none", "read"))
async def explain(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("PreparedQuery.Explain", blocking_args(opts, query=req.match_info["id"]))
    return json_response(req, out["result"], meta=out)
