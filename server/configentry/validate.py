"""Validation of configuration entries: one pure function, used before proposing and in the FSM.

::

    validate_entry(body, view)          a write: fields of the entry, then the graph
    validate_delete(kind, name, view)   a delete: the graph without the entry

    fields  (check_fields)   the entry alone: enums, exclusive fields, weights, regexes, subsets...
    graph   (graph_problems) the entry among the others: chains compile (redirect loops, subsets
                             that exist, routers/splitters only for http, one protocol per chain),
                             ingress listener protocols, intention JWT providers that exist, L7
                             permissions only for http destinations, permissive mTLS allowed by mesh

The endpoint calls it against the store before proposing (so a refused write never reaches the
log) and the FSM handler calls it again against its own transaction's state (another write may
have landed in between); both raise :class:`ValidationError` whose message names the field.

A write is refused for the graph problems it *introduces*: problems computed on the store after
the write, minus those that already existed before it. So one broken chain left by an older
version never blocks unrelated writes, while any write that breaks a chain is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from lictor.common.errors import FilterError, ValidationError
from lictor.common.filter import compile_filter
from lictor.common.filter_schemas import HEALTH_SERVICE_ENTRY_SCHEMA
from lictor.common.regex import RegexError, compile_pattern
from lictor.server.configentry.chain import HTTP_PROTOCOLS, ChainError, compile_chain, service_protocol
from lictor.server.configentry.entries import (DEFAULT_NS, INGRESS_GATEWAY, JWT_PROVIDER, MESH,
                                               PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_INTENTIONS,
                                               SERVICE_RESOLVER, SERVICE_ROUTER, SERVICE_SPLITTER,
                                               TERMINATING_GATEWAY, EntryView, OverlayView, entry_key, key_for)

__all__ = ["check_fields", "graph_problems", "validate_delete", "validate_entry"]

PROTOCOLS = ("tcp", "http", "http2", "grpc")
PROXY_MODES = ("", "direct", "transparent")
MTLS_MODES = ("", "strict", "permissive")
MESH_GATEWAY_MODES = ("", "none", "local", "remote")
TLS_VERSIONS = ("TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
LB_POLICIES = ("", "random", "round_robin", "least_request", "ring_hash", "maglev")
RETRY_ON = ("5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
            "refused-stream", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
SUBSET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
WEIGHT_TOLERANCE = 0.01


def _err(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}" if path else message)


def _one_of(path: str, d: dict[str, Any], names: Iterable[str], *, required: bool, what: str = "") -> str | None:
    names = list(names)
    given = [n for n in names if d.get(n) not in (None, "", False)]
    if len(given) > 1:
        raise _err(path, f"{', '.join(given)} cannot be combined: set only one of {', '.join(names)}")
    if required and not given:
        raise _err(path, f"{what or 'one of ' + ', '.join(names)} must be set")
    return given[0] if given else None


def _regex(path: str, pattern: str) -> None:
    # Envoy and our own L7 intention checks use RE2: the same engine decides what is valid.
    try:
        compile_pattern(pattern)
    except RegexError as exc:
        raise _err(path, f"invalid regular expression {pattern!r}: {exc}") from None


def _enum(path: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed if a)
        raise _err(path, f"invalid value {value!r}: must be one of {shown}")


def _percent(path: str, value: Any, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if not (0 <= value <= 100) or (value == 0 and not zero_ok):
        raise _err(path, f"must be {'between 0' if zero_ok else 'greater than 0'} and at most 100, got {value:g}")


# --------------------------------------------------------------------------------------------
# Fields of one entry


def check_fields(body: dict[str, Any]) -> None:
    kind, name = body["Kind"], body.get("Name") or ""
    if not name:
        raise _err("Name", "config entry name is required")
    if "/" in name:
        raise _err("Name", f"invalid name {name!r}: must not contain '/'")
    ns = body.get("Namespace", DEFAULT_NS)
    if ns == "*" and not (kind == SERVICE_INTENTIONS and name == "*"):
        raise _err("Namespace", "the wildcard namespace is only allowed for a service-intentions entry named '*'")
    _CHECKS[kind](body)


def _check_mesh_gateway(path: str, mg: dict[str, Any] | None) -> None:
    if mg:
        _enum(f"{path}.Mode", mg.get("Mode", ""), MESH_GATEWAY_MODES)


def _check_proxy_common(body: dict[str, Any]) -> None:
    _enum("Mode", body.get("Mode", ""), PROXY_MODES)
    _enum("MutualTLSMode", body.get("MutualTLSMode", ""), MTLS_MODES)
    _check_mesh_gateway("MeshGateway", body.get("MeshGateway"))
    for i, p in enumerate((body.get("Expose") or {}).get("Paths") or []):
        if p.get("Path") and not p["Path"].startswith("/"):
            raise _err(f"Expose.Paths[{i}].Path", "must begin with '/'")
        if p.get("Protocol"):
            _enum(f"Expose.Paths[{i}].Protocol", p["Protocol"], ("http", "http2"))


def _check_proxy_defaults(body: dict[str, Any]) -> None:
    if body["Name"] != "global":
        raise _err("Name", f"invalid name {body['Name']!r}: proxy-defaults must be named \"global\"")
    cfg = body.get("Config")
    if cfg is not None and not isinstance(cfg, dict):
        raise _err("Config", "expected an object")
    if isinstance(cfg, dict) and "protocol" in cfg:
        p = cfg["protocol"]
        if not isinstance(p, str) or p.lower() not in PROTOCOLS:
            raise _err("Config.protocol", f"invalid protocol {p!r}: must be one of {', '.join(PROTOCOLS)}")
    _check_proxy_common(body)


def _check_fault(path: str, f: dict[str, Any] | None) -> None:
    if not f:
        return
    if not f.get("Delay") and not f.get("Abort"):
        raise _err(path, "set Delay, Abort or both")
    d = f.get("Delay")
    if d:
        if d.get("Duration", "0s") == "0s":
            raise _err(f"{path}.Delay.Duration", "must be greater than 0")
        _percent(f"{path}.Delay.Percent", d.get("Percent"))
        if "Percent" not in d:
            raise _err(f"{path}.Delay.Percent", "is required (0 < Percent <= 100)")
    a = f.get("Abort")
    if a:
        which = _one_of(f"{path}.Abort", a, ("HTTPStatus", "GRPCStatus"), required=True)
        if which == "HTTPStatus" and not 200 <= a["HTTPStatus"] <= 599:
            raise _err(f"{path}.Abort.HTTPStatus", f"must be an HTTP status between 200 and 599, got {a['HTTPStatus']}")
        if which == "GRPCStatus" and not 1 <= a["GRPCStatus"] <= 16:
            raise _err(f"{path}.Abort.GRPCStatus", f"must be a gRPC status code between 1 and 16, got {a['GRPCStatus']}")
        if "Percent" not in a:
            raise _err(f"{path}.Abort.Percent", "is required (0 < Percent <= 100)")
        _percent(f"{path}.Abort.Percent", a.get("Percent"))


def _check_rate(path: str, r: dict[str, Any] | None) -> None:
    if r is None:
        return
    if not r.get("RequestsPerSecond", 0) > 0:
        raise _err(f"{path}.RequestsPerSecond", "must be greater than 0")


def _check_service_defaults(body: dict[str, Any]) -> None:
    if body.get("Protocol"):
        _enum("Protocol", body["Protocol"].lower(), PROTOCOLS)
        body["Protocol"] = body["Protocol"].lower()
    _check_proxy_common(body)
    _enum("BalanceInboundConnections", body.get("BalanceInboundConnections", ""), ("", "exact_balance"))
    uc = body.get("UpstreamConfig") or {}
    for i, o in enumerate(uc.get("Overrides") or []):
        if not o.get("Name"):
            raise _err(f"UpstreamConfig.Overrides[{i}].Name", "upstream name is required")
        _check_upstream_config(f"UpstreamConfig.Overrides[{i}]", o)
    if uc.get("Defaults"):
        _check_upstream_config("UpstreamConfig.Defaults", uc["Defaults"])
    rl = (body.get("RateLimits") or {}).get("InstanceLevel")
    if rl:
        if rl.get("RequestsPerSecond") is not None and rl["RequestsPerSecond"] <= 0:
            raise _err("RateLimits.InstanceLevel.RequestsPerSecond", "must be greater than 0")
        for i, r in enumerate(rl.get("Routes") or []):
            p = f"RateLimits.InstanceLevel.Routes[{i}]"
            which = _one_of(p, r, ("PathExact", "PathPrefix", "PathRegex"), required=True)
            if which == "PathRegex":
                _regex(f"{p}.PathRegex", r["PathRegex"])
            elif which and not r[which].startswith("/"):
                raise _err(f"{p}.{which}", "must begin with '/'")
            _check_rate(p, r)
    _check_fault("FaultInjection", body.get("FaultInjection"))
    dest = body.get("Destination")
    if dest is not None and not dest.get("Addresses"):
        raise _err("Destination.Addresses", "at least one address is required")


def _check_upstream_config(path: str, u: dict[str, Any]) -> None:
    if u.get("Protocol"):
        _enum(f"{path}.Protocol", u["Protocol"].lower(), PROTOCOLS)
    _check_mesh_gateway(f"{path}.MeshGateway", u.get("MeshGateway"))
    _enum(f"{path}.BalanceOutboundConnections", u.get("BalanceOutboundConnections", ""), ("", "exact_balance"))


def _check_http_match(path: str, http: dict[str, Any], *, query: bool) -> None:
    which = _one_of(path, http, ("PathExact", "PathPrefix", "PathRegex"), required=False)
    if which == "PathRegex":
        _regex(f"{path}.PathRegex", http["PathRegex"])
    elif which and not http[which].startswith("/"):
        raise _err(f"{path}.{which}", f"must begin with '/', got {http[which]!r}")
    for i, h in enumerate(http.get("Header") or []):
        hp = f"{path}.Header[{i}]"
        if not h.get("Name"):
            raise _err(f"{hp}.Name", "header name is required")
        which = _one_of(hp, h, ("Present", "Exact", "Prefix", "Suffix", "Contains", "Regex"), required=True)
        if which == "Regex":
            _regex(f"{hp}.Regex", h["Regex"])
    if query:
        for i, q in enumerate(http.get("QueryParam") or []):
            qp = f"{path}.QueryParam[{i}]"
            if not q.get("Name"):
                raise _err(f"{qp}.Name", "query parameter name is required")
            which = _one_of(qp, q, ("Present", "Exact", "Regex"), required=True)
            if which == "Regex":
                _regex(f"{qp}.Regex", q["Regex"])
    methods = http.get("Methods") or []
    seen: set[str] = set()
    for i, m in enumerate(methods):
        up = m.upper()
        _enum(f"{path}.Methods[{i}]", up, HTTP_METHODS)
        if up in seen:
            raise _err(f"{path}.Methods[{i}]", f"method {up!r} is listed more than once")
        seen.add(up)
    if methods:
        http["Methods"] = [m.upper() for m in methods]


def _check_header_mods(path: str, mods: dict[str, Any] | None) -> None:
    for k in ("Add", "Set"):
        for h in (mods or {}).get(k) or {}:
            if not h:
                raise _err(f"{path}.{k}", "header names must not be empty")


def _check_mirrors(path: str, mirrors: list[dict[str, Any]]) -> None:
    for i, m in enumerate(mirrors):
        if "Percent" in m:
            _percent(f"{path}[{i}].Percent", m["Percent"])


def _check_router(body: dict[str, Any]) -> None:
    for i, route in enumerate(body.get("Routes") or []):
        p = f"Routes[{i}]"
        http = (route.get("Match") or {}).get("HTTP") or {}
        _check_http_match(f"{p}.Match.HTTP", http, query=True)
        dest = route.get("Destination") or {}
        dp = f"{p}.Destination"
        if dest.get("PrefixRewrite") and not (http.get("PathPrefix") or http.get("PathExact")):
            raise _err(f"{dp}.PrefixRewrite", "requires that either PathPrefix or PathExact be configured on this route")
        for j, r in enumerate(dest.get("RetryOn") or []):
            _enum(f"{dp}.RetryOn[{j}]", r, RETRY_ON)
        for j, code in enumerate(dest.get("RetryOnStatusCodes") or []):
            if not 100 <= code <= 599:
                raise _err(f"{dp}.RetryOnStatusCodes[{j}]", f"invalid HTTP status code {code}")
        _check_header_mods(f"{dp}.RequestHeaders", dest.get("RequestHeaders"))
        _check_header_mods(f"{dp}.ResponseHeaders", dest.get("ResponseHeaders"))
        _check_fault(f"{dp}.FaultInjection", dest.get("FaultInjection"))
        _check_rate(f"{dp}.RateLimit", dest.get("RateLimit"))
        _check_mirrors(f"{dp}.Mirrors", dest.get("Mirrors") or [])


def _check_splitter(body: dict[str, Any]) -> None:
    splits = body.get("Splits") or []
    if not splits:
        raise _err("Splits", "at least one split is required")
    total = 0.0
    seen: dict[tuple[str, str, str], int] = {}
    for i, s in enumerate(splits):
        w = s.get("Weight", 0.0)
        if not 0 <= w <= 100:
            raise _err(f"Splits[{i}].Weight", f"must be between 0 and 100, got {w:g}")
        s["Weight"] = round(w, 2)
        total += s["Weight"]
        key = (s.get("Service") or body["Name"], s.get("ServiceSubset") or "", s.get("Namespace") or "")
        if key in seen:
            raise _err(f"Splits[{i}]", f"split destination occurs more than once (also Splits[{seen[key]}])")
        seen[key] = i
        _check_header_mods(f"Splits[{i}].RequestHeaders", s.get("RequestHeaders"))
        _check_header_mods(f"Splits[{i}].ResponseHeaders", s.get("ResponseHeaders"))
    if abs(total - 100.0) > WEIGHT_TOLERANCE:
        raise _err("Splits", f"the sum of all split weights must be 100, not {round(total, 2):g}")
    _check_mirrors("Mirrors", body.get("Mirrors") or [])


def _check_resolver(body: dict[str, Any]) -> None:
    subsets = body.get("Subsets") or {}
    for name, sub in subsets.items():
        if not SUBSET_NAME.match(name):
            raise _err(f"Subsets.{name}", f"invalid subset name {name!r}: use lowercase letters, digits and '-'")
        if sub.get("Filter"):
            try:
                compile_filter(sub["Filter"], schema=HEALTH_SERVICE_ENTRY_SCHEMA)
            except FilterError as exc:
                raise _err(f"Subsets.{name}.Filter", f"invalid filter {sub['Filter']!r}: {exc}") from None
    if body.get("DefaultSubset") and body["DefaultSubset"] not in subsets:
        raise _err("DefaultSubset", f"service-resolver does not have a subset named {body['DefaultSubset']!r}")
    red = body.get("Redirect")
    if red is not None:
        if subsets:
            raise _err("Redirect", "Redirect and Subsets cannot both be set")
        if body.get("DefaultSubset"):
            raise _err("Redirect", "Redirect and DefaultSubset cannot both be set")
        if body.get("Failover"):
            raise _err("Redirect", "Redirect and Failover cannot both be set")
        if not any(red.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Datacenter", "Peer", "SamenessGroup")):
            raise _err("Redirect", "a redirect must name at least one of Service, ServiceSubset, Namespace, Datacenter")
        if red.get("Peer") or red.get("SamenessGroup"):
            raise _err("Redirect", "cluster peering and sameness groups are not supported")
        if (red.get("Service") in (None, "", body["Name"]) and not red.get("Datacenter")
                and red.get("Namespace") in (None, "", body.get("Namespace", DEFAULT_NS)) and not red.get("ServiceSubset")):
            raise _err("Redirect", f"a redirect of {body['Name']!r} to itself is a loop")
    for key, fo in (body.get("Failover") or {}).items():
        p = f"Failover[{key!r}]"
        if key != "*" and key not in subsets:
            raise _err(p, f"service-resolver does not have a subset named {key!r} (use a subset name or \"*\")")
        if not any(fo.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Datacenters", "Targets")):
            raise _err(p, "a failover must name at least one of Service, ServiceSubset, Namespace, Datacenters, Targets")
        if fo.get("Targets") and any(fo.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Datacenters")):
            raise _err(f"{p}.Targets", "Targets cannot be combined with Service, ServiceSubset, Namespace or Datacenters")
        if fo.get("SamenessGroup") or any(t.get("Peer") for t in fo.get("Targets") or []):
            raise _err(p, "cluster peering and sameness groups are not supported")
        if fo.get("ServiceSubset") and not fo.get("Service") and fo["ServiceSubset"] not in subsets:
            raise _err(f"{p}.ServiceSubset", f"service-resolver does not have a subset named {fo['ServiceSubset']!r}")
    lb = body.get("LoadBalancer")
    if lb:
        policy = lb.get("Policy", "")
        _enum("LoadBalancer.Policy", policy, LB_POLICIES)
        if lb.get("RingHashConfig") and policy != "ring_hash":
            raise _err("LoadBalancer.RingHashConfig", f"requires Policy \"ring_hash\", not {policy!r}")
        if lb.get("LeastRequestConfig") and policy != "least_request":
            raise _err("LoadBalancer.LeastRequestConfig", f"requires Policy \"least_request\", not {policy!r}")
        if lb.get("HashPolicies") and policy not in ("ring_hash", "maglev"):
            raise _err("LoadBalancer.HashPolicies", f"require Policy \"ring_hash\" or \"maglev\", not {policy!r}")
        for i, hp in enumerate(lb.get("HashPolicies") or []):
            p = f"LoadBalancer.HashPolicies[{i}]"
            if hp.get("SourceIP"):
                if hp.get("Field"):
                    raise _err(p, "SourceIP cannot be combined with Field")
                continue
            _enum(f"{p}.Field", hp.get("Field", ""), ("header", "cookie", "query_parameter"))
            if not hp.get("FieldValue"):
                raise _err(f"{p}.FieldValue", f"is required for Field {hp.get('Field')!r}")
            if hp.get("CookieConfig") and hp.get("Field") != "cookie":
                raise _err(f"{p}.CookieConfig", "only applies to Field \"cookie\"")


def _check_tls(path: str, tls: dict[str, Any] | None) -> None:
    if not tls:
        return
    lo, hi = tls.get("TLSMinVersion", ""), tls.get("TLSMaxVersion", "")
    if lo:
        _enum(f"{path}.TLSMinVersion", lo, TLS_VERSIONS)
    if hi:
        _enum(f"{path}.TLSMaxVersion", hi, TLS_VERSIONS)
    if lo and hi and "TLS_AUTO" not in (lo, hi) and TLS_VERSIONS.index(lo) > TLS_VERSIONS.index(hi):
        raise _err(f"{path}.TLSMinVersion", f"{lo} is greater than TLSMaxVersion {hi}")


def _check_ingress(body: dict[str, Any]) -> None:
    _check_tls("TLS", body.get("TLS"))
    ports: dict[int, int] = {}
    for i, lst in enumerate(body.get("Listeners") or []):
        p = f"Listeners[{i}]"
        port = lst.get("Port", 0)
        if not 1 <= port <= 65535:
            raise _err(f"{p}.Port", f"must be between 1 and 65535, got {port}")
        if port in ports:
            raise _err(f"{p}.Port", f"port {port} is already used by Listeners[{ports[port]}]")
        ports[port] = i
        proto = (lst.get("Protocol") or "tcp").lower()
        _enum(f"{p}.Protocol", proto, PROTOCOLS)
        lst["Protocol"] = proto
        _check_tls(f"{p}.TLS", lst.get("TLS"))
        services = lst.get("Services") or []
        if not services:
            raise _err(f"{p}.Services", "at least one service is required")
        if proto == "tcp" and len(services) > 1:
            raise _err(f"{p}.Services", f"a tcp listener can only route to one service, got {len(services)}")
        seen: set[tuple[str, str]] = set()
        hosts: set[str] = set()
        for j, s in enumerate(services):
            sp = f"{p}.Services[{j}]"
            if not s.get("Name"):
                raise _err(f"{sp}.Name", "service name is required")
            if s["Name"] == "*" and proto not in HTTP_PROTOCOLS:
                raise _err(f"{sp}.Name", f"the wildcard service is only allowed on http listeners, not {proto}")
            key = (s["Name"], s.get("Namespace") or DEFAULT_NS)
            if key in seen:
                raise _err(f"{sp}.Name", f"service {s['Name']!r} is listed more than once on this listener")
            seen.add(key)
            for h in s.get("Hosts") or []:
                if proto not in HTTP_PROTOCOLS:
                    raise _err(f"{sp}.Hosts", f"hosts can only be set on http listeners, not {proto}")
                if s["Name"] == "*":
                    raise _err(f"{sp}.Hosts", "hosts cannot be set for the wildcard service")
                if h in hosts:
                    raise _err(f"{sp}.Hosts", f"host {h!r} is used by more than one service on this listener")
                if "*" in h and not (h == "*" or (h.startswith("*.") and "*" not in h[2:])):
                    raise _err(f"{sp}.Hosts", f"invalid host {h!r}: a wildcard may only be the first label")
                hosts.add(h)


def _check_terminating(body: dict[str, Any]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(body.get("Services") or []):
        p = f"Services[{i}]"
        if not s.get("Name"):
            raise _err(f"{p}.Name", "service name is required")
        key = (s["Name"], s.get("Namespace") or DEFAULT_NS)
        if key in seen:
            raise _err(f"{p}.Name", f"service {s['Name']!r} is listed more than once")
        seen.add(key)
        if bool(s.get("CertFile")) != bool(s.get("KeyFile")):
            raise _err(p, "CertFile and KeyFile must be set together for TLS origination")


def _check_mesh(body: dict[str, Any]) -> None:
    if body["Name"] != "mesh":
        raise _err("Name", f"invalid name {body['Name']!r}: the mesh entry must be named \"mesh\"")
    tls = body.get("TLS") or {}
    _check_tls("TLS.Incoming", tls.get("Incoming"))
    _check_tls("TLS.Outgoing", tls.get("Outgoing"))
    _enum("DefaultIntentionPolicy", body.get("DefaultIntentionPolicy", ""), ("", "allow", "deny"))


def _check_jwt_provider(body: dict[str, Any]) -> None:
    ks = body.get("JSONWebKeySet")
    if not ks:
        raise _err("JSONWebKeySet", "is required (Local or Remote)")
    which = _one_of("JSONWebKeySet", ks, ("Local", "Remote"), required=True)
    if which == "Local":
        w = _one_of("JSONWebKeySet.Local", ks["Local"], ("JWKS", "Filename"), required=True)
        if w == "JWKS":
            try:
                base64.b64decode(ks["Local"]["JWKS"], validate=True)
            except (binascii.Error, ValueError):
                raise _err("JSONWebKeySet.Local.JWKS", "must be base64-encoded") from None
    else:
        uri = ks["Remote"].get("URI", "")
        if not re.match(r"^https?://[^/\s]+", uri):
            raise _err("JSONWebKeySet.Remote.URI", f"must be an http:// or https:// URL, got {uri!r}")
    for i, loc in enumerate(body.get("Locations") or []):
        p = f"Locations[{i}]"
        w = _one_of(p, loc, ("Header", "QueryParam", "Cookie"), required=True)
        if w and not loc[w].get("Name"):
            raise _err(f"{p}.{w}.Name", "is required")


def _check_jwt_requirement(path: str, jwt: dict[str, Any] | None) -> None:
    for i, prov in enumerate((jwt or {}).get("Providers") or []):
        if not prov.get("Name"):
            raise _err(f"{path}.Providers[{i}].Name", "provider name is required")
        for j, c in enumerate(prov.get("VerifyClaims") or []):
            if not c.get("Path"):
                raise _err(f"{path}.Providers[{i}].VerifyClaims[{j}].Path", "claim path is required")


def _check_intentions(body: dict[str, Any]) -> None:
    sources = body.get("Sources") or []
    if not sources:
        raise _err("Sources", "at least one source is required")
    seen: dict[tuple[str, str, str], int] = {}
    for i, s in enumerate(sources):
        p = f"Sources[{i}]"
        name = s.get("Name", "")
        if not name:
            raise _err(f"{p}.Name", "source name is required")
        if "/" in name:
            raise _err(f"{p}.Name", f"invalid name {name!r}: must not contain '/'")
        ns = s.get("Namespace") or DEFAULT_NS
        if ns == "*" and name != "*":
            raise _err(f"{p}.Namespace", "a wildcard namespace requires a wildcard name")
        if s.get("Peer") or s.get("SamenessGroup"):
            raise _err(p, "cluster peering and sameness groups are not supported")
        if s.get("Partition") not in (None, "", "default"):
            raise _err(f"{p}.Partition", "admin partitions are not supported")
        _enum(f"{p}.Type", s.get("Type", "consul"), ("consul",))
        key = (name, ns, s.get("Peer", ""))
        if key in seen:
            raise _err(p, f"source {ns}/{name} is listed more than once (also Sources[{seen[key]}])")
        seen[key] = i
        perms = s.get("Permissions") or []
        if s.get("Action") and perms:
            raise _err(p, "Action and Permissions cannot both be set")
        if not s.get("Action") and not perms:
            raise _err(p, "one of Action or Permissions must be set")
        if s.get("Action"):
            _enum(f"{p}.Action", s["Action"].lower(), ("allow", "deny"))
            s["Action"] = s["Action"].lower()
        for j, perm in enumerate(perms):
            pp = f"{p}.Permissions[{j}]"
            _enum(f"{pp}.Action", (perm.get("Action") or "").lower(), ("allow", "deny"))
            perm["Action"] = perm["Action"].lower()
            http = perm.get("HTTP")
            if not http and not perm.get("JWT"):
                raise _err(f"{pp}.HTTP", "is required")
            if http is not None:
                if not any(http.get(k) for k in ("PathExact", "PathPrefix", "PathRegex", "Header", "Methods")):
                    raise _err(f"{pp}.HTTP", "at least one of PathExact, PathPrefix, PathRegex, Header or Methods "
                                             "must be set")
                _check_http_match(f"{pp}.HTTP", http, query=False)
            _check_jwt_requirement(f"{pp}.JWT", perm.get("JWT"))
        if s.get("Type") is None:
            s["Type"] = "consul"
    _check_jwt_requirement("JWT", body.get("JWT"))


_CHECKS = {
    PROXY_DEFAULTS: _check_proxy_defaults,
    SERVICE_DEFAULTS: _check_service_defaults,
    SERVICE_ROUTER: _check_router,
    SERVICE_SPLITTER: _check_splitter,
    SERVICE_RESOLVER: _check_resolver,
    INGRESS_GATEWAY: _check_ingress,
    TERMINATING_GATEWAY: _check_terminating,
    MESH: _check_mesh,
    JWT_PROVIDER: _check_jwt_provider,
    SERVICE_INTENTIONS: _check_intentions,
}


# --------------------------------------------------------------------------------------------
# The graph: problems of the whole set of entries


def _ns_name(body: dict[str, Any]) -> tuple[str, str]:
    return body.get("Namespace") or DEFAULT_NS, body["Name"]


def _chain_problems(view: EntryView, datacenter: str) -> list[str]:
    services: set[tuple[str, str]] = set()
    for kind in (SERVICE_ROUTER, SERVICE_SPLITTER, SERVICE_RESOLVER):
        services.update(_ns_name(b) for b in view.list(kind))
    out = []
    for ns, svc in sorted(services):
        proto = service_protocol(view, svc, ns)
        if proto not in HTTP_PROTOCOLS:
            for kind in (SERVICE_ROUTER, SERVICE_SPLITTER):
                if view.get(kind, svc, ns) is not None:
                    out.append(f'{kind} "{svc}": service "{svc}" has protocol "{proto}", which does not permit '
                               "advanced routing or splitting behavior (set Protocol to http, http2 or grpc in "
                               f'service-defaults "{svc}" or Config.protocol in proxy-defaults)')
        try:
            compile_chain(view, svc, namespace=ns, datacenter=datacenter)
        except ChainError as exc:
            out.append(str(exc))
    return out


def _ingress_problems(view: EntryView) -> list[str]:
    out = []
    for gw in view.list(INGRESS_GATEWAY):
        for i, lst in enumerate(gw.get("Listeners") or []):
            proto = lst.get("Protocol") or "tcp"
            for j, s in enumerate(lst.get("Services") or []):
                if s.get("Name") in (None, "", "*"):
                    continue
                sp = service_protocol(view, s["Name"], s.get("Namespace") or DEFAULT_NS)
                if sp != proto:
                    out.append(f'ingress-gateway "{gw["Name"]}" Listeners[{i}].Services[{j}]: service '
                               f'"{s["Name"]}" has protocol "{sp}", which does not match the listener protocol '
                               f'"{proto}"')
    return out


def _jwt_names(jwt: dict[str, Any] | None) -> list[tuple[int, str]]:
    return [(i, p.get("Name", "")) for i, p in enumerate((jwt or {}).get("Providers") or [])]


def _intention_problems(view: EntryView) -> list[str]:
    out = []
    for ent in view.list(SERVICE_INTENTIONS):
        where = f'service-intentions "{ent["Name"]}"'
        for i, name in _jwt_names(ent.get("JWT")):
            if view.get(JWT_PROVIDER, name) is None:
                out.append(f'{where} JWT.Providers[{i}].Name: jwt-provider "{name}" does not exist')
        ns, dest = _ns_name(ent)
        proto = service_protocol(view, dest, ns) if dest != "*" else "http"
        for si, src in enumerate(ent.get("Sources") or []):
            for pi, perm in enumerate(src.get("Permissions") or []):
                pp = f"{where} Sources[{si}].Permissions[{pi}]"
                for k, name in _jwt_names(perm.get("JWT")):
                    if view.get(JWT_PROVIDER, name) is None:
                        out.append(f'{pp}.JWT.Providers[{k}].Name: jwt-provider "{name}" does not exist')
                if perm.get("HTTP") and proto not in HTTP_PROTOCOLS:
                    out.append(f'{pp}.HTTP: L7 permissions require the destination service "{dest}" to use '
                               f'http, http2 or grpc, but its protocol is "{proto}"')
    return out


def _defaults_problems(view: EntryView) -> list[str]:
    out = []
    mesh = view.get(MESH, "mesh") or {}
    permissive_ok = bool(mesh.get("AllowEnablingPermissiveMutualTLS"))
    for kind in (PROXY_DEFAULTS, SERVICE_DEFAULTS):
        for ent in view.list(kind):
            where = f'{kind} "{ent["Name"]}"'
            if ent.get("MutualTLSMode") == "permissive" and not permissive_ok:
                out.append(f"{where} MutualTLSMode: \"permissive\" is not allowed because the mesh entry does not "
                           "set AllowEnablingPermissiveMutualTLS = true")
            if kind == SERVICE_DEFAULTS:
                proto = service_protocol(view, ent["Name"], ent.get("Namespace") or DEFAULT_NS)
                if proto not in HTTP_PROTOCOLS:
                    if ent.get("FaultInjection"):
                        out.append(f'{where} FaultInjection: requires protocol http, http2 or grpc, not "{proto}"')
                    if ((ent.get("RateLimits") or {}).get("InstanceLevel") or {}).get("Routes"):
                        out.append(f'{where} RateLimits.InstanceLevel.Routes: requires protocol http, http2 or grpc, '
                                   f'not "{proto}"')
    return out


# which groups of graph checks a change of each kind can affect
_GROUPS: dict[str, tuple[str, ...]] = {
    PROXY_DEFAULTS: ("chains", "ingress", "intentions", "defaults"),
    SERVICE_DEFAULTS: ("chains", "ingress", "intentions", "defaults"),
    SERVICE_ROUTER: ("chains",),
    SERVICE_SPLITTER: ("chains",),
    SERVICE_RESOLVER: ("chains",),
    INGRESS_GATEWAY: ("ingress",),
    TERMINATING_GATEWAY: (),
    MESH: ("defaults",),
    JWT_PROVIDER: ("intentions",),
    SERVICE_INTENTIONS: ("intentions",),
}


def graph_problems(view: EntryView, kind: str, *, datacenter: str = "dc1") -> list[str]:
    """Every cross-entry problem a change of ``kind`` can affect, as sentences naming entry and field."""
    out: list[str] = []
    for group in _GROUPS[kind]:
        if group == "chains":
            out += _chain_problems(view, datacenter)
        elif group == "ingress":
            out += _ingress_problems(view)
        elif group == "intentions":
            out += _intention_problems(view)
        elif group == "defaults":
            out += _defaults_problems(view)
    return out


def _refuse_new_problems(before: EntryView, after: EntryView, kind: str, datacenter: str) -> None:
    new = graph_problems(after, kind, datacenter=datacenter)
    if not new:
        return
    old = set(graph_problems(before, kind, datacenter=datacenter))
    introduced = [p for p in new if p not in old]
    if introduced:
        raise ValidationError(introduced[0])


def validate_entry(body: dict[str, Any], view: EntryView, *, datacenter: str = "dc1") -> None:
    """Refuse ``body`` (canonical, from decode_entry) if it is invalid alone or would break the
    graph of ``view``. Normalises a few values in place (Protocol case, method case, weights)."""
    check_fields(body)
    _refuse_new_problems(view, OverlayView(view, {entry_key(body): body}), body["Kind"], datacenter)


def validate_delete(kind: str, name: str, view: EntryView, *, namespace: str = DEFAULT_NS,
                    datacenter: str = "dc1") -> None:
    """Refuse deleting an entry others depend on (a jwt-provider an intention names, the
    service-defaults that make a routed service http...)."""
    if view.get(kind, name, namespace) is None:
        return
    _refuse_new_problems(view, OverlayView(view, {key_for(kind, name, namespace): None}), kind, datacenter)
