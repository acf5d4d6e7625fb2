"""RDS: one RouteConfiguration per http upstream (named after the upstream), from its chain's
routes (service-router matches, service-splitter weights) or a catch-all to its one target."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_pb2

from lictor.agent.proxycfg.snapshot import HTTP_PROTOCOLS, ConfigSnapshot, Route, Upstream
from lictor.agent.xds.common import fmt_duration, parse

__all__ = ["routes_from_snapshot"]


def _match(r: Route) -> dict[str, Any]:
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


def _action(r: Route) -> dict[str, Any]:
    a: dict[str, Any] = {"timeout": fmt_duration(r.timeout)}
    if len(r.clusters) == 1:
        a["cluster"] = r.clusters[0][0]
    else:
        a["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in r.clusters]}
    return a


def route_config(up: Upstream) -> dict[str, Any]:
    routes = up.routes or (Route(clusters=((up.targets[0].cluster_name, 1),)),) if up.targets else ()
    return {"name": up.name, "virtual_hosts": [{"name": up.name, "domains": ["*"], "routes": [
        {"match": _match(r), "route": _action(r)} for r in routes if r.clusters]}]}


def routes_from_snapshot(snap: ConfigSnapshot) -> list[route_pb2.RouteConfiguration]:
    return [parse(route_pb2.RouteConfiguration, route_config(up))  # type: ignore[misc]
            for up in snap.upstreams if up.protocol in HTTP_PROTOCOLS and up.local_bind_port]
