"""What each RPC endpoint needs, in one table, enforced by ``endpoints.call`` before the endpoint
runs (writes and reads alike) and filtering list results after (into new objects: results may be
shared by the query cache).

Each entry: ``(needs(server, args, authz) -> [(resource, access, name)], filter | None)``.
``needs`` may raise PermissionDeniedError itself for checks that are not a single rule (KV
delete-tree needs write on every key under the prefix). Endpoints not in the table fail closed:
they need ``operator:write`` (so a new endpoint is never open by accident). ``ACL.*`` endpoints
enforce themselves (token/self, redaction); ``ConnectCA.Sign`` is checked by its signing hook.

This is the one table: the agent's HTTP layer decides only its own ``/v1/agent/*`` routes and
leaves every route answered by an RPC here (``agent/http/acl_enforce.SERVER_DECIDED``). Rules
read the decoded RPC arguments and the stored rows a write replaces (a service ID held by
another service, the check a check ID names, the entry as ``decode_entry`` reads it). A filter's
``row_pred`` is also applied *before* a user's ``?filter`` (``endpoints.call`` -> ``make_filter``),
so ``X-Consul-Results-Filtered-By-ACLs`` never tells whether a hidden row matched. Filters fail
closed on rows they do not understand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lictor.server.acl.authorizer import Authorizer
from lictor.server.acl.enforce import authorizer_for, denied

__all__ = ["RPC_RULES", "acl_row_predicate", "authorize_rpc", "filter_rpc_result"]

Need = tuple[str, str, str | None]
Needs = Callable[[Any, dict[str, Any], Authorizer], list[Need]]
Filter = Callable[[Authorizer, Any], Any]

# Read access to a config entry: the service it is named after (Consul's CanRead).
SERVICE_KINDS = {"service-defaults", "service-router", "service-splitter", "service-resolver",
                 "ingress-gateway", "terminating-gateway", "api-gateway", "http-route", "tcp-route"}
# Write access: service:write only for a service's own defaults and discovery chain; gateways,
# routes and the mesh-wide kinds need mesh:write (Consul's CanWrite; a gateway entry decides
# which services the gateway fronts, so service:write on its name is not enough).
SERVICE_WRITE_KINDS = {"service-defaults", "service-router", "service-splitter", "service-resolver"}


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


def _proxy_destinations(proxy: Any) -> list[str]:
    """A proxy block's destination services, however the key is spelled (``DestinationServiceName``,
    ``destination_service_name``, any case): whatever a reader may take as the destination."""
    if not isinstance(proxy, dict):
        return []
    return sorted({str(v) for k, v in proxy.items()
                   if isinstance(k, str) and k.lower().replace("_", "") == "destinationservicename" and v})


def _service_write_needs(server: Any, node: str, svc: dict[str, Any]) -> list[Need]:
    """Writing service row ``svc`` on ``node``: its name, a proxy's destination, and the service
    its ID belongs to now (an ID is not a name: overwriting ``db-1`` needs write on ``db``)."""
    name = str(svc.get("service") or "")
    needs: list[Need] = [("service", "write", name)]
    needs += [("service", "write", dest) for dest in _proxy_destinations(svc.get("proxy"))]
    old = server.store.services.get((node, str(svc.get("id") or name)))
    if old is not None and old.service != name:
        needs.append(("service", "write", old.service))
    return needs


def _check_write_needs(server: Any, node: str, chk: dict[str, Any], *, new_service: dict[str, Any] | None = None,
                       delete: bool = False) -> list[Need]:
    """Writing (or deleting) check ``chk`` on ``node``: write on the service it binds to (else
    the node), and on whatever owns the check it replaces or deletes."""
    needs: list[Need] = []
    owners: set[str] = set() if delete else {str(chk.get("service_id") or "")}
    old = server.store.checks.get((node, str(chk.get("check_id") or chk.get("name") or "")))
    if old is not None:
        owners.add(str(old.service_id or ""))
    for sid in sorted(owners or {""}):
        if not sid:
            needs.append(("node", "write", node))
            continue
        if new_service is not None and str(new_service.get("id") or new_service.get("service") or "") == sid:
            continue  # the service registered in the same request: already authorized
        row = server.store.services.get((node, sid))
        needs.append(("service", "write", row.service if row is not None else sid))
    return needs


def _changes_node(server: Any, a: dict[str, Any]) -> bool:
    """Consul's ChangesNode: the node is new, or the request rewrites any of its fields."""
    n = server.store.nodes.get(a.get("node"))
    if n is None:
        return True
    if a.get("skip_node_update"):
        return False
    return (str(a.get("id") or ""), str(a.get("address") or ""), dict(a.get("tagged_addresses") or {}),
            dict(a.get("node_meta") or {})) != (n.id, n.address, dict(n.tagged_addresses), dict(n.meta))


def _catalog_register(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    node = str(a.get("node") or "")
    needs: list[Need] = []
    svc = a.get("service")
    if _changes_node(server, a) or (not svc and not a.get("checks")):
        # a request that registers only the node needs node:write even when it changes nothing
        needs.append(("node", "write", node))
    if isinstance(svc, dict):
        needs += _service_write_needs(server, node, svc)
    for c in a.get("checks") or []:
        if isinstance(c, dict):
            needs += _check_write_needs(server, node, c, new_service=svc if isinstance(svc, dict) else None)
    return needs


def _catalog_deregister(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    node = str(a.get("node") or "")
    if a.get("service_id"):
        row = server.store.services.get((node, a["service_id"]))
        return [("service", "write", row.service if row is not None else str(a["service_id"]))]
    if a.get("check_id"):
        return _check_write_needs(server, node, {"check_id": a["check_id"]}, delete=True)
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
            node, svc = str(op.get("node") or ""), op.get("service") or {}
            if read:
                needs.append(("service", "read", str(svc.get("service") or "")))
                stored = server.store.services.get((node, str(svc.get("id") or "")))
                if stored is not None:
                    needs.append(("service", "read", stored.service))
            elif verb in ("delete", "delete-cas"):
                # the stored service being deleted, whatever name the request gives
                sid = str(svc.get("id") or svc.get("service") or "")
                stored = server.store.services.get((node, sid))
                needs.append(("service", "write", stored.service if stored is not None else
                              str(svc.get("service") or sid)))
            else:
                needs += _service_write_needs(server, node, svc)
        elif kind == "check":
            chk = op.get("check") or {}
            node = str(chk.get("node") or "")
            if read:
                needs.append(("node", "read", node))
            elif verb in ("delete", "delete-cas"):
                needs += _check_write_needs(server, node, chk, delete=True)
            else:
                needs += _check_write_needs(server, node, chk)
        else:
            needs.append(("operator", "write", None))
    return needs


def _config_need(kind: str, name: str, access: str) -> Need:
    if kind == "service-intentions":
        return ("intention", access, name)
    if kind in (SERVICE_WRITE_KINDS if access == "write" else SERVICE_KINDS):
        return ("service", access, name)
    return ("mesh", access, None)


def _chain_services(body: dict[str, Any]) -> set[str]:
    """The services a router, splitter or resolver sends traffic to."""
    out: set[str] = set()
    for r in body.get("Routes") or []:
        out.add(str(((r or {}).get("Destination") or {}).get("Service") or ""))
    for s in body.get("Splits") or []:
        out.add(str((s or {}).get("Service") or ""))
    out.add(str((body.get("Redirect") or {}).get("Service") or ""))
    for f in (body.get("Failover") or {}).values():
        out.add(str((f or {}).get("Service") or ""))
        out.update(str((t or {}).get("Service") or "") for t in (f or {}).get("Targets") or [])
    out.discard("")
    return out


def _config_apply(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    """Authorized on the entry as the endpoint decodes it (keys in any case or spelling), never
    on the raw JSON: the kind and name it will store, and every service a discovery-chain
    entry routes to (service:read, as Consul's canWriteDiscoveryChain)."""
    from lictor.server.configentry.entries import decode_entry

    body = decode_entry(a.get("entry"), kind=a.get("kind") or "", name=a.get("name") or "")
    kind, name = str(body.get("Kind") or ""), str(body.get("Name") or "")
    needs = [_config_need(kind, name, "write")]
    if kind in SERVICE_WRITE_KINDS:
        needs += [("service", "read", s) for s in sorted(_chain_services(body) - {name})]
    return needs


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


def _query_row(server: Any, qid: str) -> dict[str, Any] | None:
    return server.store.ext["prepared_queries"].get(qid)


def _query_need(name: str, access: str) -> Need:
    # a query's name is its ACL resource (query:<access> on the name, prefix rules apply); an
    # unnamed query needs the same on the empty name, i.e. a `query_prefix ""` rule
    return ("query", access, name)


def _query_apply(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    needs: list[Need] = []
    q = a.get("query")
    if a.get("op") != "delete" and isinstance(q, dict):
        from lictor.server.prepared_query import get_field

        # the name the endpoint will store: read by the decoder's own rule (exact key, else any case)
        needs.append(_query_need(str(get_field(q, "Name") or ""), "write"))
    if a.get("op") in ("update", "delete"):
        old = _query_row(server, str(a.get("id") or ""))
        if old is not None:  # you may not take over (or delete) a query you could not write
            needs.append(_query_need(old.get("Name") or "", "write"))
    return needs


def _query_get(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    row = _query_row(server, str(a.get("id") or ""))
    return [_query_need(row.get("Name") or "", "read")] if row is not None else []


def _query_explain(server: Any, a: dict[str, Any], z: Authorizer) -> list[Need]:
    from lictor.server.prepared_query import resolve

    row = resolve(server.store, str(a.get("query") or ""))
    return [_query_need(row.get("Name") or "", "read")] if row is not None else []


def _queries(z: Authorizer, result: Any) -> Any:
    """Only the queries the token may read, their Token redacted unless it may read ACLs."""
    if not isinstance(result, list):
        return result
    show = z.allowed("acl", "read", "")
    out = []
    for q in result:
        if isinstance(q, dict) and z.allowed("query", "read", str(q.get("Name") or "")):
            out.append(q if show or not q.get("Token") else {**q, "Token": "<hidden>"})
    return out


def _explained(z: Authorizer, result: Any) -> Any:
    if isinstance(result, dict) and isinstance(result.get("Query"), dict) and result["Query"].get("Token") \
            and not z.allowed("acl", "read", ""):
        return {**result, "Query": {**result["Query"], "Token": "<hidden>"}}
    return result


# ----- filters ------------------------------------------------------------------------------------------

def _rows(pred: Callable[[Authorizer, Any], bool]) -> Filter:
    def f(z: Authorizer, result: Any) -> Any:
        if isinstance(result, list):
            return [r for r in result if pred(z, r)]
        if isinstance(result, dict):
            return {k: v for k, v in result.items() if pred(z, (k, v))}
        return result
    f.row_pred = pred  # type: ignore[attr-defined]  # what make_filter applies before a ?filter
    return f


def _node_ok(z: Authorizer, n: Any) -> bool:
    return z.allowed("node", "read", str(n or ""))


def _svc_ok(z: Authorizer, s: Any) -> bool:
    return z.allowed("service", "read", str(s or ""))


def _check_ok(z: Authorizer, c: Any) -> bool:
    if not isinstance(c, dict):
        return False  # fail closed: a row we do not understand is not shown
    return _node_ok(z, c.get("Node")) and (not c.get("ServiceName") or _svc_ok(z, c["ServiceName"]))


def _node_services(z: Authorizer, result: Any) -> Any:
    if isinstance(result, dict) and isinstance(result.get("Services"), dict | list):
        svcs = result["Services"]
        kept = ({k: v for k, v in svcs.items() if _svc_ok(z, v.get("Service"))} if isinstance(svcs, dict)
                else [v for v in svcs if _svc_ok(z, v.get("Service"))])
        return {**result, "Services": kept}
    return result


_node_services.row_pred = lambda z, s: isinstance(s, dict) and _svc_ok(z, s.get("Service"))  # type: ignore[attr-defined]


def _service_listed(z: Authorizer, row: Any) -> bool:
    """A /v1/catalog/services entry ((name, tags) of the result map) or an instance row a
    ``?filter`` runs on (``ServiceName``); anything else is not shown."""
    if isinstance(row, tuple):
        return _svc_ok(z, row[0])
    if isinstance(row, dict):
        return _svc_ok(z, row.get("ServiceName") or row.get("Service"))
    return isinstance(row, str) and _svc_ok(z, row)


_health = _rows(lambda z, r: isinstance(r, dict) and (
    _node_ok(z, (r.get("Node") or {}).get("Node")) and _svc_ok(z, (r.get("Service") or {}).get("Service"))))
_kv_rows = _rows(lambda z, r: z.allowed("key", "read", r if isinstance(r, str) else str(r.get("Key", ""))))
_sessions = _rows(lambda z, s: isinstance(s, dict) and z.allowed("session", "read", str(s.get("Node", ""))))

def _node_dump(z: Authorizer, result: Any) -> Any:
    if not isinstance(result, list):
        return result
    return [{**n, "Services": [s for s in n.get("Services") or () if _svc_ok(z, s.get("Service"))],
             "Checks": [c for c in n.get("Checks") or () if _check_ok(z, c)]}
            for n in result if isinstance(n, dict) and _node_ok(z, n.get("Node"))]


def _topology(z: Authorizer, result: Any) -> Any:
    if not isinstance(result, dict):
        return result
    out = dict(result)
    for side in ("Upstream", "Downstream"):
        rows, names = result.get(side + "s") or [], result.get(side + "Names") or []
        out[side + "s"] = _health(z, rows)
        out[side + "Names"] = [n for n in names if _svc_ok(z, n)]
        out[side + "Decisions"] = {k: v for k, v in (result.get(side + "Decisions") or {}).items() if _svc_ok(z, k)}
        if len(out[side + "s"]) != len(rows) or len(out[side + "Names"]) != len(names):
            out["FilteredByACLs"] = True
    return out


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
    "Catalog.ListNodes": (_none, _rows(lambda z, n: isinstance(n, dict) and _node_ok(z, n.get("Node")))),
    "Catalog.ListServices": (_none, _rows(_service_listed)),
    "Catalog.ServiceNodes": (_fixed("service", "read", "service"),
                             _rows(lambda z, r: isinstance(r, dict) and _node_ok(z, r.get("Node")))),
    "Catalog.NodeServices": (_fixed("node", "read", "node"), _node_services),
    "Catalog.ServicesByAddress": (_none, _rows(lambda z, r: not isinstance(r, dict) or (
        _node_ok(z, r.get("Node")) and _svc_ok(z, r.get("ServiceName"))))),
    "Catalog.GatewayServices": (_fixed("service", "read", "gateway"), None),
    "Health.NodeChecks": (_fixed("node", "read", "node"), _rows(_check_ok)),
    "Health.ServiceChecks": (_fixed("service", "read", "service"), _rows(_check_ok)),
    "Health.ChecksInState": (_none, _rows(_check_ok)),
    "Health.ServiceNodes": (_fixed("service", "read", "service"), _health),
    "Health.IngressServiceNodes": (_fixed("service", "read", "service"), _health),
    "Internal.ServiceDump": (_none, _health),  # the web UI's views (server/endpoints/internal.py)
    "Internal.NodeDump": (_none, _node_dump),
    "Internal.ServiceTopology": (_fixed("service", "read", "service"), _topology),
    "Session.Apply": (_session_apply, None),
    "Session.Renew": (_session_renew, None),
    "Session.Get": (_none, _sessions),
    "Session.List": (_none, _sessions),
    "Session.NodeSessions": (_fixed("session", "read", "node"), _sessions),
    "Txn.Apply": (_txn, None),
    "ConfigEntry.Apply": (_config_apply, None),
    "ConfigEntry.Delete": (_config_named("write"), None),
    "ConfigEntry.Get": (_config_named("read"), None),
    "ConfigEntry.List": (_none, _rows(lambda z, e: isinstance(e, dict) and z.allowed(
        *_config_need(str(e.get("Kind", "")), str(e.get("Name", "")), "read")[:2],
        _config_need(str(e.get("Kind", "")), str(e.get("Name", "")), "read")[2] or ""))),
    "DiscoveryChain.Get": (_fixed("service", "read", "name"), None),
    "Intention.List": (_none, _rows(lambda z, i: isinstance(i, dict) and z.allowed(
        "intention", "read", str(i.get("DestinationName", ""))))),
    "Intention.Get": (_intention("read"), None),
    "Intention.Apply": (_intention("write"), None),
    "Intention.Check": (_intention("read"), None),
    "Intention.DestinationView": (_intention("read"), None),  # an agent's /v1/agent/connect/authorize
    "Intention.Match": (_intention_match, None),
    "Operator.RaftGetConfiguration": (_fixed("operator", "read"), None),
    "Operator.RaftRemovePeer": (_fixed("operator", "write"), None),
    "Operator.RaftTransferLeader": (_fixed("operator", "write"), None),
    "Operator.AutopilotGetConfiguration": (_fixed("operator", "read"), None),
    "Operator.ApplyAutopilotConfiguration": (_fixed("operator", "write"), None),
    "Operator.ServerHealth": (_fixed("operator", "read"), None),
    "Operator.Usage": (_fixed("operator", "read"), None),
    # an agent may get a client certificate (or report coordinates) only for a node it may write
    "AutoEncrypt.Sign": (_fixed("node", "write", "node"), None),
    "Coordinate.Update": (_fixed("node", "write", "node"), None),
    "Coordinate.ListNodes": (_none, _rows(lambda z, c: isinstance(c, dict) and _node_ok(z, c.get("Node")))),
    "Coordinate.Node": (_fixed("node", "read", "node"), None),
    "Coordinate.ListDatacenters": (_none, None),
    "PreparedQuery.Apply": (_query_apply, None),
    "PreparedQuery.Get": (_query_get, _queries),
    "PreparedQuery.List": (_none, _queries),
    "PreparedQuery.Explain": (_query_explain, _explained),
    # the endpoint reads with the query's token (or the caller's) and drops what it may not read
    "PreparedQuery.Execute": (_none, None),
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


def acl_row_predicate(z: Authorizer, name: str) -> Callable[[Any], bool] | None:
    """The per-row read check of ``name``'s list filter (None: nothing to filter), for
    endpoints that must drop hidden rows before applying the user's ``?filter``."""
    if z.management:
        return None
    pred = getattr(RPC_RULES.get(name, _FAIL_CLOSED)[1], "row_pred", None)
    if pred is None:
        return None
    return lambda row: bool(pred(z, row))


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
