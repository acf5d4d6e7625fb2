"""PURE: Istio resources -> the config entries they imply, plus warnings.

``translate(resources, supports=...)`` is a function of the whole set of stored resources (a
VirtualService's subsets live in a DestinationRule, an AuthorizationPolicy's JWT in a
RequestAuthentication), so every apply or delete recomputes it and replaces the entries the
previous set implied. Deterministic: the same set gives the same entries, in the same order.

Every field of every accepted kind is either mapped, mapped approximately with a warning naming
it, or refused with an error naming it (``docs/istio.md`` is the table). Errors name the resource
(its ``where``: position in the file and kind/name) and the field path inside it.

``supports(kind, path)`` says whether this build's config-entry schema has a field (for example
``("service-router", "Routes.Destination.PerTryTimeout")``); an Istio field whose target is missing
is refused rather than written into an entry the servers would not honour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lictor.common.errors import ValidationError
from lictor.server.istio.documents import Resource

__all__ = ["ISTIO_META", "Translation", "service_of_host", "translate"]

ISTIO_META = "lictor-istio"          # Meta key on every derived entry: the resources it comes from
ROOT_NAMESPACE = "istio-system"
GLOBAL = "global"
TERMINATING_GATEWAY_NAME = "terminating-gateway"

Supports = Callable[[str, str], bool]


def _all(kind: str, path: str) -> bool:
    return True


@dataclass
class Translation:
    entries: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Ctx:
    def __init__(self, supports: Supports) -> None:
        self.supports = supports
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.origins: dict[tuple[str, str], set[str]] = {}
        self.field_origin: dict[tuple[str, str, str], tuple[str, Any]] = {}
        self.warnings: list[str] = []

    def warn(self, r: Resource, path: str, msg: str) -> None:
        self.warnings.append(f"{r.where or r.ref}: {path}: {msg}")

    def entry(self, kind: str, name: str, r: Resource) -> dict[str, Any]:
        key = (kind, name)
        if key not in self.entries:
            self.entries[key] = {"Kind": kind, "Name": name}
        self.origins.setdefault(key, set()).add(r.ref)
        return self.entries[key]

    def set(self, kind: str, name: str, fld: str, value: Any, r: Resource, path: str) -> None:
        """Set one top-level field of a derived entry; two resources setting it differently conflict."""
        e = self.entry(kind, name, r)
        prev = self.field_origin.get((kind, name, fld))
        if prev is not None and prev[1] != value:
            raise _err(r, path, f"conflicts with {prev[0]}: both set {kind} {name!r} {fld}")
        self.field_origin[(kind, name, fld)] = (r.where or r.ref, value)
        e[fld] = value

    def need(self, r: Resource, path: str, kind: str, target: str) -> None:
        if not self.supports(kind, target):
            raise _err(r, path, f"not supported by this Lictor build (needs the {kind} field {target})")


def _err(r: Resource, path: str, msg: str) -> ValidationError:
    return ValidationError(f"{r.where or r.ref}: {path}: {msg}")


def _keys(r: Resource, d: Any, path: str, ok: Iterable[str], refused: Iterable[str] = (),
          ignored: Iterable[str] = (), ctx: _Ctx | None = None) -> dict[str, Any]:
    """Check an object's keys: ``ok`` are mapped, ``refused`` are refused by name, ``ignored`` are
    accepted with a warning; anything else is an unknown field (Istio rejects those too)."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise _err(r, path, f"expected an object, got {type(d).__name__}")
    ok, refused, ignored = set(ok), set(refused), set(ignored)
    for k in sorted(d, key=str):
        p = f"{path}.{k}" if path else str(k)
        if k in ok:
            continue
        if k in refused:
            raise _err(r, p, "not supported by Lictor")
        if k in ignored:
            if ctx is not None:
                ctx.warn(r, p, "ignored by Lictor")
            continue
        raise _err(r, p, "unknown field")
    return d


def _list(r: Resource, v: Any, path: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _err(r, path, f"expected a list, got {type(v).__name__}")
    return v


def _str(r: Resource, v: Any, path: str) -> str:
    if not isinstance(v, str) or not v:
        raise _err(r, path, "expected a non-empty string")
    return v


def _int(r: Resource, v: Any, path: str, lo: int = 0, hi: int = 2**31 - 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _err(r, path, f"expected an integer in [{lo}, {hi}], got {v!r}")
    return v


_DUR = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$")


def _dur(r: Resource, v: Any, path: str) -> str:
    if not isinstance(v, str) or not _DUR.match(v):
        raise _err(r, path, f"expected a duration such as \"5s\" or \"100ms\", got {v!r}")
    return v


def _percent(r: Resource, v: Any, path: str) -> float:
    d = _keys(r, v, path, ("value",))
    val = d.get("value", 0)
    if isinstance(val, bool) or not isinstance(val, int | float) or not 0 <= val <= 100:
        raise _err(r, f"{path}.value", f"expected a percentage in [0, 100], got {val!r}")
    return float(val)


_SVC_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$")


def service_of_host(host: str, namespace: str = "default") -> str | None:
    """The service a Kubernetes-style host names (``reviews``, ``reviews.default``,
    ``reviews.default.svc.cluster.local``, ``reviews.service.consul``), else None."""
    parts = host.split(".")
    if len(parts) == 1:
        name = parts[0]
    elif parts[1:] == ["service", "consul"]:
        name = parts[0]
    elif len(parts) >= 2 and parts[1] == namespace and parts[2:] in ([], ["svc"], ["svc", "cluster", "local"]):
        name = parts[0]
    else:
        return None
    return name if _SVC_NAME.match(name) else None


def _labels_service(r: Resource, sel: Any, path: str) -> str | None:
    """The service a workload selector names: its ``app`` label (the only label a selector may have)."""
    if sel is None:
        return None
    d = _keys(r, sel, path, ("matchLabels",))
    labels = d.get("matchLabels") or {}
    if not isinstance(labels, dict) or not labels:
        return None
    extra = sorted(k for k in labels if k != "app")
    if extra:
        raise _err(r, f"{path}.matchLabels.{extra[0]}", "not supported by Lictor: a workload is a service, "
                   "selected by its app label only")
    return _str(r, labels.get("app"), f"{path}.matchLabels.app")


# --------------------------------------------------------------------------------------------


class _Hosts:
    """Host -> service: mesh services by their Kubernetes names, external hosts by ServiceEntry."""

    def __init__(self, entries: list[Resource]) -> None:
        self.external: dict[str, str] = {}
        for se in entries:
            for h in se.spec.get("hosts") or []:
                if isinstance(h, str):
                    self.external.setdefault(h, se.name)

    def service(self, r: Resource, host: Any, path: str) -> str:
        h = _str(r, host, path)
        if h in self.external:
            return self.external[h]
        if "*" in h:
            raise _err(r, path, f"wildcard host {h!r} is not supported by Lictor")
        name = service_of_host(h, r.namespace)
        if name is None:
            raise _err(r, path, f"host {h!r} is neither a service of namespace {r.namespace!r} nor a "
                                "ServiceEntry host")
        return name


def translate(resources: Iterable[Resource], *, supports: Supports = _all) -> Translation:
    res = sorted(resources, key=lambda x: (x.kind, x.namespace, x.name))
    ctx = _Ctx(supports)
    by_kind: dict[str, list[Resource]] = {}
    for r in res:
        if r.namespace not in ("default", ROOT_NAMESPACE):
            raise _err(r, "metadata.namespace", f"namespace {r.namespace!r} is not supported by Lictor "
                                                "(default, or istio-system for mesh-wide policy)")
        by_kind.setdefault(r.kind, []).append(r)
    hosts = _Hosts(by_kind.get("ServiceEntry", []))
    for r in by_kind.get("ServiceEntry", []):
        _service_entry(ctx, r)
    subsets: dict[str, set[str]] = {}
    for r in by_kind.get("DestinationRule", []):
        _destination_rule(ctx, r, hosts, subsets)
    gateways = {}
    for r in by_kind.get("Gateway", []):
        gateways[r.name] = _gateway(ctx, r)
    for r in by_kind.get("VirtualService", []):
        _virtual_service(ctx, r, hosts, subsets, gateways)
    for r in by_kind.get("PeerAuthentication", []):
        _peer_authentication(ctx, r)
    providers: dict[str, list[tuple[str, str]]] = {}  # service ("*" = all) -> [(provider, issuer)]
    for r in by_kind.get("RequestAuthentication", []):
        _request_authentication(ctx, r, providers)
    _authorization(ctx, by_kind.get("AuthorizationPolicy", []), providers)
    for r in by_kind.get("Telemetry", []):
        _telemetry(ctx, r)
    for key in sorted(k for k in ctx.entries if k[0] == "ingress-gateway"):
        e = ctx.entries[key]
        for lst in [x for x in e["Listeners"] if not x["Services"]]:
            ctx.warnings.append(f"{','.join(sorted(ctx.origins[key]))}: port {lst['Port']} of gateway {key[1]!r} "
                                "has no VirtualService yet: not opened")
        e["Listeners"] = [x for x in e["Listeners"] if x["Services"]]
        if not e["Listeners"]:
            del ctx.entries[key]
    out = Translation(warnings=ctx.warnings)
    for key in sorted(ctx.entries):
        e = ctx.entries[key]
        e["Meta"] = {ISTIO_META: ",".join(sorted(ctx.origins[key]))}
        out.entries.append(e)
    return out


# --------------------------------------------------------------------------------------------
# ServiceEntry -> service-defaults Destination + terminating-gateway


def _service_entry(ctx: _Ctx, r: Resource) -> None:
    s = _keys(r, r.spec, "spec", ("hosts", "ports", "resolution", "endpoints", "location", "addresses"),
              refused=("workloadSelector", "subjectAltNames"), ignored=("exportTo",), ctx=ctx)
    hosts = [_str(r, h, f"spec.hosts[{i}]") for i, h in enumerate(_list(r, s.get("hosts"), "spec.hosts"))]
    if not hosts:
        raise _err(r, "spec.hosts", "at least one host is required")
    ports = _list(r, s.get("ports"), "spec.ports")
    if len(ports) != 1:
        raise _err(r, "spec.ports", "exactly one port is supported by Lictor")
    p = _keys(r, ports[0], "spec.ports[0]", ("number", "protocol", "name", "targetPort"))
    number = _int(r, p.get("number"), "spec.ports[0].number", 1, 65535)
    proto = str(p.get("protocol", "TCP")).upper()
    protocols = {"HTTP": "http", "HTTP2": "http2", "GRPC": "grpc", "TCP": "tcp", "HTTPS": "tcp", "TLS": "tcp"}
    if proto not in protocols:
        raise _err(r, "spec.ports[0].protocol", f"protocol {proto!r} is not supported by Lictor")
    location = s.get("location", "MESH_EXTERNAL")
    if location != "MESH_EXTERNAL":
        raise _err(r, "spec.location", f"{location!r}: only MESH_EXTERNAL is supported by Lictor")
    resolution = s.get("resolution", "NONE")
    if resolution not in ("DNS", "STATIC", "NONE", "DNS_ROUND_ROBIN"):
        raise _err(r, "spec.resolution", f"unknown resolution {resolution!r}")
    addresses = hosts
    if resolution == "STATIC":
        eps = _list(r, s.get("endpoints"), "spec.endpoints")
        if not eps:
            raise _err(r, "spec.endpoints", "resolution STATIC needs endpoints")
        addresses = []
        for i, ep in enumerate(eps):
            e = _keys(r, ep, f"spec.endpoints[{i}]", ("address", "ports"), ignored=("labels", "locality", "weight",
                                                                                   "network"), ctx=ctx)
            addresses.append(_str(r, e.get("address"), f"spec.endpoints[{i}].address"))
    elif s.get("endpoints"):
        raise _err(r, "spec.endpoints", f"endpoints need resolution STATIC (got {resolution})")
    if s.get("addresses"):
        ctx.warn(r, "spec.addresses", "ignored by Lictor: the service is reached by its name")
    name = r.name
    ctx.set("service-defaults", name, "Protocol", protocols[proto], r, "spec.ports[0].protocol")
    ctx.set("service-defaults", name, "Destination", {"Addresses": addresses, "Port": number}, r, "spec.hosts")
    ctx.warn(r, "spec.hosts", "mapped approximately: written as service-defaults Destination and a service of the "
                              "terminating-gateway entry, but Lictor runs no terminating gateway yet")
    tg = ctx.entry("terminating-gateway", TERMINATING_GATEWAY_NAME, r)
    tg.setdefault("Services", []).append({"Name": name})


# --------------------------------------------------------------------------------------------
# DestinationRule -> service-resolver (subsets, load balancer, connect timeout) and
# proxy-defaults UpstreamConfig.Overrides[] (limits, passive health checks) for every caller


def _destination_rule(ctx: _Ctx, r: Resource, hosts: _Hosts, subsets: dict[str, set[str]]) -> None:
    s = _keys(r, r.spec, "spec", ("host", "subsets", "trafficPolicy"), refused=("workloadSelector",),
              ignored=("exportTo",), ctx=ctx)
    svc = hosts.service(r, s.get("host"), "spec.host")
    resolver = "service-resolver"
    names = subsets.setdefault(svc, set())
    subs: dict[str, Any] = {}
    for i, sub in enumerate(_list(r, s.get("subsets"), "spec.subsets")):
        path = f"spec.subsets[{i}]"
        d = _keys(r, sub, path, ("name", "labels"), refused=("trafficPolicy",))
        sname = _str(r, d.get("name"), f"{path}.name")
        if sname in subs:
            raise _err(r, f"{path}.name", f"subset {sname!r} is defined twice")
        labels = d.get("labels") or {}
        if not isinstance(labels, dict):
            raise _err(r, f"{path}.labels", "expected a map of labels")
        conds = []
        for k in sorted(labels):
            v = labels[k]
            if not isinstance(v, str) or '"' in v or "\\" in v:
                raise _err(r, f"{path}.labels.{k}", "expected a string without quotes or backslashes")
            if not re.match(r"^[A-Za-z0-9_.-]+$", str(k)):
                raise _err(r, f"{path}.labels.{k}", "label names may contain letters, digits, '_', '.' and '-'")
            conds.append(f'Service.Meta.{k} == "{v}"' if "." not in k and "-" not in k
                         else f'Service.Meta["{k}"] == "{v}"')
        subs[sname] = {"Filter": " and ".join(conds)} if conds else {}
        names.add(sname)
    if subs:
        ctx.set(resolver, svc, "Subsets", subs, r, "spec.subsets")
    tp = s.get("trafficPolicy")
    if tp is None:
        return
    t = _keys(r, tp, "spec.trafficPolicy", ("loadBalancer", "connectionPool", "outlierDetection", "tls"),
              refused=("portLevelSettings", "tunnel", "proxyProtocol"))
    override: dict[str, Any] = {}
    if "loadBalancer" in t:
        ctx.set(resolver, svc, "LoadBalancer", _load_balancer(r, t["loadBalancer"]), r,
                "spec.trafficPolicy.loadBalancer")
    cp = t.get("connectionPool")
    if cp is not None:
        c = _keys(r, cp, "spec.trafficPolicy.connectionPool", ("tcp", "http"))
        limits: dict[str, Any] = {}
        tcp = _keys(r, c.get("tcp"), "spec.trafficPolicy.connectionPool.tcp", ("maxConnections", "connectTimeout"),
                    refused=("tcpKeepalive", "maxConnectionDuration", "idleTimeout"))
        if "maxConnections" in tcp:
            limits["MaxConnections"] = _int(r, tcp["maxConnections"], "spec.trafficPolicy.connectionPool.tcp."
                                                                       "maxConnections")
        if "connectTimeout" in tcp:
            ctx.set(resolver, svc, "ConnectTimeout", _dur(r, tcp["connectTimeout"], "spec.trafficPolicy."
                                                         "connectionPool.tcp.connectTimeout"),
                    r, "spec.trafficPolicy.connectionPool.tcp.connectTimeout")
        hp = "spec.trafficPolicy.connectionPool.http"
        http = _keys(r, c.get("http"), hp, ("http1MaxPendingRequests", "http2MaxRequests", "maxRetries",
                                            "maxRequestsPerConnection"),
                     refused=("idleTimeout", "h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams"))
        if "http1MaxPendingRequests" in http:
            limits["MaxPendingRequests"] = _int(r, http["http1MaxPendingRequests"], f"{hp}.http1MaxPendingRequests")
        if "http2MaxRequests" in http:
            limits["MaxConcurrentRequests"] = _int(r, http["http2MaxRequests"], f"{hp}.http2MaxRequests")
        if "maxRetries" in http:
            ctx.need(r, f"{hp}.maxRetries", "proxy-defaults", "UpstreamConfig.Overrides.Limits.MaxRetries")
            limits["MaxRetries"] = _int(r, http["maxRetries"], f"{hp}.maxRetries")
        if "maxRequestsPerConnection" in http:
            _int(r, http["maxRequestsPerConnection"], f"{hp}.maxRequestsPerConnection")
            ctx.warn(r, f"{hp}.maxRequestsPerConnection", "ignored by Lictor: connections are reused without a "
                                                         "per-connection request limit")
        if limits:
            override["Limits"] = limits
    od = t.get("outlierDetection")
    if od is not None:
        op = "spec.trafficPolicy.outlierDetection"
        o = _keys(r, od, op, ("consecutive5xxErrors", "consecutiveGatewayErrors", "interval", "baseEjectionTime",
                              "maxEjectionPercent", "consecutiveErrors", "minHealthPercent"),
                  refused=("splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures"))
        # Istio's default minHealthPercent is 0: ejections hold even when every host is ejected
        ctx.need(r, f"{op}.minHealthPercent", "proxy-defaults",
                 "UpstreamConfig.Overrides.PassiveHealthCheck.MinHealthPercent")
        phc: dict[str, Any] = {"MinHealthPercent": _int(r, o.get("minHealthPercent", 0), f"{op}.minHealthPercent",
                                                        0, 100)}
        if "consecutive5xxErrors" in o or "consecutiveErrors" in o:
            k = "consecutive5xxErrors" if "consecutive5xxErrors" in o else "consecutiveErrors"
            phc["MaxFailures"] = _int(r, o[k], f"{op}.{k}")
            phc["EnforcingConsecutive5xx"] = 100
        if "consecutiveGatewayErrors" in o:
            n = _int(r, o["consecutiveGatewayErrors"], f"{op}.consecutiveGatewayErrors")
            if "MaxFailures" not in phc:
                phc["MaxFailures"] = n
                phc["EnforcingConsecutive5xx"] = 100
            ctx.warn(r, f"{op}.consecutiveGatewayErrors", "mapped approximately: counted as consecutive 5xx errors")
        if "interval" in o:
            phc["Interval"] = _dur(r, o["interval"], f"{op}.interval")
        if "baseEjectionTime" in o:
            phc["BaseEjectionTime"] = _dur(r, o["baseEjectionTime"], f"{op}.baseEjectionTime")
        if "maxEjectionPercent" in o:
            phc["MaxEjectionPercent"] = _int(r, o["maxEjectionPercent"], f"{op}.maxEjectionPercent", 0, 100)
        override["PassiveHealthCheck"] = phc
    if "tls" in t:
        tl = _keys(r, t["tls"], "spec.trafficPolicy.tls", ("mode",),
                   refused=("clientCertificate", "privateKey", "caCertificates", "credentialName", "subjectAltNames",
                            "sni", "insecureSkipVerify", "caCrl"))
        mode = tl.get("mode", "ISTIO_MUTUAL")
        if mode == "DISABLE" and svc in hosts.external.values():
            pass
        elif mode not in ("ISTIO_MUTUAL",):
            raise _err(r, "spec.trafficPolicy.tls.mode", f"{mode!r} is not supported by Lictor: sidecars always "
                                                         "talk mutual TLS with the mesh's certificates")
    if override:
        ctx.need(r, "spec.trafficPolicy", "proxy-defaults", "UpstreamConfig.Overrides")
        pd = ctx.entry("proxy-defaults", GLOBAL, r)
        uc = pd.setdefault("UpstreamConfig", {"Overrides": []})
        uc["Overrides"].append({"Name": svc, **override})


def _load_balancer(r: Resource, lb: Any) -> dict[str, Any]:
    p = "spec.trafficPolicy.loadBalancer"
    d = _keys(r, lb, p, ("simple", "consistentHash"), refused=("localityLbSetting", "warmupDurationSecs", "warmup"))
    if "simple" in d and "consistentHash" in d:
        raise _err(r, p, "simple and consistentHash are exclusive")
    if "simple" in d:
        policies = {"ROUND_ROBIN": "round_robin", "LEAST_REQUEST": "least_request", "LEAST_CONN": "least_request",
                    "RANDOM": "random", "UNSPECIFIED": ""}
        v = d["simple"]
        if v not in policies:
            raise _err(r, f"{p}.simple", f"{v!r} is not supported by Lictor")
        return {"Policy": policies[v]} if policies[v] else {}
    ch = _keys(r, d.get("consistentHash"), f"{p}.consistentHash",
               ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName", "ringHash", "maglev",
                "minimumRingSize"))
    out: dict[str, Any] = {"Policy": "maglev" if "maglev" in ch else "ring_hash"}
    hp: dict[str, Any] = {}
    if "httpHeaderName" in ch:
        hp = {"Field": "header", "FieldValue": _str(r, ch["httpHeaderName"], f"{p}.consistentHash.httpHeaderName")}
    elif "httpQueryParameterName" in ch:
        hp = {"Field": "query_parameter",
              "FieldValue": _str(r, ch["httpQueryParameterName"], f"{p}.consistentHash.httpQueryParameterName")}
    elif "httpCookie" in ch:
        c = _keys(r, ch["httpCookie"], f"{p}.consistentHash.httpCookie", ("name", "ttl", "path"),
                  refused=("attributes",))
        cc: dict[str, Any] = {}
        if "ttl" in c:
            cc["TTL"] = _dur(r, c["ttl"], f"{p}.consistentHash.httpCookie.ttl")
        else:
            cc["Session"] = True
        if "path" in c:
            cc["Path"] = _str(r, c["path"], f"{p}.consistentHash.httpCookie.path")
        hp = {"Field": "cookie", "FieldValue": _str(r, c.get("name"), f"{p}.consistentHash.httpCookie.name"),
              "CookieConfig": cc}
    elif ch.get("useSourceIp"):
        hp = {"SourceIP": True}
    if hp:
        out["HashPolicies"] = [hp]
    rh = ch.get("ringHash")
    size = ch.get("minimumRingSize")
    if rh is not None:
        size = _keys(r, rh, f"{p}.consistentHash.ringHash", ("minimumRingSize",)).get("minimumRingSize", size)
    if size is not None:
        out["RingHashConfig"] = {"MinimumRingSize": _int(r, size, f"{p}.consistentHash.ringHash.minimumRingSize")}
    if "maglev" in ch:
        _keys(r, ch["maglev"], f"{p}.consistentHash.maglev", (), refused=("tableSize",))
    return out


# --------------------------------------------------------------------------------------------
# Gateway -> ingress-gateway listeners (the entry is named after the selector's app/istio label)


@dataclass
class _Gw:
    entry_name: str
    ports: dict[int, str]      # port -> protocol
    hosts: dict[int, list[str]]


def _gateway(ctx: _Ctx, r: Resource) -> _Gw:
    s = _keys(r, r.spec, "spec", ("selector", "servers"))
    sel = s.get("selector") or {}
    if not isinstance(sel, dict):
        raise _err(r, "spec.selector", "expected a map of labels")
    name = sel.get("app") or sel.get("istio") or r.name
    extra = sorted(k for k in sel if k not in ("app", "istio"))
    if extra:
        raise _err(r, f"spec.selector.{extra[0]}", "not supported by Lictor: a gateway is selected by its app or "
                                                    "istio label")
    if not isinstance(name, str) or not _SVC_NAME.match(name):
        raise _err(r, "spec.selector", f"{name!r} is not a valid gateway service name")
    gw = _Gw(name, {}, {})
    servers = _list(r, s.get("servers"), "spec.servers")
    if not servers:
        raise _err(r, "spec.servers", "at least one server is required")
    listeners = []
    for i, srv in enumerate(servers):
        p = f"spec.servers[{i}]"
        d = _keys(r, srv, p, ("port", "hosts", "tls", "name"), refused=("bind", "defaultEndpoint"))
        port = _keys(r, d.get("port"), f"{p}.port", ("number", "name", "protocol", "targetPort"))
        num = _int(r, port.get("number"), f"{p}.port.number", 1, 65535)
        proto = str(port.get("protocol", "")).upper()
        if proto not in ("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP"):
            raise _err(r, f"{p}.port.protocol", f"{proto or 'missing'!r}: Lictor supports HTTP, HTTP2, GRPC and TCP")
        if num in gw.ports:
            raise _err(r, f"{p}.port.number", f"port {num} is used by two servers")
        hosts = [_str(r, h, f"{p}.hosts[{j}]") for j, h in enumerate(_list(r, d.get("hosts"), f"{p}.hosts"))]
        if not hosts:
            raise _err(r, f"{p}.hosts", "at least one host is required")
        lst: dict[str, Any] = {"Port": num, "Protocol": "tcp" if proto == "TCP" else
                               ("http2" if proto in ("HTTP2", "GRPC") else "http")}
        tls = d.get("tls")
        if proto == "HTTPS" or tls is not None:
            where = f"{p}.port.protocol"
            if isinstance(tls, dict) and tls:
                where = f"{p}.tls.{sorted(tls, key=str)[0]}"
            raise _err(r, where, "not supported by Lictor yet: ingress gateways do not terminate TLS")
        gw.ports[num] = lst["Protocol"]
        gw.hosts[num] = hosts
        listeners.append(lst)
    e = ctx.entry("ingress-gateway", name, r)
    have = {lst["Port"] for lst in e.get("Listeners", [])}
    for lst in listeners:
        if lst["Port"] in have:
            raise _err(r, "spec.servers", f"port {lst['Port']} of gateway {name!r} is also set by another Gateway")
        lst["Services"] = []
        e.setdefault("Listeners", []).append(lst)
    return gw


# --------------------------------------------------------------------------------------------
# VirtualService -> service-router / service-splitter / service-defaults Protocol, and the
# ingress gateway's services


_RETRY_ON = {"5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
             "refused-stream", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
             "retriable-status-codes"}


def _virtual_service(ctx: _Ctx, r: Resource, hosts: _Hosts, subsets: dict[str, set[str]],
                     gateways: dict[str, _Gw]) -> None:
    s = _keys(r, r.spec, "spec", ("hosts", "gateways", "http", "tcp"), refused=("tls",),
              ignored=("exportTo",), ctx=ctx)
    if "delegate" in r.spec:
        raise _err(r, "spec.delegate", "not supported by Lictor")
    gws = [_str(r, g, f"spec.gateways[{i}]") for i, g in enumerate(_list(r, s.get("gateways"), "spec.gateways"))]
    mesh = not gws or "mesh" in gws
    host_list = [_str(r, h, f"spec.hosts[{i}]") for i, h in enumerate(_list(r, s.get("hosts"), "spec.hosts"))]
    if not host_list:
        raise _err(r, "spec.hosts", "at least one host is required")
    http = _list(r, s.get("http"), "spec.http")
    tcp = _list(r, s.get("tcp"), "spec.tcp")
    if not http and not tcp:
        raise _err(r, "spec", "a VirtualService needs http or tcp routes")
    if http and tcp:
        raise _err(r, "spec.tcp", "http and tcp routes in one VirtualService are not supported by Lictor")
    for i, g in enumerate(gws):
        if g == "mesh":
            continue
        gname = g.split("/", 1)[1] if "/" in g else g
        if gname not in gateways:
            raise _err(r, f"spec.gateways[{i}]", f"names gateway {g!r}, which no Gateway defines")
    if mesh:
        for i, h in enumerate(host_list):
            svc = hosts.service(r, h, f"spec.hosts[{i}]")
            if http:
                _http_routes(ctx, r, svc, http, hosts, subsets)
            else:
                _tcp_routes(ctx, r, svc, tcp, hosts, subsets)
    for g in gws:
        if g == "mesh":
            continue
        gw = gateways[g.split("/", 1)[1] if "/" in g else g]
        _gateway_routes(ctx, r, gw, host_list, http, tcp, hosts, subsets)


def _dest(ctx: _Ctx, r: Resource, d: Any, path: str, hosts: _Hosts, subsets: dict[str, set[str]]) -> dict[str, Any]:
    dd = _keys(r, d, path, ("host", "subset", "port"))
    out = {"Service": hosts.service(r, dd.get("host"), f"{path}.host")}
    if "subset" in dd:
        sub = _str(r, dd["subset"], f"{path}.subset")
        if sub not in subsets.get(out["Service"], set()):
            raise _err(r, f"{path}.subset", f"subset {sub!r} of {out['Service']!r} is not defined by any "
                                            "DestinationRule")
        out["ServiceSubset"] = sub
    if "port" in dd:
        ctx.warn(r, f"{path}.port", "ignored by Lictor: a service is routed to as a whole")
    return out


def _header_mods(r: Resource, d: Any, path: str) -> dict[str, Any]:
    h = _keys(r, d, path, ("set", "add", "remove"))
    out: dict[str, Any] = {}
    for src, dst in (("add", "Add"), ("set", "Set")):
        if src in h:
            m = h[src]
            if not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values()):
                raise _err(r, f"{path}.{src}", "expected a map of header names to strings")
            out[dst] = dict(m)
    if "remove" in h:
        out["Remove"] = [_str(r, x, f"{path}.remove[{i}]") for i, x in enumerate(_list(r, h["remove"], path))]
    return out


def _headers(r: Resource, d: Any, path: str) -> dict[str, Any]:
    h = _keys(r, d, path, ("request", "response"))
    out = {}
    if "request" in h:
        out["RequestHeaders"] = _header_mods(r, h["request"], f"{path}.request")
    if "response" in h:
        out["ResponseHeaders"] = _header_mods(r, h["response"], f"{path}.response")
    return out


def _string_match(r: Resource, v: Any, path: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    d = _keys(r, v, path, allowed, refused=tuple(k for k in ("exact", "prefix", "regex") if k not in allowed))
    if len(d) != 1:
        raise _err(r, path, f"exactly one of {', '.join(allowed)} is required")
    (k, val), = d.items()
    if not isinstance(val, str):
        raise _err(r, f"{path}.{k}", "expected a string")
    return k, val


def _matches(ctx: _Ctx, r: Resource, ms: list[Any], path: str) -> list[dict[str, Any]]:
    out = []
    for j, m in enumerate(ms):
        p = f"{path}[{j}]"
        d = _keys(r, m, p, ("uri", "headers", "queryParams", "method", "withoutHeaders", "name", "port"),
                  refused=("scheme", "authority", "ignoreUriCase", "sourceLabels", "gateways", "sourceNamespace",
                           "statPrefix"))
        hm: dict[str, Any] = {}
        if "uri" in d:
            k, v = _string_match(r, d["uri"], f"{p}.uri", ("exact", "prefix", "regex"))
            hm[{"exact": "PathExact", "prefix": "PathPrefix", "regex": "PathRegex"}[k]] = v
        hdrs = []
        for src, invert in (("headers", False), ("withoutHeaders", True)):
            hd = d.get(src) or {}
            if not isinstance(hd, dict):
                raise _err(r, f"{p}.{src}", "expected a map of header names to matches")
            for name in sorted(hd):
                k, v = _string_match(r, hd[name], f"{p}.{src}.{name}", ("exact", "prefix", "regex"))
                item: dict[str, Any] = {"Name": name, k.capitalize(): v}
                if invert:
                    item["Invert"] = True
                hdrs.append(item)
        if hdrs:
            hm["Header"] = hdrs
        qp = d.get("queryParams") or {}
        if not isinstance(qp, dict):
            raise _err(r, f"{p}.queryParams", "expected a map of parameter names to matches")
        if qp:
            hm["QueryParam"] = []
            for name in sorted(qp):
                k, v = _string_match(r, qp[name], f"{p}.queryParams.{name}", ("exact", "regex"))
                hm["QueryParam"].append({"Name": name, k.capitalize(): v})
        if "method" in d:
            _, v = _string_match(r, d["method"], f"{p}.method", ("exact",))
            hm["Methods"] = [v.upper()]
        if "port" in d:
            ctx.warn(r, f"{p}.port", "ignored by Lictor: a service's routes apply on its one port")
        out.append({"HTTP": hm} if hm else {})
    return out


def _route_dest_fields(ctx: _Ctx, r: Resource, h: dict[str, Any], p: str, hosts: _Hosts,
                       subsets: dict[str, set[str]]) -> dict[str, Any]:
    """The Destination fields an http route sets besides its target."""
    out: dict[str, Any] = {}
    if "rewrite" in h:
        rw = _keys(r, h["rewrite"], f"{p}.rewrite", ("uri",), refused=("authority", "uriRegexRewrite"))
        if "uri" in rw:
            out["PrefixRewrite"] = _str(r, rw["uri"], f"{p}.rewrite.uri")
    if "timeout" in h:
        out["RequestTimeout"] = _dur(r, h["timeout"], f"{p}.timeout")
    if "retries" in h:
        rt = _keys(r, h["retries"], f"{p}.retries", ("attempts", "perTryTimeout", "retryOn"),
                   refused=("retryRemoteLocalities", "backoff"))
        if "attempts" in rt:
            out["NumRetries"] = _int(r, rt["attempts"], f"{p}.retries.attempts")
        if "perTryTimeout" in rt:
            ctx.need(r, f"{p}.retries.perTryTimeout", "service-router", "Routes.Destination.PerTryTimeout")
            out["PerTryTimeout"] = _dur(r, rt["perTryTimeout"], f"{p}.retries.perTryTimeout")
        if "retryOn" in rt:
            on, codes = [], []
            for part in _str(r, rt["retryOn"], f"{p}.retries.retryOn").split(","):
                part = part.strip()
                if part.isdigit():
                    codes.append(int(part))
                elif part == "connect-failure":
                    out["RetryOnConnectFailure"] = True
                elif part in _RETRY_ON:
                    on.append(part)
                else:
                    raise _err(r, f"{p}.retries.retryOn", f"{part!r} is not a retry condition Lictor supports")
            if on:
                out["RetryOn"] = on
            if codes:
                out["RetryOnStatusCodes"] = codes
    if "fault" in h:
        f = _keys(r, h["fault"], f"{p}.fault", ("delay", "abort"))
        fi: dict[str, Any] = {}
        if "delay" in f:
            d = _keys(r, f["delay"], f"{p}.fault.delay", ("fixedDelay", "percentage", "percent"),
                      refused=("exponentialDelay",))
            pct = _percent(r, d["percentage"], f"{p}.fault.delay.percentage") if "percentage" in d \
                else float(_int(r, d.get("percent", 100), f"{p}.fault.delay.percent", 0, 100))
            fi["Delay"] = {"Duration": _dur(r, d.get("fixedDelay"), f"{p}.fault.delay.fixedDelay"), "Percent": pct}
        if "abort" in f:
            a = _keys(r, f["abort"], f"{p}.fault.abort", ("httpStatus", "grpcStatus", "percentage"),
                      refused=("http2Error",))
            pct = _percent(r, a["percentage"], f"{p}.fault.abort.percentage") if "percentage" in a else 100.0
            ab: dict[str, Any] = {"Percent": pct}
            if "httpStatus" in a:
                ab["HTTPStatus"] = _int(r, a["httpStatus"], f"{p}.fault.abort.httpStatus", 200, 599)
            if "grpcStatus" in a:
                codes = {"CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
                         "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
                         "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
                         "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}
                if a["grpcStatus"] not in codes:
                    raise _err(r, f"{p}.fault.abort.grpcStatus", f"unknown gRPC status {a['grpcStatus']!r}")
                ab["GRPCStatus"] = codes[a["grpcStatus"]]
            if ("HTTPStatus" in ab) == ("GRPCStatus" in ab):
                raise _err(r, f"{p}.fault.abort", "exactly one of httpStatus and grpcStatus is required")
            fi["Abort"] = ab
        if fi:
            out["FaultInjection"] = fi
    if "mirror" in h:
        m = _dest(ctx, r, h["mirror"], f"{p}.mirror", hosts, subsets)
        pct = _percent(r, h["mirrorPercentage"], f"{p}.mirrorPercentage") if "mirrorPercentage" in h else 100.0
        field_name = "RequestMirrorPolicies" if ctx.supports("service-router", "Routes.Destination."
                                                                               "RequestMirrorPolicies") else "Mirrors"
        ctx.need(r, f"{p}.mirror", "service-router", f"Routes.Destination.{field_name}")
        out[field_name] = [{**m, "Percent": pct}]
    elif "mirrorPercentage" in h:
        raise _err(r, f"{p}.mirrorPercentage", "needs mirror")
    if "headers" in h:
        out.update(_headers(r, h["headers"], f"{p}.headers"))
    return out


_HTTP_ROUTE_OK = ("name", "match", "route", "rewrite", "timeout", "retries", "fault", "mirror", "mirrorPercentage",
                  "headers")
_HTTP_ROUTE_REFUSED = ("redirect", "directResponse", "delegate", "corsPolicy", "mirrors", "mirrorPercent",
                       "appendHeaders", "removeResponseHeaders", "appendResponseHeaders", "appendRequestHeaders",
                       "removeRequestHeaders")


def _http_routes(ctx: _Ctx, r: Resource, svc: str, http: list[Any], hosts: _Hosts,
                 subsets: dict[str, set[str]], *, router_name: str | None = None) -> None:
    """Routes of one VirtualService for one service (or a gateway's virtual service)."""
    name = router_name or svc
    ctx.set("service-defaults", name, "Protocol", "http", r, "spec.http")
    routes: list[dict[str, Any]] = []
    split: list[dict[str, Any]] | None = None
    for i, h in enumerate(http):
        p = f"spec.http[{i}]"
        d = _keys(r, h, p, _HTTP_ROUTE_OK, refused=_HTTP_ROUTE_REFUSED)
        dests = _list(r, d.get("route"), f"{p}.route")
        if not dests:
            raise _err(r, f"{p}.route", "at least one destination is required")
        matches = _matches(ctx, r, _list(r, d.get("match"), f"{p}.match"), f"{p}.match")
        extra = _route_dest_fields(ctx, r, d, p, hosts, subsets)
        targets = []
        total = 0
        for j, rd in enumerate(dests):
            q = f"{p}.route[{j}]"
            x = _keys(r, rd, q, ("destination", "weight", "headers"))
            t = _dest(ctx, r, x.get("destination"), f"{q}.destination", hosts, subsets)
            w = _int(r, x.get("weight", 100 if len(dests) == 1 else 0), f"{q}.weight", 0, 100)
            total += w
            if "headers" in x:
                t.update(_headers(r, x["headers"], f"{q}.headers"))
            targets.append((w, t))
        if total != 100:
            raise _err(r, f"{p}.route", f"weights sum to {total}, not 100")
        for j, (_, t) in enumerate(targets):
            if t["Service"] != name:
                ctx.set("service-defaults", t["Service"], "Protocol", "http", r, f"{p}.route[{j}].destination")
        weighted = [(w, t) for w, t in targets if w > 0]
        if len(weighted) > 1:
            if matches or i != len(http) - 1 or router_name is not None:
                raise _err(r, f"{p}.route", "weighted destinations are supported by Lictor only on the last route "
                                            "of a mesh VirtualService, without match")
            if extra:
                raise _err(r, f"{p}.{sorted(extra)[0]}", "not supported by Lictor together with weighted "
                                                          "destinations")
            split = [{"Weight": float(w), **t} for w, t in weighted]
            continue
        (_, t), = weighted
        t_fields = {k: v for k, v in t.items() if k not in ("RequestHeaders", "ResponseHeaders")}
        if t.keys() - t_fields.keys():
            for hk in ("RequestHeaders", "ResponseHeaders"):
                if hk in t and hk in extra:
                    raise _err(r, f"{p}.route[0].headers", "set headers on the route or its destination, not both")
            extra = {**extra, **{k: v for k, v in t.items() if k in ("RequestHeaders", "ResponseHeaders")}}
        dest = {**t_fields, **extra}
        if not matches and dest == {"Service": name} and i == len(http) - 1:
            continue  # the default route the chain appends anyway
        for m in matches or [{}]:
            routes.append({"Match": m, "Destination": dest} if m else {"Destination": dest})
    if routes:
        ctx.set("service-router", name, "Routes", routes, r, "spec.http")
    if split is not None:
        ctx.set("service-splitter", name, "Splits", split, r, f"spec.http[{len(http) - 1}].route")


def _tcp_routes(ctx: _Ctx, r: Resource, svc: str, tcp: list[Any], hosts: _Hosts, subsets: dict[str, set[str]]) -> None:
    if len(tcp) != 1:
        raise _err(r, "spec.tcp", "Lictor supports one tcp route per VirtualService")
    d = _keys(r, tcp[0], "spec.tcp[0]", ("route", "match"))
    if d.get("match"):
        raise _err(r, "spec.tcp[0].match", "not supported by Lictor")
    dests = _list(r, d.get("route"), "spec.tcp[0].route")
    if len(dests) != 1:
        raise _err(r, "spec.tcp[0].route", "Lictor supports one destination per tcp route (no weights)")
    x = _keys(r, dests[0], "spec.tcp[0].route[0]", ("destination", "weight"))
    t = _dest(ctx, r, x.get("destination"), "spec.tcp[0].route[0].destination", hosts, subsets)
    if t == {"Service": svc}:
        return
    if t.get("Service") == svc:
        ctx.set("service-resolver", svc, "DefaultSubset", t["ServiceSubset"], r, "spec.tcp[0].route[0].destination")
    else:
        ctx.set("service-resolver", svc, "Redirect", t, r, "spec.tcp[0].route[0].destination")


def _gateway_routes(ctx: _Ctx, r: Resource, gw: _Gw, host_list: list[str], http: list[Any], tcp: list[Any],
                    hosts: _Hosts, subsets: dict[str, set[str]]) -> None:
    e = ctx.entries[("ingress-gateway", gw.entry_name)]
    ctx.origins[("ingress-gateway", gw.entry_name)].add(r.ref)
    want = "tcp" if tcp else None
    listeners = [lst for lst in e["Listeners"] if (lst["Protocol"] == "tcp") == (want == "tcp")]
    if not listeners:
        raise _err(r, "spec.gateways", f"gateway {gw.entry_name!r} has no {'tcp' if tcp else 'http'} server")
    if tcp:
        if len(tcp) != 1:
            raise _err(r, "spec.tcp", "Lictor supports one tcp route per gateway VirtualService")
        d = _keys(r, tcp[0], "spec.tcp[0]", ("route", "match"))
        dests = _list(r, d.get("route"), "spec.tcp[0].route")
        if d.get("match") or len(dests) != 1:
            raise _err(r, "spec.tcp[0]", "Lictor supports one destination and no match on a gateway tcp route")
        x = _keys(r, dests[0], "spec.tcp[0].route[0]", ("destination", "weight"))
        t = _dest(ctx, r, x.get("destination"), "spec.tcp[0].route[0].destination", hosts, subsets)
        for lst in listeners:
            lst["Services"].append({"Name": t["Service"]})
        return
    virtual = f"{gw.entry_name}-{r.name}"
    _http_routes(ctx, r, virtual, http, hosts, subsets, router_name=virtual)
    hs = sorted(set(host_list))
    for lst in listeners:
        lst["Services"].append({"Name": virtual, "Hosts": hs})


# --------------------------------------------------------------------------------------------
# PeerAuthentication -> proxy-defaults / service-defaults MutualTLSMode


def _peer_authentication(ctx: _Ctx, r: Resource) -> None:
    s = _keys(r, r.spec, "spec", ("selector", "mtls"), refused=("portLevelMtls",))
    svc = _labels_service(r, s.get("selector"), "spec.selector")
    m = _keys(r, s.get("mtls"), "spec.mtls", ("mode",))
    mode = m.get("mode", "UNSET")
    modes = {"STRICT": "strict", "PERMISSIVE": "permissive", "UNSET": None}
    if mode == "DISABLE":
        raise _err(r, "spec.mtls.mode", "DISABLE is not supported by Lictor: sidecars always accept mutual TLS")
    if mode not in modes:
        raise _err(r, "spec.mtls.mode", f"unknown mode {mode!r}")
    if modes[mode] is None:
        return
    if svc is None:
        if r.namespace == "default":
            ctx.warn(r, "metadata.namespace", "mapped approximately: Lictor has one namespace, so a namespace-wide "
                                              "policy applies mesh-wide")
        ctx.set("proxy-defaults", GLOBAL, "MutualTLSMode", modes[mode], r, "spec.mtls.mode")
    else:
        ctx.set("service-defaults", svc, "MutualTLSMode", modes[mode], r, "spec.mtls.mode")
    if mode == "PERMISSIVE":
        ctx.set("mesh", "mesh", "AllowEnablingPermissiveMutualTLS", True, r, "spec.mtls.mode")


# --------------------------------------------------------------------------------------------
# RequestAuthentication -> jwt-provider entries


def _request_authentication(ctx: _Ctx, r: Resource, providers: dict[str, list[tuple[str, str]]]) -> None:
    s = _keys(r, r.spec, "spec", ("selector", "jwtRules"), refused=("targetRef", "targetRefs"))
    svc = _labels_service(r, s.get("selector"), "spec.selector") or "*"
    rules = _list(r, s.get("jwtRules"), "spec.jwtRules")
    for i, rule in enumerate(rules):
        p = f"spec.jwtRules[{i}]"
        d = _keys(r, rule, p, ("issuer", "audiences", "jwksUri", "jwks", "fromHeaders", "fromParams", "fromCookies",
                               "forwardOriginalToken", "outputPayloadToHeader", "timeout"),
                  refused=("outputClaimToHeaders",))
        name = r.name if len(rules) == 1 else f"{r.name}-{i}"
        e = ctx.entry("jwt-provider", name, r)
        e["Issuer"] = _str(r, d.get("issuer"), f"{p}.issuer")
        if d.get("audiences"):
            e["Audiences"] = [_str(r, a, f"{p}.audiences[{j}]") for j, a in enumerate(_list(r, d["audiences"],
                                                                                           f"{p}.audiences"))]
        if ("jwksUri" in d) == ("jwks" in d):
            raise _err(r, p, "exactly one of jwksUri and jwks is required by Lictor")
        if "jwks" in d:
            import base64
            e["JSONWebKeySet"] = {"Local": {"JWKS": base64.b64encode(_str(r, d["jwks"], f"{p}.jwks").encode())
                                            .decode()}}
        else:
            remote: dict[str, Any] = {"URI": _str(r, d["jwksUri"], f"{p}.jwksUri")}
            if "timeout" in d:
                t = _dur(r, d["timeout"], f"{p}.timeout")
                from lictor.common.duration import parse_duration
                remote["RequestTimeoutMs"] = int(parse_duration(t) * 1000)
            e["JSONWebKeySet"] = {"Remote": remote}
        forward = bool(d.get("forwardOriginalToken", False))
        locs = []
        for j, fh in enumerate(_list(r, d.get("fromHeaders"), f"{p}.fromHeaders")):
            h = _keys(r, fh, f"{p}.fromHeaders[{j}]", ("name", "prefix"))
            loc: dict[str, Any] = {"Name": _str(r, h.get("name"), f"{p}.fromHeaders[{j}].name")}
            if "prefix" in h:
                loc["ValuePrefix"] = str(h["prefix"])
            if forward:
                loc["Forward"] = True
            locs.append({"Header": loc})
        for j, q in enumerate(_list(r, d.get("fromParams"), f"{p}.fromParams")):
            locs.append({"QueryParam": {"Name": _str(r, q, f"{p}.fromParams[{j}]")}})
        for j, c in enumerate(_list(r, d.get("fromCookies"), f"{p}.fromCookies")):
            locs.append({"Cookie": {"Name": _str(r, c, f"{p}.fromCookies[{j}]")}})
        if not locs:  # Istio's default: Authorization: Bearer <token>, and the access_token parameter
            locs = [{"Header": {"Name": "Authorization", "ValuePrefix": "Bearer ",
                                **({"Forward": True} if forward else {})}},
                    {"QueryParam": {"Name": "access_token"}}]
        elif forward and not any("Header" in loc for loc in locs):
            ctx.warn(r, f"{p}.forwardOriginalToken", "mapped approximately: only tokens from headers are forwarded")
        e["Locations"] = locs
        if "outputPayloadToHeader" in d:
            e["Forwarding"] = {"HeaderName": _str(r, d["outputPayloadToHeader"], f"{p}.outputPayloadToHeader")}
        providers.setdefault(svc, []).append((name, e["Issuer"]))


# --------------------------------------------------------------------------------------------
# AuthorizationPolicy -> service-intentions, in Istio's order: a matching DENY denies; if the
# workload has ALLOW policies a request must match one of them; otherwise it is allowed.


@dataclass
class _Rule:
    sources: list[str] | None          # service names, None = any source
    perms: list[dict[str, Any]] | None  # L7 matches (HTTP/JWT), None = any request
    where: str


_PRINCIPAL = re.compile(r"^(?:[^/]+/)?ns/([^/]+)/sa/([^/]+)$")


def _principal(r: Resource, v: Any, path: str) -> str:
    p = _str(r, v, path)
    if p == "*":
        return "*"
    m = _PRINCIPAL.match(p)
    if not m or m.group(1) != "default":
        raise _err(r, path, f"{p!r}: Lictor understands principals <trust-domain>/ns/default/sa/<service> and *")
    return m.group(2)


def _ap_rule(ctx: _Ctx, r: Resource, rule: Any, p: str, svc: str,
             providers: dict[str, list[tuple[str, str]]]) -> _Rule:
    d = _keys(r, rule, p, ("from", "to", "when"))
    sources: list[str] | None = None
    jwt: dict[str, Any] | None = None
    for i, f in enumerate(_list(r, d.get("from"), f"{p}.from")):
        if i > 0:
            raise _err(r, f"{p}.from[{i}]", "Lictor supports one from clause per rule")
        src = _keys(r, _keys(r, f, f"{p}.from[{i}]", ("source",)).get("source"), f"{p}.from[{i}].source",
                    ("principals", "namespaces", "requestPrincipals"),
                    refused=("notPrincipals", "notNamespaces", "notRequestPrincipals", "ipBlocks", "notIpBlocks",
                             "remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts"))
        sp = f"{p}.from[{i}].source"
        if "principals" in src:
            sources = [_principal(r, x, f"{sp}.principals[{j}]")
                       for j, x in enumerate(_list(r, src["principals"], f"{sp}.principals"))]
        if "namespaces" in src:
            for j, ns in enumerate(_list(r, src["namespaces"], f"{sp}.namespaces")):
                if ns not in ("default", "*"):
                    raise _err(r, f"{sp}.namespaces[{j}]", f"{ns!r}: Lictor has only the default namespace")
        if "requestPrincipals" in src:
            rps = _list(r, src["requestPrincipals"], f"{sp}.requestPrincipals")
            provs = providers.get(svc, []) + (providers.get("*", []) if svc != "*" else [])
            if not provs:
                raise _err(r, f"{sp}.requestPrincipals", f"no RequestAuthentication applies to {svc!r}")
            chosen = []
            for j, rp in enumerate(rps):
                rp = _str(r, rp, f"{sp}.requestPrincipals[{j}]")
                if rp == "*":
                    chosen.extend({"Name": n} for n, _ in provs)
                    continue
                iss, _, sub = rp.rpartition("/")
                match = [n for n, i2 in provs if i2 == iss]
                if not match:
                    raise _err(r, f"{sp}.requestPrincipals[{j}]", f"no RequestAuthentication rule has issuer {iss!r}")
                for n in match:
                    chosen.append({"Name": n, **({"VerifyClaims": [{"Path": ["sub"], "Value": sub}]}
                                                 if sub != "*" else {})})
            if len(chosen) != 1:
                raise _err(r, f"{sp}.requestPrincipals", "Lictor supports request principals from exactly one "
                                                         "JWT provider per rule")
            jwt = {"Providers": chosen}
    http: list[dict[str, Any]] = []
    for i, t in enumerate(_list(r, d.get("to"), f"{p}.to")):
        op = _keys(r, _keys(r, t, f"{p}.to[{i}]", ("operation",)).get("operation"), f"{p}.to[{i}].operation",
                   ("paths", "methods"), refused=("hosts", "notHosts", "ports", "notPorts", "notPaths",
                                                  "notMethods"))
        opp = f"{p}.to[{i}].operation"
        methods = [_str(r, x, f"{opp}.methods[{j}]").upper()
                   for j, x in enumerate(_list(r, op.get("methods"), f"{opp}.methods"))]
        paths = [_str(r, x, f"{opp}.paths[{j}]") for j, x in enumerate(_list(r, op.get("paths"), f"{opp}.paths"))]
        for j, path in enumerate(paths or [None]):
            h: dict[str, Any] = {}
            if path is not None:
                if path == "*":
                    h["PathPrefix"] = "/"
                elif path.endswith("*") and "*" not in path[:-1]:
                    h["PathPrefix"] = path[:-1]
                elif "*" in path:
                    raise _err(r, f"{opp}.paths[{j}]", "Lictor supports exact paths and a trailing * only")
                else:
                    h["PathExact"] = path
            if methods:
                h["Methods"] = methods
            http.append(h)
    headers: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    for i, w in enumerate(_list(r, d.get("when"), f"{p}.when")):
        c = _keys(r, w, f"{p}.when[{i}]", ("key", "values"), refused=("notValues",))
        key = _str(r, c.get("key"), f"{p}.when[{i}].key")
        vals = [_str(r, v, f"{p}.when[{i}].values[{j}]") for j, v in enumerate(_list(r, c.get("values"),
                                                                                   f"{p}.when[{i}].values"))]
        if len(vals) != 1:
            raise _err(r, f"{p}.when[{i}].values", "Lictor supports exactly one value per condition")
        m = re.match(r"^request\.auth\.claims\[([^\]]+)\]$", key) or re.match(r"^request\.auth\.claims\.(\w+)$", key)
        if m:
            claims.append({"Path": m.group(1).split("]["), "Value": vals[0]})
            continue
        m = re.match(r"^request\.headers\[([^\]]+)\]$", key)
        if m:
            headers.append({"Name": m.group(1), "Exact": vals[0]})
            continue
        raise _err(r, f"{p}.when[{i}].key", f"condition {key!r} is not supported by Lictor")
    if claims:
        if jwt is None:
            provs = providers.get(svc, []) + (providers.get("*", []) if svc != "*" else [])
            if len(provs) != 1:
                raise _err(r, f"{p}.when", "request.auth.claims needs exactly one RequestAuthentication rule for "
                                           f"{svc!r}")
            jwt = {"Providers": [{"Name": provs[0][0]}]}
        jwt = {"Providers": [{**pr, "VerifyClaims": pr.get("VerifyClaims", []) + claims} for pr in jwt["Providers"]]}
    perms: list[dict[str, Any]] | None = None
    if http or headers or jwt:
        perms = []
        for h in http or [{}]:
            hh = dict(h)
            if headers:
                hh["Header"] = headers
            perm: dict[str, Any] = {}
            if hh:
                perm["HTTP"] = hh
            if jwt:
                perm["JWT"] = jwt
            perms.append(perm)
    return _Rule(sources, perms, p)


def _authorization(ctx: _Ctx, policies: list[Resource], providers: dict[str, list[tuple[str, str]]]) -> None:
    # destination ("*" = every service) -> [(action, rules or None for "matches nothing", resource)]
    per: dict[str, list[tuple[str, list[_Rule], Resource]]] = {}
    for r in policies:
        s = _keys(r, r.spec, "spec", ("selector", "action", "rules"), refused=("provider", "targetRef", "targetRefs"))
        svc = _labels_service(r, s.get("selector"), "spec.selector") or "*"
        action = s.get("action", "ALLOW")
        if action == "CUSTOM":
            raise _err(r, "spec.action", "CUSTOM is not supported by Lictor")
        if action not in ("ALLOW", "DENY", "AUDIT"):
            raise _err(r, "spec.action", f"unknown action {action!r}")
        rules = [_ap_rule(ctx, r, x, f"spec.rules[{i}]", svc, providers)
                 for i, x in enumerate(_list(r, s.get("rules"), "spec.rules"))]
        if action == "AUDIT":
            ctx.warn(r, "spec.action", "AUDIT does not change decisions; Lictor records it nowhere yet")
            continue
        per.setdefault(svc, []).append((action, rules, r))
    for dest in sorted(per):
        pols = per[dest] + ([p for p in per.get("*", [])] if dest != "*" else [])
        rules_of = [(a, rule, r) for a, rules, r in pols for rule in rules]
        has_allow = any(a == "ALLOW" for a, _, _ in pols)
        named = sorted({s for _, rule, _ in rules_of for s in (rule.sources or []) if s != "*"})
        l7 = any(rule.perms is not None for _, rule, _ in rules_of)
        sources = []
        for src in [*named, "*"]:
            applies = [(a, rule) for a, rule, _ in rules_of
                       if rule.sources is None or "*" in rule.sources or src in rule.sources]
            item: dict[str, Any] = {"Name": src}
            if not l7:
                if any(a == "DENY" for a, _ in applies):
                    item["Action"] = "deny"
                elif any(a == "ALLOW" for a, _ in applies) or not has_allow:
                    item["Action"] = "allow"
                else:
                    item["Action"] = "deny"
            else:
                perms: list[dict[str, Any]] = []
                for want in ("DENY", "ALLOW"):
                    for a, rule in applies:
                        if a != want:
                            continue
                        for pm in rule.perms or [{"HTTP": {"PathPrefix": "/"}}]:
                            perms.append({"Action": want.lower(), **pm})
                perms.append({"Action": "deny" if has_allow else "allow", "HTTP": {"PathPrefix": "/"}})
                item["Permissions"] = perms
            sources.append(item)
        for _, _, r in pols:
            ctx.entry("service-intentions", dest, r)
        if l7 and dest != "*":
            first = pols[0][2]
            ctx.set("service-defaults", dest, "Protocol", "http", first, "spec.rules")
        ctx.entries[("service-intentions", dest)]["Sources"] = sources


# --------------------------------------------------------------------------------------------
# Telemetry (tracing) -> proxy-defaults / service-defaults Tracing


COLLECTOR_ANNOTATION = "lictor.io/tracing-collector-address"


def _telemetry(ctx: _Ctx, r: Resource) -> None:
    s = _keys(r, r.spec, "spec", ("selector", "tracing"), refused=("metrics", "accessLogging", "targetRef",
                                                                  "targetRefs"))
    svc = _labels_service(r, s.get("selector"), "spec.selector")
    tracing = _list(r, s.get("tracing"), "spec.tracing")
    if not tracing:
        return
    if len(tracing) != 1:
        raise _err(r, "spec.tracing", "Lictor supports one tracing block")
    p = "spec.tracing[0]"
    t = _keys(r, tracing[0], p, ("providers", "randomSamplingPercentage", "customTags"),
              refused=("match", "disableSpanReporting", "useRequestIdForTraceSampling"))
    provs = _list(r, t.get("providers"), f"{p}.providers")
    if len(provs) != 1:
        raise _err(r, f"{p}.providers", "exactly one provider is required by Lictor")
    name = _str(r, _keys(r, provs[0], f"{p}.providers[0]", ("name",)).get("name"), f"{p}.providers[0].name")
    kind = "zipkin" if "zipkin" in name else ("opentelemetry" if "otel" in name or "opentelemetry" in name else "")
    if not kind:
        raise _err(r, f"{p}.providers[0].name", f"{name!r}: Lictor knows zipkin and opentelemetry (otel) providers")
    ctx.need(r, "spec.tracing", "proxy-defaults", "Tracing")
    ctx.warn(r, f"{p}.providers[0].name", "mapped approximately: the provider name is the collector's service "
                                          f"name (or the {COLLECTOR_ANNOTATION} annotation its address); Istio reads "
                                          "it from MeshConfig extensionProviders")
    address = ((r.body.get("metadata") or {}).get("annotations") or {}).get(COLLECTOR_ANNOTATION)
    out: dict[str, Any] = {"Provider": kind,
                           "Collector": {"Address": address} if address else {"Service": name}}
    if "randomSamplingPercentage" in t:
        v = t["randomSamplingPercentage"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 100:
            raise _err(r, f"{p}.randomSamplingPercentage", f"expected a percentage in [0, 100], got {v!r}")
        out["SamplingPercent"] = float(v)
    tags = t.get("customTags") or {}
    if not isinstance(tags, dict):
        raise _err(r, f"{p}.customTags", "expected a map of tag names")
    if tags:
        out["CustomTags"] = []
        for tag in sorted(tags):
            tp = f"{p}.customTags.{tag}"
            c = _keys(r, tags[tag], tp, ("literal", "header"), refused=("environment",))
            if "literal" in c:
                out["CustomTags"].append({"Tag": tag, "Literal": _str(r, _keys(r, c["literal"], f"{tp}.literal",
                                                                               ("value",)).get("value"),
                                                                      f"{tp}.literal.value")})
            elif "header" in c:
                out["CustomTags"].append({"Tag": tag, "Header": _str(r, _keys(r, c["header"], f"{tp}.header",
                                                                              ("name", "defaultValue")).get("name"),
                                                                     f"{tp}.header.name")})
            else:
                raise _err(r, tp, "literal or header is required")
    if svc is None:
        if r.namespace == "default":
            ctx.warn(r, "metadata.namespace", "mapped approximately: Lictor has one namespace, so a namespace-wide "
                                              "Telemetry applies mesh-wide")
        ctx.set("proxy-defaults", GLOBAL, "Tracing", out, r, "spec.tracing")
    else:
        ctx.set("service-defaults", svc, "Tracing", out, r, "spec.tracing")
