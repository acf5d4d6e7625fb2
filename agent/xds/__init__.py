"""xDS: Envoy configuration from a ConfigSnapshot, served over ADS.

::

    ConfigSnapshot --resources_from_snapshot()--> {type_url: {name: protobuf}}   (pure, no I/O)
        clusters.py   local_app + one cluster per upstream target (mTLS, SNI, SAN match)
        endpoints.py  one ClusterLoadAssignment per EDS cluster (healthy instances, weights)
        listeners.py  public listener (TLS required, RBAC from intentions) + upstream listeners
        routes.py     RDS for http upstreams
        rbac.py       intentions -> Envoy RBAC (network for tcp, HTTP with L7 permissions)
        secrets.py    SDS: the leaf certificate and the CA roots
    stream.py   sans-I/O ADS state (SotW and Delta): versions, nonces, ACK/NACK, ordering
    server.py   grpc.aio AggregatedDiscoveryService driving stream.py per Envoy

Defaults follow the measured hand-written anchor pair (../shared/anchors/envoy/RESULTS.md):
TLS 1.3 allowed on both sides, HTTP/2 between sidecars for http/http2/grpc services,
``generate_request_id: false``, ``suppress_envoy_headers: true``, circuit breakers that do not
throttle, and 300 s idle keep-alive on upstream pools.
"""
