"""HTTP enforcement: what each route needs, decided in one place, called once per request from
``app._wrap``.

::

    request --token--> Authorizer (req["authz"])
      route.acl = ACL(resource, access, segment)
        SERVER_DECIDED[(method, path)]     -> nothing here: the server's RPC rules decide
        resource "none"                    -> nothing to check
        access "list"                      -> nothing up front; the route's FILTER drops rows
        segment set                        -> resource:access on the path parameter
        otherwise                          -> SPECIAL[(method, path)] (state-aware: the local
                                              service or check an ID names), else the resource
                                              without a name (operator, acl, keyring, mesh) or the
                                              agent's own node/name (agent, node)
      a body-bearing agent route (service/check register, connect authorize) is authorized by
      its handler after decoding (authorize(req, needs)), on the very value it then executes
      FILTERS[(method, path)] -> req["lictor_acl_filter"]: json_response applies it to the result
        (a new list/dict; shared results are never mutated) and sets
        X-Consul-Results-Filtered-By-ACLs: true when it dropped something
    req["lictor_acl"] = {"accessor_id", "decision", "permission"}   (read by the audit log)

A denial is ``PermissionDeniedError`` (403): "Permission denied: token with AccessorID '...'
lacks permission 'key:write' on "foo"". An unknown or expired token is "ACL not found" (403).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.acl_cache import token_from_request
from lictor.common.errors import ACLNotFoundError, PermissionDeniedError
from lictor.common.servicedef import ServiceDefinition, check_row_payload
from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.enforce import denied

if TYPE_CHECKING:
    from lictor.agent.agent import Agent
    from lictor.agent.http.base import Route

__all__ = ["FILTERS", "SERVER_DECIDED", "SPECIAL", "acl_filtered", "authorize", "check_registration_needs", "enforce",
           "note_denial", "request_token", "service_registration_needs"]

Need = tuple[str, str, str | None]  # (resource, access, name or None)
Special = Callable[[web.Request, "Agent", Authorizer], Awaitable[list[Need]]]
Filter = Callable[[Authorizer, Any], tuple[Any, bool]]


# ----- body- and state-aware checks --------------------------------------------------------------

async def _in_handler(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    """Authorized by the handler once the body is decoded and planned (:func:`authorize`)."""
    return []


def _existing_check_needs(local: Any, node_name: str, check_id: str, *, keep_service: str = "") -> list[Need]:
    """Overwriting an existing check needs write on what it belongs to now."""
    old = local.check(check_id)
    if old is None:
        return []
    sid = old.get("service_id") or ""
    if not sid:
        return [("node", "write", node_name)]
    if sid == keep_service:
        return []
    return [("service", "write", _local_name(local, sid))]


def _local_name(local: Any, sid: str) -> str:
    p = local.service(sid)
    return str(p.get("service") or sid) if p else sid


def service_registration_needs(local: Any, node_name: str, planned: list[ServiceDefinition]) -> list[Need]:
    """Everything registering ``planned`` (``ServiceRegistry.plan_service``: the service and its
    expanded sidecar) writes: each service's name, a proxy's destination, the service an
    existing ID belongs to, and the owner of every existing check a new check replaces."""
    needs: list[Need] = []
    for svc in planned:
        needs.append(("service", "write", svc.name))
        dest = str((svc.proxy or {}).get("DestinationServiceName") or "")
        if dest:
            needs.append(("service", "write", dest))
        dest_id = str((svc.proxy or {}).get("DestinationServiceID") or "")
        if dest_id and local.service(dest_id) is not None:  # the local instance it fronts
            needs.append(("service", "write", _local_name(local, dest_id)))
        old = local.service(svc.id)
        if old is not None and old.get("service") != svc.name:
            needs.append(("service", "write", str(old.get("service") or "")))
        for c in svc.checks:
            cid = check_row_payload(c, service_id=svc.id)["check_id"]
            needs += _existing_check_needs(local, node_name, cid, keep_service=svc.id)
    return needs


def check_registration_needs(local: Any, node_name: str, row: dict[str, Any]) -> list[Need]:
    """A check's decoded row (``ServiceRegistry.plan_check``): write on the service it binds to
    (else on this node), and on the owner of an existing check with the same ID."""
    sid = str(row.get("service_id") or "")
    needs: list[Need] = [("service", "write", _local_name(local, sid)) if sid else ("node", "write", node_name)]
    return needs + _existing_check_needs(local, node_name, str(row["check_id"]), keep_service=sid)


def authorize(req: web.Request, needs: list[Need]) -> None:
    """Check ``needs`` with the request's Authorizer (set by :func:`enforce`); nothing when ACLs
    are off. For handlers that authorize what they decoded, before they execute it."""
    authz: Authorizer | None = req.get("authz")
    if authz is None:
        return
    for res, access, name in needs:
        if not authz.allowed(res, access, name or ""):
            exc = denied(authz, res, access, name)
            req["lictor_acl"] = {"accessor_id": authz.accessor_id, "decision": "deny",
                                 "permission": getattr(exc, "permission", None)}
            raise exc


def _local_service_name(agent: Agent, sid: str) -> str:
    return _local_name(agent.local, sid)


async def _service_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("service", "write", _local_service_name(agent, req.match_info["id"]))]


async def _service_read_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("service", "read", _local_service_name(agent, req.match_info["id"]))]


async def _check_by_id(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    c = agent.local.check(req.match_info["id"])
    if c is not None and c.get("service_id"):
        return [("service", "write", _local_service_name(agent, c["service_id"]))]
    return [("node", "write", agent.node_name)]


async def _local_node_write(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return [("node", "write", agent.node_name)]


async def _filtered_only(req: web.Request, agent: Agent, authz: Authorizer) -> list[Need]:
    return []


SPECIAL: dict[tuple[str, str], Special] = {
    ("PUT", "/v1/agent/service/register"): _in_handler,
    ("PUT", "/v1/agent/service/deregister/{id}"): _service_by_id,
    ("PUT", "/v1/agent/service/maintenance/{id}"): _service_by_id,
    ("GET", "/v1/agent/service/{id}"): _service_read_by_id,
    ("GET", "/v1/agent/health/service/id/{id}"): _service_read_by_id,
    ("PUT", "/v1/agent/maintenance"): _local_node_write,
    ("PUT", "/v1/agent/check/register"): _in_handler,
    ("PUT", "/v1/agent/check/deregister/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/pass/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/warn/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/fail/{id}"): _check_by_id,
    ("PUT", "/v1/agent/check/update/{id}"): _check_by_id,
    ("POST", "/v1/agent/connect/authorize"): _in_handler,
    ("GET", "/v1/agent/checks"): _filtered_only,
    ("GET", "/v1/agent/members"): _filtered_only,
}


# Routes the server decides: their handlers ask the named RPC endpoints, whose rules (one table,
# server/acl/rpc_rules.py, run on the decoded RPC arguments) authorize the request and filter
# its results. Here the token is only resolved (an unknown token is refused at once); a second
# table here would be a second opinion, and two tables already disagreed (issue 16, defect 9).
SERVER_DECIDED: dict[tuple[str, str], tuple[str, ...]] = {
    ("PUT", "/v1/catalog/register"): ("Catalog.Register",),
    ("PUT", "/v1/catalog/deregister"): ("Catalog.Deregister",),
    ("GET", "/v1/catalog/nodes"): ("Catalog.ListNodes",),
    ("GET", "/v1/catalog/services"): ("Catalog.ListServices",),
    ("GET", "/v1/catalog/service/{service}"): ("Catalog.ServiceNodes",),
    ("GET", "/v1/catalog/connect/{service}"): ("Catalog.ServiceNodes",),
    ("GET", "/v1/catalog/gateway-services/{gateway}"): ("Catalog.GatewayServices",),
    ("GET", "/v1/catalog/node/{node}"): ("Catalog.NodeServices",),
    ("GET", "/v1/catalog/node-services/{node}"): ("Catalog.NodeServices",),
    ("GET", "/v1/health/node/{node}"): ("Health.NodeChecks",),
    ("GET", "/v1/health/checks/{service}"): ("Health.ServiceChecks",),
    ("GET", "/v1/health/state/{state}"): ("Health.ChecksInState",),
    ("GET", "/v1/health/service/{service}"): ("Health.ServiceNodes",),
    ("GET", "/v1/health/connect/{service}"): ("Health.ServiceNodes",),
    ("GET", "/v1/health/ingress/{service}"): ("Health.IngressServiceNodes",),
    ("GET", "/v1/discovery-chain/{service}"): ("DiscoveryChain.Get",),
    ("POST", "/v1/discovery-chain/{service}"): ("DiscoveryChain.Get",),
    ("GET", "/v1/kv/{key:.*}"): ("KVS.Get", "KVS.List", "KVS.ListKeys"),
    ("PUT", "/v1/kv/{key:.*}"): ("KVS.Apply",),
    ("DELETE", "/v1/kv/{key:.*}"): ("KVS.Apply",),
    ("PUT", "/v1/txn"): ("Txn.Apply",),
    ("PUT", "/v1/session/create"): ("Session.Apply",),
    ("PUT", "/v1/session/destroy/{id}"): ("Session.Apply",),
    ("PUT", "/v1/session/renew/{id}"): ("Session.Renew",),
    ("GET", "/v1/session/info/{id}"): ("Session.Get",),
    ("GET", "/v1/session/node/{node}"): ("Session.NodeSessions",),
    ("GET", "/v1/session/list"): ("Session.List",),
    ("PUT", "/v1/config"): ("ConfigEntry.Apply",),
    ("GET", "/v1/config/{kind}"): ("ConfigEntry.List",),
    ("GET", "/v1/config/{kind}/{name}"): ("ConfigEntry.Get",),
    ("DELETE", "/v1/config/{kind}/{name}"): ("ConfigEntry.Delete",),
    ("GET", "/v1/connect/intentions"): ("Intention.List",),
    ("GET", "/v1/connect/intentions/exact"): ("Intention.Get",),
    ("PUT", "/v1/connect/intentions/exact"): ("Intention.Apply",),
    ("DELETE", "/v1/connect/intentions/exact"): ("Intention.Apply",),
    ("GET", "/v1/connect/intentions/check"): ("Intention.Check",),
    ("GET", "/v1/connect/intentions/match"): ("Intention.Match",),
    ("PUT", "/v1/coordinate/update"): ("Coordinate.Update",),
    ("GET", "/v1/coordinate/nodes"): ("Coordinate.ListNodes",),
    ("GET", "/v1/coordinate/node/{node}"): ("Coordinate.Node",),
    ("GET", "/v1/connect/ca/configuration"): ("ConnectCA.ConfigurationGet",),
    ("PUT", "/v1/connect/ca/configuration"): ("ConnectCA.ApplyConfiguration",),
    ("GET", "/v1/operator/raft/configuration"): ("Operator.RaftGetConfiguration",),
    ("DELETE", "/v1/operator/raft/peer"): ("Operator.RaftRemovePeer",),
    ("POST", "/v1/operator/raft/transfer-leader"): ("Operator.RaftTransferLeader",),
    ("GET", "/v1/operator/autopilot/health"): ("Operator.ServerHealth",),
    ("GET", "/v1/operator/autopilot/configuration"): ("Operator.AutopilotGetConfiguration",),
    ("GET", "/v1/operator/usage"): ("Operator.Usage",),
    ("GET", "/v1/snapshot"): ("Snapshot.Save",),
    ("PUT", "/v1/snapshot"): ("Snapshot.Restore",),
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


def request_token(req: web.Request) -> str:
    """The token this request is authorized with (after :func:`enforce`: the one it resolved,
    the agent's default token when the request named none); what a handler stores with a
    service or check. Read from the request by ``token_from_request`` alone."""
    tok = req.get("lictor_acl_secret")
    return str(tok) if tok is not None else token_from_request(req.headers, req.query)


def note_denial(req: web.Request, exc: Exception) -> None:
    """A PermissionDeniedError raised after :func:`enforce` (by the server's rules on the RPC a
    handler made, or by :func:`authorize`) recorded for the audit log like an up-front denial."""
    rec = req.get("lictor_acl")
    if rec is None or not isinstance(exc, PermissionDeniedError) or rec.get("decision") == "deny":
        return
    perm = getattr(exc, "permission", None)
    if perm is None:
        m = re.search(r"lacks permission '([a-z]+:[a-z]+)'", str(exc))
        perm = m.group(1) if m else None
    req["lictor_acl"] = {**rec, "decision": "deny", "permission": perm}


def acl_filtered(req: web.Request, data: Any) -> Any:
    """Apply the route's ACL list filter now, before the user's ``?filter`` (Consul's order), so
    ``X-Consul-Results-Filtered-By-ACLs`` says only whether rows were hidden, never whether a
    hidden row matched the filter. ``json_response`` then only sets the header."""
    flt = req.get("lictor_acl_filter")
    if flt is None:
        return data
    data, dropped = flt(data)
    req["lictor_acl_filter"] = lambda rest: (rest, dropped)
    return data


# ----- the one entry point ----------------------------------------------------------------------------------

async def enforce(r: Route, req: web.Request, agent: Agent) -> Authorizer | None:
    """Resolve the request's token and check the route's needs. Returns the Authorizer (None when
    ACLs are off); raises PermissionDeniedError / ACLNotFoundError."""
    acl_rt = getattr(agent, "acl", None)
    if acl_rt is None or not acl_rt.enabled:
        return None
    secret = request_token(req) or acl_rt.default_token()
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
    if key in SERVER_DECIDED:
        needs = []  # the server's rule decides, on the RPC the handler makes
    elif key in SPECIAL:
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
