"""xDS on the agent's gRPC TLS port (``ports.grpc_tls`` with ``tls.grpc``): Envoy started by
``lictor connect envoy -grpc-addr https://... -ca-file`` gets its configuration over TLS."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.integration.conftest import AgentProcess, eventually, free_ports
from tests.integration.dataplane import LICTOR, Sidecar, held

pytestmark = pytest.mark.integration


def test_envoy_gets_its_config_over_the_grpc_tls_port(tmp_path: Path) -> None:
    for args in (["tls", "ca", "create"], ["tls", "cert", "create", "-server"]):
        subprocess.run([*LICTOR, *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    ca, cert, key = (tmp_path / n for n in ("consul-agent-ca.pem", "dc1-server-consul-0.pem",
                                            "dc1-server-consul-0-key.pem"))
    tls_port, pub, admin = free_ports(3)
    (tmp_path / "tls.json").write_text(json.dumps({
        "ports": {"grpc_tls": tls_port}, "tls": {"grpc": {"cert_file": str(cert), "key_file": str(key)}}}))
    agent = AgentProcess(tmp_path, "-grpc-port=-1", "-config-file", str(tmp_path / "tls.json")).start()
    sc: Sidecar | None = None
    try:
        agent.json("PUT", "/v1/agent/service/register", {"Name": "web", "Port": 1, "Connect": {
            "SidecarService": {"Port": pub}}})
        # a plaintext client cannot use the TLS port; a TLS one is answered (NOT_FOUND: unknown proxy)
        creds = grpc.ssl_channel_credentials(ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{tls_port}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
            req = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id="nobody"),
                                                 type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")
            with pytest.raises(grpc.RpcError) as info:
                next(iter(stub.StreamAggregatedResources(held(req), timeout=10)))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        sc = Sidecar(tmp_path, "web", http_addr=agent.addr, grpc_port=tls_port, admin_port=admin)
        sc.args[sc.args.index(f"127.0.0.1:{tls_port}")] = f"https://localhost:{tls_port}"
        sc.args[sc.args.index("--"):sc.args.index("--")] = ["-ca-file", str(ca)]
        sc.start()
        eventually(lambda: "public_listener:" in sc.text("/listeners"), 20, "listeners over the TLS port")
        assert sum(v for k, v in sc.stats("local_agent.ssl.handshake").items()) > 0
    finally:
        if sc is not None:
            sc.stop()
        agent.stop()
