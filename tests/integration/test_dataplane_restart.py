"""An agent restart while Envoy runs: Envoy keeps its config while the agent is away (open
connections and new ones keep working), then resumes its ADS streams and follows changes again.

The agent is a single persistent server (data dir, services from a config dir), so it comes back
as the same cluster with the same CA."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import eventually, free_ports
from tests.integration.dataplane import LICTOR, App, Sidecar, outcome
from tests.integration.procutil import ManagedProcess

pytestmark = pytest.mark.integration


class ServerAgent(ManagedProcess):
    def __init__(self, root: Path, ports: dict[str, int]) -> None:
        self.name = "server"
        self.url = f"http://127.0.0.1:{ports['http']}"
        self.addr = f"127.0.0.1:{ports['http']}"
        self.log_path = root / "agent.log"
        (root / "conf").mkdir(exist_ok=True)
        for name, port, pub, ups in (("api", ports["api_app"], ports["api_pub"], []),
                                     ("web", 1, ports["web_pub"], [{"destination_name": "api",
                                                                    "local_bind_port": ports["web_up"]}])):
            (root / "conf" / f"{name}.json").write_text(json.dumps({"service": {
                "name": name, "port": port, "connect": {"sidecar_service": {
                    "port": pub, "proxy": {"upstreams": ups},
                    "checks": [{"name": "listening", "tcp": f"127.0.0.1:{pub}", "interval": "1s"}]}}}}))
        self.args = [*LICTOR, "agent", "-server", "-bootstrap", "-node", "restart-test", "-data-dir", str(root / "data"),
                     "-config-dir", str(root / "conf"), "-bind", "127.0.0.1", "-client", "127.0.0.1",
                     f"-http-port={ports['http']}", f"-grpc-port={ports['grpc']}", f"-server-port={ports['rpc']}",
                     f"-serf-lan-port={ports['serf']}", "-dns-port=-1"]

    def start(self) -> ServerAgent:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "LICTOR_RAFT_TICK_INTERVAL": "0.05"})
        self.wait_http("/v1/status/leader", 30)
        eventually(lambda: json.loads(self.request("GET", "/v1/status/leader")[1]), 30, "a leader")
        return self


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ServerAgent, dict[str, int], list[Sidecar]]]:
    names = ("http", "grpc", "rpc", "serf", "api_app", "api_pub", "web_pub", "web_up", "adm_api", "adm_web")
    ports = dict(zip(names, free_ports(len(names))))
    agent = ServerAgent(tmp_path, ports).start()
    app = App("api", ports["api_app"])
    sidecars: list[Sidecar] = []
    try:
        sidecars.append(Sidecar(tmp_path, "api", http_addr=agent.addr, grpc_port=ports["grpc"],
                                admin_port=ports["adm_api"]).start())
        sidecars.append(Sidecar(tmp_path, "web", http_addr=agent.addr, grpc_port=ports["grpc"],
                                admin_port=ports["adm_web"], ads_mode="sotw").start())
        eventually(lambda: outcome(ports["web_up"])[0] == "200", 40, "a first request")
        yield agent, ports, sidecars
    finally:
        for sc in sidecars:
            sc.stop()
        app.stop()
        agent.stop()


def test_agent_restart_keeps_traffic_and_resumes_streams(setup: tuple[ServerAgent, dict[str, int], list[Sidecar]]
                                                         ) -> None:
    agent, ports, sidecars = setup
    kept = http.client.HTTPConnection("127.0.0.1", ports["web_up"], timeout=5)  # one established connection
    kept.request("GET", "/before")
    assert kept.getresponse().read().startswith(b"hello from api")
    results: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            results.append(outcome(ports["web_up"])[0])
            time.sleep(0.02)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.3)
        assert agent.stop() is not None  # SIGTERM: the agent goes away, Envoy keeps its config
        time.sleep(1.0)
        during = len(results)
        agent.start()
        # both Envoys come back to the new agent process
        eventually(lambda: agent.log_text().count("stream opened for proxy") >= 4, 30, "the ADS streams to resume")
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    kept.request("GET", "/after")
    assert kept.getresponse().read().startswith(b"hello from api")  # the established connection survived
    failed = [r for r in results if r != "200"]
    assert during > 20 and not failed, f"{len(failed)} of {len(results)} requests failed"
    assert all(sc.alive() for sc in sidecars)
    # and the resumed streams follow changes again
    agent.json("PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "deny"})
    eventually(lambda: outcome(ports["web_up"])[0] == "closed", 20, "a deny after the restart")
    agent.request("DELETE", "/v1/connect/intentions/exact?source=web&destination=api")
    eventually(lambda: outcome(ports["web_up"])[0] == "200", 20, "traffic again")
