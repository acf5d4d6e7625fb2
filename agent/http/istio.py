"""/v1/istio: apply and delete Istio resources (the body is the YAML or JSON text, as `lictor
apply -f` reads it), list and read them as applied, delete one by kind and name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, json_response, read_body, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

async def _text(req: web.Request) -> str:
    # read_body: the one body reader (the route wrapper has already read and bounded the body;
    # reading req.content again here found it empty and applied nothing)
    raw = await read_body(req)
    if not raw.strip():
        raise ValidationError("Request body is empty: expected Istio resources as YAML or JSON")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ValidationError("Request decode failed: the body must be UTF-8 text") from None


def _dry(req: web.Request) -> bool:
    return "dry-run" in req.query and req.query["dry-run"] not in ("false", "0")


@route("PUT", "/v1/istio/apply", acl=ACL("mesh", "write"))
async def istio_apply(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Istio.Apply", {"text": await _text(req), "dry_run": _dry(req)})
    return json_response(req, out["result"])


@route("PUT", "/v1/istio/delete", acl=ACL("mesh", "write"))
async def istio_delete_documents(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Istio.DeleteDocuments", {"text": await _text(req), "dry_run": _dry(req)})
    return json_response(req, out["result"])


@route("GET", "/v1/istio", acl=ACL("mesh", "read"))
async def istio_list_all(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Istio.List", blocking_args(opts))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/istio/{kind}", acl=ACL("mesh", "read"))
async def istio_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Istio.List", blocking_args(opts, kind=req.match_info["kind"],
                                                      namespace=req.query.get("namespace", "")))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/istio/{kind}/{name}", acl=ACL("mesh", "read"))
async def istio_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    kind, name = req.match_info["kind"], req.match_info["name"]
    out = await agent.rpc("Istio.List", blocking_args(opts, kind=kind, name=name,
                                                      namespace=req.query.get("namespace", "default")))
    if not out["result"]:
        return web.Response(status=404, text=f"{kind} {name!r} not found")
    return json_response(req, out["result"][0], meta=out)


@route("DELETE", "/v1/istio/{kind}/{name}", acl=ACL("mesh", "write"))
async def istio_delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Istio.Delete", {"kind": req.match_info["kind"], "name": req.match_info["name"],
                                           "namespace": req.query.get("namespace", "default")})
    return json_response(req, out["result"])
