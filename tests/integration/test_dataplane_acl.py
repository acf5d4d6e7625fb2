"""The xDS server with ACLs on (default deny): a stream needs a token with service:write on the
proxy's service, and the generated RBAC denies by default, as /v1/agent/connect/authorize says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.integration.dataplane import held
from tests.integration.conftest import AgentProcess, eventually, free_ports

pytestmark = pytest.mark.integration

MGMT = "7d0e7a2b-1111-4222-8333-944445555666"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


@pytest.fixture(scope="module")
def acl_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProcess, int]]:
    d = tmp_path_factory.mktemp("xdsacl")
    (d / "acl.hcl").write_text('acl {\n enabled = true\n default_policy = "deny"\n tokens {\n'
                               f'  initial_management = "{MGMT}"\n  agent = "{MGMT}"\n }}\n}}\n')
    grpc_port, api_pub, web_pub, web_up = free_ports(4)
    a = AgentProcess(d, "-config-file", str(d / "acl.hcl"), f"-grpc-port={grpc_port}").start()
    try:
        eventually(lambda: a.request("GET", "/v1/acl/token/self", headers={"X-Consul-Token": MGMT})[0] == 200, 10,
                   "the initial management token")
        hdr = {"X-Consul-Token": MGMT}
        for name, pub, ups in (("api", api_pub, []), ("web", web_pub, [{"DestinationName": "api",
                                                                          "LocalBindPort": web_up}])):
            st, raw = a.request("PUT", "/v1/agent/service/register", {
                "Name": name, "Port": 1, "Connect": {"SidecarService": {"Port": pub, "Proxy": {"Upstreams": ups}}}},
                headers=hdr)
            assert st == 200, raw
        yield a, grpc_port
    finally:
        a.stop()


def token_for(a: AgentProcess, rules: str) -> str:
    hdr = {"X-Consul-Token": MGMT}
    p = a.json("PUT", "/v1/acl/policy", {"Name": f"p{time.monotonic_ns()}", "Rules": rules}, headers=hdr)
    return str(a.json("PUT", "/v1/acl/token", {"Policies": [{"ID": p["ID"]}]}, headers=hdr)["SecretID"])


def first_response(port: int, proxy: str, type_url: str, token: str | None) -> Any:
    md = [("x-consul-token", token)] if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
        req = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=proxy), type_url=type_url)
        call = stub.StreamAggregatedResources(held(req), timeout=15, metadata=md)
        try:
            return next(iter(call))
        finally:
            call.cancel()


def test_stream_needs_service_write_on_the_proxys_service(acl_agent: tuple[AgentProcess, int]) -> None:
    a, port = acl_agent
    api_writer = token_for(a, 'service "api" { policy = "write" }')
    web_reader = token_for(a, 'service "web" { policy = "read" }')
    web_writer = token_for(a, 'service "web" { policy = "write" }')
    for tok in (None, "not-a-token", api_writer, web_reader):
        with pytest.raises(grpc.RpcError) as info:
            first_response(port, "web-sidecar-proxy", CLUSTER, tok)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, (tok, info.value)
    resp = first_response(port, "web-sidecar-proxy", CLUSTER, web_writer)
    assert resp.type_url == CLUSTER and len(resp.resources) >= 2


def test_default_deny_rbac_matches_authorize(acl_agent: tuple[AgentProcess, int]) -> None:
    a, port = acl_agent
    api_writer = token_for(a, 'service "api" { policy = "write" }')
    resp = first_response(port, "api-sidecar-proxy", LISTENER, api_writer)
    lis = listener_pb2.Listener()
    resp.resources[0].Unpack(lis)
    filters = {f.name: f for f in lis.filter_chains[0].filters}
    rbac = rbac_pb2.RBAC()
    filters["envoy.filters.network.rbac"].typed_config.Unpack(rbac)
    assert rbac.rules.action == rbac.rules.ALLOW and len(rbac.rules.policies) == 0  # deny all
    td = a.json("GET", "/v1/connect/ca/roots", headers={"X-Consul-Token": MGMT})["TrustDomain"]
    out = a.json("POST", "/v1/agent/connect/authorize",
                 {"Target": "api", "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/web"},
                 headers={"X-Consul-Token": MGMT})
    assert out["Authorized"] is False
