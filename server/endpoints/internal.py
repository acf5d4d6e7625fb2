"""Internal.* endpoints: the whole-catalog views the web UI reads (Consul's ``Internal.ServiceDump``,
``Internal.NodeDump`` and ``Internal.ServiceTopology``).

They return rows, not summaries: the ACL filter (server/acl/rpc_rules.py) drops the rows a token may
not read, and the agent's HTTP handlers (lictor.agent.ui.api) summarise what is left, so a summary
never counts an instance the caller could not see.
"""

from __future__ import annotations

from typing import Any

from lictor.common.errors import ValidationError
from lictor.common.filter_schemas import HEALTH_SERVICE_ENTRY_SCHEMA
from lictor.common.structs import CheckRow, check_to_api, node_to_api, service_to_agent_api
from lictor.server.configentry.entries import MESH, SERVICE_DEFAULTS, TABLE, StoreView
from lictor.server.configentry.intentions import intention_decision
from lictor.server.endpoints import endpoint
from lictor.server.endpoints.common import blocking_read, make_filter
from lictor.server.endpoints.intentions import _default as default_intention_allow
from lictor.server.server import Server
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

_CATALOG = ("services", "nodes", "checks")
_TOPOLOGY = (*_CATALOG, "intentions", f"{TABLE}.{MESH}", f"{TABLE}.{SERVICE_DEFAULTS}")


def _checks_by_node(store: Store) -> dict[str, list[CheckRow]]:
    out: dict[str, list[CheckRow]] = {}
    for node, ids in store.checks_by_node.items():
        out[node] = sorted((store.checks[(node, cid)] for cid in ids), key=lambda c: (c.service_id != "", c.check_id))
    return out


def _instance_rows(store: Store, names: list[str], checks: dict[str, list[CheckRow]]) -> list[dict[str, Any]]:
    """Health-style rows ({Node, Service, Checks}) for every instance of ``names``, sorted."""
    out = []
    for name in names:
        for key in sorted(store.services_by_name.get(name, ())):
            s = store.services[key]
            out.append({"Node": node_to_api(store.nodes[s.node]), "Service": service_to_agent_api(s),
                        "Checks": [check_to_api(c) for c in checks.get(s.node, ())
                                   if not c.service_id or c.service_id == s.id]})
    return out


def _summary_rows(store: Store) -> list[dict[str, Any]]:
    """The same rows as :func:`_instance_rows` for every service, holding only the fields a summary
    reads (and the ACL filter needs): building full API rows for 5,000 instances costs about 5x more,
    and a blocking UI query rebuilds them after every catalog change."""
    checks: dict[str, list[tuple[str, str, str]]] = {}
    for (node, cid), c in store.checks.items():
        checks.setdefault(node, []).append((c.service_id, cid, c.status))
    out = []
    for name in sorted(store.services_by_name):
        for key in sorted(store.services_by_name[name]):
            s = store.services[key]
            svc: dict[str, Any] = {"ID": s.id, "Service": s.service, "Kind": s.kind, "Tags": s.tags}
            if s.meta.get("external-source"):
                svc["Meta"] = {"external-source": s.meta["external-source"]}
            if s.connect.get("Native"):
                svc["Connect"] = {"Native": True}
            if s.kind == "connect-proxy":
                svc["Proxy"] = {"DestinationServiceName": s.proxy.get("DestinationServiceName", ""),
                                "Mode": s.proxy.get("Mode", "")}
            n = store.nodes[s.node]
            out.append({"Node": {"Node": n.node, "Datacenter": n.datacenter}, "Service": svc,
                        "Checks": [{"Node": s.node, "CheckID": cid, "Status": st}
                                   for sid, cid, st in checks.get(s.node, ()) if not sid or sid == s.id]})
    return out


@endpoint("Internal.ServiceDump")
async def service_dump(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Every service instance with its node and checks (/v1/internal/ui/services reads this).
    ``summary=True``: only the fields a service summary needs (unless a ``filter`` needs them all)."""
    filtered = make_filter(a, HEALTH_SERVICE_ENTRY_SCHEMA)
    compact = bool(a.get("summary")) and not a.get("filter")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, *_CATALOG)
        if compact:
            return store.index(*_CATALOG), _summary_rows(store)
        rows = _instance_rows(store, sorted(store.services_by_name), _checks_by_node(store))
        return store.index(*_CATALOG), filtered(rows)
    return await blocking_read(server, a, q, shared="Internal.ServiceDump")


@endpoint("Internal.NodeDump")
async def node_dump(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Every node with its services and checks (/v1/internal/ui/nodes)."""
    dc = server.config.datacenter

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, *_CATALOG)
        checks = _checks_by_node(store)
        services: dict[str, list[Any]] = {}
        for s in store.services.values():
            services.setdefault(s.node, []).append(s)
        out = []
        for name in sorted(store.nodes):
            n = store.nodes[name]
            row = node_to_api(n) | {"Datacenter": n.datacenter or dc}
            row["Services"] = [service_to_agent_api(s) for s in sorted(services.get(name, ()), key=lambda s: s.id)]
            row["Checks"] = [check_to_api(c) for c in checks.get(name, ())]
            out.append(row)
        return store.index(*_CATALOG), out
    return await blocking_read(server, a, q, shared="Internal.NodeDump")


def _upstream_names(proxy: dict[str, Any]) -> list[str]:
    out = []
    for u in proxy.get("Upstreams") or ():
        if isinstance(u, dict) and (u.get("DestinationType") or "service") == "service" and u.get("DestinationName"):
            out.append(str(u["DestinationName"]))
    return out


def _decision(store: Store, server: Server, source: str, destination: str) -> dict[str, Any]:
    dflt = default_intention_allow(server, store)
    d = intention_decision(store, source, destination, default=dflt)
    ix = d.intention
    exact = ix is not None and ix.source_name == source and ix.destination_name == destination
    # an intention with L7 permissions decides per request: the edge is allowed for some requests
    return {"Allowed": d.allowed or d.has_permissions, "HasPermissions": d.has_permissions,
            "HasExact": exact, "DefaultAllow": dflt, "ExternalSource": "", "Reason": d.reason}


@endpoint("Internal.ServiceTopology")
async def service_topology(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """A service's upstreams (from its sidecar proxies' ``Proxy.Upstreams``) and downstreams (the
    services whose proxies list it), their instances, and the intention decision on each edge."""
    name = a.get("service")
    if not isinstance(name, str) or not name:
        raise ValidationError("Missing service name")

    def q(store: Store, ws: WatchSet | None) -> tuple[int, Any]:
        store.watch(ws, *_TOPOLOGY)
        upstreams: set[str] = set()
        downstreams: set[str] = set()
        tproxy = None
        for s in store.services.values():
            if s.kind != "connect-proxy":
                continue
            dest = str(s.proxy.get("DestinationServiceName") or "")
            ups = _upstream_names(s.proxy)
            if dest == name:
                upstreams.update(ups)
                mode = s.proxy.get("Mode") == "transparent"
                tproxy = mode if tproxy is None else (tproxy and mode)
            if name in ups and dest:
                downstreams.add(dest)
        checks = _checks_by_node(store)
        defaults = StoreView(store).get(SERVICE_DEFAULTS, name) or {}
        up, down = sorted(upstreams), sorted(downstreams)
        return store.index(*_TOPOLOGY), {
            "Upstreams": _instance_rows(store, up, checks),
            "Downstreams": _instance_rows(store, down, checks),
            "UpstreamNames": up,
            "DownstreamNames": down,
            "UpstreamDecisions": {u: _decision(store, server, name, u) for u in up},
            "DownstreamDecisions": {d: _decision(store, server, d, name) for d in down},
            "TransparentProxy": bool(tproxy),
            "MetricsProtocol": str(defaults.get("Protocol") or "tcp"),
        }
    return await blocking_read(server, a, q, shared="Internal.ServiceTopology")
