"""The ``Tracing`` block -> the tracing config of every HTTP connection manager, and the collector
cluster when the collector is a host:port. Pure.

- ``zipkin``: Envoy's Zipkin tracer, JSON v2 to ``/api/v2/spans``, 128-bit trace ids, each hop its
  own span (no shared span context), and context propagated as B3 *and* W3C ``traceparent``.
- ``opentelemetry``: OTLP over gRPC (HTTP/2 to the collector), W3C ``traceparent``.

The collector is a mesh service (its upstream cluster, mTLS through its sidecar: proxycfg watches
it as an upstream without a listener) or ``Address`` host:port (cluster ``lictor_tracing_collector``).
Request ids are generated only when tracing is on (Envoy samples on them).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy.config.trace.v3 import opentelemetry_pb2, zipkin_pb2  # noqa: F401  (register the types)

from lictor.agent.proxycfg.snapshot import ConfigSnapshot

__all__ = ["COLLECTOR_CLUSTER", "collector_cluster_name", "hcm_tracing", "tracing_clusters"]

COLLECTOR_CLUSTER = "lictor_tracing_collector"


def collector_cluster_name(snap: ConfigSnapshot) -> str:
    tr = snap.tracing
    if tr is None:
        return ""
    if tr.collector_address:
        return COLLECTOR_CLUSTER
    for up in snap.upstreams:
        if up.destination_name == tr.collector_service and up.targets:
            return up.targets[0].cluster_name
    return ""  # the collector service is not known yet: no tracing until it is


def hcm_tracing(snap: ConfigSnapshot) -> dict[str, Any] | None:
    """The HCM ``tracing`` field, or None (tracing off, or its collector not resolvable yet)."""
    tr = snap.tracing
    cluster = collector_cluster_name(snap)
    if tr is None or not cluster:
        return None
    if tr.provider == "zipkin":
        provider = {"name": "envoy.tracers.zipkin", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
            "collector_cluster": cluster, "collector_endpoint": "/api/v2/spans",
            "collector_endpoint_version": "HTTP_JSON", "trace_id_128bit": True, "shared_span_context": False,
            "trace_context_option": "USE_B3_WITH_W3C_PROPAGATION"}}
    else:
        provider = {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "1s"},
            "service_name": snap.service}}
    out: dict[str, Any] = {"provider": provider, "random_sampling": {"value": tr.sampling_percent}}
    tags = []
    for tag, kind, value in tr.custom_tags:
        tags.append({"tag": tag, "request_header": {"name": value}} if kind == "header"
                    else {"tag": tag, "literal": {"value": value}})
    if tags:
        out["custom_tags"] = tags
    return out


def tracing_clusters(snap: ConfigSnapshot) -> list[dict[str, Any]]:
    tr = snap.tracing
    if tr is None or not tr.collector_address:
        return []
    host, _, port = tr.collector_address.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    c: dict[str, Any] = {
        "name": COLLECTOR_CLUSTER, "type": kind, "connect_timeout": "5s",
        "load_assignment": {"cluster_name": COLLECTOR_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]}}
    if kind == "STRICT_DNS":
        c["dns_lookup_family"] = "V4_PREFERRED"
    if tr.provider == "opentelemetry":  # OTLP/gRPC: HTTP/2
        c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    return [c]
