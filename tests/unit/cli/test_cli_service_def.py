"""definition_to_api: config-file service definitions -> the register API's JSON."""

from __future__ import annotations

import pytest

from lictor.cli.service_def import definition_to_api, definitions_from_file, snake_to_pascal
from lictor.common.errors import ConfigError


@pytest.mark.parametrize(("key", "api"), [
    ("id", "ID"), ("name", "Name"), ("enable_tag_override", "EnableTagOverride"), ("ttl", "TTL"),
    ("tls_skip_verify", "TLSSkipVerify"), ("grpc_use_tls", "GRPCUseTLS"), ("docker_container_id", "DockerContainerID"),
    ("deregister_critical_service_after", "DeregisterCriticalServiceAfter"), ("h2ping", "H2PING"),
    ("h2ping_use_tls", "H2PingUseTLS"), ("destination_service_id", "DestinationServiceID"),
    ("os_service", "OSService"), ("socket_path", "SocketPath"), ("Already", "Already"),
])
def test_snake_to_pascal(key: str, api: str) -> None:
    assert snake_to_pascal(key) == api


def test_full_definition() -> None:
    definition = {
        "name": "web", "id": "web-1", "port": 8080, "tags": ["v1"], "address": "10.0.0.1",
        "meta": {"some_key": "x"},
        "tagged_addresses": {"lan_ipv4": {"address": "10.0.0.1", "port": 80}},
        "enable_tag_override": True,
        "weights": {"passing": 10, "warning": 1},
        "check": {"id": "web-http", "http": "http://localhost:8080/health", "interval": "10s",
                  "header": {"x_foo": ["bar"]}, "tls_skip_verify": True},
        "checks": [{"name": "ttl", "ttl": "30s", "deregister_critical_service_after": "90m"},
                   {"args": ["/bin/check", "-x"], "interval": "5s"}],
        "connect": {"sidecar_service": {"port": 21000, "proxy": {
            "upstreams": [{"destination_name": "db", "local_bind_port": 9191, "config": {"connect_timeout_ms": 5}}],
            "config": {"envoy_stats_tags": ["a"], "local_request_timeout_ms": 1},
            "mesh_gateway": {"mode": "local"},
            "expose": {"checks": True, "paths": [{"path": "/m", "local_path_port": 8080, "listener_port": 21500}]},
        }, "checks": [{"tcp": "localhost:21000", "interval": "10s"}]}},
    }
    assert definition_to_api(definition) == {
        "Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1"], "Address": "10.0.0.1",
        "Meta": {"some_key": "x"},
        "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.1", "Port": 80}},
        "EnableTagOverride": True,
        "Weights": {"Passing": 10, "Warning": 1},
        "Check": {"CheckID": "web-http", "HTTP": "http://localhost:8080/health", "Interval": "10s",
                  "Header": {"x_foo": ["bar"]}, "TLSSkipVerify": True},
        "Checks": [{"Name": "ttl", "TTL": "30s", "DeregisterCriticalServiceAfter": "90m"},
                   {"Args": ["/bin/check", "-x"], "Interval": "5s"}],
        "Connect": {"SidecarService": {"Port": 21000, "Proxy": {
            "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191, "Config": {"connect_timeout_ms": 5}}],
            "Config": {"envoy_stats_tags": ["a"], "local_request_timeout_ms": 1},
            "MeshGateway": {"Mode": "local"},
            "Expose": {"Checks": True, "Paths": [{"Path": "/m", "LocalPathPort": 8080, "ListenerPort": 21500}]},
        }, "Checks": [{"TCP": "localhost:21000", "Interval": "10s"}]}},
    }


def test_connect_proxy_kind() -> None:
    assert definition_to_api({"kind": "connect-proxy", "name": "web-proxy", "proxy": {
        "destination_service_name": "web", "local_service_port": 8080}}) == {
        "Kind": "connect-proxy", "Name": "web-proxy",
        "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080}}


def test_definitions_from_file(tmp_path) -> None:
    hcl = tmp_path / "web.hcl"
    hcl.write_text('service {\n name = "web"\n port = 80\n}\nservices = [{ name = "a" }, { name = "b" }]\n')
    assert definitions_from_file(str(hcl)) == [{"name": "web", "port": 80}, {"name": "a"}, {"name": "b"}]
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(ConfigError, match=r"empty\.json: no service definition found"):
        definitions_from_file(str(empty))
