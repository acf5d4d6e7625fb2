"""/v1/config: write (PUT, ?cas), read one, list by kind, delete (?cas).

The ACL a route declares is the broadest one (mesh); Consul refines it per kind (service:write on
the entry's name for service-*, intentions:write for service-intentions, operator/mesh for
proxy-defaults, mesh and gateways). The ACL issue can refine it in the wrapper from the body's Kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, meta_headers, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


def _cas(req: web.Request) -> dict[str, int]:
    if "cas" not in req.query:
        return {}
    raw = req.query["cas"]
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"Invalid cas {raw!r}: expected an unsigned integer") from None
    if value < 0:
        raise ValidationError(f"Invalid cas {raw!r}: expected an unsigned integer")
    return {"cas": value}


def _ns(req: web.Request) -> dict[str, str]:
    ns = req.query.get("ns", "")
    return {"namespace": ns} if ns else {}


@route("PUT", "/v1/config", acl=ACL("mesh", "write"))
async def config_apply(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    if not isinstance(body, dict):
        raise ValidationError("Request decode failed: the body must be a JSON object")
    out = await agent.rpc("ConfigEntry.Apply", {"entry": body, **_cas(req)})
    return json_response(req, bool(out["result"]))


@route("GET", "/v1/config/{kind}", acl=ACL("mesh", "read"))
async def config_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("ConfigEntry.List", blocking_args(opts, kind=req.match_info["kind"]))
    return json_response(req, out["result"], meta=out, shared=True)


@route("GET", "/v1/config/{kind}/{name}", acl=ACL("mesh", "read", "name"))
async def config_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    kind, name = req.match_info["kind"], req.match_info["name"]
    out = await agent.rpc("ConfigEntry.Get", blocking_args(opts, kind=kind, name=name, **_ns(req)))
    if out["result"] is None:
        return web.Response(status=404, text=f'Config entry not found for "{kind}" / "{name}"',
                            headers=meta_headers(out))
    return json_response(req, out["result"], meta=out)


@route("DELETE", "/v1/config/{kind}/{name}", acl=ACL("mesh", "write", "name"))
async def config_delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    cas = _cas(req)
    out = await agent.rpc("ConfigEntry.Delete", {"kind": req.match_info["kind"], "name": req.match_info["name"],
                                                 **_ns(req), **cas})
    # Consul answers a CAS delete with whether it happened, a plain delete with an empty object.
    return json_response(req, bool(out["result"]) if cas else {})
