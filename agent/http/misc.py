"""/, /ui, /v1/status/*, and other small endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, json_response, route

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

_UI = """<!doctype html><html><head><title>Lictor</title></head><body>
<h1>Lictor</h1><p>Datacenter <b>{dc}</b>, node <b>{node}</b>.</p>
<p>The web UI is not built yet. The HTTP API is at <a href="/v1/agent/self">/v1/agent/self</a>,
<a href="/v1/catalog/services">/v1/catalog/services</a> and the rest of Consul's /v1 paths.</p>
</body></html>"""


@route("GET", "/", acl=ACL("none", "read"))
async def root(req: web.Request, agent: Agent) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ui/")


@route("GET", "/ui/{tail:.*}", acl=ACL("none", "read"))
async def ui(req: web.Request, agent: Agent) -> web.StreamResponse:
    return web.Response(text=_UI.format(dc=agent.datacenter, node=agent.node_name), content_type="text/html")


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
