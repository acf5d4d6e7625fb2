"""Filter schemas for the result shapes our HTTP API filters, after Consul's selector tables.

Each constant describes one *item* of an endpoint's result (the filter runs per item). Pass it as
``compile_filter(expr, schema=...)`` so an unknown selector, an unsupported operator or a value
of the wrong type is a 400 before any data is read. Schemas are read-only mappings; extend one
with ``obj(**AGENT_SERVICE_SCHEMA, NewField=str)``.

==============================================  ================================================
Endpoint                                        Schema
==============================================  ================================================
/v1/catalog/nodes                               ``CATALOG_NODE_SCHEMA``
/v1/catalog/service/:s, /v1/catalog/connect/:s  ``CATALOG_SERVICE_SCHEMA``
/v1/catalog/node-services/:n (``Services``)     ``AGENT_SERVICE_SCHEMA``
/v1/agent/services (map values)                 ``AGENT_SERVICE_SCHEMA``
/v1/agent/checks (map values), /v1/health/node, ``HEALTH_CHECK_SCHEMA``
/v1/health/checks/:s, /v1/health/state/:st
/v1/health/service/:s, /v1/health/connect/:s    ``HEALTH_SERVICE_ENTRY_SCHEMA``
==============================================  ================================================

``/v1/kv`` is not filterable in Consul, so there is no KV schema.
"""

from __future__ import annotations

from typing import Final

from lictor.common.filter import ANY, ListOf, MapOf, obj

__all__ = [
    "AGENT_SERVICE_SCHEMA",
    "CATALOG_NODE_SCHEMA",
    "CATALOG_SERVICE_SCHEMA",
    "HEALTH_CHECK_SCHEMA",
    "HEALTH_SERVICE_ENTRY_SCHEMA",
    "SERVICE_PROXY_SCHEMA",
]

_MESH_GATEWAY: Final = obj(Mode=str)

_UPSTREAM: Final = obj(
    Datacenter=str,
    DestinationName=str,
    DestinationNamespace=str,
    DestinationPartition=str,
    DestinationPeer=str,
    DestinationType=str,
    LocalBindAddress=str,
    LocalBindPort=int,
    LocalBindSocketPath=str,
    MeshGateway=_MESH_GATEWAY,
    Config=ANY,
)

SERVICE_PROXY_SCHEMA: Final = obj(
    DestinationServiceID=str,
    DestinationServiceName=str,
    LocalServiceAddress=str,
    LocalServicePort=int,
    LocalServiceSocketPath=str,
    Mode=str,
    TransparentProxy=obj(OutboundListenerPort=int, DialedDirectly=bool),
    MeshGateway=_MESH_GATEWAY,
    Upstreams=ListOf(_UPSTREAM),
    Expose=ANY,
    Config=ANY,
)

_SERVICE_ADDRESS: Final = obj(Address=str, Port=int)
_WEIGHTS: Final = obj(Passing=int, Warning=int)

CATALOG_NODE_SCHEMA: Final = obj(
    ID=str,
    Node=str,
    Address=str,
    Datacenter=str,
    TaggedAddresses=MapOf(str),
    Meta=MapOf(str),
    Partition=str,
    PeerName=str,
)

AGENT_SERVICE_SCHEMA: Final = obj(
    ID=str,
    Service=str,
    Kind=str,
    Tags=ListOf(str),
    Meta=MapOf(str),
    Port=int,
    SocketPath=str,
    Address=str,
    TaggedAddresses=MapOf(_SERVICE_ADDRESS),
    Weights=_WEIGHTS,
    EnableTagOverride=bool,
    Proxy=SERVICE_PROXY_SCHEMA,
    Connect=obj(Native=bool, SidecarService=ANY),
    Datacenter=str,
    Namespace=str,
    Partition=str,
    PeerName=str,
)

CATALOG_SERVICE_SCHEMA: Final = obj(
    ID=str,
    Node=str,
    Address=str,
    Datacenter=str,
    TaggedAddresses=MapOf(str),
    NodeMeta=MapOf(str),
    ServiceID=str,
    ServiceName=str,
    ServiceAddress=str,
    ServiceTaggedAddresses=MapOf(_SERVICE_ADDRESS),
    ServiceTags=ListOf(str),
    ServiceMeta=MapOf(str),
    ServicePort=int,
    ServiceSocketPath=str,
    ServiceKind=str,
    ServiceWeights=_WEIGHTS,
    ServiceEnableTagOverride=bool,
    ServiceProxy=SERVICE_PROXY_SCHEMA,
    ServiceConnect=obj(Native=bool, SidecarService=ANY),
    Namespace=str,
    Partition=str,
    PeerName=str,
)

HEALTH_CHECK_SCHEMA: Final = obj(
    Node=str,
    CheckID=str,
    Name=str,
    Status=str,
    Notes=str,
    Output=str,
    ServiceID=str,
    ServiceName=str,
    ServiceTags=ListOf(str),
    Type=str,
    Definition=ANY,
    Namespace=str,
    Partition=str,
    PeerName=str,
)

HEALTH_SERVICE_ENTRY_SCHEMA: Final = obj(
    Node=CATALOG_NODE_SCHEMA,
    Service=AGENT_SERVICE_SCHEMA,
    Checks=ListOf(HEALTH_CHECK_SCHEMA),
)
