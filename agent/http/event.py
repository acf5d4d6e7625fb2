"""/v1/event/fire/:name and /v1/event/list (node-local until gossip carries events)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, json_response, route
from lictor.common.errors import ValidationError
from lictor.server.blocking import BlockingOptions, blocking_query

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

MAX_PAYLOAD = 512  # Consul's user event size limit, including the name


@route("PUT", "/v1/event/fire/{name}", acl=ACL("event", "write", "name"))
async def fire(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    name = req.match_info["name"]
    payload = await req.read()
    if len(payload) + len(name) > MAX_PAYLOAD:
        raise ValidationError(f"User event exceeds the maximum size of {MAX_PAYLOAD} bytes", status=413)
    if agent.membership.node is not None:  # issue 4: broadcast over gossip, filters applied by receivers
        ev = agent.membership.fire_event(name, payload or None, node_filter=req.query.get("node", ""),
                                         service_filter=req.query.get("service", ""),
                                         tag_filter=req.query.get("tag", ""))
        return json_response(req, ev.to_api())
    ev = agent.events.fire(name, payload or None, node_filter=req.query.get("node", ""),
                           service_filter=req.query.get("service", ""), tag_filter=req.query.get("tag", ""))
    return json_response(req, ev.to_api())


@route("GET", "/v1/event/list", acl=ACL("event", "read"))
async def list_(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    name = req.query.get("name", "")
    events = agent.events

    def q(_store: object, ws: object) -> tuple[int, list[dict[str, object]]]:
        idx, rows = events.list(ws, name)  # type: ignore[arg-type]
        return idx, [e.to_api() for e in rows]

    bopts = BlockingOptions(min_index=opts.index, wait=opts.wait or 300.0)
    # events are this agent's own (gossip-fed) list: no server store is involved, so client and
    # server agents block alike
    idx, rows = await blocking_query(lambda: None, bopts, q)  # type: ignore[arg-type,return-value]
    return json_response(req, rows, meta={"index": idx})
