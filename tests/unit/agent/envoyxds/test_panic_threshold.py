"""PassiveHealthCheck.MinHealthPercent (Istio's minHealthPercent) becomes Envoy's panic threshold:
without it, Envoy ignores ejections once fewer than half the hosts are healthy, so a breaker on a
single-instance service would never trip."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format

from lictor.agent.xds.clusters import _resilience


def test_min_health_percent_sets_the_panic_threshold() -> None:
    c: dict = {"name": "inventory"}
    _resilience(c, {"PassiveHealthCheck": {"MaxFailures": 3, "MinHealthPercent": 0}})
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}
    pb = json_format.ParseDict(c, cluster_pb2.Cluster())
    assert pb.common_lb_config.HasField("healthy_panic_threshold")
    c2: dict = {"name": "inventory"}
    _resilience(c2, {"PassiveHealthCheck": {"MaxFailures": 3}})
    assert "common_lb_config" not in c2  # Consul's entries keep Envoy's default (50%)
