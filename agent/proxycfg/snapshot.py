"""ConfigSnapshot: the frozen input of xDS generation (see agent/xds/resources.py).

Everything here is a plain immutable value: the generator reads nothing else (no clock, no
store, no logger), so the same snapshot always gives the same Envoy resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lictor.server.configentry.intentions import Intention

__all__ = ["AccessLogs", "Tracing", "ConfigSnapshot", "Endpoint", "GatewayListener", "Leaf", "Route", "Target",
           "Upstream", "HTTP_PROTOCOLS"]

HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One instance of a target: the address Envoy dials (the destination's sidecar)."""

    address: str
    port: int
    healthy: bool = True  # passing (or warning, unless the target wants only passing)
    weight: int = 1
    node: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A chain target (service/subset/dc) as one Envoy cluster."""

    id: str  # the chain's target id, e.g. "api.default.default.dc1"
    service: str
    datacenter: str
    cluster_name: str  # Consul's SNI name: <svc>.default.<dc>.internal.<trust-domain>
    sni: str
    spiffe_id: str  # the destination identity the client checks (SAN match)
    connect_timeout: float = 5.0
    endpoints: tuple[Endpoint, ...] = ()
    #: the resolver's ``LoadBalancer`` as sorted JSON ("" for round robin, no hash policies)
    load_balancer: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One HTTP route of an upstream (from a service-router), or the catch-all.

    ``match`` is a tuple of (kind, value) pairs: ("prefix", "/"), ("exact", "/x"),
    ("regex", "..."), ("method", "GET"), ("header", "name=value"). ``clusters`` are
    (cluster name, weight) pairs; one pair means no split."""

    match: tuple[tuple[str, str], ...] = (("prefix", "/"),)
    clusters: tuple[tuple[str, int], ...] = ()
    timeout: float = 15.0
    #: a service-router route's ``Match.HTTP`` as sorted JSON; when set it replaces ``match``
    match_json: str = ""
    #: the route's ``Destination`` (rewrite, idle timeout, retries, headers, faults) as sorted JSON
    action_json: str = ""
    #: (cluster name, sorted JSON of a split's RequestHeaders/ResponseHeaders)
    split_headers: tuple[tuple[str, str], ...] = ()
    #: (cluster name, percent) copies of each request, answers ignored
    mirrors: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    name: str  # the upstream's identifier (its destination name)
    destination_name: str
    local_bind_address: str
    local_bind_port: int
    protocol: str = "tcp"
    targets: tuple[Target, ...] = ()
    routes: tuple[Route, ...] = ()  # http upstreams; empty -> catch-all to targets[0]
    #: the merged ``UpstreamConfig`` (Limits, PassiveHealthCheck, RetryBudget) as sorted JSON
    config_json: str = ""

    @property
    def listener_name(self) -> str:
        return f"{self.name}:{self.local_bind_address}:{self.local_bind_port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayListener:
    """One ingress-gateway listener: a port and, per service, the host names it answers for
    (empty: ``<service>.ingress.*``) and the request/response header changes (sorted JSON)."""

    port: int
    protocol: str = "http"
    services: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # (upstream name, hosts, headers JSON)


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    cert_pem: str
    key_pem: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLogs:
    """proxy-defaults ``AccessLogs`` (Consul's fields). ``json_format`` is the JSON object as
    canonical text (sorted keys), "" for the default format."""

    enabled: bool = False
    disable_listener_logs: bool = False
    type: str = "stdout"  # stdout | stderr | file
    path: str = ""
    json_format: str = ""
    text_format: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracing:
    """The ``Tracing`` block (service-defaults over proxy-defaults). The collector is a mesh
    service (reached over mTLS through its upstream cluster) or a host:port."""

    provider: str  # zipkin | opentelemetry
    collector_service: str = ""
    collector_address: str = ""
    sampling_percent: float = 100.0
    custom_tags: tuple[tuple[str, str, str], ...] = ()  # (tag, "header"|"literal", value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSnapshot:
    """What one connect-proxy needs. Built by agent/proxycfg/state.py, read by agent/xds."""

    proxy_id: str
    proxy_name: str
    service: str  # the destination service this sidecar fronts
    datacenter: str
    trust_domain: str
    bind_address: str
    port: int
    local_app_address: str
    local_app_port: int
    protocol: str = "tcp"
    mutual_tls_mode: str = "strict"  # or "permissive"
    local_connect_timeout: float = 5.0
    local_request_timeout: float = 15.0
    leaf: Leaf
    roots_pem: tuple[str, ...]
    intentions: tuple[Intention, ...] = ()  # those whose destination matches ``service``, by precedence
    default_allow: bool = True
    upstreams: tuple[Upstream, ...] = ()
    prometheus_bind_addr: str = ""
    #: Consul's escape hatch (proxy Config ``envoy_local_cluster_json``): a Cluster, as JSON, that
    #: replaces the generated ``local_app`` cluster. proxycfg checks that it parses as a Cluster;
    #: Envoy still judges its meaning (a bad one is NACKed and the last good config stays).
    local_cluster_json: str = ""
    access_logs: AccessLogs | None = None
    #: jwt-provider entries as (name, canonical JSON), sorted by name (agent/xds/jwt.py uses the
    #: ones this service's intentions name)
    jwt_providers: tuple[tuple[str, str], ...] = ()
    #: service-defaults ``RateLimits.InstanceLevel`` as sorted JSON: a local token bucket on the
    #: public listener (http only), per instance and per route
    rate_limits_json: str = ""
    #: "connect-proxy" (a sidecar) or "ingress-gateway" (listeners from the ingress-gateway entry,
    #: no public listener; upstreams are its services, with no local listener of their own)
    kind: str = "connect-proxy"
    gateway_listeners: tuple[GatewayListener, ...] = ()
    #: service-defaults ``FaultInjection`` as sorted JSON: faults on all inbound requests (http only)
    fault_json: str = ""
    tracing: Tracing | None = None

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/default/dc/{self.datacenter}/svc/{self.service}"

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS
