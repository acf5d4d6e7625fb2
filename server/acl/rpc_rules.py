"""What each RPC endpoint needs, in one table, enforced by ``endpoints.call`` before the endpoint
runs (writes and reads alike) and filtering list results after (into new objects: results may be
shared by the query cache).

Each entry: ``(needs(server, args, authz) -> [(resource, access, name)], filter | None)``.
``needs`` may raise PermissionDeniedError itself for checks that are not a single rule (KV
delete-tree needs write on every key under the prefix). Endpoints not in the table fail closed:
they need ``operator:write`` (so a new endpoint is never open by accident). ``ACL.*`` endpoints
enforce themselves (token/self, redaction); ``ConnectCA.Sign`` is checked by its signing hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.enforce import authorizer_for, denied

__all__ = ["RPC_RULES", "authorize_rpc", "filter_rpc_result"]

Need = tuple[str, str, str | None]
Needs = Callable[[Any, dict[str, Any], Authorizer], list[Need]]
Filter = Callable[[Authorizer, Any], Any]

SERVICE_KINDS = {"service-defaults", "service-router", "service-splitter", "service-resolver",
                 "ingress-gateway", "terminating-gateway", "api-gateway", "http-route", "tcp-route"}


def _none(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    return []


def _fixed(resource: str, access: str, arg: str | None = None) -> Needs:
    def needs(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
        return [(resource, access, str(a.get(arg) or "") if arg else None)]
    return needs


def _kv_apply(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    key = str(a.get("key") or "")
    if a.get("op") == "delete-tree":
        if not z.key_write_prefix(key):
            raise denied(z, "key", "write", key)
        return []
    return [("key", "write", key)]


def _catalog_register(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    needs: list[Need] = []
    svc = a.get("service")
    if isinstance(svc, dict):
        needs.append(("service", "write", str(svc.get("service") or "")))
    node = str(a.get("node") or "")
    if not needs or node not in server.store.nodes or not a.get("skip_node_update") and _node_changes(server, a):
        needs.append(("node", "write", node))
    for c in a.get("checks") or []:
        sid = c.get("service_id") if isinstance(c, dict) else None
        if sid:
            row = server.store.services.get((node, sid))
            needs.append(("service", "write", row.service if row is not None else
                          (svc.get("service") if isinstance(svc, dict) and svc.get("id") == sid else sid)))
        else:
            needs.append(("node", "write", node))
    return needs


def _node_changes(server: Any, a: dict[str, Any]) -> bool:
    n = server.store.nodes.get(a.get("node"))
    return n is None or (a.get("address") and a.get("address") != n.address)


def _catalog_deregister(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    node = str(a.get("node") or "")
    if a.get("service_id"):
        row = server.store.services.get((node, a["service_id"]))
        return [("service", "write", row.service if row is not None else str(a["service_id"]))]
    return [("node", "write", node)]


def _session_node(server: Any, sid: str, fallback: str = "") -> str:
    s = server.store.sessions.get(sid)
    return s.node if s is not None else fallback


def _session_apply(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    if a.get("op") == "create":
        return [("session", "write", str((a.get("session") or {}).get("node") or ""))]
    return [("session", "write", _session_node(server, str(a.get("id") or "")))]


def _session_renew(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    return [("session", "write", _session_node(server, str(a.get("id") or "")))]


def _txn(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    needs: list[Need] = []
    for op in a.get("ops") or []:
        kind, verb = op.get("kind"), op.get("verb")
        read = verb in ("get", "get-tree", "check-index", "check-session", "check-not-exists")
        access = "read" if read else "write"
        if kind == "kv":
            if verb == "delete-tree":
                if not z.key_write_prefix(str(op.get("key") or "")):
                    raise denied(z, "key", "write", str(op.get("key") or ""))
            else:
                needs.append(("key", access, str(op.get("key") or "")))
        elif kind == "node":
            needs.append(("node", access, str((op.get("node") or {}).get("node") or "")))
        elif kind == "service":
            needs.append(("service", access, str((op.get("service") or {}).get("service") or "")))
        elif kind == "check":
            chk = op.get("check") or {}
            needs.append(("node", access, str(chk.get("node") or "")))
        else:
            needs.append(("operator", "write", None))
    return needs


def _config_need(kind: str, name: str, access: str) -> Need:
    if kind == "service-intentions":
        return ("intention", access, name)
    if kind in SERVICE_KINDS:
        return ("service", access, name)
    return ("mesh", access, None)


def _config_apply(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    e = a.get("entry") or {}
    kind = str(e.get("Kind") or e.get("kind") or a.get("kind") or "")
    name = str(e.get("Name") or e.get("name") or a.get("name") or "")
    return [_config_need(kind, name, "write")]


def _config_named(access: str) -> Needs:
    def needs(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
        return [_config_need(str(a.get("kind") or ""), str(a.get("name") or ""), access)]
    return needs


def _dest(s: Any) -> str:
    return str(s or "").rpartition("/")[2]


def _intention(access: str) -> Needs:
    def needs(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
        return [("intention", access, _dest(a.get("destination")))]
    return needs


def _intention_match(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    return [("intention", "read", _dest(n)) for n in a.get("names") or []]


# ----- filters ------------------------------------------------------------------------------------------

def _rows(pred: Callable[[Authorizer, Any], bool]) -> Filter:
    def f(z: Authorizer, result: Any) -> Any:
        if isinstance(result, list):
            return [r for r in result if pred(z, r)]
        if isinstance(result, dict):
            return {k: v for k, v in result.items() if pred(z, (k, v))}
        return result
    return f


def _node_ok(z: Authorizer, n: Any) -> bool:
    return z.allowed("node", "read", str(n or ""))


def _svc_ok(z: Authorizer, s: Any) -> bool:
    return z.allowed("service", "read", str(s or ""))


def _check_ok(z: Authorizer, c: Any) -> bool:
    if not isinstance(c, dict):
        return True
    return _node_ok(z, c.get("Node")) and (not c.get("ServiceName") or _svc_ok(z, c["ServiceName"]))


def _node_services(z: Authorizer, result: Any) -> Any:
    if isinstance(result, dict) and isinstance(result.get("Services"), dict | list):
        svcs = result["Services"]
        kept = ({k: v for k, v in svcs.items() if _svc_ok(z, v.get("Service"))} if isinstance(svcs, dict)
                else [v for v in svcs if _svc_ok(z, v.get("Service"))])
        return {**result, "Services": kept}
    return result


_health = _rows(lambda z, r: not isinstance(r, dict) or (
    _node_ok(z, (r.get("Node") or {}).get("Node")) and _svc_ok(z, (r.get("Service") or {}).get("Service"))))
_kv_rows = _rows(lambda z, r: z.allowed("key", "read", r if isinstance(r, str) else str(r.get("Key", ""))))
_sessions = _rows(lambda z, s: not isinstance(s, dict) or z.allowed("session", "read", str(s.get("Node", ""))))

RPC_RULES: dict[str, tuple[Needs, Filter | None]] = {
    "Status.Leader": (_none, None), "Status.Peers": (_none, None), "Status.Ping": (_none, None),
    "Catalog.ListDatacenters": (_none, None),
    "ConnectCA.Roots": (_none, None),
    "ConnectCA.Sign": (_none, None),  # the signing hook checks service:write on the service
    "ConnectCA.ConfigurationGet": (_fixed("operator", "read"), None),
    "ConnectCA.ApplyConfiguration": (_fixed("operator", "write"), None),
    "KVS.Apply": (_kv_apply, None),
    "KVS.Get": (_fixed("key", "read", "key"), None),
    "KVS.List": (_none, _kv_rows),
    "KVS.ListKeys": (_none, _kv_rows),
    "Catalog.Register": (_catalog_register, None),
    "Catalog.Deregister": (_catalog_deregister, None),
    "Catalog.ListNodes": (_none, _rows(lambda z, n: not isinstance(n, dict) or _node_ok(z, n.get("Node")))),
    "Catalog.ListServices": (_none, _rows(lambda z, kv: _svc_ok(z, kv[0] if isinstance(kv, tuple) else kv))),
    "Catalog.ServiceNodes": (_fixed("service", "read", "service"),
                             _rows(lambda z, r: not isinstance(r, dict) or _node_ok(z, r.get("Node")))),
    "Catalog.NodeServices": (_fixed("node", "read", "node"), _node_services),
    "Catalog.GatewayServices": (_fixed("service", "read", "gateway"), None),
    "Health.NodeChecks": (_fixed("node", "read", "node"), _rows(_check_ok)),
    "Health.ServiceChecks": (_fixed("service", "read", "service"), _rows(_check_ok)),
    "Health.ChecksInState": (_none, _rows(_check_ok)),
    "Health.ServiceNodes": (_fixed("service", "read", "service"), _health),
    "Health.IngressServiceNodes": (_fixed("service", "read", "service"), _health),
    "Session.Apply": (_session_apply, None),
    "Session.Renew": (_session_renew, None),
    "Session.Get": (_none, _sessions),
    "Session.List": (_none, _sessions),
    "Session.NodeSessions": (_fixed("session", "read", "node"), _sessions),
    "Txn.Apply": (_txn, None),
    "ConfigEntry.Apply": (_config_apply, None),
    # Istio resources imply mesh-wide entries (proxy-defaults, intentions, gateways): mesh:write
    "Istio.Apply": (_fixed("mesh", "write"), None), "Istio.DeleteDocuments": (_fixed("mesh", "write"), None),
    "Istio.Delete": (_fixed("mesh", "write"), None), "Istio.List": (_fixed("mesh", "read"), None),
    "ConfigEntry.Delete": (_config_named("write"), None),
    "ConfigEntry.Get": (_config_named("read"), None),
    "ConfigEntry.List": (_none, _rows(lambda z, e: not isinstance(e, dict) or z.allowed(
        *_config_need(str(e.get("Kind", "")), str(e.get("Name", "")), "read")[:2],
        _config_need(str(e.get("Kind", "")), str(e.get("Name", "")), "read")[2] or ""))),
    "DiscoveryChain.Get": (_fixed("service", "read", "name"), None),
    "Intention.List": (_none, _rows(lambda z, i: not isinstance(i, dict) or z.allowed(
        "intention", "read", str(i.get("DestinationName", ""))))),
    "Intention.Get": (_intention("read"), None),
    "Intention.Apply": (_intention("write"), None),
    "Intention.Check": (_intention("read"), None),
    "Intention.Match": (_intention_match, None),
    "Operator.RaftGetConfiguration": (_fixed("operator", "read"), None),
    "Operator.RaftRemovePeer": (_fixed("operator", "write"), None),
    "Operator.RaftTransferLeader": (_fixed("operator", "write"), None),
    "Operator.AutopilotGetConfiguration": (_fixed("operator", "read"), None),
    "Operator.ServerHealth": (_fixed("operator", "read"), None),
    "Operator.Usage": (_fixed("operator", "read"), None),
    # an agent may get a client certificate (or report coordinates) only for a node it may write
    "AutoEncrypt.Sign": (_fixed("node", "write", "node"), None),
    "Coordinate.Update": (_fixed("node", "write", "node"), None),
    "Coordinate.ListNodes": (_none, _rows(lambda z, c: not isinstance(c, dict) or _node_ok(z, c.get("Node")))),
    "Coordinate.Node": (_fixed("node", "read", "node"), None),
    "Coordinate.ListDatacenters": (_none, None),
    "Snapshot.Save": (_fixed("acl", "write"), None),      # management: a snapshot holds every secret
    "Snapshot.Restore": (_fixed("acl", "write"), None),
}
_FAIL_CLOSED: tuple[Needs, Filter | None] = (_fixed("operator", "write"), None)


def authorize_rpc(server: Any, name: str, args: dict[str, Any]) -> Authorizer | None:
    """Check ``name``'s needs for ``args["token"]``; None when ACLs are off or the endpoint
    enforces itself (``ACL.*``)."""
    if name.startswith("ACL."):
        return None
    z = authorizer_for(server, args.get("token") if isinstance(args, dict) else None)
    if z is None:
        return None
    needs, _ = RPC_RULES.get(name, _FAIL_CLOSED)
    for res, access, obj in needs(server, args, z):
        if not z.allowed(res, access, obj or ""):
            raise denied(z, res, access, obj)
    return z


def filter_rpc_result(z: Authorizer | None, name: str, out: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``out`` whose ``result`` holds only what ``z`` may read (``out`` untouched)."""
    if z is None or z.management:
        return out
    flt = RPC_RULES.get(name, _FAIL_CLOSED)[1]
    if flt is None or not isinstance(out, dict) or "result" not in out:
        return out
    result = flt(z, out["result"])
    if result is out["result"]:
        return out
    dropped = len(result) != len(out["result"]) if hasattr(result, "__len__") else True
    if isinstance(result, dict) and isinstance(out["result"], dict) and "Services" in result:
        dropped = len(result["Services"]) != len(out["result"]["Services"])
    return {**out, "result": result, "results_filtered_by_acls": dropped}
