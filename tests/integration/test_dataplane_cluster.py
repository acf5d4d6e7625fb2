"""The data plane on a real cluster: 3 servers, and the two sidecars' proxies registered on two
client agents, whose proxycfg reads everything through RPC to the servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import eventually
from tests.integration.dataplane import App, Sidecar, outcome
from tests.integration.meshproc import Mesh, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, dict[str, int]]]:
    root: Path = tmp_path_factory.mktemp("dpcluster")
    mesh = Mesh(root, servers=3, clients=2, distinct_hosts=False)
    ports = {k: free_port() for k in ("grpc1", "grpc2", "api_app", "api_pub", "web_pub", "web_up", "adm_api",
                                      "adm_web")}
    mesh.clients[0].extra = (f"-grpc-port={ports['grpc1']}",)
    mesh.clients[1].extra = (f"-grpc-port={ports['grpc2']}",)
    app = None
    sidecars: list[Sidecar] = []
    try:
        mesh.start()
        app = App("api", ports["api_app"])
        c1, c2 = mesh.clients
        c1.json("PUT", "/v1/agent/service/register", {"Name": "api", "Port": ports["api_app"], "Connect": {
            "SidecarService": {"Port": ports["api_pub"], "Checks": [
                {"Name": "listening", "TCP": f"127.0.0.1:{ports['api_pub']}", "Interval": "1s"}]}}})
        c2.json("PUT", "/v1/agent/service/register", {"Name": "web", "Port": 1, "Connect": {"SidecarService": {
            "Port": ports["web_pub"], "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": ports["web_up"]}]},
            "Checks": [{"Name": "listening", "TCP": f"127.0.0.1:{ports['web_pub']}", "Interval": "1s"}]}}})
        sidecars.append(Sidecar(root, "api", http_addr=f"127.0.0.1:{c1.http_port}", grpc_port=ports["grpc1"],
                                admin_port=ports["adm_api"]).start())
        sidecars.append(Sidecar(root, "web", http_addr=f"127.0.0.1:{c2.http_port}", grpc_port=ports["grpc2"],
                                admin_port=ports["adm_web"], ads_mode="sotw").start())
        eventually(lambda: outcome(ports["web_up"])[0] == "200", 60, "a request through sidecars on client agents")
        yield mesh, ports
    finally:
        for sc in sidecars:
            sc.stop()
        if app is not None:
            app.stop()
        mesh.stop()


def test_sidecars_on_client_agents_carry_traffic_and_follow_intentions(cluster: tuple[Mesh, dict[str, int]]) -> None:
    mesh, ports = cluster
    status, body = outcome(ports["web_up"], "/x")
    assert status == "200" and "hello from api" in body
    # the client agents are not servers: proxycfg went through RPC
    for c in mesh.clients:
        assert c.json("GET", "/v1/agent/self")["Config"]["Server"] is False
    # an intention written on a server reaches the api sidecar through c1's watches
    s1 = mesh.servers[0]
    s1.json("PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "deny"})
    try:
        eventually(lambda: outcome(ports["web_up"])[0] == "closed", 20, "the deny to reach Envoy via a client agent")
        td = s1.json("GET", "/v1/connect/ca/roots")["TrustDomain"]
        for c in mesh.clients:  # a client agent's authorize answers as the servers decide
            out = c.json("POST", "/v1/agent/connect/authorize",
                         {"Target": "api", "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/web"})
            assert out["Authorized"] is False, out
    finally:
        s1.request("DELETE", "/v1/connect/intentions/exact?source=web&destination=api")
    eventually(lambda: outcome(ports["web_up"])[0] == "200", 20, "traffic after the deny is removed")
