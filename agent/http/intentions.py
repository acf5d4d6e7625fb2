"""/v1/connect/intentions: list, exact (get/put/delete by source and destination), match, check.

Intentions live in service-intentions config entries (as in Consul 1.9+); the legacy ID-based
routes (``/v1/connect/intentions/:uuid``) are not served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, meta_headers, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


def _pair(req: web.Request) -> dict[str, str]:
    src, dst = req.query.get("source", ""), req.query.get("destination", "")
    if not src:
        raise ValidationError("required query parameter 'source' not set")
    if not dst:
        raise ValidationError("required query parameter 'destination' not set")
    return {"source": src, "destination": dst}


@route("GET", "/v1/connect/intentions", acl=ACL("intention", "read"))
async def intention_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Intention.List", blocking_args(opts))
    return json_response(req, out["result"], meta=out, shared=True)


@route("GET", "/v1/connect/intentions/exact", acl=ACL("intention", "read"))
async def intention_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Intention.Get", blocking_args(opts, **_pair(req)))
    if out["result"] is None:
        return web.Response(status=404, text="Intention not found", headers=meta_headers(out))
    return json_response(req, out["result"], meta=out)


@route("PUT", "/v1/connect/intentions/exact", acl=ACL("intention", "write"))
async def intention_put(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    pair = _pair(req)
    body = await decode_json_body(req)
    if not isinstance(body, dict):
        raise ValidationError("Request decode failed: the body must be a JSON object")
    out = await agent.rpc("Intention.Apply", {"op": "upsert", "intention": body, **pair})
    return json_response(req, bool(out["result"]))


@route("DELETE", "/v1/connect/intentions/exact", acl=ACL("intention", "write"))
async def intention_delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    await agent.rpc("Intention.Apply", {"op": "delete", **_pair(req)})
    return json_response(req, True)


@route("GET", "/v1/connect/intentions/match", acl=ACL("intention", "read"))
async def intention_match(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    by = req.query.get("by", "")
    if not by:
        raise ValidationError("required query parameter 'by' not set")
    names = req.query.getall("name", [])
    if not names:
        raise ValidationError("required query parameter 'name' not set")
    out = await agent.rpc("Intention.Match", blocking_args(opts, by=by, names=names))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/connect/intentions/check", acl=ACL("intention", "read"))
async def intention_check(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Intention.Check", blocking_args(opts, **_pair(req),
                                                           source_type=req.query.get("source-type", "consul")))
    return json_response(req, {"Allowed": out["result"]["Allowed"]}, meta=out)
