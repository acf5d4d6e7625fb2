"""Tests for lictor.common.servicedef: Consul service/check definitions in both spellings."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lictor.common.errors import ValidationError
from lictor.common.servicedef import (
    CheckDefinition,
    ServiceDefinition,
    check_row_payload,
    expand_sidecar,
    parse_check_definition,
    parse_service_definition,
    service_row_payload,
)
from lictor.common.structs import CheckRow, ServiceRow, check_to_api, service_to_agent_api

# --------------------------------------------------------------------------------------------
# Both spellings: config-file snake_case and HTTP API PascalCase give equal definitions.

SPELLING_PAIRS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "http check",
        {"name": "web", "port": 80, "check": {"id": "c1", "http": "http://localhost/h", "interval": "10s",
                                             "timeout": "1s", "tls_skip_verify": True, "tls_server_name": "x",
                                             "method": "POST", "body": "{}", "disable_redirects": True,
                                             "header": {"X-Token": ["a", "b"]}, "service_id": "ignored",
                                             "deregister_critical_service_after": "90m",
                                             "success_before_passing": 2, "failures_before_critical": 3,
                                             "output_max_size": 100}},
        {"Name": "web", "Port": 80, "Check": {"CheckID": "c1", "HTTP": "http://localhost/h", "Interval": "10s",
                                             "Timeout": "1s", "TLSSkipVerify": True, "TLSServerName": "x",
                                             "Method": "POST", "Body": "{}", "DisableRedirects": True,
                                             "Header": {"X-Token": ["a", "b"]}, "ServiceID": "ignored",
                                             "DeregisterCriticalServiceAfter": "90m",
                                             "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3,
                                             "OutputMaxSize": 100}},
    ),
    (
        "script and grpc checks",
        {"name": "db", "checks": [{"args": ["/bin/true", "-v"], "interval": "30s"},
                                  {"grpc": "127.0.0.1:9000/svc", "grpc_use_tls": True, "interval": "5s"}]},
        {"Name": "db", "Checks": [{"ScriptArgs": ["/bin/true", "-v"], "Interval": "30s"},
                                  {"GRPC": "127.0.0.1:9000/svc", "GRPCUseTLS": True, "Interval": "5s"}]},
    ),
    (
        "h2ping, udp, tcp, ttl, alias",
        {"name": "m", "checks": [{"h2ping": "h:1", "h2ping_use_tls": False, "interval": "10s"},
                                 {"udp": "h:53", "interval": "10s"}, {"tcp": "h:1", "tcp_use_tls": True,
                                                                      "interval": "10s"},
                                 {"ttl": "30s", "status": "passing", "notes": "n"},
                                 {"alias_node": "n1", "alias_service": "s1"}]},
        {"Name": "m", "Checks": [{"H2PING": "h:1", "H2PingUseTLS": False, "Interval": "10s"},
                                 {"UDP": "h:53", "Interval": "10s"}, {"TCP": "h:1", "TCPUseTLS": True,
                                                                      "Interval": "10s"},
                                 {"TTL": "30s", "Status": "passing", "Notes": "n"},
                                 {"AliasNode": "n1", "AliasService": "s1"}]},
    ),
    (
        "service fields",
        {"name": "web", "id": "web-1", "tags": ["a", "b"], "address": "10.0.0.1", "port": 8080,
         "enable_tag_override": True, "weights": {"passing": 10, "warning": 2},
         "tagged_addresses": {"lan_ipv4": {"address": "10.0.0.1", "port": 8080}, "WAN": {"address": "1.2.3.4"}},
         "meta": {"Version": "1", "snake_key": "x"}, "locality": {"region": "r", "zone": "z"}, "token": "t"},
        {"Name": "web", "ID": "web-1", "Tags": ["a", "b"], "Address": "10.0.0.1", "Port": 8080,
         "EnableTagOverride": True, "Weights": {"Passing": 10, "Warning": 2},
         "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.1", "Port": 8080}, "WAN": {"Address": "1.2.3.4"}},
         "Meta": {"Version": "1", "snake_key": "x"}, "Locality": {"Region": "r", "Zone": "z"}, "Token": "t"},
    ),
    (
        "connect proxy",
        {"kind": "connect-proxy", "name": "web-proxy", "port": 21000,
         "proxy": {"destination_service_name": "web", "destination_service_id": "web-1",
                   "local_service_address": "127.0.0.1", "local_service_port": 8080, "mode": "direct",
                   "config": {"protocol": "http", "Some_Key": {"nested_key": 1}},
                   "upstreams": [{"destination_name": "db", "local_bind_port": 9191, "datacenter": "dc2",
                                  "destination_type": "prepared_query", "config": {"connect_timeout_ms": 5},
                                  "mesh_gateway": {"mode": "local"}}],
                   "mesh_gateway": {"mode": "remote"},
                   "expose": {"checks": True, "paths": [{"path": "/metrics", "local_path_port": 8080,
                                                         "listener_port": 21500, "protocol": "http"}]},
                   "transparent_proxy": {"outbound_listener_port": 15001, "dialed_directly": True}}},
        {"Kind": "connect-proxy", "Name": "web-proxy", "Port": 21000,
         "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1",
                   "LocalServiceAddress": "127.0.0.1", "LocalServicePort": 8080, "Mode": "direct",
                   "Config": {"protocol": "http", "Some_Key": {"nested_key": 1}},
                   "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191, "Datacenter": "dc2",
                                  "DestinationType": "prepared_query", "Config": {"connect_timeout_ms": 5},
                                  "MeshGateway": {"Mode": "local"}}],
                   "MeshGateway": {"Mode": "remote"},
                   "Expose": {"Checks": True, "Paths": [{"Path": "/metrics", "LocalPathPort": 8080,
                                                         "ListenerPort": 21500, "Protocol": "http"}]},
                   "TransparentProxy": {"OutboundListenerPort": 15001, "DialedDirectly": True}}},
    ),
    (
        "sidecar and socket path",
        {"name": "web", "socket_path": "/run/web.sock",
         "connect": {"sidecar_service": {"port": 21010, "tags": ["s"],
                                         "proxy": {"upstreams": [{"destination_name": "db",
                                                                  "local_bind_port": 1}]}}}},
        {"Name": "web", "SocketPath": "/run/web.sock",
         "Connect": {"SidecarService": {"Port": 21010, "Tags": ["s"],
                                        "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 1}]}}}},
    ),
    (
        "native",
        {"name": "n", "port": 1, "connect": {"native": True}},
        {"Name": "n", "Port": 1, "Connect": {"Native": True}},
    ),
]


@pytest.mark.parametrize(("snake", "pascal"), [p[1:] for p in SPELLING_PAIRS], ids=[p[0] for p in SPELLING_PAIRS])
def test_both_spellings_give_equal_definitions(snake: dict[str, Any], pascal: dict[str, Any]) -> None:
    a = parse_service_definition(snake)
    b = parse_service_definition(pascal)
    assert a == b
    assert a.warnings == () and b.warnings == ()
    assert service_row_payload(a) == service_row_payload(b)


def test_spelled_fields_land_where_expected() -> None:
    svc = parse_service_definition(SPELLING_PAIRS[0][2])
    (c,) = svc.checks
    assert (c.id, c.type, c.http, c.interval, c.timeout) == ("c1", "http", "http://localhost/h", 10.0, 1.0)
    assert c.tls_skip_verify and c.disable_redirects and c.tls_server_name == "x"
    assert c.service_id == "web"  # a service's check always belongs to it
    assert c.deregister_critical_service_after == 5400.0
    assert (c.success_before_passing, c.failures_before_critical, c.output_max_size) == (2, 3, 100)
    svc = parse_service_definition(SPELLING_PAIRS[3][2])
    assert svc.weights == {"Passing": 10, "Warning": 2}
    assert svc.tagged_addresses == {"lan_ipv4": {"Address": "10.0.0.1", "Port": 8080},
                                    "WAN": {"Address": "1.2.3.4", "Port": 0}}
    assert svc.locality == {"Region": "r", "Zone": "z"}
    assert svc.token == "t"
    assert "token" not in repr(svc)


@pytest.mark.parametrize("key", ["Name", "name", "NAME", "nAmE", "na_me"])
def test_key_case_and_underscores_do_not_matter(key: str) -> None:
    assert parse_service_definition({key: "web"}).name == "web"


@pytest.mark.parametrize(
    ("spelling", "field", "value"),
    [
        ({"service_id": "s"}, "service_id", "s"),
        ({"ServiceId": "s"}, "service_id", "s"),
        ({"serviceID": "s"}, "service_id", "s"),
        ({"TlsSkipVerify": True}, "tls_skip_verify", True),
        ({"tls_server_name": "h"}, "tls_server_name", "h"),
        ({"TLSServerName": "h"}, "tls_server_name", "h"),
        ({"grpc_use_tls": True}, "grpc_use_tls", True),
        ({"GrpcUseTls": True}, "grpc_use_tls", True),
        ({"script_args": ["x"]}, "args", ("x",)),
        ({"check_id": "cid"}, "id", "cid"),
        ({"ID": "cid"}, "id", "cid"),
        ({"ttl": "1m", "TTL": "1m"}, "ttl", 60.0),
    ],
)
def test_check_aliases(spelling: dict[str, Any], field: str, value: Any) -> None:
    data: dict[str, Any] = {"Name": "c", "TTL": "10s", **spelling}
    if field == "args":
        data = {"Name": "c", "Interval": "10s", **spelling}
    check = parse_check_definition(data)
    assert getattr(check, field) == value


def test_duplicate_spellings_agree_or_fail() -> None:
    assert parse_service_definition({"name": "a", "Name": "a"}).name == "a"
    with pytest.raises(ValidationError, match="'name' and 'Name' are the same key"):
        parse_service_definition({"name": "a", "Name": "b"})


def test_user_map_keys_are_preserved_exactly() -> None:
    svc = parse_service_definition({
        "Name": "web", "Port": 1,
        "Meta": {"Some_Key": "1", "UPPER": "2", "lower-dash": "3"},
        "TaggedAddresses": {"Lan_IPv4": {"Address": "10.0.0.1", "Port": 1}},
        "Check": {"HTTP": "http://x", "Interval": "10s",
                  "Header": {"X-Custom_Header": ["v"], "content-type": "text/plain"}},
        "Connect": {"SidecarService": {"Proxy": {"Config": {"Envoy_Extra": {"Deep_Key": [{"ID": 1}]}},
                                                 "Upstreams": [{"DestinationName": "db", "LocalBindPort": 2,
                                                                "Config": {"Upstream_Key": True}}]}}},
    })
    assert list(svc.meta) == ["Some_Key", "UPPER", "lower-dash"]
    assert list(svc.tagged_addresses) == ["Lan_IPv4"]
    assert svc.checks[0].header == {"X-Custom_Header": ["v"], "content-type": ["text/plain"]}
    sidecar = svc.sidecar_service
    assert sidecar is not None
    assert sidecar.proxy["Config"] == {"Envoy_Extra": {"Deep_Key": [{"ID": 1}]}}
    assert sidecar.proxy["Upstreams"][0]["Config"] == {"Upstream_Key": True}


def test_user_maps_are_copied_not_shared() -> None:
    config: dict[str, Any] = {"k": {"n": 1}}
    svc = parse_service_definition({"name": "p", "kind": "connect-proxy", "port": 1,
                                    "proxy": {"destination_service_name": "w", "config": config}})
    config["k"]["n"] = 2
    assert svc.proxy["Config"] == {"k": {"n": 1}}


def test_unknown_keys_warn() -> None:
    svc = parse_service_definition({"name": "web", "Bogus": 1, "check": {"ttl": "5s", "whatever": 2}},
                                   where="service")
    assert svc.warnings == ("service.Bogus: unknown key, ignored", "service.check.whatever: unknown key, ignored")
    assert svc == parse_service_definition({"name": "web", "check": {"ttl": "5s"}})
    check = parse_check_definition({"name": "c", "ttl": "5s", "x": 1})
    assert check.warnings == ("x: unknown key, ignored",)


def test_null_means_unset_and_defaults() -> None:
    svc = parse_service_definition({"Name": "web", "ID": None, "Tags": None, "Port": None, "Check": None,
                                    "Checks": [None], "Weights": None, "Meta": None, "Connect": None})
    assert svc == ServiceDefinition(id="web", name="web")
    assert svc.weights == {"Passing": 1, "Warning": 1}
    assert svc.connect == {"Native": False, "SidecarService": None}
    assert svc.proxy == {}
    assert parse_service_definition({"Name": "web", "Proxy": {}}).proxy == {}


def test_lenient_types_where_consul_is() -> None:
    svc = parse_service_definition({"name": "w", "port": "8080", "enable_tag_override": "true",
                                    "meta": {"n": 2}, "weights": {"passing": 3.0}})
    assert (svc.port, svc.enable_tag_override, svc.meta) == (8080, True, {"n": "2"})
    assert svc.weights == {"Passing": 3, "Warning": 1}
    check = parse_check_definition({"name": "c", "interval": 15, "tcp": "h:1", "timeout": 0})
    assert (check.interval, check.timeout) == (15.0, None)


def test_empty_singular_check_is_ignored_like_consul() -> None:
    assert parse_service_definition({"Name": "w", "check": {}}).checks == ()
    assert parse_service_definition({"Name": "w", "Check": {"HTTP": "", "Interval": None}}).checks == ()
    with pytest.raises(ValidationError, match=r"^Checks\[0\]: Check type not supported"):
        parse_service_definition({"Name": "w", "Checks": [{}]})


def test_single_check_block_forms() -> None:
    # HCL's single "checks" block comes through as an object: accepted as one check.
    a = parse_service_definition({"name": "w", "checks": {"ttl": "5s"}})
    b = parse_service_definition({"name": "w", "checks": [{"ttl": "5s"}]})
    assert a == b


# --------------------------------------------------------------------------------------------
# Validation errors name the key path


ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing name", {"port": 1}, r"^service: Missing service name$"),
    ("empty name", {"name": ""}, r"^service: Missing service name$"),
    ("port too big", {"name": "w", "port": 70000}, r"^service\.port: must be between 0 and 65535, got 70000$"),
    ("negative port", {"name": "w", "Port": -1}, r"^service\.Port: must be between 0 and 65535"),
    ("port not a number", {"name": "w", "port": "http"}, r"^service\.port: expected an integer, got a string \"http\""),
    ("port bool", {"name": "w", "port": True}, r"^service\.port: expected an integer"),
    ("port fraction", {"name": "w", "port": 1.5}, r"^service\.port: expected an integer"),
    ("name not string", {"name": 5}, r"^service\.name: expected a string, got a number 5$"),
    ("tags not list", {"name": "w", "tags": "a,b"}, r"^service\.tags: expected a list"),
    ("tag not string", {"name": "w", "tags": ["a", 1]}, r"^service\.tags\[1\]: expected a string"),
    ("bad kind", {"name": "w", "kind": "sidecar"}, r"^service\.kind: invalid service kind \"sidecar\""),
    ("weights passing 0", {"name": "w", "weights": {"passing": 0}},
     r"^service\.weights\.passing: Passing must be greater than 0, got 0$"),
    ("weights warning negative", {"name": "w", "Weights": {"Passing": 1, "Warning": -1}},
     r"^service\.Weights\.Warning: Warning must be greater than or equal to 0"),
    ("meta reserved", {"name": "w", "meta": {"consul-x": "1"}}, r"service\.meta\[\"consul-x\"\]: the key prefix"),
    ("meta bad key", {"name": "w", "meta": {"a b": "1"}}, r"service\.meta\[\"a b\"\]: key may only contain"),
    ("meta value type", {"name": "w", "meta": {"a": ["x"]}}, r"service\.meta\[\"a\"\]: expected a string"),
    ("meta long value", {"name": "w", "meta": {"a": "x" * 513}}, r"value is too long"),
    ("unspecified address", {"name": "w", "address": "0.0.0.0"}, r"^service\.address: \"0\.0\.0\.0\" is not a usable"),
    ("tagged address not object", {"name": "w", "tagged_addresses": {"lan": "1.2.3.4"}},
     r"^service\.tagged_addresses\.lan: expected an object, got a string$"),
    ("bad interval", {"name": "w", "checks": [{"ttl": "5s"}, {"http": "http://x", "interval": "10x"}]},
     r'^service\.checks\[1\]\.interval: invalid duration "10x"'),
    ("negative interval", {"name": "w", "check": {"tcp": "h:1", "Interval": "-5s"}},
     r'^service\.check\.Interval: duration must not be negative, got "-5s"$'),
    ("absurd interval", {"name": "w", "check": {"tcp": "h:1", "interval": "100000h"}},
     r"^service\.check\.interval: duration \"100000h\" is absurdly long"),
    ("interval wrong type", {"name": "w", "check": {"tcp": "h:1", "interval": ["10s"]}},
     r'^service\.check\.interval: expected a duration like "10s", got a list'),
    ("no interval for http", {"name": "w", "check": {"http": "http://x"}},
     r"^service\.check\.interval: Interval must be > 0 for script, HTTP, H2PING, TCP, UDP and gRPC checks$"),
    ("zero interval for tcp", {"name": "w", "check": {"tcp": "h:1", "interval": "0s"}}, r"Interval must be > 0"),
    ("no interval for script", {"name": "w", "check": {"args": ["x"]}}, r"Interval must be > 0"),
    ("no interval for grpc", {"name": "w", "check": {"grpc": "h:1"}}, r"Interval must be > 0"),
    ("no interval for udp", {"name": "w", "check": {"udp": "h:1"}}, r"Interval must be > 0"),
    ("no interval for h2ping", {"name": "w", "check": {"h2ping": "h:1"}}, r"Interval must be > 0"),
    ("negative timeout", {"name": "w", "check": {"tcp": "h:1", "interval": "1s", "timeout": "-1s"}},
     r"^service\.check\.timeout: duration must not be negative"),
    ("ttl zero", {"name": "w", "check": {"ttl": "0s"}}, r"^service\.check\.ttl: TTL must be > 0 for TTL checks$"),
    ("ttl and interval", {"name": "w", "check": {"ttl": "5s", "interval": "5s"}},
     r"^service\.check\.interval: Interval and TTL cannot both be specified$"),
    ("no type", {"name": "w", "check": {"name": "c"}},
     r"^service\.check: Check type not supported: must have one of ttl, http, tcp, udp, grpc, h2ping, args, "
     r"alias_service or alias_node$"),
    ("empty type fields", {"name": "w", "checks": [{"http": "", "args": []}]}, r"^service\.checks\[0\]: Check type"),
    ("old script", {"name": "w", "check": {"script": "/bin/true", "interval": "10s"}},
     r'^service\.check\.script: the "script" field was removed in Consul 1\.1; use "args"'),
    ("docker", {"name": "w", "check": {"docker_container_id": "abc", "args": ["x"], "interval": "10s"}},
     r"^service\.check\.docker_container_id: Docker checks are not supported"),
    ("os_service", {"name": "w", "check": {"os_service": "svc", "interval": "10s"}},
     r"^service\.check\.os_service: os_service checks .* not supported"),
    ("bad status", {"name": "w", "check": {"ttl": "5s", "status": "maintenance"}},
     r"^service\.check\.status: must be one of passing, warning or critical, got \"maintenance\"$"),
    ("args not strings", {"name": "w", "check": {"args": ["a", 2], "interval": "1s"}},
     r"^service\.check\.args\[1\]: expected a string"),
    ("header values", {"name": "w", "check": {"http": "h", "interval": "1s", "header": {"X": [1]}}},
     r"^service\.check\.header\[\"X\"\]: expected a list of strings"),
    ("check not object", {"name": "w", "checks": ["ttl"]}, r"^service\.checks\[0\]: expected an object, got a string$"),
    ("proxy without destination", {"name": "p", "kind": "connect-proxy", "port": 1},
     r"^service\.proxy\.destination_service_name: must be non-empty for a connect-proxy service$"),
    ("proxy without port", {"name": "p", "kind": "connect-proxy", "proxy": {"destination_service_name": "w"}},
     r"^service: port or socket_path must be set for a connect-proxy service$"),
    ("native and sidecar", {"name": "w", "port": 1, "connect": {"native": True, "sidecar_service": {}}},
     r"^service\.connect: a service cannot be both Connect native and have a sidecar_service$"),
    ("native without port", {"name": "w", "connect": {"native": True}},
     r"^service: port or socket_path must be set for a Connect native service$"),
    ("native proxy", {"name": "p", "kind": "connect-proxy", "port": 1, "proxy": {"destination_service_name": "w"},
                      "connect": {"native": True}}, r"cannot be Connect native"),
    ("sidecar with id", {"name": "w", "connect": {"sidecar_service": {"id": "x"}}},
     r"^service\.connect\.sidecar_service\.id: a sidecar_service cannot set an ID"),
    ("sidecar kind", {"name": "w", "connect": {"sidecar_service": {"kind": "mesh-gateway"}}},
     r"sidecar_service is always a connect-proxy"),
    ("nested sidecar", {"name": "w", "connect": {"sidecar_service": {"connect": {"sidecar_service": {}}}}},
     r"cannot have a nested sidecar_service"),
    ("sidecar on proxy", {"name": "p", "kind": "connect-proxy", "port": 1,
                          "proxy": {"destination_service_name": "w"}, "connect": {"sidecar_service": {}}},
     r"a connect-proxy service cannot have a sidecar_service"),
    ("managed proxy", {"name": "w", "connect": {"proxy": {}}}, r"managed proxies were removed"),
    ("upstream without name", {"name": "w", "connect": {"sidecar_service": {"proxy": {"upstreams": [
        {"local_bind_port": 1}]}}}},
     r"^service\.connect\.sidecar_service\.proxy\.upstreams\[0\]\.destination_name: an upstream must name"),
    ("upstream without port", {"name": "w", "connect": {"sidecar_service": {"proxy": {"upstreams": [
        {"destination_name": "db"}]}}}}, r"upstreams\[0\]: local_bind_port or local_bind_socket_path must be set"),
    ("upstream duplicate bind", {"name": "w", "connect": {"sidecar_service": {"proxy": {"upstreams": [
        {"destination_name": "db", "local_bind_port": 5}, {"destination_name": "x", "local_bind_port": 5}]}}}},
     r"upstreams\[1\]: another upstream already binds 127\.0\.0\.1:5"),
    ("upstream type", {"name": "w", "connect": {"sidecar_service": {"proxy": {"upstreams": [
        {"destination_name": "db", "local_bind_port": 5, "destination_type": "node"}]}}}},
     r"destination_type: must be service or prepared_query"),
    ("proxy mode", {"name": "w", "connect": {"sidecar_service": {"proxy": {"mode": "magic"}}}},
     r"proxy\.mode: must be one of direct or transparent"),
    ("mesh gateway mode", {"name": "w", "connect": {"sidecar_service": {"proxy": {"mesh_gateway": {"mode": "x"}}}}},
     r"proxy\.mesh_gateway\.mode: must be one of none, local or remote"),
    ("expose path", {"name": "w", "connect": {"sidecar_service": {"proxy": {"expose": {"paths": [
        {"path": "metrics"}]}}}}}, r"expose\.paths\[0\]\.path: must begin with a '/'"),
    ("mesh gateway without port", {"name": "g", "kind": "mesh-gateway"},
     r"^service\.port: must be non-zero for a mesh-gateway$"),
    ("gateway with destination", {"name": "g", "kind": "terminating-gateway", "port": 1,
                                  "proxy": {"destination_service_name": "x"}}, r"DestinationServiceName is not valid"),
    ("service not object", [], r"^service: expected an object, got a list$"),  # type: ignore[list-item]
    ("non-string key", {"name": "w", 1: "x"}, r"^service: keys must be strings, got 1$"),
    ("proxy config non-json", {"name": "w", "connect": {"sidecar_service": {"proxy": {"config": {"a": {1, 2}}}}}},
     r"proxy\.config\.a: unsupported value"),
]


@pytest.mark.parametrize(("data", "pattern"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_validation_errors_name_the_key_path(data: Any, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern) as info:
        parse_service_definition(data, where="service")
    assert info.value.status == 400


def test_error_without_where_has_no_prefix() -> None:
    with pytest.raises(ValidationError, match=r"^Missing service name$"):
        parse_service_definition({})
    with pytest.raises(ValidationError, match=r"^port: must be between"):
        parse_service_definition({"name": "w", "port": 99999})


def test_standalone_check_errors() -> None:
    with pytest.raises(ValidationError, match=r"^check: Missing check name$"):
        parse_check_definition({"ttl": "5s"}, where="check")
    with pytest.raises(ValidationError, match=r"^Interval: invalid duration \"soon\""):
        parse_check_definition({"Name": "c", "HTTP": "http://x", "Interval": "soon"})


def test_short_interval_is_raised_to_consul_minimum_with_warning() -> None:
    check = parse_check_definition({"name": "c", "tcp": "h:1", "interval": "100ms"})
    assert check.interval == 1.0
    assert check.warnings == ("interval: 100ms is below the minimum of 1s; using 1s",)


def test_several_type_fields_follow_consul_precedence_with_warning() -> None:
    check = parse_check_definition({"name": "c", "http": "http://x", "tcp": "h:1", "interval": "10s"})
    assert check.type == "http"
    assert check.warnings == ("check: is a http check; ignoring tcp",)


# --------------------------------------------------------------------------------------------
# Check types and definitions


TYPE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"TTL": "30s"}, "ttl"),
    ({"HTTP": "http://x/", "Interval": "10s"}, "http"),
    ({"TCP": "h:1", "Interval": "10s"}, "tcp"),
    ({"UDP": "h:1", "Interval": "10s"}, "udp"),
    ({"GRPC": "h:1", "Interval": "10s"}, "grpc"),
    ({"H2PING": "h:1", "Interval": "10s"}, "h2ping"),
    ({"Args": ["/bin/check"], "Interval": "10s"}, "script"),
    ({"AliasService": "web"}, "alias"),
    ({"AliasNode": "n1"}, "alias"),
]


@pytest.mark.parametrize(("data", "ctype"), TYPE_CASES, ids=[c[1] + str(i) for i, c in enumerate(TYPE_CASES)])
def test_check_type_derivation_and_definition_round_trip(data: dict[str, Any], ctype: str) -> None:
    check = parse_check_definition({"Name": "c", **data})
    assert check.type == ctype
    assert check.id == "c"
    assert check.status == "critical"
    definition = check.to_api_definition()
    again = parse_check_definition({"Name": "c", **definition})
    assert again == check
    payload = check_row_payload(check, service_id="")
    row = CheckRow(node="n1", **payload)
    assert check_to_api(row)["Type"] == ctype
    assert row.definition == definition


def test_api_definition_shape() -> None:
    check = parse_check_definition({"Name": "c", "HTTP": "http://x", "Interval": "1m30s", "Timeout": "500ms",
                                    "Header": {"A": ["b"]}, "DeregisterCriticalServiceAfter": "10m",
                                    "Method": "HEAD"})
    assert check.to_api_definition() == {"HTTP": "http://x", "Header": {"A": ["b"]}, "Method": "HEAD",
                                         "Interval": "1m30s", "Timeout": "500ms",
                                         "DeregisterCriticalServiceAfter": "10m0s"}
    h2 = parse_check_definition({"Name": "c", "H2PING": "h:1", "Interval": "10s"})
    assert h2.h2ping_use_tls is True
    assert h2.to_api_definition() == {"H2PING": "h:1", "H2PingUseTLS": True, "Interval": "10s"}
    script = parse_check_definition({"name": "c", "args": ["a"], "interval": "10s", "output_max_size": 10})
    assert script.to_api_definition() == {"ScriptArgs": ["a"], "Interval": "10s", "OutputMaxSize": 10}


def test_check_row_payload() -> None:
    check = parse_check_definition({"name": "mem", "tcp": "h:1", "interval": "10s", "timeout": "2s",
                                    "notes": "n", "status": "warning", "service_id": "web"})
    payload = check_row_payload(check, service_id="")
    assert payload == {"check_id": "mem", "name": "mem", "status": "warning", "notes": "n", "output": "",
                       "service_id": "web", "type": "tcp", "interval": "10s", "timeout": "2s",
                       "definition": {"TCP": "h:1", "Interval": "10s", "Timeout": "2s"}}
    assert check_row_payload(check, service_id="other")["service_id"] == "other"
    CheckRow(node="n1", **payload)
    ttl = check_row_payload(parse_check_definition({"name": "t", "ttl": "5s"}))
    assert (ttl["interval"], ttl["timeout"]) == ("", "")


def test_standalone_check_ids_and_service_binding() -> None:
    assert parse_check_definition({"name": "c", "ttl": "5s"}).id == "c"
    assert parse_check_definition({"name": "c", "id": "x", "ttl": "5s"}).id == "x"
    bound = parse_check_definition({"name": "c", "ttl": "5s", "service_id": "a"}, service_id="b")
    assert bound.service_id == "b"


# --------------------------------------------------------------------------------------------
# Default check IDs and names inside a service


def test_single_service_check_default_id() -> None:
    svc = parse_service_definition({"name": "web", "check": {"ttl": "5s"}})
    (check,) = svc.checks
    assert (check.id, check.name, check.service_id) == ("service:web", "Service 'web' check", "web")


def test_several_service_checks_are_numbered_from_one() -> None:
    svc = parse_service_definition({"name": "web", "id": "web-1", "check": {"ttl": "5s"},
                                    "checks": [{"ttl": "5s", "id": "mine", "name": "Mine"}, {"ttl": "5s"}]})
    assert [c.id for c in svc.checks] == ["service:web-1:1", "mine", "service:web-1:3"]
    assert [c.name for c in svc.checks] == ["Service 'web' check", "Mine", "Service 'web' check"]
    assert {c.service_id for c in svc.checks} == {"web-1"}


# --------------------------------------------------------------------------------------------
# Sidecar expansion


def _parent(**sidecar: Any) -> ServiceDefinition:
    return parse_service_definition({"name": "web", "id": "web-1", "port": 8080, "tags": ["t1"],
                                     "meta": {"m": "1"}, "connect": {"sidecar_service": sidecar}})


def test_sidecar_defaults() -> None:
    parent = _parent()
    sidecar = expand_sidecar(parent, used_ports=set())
    assert sidecar is not None
    assert (sidecar.id, sidecar.name, sidecar.kind, sidecar.port) == (
        "web-1-sidecar-proxy", "web-sidecar-proxy", "connect-proxy", 21000)
    assert sidecar.tags == ("t1",) and sidecar.meta == {"m": "1"}
    assert sidecar.proxy["DestinationServiceName"] == "web"
    assert sidecar.proxy["DestinationServiceID"] == "web-1"
    assert sidecar.proxy["LocalServiceAddress"] == "127.0.0.1"
    assert sidecar.proxy["LocalServicePort"] == 8080
    assert sidecar.connect == {"Native": False, "SidecarService": None}
    listening, aliasing = sidecar.checks
    assert listening == CheckDefinition(id="service:web-1-sidecar-proxy:1", name="Connect Sidecar Listening",
                                        service_id="web-1-sidecar-proxy", type="tcp", tcp="127.0.0.1:21000",
                                        interval=10.0)
    assert aliasing == CheckDefinition(id="service:web-1-sidecar-proxy:2", name="Connect Sidecar Aliasing web-1",
                                       service_id="web-1-sidecar-proxy", type="alias", alias_service="web-1")
    assert check_row_payload(listening)["definition"] == {"TCP": "127.0.0.1:21000", "Interval": "10s"}


def test_sidecar_port_allocation_skips_used_ports() -> None:
    sidecar = expand_sidecar(_parent(), used_ports={21000, 21001, 21003})
    assert sidecar is not None and sidecar.port == 21002
    sidecar = expand_sidecar(_parent(), used_ports={5}, port_range=(30000, 30001))
    assert sidecar is not None and sidecar.port == 30000


def test_sidecar_keeps_previous_port_on_reregistration() -> None:
    sidecar = expand_sidecar(_parent(), used_ports={21000, 21005}, previous_port=21005)
    assert sidecar is not None and sidecar.port == 21005


def test_sidecar_port_exhaustion() -> None:
    with pytest.raises(ValidationError, match=r"none left in the configured range \[21000, 21001\]"):
        expand_sidecar(_parent(), used_ports={21000, 21001}, port_range=(21000, 21001))
    with pytest.raises(ValidationError, match="auto-assignment is disabled"):
        expand_sidecar(_parent(), used_ports=set(), port_range=(0, 0))


def test_sidecar_explicit_overrides() -> None:
    parent = _parent(name="custom", port=9999, tags=["own"], meta={"x": "y"}, address="10.0.0.9",
                     proxy={"local_service_port": 7000, "destination_service_name": "other",
                            "upstreams": [{"destination_name": "db", "local_bind_port": 9191}],
                            "config": {"protocol": "http"}},
                     checks=[{"ttl": "5s"}, {"tcp": "h:1", "interval": "5s", "id": "own-check"}])
    sidecar = expand_sidecar(parent, used_ports={9999})
    assert sidecar is not None
    assert (sidecar.id, sidecar.name, sidecar.port) == ("web-1-sidecar-proxy", "custom", 9999)
    assert sidecar.tags == ("own",) and sidecar.meta == {"x": "y"} and sidecar.address == "10.0.0.9"
    assert sidecar.proxy["LocalServicePort"] == 7000
    assert sidecar.proxy["LocalServiceAddress"] == ""  # one LocalService* field set: no defaults filled in
    assert sidecar.proxy["DestinationServiceName"] == "other"
    assert sidecar.proxy["DestinationServiceID"] == "web-1"
    assert sidecar.proxy["Upstreams"][0]["DestinationName"] == "db"
    assert sidecar.proxy["Config"] == {"protocol": "http"}
    assert [c.id for c in sidecar.checks] == ["service:web-1-sidecar-proxy:1", "own-check"]
    assert [c.service_id for c in sidecar.checks] == ["web-1-sidecar-proxy"] * 2
    assert sidecar.checks[0].name == "Service 'custom' check"


def test_sidecar_address_and_socket_inheritance() -> None:
    parent = parse_service_definition({"name": "web", "address": "10.1.1.1", "socket_path": "/s.sock",
                                       "locality": {"region": "r"}, "token": "tok",
                                       "connect": {"sidecar_service": {}}})
    sidecar = expand_sidecar(parent, used_ports=set())
    assert sidecar is not None
    assert sidecar.address == "10.1.1.1"
    assert sidecar.proxy["LocalServiceSocketPath"] == "/s.sock"
    assert sidecar.proxy["LocalServicePort"] == 0
    assert sidecar.checks[0].tcp == "10.1.1.1:21000"
    assert sidecar.locality == {"Region": "r", "Zone": ""}
    assert sidecar.token == "tok"
    v6 = parse_service_definition({"name": "web", "address": "::1", "connect": {"sidecar_service": {}}})
    sidecar = expand_sidecar(v6, used_ports=set())
    assert sidecar is not None and sidecar.checks[0].tcp == "[::1]:21000"


def test_no_sidecar_and_without_sidecar() -> None:
    plain = parse_service_definition({"name": "web"})
    assert expand_sidecar(plain, used_ports=set()) is None
    assert plain.without_sidecar() is plain
    parent = _parent()
    stripped = parent.without_sidecar()
    assert stripped.sidecar_service is None and parent.sidecar_service is not None
    assert service_row_payload(stripped) == service_row_payload(parent)
    assert service_row_payload(parent)["connect"] == {}


def test_expanded_sidecar_is_a_valid_registration() -> None:
    """The expansion reparses as a plain connect-proxy definition (no sidecar-only shortcuts)."""
    sidecar = expand_sidecar(_parent(proxy={"upstreams": [{"destination_name": "db", "local_bind_port": 1}]}),
                             used_ports=set())
    assert sidecar is not None
    api = service_to_agent_api(ServiceRow(node="n1", **service_row_payload(sidecar)))
    api["Checks"] = [{"CheckID": c.id, "Name": c.name, **c.to_api_definition()} for c in sidecar.checks]
    again = parse_service_definition({k: v for k, v in api.items() if k not in ("CreateIndex", "ModifyIndex",
                                                                                 "PeerName", "Service")}
                                     | {"Name": api["Service"]})
    assert again.warnings == ()
    assert dataclasses.replace(again, token=sidecar.token) == sidecar


# --------------------------------------------------------------------------------------------
# Payloads build the real rows


def test_service_row_payload_builds_a_service_row() -> None:
    svc = parse_service_definition(SPELLING_PAIRS[3][2])
    payload = service_row_payload(svc)
    row = ServiceRow(node="n1", **payload)
    assert (row.id, row.service, row.tags, row.port) == ("web-1", "web", ("a", "b"), 8080)
    api = service_to_agent_api(row)
    assert api["Weights"] == {"Passing": 10, "Warning": 2}
    assert api["TaggedAddresses"]["WAN"] == {"Address": "1.2.3.4", "Port": 0}
    assert api["Locality"] == {"Region": "r", "Zone": "z"}
    assert "Token" not in api and "token" not in payload


def test_proxy_payload_shape() -> None:
    svc = parse_service_definition(SPELLING_PAIRS[4][1])
    row = ServiceRow(node="n1", **service_row_payload(svc))
    assert row.kind == "connect-proxy"
    assert row.proxy["Upstreams"] == [{
        "DestinationType": "prepared_query", "DestinationNamespace": "", "DestinationName": "db",
        "Datacenter": "dc2", "LocalBindAddress": "", "LocalBindPort": 9191, "Config": {"connect_timeout_ms": 5},
        "MeshGateway": {"Mode": "local"}}]
    assert row.proxy["Expose"] == {"Checks": True, "Paths": [
        {"ListenerPort": 21500, "Path": "/metrics", "LocalPathPort": 8080, "Protocol": "http",
         "ParsedFromCheck": False}]}
    assert row.proxy["TransparentProxy"] == {"OutboundListenerPort": 15001, "DialedDirectly": True}
    assert row.proxy["MeshGateway"] == {"Mode": "remote"}
    native = parse_service_definition(SPELLING_PAIRS[6][1])
    assert service_row_payload(native)["connect"] == {"Native": True}
    assert service_row_payload(native)["proxy"] == {}


# --------------------------------------------------------------------------------------------
# Property: arbitrary JSON-like input raises nothing but ValidationError

_KEYS = st.sampled_from([
    "name", "Name", "id", "port", "Port", "tags", "check", "checks", "Checks", "kind", "meta", "weights",
    "tagged_addresses", "connect", "sidecar_service", "native", "proxy", "upstreams", "destination_name",
    "destination_service_name", "local_bind_port", "config", "mesh_gateway", "mode", "expose", "paths", "path",
    "ttl", "http", "tcp", "interval", "timeout", "args", "header", "status", "alias_service", "locality",
    "passing", "warning", "address", "socket_path", "transparent_proxy", "output_max_size", "script",
    "docker_container_id", "deregister_critical_service_after", "Zz",
])
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**40), 2**40)
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.sampled_from(["", "10s", "-1s", "web", "connect-proxy", "0.0.0.0", "1ms", "8080", "true",
                               "passing", "/x"])
            | st.text(max_size=8))
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=4), children,
                                                                      max_size=6),
    max_leaves=12,
)


def _check_parse_outcome(data: Any) -> None:
    for parse in (parse_service_definition, parse_check_definition):
        try:
            result = parse(data)
        except ValidationError:
            continue
        if isinstance(result, ServiceDefinition):
            ServiceRow(node="n", **service_row_payload(result))
            for check in result.checks:
                CheckRow(node="n", **check_row_payload(check))
            try:
                expand_sidecar(result, used_ports=set())
            except ValidationError:
                pass
        else:
            CheckRow(node="n", **check_row_payload(result))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _JSON, max_size=8))
def test_parse_raises_only_validation_error(data: dict[str, Any]) -> None:
    _check_parse_outcome(data)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace_at(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace_at(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutating_valid_definitions_raises_only_validation_error(data: st.DataObject) -> None:
    """One value anywhere inside a valid definition replaced by arbitrary JSON."""
    base = data.draw(st.sampled_from([p[i] for p in SPELLING_PAIRS for i in (1, 2)]))
    path = data.draw(st.sampled_from(_paths(base)[1:]))
    _check_parse_outcome(_replace_at(base, path, data.draw(_JSON)))


def test_py_consul_check_helpers_parse() -> None:
    """The check bodies py-consul builds (its mixed spellings) parse as the checks they mean."""
    consul = pytest.importorskip("consul")
    check = consul.Check
    cases = [
        (check.http("http://h/", "10s", timeout="1s", deregister="1m", header={"x-foo": ["bar"]}), "http"),
        (check.tcp("h", 80, "10s", timeout="2s", deregister="1m"), "tcp"),
        (check.grpc("h:1/svc", "10s", use_tls=True, tls_skip_verify=True), "grpc"),
        (check.ttl("10s"), "ttl"),
        (check.script(["/bin/true"], "10s"), "script"),
    ]
    svc = parse_service_definition({"name": "w", "checks": [c for c, _ in cases]})
    assert [c.type for c in svc.checks] == [t for _, t in cases]
    assert svc.warnings == ()
    assert svc.checks[0].deregister_critical_service_after == 60.0
    assert svc.checks[0].header == {"x-foo": ["bar"]}
    assert svc.checks[2].grpc_use_tls and svc.checks[2].tls_skip_verify
