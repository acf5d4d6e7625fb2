"""CDS: the local app cluster and one EDS cluster per upstream target (mTLS, SNI, SAN match)."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from lictor.agent.proxycfg.snapshot import HTTP_PROTOCOLS, ConfigSnapshot, Target, Upstream
from lictor.agent.xds.common import LEAF_SECRET, ROOTS_SECRET, ads_source, fmt_duration, parse, tls_params

__all__ = ["clusters_from_snapshot", "LOCAL_APP", "upstream_tls_context", "CIRCUIT_BREAKERS"]

LOCAL_APP = "local_app"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
#: high enough never to throttle a benchmark (Envoy's default of 1024 would bite at scale)
CIRCUIT_BREAKERS = {"thresholds": [{"max_connections": 100000, "max_pending_requests": 100000,
                                    "max_requests": 100000, "max_retries": 3}]}
IDLE_TIMEOUT = "300s"


def _http_options(http2: bool) -> dict[str, Any]:
    return {HTTP_OPTIONS: {
        "@type": HTTP_OPTIONS_TYPE,
        "common_http_protocol_options": {"idle_timeout": IDLE_TIMEOUT},
        "explicit_http_config": {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}},
    }}


def upstream_tls_context(target: Target, *, alpn: list[str]) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": target.sni,
        "common_tls_context": {
            "tls_params": tls_params(),
            "tls_certificate_sds_secret_configs": [{"name": LEAF_SECRET, "sds_config": ads_source()}],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": target.spiffe_id}}]},
                "validation_context_sds_secret_config": {"name": ROOTS_SECRET, "sds_config": ads_source()},
            },
        },
    }
    if alpn:
        ctx["common_tls_context"]["alpn_protocols"] = alpn
    return {"name": "envoy.transport_sockets.tls", "typed_config": ctx}


def local_app_cluster(snap: ConfigSnapshot) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": LOCAL_APP, "type": "STATIC", "connect_timeout": fmt_duration(snap.local_connect_timeout),
        "circuit_breakers": CIRCUIT_BREAKERS,
        "load_assignment": {"cluster_name": LOCAL_APP, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": snap.local_app_address, "port_value": snap.local_app_port}}}}]}]},
    }
    if snap.protocol in HTTP_PROTOCOLS:
        c["typed_extension_protocol_options"] = _http_options(snap.protocol in ("http2", "grpc"))
    return c


def upstream_cluster(up: Upstream, target: Target) -> dict[str, Any]:
    http = up.protocol in HTTP_PROTOCOLS
    c: dict[str, Any] = {
        "name": target.cluster_name, "type": "EDS", "alt_stat_name": target.cluster_name,
        "eds_cluster_config": {"eds_config": ads_source()},
        "connect_timeout": fmt_duration(target.connect_timeout),
        "circuit_breakers": CIRCUIT_BREAKERS,
        "lb_policy": "ROUND_ROBIN",
        # tcp: h1/tcp bytes; http*: one multiplexed HTTP/2 connection between the sidecars
        "transport_socket": upstream_tls_context(target, alpn=["h2"] if http else []),
    }
    if http:
        c["typed_extension_protocol_options"] = _http_options(True)
    return c


def clusters_from_snapshot(snap: ConfigSnapshot) -> list[cluster_pb2.Cluster]:
    out = [json.loads(snap.local_cluster_json) if snap.local_cluster_json else local_app_cluster(snap)]
    seen = set()
    for up in snap.upstreams:
        for t in up.targets:
            if t.cluster_name not in seen:
                seen.add(t.cluster_name)
                out.append(upstream_cluster(up, t))
    return [parse(cluster_pb2.Cluster, c) for c in out]  # type: ignore[misc]
