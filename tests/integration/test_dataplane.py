"""The data plane end to end: a real ``lictor agent -dev`` serving xDS to real Envoys started by
``lictor connect envoy``, two HTTP services on 127.0.0.1::

    test --h1--> web sidecar :web_up --mTLS--> api sidecar :api_pub --> api app
                 (SotW ADS)                    (Delta ADS)

Each test leaves intentions and config entries as it found them (the mesh is shared by the module).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.integration.conftest import AgentProcess, eventually, free_ports
from tests.integration.dataplane import LICTOR, App, Sidecar, held, outcome, plaintext_answer

pytestmark = pytest.mark.integration

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


class Mesh:
    def __init__(self, root: Path) -> None:
        (self.grpc, self.api_app, self.api_pub, self.web_app, self.web_pub, self.web_up, self.admin_api,
         self.admin_web, self.api2_app, self.api2_pub, self.admin_api2) = free_ports(11)
        self.root = root
        # leaves re-signed within 0.5 s of a root rotation (default: a random point in 30 s)
        self.agent = AgentProcess(root, f"-grpc-port={self.grpc}",
                                  env={"LICTOR_LEAF_ROOT_CHANGE_JITTER": "0.5"}).start()
        self.apps = [App("api", self.api_app)]
        self.sidecars: list[Sidecar] = []
        self.register("api", self.api_app, self.api_pub)
        self.register("web", self.web_app, self.web_pub, upstreams=[{"DestinationName": "api",
                                                                      "LocalBindPort": self.web_up}])
        self.api = self.sidecar("api", self.admin_api, "delta")
        self.web = self.sidecar("web", self.admin_web, "sotw")
        self.td = self.agent.json("GET", "/v1/connect/ca/roots")["TrustDomain"]

    def ensure_api2(self, meta: dict[str, str] | None = None) -> None:
        """A second api instance ("api-2", its app answers "hello from api2") with its sidecar."""
        if not any(a.server.name == "api2" for a in self.apps):  # type: ignore[attr-defined]
            self.apps.append(App("api2", self.api2_app))
        self.register("api", self.api2_app, self.api2_pub, sid="api-2", meta=meta)
        if not any(sc.name == "envoy-api-2" for sc in self.sidecars):
            self.sidecar("api-2", self.admin_api2, "delta")

    def register(self, name: str, port: int, pub: int, *, sid: str = "", upstreams: list[Any] | None = None,
                 config: dict[str, Any] | None = None, meta: dict[str, str] | None = None) -> None:
        proxy: dict[str, Any] = {"Upstreams": upstreams or []}
        if config:
            proxy["Config"] = config
        self.agent.json("PUT", "/v1/agent/service/register", {
            "Name": name, "ID": sid or name, "Port": port, "Meta": meta or {},
            "Connect": {"SidecarService": {"Port": pub, "Proxy": proxy, "Checks": [
                {"Name": "listening", "TCP": f"127.0.0.1:{pub}", "Interval": "1s"}]}}})

    def sidecar(self, service: str, admin: int, mode: str) -> Sidecar:
        sc = Sidecar(self.root, service, http_addr=self.agent.addr, grpc_port=self.grpc, admin_port=admin,
                     ads_mode=mode).start()
        self.sidecars.append(sc)
        return sc

    def spiffe(self, svc: str) -> str:
        return f"spiffe://{self.td}/ns/default/dc/dc1/svc/{svc}"

    def intention(self, src: str, dst: str, body: dict[str, Any] | None) -> None:
        q = f"/v1/connect/intentions/exact?source={src}&destination={dst}"
        if body is None:
            self.agent.request("DELETE", q)
        else:
            self.agent.json("PUT", q, body)

    def authorized(self, src: str = "web", dst: str = "api") -> bool:
        out = self.agent.json("POST", "/v1/agent/connect/authorize", {"Target": dst, "ClientCertURI": self.spiffe(src)})
        return bool(out["Authorized"])

    def stop(self) -> None:
        for sc in self.sidecars:
            sc.stop()
        for a in self.apps:
            a.stop()
        self.agent.stop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("dataplane"))
    try:
        eventually(lambda: outcome(m.web_up)[0] == "200", 40, "a first request through both sidecars")
        yield m
    finally:
        m.stop()


def test_request_reaches_api_over_mtls(mesh: Mesh) -> None:
    status, body = outcome(mesh.web_up, "/hello")
    assert status == "200" and "hello from api" in body and "path=/hello" in body
    # (tcp: no XFCC header; the client's SPIFFE ID is checked in the L7 test below)
    assert sum(mesh.api.stats("ssl.handshake").values()) > 0
    assert sum(v for k, v in mesh.web.stats("ssl.handshake").items() if k.startswith("cluster.api.")) > 0
    # TLS 1.3 between the sidecars
    assert sum(v for k, v in mesh.api.stats("ssl.versions.TLSv1.3").items()) > 0
    # plaintext on the public port gets no HTTP answer
    assert b"HTTP/" not in plaintext_answer(mesh.api_pub)
    # both ADS flavours are in use: web's Envoy on SotW, api's on Delta
    log = mesh.agent.log_text()
    assert "sotw stream opened for proxy web-sidecar-proxy" in log
    assert "delta stream opened for proxy api-sidecar-proxy" in log


def test_l4_intentions_match_authorize_and_apply_without_restart(mesh: Mesh) -> None:
    pids = [sc.proc.pid for sc in mesh.sidecars if sc.proc]
    table: list[list[tuple[str, dict[str, Any] | None]]] = [
        [("web", {"Action": "deny"})],
        [("web", {"Action": "allow"})],
        [("web", None), ("*", {"Action": "deny"})],
        [("web", {"Action": "allow"})],  # exact source beats the wildcard deny
        [("web", None)],                 # wildcard deny alone
    ]
    try:
        for step in table:
            for src, body in step:
                mesh.intention(src, "api", body)
            want = mesh.authorized()
            eventually(lambda: (outcome(mesh.web_up)[0] == "200") == want, 15,
                       f"Envoy to enforce {step} as /v1/agent/connect/authorize answers ({want})")
    finally:
        mesh.intention("web", "api", None)
        mesh.intention("*", "api", None)
    eventually(lambda: outcome(mesh.web_up)[0] == "200", 15, "traffic after the intentions are gone")
    assert [sc.proc.pid for sc in mesh.sidecars if sc.proc] == pids and all(sc.alive() for sc in mesh.sidecars)


def test_l7_intentions_answer_403_and_honour_permissions(mesh: Mesh) -> None:
    mesh.agent.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "api", "Protocol": "http"})
    try:
        # web's upstream becomes HTTP (RDS route "api") and the public listener an HTTP one
        eventually(lambda: "envoy.config.route.v3.RouteConfiguration" in json.dumps(mesh.web.config_dump())
                   and outcome(mesh.web_up)[0] == "200", 20, "the http upstream")
        # the server sidecar verified web's client certificate and tells the app its SPIFFE ID
        eventually(lambda: f"URI={mesh.spiffe('web')}" in outcome(mesh.web_up)[1], 10, "web's identity in XFCC")
        mesh.intention("web", "api", {"Action": "deny"})
        eventually(lambda: outcome(mesh.web_up)[0] == "403", 15, "an L7 deny (403)")
        assert mesh.authorized() is False
        mesh.intention("web", "api", {"Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
            {"Action": "deny", "HTTP": {"PathExact": "/ro", "Methods": ["POST"]}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})
        eventually(lambda: outcome(mesh.web_up, "/ok")[0] == "200", 15, "the L7 allow")
        assert outcome(mesh.web_up, "/admin/x")[0] == "403"
        assert outcome(mesh.web_up, "/ro")[0] == "200"
        assert outcome(mesh.web_up, "/ro", method="POST")[0] == "403"
        # sidecar to sidecar is HTTP/2 for an http service
        assert sum(v for k, v in mesh.web.stats("upstream_cx_http2_total").items() if k.startswith("cluster.api.")) > 0
    finally:
        mesh.intention("web", "api", None)
        mesh.agent.request("DELETE", "/v1/config/service-defaults/api")
    eventually(lambda: outcome(mesh.web_up)[0] == "200", 20, "traffic after the L7 test")


def test_critical_instance_leaves_eds_and_traffic_moves_to_the_healthy_one(mesh: Mesh) -> None:
    prefix = "api.default.dc1.internal."
    first = f"127.0.0.1:{mesh.api_pub}"
    assert mesh.web.endpoints(prefix) == [first]
    mesh.agent.json("PUT", "/v1/agent/service/maintenance/api-sidecar-proxy?enable=true&reason=test")
    eventually(lambda: mesh.web.endpoints(prefix) == [], 10, "the critical instance to leave EDS")
    assert outcome(mesh.web_up)[0] != "200"
    mesh.agent.json("PUT", "/v1/agent/service/maintenance/api-sidecar-proxy?enable=false")
    eventually(lambda: mesh.web.endpoints(prefix) == [first], 10, "the instance to come back")
    # a second instance: traffic keeps flowing while the first one fails
    mesh.ensure_api2()
    second = f"127.0.0.1:{mesh.api2_pub}"
    eventually(lambda: mesh.web.endpoints(prefix) == sorted([first, second]), 20, "two endpoints")
    mesh.agent.json("PUT", "/v1/agent/service/maintenance/api-sidecar-proxy?enable=true&reason=test")
    try:
        eventually(lambda: mesh.web.endpoints(prefix) == [second], 10, "only the healthy instance")
        results = [outcome(mesh.web_up) for _ in range(30)]
        assert all(s == "200" and "hello from api2" in b for s, b in results), results
    finally:
        mesh.agent.json("PUT", "/v1/agent/service/maintenance/api-sidecar-proxy?enable=false")


def test_nack_is_logged_counted_and_last_good_config_kept(mesh: Mesh) -> None:
    rejected_before = mesh.web.stat("cluster_manager.cds.update_rejected")
    bad = {"name": "local_app", "type": "STATIC", "connect_timeout": "1s",
           "load_assignment": {"cluster_name": "local_app", "endpoints": [{"lb_endpoints": [{"endpoint": {
               "address": {"socket_address": {"address": "not-an-ip", "port_value": 1}}}}]}]}}
    ups = [{"DestinationName": "api", "LocalBindPort": mesh.web_up}]
    mesh.register("web", mesh.web_app, mesh.web_pub, upstreams=ups, config={"envoy_local_cluster_json": json.dumps(bad)})
    try:
        eventually(lambda: mesh.web.stat("cluster_manager.cds.update_rejected") > rejected_before, 15,
                   "Envoy to reject the bad cluster")
        eventually(lambda: "rejected (NACK)" in mesh.agent.log_text(), 5, "the NACK in the agent's log")
        assert "malformed IP address" in mesh.agent.log_text() or "not-an-ip" in mesh.agent.log_text()
        metrics = mesh.agent.request("GET", "/v1/agent/metrics?format=prometheus")[1].decode()
        assert any(line.startswith("lictor_xds_nacks ") and float(line.split()[1]) >= 1
                   for line in metrics.splitlines()), metrics
        # the last good config keeps serving
        assert all(outcome(mesh.web_up)[0] == "200" for _ in range(5))
    finally:
        mesh.register("web", mesh.web_app, mesh.web_pub, upstreams=ups)
    ok = mesh.web.stat("cluster_manager.cds.update_success")
    eventually(lambda: mesh.web.stat("cluster_manager.cds.update_success") > ok, 15, "the good config accepted")
    assert outcome(mesh.web_up)[0] == "200"


def test_proxy_not_registered_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{mesh.grpc}") as ch:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
        req = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id="nobody-sidecar-proxy"), type_url=CLUSTER)
        with pytest.raises(grpc.RpcError) as info:
            next(iter(stub.StreamAggregatedResources(held(req), timeout=10)))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "not registered" in (info.value.details() or "")
        # a registered proxy gets its clusters on the same port
        req = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id="web-sidecar-proxy"), type_url=CLUSTER)
        call = stub.StreamAggregatedResources(held(req), timeout=10)
        first = next(iter(call))
        assert first.type_url == CLUSTER and len(first.resources) >= 2
        call.cancel()


def test_connect_envoy_errors_are_one_clear_line(mesh: Mesh) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LICTOR, "connect", "envoy", *args], capture_output=True, text=True, timeout=60)

    r = run("-http-addr", mesh.agent.addr, "-sidecar-for", "nope")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "No sidecar proxy registered" in r.stderr
    r = run("-http-addr", mesh.agent.addr, "-proxy-id", "nope")
    assert r.returncode == 1 and "No proxy registered" in r.stderr
    r = run("-http-addr", "127.0.0.1:1", "-sidecar-for", "web")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "cannot reach the agent" in r.stderr
    r = run("-http-addr", mesh.agent.addr, "-sidecar-for", "web", "-envoy-binary", "/nonexistent/envoy")
    assert r.returncode == 1 and "Envoy binary not found" in r.stderr
    r = run("-http-addr", mesh.agent.addr, "-sidecar-for", "web", "-bootstrap", "-grpc-addr", f"127.0.0.1:{mesh.grpc}")
    assert r.returncode == 0
    boot = json.loads(r.stdout)
    assert boot["node"]["id"] == "web-sidecar-proxy"
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def _leaf_serials(sc: Sidecar) -> set[str]:
    certs = json.loads(sc.text("/certs"))["certificates"]
    return {c["serial_number"] for entry in certs for c in entry.get("cert_chain") or [] if c.get("serial_number")}


def test_ca_rotation_and_leaf_renewal_cause_no_failed_request(mesh: Mesh) -> None:
    before = {sc.name: _leaf_serials(sc) for sc in (mesh.web, mesh.api)}
    assert all(before.values())
    roots = mesh.agent.json("GET", "/v1/connect/ca/roots")
    results: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            results.append(outcome(mesh.web_up)[0])
            time.sleep(0.01)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        assert mesh.agent.json("PUT", "/v1/connect/ca/configuration",
                               {"Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 256}, "Rotate": True}) is True
        after = mesh.agent.json("GET", "/v1/connect/ca/roots")
        assert after["ActiveRootID"] != roots["ActiveRootID"]
        # both sidecars get leaves from the new root over SDS (no restart), while traffic flows
        eventually(lambda: all(_leaf_serials(sc).isdisjoint(before[sc.name]) for sc in (mesh.web, mesh.api)), 20,
                   "new leaf certificates in both Envoys")
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    failed = [r for r in results if r != "200"]
    assert len(results) > 50 and not failed, f"{len(failed)} of {len(results)} requests failed: {set(failed)}"
    assert all(sc.alive() for sc in mesh.sidecars)


def test_troubleshoot_proxy_reports_a_healthy_sidecar(mesh: Mesh) -> None:
    r = subprocess.run([*LICTOR, "troubleshoot", "proxy", "-envoy-admin-endpoint", f"127.0.0.1:{mesh.admin_web}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "✓ public listener found: public_listener:" in r.stdout
    assert f"✓ upstream listener found: api:127.0.0.1:{mesh.web_up}" in r.stdout
    assert "✓ cluster api.default.dc1.internal." in r.stdout and "healthy endpoint" in r.stdout
    assert "leaf certificate" in r.stdout and "valid (" in r.stdout
    r = subprocess.run([*LICTOR, "troubleshoot", "proxy", "-envoy-admin-endpoint", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "cannot read Envoy's admin API" in r.stderr


def test_sigterm_with_drain_time_drains_then_stops(mesh: Mesh) -> None:
    pub, adm = free_ports(2)
    mesh.register("db", 1, pub)
    sc = Sidecar(mesh.root, "db", http_addr=mesh.agent.addr, grpc_port=mesh.grpc, admin_port=adm)
    sc.args[sc.args.index("--"):sc.args.index("--")] = ["-drain-time", "2"]
    sc.start()
    try:
        eventually(lambda: "public_listener:" in sc.text("/listeners"), 20, "db's listeners")
        t0 = time.monotonic()
        sc.signal(15)
        # Envoy keeps running (and answering) while it drains; a plain SIGTERM would stop it at once
        time.sleep(1.0)
        assert sc.alive() and sc.text("/ready").strip() == "LIVE"
        assert sc.proc is not None and sc.proc.wait(15) == 0
        assert time.monotonic() - t0 >= 1.8
        assert "caught ENVOY_SIGTERM" in sc.log_text()
    finally:
        sc.stop()
        mesh.agent.request("PUT", "/v1/agent/service/deregister/db")


def test_router_and_resolver_subsets_route_by_path(mesh: Mesh) -> None:
    """A service-router sends /v2 to a service-resolver subset (instances with meta version=v2),
    everything else to the default subset: routes from the compiled chain, one cluster per
    subset (SNI v2.api...), instances filtered by the subset's filter on the servers."""
    mesh.ensure_api2(meta={"version": "v2"})
    entries = [
        {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
        {"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": {
            "v1": {"Filter": "Service.Meta.version != v2"}, "v2": {"Filter": "Service.Meta.version == v2"}}},
        {"Kind": "service-router", "Name": "api", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"ServiceSubset": "v2"}}]},
    ]
    try:
        for e in entries:
            mesh.agent.json("PUT", "/v1/config", e)

        def routed() -> bool:
            a = [outcome(mesh.web_up, "/v2/x")[1] for _ in range(4)]
            b = [outcome(mesh.web_up, "/x")[1] for _ in range(4)]
            return all("hello from api2" in x for x in a) and all("hello from api\n" in x for x in b)
        eventually(routed, 30, "/v2 to the v2 subset and the rest to v1")
        clusters = mesh.web.text("/clusters")
        assert "v2.api.default.dc1.internal." in clusters and "v1.api.default.dc1.internal." in clusters
    finally:
        for e in reversed(entries):
            mesh.agent.request("DELETE", f"/v1/config/{e['Kind']}/{e['Name']}")
    eventually(lambda: outcome(mesh.web_up)[0] == "200", 20, "traffic after the routing test")


def test_permissive_mtls_mode_lets_plaintext_reach_the_app(mesh: Mesh) -> None:
    assert b"HTTP/" not in plaintext_answer(mesh.api_pub)  # strict (the default)
    mesh.agent.json("PUT", "/v1/config", {"Kind": "mesh", "Name": "mesh", "AllowEnablingPermissiveMutualTLS": True})
    mesh.agent.json("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "api", "MutualTLSMode": "permissive"})
    try:
        eventually(lambda: b"hello from api" in plaintext_answer(mesh.api_pub), 20, "plaintext to reach the app")
        # mTLS from web still works on the same port (eventually: web's pooled connections to the
        # replaced listener are drained by Envoy, and one request may meet a closing connection)
        eventually(lambda: outcome(mesh.web_up)[0] == "200", 10, "mTLS from web in permissive mode")
    finally:
        mesh.agent.request("DELETE", "/v1/config/service-defaults/api")
        mesh.agent.request("DELETE", "/v1/config/mesh/mesh")
    eventually(lambda: b"HTTP/" not in plaintext_answer(mesh.api_pub), 20, "strict again")
