"""Traffic management on real Envoy (issue 12): one agent, one set of sidecars, config entries
written through the HTTP API and compiled into routes and clusters::

    test --h1 keep-alive--> web sidecar :web_up ──mTLS──> api-1 sidecar --> app "v1" (meta version=v1)
                                                  ├────> api-2 sidecar --> app "v2" (meta version=v2)
                                                  └────> shadow sidecar --> app "shadow" (mirror target)

Each test writes its entries and deletes them again (the mesh is shared by the module). Shares
are checked with an exact two-sided binomial test at p >= 0.001.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import AgentProcess, eventually, free_ports
from tests.integration.dataplane import Sidecar
from tests.integration.trafficapp import TrafficApp

pytestmark = pytest.mark.integration

HTTP_DEFAULTS = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
SUBSETS = {"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": {
    "v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}


def binomial_p(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value of k successes in n trials (sum of outcomes no likelier than k)."""
    def logpmf(i: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + \
            (n - i) * math.log1p(-p)
    ref = logpmf(k)
    return min(1.0, sum(math.exp(logpmf(i)) for i in range(n + 1) if logpmf(i) <= ref + 1e-9))


class Client:
    """One keep-alive HTTP/1.1 connection to a sidecar's upstream listener (reopened on error)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, headers=headers or {})
                resp = self.conn.getresponse()
                body = resp.read().decode(errors="replace")
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 0, "closed", {}
        raise AssertionError("unreachable")

    def reconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def instance(self, path: str = "/", **kw: Any) -> str:
        status, body, _ = self.get(path, **kw)
        for line in body.splitlines():
            if line.startswith("instance="):
                return f"{status}:{line[9:]}"
        return f"{status}:-"


class Mesh:
    def __init__(self, root: Path) -> None:
        (self.grpc, self.v1_app, self.v1_pub, self.v2_app, self.v2_pub, self.sh_app, self.sh_pub, self.web_app,
         self.web_pub, self.web_up, self.adm_web, self.adm_v1, self.adm_v2, self.adm_sh) = free_ports(14)
        self.root = root
        self.agent = AgentProcess(root, f"-grpc-port={self.grpc}").start()
        self.sidecars: list[Sidecar] = []
        self.apps = {"v1": TrafficApp("v1", self.v1_app), "v2": TrafficApp("v2", self.v2_app),
                     "shadow": TrafficApp("shadow", self.sh_app)}
        self.put(HTTP_DEFAULTS)
        self.register("api", "api-1", self.v1_app, self.v1_pub, meta={"version": "v1"})
        self.register("api", "api-2", self.v2_app, self.v2_pub, meta={"version": "v2"})
        self.register("shadow", "shadow", self.sh_app, self.sh_pub)
        self.register("web", "web", self.web_app, self.web_pub,
                      upstreams=[{"DestinationName": "api", "LocalBindPort": self.web_up}])
        for sid, adm in (("api-1", self.adm_v1), ("api-2", self.adm_v2), ("shadow", self.adm_sh)):
            self.sidecars.append(Sidecar(root, sid, http_addr=self.agent.addr, grpc_port=self.grpc,
                                         admin_port=adm).start())
        self.web = Sidecar(root, "web", http_addr=self.agent.addr, grpc_port=self.grpc, admin_port=self.adm_web).start()
        self.sidecars.append(self.web)
        self.client = Client(self.web_up)

    def put(self, entry: dict[str, Any]) -> None:
        self.agent.json("PUT", "/v1/config", entry)

    def delete(self, *entries: dict[str, Any]) -> None:
        for e in reversed(entries):
            self.agent.request("DELETE", f"/v1/config/{e['Kind']}/{e['Name']}")

    def register(self, name: str, sid: str, port: int, pub: int, *, meta: dict[str, str] | None = None,
                 upstreams: list[Any] | None = None) -> None:
        self.agent.json("PUT", "/v1/agent/service/register", {
            "Name": name, "ID": sid, "Port": port, "Meta": meta or {},
            "Connect": {"SidecarService": {"Port": pub, "Proxy": {"Upstreams": upstreams or []}, "Checks": [
                {"Name": "listening", "TCP": f"127.0.0.1:{pub}", "Interval": "1s"}]}}})

    def routes_have(self, *needles: str) -> bool:
        dump = self.web.text("/config_dump?resource=dynamic_route_configs")
        return all(n in dump for n in needles)

    def clusters_have(self, *needles: str) -> bool:
        dump = self.web.text("/config_dump?resource=dynamic_active_clusters")
        return all(n in dump for n in needles)

    def web_stat_sum(self, suffix: str, cluster_part: str = "api.default.dc1") -> int:
        return sum(v for k, v in self.web.stats(suffix).items() if cluster_part in k and k.endswith(suffix))

    def stop(self) -> None:
        self.client.reconnect()
        for sc in self.sidecars:
            sc.stop()
        for a in self.apps.values():
            a.stop()
        self.agent.stop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("traffic"))
    try:
        eventually(lambda: m.client.get("/")[0] == 200, 40, "a first request through the sidecars")
        # every instance's sidecar passing its check (else a subset can be empty for a moment)
        eventually(lambda: len(m.agent.json("GET", "/v1/health/connect/api?passing")) == 2
                   and len(m.agent.json("GET", "/v1/health/connect/shadow?passing")) == 1, 20, "all instances healthy")
        yield m
    finally:
        m.stop()


def _shares(client: Client, n: int, path: str = "/") -> dict[str, int]:
    out: dict[str, int] = {}
    for _ in range(n):
        k = client.instance(path)
        out[k] = out.get(k, 0) + 1
    return out


def test_split_90_10_within_binomial_tolerance_then_50_50_without_failures(mesh: Mesh) -> None:
    split = {"Kind": "service-splitter", "Name": "api", "Splits": [
        {"Weight": 90, "ServiceSubset": "v1", "RequestHeaders": {"Set": {"x-split": "stable"}}},
        {"Weight": 10, "ServiceSubset": "v2", "ResponseHeaders": {"Set": {"x-canary": "yes"}}}]}
    entries = [SUBSETS, split]
    try:
        for e in entries:
            mesh.put(e)
        eventually(lambda: mesh.routes_have('"weight": 9000', "x-canary"), 30, "the splitter to reach Envoy")
        shares = _shares(mesh.client, 2000)
        assert set(shares) == {"200:v1", "200:v2"}, shares
        p = binomial_p(shares["200:v2"], 2000, 0.10)
        assert p >= 0.001, f"v2 got {shares['200:v2']}/2000 (p={p:.2g}) for a 10% split"
        # per-split header changes: the request header reaches v1 only, the response header comes from v2 only
        seen = [mesh.client.get("/h") for _ in range(80)]
        for status, body, headers in seen:
            assert status == 200
            if "instance=v1" in body:
                assert "x-split=stable" in body and "x-canary" not in headers
            else:
                assert "x-split" not in body and headers.get("x-canary") == "yes"
        # 50/50 with traffic flowing: no failed request, no Envoy restart
        pids = [sc.proc.pid for sc in mesh.sidecars if sc.proc]
        failures: list[Any] = []
        stop = threading.Event()

        def load() -> None:
            c = Client(mesh.web_up)
            while not stop.is_set():
                k = c.instance("/")
                if not k.startswith("200:"):
                    failures.append(k)
            c.reconnect()
        t = threading.Thread(target=load)
        t.start()
        try:
            mesh.put({**split, "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]})
            eventually(lambda: mesh.routes_have('"weight": 5000'), 20, "the 50/50 split")
        finally:
            stop.set()
            t.join()
        assert failures == []
        shares = _shares(mesh.client, 600)
        assert binomial_p(shares.get("200:v2", 0), 600, 0.5) >= 0.001, shares
        assert [sc.proc.pid for sc in mesh.sidecars if sc.proc] == pids
    finally:
        mesh.delete(*entries)


def test_router_matches_and_actions(mesh: Mesh) -> None:
    router = {"Kind": "service-router", "Name": "api", "Routes": [
        {"Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "1"}]}}, "Destination": {"ServiceSubset": "v2"}},
        {"Match": {"HTTP": {"PathPrefix": "/api/v1/booking/"}},
         "Destination": {"ServiceSubset": "v2", "PrefixRewrite": "/booking/",
                         "RequestHeaders": {"Add": {"x-via": "router"}}, "ResponseHeaders": {"Set": {"x-routed": "1"}}}},
        {"Match": {"HTTP": {"QueryParam": [{"Name": "beta", "Exact": "on"}]}}, "Destination": {"ServiceSubset": "v2"}},
        {"Match": {"HTTP": {"Methods": ["DELETE"]}}, "Destination": {"ServiceSubset": "v2"}},
        {"Match": {"HTTP": {"PathPrefix": "/flaky"}},
         "Destination": {"NumRetries": 2, "RetryOnStatusCodes": [503], "PerTryTimeout": "2s"}},
        {"Match": {"HTTP": {"PathPrefix": "/noretry"}}, "Destination": {}},
        {"Match": {"HTTP": {"PathPrefix": "/slow"}}, "Destination": {"RequestTimeout": "400ms"}},
    ]}
    entries = [SUBSETS, router]
    c = mesh.client
    try:
        for e in entries:
            mesh.put(e)
        eventually(lambda: mesh.routes_have("x-canary", "/api/v1/booking/", "0.400s")
                   and not mesh.routes_have("weighted_clusters"), 30, "the router to reach Envoy")
        # header match: v2; everything else: the default subset v1
        assert {c.instance("/", headers={"x-canary": "1"}) for _ in range(10)} == {"200:v2"}
        assert {c.instance("/", headers={"x-canary": "0"}) for _ in range(10)} == {"200:v1"}
        # path prefix with rewrite and header changes: the app sees the rewritten path
        status, body, headers = c.get("/api/v1/booking/42")
        assert status == 200 and "instance=v2" in body and "path=/booking/42" in body and "x-via=router" in body
        assert headers.get("x-routed") == "1"
        # query parameter and method matches
        assert c.instance("/q?beta=on") == "200:v2" and c.instance("/q?beta=off") == "200:v1"
        assert c.instance("/m", method="DELETE") == "200:v2" and c.instance("/m", method="GET") == "200:v1"
        # a retry policy turns the app's one-off 503 into a 200; without it the client sees the 503
        retries = mesh.web_stat_sum("upstream_rq_retry", "v1.api.default.dc1")
        assert c.get("/flaky?fail=once:a")[0] == 200
        assert mesh.web_stat_sum("upstream_rq_retry", "v1.api.default.dc1") == retries + 1
        assert c.get("/noretry?fail=once:b")[0] == 503
        # a per-route timeout: 504 for the slow request, not for the fast one
        t0 = time.monotonic()
        assert c.get("/slow?ms=1500")[0] == 504
        assert time.monotonic() - t0 < 1.2
        assert c.get("/slow?ms=10")[0] == 200
        assert c.get("/other?ms=700")[0] == 200  # other routes keep the default 15 s
    finally:
        mesh.delete(*entries)


def _burst(port: int, path: str, n: int) -> list[int]:
    def one(_: int) -> int:
        c = Client(port)
        try:
            return c.get(path, timeout=10)[0]
        finally:
            c.reconnect()
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_retry_budget_and_circuit_breaker(mesh: Mesh) -> None:
    router = {"Kind": "service-router", "Name": "api", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/"}}, "Destination": {"NumRetries": 5, "RetryOn": ["5xx"]}}]}
    budget = {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "UpstreamConfig": {"Overrides": [
        {"Name": "api", "RetryBudget": {"BudgetPercent": 10.0, "MinRetryConcurrency": 1}}]}}
    entries = [router, budget]
    try:
        for e in entries:
            mesh.put(e)
        eventually(lambda: mesh.clusters_have("retry_budget") and mesh.routes_have('"num_retries": 5')
                   and not mesh.routes_have("x-canary"), 30, "the retry budget and policy")
        before = mesh.web_stat_sum("upstream_rq_retry_overflow")
        retried = mesh.web_stat_sum("upstream_rq_retry")
        statuses = _burst(mesh.web_up, "/?fail=always&ms=200", 16)
        assert all(s == 503 for s in statuses), statuses
        assert mesh.web_stat_sum("upstream_rq_retry_overflow") > before
        assert mesh.web_stat_sum("upstream_rq_retry") - retried < 16 * 5  # the budget capped the retries
        # circuit breaker: one connection, one pending request, one request at a time
        mesh.put({**budget, "UpstreamConfig": {"Overrides": [{"Name": "api", "Limits": {
            "MaxConnections": 1, "MaxPendingRequests": 1, "MaxConcurrentRequests": 1}}]}})
        mesh.delete(router)
        eventually(lambda: mesh.clusters_have('"max_requests": 1') and not mesh.routes_have("num_retries"),
                   30, "the limits on the cluster")
        assert [mesh.client.get("/seq")[0] for _ in range(20)] == [200] * 20
        # (sidecar to sidecar is one HTTP/2 connection, so Envoy counts requests over the limit as
        # upstream_rq_active_overflow; upstream_rq_pending_overflow counts those over MaxPendingRequests)
        overflow = mesh.web_stat_sum("upstream_rq_active_overflow") + mesh.web_stat_sum("upstream_rq_pending_overflow")
        statuses = _burst(mesh.web_up, "/?ms=300", 12)
        assert 503 in statuses and 200 in statuses, statuses
        after = mesh.web_stat_sum("upstream_rq_active_overflow") + mesh.web_stat_sum("upstream_rq_pending_overflow")
        assert after - overflow == statuses.count(503), (statuses, mesh.web.stats("overflow"))
        assert [mesh.client.get("/seq")[0] for _ in range(20)] == [200] * 20
    finally:
        mesh.delete(*entries)


def test_outlier_detection_ejects_and_returns_an_instance(mesh: Mesh) -> None:
    defaults = {"Kind": "service-defaults", "Name": "web", "Protocol": "http", "UpstreamConfig": {"Defaults": {
        "PassiveHealthCheck": {"Interval": "500ms", "MaxFailures": 3, "EnforcingConsecutive5xx": 100,
                               "MaxEjectionPercent": 100, "BaseEjectionTime": "2s"}}}}
    try:
        mesh.put(defaults)
        eventually(lambda: mesh.clusters_have("outlier_detection") and not mesh.clusters_have("max_requests\": 1,"),
                   30, "outlier detection on the cluster")
        eventually(lambda: set(_shares(mesh.client, 20)) == {"200:v1", "200:v2"}, 20, "both instances answering")
        mesh.apps["v2"].failing = True
        ejected = mesh.web_stat_sum("outlier_detection.ejections_enforced_total")
        t0 = time.monotonic()
        # traffic first (the lambda sends 20 requests), then the counter
        eventually(lambda: set(_shares(mesh.client, 20)) == {"200:v1"}
                   and mesh.web_stat_sum("outlier_detection.ejections_enforced_total") > ejected, 10,
                   "the failing instance ejected")
        assert time.monotonic() - t0 < 5
        mesh.apps["v2"].failing = False
        eventually(lambda: "200:v2" in _shares(mesh.client, 20), 15, "the instance back after the ejection time")
    finally:
        mesh.apps["v2"].failing = False
        mesh.delete(defaults)


def test_mirroring_and_fault_injection(mesh: Mesh) -> None:
    router = {"Kind": "service-router", "Name": "api", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/mirror"}},
         "Destination": {"ServiceSubset": "v1", "RequestMirrorPolicies": [{"Service": "shadow", "Percent": 100}]}},
        {"Match": {"HTTP": {"PathPrefix": "/abort"}},
         "Destination": {"ServiceSubset": "v1", "FaultInjection": {"Abort": {"HTTPStatus": 418, "Percent": 30}}}},
        {"Match": {"HTTP": {"PathPrefix": "/delay"}},
         "Destination": {"ServiceSubset": "v1", "FaultInjection": {
             "Delay": {"Duration": "300ms", "Percent": 100},
             "HeaderMatch": [{"Name": "x-chaos", "Present": True}]}}},
    ]}
    entries = [SUBSETS, router]
    c = mesh.client
    try:
        for e in entries:
            mesh.put(e)
        eventually(lambda: mesh.routes_have("request_mirror_policies", "/delay", "x-chaos")
                   and mesh.clusters_have("shadow.default.dc1")
                   and "envoy.filters.http.fault" in mesh.web.text("/config_dump?resource=dynamic_listeners"), 30,
                   "the mirror and fault routes")
        # the first fault on an upstream adds the fault filter to its listener: Envoy replaces the
        # listener, so a kept-alive connection of the old one drains; a new connection has faults
        c.reconnect()
        eventually(lambda: c.instance("/mirror") == "200:v1" and mesh.apps["shadow"].count > 0, 30,
                   "the shadow service reachable")
        time.sleep(0.3)
        shadow0 = mesh.apps["shadow"].count
        answers = {c.instance(f"/mirror/{i}") for i in range(50)}
        assert answers == {"200:v1"}  # clients see only the primary
        eventually(lambda: mesh.apps["shadow"].count - shadow0 == 50, 5, "50 copies at the shadow")
        assert any(p.startswith("/mirror/49") for p in mesh.apps["shadow"].paths)
        # abort 30%: a binomial share of 418s, the rest reach v1
        results = [c.instance("/abort") for _ in range(400)]
        aborted = results.count("418:-")
        assert aborted + results.count("200:v1") == 400, set(results)
        assert binomial_p(aborted, 400, 0.30) >= 0.001, aborted
        # delay only for requests carrying the header
        t0 = time.monotonic()
        assert c.get("/delay", headers={"x-chaos": "1"})[0] == 200
        assert time.monotonic() - t0 >= 0.29  # (Envoy's timers may fire a millisecond early)
        t0 = time.monotonic()
        assert c.get("/delay")[0] == 200
        assert time.monotonic() - t0 < 0.2
    finally:
        mesh.delete(*entries)


def test_ring_hash_sends_a_header_value_to_one_instance(mesh: Mesh) -> None:
    resolver = {"Kind": "service-resolver", "Name": "api", "LoadBalancer": {
        "Policy": "ring_hash", "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}]}}
    try:
        mesh.put(resolver)
        eventually(lambda: mesh.clusters_have("RING_HASH") and mesh.routes_have("x-user")
                   and not mesh.routes_have("x-chaos"), 30, "ring_hash on the cluster")
        eventually(lambda: set(_shares(mesh.client, 20)) == {"200:v1", "200:v2"}, 20, "both instances answering")
        picked = {}
        for u in range(16):
            got = {mesh.client.instance("/", headers={"x-user": f"user-{u}"}) for _ in range(8)}
            assert len(got) == 1, (u, got)  # the same value always lands on the same instance
            picked[u] = got.pop()
        assert set(picked.values()) == {"200:v1", "200:v2"}, picked  # (all 16 on one side: p = 2^-15)
    finally:
        mesh.delete(resolver)


def test_local_rate_limit_answers_429_past_the_budget_and_recovers(mesh: Mesh) -> None:
    limits = {"Kind": "service-defaults", "Name": "api", "Protocol": "http", "RateLimits": {"InstanceLevel": {
        "RequestsPerSecond": 50, "RequestsMaxBurst": 50,
        "Routes": [{"PathPrefix": "/login", "RequestsPerSecond": 1, "RequestsMaxBurst": 2}]}}}
    api1 = mesh.sidecars[0]
    try:
        mesh.put(limits)
        eventually(lambda: all("envoy.filters.http.local_ratelimit" in sc.text("/config_dump?resource=dynamic_listeners")
                               for sc in mesh.sidecars[:2]), 30, "the rate limit on both api sidecars")
        mesh.client.reconnect()
        time.sleep(2.5)  # both instances' /login buckets full again (1 token a second, 2 deep)
        got = [mesh.client.get("/login") for _ in range(12)]
        statuses = [s for s, _, _ in got]
        # two instances, each with a bucket of 2 (+ at most one refill during the burst)
        assert 4 <= statuses.count(200) <= 6 and statuses.count(429) == 12 - statuses.count(200), statuses
        limited = next(h for s, _, h in got if s == 429)
        assert limited.get("x-ratelimit-limit") and limited.get("x-ratelimit-remaining") == "0", limited
        assert sum(v for k, v in api1.stats("local_ratelimit").items() if k.endswith("rate_limited")) > 0
        # other paths have their own (larger) bucket; /login recovers after a refill
        assert {mesh.client.get("/other")[0] for _ in range(10)} == {200}
        eventually(lambda: mesh.client.get("/login")[0] == 200, 3, "/login after the refill")
    finally:
        mesh.delete(limits)


def test_bad_entries_are_refused_naming_the_field_and_nothing_is_written(mesh: Mesh) -> None:
    import json
    import subprocess

    from tests.integration.dataplane import LICTOR

    mesh.put(SUBSETS)
    try:
        kinds = ("service-router", "service-splitter", "service-resolver", "service-defaults")
        before = {k: mesh.agent.request("GET", f"/v1/config/{k}")[1] for k in kinds}
        bad = [
            ({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 60, "ServiceSubset": "v1"},
                                                                   {"Weight": 30, "ServiceSubset": "v2"}]},
             "Splits: the sum of all split weights must be 100, not 90"),
            ({"Kind": "service-resolver", "Name": "api", "Subsets": {"v3": {"Filter": "Service.Meta.version ="}}},
             "Subsets.v3.Filter: invalid filter"),
            ({"Kind": "service-router", "Name": "api", "Routes": [{"Destination": {
                "RequestMirrorPolicies": [{"Service": "api", "Percent": 10}]}}]},
             "Routes[0].Destination.RequestMirrorPolicies[0].Service: a mirror to the route's own destination"),
            ({"Kind": "service-router", "Name": "api", "Routes": [{"Destination": {
                "FaultInjection": {"Abort": {"HTTPStatus": 503, "Percent": 101}}}}]},
             "Routes[0].Destination.FaultInjection.Abort.Percent: must be greater than 0 and at most 100, got 101"),
            ({"Kind": "service-router", "Name": "api", "Routes": [{"Destination": {"RequestTimeout": "-3s"}}]},
             "Routes[0].Destination.RequestTimeout: duration must not be negative"),
            ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Overrides": [
                {"Name": "api", "RetryBudget": {"BudgetPercent": 250}}]}},
             "UpstreamConfig.Overrides[0].RetryBudget.BudgetPercent"),
        ]
        for body, message in bad:
            status, raw = mesh.agent.request("PUT", "/v1/config", body)
            assert status == 400 and message in raw.decode(), (body, status, raw)
        # a route to a tcp service (its protocol comes from its own service-defaults)
        mesh.put({"Kind": "service-defaults", "Name": "legacy", "Protocol": "tcp"})
        before["service-defaults"] = mesh.agent.request("GET", "/v1/config/service-defaults")[1]
        status, raw = mesh.agent.request("PUT", "/v1/config", {"Kind": "service-router", "Name": "api", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/legacy"}}, "Destination": {"Service": "legacy"}}]})
        assert status == 400 and 'service "legacy" has protocol "tcp"' in raw.decode(), raw
        # the CLI says the same, naming the field
        path = mesh.root / "bad-split.json"
        path.write_text(json.dumps(bad[0][0]))
        proc = subprocess.run([*LICTOR, "config", "write", f"-http-addr={mesh.agent.addr}", str(path)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and "the sum of all split weights must be 100" in proc.stdout + proc.stderr
        # nothing was written: every list (with its ModifyIndex values) is as before
        assert {k: mesh.agent.request("GET", f"/v1/config/{k}")[1] for k in kinds} == before
        # the discovery chain shows the compiled result of what was accepted
        chain = mesh.agent.json("GET", "/v1/discovery-chain/api")["Chain"]
        assert chain["StartNode"] == "resolver:v1.api.default.default.dc1"
        assert set(chain["Targets"]) == {"v1.api.default.default.dc1"}
        assert chain["Targets"]["v1.api.default.default.dc1"]["Subset"]["Filter"] == "Service.Meta.version == v1"
    finally:
        mesh.agent.request("DELETE", "/v1/config/service-defaults/legacy")
        mesh.delete(SUBSETS)


def test_ingress_gateway_routes_hosts_and_paths_into_the_mesh(mesh: Mesh) -> None:
    gw_port, gw_admin, listener = free_ports(3)
    entries = [SUBSETS,
               {"Kind": "service-router", "Name": "api", "Routes": [
                   {"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"ServiceSubset": "v2"}}]},
               {"Kind": "ingress-gateway", "Name": "ig", "Listeners": [{"Port": listener, "Protocol": "http", "Services": [
                   {"Name": "api", "Hosts": ["api.example.com"], "RequestHeaders": {"Set": {"x-from-gateway": "ig"}}},
                   {"Name": "shadow", "Hosts": ["shadow.example.com"]}]}]}]
    gw = Sidecar(mesh.root, "ig", http_addr=mesh.agent.addr, grpc_port=mesh.grpc, admin_port=gw_admin)
    gw.name = "envoy-ingress-ig"
    i = gw.args.index("-sidecar-for")
    gw.args[i:i + 2] = ["-gateway=ingress", "-register", "-service", "ig", "-address", f"127.0.0.1:{gw_port}"]
    client = Client(listener)
    try:
        for e in entries:
            mesh.put(e)
        gw.start()

        def via(host: str, path: str) -> str:
            return client.instance(path, headers={"Host": host})
        eventually(lambda: via("api.example.com", "/v2/x") == "200:v2" and via("shadow.example.com", "/") == "200:shadow",
                   30, "the gateway's routes and clusters")
        # two host names to two services, two paths of one to two subsets, over mTLS into the mesh
        assert {via("api.example.com", "/v2/x") for _ in range(5)} == {"200:v2"}
        assert {via("api.example.com", "/x") for _ in range(5)} == {"200:v1"}
        assert {via("shadow.example.com", "/x") for _ in range(5)} == {"200:shadow"}
        assert client.get("/x", headers={"Host": "other.example.com"})[0] == 404
        assert "x-from-gateway=ig" in client.get("/h", headers={"Host": "api.example.com"})[1]
        assert sum(v for k, v in gw.stats("ssl.handshake").items() if k.startswith("cluster.")) > 0
        # intentions apply with the gateway as the source
        mesh.agent.json("PUT", "/v1/connect/intentions/exact?source=ig&destination=shadow", {"Action": "deny"})
        eventually(lambda: client.get("/x", headers={"Host": "shadow.example.com"})[0] == 403, 15,
                   "the deny for the gateway")
        assert via("api.example.com", "/x") == "200:v1"
    finally:
        mesh.agent.request("DELETE", "/v1/connect/intentions/exact?source=ig&destination=shadow")
        client.reconnect()
        gw.stop()
        mesh.agent.request("PUT", "/v1/agent/service/deregister/ig")
        mesh.delete(*entries)
