"""/v1/discovery-chain/:service (GET, or POST with overrides in the body)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.agent.http.decode import fields

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


async def _chain(req: web.Request, agent: Agent, body: Any) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    extra: dict[str, Any] = {"name": req.match_info["service"]}
    if req.query.get("compile-dc"):
        extra["compile_dc"] = req.query["compile-dc"]
    if body is not None:
        f = fields(body)
        if f.str("OverrideProtocol"):
            extra["override_protocol"] = f.str("OverrideProtocol")
        if f.str("OverrideConnectTimeout"):
            extra["override_connect_timeout"] = f.str("OverrideConnectTimeout")
    out = await agent.rpc("DiscoveryChain.Get", blocking_args(opts, **extra))
    return json_response(req, {"Chain": out["result"]}, meta=out)


@route("GET", "/v1/discovery-chain/{service}", acl=ACL("service", "read", "service"))
async def chain_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _chain(req, agent, None)


@route("POST", "/v1/discovery-chain/{service}", acl=ACL("service", "read", "service"))
async def chain_post(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _chain(req, agent, await decode_json_body(req, required=False))
