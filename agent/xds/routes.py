"""RDS: one RouteConfiguration per http upstream (named after the upstream), from its chain's
routes (service-router matches and actions, service-splitter weights and per-split headers,
resolver hash policies, mirrors, faults) or a catch-all to its one target.

Config-entry fields to Envoy (docs/traffic.md has the user's view):

    Match.HTTP.PathExact/PathPrefix/PathRegex   match.path / prefix / safe_regex
    Match.HTTP.Header[]                         match.headers (present, exact, prefix, suffix, contains,
                                                regex; IgnoreCase, Invert)
    Match.HTTP.QueryParam[]                     match.query_parameters (present, exact, regex)
    Match.HTTP.Methods                          a ":method" header regex
    Destination.PrefixRewrite, RequestTimeout,  route.prefix_rewrite, timeout, idle_timeout
      IdleTimeout
    NumRetries, RetryOn, RetryOnStatusCodes,    route.retry_policy
      RetryOnConnectFailure, PerTryTimeout
    Request/ResponseHeaders Add/Set/Remove      route-level header changes; a split's go on its
                                                weighted cluster
    RequestMirrorPolicies                       route.request_mirror_policies (percent of requests)
    FaultInjection                              typed_per_filter_config of envoy.filters.http.fault
    resolver LoadBalancer.HashPolicies          route.hash_policy (ring_hash / maglev targets)
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from typing import Any

from envoy.config.route.v3 import route_pb2

from lictor.agent.proxycfg.snapshot import HTTP_PROTOCOLS, ConfigSnapshot, GatewayListener, Route, Upstream
from lictor.agent.xds.common import fmt_duration, parse

__all__ = ["routes_from_snapshot", "gateway_route_name", "FAULT_FILTER", "RATE_LIMIT_FILTER", "upstream_has", "upstream_has_faults",
           "header_matcher", "percent", "bucket", "rate_limit_config", "fault_config"]

FAULT_FILTER = "envoy.filters.http.fault"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"


def percent(value: float) -> dict[str, Any]:
    """A FractionalPercent (per million, so two decimals of a percent survive)."""
    return {"numerator": int(round(float(value) * 10000)), "denominator": "MILLION"}


def _seconds(value: str) -> float:
    from lictor.common.duration import parse_duration

    return parse_duration(value)


def header_matcher(h: dict[str, Any]) -> dict[str, Any]:
    """A HeaderMatcher from Consul's header match shape (router Header[], FaultInjection.HeaderMatch[])."""
    out: dict[str, Any] = {"name": h["Name"]}
    if h.get("Present"):
        out["present_match"] = True
    else:
        sm: dict[str, Any] = {}
        for key, kind in (("Exact", "exact"), ("Prefix", "prefix"), ("Suffix", "suffix"), ("Contains", "contains")):
            if h.get(key):
                sm[kind] = h[key]
        if h.get("Regex"):
            sm["safe_regex"] = {"regex": h["Regex"]}
        if h.get("IgnoreCase") and "safe_regex" not in sm:
            sm["ignore_case"] = True
        out["string_match"] = sm
    if h.get("Invert"):
        out["invert_match"] = True
    return out


def _legacy_match(r: Route) -> dict[str, Any]:
    m: dict[str, Any] = {}
    headers = []
    for kind, value in r.match:
        if kind in ("prefix", "path"):
            m["prefix" if kind == "prefix" else "path"] = value
        elif kind == "exact":
            m["path"] = value
        elif kind == "regex":
            m["safe_regex"] = {"regex": value}
        elif kind == "method":
            headers.append({"name": ":method", "string_match": {"exact": value}})
        elif kind == "header":
            name, _, val = value.partition("=")
            headers.append({"name": name, "string_match": {"exact": val}} if val else
                           {"name": name, "present_match": True})
    if not any(k in m for k in ("prefix", "path", "safe_regex")):
        m["prefix"] = "/"
    if headers:
        m["headers"] = headers
    return m


def _match(r: Route) -> dict[str, Any]:
    if not r.match_json:
        return _legacy_match(r)
    http = json.loads(r.match_json)
    m: dict[str, Any] = {}
    if http.get("PathExact"):
        m["path"] = http["PathExact"]
    elif http.get("PathRegex"):
        m["safe_regex"] = {"regex": http["PathRegex"]}
    else:
        m["prefix"] = http.get("PathPrefix") or "/"
    headers = [header_matcher(h) for h in http.get("Header") or []]
    if http.get("Methods"):
        headers.append({"name": ":method", "string_match": {"safe_regex": {"regex": "|".join(http["Methods"])}}})
    if headers:
        m["headers"] = headers
    qps = []
    for q in http.get("QueryParam") or []:
        if q.get("Present"):
            qps.append({"name": q["Name"], "present_match": True})
        elif q.get("Regex"):
            qps.append({"name": q["Name"], "string_match": {"safe_regex": {"regex": q["Regex"]}}})
        else:
            qps.append({"name": q["Name"], "string_match": {"exact": q.get("Exact", "")}})
    if qps:
        m["query_parameters"] = qps
    return m


def _header_changes(mods: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """``request_headers_to_add``/``_remove`` (prefix "request") from Consul's Add/Set/Remove."""
    out: dict[str, Any] = {}
    adds = []
    for name, value in sorted(((mods or {}).get("Add") or {}).items()):
        adds.append({"header": {"key": name, "value": value}, "append_action": "APPEND_IF_EXISTS_OR_ADD"})
    for name, value in sorted(((mods or {}).get("Set") or {}).items()):
        adds.append({"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
    if adds:
        out[f"{prefix}_headers_to_add"] = adds
    if (mods or {}).get("Remove"):
        out[f"{prefix}_headers_to_remove"] = list(mods["Remove"])  # type: ignore[index]
    return out


def _retry_policy(d: dict[str, Any]) -> dict[str, Any] | None:
    conditions: list[str] = []
    if d.get("RetryOnConnectFailure"):
        conditions.append("connect-failure")
    if d.get("RetryOnStatusCodes"):
        conditions.append("retriable-status-codes")
    for c in d.get("RetryOn") or []:
        if c not in conditions:
            conditions.append(c)
    if not conditions and not d.get("NumRetries"):
        return None
    rp: dict[str, Any] = {"retry_on": ",".join(conditions or ["connect-failure"])}
    if d.get("NumRetries"):
        rp["num_retries"] = d["NumRetries"]
    if d.get("RetryOnStatusCodes"):
        rp["retriable_status_codes"] = list(d["RetryOnStatusCodes"])
    if d.get("PerTryTimeout"):
        rp["per_try_timeout"] = fmt_duration(_seconds(d["PerTryTimeout"]))
    return rp


def fault_config(f: dict[str, Any]) -> dict[str, Any]:
    """An HTTPFault from a FaultInjection field (router Destination or service-defaults)."""
    out: dict[str, Any] = {"@type": FAULT_TYPE}
    if f.get("Delay"):
        out["delay"] = {"fixed_delay": fmt_duration(_seconds(f["Delay"]["Duration"])),
                        "percentage": percent(f["Delay"].get("Percent", 100.0))}
    if f.get("Abort"):
        a = f["Abort"]
        abort: dict[str, Any] = {"percentage": percent(a.get("Percent", 100.0))}
        if a.get("GRPCStatus"):
            abort["grpc_status"] = a["GRPCStatus"]
        else:
            abort["http_status"] = a["HTTPStatus"]
        out["abort"] = abort
    if f.get("HeaderMatch"):
        out["headers"] = [header_matcher(h) for h in f["HeaderMatch"]]
    return out


def _hash_policies(lb: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for hp in lb.get("HashPolicies") or []:
        if hp.get("SourceIP"):
            p: dict[str, Any] = {"connection_properties": {"source_ip": True}}
        elif hp.get("Field") == "header":
            p = {"header": {"header_name": hp["FieldValue"]}}
        elif hp.get("Field") == "query_parameter":
            p = {"query_parameter": {"name": hp["FieldValue"]}}
        else:
            cookie: dict[str, Any] = {"name": hp["FieldValue"]}
            cc = hp.get("CookieConfig") or {}
            if cc.get("Path"):
                cookie["path"] = cc["Path"]
            if cc.get("TTL") and not cc.get("Session"):
                cookie["ttl"] = fmt_duration(_seconds(cc["TTL"]))
            elif cc.get("Session"):
                cookie["ttl"] = "0s"
            p = {"cookie": cookie}
        if hp.get("Terminal"):
            p["terminal"] = True
        out.append(p)
    return out


def _route(r: Route, lbs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    d = json.loads(r.action_json) if r.action_json else {}
    a: dict[str, Any] = {"timeout": fmt_duration(r.timeout)}
    split_headers = {c: json.loads(h) for c, h in r.split_headers}
    if len(r.clusters) == 1:
        a["cluster"] = r.clusters[0][0]
    else:
        wcs = []
        for c, w in r.clusters:
            wc: dict[str, Any] = {"name": c, "weight": w}
            mods = split_headers.get(c) or {}
            wc.update(_header_changes(mods.get("RequestHeaders"), "request"))
            wc.update(_header_changes(mods.get("ResponseHeaders"), "response"))
            wcs.append(wc)
        a["weighted_clusters"] = {"clusters": wcs}
    if d.get("PrefixRewrite"):
        a["prefix_rewrite"] = d["PrefixRewrite"]
    if d.get("IdleTimeout"):
        a["idle_timeout"] = fmt_duration(_seconds(d["IdleTimeout"]))
    rp = _retry_policy(d)
    if rp:
        a["retry_policy"] = rp
    if r.mirrors:
        a["request_mirror_policies"] = [{"cluster": c, "runtime_fraction": {"default_value": percent(p)}}
                                        for c, p in r.mirrors]
    hashes: list[dict[str, Any]] = []
    for c, _ in r.clusters:
        hashes += [h for h in _hash_policies(lbs.get(c) or {}) if h not in hashes]
    if hashes:
        a["hash_policy"] = hashes
    out: dict[str, Any] = {"match": _match(r), "route": a}
    if len(r.clusters) == 1:  # a single split's header changes apply to the whole route
        mods = split_headers.get(r.clusters[0][0]) or {}
        out.update(_header_changes(mods.get("RequestHeaders"), "request"))
        out.update(_header_changes(mods.get("ResponseHeaders"), "response"))
    for key, value in _header_changes(d.get("RequestHeaders"), "request").items():
        out[key] = out.get(key, []) + value
    for key, value in _header_changes(d.get("ResponseHeaders"), "response").items():
        out[key] = out.get(key, []) + value
    if d.get("FaultInjection"):
        out.setdefault("typed_per_filter_config", {})[FAULT_FILTER] = fault_config(d["FaultInjection"])
    if d.get("RateLimit"):  # this client's own bucket for the route
        rl = d["RateLimit"]
        out.setdefault("typed_per_filter_config", {})[RATE_LIMIT_FILTER] = rate_limit_config(
            bucket(rl["RequestsPerSecond"], rl.get("RequestsMaxBurst", 0)))
    return out


RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def bucket(rps: float, burst: int) -> dict[str, Any]:
    """A token bucket of ``rps`` tokens a second, ``burst`` deep (default: one second's worth).
    Envoy adds whole tokens at a fill interval of at least 50 ms."""
    if float(rps).is_integer() or rps >= 20:
        per_fill, interval = max(1, int(round(rps))), 1.0
    else:
        per_fill, interval = 1, 1.0 / rps
    return {"max_tokens": max(1, burst or int(math.ceil(rps))), "tokens_per_fill": per_fill,
            "fill_interval": fmt_duration(interval)}


def rate_limit_config(bucket: dict[str, Any] | None) -> dict[str, Any]:
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    cfg: dict[str, Any] = {"@type": RATE_LIMIT_TYPE, "stat_prefix": "local_ratelimit",
                           "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}
    if bucket is not None:
        cfg.update({"token_bucket": bucket, "filter_enabled": {**always, "runtime_key": "local_rate_limit_enabled"},
                    "filter_enforced": {**always, "runtime_key": "local_rate_limit_enforced"}})
    return cfg


def upstream_has(up: Upstream, field: str) -> bool:
    """Does any route of this upstream set ``field`` in its Destination?"""
    return any(r.action_json and field in json.loads(r.action_json) for r in up.routes)


def upstream_has_faults(up: Upstream) -> bool:
    """Does any route of this upstream inject faults? (then its listener needs the fault filter)"""
    return any(r.action_json and "FaultInjection" in json.loads(r.action_json) for r in up.routes)


def route_config(up: Upstream) -> dict[str, Any]:
    routes = up.routes or (Route(clusters=((up.targets[0].cluster_name, 1),)),) if up.targets else ()
    lbs = {t.cluster_name: json.loads(t.load_balancer) for t in up.targets if t.load_balancer}
    return {"name": up.name, "virtual_hosts": [{"name": up.name, "domains": ["*"], "routes": [
        _route(r, lbs) for r in routes if r.clusters]}]}


def gateway_route_name(port: int) -> str:
    return f"ingress:{port}"


def gateway_route_config(snap: ConfigSnapshot, lst: GatewayListener) -> dict[str, Any]:
    """An ingress listener's routes: a virtual host per service (its ``Hosts``, or
    ``<service>.ingress.*``), each with the routes of the service's own chain."""
    ups = {u.name: u for u in snap.upstreams}
    vhosts = []
    for name, hosts, mods_json in lst.services:
        up = ups.get(name)
        if up is None or not up.targets:
            continue
        domains = list(hosts) or [f"{name}.ingress.*", f"{name}.ingress.*:{lst.port}"]
        vh: dict[str, Any] = {"name": name, "domains": domains,
                              "routes": route_config(up)["virtual_hosts"][0]["routes"]}
        mods = json.loads(mods_json) if mods_json else {}
        vh.update(_header_changes(mods.get("RequestHeaders"), "request"))
        vh.update(_header_changes(mods.get("ResponseHeaders"), "response"))
        vhosts.append(vh)
    return {"name": gateway_route_name(lst.port), "virtual_hosts": vhosts}


@functools.lru_cache(maxsize=4096)
def _route_message(key: Upstream) -> route_pb2.RouteConfiguration:
    return parse(route_pb2.RouteConfiguration, route_config(key))  # type: ignore[return-value]


def route_key(up: Upstream) -> Upstream:
    """What an upstream's routes depend on (not its endpoints, not its local listener): proxies
    with the same upstream share one memoised message, so a splitter change costs one build."""
    return replace(up, local_bind_address="", local_bind_port=0,
                   targets=tuple(replace(t, endpoints=()) for t in up.targets))


def routes_from_snapshot(snap: ConfigSnapshot) -> list[route_pb2.RouteConfiguration]:
    out = [_route_message(route_key(up)) for up in snap.upstreams
           if up.protocol in HTTP_PROTOCOLS and up.local_bind_port]
    out += [parse(route_pb2.RouteConfiguration, gateway_route_config(snap, lst))  # type: ignore[misc]
            for lst in snap.gateway_listeners if lst.protocol in HTTP_PROTOCOLS]
    return out
