"""Small shared pieces of xDS generation: type URLs, config sources, TLS params, Any packing."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

# Importing the generated modules registers their types, so ParseDict can resolve "@type".
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

__all__ = ["CLUSTER", "ENDPOINT", "LISTENER", "ROUTE", "SECRET", "TYPE_ORDER", "ads_source", "parse",
           "tls_params", "LEAF_SECRET", "ROOTS_SECRET", "fmt_duration"]

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

#: the order that never drops traffic: a cluster exists before its endpoints, both before the
#: listener that routes to them, the listener before its routes; secrets first (clusters and
#: listeners warm until their SDS secrets arrive).
TYPE_ORDER = (SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE)

#: the message type of each type URL
MESSAGE_TYPES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster, ENDPOINT: endpoint_pb2.ClusterLoadAssignment, LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration, SECRET: secret_pb2.Secret,
}

LEAF_SECRET = "leaf"
ROOTS_SECRET = "roots"


def ads_source() -> dict[str, Any]:
    return {"ads": {}, "resource_api_version": "V3"}


def tls_params() -> dict[str, Any]:
    # Envoy's upstream default maximum is TLS 1.2: allow 1.3 on both sides (the anchor's choice)
    return {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}


def fmt_duration(seconds: float) -> str:
    """A protobuf JSON Duration ("5s", "0.250s")."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def parse(msg_type: type[Message], data: dict[str, Any]) -> Message:
    """A message from its proto3 JSON (snake_case accepted), as Envoy's YAML reads."""
    msg = msg_type()
    json_format.ParseDict(data, msg)
    return msg

