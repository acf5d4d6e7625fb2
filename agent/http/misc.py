"""/v1/status/* and other small endpoints (/ and the UI: lictor.agent.ui)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, json_response, route

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


@route("GET", "/v1/status/leader", acl=ACL("none", "read"))
async def leader(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Status.Leader", {})
    return json_response(req, out["result"])


@route("GET", "/v1/status/peers", acl=ACL("none", "read"))
async def peers(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Status.Peers", {})
    return json_response(req, out["result"])
