"""Gossip-backed routes (issue 4): members, join, force-leave, coordinates, the keyring.

``/v1/agent/members`` lists every gossip member in Consul's shape (Status 1 alive, 3 left, 4
failed; ``?wan=1`` on a server lists the servers as Consul's WAN pool names them, ``<node>.<dc>``:
see lictor.agent.http.agent_endpoints.wan_members). Coordinates are read from the
servers (``Coordinate.*``); ``/v1/coordinate/update`` writes one through the leader's batcher.
The keyring routes roll an operation out over gossip (see lictor.agent.membership).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.common.errors import NotFound, ValidationError
from lictor.common.gossip.driver import GossipJoinError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


def members_api(agent: Agent) -> list[dict[str, Any]]:
    m = agent.membership
    if m.node is None:
        return [agent.member_info()]
    out = []
    for r in m.members():
        info = r.to_api()
        info["Tags"].pop("kh", None)
        if r.name == agent.node_name and agent.left:
            info["Status"] = 3
        out.append(info)
    return out


@route("PUT", "/v1/agent/join/{address}", acl=ACL("agent", "write"))
async def join(req: web.Request, agent: Agent) -> web.StreamResponse:
    addr = req.match_info["address"]
    try:
        await agent.membership.join([addr])
    except ValueError as exc:
        raise ValidationError(f"bad address: {exc}") from None
    except GossipJoinError as exc:
        return web.Response(status=500, text=str(exc))
    return web.Response(status=200)


@route("PUT", "/v1/agent/force-leave/{node}", acl=ACL("operator", "write"))
async def force_leave(req: web.Request, agent: Agent) -> web.StreamResponse:
    prune = "prune" in req.query and req.query.get("prune", "").lower() not in ("false", "0")
    agent.membership.force_leave(req.match_info["node"], prune=prune)
    return web.Response(status=200)


# ----- coordinates ---------------------------------------------------------------------------

@route("GET", "/v1/coordinate/datacenters", acl=ACL("none", "read"))
async def coord_datacenters(req: web.Request, agent: Agent) -> web.StreamResponse:
    out = await agent.rpc("Coordinate.ListDatacenters", {})
    return json_response(req, out["result"])


@route("GET", "/v1/coordinate/nodes", acl=ACL("node", "list"))
async def coord_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Coordinate.ListNodes", blocking_args(opts))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/coordinate/node/{node}", acl=ACL("node", "read", "node"))
async def coord_node(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Coordinate.Node", blocking_args(opts, node=req.match_info["node"]))
    if not out["result"]:
        return web.Response(status=404, text="")
    return json_response(req, out["result"], meta=out)


@route("PUT", "/v1/coordinate/update", acl=ACL("node", "write"))
async def coord_update(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await decode_json_body(req)
    if not isinstance(body, dict) or not body.get("Node"):
        raise ValidationError("Must provide Node")
    await agent.rpc("Coordinate.Update", {"node": body["Node"], "segment": body.get("Segment") or "",
                                          "coord": body.get("Coord")})
    return web.Response(status=200)


async def near_coordinates(agent: Agent, near: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """(coordinate of ``near`` - ``_agent`` is this node -, every node's coordinate)."""
    out = await agent.rpc("Coordinate.ListNodes", {"stale": True})
    coords = {r["Node"]: r["Coord"] for r in out["result"] if not r.get("Segment")}
    name = agent.node_name if near == "_agent" else near
    mine = coords.get(name)
    if mine is None and name == agent.node_name:
        mine = agent.membership.coords.coord.to_api()
    return mine, coords


async def sort_near(req: web.Request, agent: Agent, rows: list[Any], node_of: Any) -> list[Any]:
    """``?near=`` sorting for catalog/health lists (unchanged without ``near``)."""
    near = req.query.get("near")
    if not near or not isinstance(rows, list):
        return rows
    from lictor.agent.coordinates import sort_by_distance

    mine, coords = await near_coordinates(agent, near)
    return sort_by_distance(rows, mine, coords, node_of)


# ----- keyring -------------------------------------------------------------------------------

async def _key_body(req: web.Request) -> str:
    body = await decode_json_body(req)
    if not isinstance(body, dict) or not isinstance(body.get("Key"), str):
        raise ValidationError("Request body must contain a Key")
    return str(body["Key"])


@route("GET", "/v1/operator/keyring", acl=ACL("keyring", "read"))
async def keyring_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    return json_response(req, [agent.membership.keyring_list()])


@route("POST", "/v1/operator/keyring", acl=ACL("keyring", "write"))
async def keyring_install(req: web.Request, agent: Agent) -> web.StreamResponse:
    await agent.membership.keyring_op("install", await _key_body(req))
    return web.Response(status=200)


@route("PUT", "/v1/operator/keyring", acl=ACL("keyring", "write"))
async def keyring_use(req: web.Request, agent: Agent) -> web.StreamResponse:
    await agent.membership.keyring_op("use", await _key_body(req))
    return web.Response(status=200)


@route("DELETE", "/v1/operator/keyring", acl=ACL("keyring", "write"))
async def keyring_remove(req: web.Request, agent: Agent) -> web.StreamResponse:
    await agent.membership.keyring_op("remove", await _key_body(req))
    return web.Response(status=200)


__all__ = ["members_api", "near_coordinates", "sort_near", "NotFound"]
