"""EDS: one ClusterLoadAssignment per upstream target: its healthy instances, with weights.

Critical instances are left out; warning ones count as healthy with their warning weight unless
the target wants only passing ones (that choice is made in proxycfg, which sets ``healthy``).
This is the hot path of a health change, so messages are built directly (no JSON parsing)."""

from __future__ import annotations

import functools

from envoy.config.core.v3 import address_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from lictor.agent.proxycfg.snapshot import ConfigSnapshot, Target

__all__ = ["endpoints_from_snapshot", "load_assignment"]


@functools.lru_cache(maxsize=8192)
def load_assignment(target: Target) -> endpoint_pb2.ClusterLoadAssignment:
    """Memoised on the (frozen) target: proxies with the same upstream share one message, so a
    health change costs one build, not one per proxy. Callers must not mutate the result."""
    lbs = []
    for ep in sorted(target.endpoints, key=lambda e: (e.address, e.port, e.node)):
        if not ep.healthy:
            continue
        lbs.append(endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=ep.address, port_value=ep.port))),
            health_status=health_check_pb2.HEALTHY,
            load_balancing_weight={"value": max(1, ep.weight)}))
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=target.cluster_name)
    if lbs:
        cla.endpoints.append(endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lbs))
    return cla


def endpoints_from_snapshot(snap: ConfigSnapshot) -> list[endpoint_pb2.ClusterLoadAssignment]:
    out: dict[str, endpoint_pb2.ClusterLoadAssignment] = {}
    for up in snap.upstreams:
        for t in up.targets:
            out.setdefault(t.cluster_name, load_assignment(t))
    return list(out.values())
