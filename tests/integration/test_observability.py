"""Observability of the data plane, end to end with real Envoys (issue 13): access logs (request
lines and the listener's refused connections), Prometheus metrics with mesh tags on the proxy's
``envoy_prometheus_bind_addr``, its port in the catalog for consul_sd_configs, and the agent's
own xDS / proxycfg figures. One mesh for the module::

    test --h1--> web sidecar :web_up --mTLS--> api sidecar :api_pub --> api app
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import AgentProcess, eventually, free_ports
from tests.integration.dataplane import App, Sidecar, outcome

pytestmark = pytest.mark.integration


class ObsMesh:
    def __init__(self, root: Path) -> None:
        (self.grpc, self.api_app, self.api_pub, self.web_app, self.web_pub, self.web_up, self.admin_api,
         self.admin_web, self.prom) = free_ports(9)
        self.root = root
        self.access_log = root / "access.log"
        self.agent = AgentProcess(root, f"-grpc-port={self.grpc}").start()
        self.agent.json("PUT", "/v1/config", {
            "Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
            "AccessLogs": {"Enabled": True, "Type": "file", "Path": str(self.access_log)}})
        self.apps = [App("api", self.api_app)]
        self.register("api", self.api_app, self.api_pub)
        self.register("web", self.web_app, self.web_pub,
                      upstreams=[{"DestinationName": "api", "LocalBindPort": self.web_up}],
                      config={"envoy_prometheus_bind_addr": f"127.0.0.1:{self.prom}"})
        self.sidecars = [Sidecar(root, "api", http_addr=self.agent.addr, grpc_port=self.grpc,
                                 admin_port=self.admin_api).start(),
                         Sidecar(root, "web", http_addr=self.agent.addr, grpc_port=self.grpc,
                                 admin_port=self.admin_web).start()]
        self.api, self.web = self.sidecars

    def register(self, name: str, port: int, pub: int, *, upstreams: list[Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.agent.json("PUT", "/v1/agent/service/register", {
            "Name": name, "ID": name, "Port": port,
            "Connect": {"SidecarService": {"Port": pub, "Proxy": {"Upstreams": upstreams or [],
                                                                  "Config": config or {}}}}})

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))  # every line is one JSON object
        return out

    def stop(self) -> None:
        for sc in self.sidecars:
            sc.stop()
        for a in self.apps:
            a.stop()
        self.agent.stop()


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObsMesh]:
    m = ObsMesh(tmp_path_factory.mktemp("observe"))
    try:
        eventually(lambda: outcome(m.web_up)[0] == "200", 40, "a first request through both sidecars")
        yield m
    finally:
        m.stop()


def test_access_logs_have_one_json_line_per_request_on_each_side(obs: ObsMesh) -> None:
    status, _ = outcome(obs.web_up, "/logged/one?x=1")
    assert status == "200"

    def lines() -> list[dict[str, Any]]:
        return [d for d in obs.log_lines() if d.get("path") == "/logged/one?x=1"]
    got = eventually(lambda: len(lines()) == 2 and lines(), 10, "both sidecars' lines for the request")
    by_cluster = {d["upstream_cluster"].split(".")[0]: d for d in got}
    assert set(by_cluster) == {"api", "local_app"}, got  # web's outbound line, api's inbound line
    out, inbound = by_cluster["api"], by_cluster["local_app"]
    for d in (out, inbound):
        assert d["method"] == "GET" and d["response_code"] == 200 and d["response_flags"] == "-"
        assert isinstance(d["duration"], int) and d["start_time"]
    assert out["upstream_cluster"].startswith("api.default.dc1.internal.")
    assert out["downstream_local_address"] == f"127.0.0.1:{obs.web_up}"
    assert out["upstream_host"].endswith(f":{obs.api_pub}")
    assert inbound["upstream_host"] == f"127.0.0.1:{obs.api_app}"
    assert inbound["downstream_local_address"].endswith(f":{obs.api_pub}")


def test_listener_logs_record_a_refused_plaintext_connection(obs: ObsMesh) -> None:
    with socket.create_connection(("127.0.0.1", obs.api_pub), timeout=3) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert b"HTTP/" not in s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            pass

    def refused() -> list[dict[str, Any]]:
        return [d for d in obs.log_lines() if d.get("response_flags") == "NR"
                and str(d.get("downstream_local_address", "")).endswith(f":{obs.api_pub}")]
    got = eventually(refused, 10, "the api listener's NR line for the plaintext connection")
    assert got[0]["upstream_cluster"] in (None, "-", "")  # never reached a cluster


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out.append((labels, float(m.group(2))))
    return out


def test_prometheus_metrics_carry_source_and_destination_tags(obs: ObsMesh) -> None:
    def total() -> float:
        return sum(v for lb, v in _samples(_metrics(obs.prom), "envoy_cluster_upstream_rq_total")
                   if lb.get("consul_destination_service") == "api")
    before = total()
    for i in range(5):
        assert outcome(obs.web_up, f"/m{i}")[0] == "200"
    eventually(lambda: total() >= before + 5, 10, "5 more upstream requests counted for api")
    text = _metrics(obs.prom)
    rq = [lb for lb, _ in _samples(text, "envoy_cluster_upstream_rq_total") if lb.get("consul_destination_service") == "api"]
    assert rq and rq[0]["consul_source_service"] == "web" and rq[0]["consul_destination_datacenter"] == "dc1"
    assert rq[0]["consul_source_datacenter"] == "dc1" and rq[0]["consul_destination_namespace"] == "default"
    # the latency histogram per pair, the golden-signal query's input
    assert any(lb.get("consul_destination_service") == "api"
               for lb, _ in _samples(text, "envoy_cluster_upstream_rq_time_bucket"))
    # the upstream listener's HTTP stats carry the upstream name
    assert any(lb.get("consul_upstream_service") == "api" and v >= 5
               for lb, v in _samples(text, "envoy_http_downstream_rq_total"))
    # only /metrics is served on the metrics port
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{obs.prom}/config_dump", timeout=5)
        raise AssertionError("the admin API must not be reachable through the metrics port")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404


def test_metrics_port_is_in_the_catalog_for_consul_sd(obs: ObsMesh) -> None:
    rows = obs.agent.json("GET", "/v1/catalog/service/web-sidecar-proxy")
    assert rows and rows[0]["ServiceMeta"]["envoy_metrics_port"] == str(obs.prom)
    assert rows[0]["ServiceMeta"]["envoy_metrics_path"] == "/metrics"
    api = obs.agent.json("GET", "/v1/catalog/service/api-sidecar-proxy")
    assert "envoy_metrics_port" not in (api[0]["ServiceMeta"] or {})  # no bind address, no key


def test_agent_metrics_show_xds_and_proxycfg(obs: ObsMesh) -> None:
    status, raw = obs.agent.request("GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200
    text = raw.decode()

    def value(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        assert m, f"{name} missing from /v1/agent/metrics"
        return float(m.group(1))
    assert value("lictor_xds_connected_proxies") == 2.0
    assert value("lictor_xds_pushes") > 0 and value("lictor_xds_push_latency_seconds_count") > 0
    assert 0 < value("lictor_xds_push_latency_seconds_max") < 5
    assert value("lictor_proxycfg_proxies") == 2.0 and value("lictor_proxycfg_snapshots_built") >= 2
    assert value("lictor_proxycfg_watches") > 0


def test_access_log_config_is_validated_at_write(obs: ObsMesh) -> None:
    for logs, want in [({"Enabled": True, "Type": "file"}, "AccessLogs.Path: is required"),
                       ({"Enabled": True, "Type": "syslog"}, "AccessLogs.Type: invalid value 'syslog'"),
                       ({"Enabled": True, "JSONFormat": "{not json"}, "AccessLogs.JSONFormat: invalid JSON"),
                       ({"Enabled": True, "JSONFormat": '{"a": "%START_TIME%"}', "TextFormat": "%START_TIME%"},
                        "JSONFormat, TextFormat cannot be combined")]:
        status, raw = obs.agent.request("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                                              "AccessLogs": logs})
        assert status == 400 and want in raw.decode(), (logs, status, raw)
    # nothing was half-written: the proxies keep logging to the file
    assert obs.agent.json("GET", "/v1/config/proxy-defaults/global")["AccessLogs"]["Type"] == "file"


def test_an_unwritable_access_log_path_is_nacked_and_traffic_keeps_flowing(obs: ObsMesh) -> None:
    def nacks() -> float:
        _, raw = obs.agent.request("GET", "/v1/agent/metrics?format=prometheus")
        m = re.search(r"^lictor_xds_nacks (\S+)$", raw.decode(), re.M)
        return float(m.group(1)) if m else 0.0
    before = nacks()
    good = {"Enabled": True, "Type": "file", "Path": str(obs.access_log)}
    bad = {"Enabled": True, "Type": "file", "Path": "/proc/lictor-no-such-dir/access.log"}
    obs.agent.json("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"},
                                         "AccessLogs": bad})
    try:
        eventually(lambda: nacks() > before, 15, "Envoy to reject (NACK) the listeners with the bad path")
        assert "rejected (NACK)" in obs.agent.log_text()
        status, _ = outcome(obs.web_up, "/still-working")
        assert status == "200"  # the last good listeners stay
        eventually(lambda: any(d.get("path") == "/still-working" for d in obs.log_lines()), 10,
                   "the request logged to the old file")
    finally:
        obs.agent.json("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                             "Config": {"protocol": "http"}, "AccessLogs": good})
