"""Convergence: time from a health change in the catalog to every affected proxy having the new
endpoints, with 1 and with 100 proxies on one agent; and the agent's CPU and RSS while 100 proxies
follow 10 catalog changes per second.

    lictor agent -dev  <--ADS--  K real Envoys (lictor connect envoy; K = min(N, 10))
                       <--ADS--  N-K gRPC Delta ADS clients in this process (they ACK at once, as Envoy)
    change: PUT /v1/agent/service/maintenance/api-1-sidecar-proxy (on / off), N proxies have
            upstream "api" (2 instances)

A real Envoy's time is the timestamp of its own log line for the EDS update (``upstream`` debug
logging, 1 ms resolution); a client's is when its response arrived. The change's start is taken
just before the HTTP PUT. Reported: per-proxy latency p50/p99 and per-change "all proxies have
it" p50/p99, median of the repetitions' figures with min..max.

With ``--change splitter`` the change is a service-splitter write instead (api is http, two
resolver subsets, the splits alternate 90/10 and 50/50): a real Envoy's time is its log line
accepting the RouteConfiguration update (its only route, "api"), a client's when the route with the new weights arrived (issue 12).

Usage: .venv/bin/python bench/xds/convergence.py [--proxies 1,100] [--changes 20] [--reps 3] [--change splitter]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc  # noqa: E402
from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # noqa: E402

from bench.xds.common import LICTOR, Procs, cpu_seconds, free_ports, http, percentile, rss_bytes, wait_until  # noqa: E402

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
RDS_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\].*Delta config for type.googleapis.com/envoy.config.route.v3.RouteConfiguration accepted")
EDS_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\].*EDS hosts or locality weights changed for cluster: api")


class FakeProxy:
    """A Delta ADS client that ACKs every response at once and records EDS arrivals."""

    def __init__(self, proxy_id: str) -> None:
        self.proxy_id = proxy_id
        self.arrivals: list[tuple[float, frozenset[str]]] = []
        self.routes: list[tuple[float, tuple[int, ...]]] = []  # (arrival, weights of route "api")

    async def run(self, target: str) -> None:
        q: asyncio.Queue[Any] = asyncio.Queue()
        node = base_pb2.Node(id=self.proxy_id)
        await q.put(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER))
        await q.put(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER))

        async def requests() -> Any:
            while True:
                yield await q.get()
        async with grpc.aio.insecure_channel(target) as ch:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
            eds_subscribed = False
            async for resp in stub.DeltaAggregatedResources(requests()):
                now = time.time()
                if resp.type_url == ENDPOINT:
                    eps: set[str] = set()
                    for r in resp.resources:
                        cla = endpoint_pb2.ClusterLoadAssignment()
                        r.resource.Unpack(cla)
                        for loc in cla.endpoints:
                            for lb in loc.lb_endpoints:
                                sa = lb.endpoint.address.socket_address
                                eps.add(f"{sa.address}:{sa.port_value}")
                    self.arrivals.append((now, frozenset(eps)))
                if resp.type_url == ROUTE:
                    from envoy.config.route.v3 import route_pb2
                    for r in resp.resources:
                        rc = route_pb2.RouteConfiguration()
                        r.resource.Unpack(rc)
                        ws = tuple(c.weight.value for vh in rc.virtual_hosts for rt in vh.routes
                                   for c in rt.route.weighted_clusters.clusters)
                        self.routes.append((now, ws))
                if resp.type_url == LISTENER and any(r.name.startswith("api:") for r in resp.resources):
                    await q.put(discovery_pb2.DeltaDiscoveryRequest(type_url=ROUTE, resource_names_subscribe=["api"]))
                await q.put(discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce))
                if resp.type_url == CLUSTER and not eds_subscribed:
                    names = [r.name for r in resp.resources if r.name != "local_app"]
                    await q.put(discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=names))
                    eds_subscribed = True


def envoy_times(log: Path, after: float, pattern: re.Pattern[str] = EDS_LINE) -> list[float]:
    out = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()
            if t >= after - 0.001:
                out.append(t)
    return out


SPLITS = {False: (90, 10), True: (50, 50)}


def splitter(even: bool) -> dict[str, Any]:
    a, b = SPLITS[even]
    return {"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": a, "ServiceSubset": "v1"},
                                                                  {"Weight": b, "ServiceSubset": "v2"}]}


def run_config(n: int, changes: int, wd: Path, rate_phase: bool, change: str = "health") -> dict[str, Any]:
    procs = Procs()
    hp, sp, serf, grpc_port = free_ports(4)
    res: dict[str, Any] = {"proxies": n}
    loop = asyncio.new_event_loop()
    try:
        agent = procs.start([*LICTOR, "agent", "-dev", "-node", "conv", f"-http-port={hp}", f"-grpc-port={grpc_port}",
                             f"-server-port={sp}", f"-serf-lan-port={serf}", "-dns-port=-1", "-log-level", "warn"],
                            wd / f"agent-{n}.log")
        base = f"http://127.0.0.1:{hp}"
        wait_until(lambda: json.loads(http("GET", base + "/v1/status/leader")[1]), 20, "the agent")
        ttl = [{"Name": "ttl", "TTL": "24h", "Status": "passing"}]
        if change == "splitter":
            for e in ({"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
                      {"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v1", "Subsets": {
                          "v1": {"Filter": "Service.Meta.v == one"}, "v2": {"Filter": "Service.Meta.v == two"}}},
                      splitter(False)):
                assert http("PUT", base + "/v1/config", e)[0] == 200, e
        for i, port in enumerate(free_ports(2)):
            http("PUT", base + "/v1/agent/service/register", {"Name": "api", "ID": f"api-{i + 1}", "Port": 1,
                 "Meta": {"v": ("one", "two")[i]}, "Connect": {"SidecarService": {"Port": port, "Checks": ttl}}})
        binds = free_ports(n)
        for i in range(n):
            st, raw = http("PUT", base + "/v1/agent/service/register", {"Name": f"web{i}", "Port": 1, "Connect": {
                "SidecarService": {"Port": 22000 + i, "Checks": ttl, "Proxy": {"Upstreams": [
                    {"DestinationName": "api", "LocalBindPort": binds[i]}]}}}})
            assert st == 200, raw
        k = min(n, 10)
        logs = []
        admins = free_ports(k)
        for i in range(k):
            log = wd / f"envoy-{n}-{i}.log"
            logs.append(log)
            procs.start([*LICTOR, "connect", "envoy", "-http-addr", f"127.0.0.1:{hp}", "-grpc-addr",
                         f"127.0.0.1:{grpc_port}", "-sidecar-for", f"web{i}", "-admin-bind", f"127.0.0.1:{admins[i]}",
                         "--", "--concurrency", "1", "--log-level", "info", "--component-log-level",
                         "upstream:debug,config:debug"],
                        log)
        fakes = [FakeProxy(f"web{i}-sidecar-proxy") for i in range(k, n)]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        for f in fakes:
            asyncio.run_coroutine_threadsafe(f.run(f"127.0.0.1:{grpc_port}"), loop)
        pattern = RDS_LINE if change == "splitter" else EDS_LINE
        wait_until(lambda: all(envoy_times(lg, 0, pattern) for lg in logs)
                   and all(f.routes if change == "splitter" else f.arrivals for f in fakes), 120,
                   "every proxy's first endpoints (routes)")
        time.sleep(1.0)
        per_proxy: list[float] = []
        all_have: list[float] = []
        for c in range(changes):
            on = c % 2 == 0
            t0 = time.time()
            if change == "splitter":
                http("PUT", base + "/v1/config", splitter(on))
                want_w = tuple(w * 100 for w in SPLITS[on])
            else:
                http("PUT", f"{base}/v1/agent/service/maintenance/api-1-sidecar-proxy?enable={'true' if on else 'false'}")
            want = 1 if on else 2

            def done() -> list[float] | None:
                lat = []
                for lg in logs:
                    ts = envoy_times(lg, t0, pattern)
                    if not ts:
                        return None
                    lat.append(ts[0] - t0)
                for f in fakes:
                    if change == "splitter":
                        hit = next((t for t, ws in f.routes if t >= t0 and ws == want_w), None)
                    else:
                        hit = next((t for t, eps in f.arrivals if t >= t0 and len(eps) == want), None)
                    if hit is None:
                        return None
                    lat.append(hit - t0)
                return lat
            lat = wait_until(done, 30, f"change {c} everywhere")
            per_proxy += lat
            all_have.append(max(lat))
            time.sleep(0.3)
        res.update(per_proxy_p50_ms=percentile(per_proxy, 50) * 1e3, per_proxy_p99_ms=percentile(per_proxy, 99) * 1e3,
                   all_p50_ms=percentile(all_have, 50) * 1e3, all_p99_ms=percentile(all_have, 99) * 1e3,
                   all_max_ms=max(all_have) * 1e3, changes=changes, real_envoys=k)
        if rate_phase and change == "health":
            # 10 catalog changes per second for 10 s: the agent's CPU and RSS
            c0, t0 = cpu_seconds(agent.pid), time.time()
            for c in range(100):
                on = c % 2 == 0
                http("PUT", f"{base}/v1/agent/service/maintenance/api-1-sidecar-proxy?enable={'true' if on else 'false'}")
                time.sleep(max(0.0, t0 + (c + 1) * 0.1 - time.time()))
            wall = time.time() - t0
            res.update(agent_cpu_cores_at_10_changes_per_s=(cpu_seconds(agent.pid) - c0) / wall,
                       agent_rss_mib=rss_bytes(agent.pid) / 2**20)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        procs.stop_all()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", default="1,100")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--change", choices=("health", "splitter"), default="health")
    a = ap.parse_args()
    wd = Path(tempfile.mkdtemp(prefix="lictor-bench-conv-"))
    results: dict[int, list[dict[str, Any]]] = {}
    for rep in range(a.reps):
        for n in [int(x) for x in a.proxies.split(",")]:
            r = run_config(n, a.changes, wd, rate_phase=(n >= 100), change=a.change)
            r["rep"] = rep
            print(json.dumps(r), flush=True)
            results.setdefault(n, []).append(r)
    print(f"\nmedian [min..max] over {a.reps} repetitions of {a.changes} changes each (logs: {wd})\n")
    keys = ["per_proxy_p50_ms", "per_proxy_p99_ms", "all_p50_ms", "all_p99_ms", "all_max_ms",
            "agent_cpu_cores_at_10_changes_per_s", "agent_rss_mib"]
    for n, rs in results.items():
        print(f"{n} proxies ({rs[0]['real_envoys']} real Envoys):")
        for key in keys:
            vs = [r[key] for r in rs if key in r]
            if vs:
                print(f"  {key:38s} {statistics.median(vs):8.2f} [{min(vs):.2f}..{max(vs):.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
