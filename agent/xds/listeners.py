"""LDS: the public listener (TLS required, intentions as RBAC, then the local app) and one
listener per upstream on its local bind address and port."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.listener.v3 import listener_pb2

from lictor.agent.proxycfg.snapshot import HTTP_PROTOCOLS, ConfigSnapshot, GatewayListener, Upstream
from lictor.agent.xds.accesslogs import access_loggers, listener_access_loggers
from lictor.agent.xds.clusters import LOCAL_APP
from lictor.agent.xds.jwt import jwt_authn_filter
from lictor.agent.xds.common import LEAF_SECRET, ROOTS_SECRET, ads_source, fmt_duration, parse, tls_params
from lictor.agent.xds.rbac import rbac_rules
from lictor.agent.xds.routes import (FAULT_FILTER, FAULT_TYPE, RATE_LIMIT_FILTER, bucket, fault_config,
                                     gateway_route_name,
                                     rate_limit_config, upstream_has, upstream_has_faults)
from lictor.agent.xds.tracing import hcm_tracing

__all__ = ["listeners_from_snapshot", "public_listener_name"]

HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "suppress_envoy_headers": True}}


def public_listener_name(snap: ConfigSnapshot) -> str:
    return f"public_listener:{snap.bind_address}:{snap.port}"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _tcp_proxy(stat_prefix: str, cluster: str, snap: ConfigSnapshot) -> dict[str, Any]:
    typed: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                             "stat_prefix": stat_prefix, "cluster": cluster}
    if logs := access_loggers(snap.access_logs):
        typed["access_log"] = logs
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": typed}


def _observe(hcm: dict[str, Any], snap: ConfigSnapshot) -> dict[str, Any]:
    """The listener-level observability of an HTTP connection manager: access logs, tracing
    (with request ids, which only tracing needs)."""
    if logs := access_loggers(snap.access_logs):
        hcm["access_log"] = logs
    if tracing := hcm_tracing(snap):
        hcm["tracing"] = tracing
        hcm["generate_request_id"] = True
    return hcm


TLS_INSPECTOR = {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}


def _downstream_tls(snap: ConfigSnapshot) -> dict[str, Any]:
    common: dict[str, Any] = {
        "tls_params": tls_params(),
        "tls_certificate_sds_secret_configs": [{"name": LEAF_SECRET, "sds_config": ads_source()}],
        "combined_validation_context": {
            # any service of this trust domain may connect; intentions (RBAC) decide which may pass
            "default_validation_context": {"match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"prefix": f"spiffe://{snap.trust_domain}/"}}]},
            "validation_context_sds_secret_config": {"name": ROOTS_SECRET, "sds_config": ads_source()},
        },
    }
    if snap.is_http:
        common["alpn_protocols"] = ["h2", "http/1.1"]
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True, "common_tls_context": common}}


def _public_filters(snap: ConfigSnapshot) -> list[dict[str, Any]]:
    if not snap.is_http:
        filters = []
        rules = rbac_rules(snap.intentions, default_allow=snap.default_allow, trust_domain=snap.trust_domain, l7=False)
        if rules is not None:
            filters.append({"name": "envoy.filters.network.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                "stat_prefix": "connect_authz", "rules": rules}})
        filters.append(_tcp_proxy("public_listener", LOCAL_APP, snap))
        return filters
    http_filters = []
    if jwt := jwt_authn_filter(snap):  # verify tokens first; RBAC reads their payloads
        http_filters.append(jwt)
    rules = rbac_rules(snap.intentions, default_allow=snap.default_allow, trust_domain=snap.trust_domain, l7=True)
    if rules is not None:
        http_filters.append({"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules": rules}})
    route: dict[str, Any] = {"cluster": LOCAL_APP, "timeout": fmt_duration(snap.local_request_timeout)}
    routes: list[dict[str, Any]] = [{"match": {"prefix": "/"}, "route": route}]
    if snap.fault_json:  # service-defaults FaultInjection: every inbound request that passed the intentions
        http_filters.append({"name": FAULT_FILTER, "typed_config": fault_config(json.loads(snap.fault_json))})
    if snap.rate_limits_json:  # service-defaults RateLimits: after the intentions, before the app
        rl_filter, routes = rate_limit(json.loads(snap.rate_limits_json), route)
        http_filters.append(rl_filter)
    http_filters.append(ROUTER)
    return [{"name": HCM, "typed_config": _observe({
        "@type": HCM_TYPE, "stat_prefix": "public_listener", "codec_type": "AUTO",
        "generate_request_id": False,
        "forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": {"uri": True},
        "route_config": {"name": LOCAL_APP, "virtual_hosts": [{"name": LOCAL_APP, "domains": ["*"],
                                                                "routes": routes}]},
        "http_filters": http_filters}, snap)}]


def rate_limit(rl: dict[str, Any], route: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The local_ratelimit filter (the instance-wide bucket) and the public routes: one per
    ``Routes[]`` entry with its own bucket, then the catch-all. Over budget: 429 with
    ``x-ratelimit-limit``/``-remaining``/``-reset``."""
    base = bucket(rl["RequestsPerSecond"], rl.get("RequestsMaxBurst", 0)) if rl.get("RequestsPerSecond") else None
    routes = []
    for r in rl.get("Routes") or []:
        if r.get("PathExact"):
            match: dict[str, Any] = {"path": r["PathExact"]}
        elif r.get("PathRegex"):
            match = {"safe_regex": {"regex": r["PathRegex"]}}
        else:
            match = {"prefix": r["PathPrefix"]}
        routes.append({"match": match, "route": route, "typed_per_filter_config": {
            RATE_LIMIT_FILTER: rate_limit_config(bucket(r["RequestsPerSecond"], r.get("RequestsMaxBurst", 0)))}})
    routes.append({"match": {"prefix": "/"}, "route": route})
    return {"name": RATE_LIMIT_FILTER, "typed_config": rate_limit_config(base)}, routes


def public_listener(snap: ConfigSnapshot) -> dict[str, Any]:
    tls_chain: dict[str, Any] = {"filters": _public_filters(snap), "transport_socket": _downstream_tls(snap)}
    lis: dict[str, Any] = {"name": public_listener_name(snap), "address": _address(snap.bind_address, snap.port),
                           "traffic_direction": "INBOUND", "filter_chains": [tls_chain]}
    listener_logs = listener_access_loggers(snap.access_logs)
    if snap.mutual_tls_mode == "permissive":
        # plaintext is let through to the app (no identity, so no intentions): migration mode
        tls_chain["filter_chain_match"] = {"transport_protocol": "tls"}
        lis["listener_filters"] = [TLS_INSPECTOR]
        lis["filter_chains"].append({"filters": [_tcp_proxy("public_listener_permissive", LOCAL_APP, snap)]})
    elif listener_logs:
        # only TLS matches a chain, so a plaintext connection is refused by the listener itself
        # ("no matching filter chain", flag NR) and so appears in the listener's access log
        tls_chain["filter_chain_match"] = {"transport_protocol": "tls"}
        lis["listener_filters"] = [TLS_INSPECTOR]
    if listener_logs:
        lis["access_log"] = listener_logs
    return lis


def upstream_listener(up: Upstream, snap: ConfigSnapshot) -> dict[str, Any]:
    lis: dict[str, Any] = {"name": up.listener_name, "address": _address(up.local_bind_address, up.local_bind_port),
                           "traffic_direction": "OUTBOUND"}
    if up.protocol in HTTP_PROTOCOLS:
        hcm = {"@type": HCM_TYPE, "stat_prefix": f"upstream.{up.name}", "codec_type": "AUTO",
               "generate_request_id": False,
               "rds": {"config_source": ads_source(), "route_config_name": up.name},
               # the fault filter acts only on routes that configure it (typed_per_filter_config)
               "http_filters": ([{"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}}]
                                if upstream_has_faults(up) else [])
               + ([{"name": RATE_LIMIT_FILTER, "typed_config": rate_limit_config(None)}]
                  if upstream_has(up, "RateLimit") else []) + [ROUTER]}
        lis["filter_chains"] = [{"filters": [{"name": HCM, "typed_config": _observe(hcm, snap)}]}]
    else:
        cluster = up.targets[0].cluster_name if up.targets else up.name
        lis["filter_chains"] = [{"filters": [_tcp_proxy(f"upstream.{up.name}", cluster, snap)]}]
    if logs := listener_access_loggers(snap.access_logs):
        lis["access_log"] = logs
    return lis


def gateway_listener(snap: ConfigSnapshot, lst: GatewayListener) -> dict[str, Any]:
    """An ingress-gateway listener on the gateway's address: http ones route by host name
    (RDS ``ingress:<port>``), a tcp one proxies to its one service."""
    lis: dict[str, Any] = {"name": f"ingress:{snap.bind_address}:{lst.port}",
                           "address": _address(snap.bind_address, lst.port), "traffic_direction": "OUTBOUND"}
    if lst.protocol in HTTP_PROTOCOLS:
        hcm = {"@type": HCM_TYPE, "stat_prefix": f"ingress_upstream_{lst.port}", "codec_type": "AUTO",
               "generate_request_id": False,
               "rds": {"config_source": ads_source(), "route_config_name": gateway_route_name(lst.port)},
               "http_filters": [ROUTER]}
        lis["filter_chains"] = [{"filters": [{"name": HCM, "typed_config": hcm}]}]
    else:
        ups = {u.name: u for u in snap.upstreams}
        up = ups.get(lst.services[0][0]) if lst.services else None
        cluster = up.targets[0].cluster_name if up is not None and up.targets else "no-target"
        lis["filter_chains"] = [{"filters": [_tcp_proxy(f"ingress_upstream_{lst.port}", cluster, snap)]}]
    return lis


def listeners_from_snapshot(snap: ConfigSnapshot) -> list[listener_pb2.Listener]:
    if snap.kind == "ingress-gateway":
        gw = [gateway_listener(snap, lst) for lst in snap.gateway_listeners]
        return [parse(listener_pb2.Listener, d) for d in gw]  # type: ignore[misc]
    out = [public_listener(snap)] + [upstream_listener(up, snap) for up in snap.upstreams if up.local_bind_port]
    return [parse(listener_pb2.Listener, d) for d in out]  # type: ignore[misc]
