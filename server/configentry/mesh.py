"""Catalog views of the mesh, as pure reads of a store: the services a gateway routes to
(``/v1/catalog/gateway-services/:gateway``), the ingress gateways that expose a service
(``/v1/health/ingress/:service``), and the central configuration (proxy-defaults and
service-defaults) merged into a proxy's registration (``?merge-central-config``).

Each read registers its watches (the gateway entry kinds, and ``services`` when a wildcard expands
over the catalog, the whole ``config_entries`` table for a merge) and returns the index to report.
"""

from __future__ import annotations

import copy
from typing import Any

from lictor.server.configentry.chain import HTTP_PROTOCOLS, service_protocol
from lictor.server.configentry.entries import (DEFAULT_NS, INGRESS_GATEWAY, PROXY_DEFAULTS, SERVICE_DEFAULTS,
                                               TABLE, TERMINATING_GATEWAY, StoreView)
from lictor.server.state.store import Store
from lictor.server.state.watch import WatchSet

__all__ = ["MERGE_KINDS", "gateway_services", "ingress_gateways_for", "merge_proxy_config",
           "merged_catalog_rows", "merged_health_rows"]

_GATEWAY_KEYS = (f"{TABLE}.{INGRESS_GATEWAY}", f"{TABLE}.{TERMINATING_GATEWAY}")
MERGE_KINDS = frozenset({"connect-proxy", "ingress-gateway", "terminating-gateway", "mesh-gateway", "api-gateway"})


def _plain_services(store: Store) -> list[str]:
    """Catalog services a wildcard can stand for: no proxies or gateways, not the servers' own."""
    out = []
    for name, keys in store.services_by_name.items():
        if name == "consul":
            continue
        if any(store.services[k].kind == "" for k in keys):
            out.append(name)
    return sorted(out)


def gateway_services(store: Store, ws: WatchSet | None, gateway: str) -> tuple[int, list[dict[str, Any]]]:
    store.watch(ws, *_GATEWAY_KEYS, "services")
    index = store.index(*_GATEWAY_KEYS, "services")
    view = StoreView(store)
    out: list[dict[str, Any]] = []
    ingress = view.row(INGRESS_GATEWAY, gateway)
    term = view.row(TERMINATING_GATEWAY, gateway)
    if ingress is not None:
        for lst in ingress.body.get("Listeners") or []:
            proto = lst.get("Protocol") or "tcp"
            for s in lst.get("Services") or []:
                names = [s["Name"]]
                wildcard = s["Name"] == "*"
                if wildcard:
                    names = [n for n in _plain_services(store) if service_protocol(view, n) == proto]
                for n in names:
                    gs: dict[str, Any] = {"Gateway": {"Name": gateway}, "Service": {"Name": n},
                                          "GatewayKind": INGRESS_GATEWAY, "Port": lst["Port"], "Protocol": proto}
                    if s.get("Hosts"):
                        gs["Hosts"] = list(s["Hosts"])
                    gs.update({"FromWildcard": wildcard, "CreateIndex": ingress.create_index,
                               "ModifyIndex": ingress.modify_index})
                    out.append(gs)
    if term is not None:
        explicit = {s["Name"] for s in term.body.get("Services") or [] if s["Name"] != "*"}
        for s in term.body.get("Services") or []:
            wildcard = s["Name"] == "*"
            names = [n for n in _plain_services(store) if n not in explicit] if wildcard else [s["Name"]]
            for n in names:
                gs = {"Gateway": {"Name": gateway}, "Service": {"Name": n}, "GatewayKind": TERMINATING_GATEWAY}
                for k in ("CAFile", "CertFile", "KeyFile", "SNI"):
                    if s.get(k):
                        gs[k] = s[k]
                gs.update({"FromWildcard": wildcard, "CreateIndex": term.create_index,
                           "ModifyIndex": term.modify_index})
                out.append(gs)
    out.sort(key=lambda g: (g["Service"]["Name"], g.get("Port", 0)))
    return max(index, 1), out


def ingress_gateways_for(store: Store, ws: WatchSet | None, service: str) -> tuple[int, list[str]]:
    """Names of the ingress gateways whose listeners route to ``service`` (by name, or by "*" on a
    listener whose protocol is the service's)."""
    store.watch(ws, f"{TABLE}.{INGRESS_GATEWAY}", f"{TABLE}.{SERVICE_DEFAULTS}", f"{TABLE}.{PROXY_DEFAULTS}")
    view = StoreView(store)
    proto = service_protocol(view, service)
    out = []
    for gw in view.list(INGRESS_GATEWAY):
        for lst in gw.get("Listeners") or []:
            names = {s["Name"] for s in lst.get("Services") or [] if (s.get("Namespace") or DEFAULT_NS) == DEFAULT_NS}
            if service in names or ("*" in names and (lst.get("Protocol") or "tcp") == proto
                                    and proto in HTTP_PROTOCOLS):
                out.append(gw["Name"])
                break
    return store.index(f"{TABLE}.{INGRESS_GATEWAY}", f"{TABLE}.{SERVICE_DEFAULTS}", f"{TABLE}.{PROXY_DEFAULTS}"), out


# ----- merge-central-config -------------------------------------------------------------------

def _upstream_central(view: StoreView, sd: dict[str, Any], upstream: dict[str, Any]) -> dict[str, Any]:
    """The central Config of one upstream: service-defaults UpstreamConfig (Defaults, then the
    override naming it) plus the upstream service's protocol, in Consul's snake_case keys."""
    name = upstream.get("DestinationName") or ""
    uc = sd.get("UpstreamConfig") or {}
    merged: dict[str, Any] = dict(uc.get("Defaults") or {})
    for o in uc.get("Overrides") or []:
        if o.get("Name") == name and (o.get("Namespace") or DEFAULT_NS) == (upstream.get("DestinationNamespace")
                                                                             or DEFAULT_NS):
            merged.update({k: v for k, v in o.items() if k not in ("Name", "Namespace", "Partition", "Peer")})
    out: dict[str, Any] = {}
    if name:
        out["protocol"] = service_protocol(view, name, upstream.get("DestinationNamespace") or DEFAULT_NS)
    keys = {"ConnectTimeoutMs": "connect_timeout_ms", "Protocol": "protocol", "Limits": "limits",
            "PassiveHealthCheck": "passive_health_check", "BalanceOutboundConnections": "balance_outbound_connections",
            "EnvoyListenerJSON": "envoy_listener_json", "EnvoyClusterJSON": "envoy_cluster_json"}
    for k, v in merged.items():
        if k in keys:
            out[keys[k]] = v
    return out


def merge_proxy_config(view: StoreView, kind: str, service_name: str, proxy: dict[str, Any]) -> dict[str, Any]:
    """A new Proxy block: central values fill what the registration leaves unset (local wins)."""
    dest = proxy.get("DestinationServiceName") or service_name if kind == "connect-proxy" else service_name
    pd = view.get(PROXY_DEFAULTS, "global") or {}
    sd = view.get(SERVICE_DEFAULTS, dest) or {}
    out = copy.deepcopy(proxy)
    central = dict(pd.get("Config") or {})
    if sd.get("Protocol"):
        central["protocol"] = sd["Protocol"]
    out["Config"] = {**central, **(proxy.get("Config") or {})}
    if not out.get("Mode"):
        mode = sd.get("Mode") or pd.get("Mode")
        if mode:
            out["Mode"] = mode
    for field in ("TransparentProxy", "MeshGateway", "Expose", "AccessLogs"):
        if not out.get(field) or not any(out[field].values()):
            central_value = sd.get(field) or pd.get(field)
            if central_value:
                out[field] = copy.deepcopy(central_value)
    if not out.get("MutualTLSMode"):
        mtls = sd.get("MutualTLSMode") or pd.get("MutualTLSMode")
        if mtls:
            out["MutualTLSMode"] = mtls
    ups = []
    for u in proxy.get("Upstreams") or []:
        nu = copy.deepcopy(u)
        nu["Config"] = {**_upstream_central(view, sd, u), **(u.get("Config") or {})}
        if not (nu.get("MeshGateway") or {}).get("Mode"):
            mg = (sd.get("MeshGateway") or {}).get("Mode") or (pd.get("MeshGateway") or {}).get("Mode")
            if mg:
                nu["MeshGateway"] = {"Mode": mg}
        ups.append(nu)
    if ups:
        out["Upstreams"] = ups
    return out


def _merge_watch(store: Store, ws: WatchSet | None, index: int) -> int:
    store.watch(ws, TABLE)
    return max(index, store.index(TABLE))


def merged_catalog_rows(store: Store, ws: WatchSet | None, index: int, rows: list[dict[str, Any]]
                        ) -> tuple[int, list[dict[str, Any]]]:
    """/v1/catalog/service rows with central config merged into proxies' and gateways' ServiceProxy."""
    index = _merge_watch(store, ws, index)
    view = StoreView(store)
    out = []
    for r in rows:
        if r.get("ServiceKind") in MERGE_KINDS:
            r = {**r, "ServiceProxy": merge_proxy_config(view, r["ServiceKind"], r["ServiceName"],
                                                         r.get("ServiceProxy") or {})}
        out.append(r)
    return index, out


def merged_health_rows(store: Store, ws: WatchSet | None, index: int, rows: list[dict[str, Any]]
                       ) -> tuple[int, list[dict[str, Any]]]:
    """/v1/health/service entries with central config merged into the Service's Proxy."""
    index = _merge_watch(store, ws, index)
    view = StoreView(store)
    out = []
    for e in rows:
        svc = e.get("Service") or {}
        if svc.get("Kind") in MERGE_KINDS:
            e = {**e, "Service": {**svc, "Proxy": merge_proxy_config(view, svc["Kind"], svc["Service"],
                                                                     svc.get("Proxy") or {})}}
        out.append(e)
    return index, out
