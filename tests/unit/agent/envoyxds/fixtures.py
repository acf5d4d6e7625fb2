"""Snapshots for the xDS golden tests: fixed certificates (tests/golden/xds/certs), fixed names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lictor.agent.proxycfg.snapshot import AccessLogs, ConfigSnapshot, Tracing, Endpoint, Leaf, Route, Target, Upstream
from lictor.server.configentry.intentions import Intention

CERTS = Path(__file__).resolve().parents[3] / "golden" / "xds" / "certs"
TD = "11111111-2222-3333-4444-555555555555.consul"


def _read(name: str) -> str:
    return (CERTS / name).read_text()


def target(service: str, *, endpoints: tuple[Endpoint, ...] = (), subset: str = "", timeout: float = 5.0) -> Target:
    name = ".".join(p for p in (subset, service, "default", "dc1") if p) + f".internal.{TD}"
    return Target(id=".".join(p for p in (subset, service, "default", "default", "dc1") if p), service=service,
                  datacenter="dc1", cluster_name=name, sni=name,
                  spiffe_id=f"spiffe://{TD}/ns/default/dc/dc1/svc/{service}", connect_timeout=timeout,
                  endpoints=endpoints)


def ix(src: str, dst: str, action: str = "", permissions: tuple[dict, ...] = ()) -> Intention:  # type: ignore[type-arg]
    return Intention(source_ns="default", source_name=src, destination_ns="default", destination_name=dst,
                     action=action, permissions=permissions)


def base(service: str = "web", *, protocol: str = "tcp") -> ConfigSnapshot:
    return ConfigSnapshot(
        proxy_id=f"{service}-sidecar-proxy", proxy_name=f"{service}-sidecar-proxy", service=service, datacenter="dc1",
        trust_domain=TD, bind_address="0.0.0.0", port=21000, local_app_address="127.0.0.1", local_app_port=8080,
        protocol=protocol, leaf=Leaf(cert_pem=_read(f"{service}.pem"), key_pem=_read(f"{service}-key.pem")),
        roots_pem=(_read("ca.pem"),), default_allow=True)


API_EPS = (Endpoint(address="10.0.0.2", port=21000, node="n2"),
           Endpoint(address="10.0.0.3", port=21000, node="n3", weight=3),
           Endpoint(address="10.0.0.4", port=21000, node="n4", healthy=False))


def tcp_web_with_upstream() -> ConfigSnapshot:
    up = Upstream(name="api", destination_name="api", local_bind_address="127.0.0.1", local_bind_port=9191,
                  protocol="tcp", targets=(target("api", endpoints=API_EPS),))
    return replace(base("web"), upstreams=(up,))


def http_web_with_upstream() -> ConfigSnapshot:
    up = Upstream(name="api", destination_name="api", local_bind_address="127.0.0.1", local_bind_port=9191,
                  protocol="http", targets=(target("api", endpoints=API_EPS),))
    return replace(base("web", protocol="http"), upstreams=(up,))


def http_split_routes() -> ConfigSnapshot:
    v1, v2 = target("api", subset="v1", endpoints=API_EPS[:1]), target("api", subset="v2", endpoints=API_EPS[1:2])
    routes = (Route(match=(("prefix", "/admin"), ("method", "POST")), clusters=((v2.cluster_name, 1),), timeout=3.0),
              Route(clusters=((v1.cluster_name, 90), (v2.cluster_name, 10))))
    up = Upstream(name="api", destination_name="api", local_bind_address="127.0.0.1", local_bind_port=9191,
                  protocol="http", targets=(v1, v2), routes=routes)
    return replace(base("web", protocol="http"), upstreams=(up,))


def tcp_api_default_deny() -> ConfigSnapshot:
    return replace(base("api"), default_allow=False,
                   intentions=(ix("web", "api", "allow"), ix("*", "api", "deny")))


def tcp_api_default_allow_deny_one() -> ConfigSnapshot:
    return replace(base("api"), intentions=(ix("evil", "api", "deny"), ix("web", "api", "allow"),
                                            ix("*", "api", "deny")))


def http_api_l7() -> ConfigSnapshot:
    perms = ({"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
             {"Action": "allow", "HTTP": {"PathExact": "/ok", "Methods": ["GET", "HEAD"]}},
             {"Action": "allow", "HTTP": {"PathRegex": "/v[0-9]+/.*",
                                          "Header": [{"Name": "X-Env", "Exact": "prod"}, {"Name": "X-Debug",
                                                                                          "Present": True,
                                                                                          "Invert": True}]}})
    return replace(base("api", protocol="http"), default_allow=False,
                   intentions=(ix("web", "api", permissions=perms), ix("*", "api", "allow")))


def tcp_api_permissive() -> ConfigSnapshot:
    return replace(base("api"), mutual_tls_mode="permissive")


def grpc_api() -> ConfigSnapshot:
    return replace(base("api", protocol="grpc"), local_connect_timeout=0.25)


def http_web_access_logs_json() -> ConfigSnapshot:
    """Default JSON access logs to stdout, listener logs on: the strict public listener matches
    TLS only, so a refused plaintext connection is logged (NR)."""
    return replace(http_web_with_upstream(), access_logs=AccessLogs(enabled=True))


def tcp_web_access_logs_text_file() -> ConfigSnapshot:
    return replace(tcp_web_with_upstream(), access_logs=AccessLogs(
        enabled=True, disable_listener_logs=True, type="file", path="/tmp/lictor-access.log",
        text_format="[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% -> %UPSTREAM_CLUSTER% %RESPONSE_FLAGS%"))


def tcp_api_permissive_access_logs_custom_json() -> ConfigSnapshot:
    return replace(tcp_api_permissive(), access_logs=AccessLogs(
        enabled=True, type="stderr", json_format='{"flags": "%RESPONSE_FLAGS%", "peer": {"addr": '
                                                '"%DOWNSTREAM_REMOTE_ADDRESS%"}}'))


JWKS_INLINE = ("eyJrZXlzIjogW3sia3R5IjogIkVDIiwgImNydiI6ICJQLTI1NiIsICJ4IjogImh3UkU0OUc3NXQtR1RsSFhmbUtFa2xSQVNtTGQ3"
               "cjZRdTBhOEpRNjlSbEUiLCAieSI6ICJHSEFDTlJaX0VmcHFBbF9sYk5nU3dYTXVDbHZJQTF5SHkxRjZUSGVTREhJIiwgImtpZCI6"
               "ICJrMSIsICJhbGciOiAiRVMyNTYifV19")


def _jwt_entry(name: str, **body: object) -> tuple[str, str]:
    import json

    return name, json.dumps({"Kind": "jwt-provider", "Name": name, **body}, sort_keys=True)


def http_api_jwt() -> ConfigSnapshot:
    """A remote (RS256, JWKS over HTTP) and a local (inline ES256) provider; an entry-level
    requirement with default deny (so a missing token is a 401) and a claim check per permission."""
    jwt_entry = {"Providers": [{"Name": "okta"}, {"Name": "local"}]}
    perms = ({"Action": "allow", "HTTP": {"PathPrefix": "/admin"},
              "JWT": {"Providers": [{"Name": "okta", "VerifyClaims": [{"Path": ["role"], "Value": "admin"}]}]}},
             {"Action": "allow", "HTTP": {"PathPrefix": "/public"}})
    web = replace(ix("web", "api", permissions=perms), jwt=jwt_entry)
    other = replace(ix("*", "api", "allow"), jwt={"Providers": [{"Name": "local", "VerifyClaims": [
        {"Path": ["realm", "team"], "Value": "ops"}]}]})
    providers = (
        _jwt_entry("okta", Issuer="https://okta.example", Audiences=["api"], JSONWebKeySet={"Remote": {
            "URI": "http://127.0.0.1:8089/jwks", "CacheDuration": "5m", "RequestTimeoutMs": 1500,
            "RetryPolicy": {"NumRetries": 2, "RetryPolicyBackOff": {"BaseInterval": "1s", "MaxInterval": "5s"}}}},
            Locations=[{"Header": {"Name": "Authorization", "ValuePrefix": "Bearer ", "Forward": True}}],
            Forwarding={"HeaderName": "x-jwt-payload"}, ClockSkewSeconds=30),
        _jwt_entry("local", Issuer="local", JSONWebKeySet={"Local": {"JWKS": JWKS_INLINE}},
                   Locations=[{"QueryParam": {"Name": "token"}}, {"Cookie": {"Name": "jwt"}}]),
        _jwt_entry("unused", JSONWebKeySet={"Remote": {"URI": "https://keys.example.com/jwks"}}),
    )
    return replace(base("api", protocol="http"), default_allow=False, intentions=(web, other),
                   jwt_providers=providers)


def http_api_jwt_default_allow() -> ConfigSnapshot:
    """Default allow: a missing token passes jwt_authn, the DENY RBAC refuses what needs one."""
    snap = http_api_jwt()
    return replace(snap, default_allow=True, jwt_providers=snap.jwt_providers[1:2] + (_jwt_entry(
        "okta", Issuer="https://okta.example", JSONWebKeySet={"Remote": {
            "URI": "https://okta.example/keys", "UseSNI": True}}),))


def http_web_tracing_zipkin_address() -> ConfigSnapshot:
    return replace(http_web_with_upstream(), tracing=Tracing(
        provider="zipkin", collector_address="127.0.0.1:9411", sampling_percent=25.0,
        custom_tags=(("tenant", "header", "x-tenant"), ("mesh", "literal", "lictor"))))


def http_web_tracing_otel_service() -> ConfigSnapshot:
    """OTLP/gRPC to a collector that is a mesh service (its upstream cluster, no listener)."""
    snap = http_web_with_upstream()
    collector = Upstream(name="otel-collector", destination_name="otel-collector", local_bind_address="127.0.0.1",
                         local_bind_port=0, protocol="grpc",
                         targets=(target("otel-collector", endpoints=API_EPS[:1]),))
    return replace(snap, upstreams=snap.upstreams + (collector,),
                   tracing=Tracing(provider="opentelemetry", collector_service="otel-collector"))


CASES = {
    "tcp-web-upstream": tcp_web_with_upstream,
    "http-web-upstream": http_web_with_upstream,
    "http-web-split-routes": http_split_routes,
    "tcp-api-default-deny": tcp_api_default_deny,
    "tcp-api-default-allow": tcp_api_default_allow_deny_one,
    "http-api-l7": http_api_l7,
    "tcp-api-permissive": tcp_api_permissive,
    "grpc-api": grpc_api,
    "http-web-access-logs-json": http_web_access_logs_json,
    "tcp-web-access-logs-text-file": tcp_web_access_logs_text_file,
    "tcp-api-permissive-access-logs": tcp_api_permissive_access_logs_custom_json,
    "http-api-jwt": http_api_jwt,
    "http-api-jwt-default-allow": http_api_jwt_default_allow,
    "http-web-tracing-zipkin": http_web_tracing_zipkin_address,
    "http-web-tracing-otel-service": http_web_tracing_otel_service,
}


# ----- traffic management (issue 12): real config entries -> compiled chain -> proxycfg -> snapshot

TRAFFIC_ENTRIES: list[dict] = [  # type: ignore[type-arg]
    {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
     "UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 50}}}},
    {"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "RequestTimeout": "7s",
     "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"},
                 "v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": True}},
     "LoadBalancer": {"Policy": "ring_hash", "RingHashConfig": {"MinimumRingSize": 1024},
                      "HashPolicies": [{"Field": "header", "FieldValue": "x-user"},
                                       {"Field": "cookie", "FieldValue": "sess", "CookieConfig": {"TTL": "10s"}},
                                       {"SourceIP": True, "Terminal": True}]}},
    {"Kind": "service-resolver", "Name": "shadow", "LoadBalancer": {
        "Policy": "least_request", "LeastRequestConfig": {"ChoiceCount": 3}}},
    {"Kind": "service-splitter", "Name": "api", "Splits": [
        {"Weight": 90, "ServiceSubset": "v1", "RequestHeaders": {"Set": {"x-split": "v1"}}},
        {"Weight": 10, "ServiceSubset": "v2", "ResponseHeaders": {"Add": {"x-canary": "1"}, "Remove": ["server"]}}],
     "Mirrors": [{"Service": "shadow", "Percent": 0.5}]},
    {"Kind": "service-router", "Name": "api", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/v2", "Header": [{"Name": "x-env", "Exact": "canary"},
                                                            {"Name": "x-debug", "Present": True, "Invert": True},
                                                            {"Name": "x-agent", "Suffix": "bot", "IgnoreCase": True},
                                                            {"Name": "x-id", "Regex": "[0-9]+"}]}},
         "Destination": {"ServiceSubset": "v2", "PrefixRewrite": "/", "RequestTimeout": "2s", "IdleTimeout": "30s",
                         "NumRetries": 3, "RetryOnConnectFailure": True, "RetryOn": ["reset"],
                         "RetryOnStatusCodes": [503], "PerTryTimeout": "500ms",
                         "RequestHeaders": {"Add": {"x-a": "1"}, "Set": {"x-s": "2"}, "Remove": ["x-r"]},
                         "ResponseHeaders": {"Set": {"x-served-by": "v2"}}}},
        {"Match": {"HTTP": {"PathExact": "/q", "QueryParam": [{"Name": "beta", "Exact": "1"},
                                                             {"Name": "trace", "Present": True},
                                                             {"Name": "id", "Regex": "[a-z]+"}],
                            "Methods": ["GET", "POST"]}},
         "Destination": {"ServiceSubset": "v1",
                         "RequestMirrorPolicies": [{"Service": "shadow", "Percent": 12.5}],
                         "FaultInjection": {"Delay": {"Duration": "1.5s", "Percent": 10},
                                            "Abort": {"HTTPStatus": 503, "Percent": 5.25},
                                            "HeaderMatch": [{"Name": "x-fault", "Exact": "yes"}]}}},
        {"Match": {"HTTP": {"PathRegex": "/g/[a-z]+"}},
         "Destination": {"ServiceSubset": "v1", "FaultInjection": {"Abort": {"GRPCStatus": 14, "Percent": 100}},
                         "RateLimit": {"RequestsPerSecond": 5, "RequestsMaxBurst": 10}}},
    ]},
    {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "UpstreamConfig": {
        "Defaults": {"PassiveHealthCheck": {"Interval": "1s", "MaxFailures": 3}},
        "Overrides": [{"Name": "api", "Limits": {"MaxConnections": 1, "MaxPendingRequests": 1,
                                                 "MaxConcurrentRequests": 10, "MaxRetries": 2},
                       "RetryBudget": {"BudgetPercent": 25.0, "MinRetryConcurrency": 2},
                       "PassiveHealthCheck": {"Interval": "2s", "MaxFailures": 5, "EnforcingConsecutive5xx": 100,
                                              "MaxEjectionPercent": 50, "BaseEjectionTime": "10s"}}]}},
]


def traffic_upstream(entries: list[dict] | None = None, service: str = "api") -> Upstream:  # type: ignore[type-arg]
    """The Upstream proxycfg builds for web -> ``service`` from real entries (validated, compiled)."""
    from lictor.agent.proxycfg.state import _node_targets, merged_upstream_config, routes_from_chain
    from lictor.server.configentry.chain import compile_chain
    from lictor.server.configentry.entries import DictView, decode_entry

    bodies = [decode_entry(e) for e in (entries if entries is not None else TRAFFIC_ENTRIES)]
    view = DictView(bodies)
    chain = compile_chain(view, service, datacenter="dc1", trust_domain=TD)
    import json as _json

    names, targets = {}, []
    lbs = {n["Resolver"]["Target"]: _json.dumps(n["LoadBalancer"], sort_keys=True)
           for n in chain["Nodes"].values() if n["Type"] == "resolver" and n.get("LoadBalancer")}
    for tid, t in chain["Targets"].items():
        names[tid] = t["SNI"]
        targets.append(Target(id=tid, service=t["Service"], datacenter="dc1", cluster_name=t["SNI"], sni=t["SNI"],
                              spiffe_id=f"spiffe://{TD}/ns/default/dc/dc1/svc/{t['Service']}",
                              endpoints=API_EPS[:2], load_balancer=lbs.get(tid, "")))
    start = [tid for tid, _ in _node_targets(chain, chain["StartNode"])]
    targets.sort(key=lambda t: (t.id not in start[:1], t.id))
    ucfg = merged_upstream_config(service, view.get("proxy-defaults", "global"), view.get("service-defaults", "web"))
    return Upstream(name=service, destination_name=service, local_bind_address="127.0.0.1", local_bind_port=9191,
                    protocol=chain["Protocol"], targets=tuple(targets), routes=routes_from_chain(chain, names),
                    config_json=_json.dumps(ucfg, sort_keys=True) if ucfg else "")


def http_traffic() -> ConfigSnapshot:
    return replace(base("web", protocol="http"), upstreams=(traffic_upstream(),))


CASES["http-web-traffic"] = http_traffic


def http_api_rate_limits() -> ConfigSnapshot:
    import json as _json

    rl = {"RequestsPerSecond": 2.5, "RequestsMaxBurst": 10, "Routes": [
        {"PathPrefix": "/api", "RequestsPerSecond": 100}, {"PathExact": "/login", "RequestsPerSecond": 1,
                                                           "RequestsMaxBurst": 3},
        {"PathRegex": "/v[0-9]+/search", "RequestsPerSecond": 30.5}]}
    fault = {"Delay": {"Duration": "100ms", "Percent": 1.5}, "Abort": {"HTTPStatus": 503, "Percent": 0.1}}
    return replace(base("api", protocol="http"), rate_limits_json=_json.dumps(rl, sort_keys=True),
                   fault_json=_json.dumps(fault, sort_keys=True))


def http_api_route_limits_only() -> ConfigSnapshot:
    import json as _json

    rl = {"Routes": [{"PathPrefix": "/expensive", "RequestsPerSecond": 0.5}]}
    return replace(base("api", protocol="http"), rate_limits_json=_json.dumps(rl, sort_keys=True))


CASES["http-api-rate-limits"] = http_api_rate_limits
CASES["http-api-route-rate-limits"] = http_api_route_limits_only


def ingress_gateway() -> ConfigSnapshot:
    from lictor.agent.proxycfg.snapshot import GatewayListener

    api = traffic_upstream()
    api = replace(api, local_bind_port=0)
    web = Upstream(name="web", destination_name="web", local_bind_address="", local_bind_port=0, protocol="http",
                   targets=(target("web", endpoints=API_EPS[:1]),))
    db = Upstream(name="db", destination_name="db", local_bind_address="", local_bind_port=0, protocol="tcp",
                  targets=(target("db", endpoints=API_EPS[2:]),))
    listeners = (
        GatewayListener(port=8080, protocol="http", services=(
            ("api", ("api.example.com", "api.example.com:8080"), '{"RequestHeaders": {"Set": {"x-gw": "1"}}}'),
            ("web", (), ""))),
        GatewayListener(port=9000, protocol="tcp", services=(("db", (), ""),)),
    )
    return replace(base("web"), proxy_id="ig", proxy_name="ig", service="ig", kind="ingress-gateway",
                   bind_address="127.0.0.1", port=0, local_app_port=0, upstreams=(api, web, db),
                   gateway_listeners=listeners, leaf=Leaf(cert_pem=_read("web.pem"), key_pem=_read("web-key.pem")))


CASES["ingress-gateway"] = ingress_gateway
