"""/v1/session/*: create, destroy, info, node, list, renew."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.agent.http.decode import fields
from lictor.common.duration import parse_duration
from lictor.common.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

_LOCK_DELAY_MIN_THRESHOLD = 1000  # Consul: numbers below are seconds, above are nanoseconds


def _lock_delay(v: Any) -> float:
    if v is None:
        return 15.0
    if isinstance(v, bool):
        raise ValidationError("Request decode failed: LockDelay: expected a duration")
    if isinstance(v, int | float):
        return float(v) if v < _LOCK_DELAY_MIN_THRESHOLD else float(v) / 1e9
    return parse_duration(v, what="LockDelay")


@route("PUT", "/v1/session/create", acl=ACL("session", "write"))
async def create(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req, required=False)
    f = fields(body if body is not None else {})
    service_checks = f.raw("ServiceChecks", [])
    if not isinstance(service_checks, list) or not all(isinstance(x, dict) for x in service_checks):
        raise ValidationError("Request decode failed: ServiceChecks: expected a list of objects")
    node_checks = f.str_list("NodeChecks") if f.has("NodeChecks") else None
    if f.has("Checks"):  # the deprecated name for NodeChecks
        node_checks = f.str_list("Checks")
    session = {"node": f.str("Node") or agent.node_name, "name": f.str("Name"),
               "behavior": (f.str("Behavior") or "release").lower(), "ttl": f.str("TTL"),
               "lock_delay": _lock_delay(f.raw("LockDelay")),
               "node_checks": ["serfHealth"] if node_checks is None else node_checks,
               "service_checks": [{"ID": str(fields(x).str("ID")), "Namespace": str(fields(x).str("Namespace"))}
                                  for x in service_checks]}
    out = await agent.rpc("Session.Apply", {"op": "create", "session": session})
    return json_response(req, {"ID": out["result"]})


@route("PUT", "/v1/session/destroy/{id}", acl=ACL("session", "write"))
async def destroy(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    await agent.rpc("Session.Apply", {"op": "destroy", "id": req.match_info["id"]})
    return json_response(req, True)


@route("PUT", "/v1/session/renew/{id}", acl=ACL("session", "write"))
async def renew(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    try:
        out = await agent.rpc("Session.Renew", {"id": req.match_info["id"]})
    except NotFound as exc:
        return web.Response(status=404, text=str(exc))
    return json_response(req, out["result"])


@route("GET", "/v1/session/info/{id}", acl=ACL("session", "read"))
async def info(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Session.Get", blocking_args(opts, id=req.match_info["id"]))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/session/node/{node}", acl=ACL("session", "read"))
async def node(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Session.NodeSessions", blocking_args(opts, node=req.match_info["node"]))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/session/list", acl=ACL("session", "list"))
async def list_(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Session.List", blocking_args(opts))
    return json_response(req, out["result"], meta=out)
