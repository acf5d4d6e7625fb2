"""Connect CA over HTTP: /v1/connect/ca/{roots,configuration} (server state, via RPC) and the
agent-local /v1/agent/connect/ca/roots, /v1/agent/connect/ca/leaf/:service (served from the
agent's :class:`~lictor.agent.leafcert.LeafCertManager`) and /v1/agent/connect/authorize.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.agent.intention_cache import authorize as decide_intentions
from lictor.common.errors import ValidationError
from lictor.agent.http.acl_enforce import authorize, request_token
from lictor.server.connect.ca import parse_spiffe_service

if TYPE_CHECKING:
    from lictor.agent.agent import Agent
    from lictor.agent.intention_cache import IntentionCache
    from lictor.agent.leafcert import LeafCertManager

log = logging.getLogger("lictor.http")


def leaf_manager(agent: Agent) -> LeafCertManager:
    """The agent's leaf-certificate manager (``agent.leafcerts``), created on first use."""
    mgr = getattr(agent, "leafcerts", None)
    if mgr is None:
        from lictor.agent.leafcert import LeafCertManager

        mgr = LeafCertManager(agent)
        agent.leafcerts = mgr  # type: ignore[attr-defined]
    return mgr


def _flag(req: web.Request, name: str) -> bool:
    return name in req.query and req.query.get(name, "").lower() not in ("false", "0")


@route("GET", "/v1/connect/ca/roots", acl=ACL("none", "read"))
async def ca_roots(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("ConnectCA.Roots", blocking_args(opts))
    if _flag(req, "pem"):
        roots = out["result"]["Roots"]
        body = "".join(r["RootCert"] if r["RootCert"].endswith("\n") else r["RootCert"] + "\n" for r in roots)
        body += "".join(p if p.endswith("\n") else p + "\n" for r in roots for p in (r["IntermediateCerts"] or ()))
        return web.Response(text=body, content_type="application/pem-certificate-chain",
                            headers={"X-Consul-Index": str(out["index"])})
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/connect/ca/configuration", acl=ACL("operator", "read"))
async def ca_configuration_get(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("ConnectCA.ConfigurationGet", blocking_args(opts))
    if out["result"] is None:
        raise ValidationError("CA is not initialized yet", status=500)
    return json_response(req, out["result"], meta=out)


@route("PUT", "/v1/connect/ca/configuration", acl=ACL("operator", "write"))
async def ca_configuration_set(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    if not isinstance(body, dict):
        raise ValidationError("Request decode failed: expected a JSON object")
    rotate = body.pop("Rotate", False)
    if not isinstance(rotate, bool):
        raise ValidationError(f"Rotate: expected true or false, got {rotate!r}")
    out = await agent.rpc("ConnectCA.ApplyConfiguration", {"config": body, "rotate": rotate or _flag(req, "rotate")})
    return json_response(req, bool(out["result"]))


@route("GET", "/v1/agent/connect/ca/roots", acl=ACL("none", "read"))
async def agent_ca_roots(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    kw: dict[str, Any] = {"min_index": opts.index}
    if opts.wait:
        kw["wait"] = opts.wait
    idx, roots = await leaf_manager(agent).get_roots(**kw)
    return json_response(req, roots, meta={"index": idx})


@route("GET", "/v1/agent/connect/ca/leaf/{service}", acl=ACL("service", "write", "service"))
async def agent_leaf(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    kw: dict[str, Any] = {"min_index": opts.index, "token": request_token(req)}
    if opts.wait:
        kw["wait"] = opts.wait
    idx, leaf = await leaf_manager(agent).get(req.match_info["service"], **kw)
    return json_response(req, leaf, meta={"index": idx})


def intention_cache(agent: Agent) -> IntentionCache:
    """The agent's intentions view (``agent.intentions``), created on first use."""
    cache = getattr(agent, "intentions", None)
    if cache is None:
        from lictor.agent.intention_cache import IntentionCache

        cache = IntentionCache(agent.rpc)
        agent.intentions = cache  # type: ignore[attr-defined]
    return cache


@route("POST", "/v1/agent/connect/authorize", acl=ACL("service", "write"))
async def agent_authorize(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    if not isinstance(body, dict):
        raise ValidationError("Request decode failed: expected a JSON object")
    target = body.get("Target") or ""
    uri = body.get("ClientCertURI") or ""
    if not isinstance(target, str) or not target:
        raise ValidationError("Target service must be specified")
    authorize(req, [("service", "write", target)])  # the Target this handler decoded
    if not isinstance(uri, str) or not uri:
        raise ValidationError("ClientCertURI must be specified")
    sid = parse_spiffe_service(uri)
    if sid is None:
        raise ValidationError("ClientCertURI must be a valid service identifier")
    _, roots = await leaf_manager(agent).get_roots()
    trust_domain = str(roots.get("TrustDomain") or "").lower()
    if sid.trust_domain != trust_domain:
        return json_response(req, {"Authorized": False,
                                   "Reason": f"Identity from an external trust domain: {sid.trust_domain}"})
    # Every agent, client or server, decides from the intentions it watches over RPC (as Consul's
    # agent does from its IntentionMatch cache), with the servers' default policy.
    token = request_token(req)
    view = await intention_cache(agent).get(target, token)
    decided = decide_intentions(view, sid.service, target)
    return json_response(req, {"Authorized": decided.authorized, "Reason": decided.reason})
