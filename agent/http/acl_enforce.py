"""HTTP enforcement: what each route needs, decided in one place, called once per request from
``app._wrap``.

::

    request --token--> Authorizer (req["authz"])
      route.acl = ACL(resource, access, segment)
        resource "none"                    -> nothing to check
        access "list"                      -> nothing up front; the route's FILTER drops rows
        segment set                        -> resource:access on the path parameter
        otherwise                          -> SPECIAL[(method, path)] (body- or state-aware), else
                                              the resource without a name (operator, acl, keyring,
                                              mesh) or the agent's own node/name (agent, node)
      FILTERS[(method, path)] -> req["lictor_acl_filter"]: json_response applies it to the result
        (a new list/dict; shared results are never mutated) and sets
        X-Consul-Results-Filtered-By-ACLs: true when it dropped something
    req["lictor_acl"] = {"accessor_id", "decision", "permission"}   (read by the audit log)

A denial is ``PermissionDeniedError`` (403): "Permission denied: token with AccessorID '...'
lacks permission 'key:write' on "foo"". An unknown or expired token is "ACL not found" (403).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.acl_cache import token_from_request
from lictor.common.errors import ACLNotFoundError, PermissionDeniedError
from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.enforce import denied

if TYPE_CHECKING:
    from lictor.agent.agent import Agent
    from lictor.agent.http.base import Route

__all__ = ["FILTERS", "SPECIAL", "enforce"]

Need = tuple[str, str, str | None]  # (resource, access, name or None)
Special = Callable[[web.Request, "Agent", Authorizer], Awaitable[list[Need]]]
Filter = Callable[[Authorizer, Any], tuple[Any, bool]]

SERVICE_KINDS = {"service-defaults", "service-router", "service-splitter", "service-resolver",
                 "ingress-gateway", "terminating-gateway", "api-gateway", "http-route", "tcp-route"}


async def _body(req: web.Request) -> Any:
    raw = await req.read()  # aiohttp keeps the bytes: the handler reads them again
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}  # the handler reports the decode error


def _get(d: Any, *names: str, default: Any = "") -> Any:
    if not isinstance(d, dict):
        return default
    for n in names:
        if n in d:
            return d[n]
        for k in d:
            if isinstance(k, str) and k.lower() == n.lower():
                return d[k]
    return default


# ----- body- and state-aware checks --------------------------------------------------------------

async def _service_register(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    name = _get(b, "Name", "Service") or ""
    needs: list[Need] = [("service", "write", name)]
    conn = _get(b, "Connect", default={}) or {}
    if _get(conn, "SidecarService", "sidecar_service", default=None) is not None:
        needs.append(("service", "write", f"{name}-sidecar-proxy"))
    proxy = _get(b, "Proxy", default={}) or {}
    dest = _get(proxy, "DestinationServiceName", default="")
    if dest:
        needs.append(("service", "write", dest))
    return needs


def _local_service_name(agent: Agent, sid: str) -> str:
    p = agent.local.service(sid)
    return str(p.get("service") or sid) if p else sid


async def _service_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("service", "write", _local_service_name(agent, req.match_info["id"]))]


async def _service_read_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("service", "read", _local_service_name(agent, req.match_info["id"]))]


async def _check_register(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    sid = _get(b, "ServiceID", "service_id")
    if sid:
        return [("service", "write", _local_service_name(agent, sid))]
    return [("node", "write", agent.node_name)]


async def _check_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    c = agent.local.check(req.match_info["id"])
    if c is not None and c.get("service_id"):
        return [("service", "write", _local_service_name(agent, c["service_id"]))]
    return [("node", "write", agent.node_name)]


async def _local_node_write(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("node", "write", agent.node_name)]


async def _catalog_register(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    node = _get(b, "Node")
    needs: list[Need] = []
    svc = _get(b, "Service", default=None)
    if isinstance(svc, dict):
        needs.append(("service", "write", _get(svc, "Service", "Name")))
    # Consul: node:write unless the node already exists unchanged and only a service is added;
    # we always ask for node:write on a new node, and service:write for the service.
    store = getattr(getattr(agent, "server", None), "store", None)
    if store is None or node not in store.nodes or not needs:
        needs.append(("node", "write", node))
    return needs


async def _catalog_deregister(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    node = _get(b, "Node")
    sid = _get(b, "ServiceID")
    store = getattr(getattr(agent, "server", None), "store", None)
    if sid and store is not None:
        row = store.services.get((node, sid))
        return [("service", "write", row.service if row is not None else sid)]
    return [("node", "write", node)]


async def _connect_authorize(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    return [("service", "write", _get(b, "Target"))]


def _session_node(agent: Agent, sid: str) -> str:
    store = getattr(getattr(agent, "server", None), "store", None)
    s = store.sessions.get(sid) if store is not None else None
    return s.node if s is not None else agent.node_name


async def _session_create(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    return [("session", "write", _get(b, "Node") or agent.node_name)]


async def _session_write_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("session", "write", _session_node(agent, req.match_info["id"]))]


async def _session_read_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("session", "read", _session_node(agent, req.match_info["id"]))]


async def _session_node_read(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("session", "read", req.match_info["node"])]


def _config_need(kind: str, name: str, access: str) -> Need:
    if kind == "service-intentions":
        return ("intention", access, name)
    if kind in SERVICE_KINDS:
        return ("service", access, name)
    return ("mesh", access, None)


async def _config_put(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    b = await _body(req)
    return [_config_need(_get(b, "Kind"), _get(b, "Name"), "write")]


async def _config_named(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    access = "read" if req.method == "GET" else "write"
    return [_config_need(req.match_info["kind"], req.match_info["name"], access)]


async def _intention_exact(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    access = "read" if req.method == "GET" else "write"
    return [("intention", access, req.query.get("destination", ""))]


async def _intention_match(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("intention", "read", n) for n in req.query.getall("name", [])]


async def _kv_delete(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    key = req.match_info["key"]
    if "recurse" in req.query:
        if not authz.key_write_prefix(key):
            raise denied(authz, "key", "write", key)
        return []
    return [("key", "write", key)]


async def _kv_get(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    if "recurse" in req.query or "keys" in req.query:
        return []  # rows filtered one by one
    return [("key", "read", req.match_info["key"])]


async def _txn(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    ops = await _body(req)
    needs: list[Need] = []
    for op in ops if isinstance(ops, list) else []:
        if not isinstance(op, dict):
            continue
        kv = _get(op, "KV", default=None)
        if isinstance(kv, dict):
            verb, key = _get(kv, "Verb"), _get(kv, "Key")
            if verb == "delete-tree":
                if not authz.key_write_prefix(key):
                    raise denied(authz, "key", "write", key)
            elif verb in ("get", "get-tree", "check-index", "check-session", "check-not-exists"):
                needs.append(("key", "read", key))
            else:
                needs.append(("key", "write", key))
        for kind, res, field in (("Node", "node", "Node"), ("Service", "service", "Service"),
                                 ("Check", "node", "Check")):
            sub = _get(op, kind, default=None)
            if isinstance(sub, dict):
                verb = _get(sub, "Verb")
                access = "read" if verb in ("get",) else "write"
                inner = _get(sub, kind, default={}) or {}
                if kind == "Node":
                    needs.append(("node", access, _get(inner, "Node")))
                elif kind == "Service":
                    needs.append(("service", access, _get(inner, "Service")))
                else:
                    needs.append(("node", access, _get(inner, "Node")))
    return needs


async def _filtered_only(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return []


SPECIAL: dict[tuple[str, str], Special] = {
    ("PUT", "/v1/agent/service/register"): _service_register,
    ("PUT", "/v1/agent/service/deregister/{id}"): _service_by_id,
    ("PUT", "/v1/agent/service/maintenance/{id}"): _service_by_id,
    ("GET", "/v1/agent/service/{id}"): _service_read_by_id,
    ("GET", "/v1/agent/health/service/id/{id}"): _service_read_by_id,
    ("PUT", "/v1/agent/maintenance"): _local_node_write,
    ("PUT", "/v1/agent/check/register"): _check_register,
    ("PUT", "/v1/agent/check/deregister/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/pass/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/warn/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/fail/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/update/{id}"): _check_by_id,
    ("PUT", "/v1/catalog/register"): _catalog_register,
    ("PUT", "/v1/catalog/deregister"): _catalog_deregister,
    ("POST", "/v1/agent/connect/authorize"): _connect_authorize,
    ("PUT", "/v1/session/create"): _session_create,
    ("PUT", "/v1/session/destroy/{id}"): _session_write_by_id,
    ("PUT", "/v1/session/renew/{id}"): _session_write_by_id,
    ("GET", "/v1/session/info/{id}"): _session_read_by_id,
    ("GET", "/v1/session/node/{node}"): _session_node_read,
    ("PUT", "/v1/config"): _config_put,
    ("GET", "/v1/config/{kind}/{name}"): _config_named,
    ("DELETE", "/v1/config/{kind}/{name}"): _config_named,
    ("GET", "/v1/connect/intentions/exact"): _intention_exact,
    ("PUT", "/v1/connect/intentions/exact"): _intention_exact,
    ("DELETE", "/v1/connect/intentions/exact"): _intention_exact,
    ("GET", "/v1/connect/intentions/check"): _intention_exact,
    ("GET", "/v1/connect/intentions/match"): _intention_match,
    ("GET", "/v1/kv/{key:.*}"): _kv_get,
    ("DELETE", "/v1/kv/{key:.*}"): _kv_delete,
    ("PUT", "/v1/txn"): _txn,
    ("GET", "/v1/agent/checks"): _filtered_only,
    ("GET", "/v1/agent/members"): _filtered_only,
}


# ----- list filters (return a new object and whether anything was dropped) ----------------------------

def _list(pred: Callable[[Authorizer, Any], bool]) -> Filter:
    def f(authz: Authorizer, data: Any) -> tuple[Any, bool]:
        if not isinstance(data, list):
            return data, False
        out = [r for r in data if pred(authz, r)]
        return out, len(out) != len(data)
    return f


def _map(pred: Callable[[Authorizer, Any, Any], bool]) -> Filter:
    def f(authz: Authorizer, data: Any) -> tuple[Any, bool]:
        if not isinstance(data, dict):
            return data, False
        out = {k: v for k, v in data.items() if pred(authz, k, v)}
        return out, len(out) != len(data)
    return f


def _node_ok(a: Authorizer, node: Any) -> bool:
    return a.allowed("node", "read", str(node or ""))


def _svc_ok(a: Authorizer, svc: Any) -> bool:
    return a.allowed("service", "read", str(svc or ""))


def _check_ok(a: Authorizer, c: Any) -> bool:
    if not isinstance(c, dict):
        return False
    if c.get("ServiceName"):
        return _svc_ok(a, c["ServiceName"]) and _node_ok(a, c.get("Node"))
    return _node_ok(a, c.get("Node"))


# Only routes answered from the agent's own state need filtering here. Every other list is
# answered by a server endpoint, which filters it for the same token (server/acl/rpc_rules.py)
# and reports what it dropped in the query meta: filtering again here would be the same work twice.
FILTERS: dict[tuple[str, str], Filter] = {
    ("GET", "/v1/agent/services"): _map(lambda a, k, v: _svc_ok(a, v.get("Service"))),
    ("GET", "/v1/agent/checks"): _map(lambda a, k, v: _check_ok(a, v)),
    ("GET", "/v1/agent/members"): _list(lambda a, m: _node_ok(a, m.get("Name"))),
    ("GET", "/v1/event/list"): _list(lambda a, e: a.allowed("event", "read", str(e.get("Name", "")))),
}


# ----- the one entry point ----------------------------------------------------------------------------------

async def enforce(r: Route, req: web.Request, agent: Agent) -> Authorizer | None:
    """Resolve the request's token and check the route's needs. Returns the Authorizer (None when
    ACLs are off); raises PermissionDeniedError / ACLNotFoundError."""
    acl_rt = getattr(agent, "acl", None)
    if acl_rt is None or not acl_rt.enabled:
        return None
    secret = token_from_request(req.headers, req.query) or acl_rt.default_token()
    req["lictor_acl_secret"] = secret
    try:
        authz = await acl_rt.resolve(secret)
    except ACLNotFoundError:
        req["lictor_acl"] = {"accessor_id": "", "decision": "deny", "permission": None}
        raise
    assert authz is not None
    req["authz"] = authz
    req["lictor_acl"] = {"accessor_id": authz.accessor_id, "decision": "allow", "permission": None}
    key = (r.method, r.path)
    spec = r.acl
    needs: list[Need] = []
    try:
        needs = await _needs(key, spec, req, agent, authz)
        for res, access, name in needs:
            if not authz.allowed(res, access, name or ""):
                raise denied(authz, res, access, name)
    except PermissionDeniedError as exc:
        req["lictor_acl"] = {"accessor_id": authz.accessor_id, "decision": "deny",
                             "permission": getattr(exc, "permission", None)}
        raise
    flt = FILTERS.get(key)
    if flt is not None and not authz.management:
        req["lictor_acl_filter"] = lambda data: flt(authz, data)
    return authz


async def _needs(key: tuple[str, str], spec: Any, req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    needs: list[Need]
    if key in SPECIAL:
        needs = await SPECIAL[key](req, agent, authz)
    elif spec.resource == "none" or spec.access == "list":
        needs = []
    elif spec.segment:
        needs = [(spec.resource, spec.access, req.match_info.get(spec.segment, ""))]
    elif spec.resource in ("agent", "node"):
        needs = [(spec.resource, spec.access, agent.node_name)]
    elif spec.resource in ("event", "intention", "session", "service", "key", "query"):
        needs = []  # list routes without a name: filtered below
    else:
        needs = [(spec.resource, spec.access, None)]
    return needs
