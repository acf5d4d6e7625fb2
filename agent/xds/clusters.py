"""CDS: the local app cluster and one EDS cluster per upstream target (mTLS, SNI, SAN match)."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
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


_LB_POLICIES = {"round_robin": "ROUND_ROBIN", "least_request": "LEAST_REQUEST", "random": "RANDOM",
                "ring_hash": "RING_HASH", "maglev": "MAGLEV"}


def _load_balancer(c: dict[str, Any], lb: dict[str, Any]) -> None:
    """A resolver's ``LoadBalancer`` on a cluster (hash policies go on the routes)."""
    policy = lb.get("Policy") or "round_robin"
    c["lb_policy"] = _LB_POLICIES[policy]
    if policy == "least_request" and (lb.get("LeastRequestConfig") or {}).get("ChoiceCount"):
        c["least_request_lb_config"] = {"choice_count": lb["LeastRequestConfig"]["ChoiceCount"]}
    rh = lb.get("RingHashConfig") or {}
    if policy == "ring_hash" and rh:
        cfg = {}
        if rh.get("MinimumRingSize"):
            cfg["minimum_ring_size"] = rh["MinimumRingSize"]
        if rh.get("MaximumRingSize"):
            cfg["maximum_ring_size"] = rh["MaximumRingSize"]
        c["ring_hash_lb_config"] = cfg


def _resilience(c: dict[str, Any], cfg: dict[str, Any]) -> None:
    """``UpstreamConfig`` Limits (+ MaxRetries), RetryBudget and PassiveHealthCheck on a cluster."""
    from lictor.common.duration import parse_duration

    limits, budget = cfg.get("Limits") or {}, cfg.get("RetryBudget")
    if limits or budget:
        th = dict(CIRCUIT_BREAKERS["thresholds"][0])
        for key, field in (("MaxConnections", "max_connections"), ("MaxPendingRequests", "max_pending_requests"),
                           ("MaxConcurrentRequests", "max_requests"), ("MaxRetries", "max_retries")):
            if limits.get(key):
                th[field] = limits[key]
        if budget is not None:
            # Envoy ignores max_retries when a budget is set: the budget is the retry limit
            rb: dict[str, Any] = {"budget_percent": {"value": float(budget.get("BudgetPercent", 20.0))}}
            if budget.get("MinRetryConcurrency") is not None:
                rb["min_retry_concurrency"] = budget["MinRetryConcurrency"]
            th["retry_budget"] = rb
        c["circuit_breakers"] = {"thresholds": [th]}
    phc = cfg.get("PassiveHealthCheck")
    if phc:
        od: dict[str, Any] = {}
        if phc.get("Interval"):
            od["interval"] = fmt_duration(parse_duration(phc["Interval"]))
        if phc.get("MaxFailures"):
            od["consecutive_5xx"] = phc["MaxFailures"]
        if "EnforcingConsecutive5xx" in phc:
            od["enforcing_consecutive_5xx"] = phc["EnforcingConsecutive5xx"]
        if "MaxEjectionPercent" in phc:
            od["max_ejection_percent"] = phc["MaxEjectionPercent"]
        if phc.get("BaseEjectionTime"):
            od["base_ejection_time"] = fmt_duration(parse_duration(phc["BaseEjectionTime"]))
        c["outlier_detection"] = od
        if "MinHealthPercent" in phc:  # Lictor (Istio's minHealthPercent): Envoy's panic threshold
            c["common_lb_config"] = {"healthy_panic_threshold": {"value": float(phc["MinHealthPercent"])}}


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
    if target.load_balancer:
        _load_balancer(c, json.loads(target.load_balancer))
    if up.config_json:
        _resilience(c, json.loads(up.config_json))
    return c


def clusters_from_snapshot(snap: ConfigSnapshot) -> list[cluster_pb2.Cluster]:
    out = [json.loads(snap.local_cluster_json) if snap.local_cluster_json else local_app_cluster(snap)]
    if snap.kind == "ingress-gateway":
        out = []  # no local app behind a gateway
    msgs = [parse(cluster_pb2.Cluster, c) for c in out]
    seen = set()
    for up in snap.upstreams:
        for t in up.targets:
            if t.cluster_name not in seen:
                seen.add(t.cluster_name)
                msgs.append(_cluster_message(up.protocol, up.config_json, replace(t, endpoints=())))
    return msgs  # type: ignore[return-value]


@functools.lru_cache(maxsize=8192)
def _cluster_message(protocol: str, config_json: str, target: Target) -> cluster_pb2.Cluster:
    """Memoised on what a target's cluster depends on (not its endpoints): proxies with the same
    upstream share one message. Callers must not mutate it."""
    up = Upstream(name="", destination_name="", local_bind_address="", local_bind_port=0, protocol=protocol,
                  config_json=config_json)
    return parse(cluster_pb2.Cluster, upstream_cluster(up, target))  # type: ignore[return-value]
