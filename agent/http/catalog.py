"""/v1/catalog/*: register, deregister, datacenters, nodes, services, service, connect, node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.agent.http.decode import Fields, fields
from lictor.common.errors import ValidationError
from lictor.common.types import HealthStatus

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


def peer_view(req: web.Request, result: Any, empty: Any) -> Any:
    """``?peer=<name>``: Lictor has no cluster peerings, so every named peer is unknown and has
    imported nothing; Consul then answers with an empty result, never the local data."""
    return empty if req.query.get("peer") else result


def parse_catalog_service(f: Fields) -> dict[str, Any]:
    name = f.str("Service")
    if not name:
        raise ValidationError("Must provide service name (Service.Service)")
    port = f.int("Port")
    if not 0 <= port <= 65535:
        raise ValidationError(f"Invalid Service.Port {port}: must be 0-65535")
    weights = f.dict("Weights") or {"Passing": 1, "Warning": 1}
    return {"id": f.str("ID") or name, "service": name, "kind": f.str("Kind"), "tags": f.str_list("Tags"),
            "address": f.str("Address"), "tagged_addresses": f.dict("TaggedAddresses"), "meta": f.str_map("Meta"),
            "port": port, "socket_path": f.str("SocketPath"),
            "weights": {"Passing": int(weights.get("Passing", 1)), "Warning": int(weights.get("Warning", 1))},
            "enable_tag_override": f.bool("EnableTagOverride"), "proxy": f.dict("Proxy"),
            "connect": f.dict("Connect")}


def parse_catalog_check(f: Fields, node: str) -> dict[str, Any]:
    status = f.str("Status") or "critical"
    try:
        HealthStatus(status)
    except ValueError:
        raise ValidationError(f"Invalid check status {status!r}: must be passing, warning or critical") from None
    cid = f.str("CheckID") or f.str("Name")
    if not cid:
        raise ValidationError("Check must have a CheckID or a Name")
    definition = f.dict("Definition")
    return {"node": f.str("Node") or node, "check_id": cid, "name": f.str("Name") or cid, "status": status,
            "notes": f.str("Notes"), "output": f.str("Output"), "service_id": f.str("ServiceID"),
            "type": f.str("Type"), "definition": definition,
            "interval": str(definition.get("Interval", "") or ""), "timeout": str(definition.get("Timeout", "") or "")}


@route("PUT", "/v1/catalog/register", acl=ACL("node", "write"))
async def register(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    f = fields(await decode_json_body(req))
    node = f.str("Node")
    if not node:
        raise ValidationError("Must provide node")
    args: dict[str, Any] = {"node": node, "id": f.str("ID"), "address": f.str("Address"),
                            "datacenter": f.str("Datacenter") or agent.datacenter,
                            "tagged_addresses": f.str_map("TaggedAddresses"), "node_meta": f.str_map("NodeMeta"),
                            "skip_node_update": f.bool("SkipNodeUpdate")}
    if args["datacenter"] != agent.datacenter:
        raise ValidationError(f"No path to datacenter {args['datacenter']!r}", status=500)
    svc = f.obj("Service")
    if svc is not None:
        args["service"] = parse_catalog_service(svc)
    checks = []
    one = f.obj("Check")
    if one is not None:
        checks.append(parse_catalog_check(one, node))
    many = f.raw("Checks", [])
    if not isinstance(many, list):
        raise ValidationError("Request decode failed: Checks: expected a list")
    checks += [parse_catalog_check(fields(c, f"Checks[{i}]"), node) for i, c in enumerate(many)]
    args["checks"] = checks
    await agent.rpc("Catalog.Register", args)
    return json_response(req, True)


@route("PUT", "/v1/catalog/deregister", acl=ACL("node", "write"))
async def deregister(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    f = fields(await decode_json_body(req))
    if not f.str("Node"):
        raise ValidationError("Must provide node")
    dc = f.str("Datacenter") or agent.datacenter  # as register: the body's Datacenter is honoured
    if dc != agent.datacenter:
        raise ValidationError(f"No path to datacenter {dc!r}", status=500)
    await agent.rpc("Catalog.Deregister", {"node": f.str("Node"), "service_id": f.str("ServiceID"),
                                           "check_id": f.str("CheckID")})
    return json_response(req, True)


@route("GET", "/v1/catalog/datacenters", acl=ACL("none", "read"))
async def datacenters(req: web.Request, agent: Agent) -> web.StreamResponse:
    out = await agent.rpc("Catalog.ListDatacenters", {})
    return json_response(req, out["result"])


@route("GET", "/v1/catalog/nodes", acl=ACL("node", "list"))
async def nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.ListNodes", blocking_args(opts))
    if req.query.get("peer"):
        return json_response(req, [], meta=out)
    if req.query.get("near"):  # issue 4: sorted by estimated RTT (lictor.agent.http.cluster)
        from lictor.agent.http.cluster import sort_near
        return json_response(req, await sort_near(req, agent, out["result"], lambda r: r.get("Node")), meta=out)
    return json_response(req, out["result"], meta=out, shared=True)


@route("GET", "/v1/catalog/services", acl=ACL("service", "list"))
async def services(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.ListServices", blocking_args(opts))
    return json_response(req, peer_view(req, out["result"], {}), meta=out, shared=True)


async def _service_nodes(req: web.Request, agent: Agent, connect: bool) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.ServiceNodes", blocking_args(
        opts, service=req.match_info["service"], tags=req.query.getall("tag", []), connect=connect,
        merge_central_config="merge-central-config" in req.query))
    if req.query.get("peer"):
        return json_response(req, [], meta=out)
    if req.query.get("near"):  # issue 4: sorted by estimated RTT (lictor.agent.http.cluster)
        from lictor.agent.http.cluster import sort_near
        return json_response(req, await sort_near(req, agent, out["result"], lambda r: r.get("Node")), meta=out)
    return json_response(req, out["result"], meta=out, shared=True)


@route("GET", "/v1/catalog/service/{service}", acl=ACL("service", "read", "service"))
async def service_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _service_nodes(req, agent, False)


@route("GET", "/v1/catalog/connect/{service}", acl=ACL("service", "read", "service"))
async def connect_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _service_nodes(req, agent, True)


@route("GET", "/v1/catalog/node/{node}", acl=ACL("node", "read", "node"))
async def node_services(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.NodeServices", blocking_args(opts, node=req.match_info["node"]))
    return json_response(req, peer_view(req, out["result"], None), meta=out, shared=True)


@route("GET", "/v1/catalog/node-services/{node}", acl=ACL("node", "read", "node"))
async def node_services_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Catalog.NodeServices", blocking_args(opts, node=req.match_info["node"], list=True))
    return json_response(req, peer_view(req, out["result"], None), meta=out, shared=True)
