"""proxycfg with an in-memory RPC and leaf-certificate twin: one shared watch per distinct query,
coalesced snapshots, and the snapshot's content from the catalog's answers."""

from __future__ import annotations

import json

import asyncio
from typing import Any

from lictor.agent.proxycfg.cache import AgentCache
from lictor.agent.proxycfg.state import ProxyState, endpoints_from_health, routes_from_chain

TD = "td.consul"


class FakeRPC:
    """Blocking queries over a dict of results; ``set`` bumps the index and wakes the waiters."""

    def __init__(self) -> None:
        self.index = 1
        self.results: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def set(self, key: str, value: Any) -> None:
        self.results[key] = value
        self.index += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def __call__(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, args))
        key = f"{name}:{args.get('name') or args.get('service') or args.get('kind')}"
        if args.get("min_index", 0) >= self.index:
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), args.get("wait", 1))
            except TimeoutError:
                pass
        return {"index": self.index, "result": self.results.get(key)}


class FakeLeaves:
    async def get_roots(self, *, min_index: int = 0) -> tuple[int, dict[str, Any]]:
        if min_index:
            await asyncio.sleep(3600)
        return 1, {"TrustDomain": TD, "Roots": [{"RootCert": "ROOT"}], "ActiveRootID": "r"}

    async def get(self, service: str, *, min_index: int = 0, token: str = "") -> tuple[int, dict[str, Any]]:
        if min_index:
            await asyncio.sleep(3600)
        return 1, {"CertPEM": f"CERT-{service}", "PrivateKeyPEM": "KEY"}


def chain(svc: str) -> dict[str, Any]:
    tid = f"{svc}.default.default.dc1"
    return {"ServiceName": svc, "Protocol": "tcp", "StartNode": f"resolver:{tid}",
            "Nodes": {f"resolver:{tid}": {"Type": "resolver", "Resolver": {"Target": tid}}},
            "Targets": {tid: {"ID": tid, "Service": svc, "Namespace": "default", "Datacenter": "dc1",
                              "SNI": f"{svc}.default.dc1.internal.{TD}", "ConnectTimeout": "5s", "Subset": {}}}}


def row(addr: str, port: int, *statuses: str, weights: dict[str, int] | None = None) -> dict[str, Any]:
    return {"Node": {"Node": addr, "Address": addr},
            "Service": {"Address": "", "Port": port, "Weights": weights or {"Passing": 1, "Warning": 1}},
            "Checks": [{"Status": s} for s in statuses]}


def registration(i: int, upstream: str = "api") -> dict[str, Any]:
    return {"id": f"web{i}-sidecar-proxy", "service": f"web{i}-sidecar-proxy", "kind": "connect-proxy", "port": 21000 + i,
            "proxy": {"DestinationServiceName": f"web{i}", "LocalServicePort": 8080,
                      "Upstreams": [{"DestinationName": upstream, "LocalBindPort": 9191}]}}


async def test_many_proxies_with_one_upstream_share_one_watch() -> None:
    rpc = FakeRPC()
    rpc.set("DiscoveryChain.Get:api", chain("api"))
    rpc.set("Health.ServiceNodes:api", [row("10.0.0.1", 21000, "passing")])
    cache = AgentCache(rpc)
    states = [ProxyState(registration=registration(i), cache=cache, leafcerts=FakeLeaves(), datacenter="dc1",
                         coalesce=0.005) for i in range(100)]
    for s in states:
        s.start()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if all(s.snapshot is not None for s in states):
            break
    assert all(s.snapshot is not None for s in states)
    health = [a for n, a in rpc.calls if n == "Health.ServiceNodes"]
    chains = {a["name"] for n, a in rpc.calls if n == "DiscoveryChain.Get"}
    # one loop per distinct query: one health watch for api, whatever the number of proxies
    assert sum(1 for k in cache._entries if k.startswith("Health.ServiceNodes")) == 1
    assert len(health) <= 3, health
    assert "api" in chains
    snap = states[7].snapshot
    assert snap is not None and snap.service == "web7" and snap.port == 21007
    [up] = snap.upstreams
    assert up.targets[0].cluster_name == f"api.default.dc1.internal.{TD}"
    assert up.targets[0].spiffe_id == f"spiffe://{TD}/ns/default/dc/dc1/svc/api"
    assert [e.address for e in up.targets[0].endpoints] == ["10.0.0.1"]
    # a health change reaches every proxy, through the one watch
    versions = [s.cell.version for s in states]
    rpc.set("Health.ServiceNodes:api", [row("10.0.0.1", 21000, "critical"), row("10.0.0.2", 21000, "passing")])
    for _ in range(100):
        await asyncio.sleep(0.01)
        if all(s.cell.version > v for s, v in zip(states, versions)):
            break
    assert all(s.snapshot.upstreams[0].targets[0].endpoints[0].address == "10.0.0.2" for s in states)  # type: ignore[union-attr]
    for s in states:
        s.stop()
    await asyncio.sleep(0)
    assert cache.watches == 0
    await cache.close()


async def test_a_burst_of_changes_costs_one_snapshot() -> None:
    rpc = FakeRPC()
    rpc.set("DiscoveryChain.Get:api", chain("api"))
    rpc.set("Health.ServiceNodes:api", [row("10.0.0.1", 21000, "passing")])
    cache = AgentCache(rpc)
    s = ProxyState(registration=registration(1), cache=cache, leafcerts=FakeLeaves(), datacenter="dc1", coalesce=0.05)
    s.start()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if s.snapshot is not None:
            break
    v = s.cell.version
    for i in range(5):  # five updates inside one coalescing window
        s.handle_update("health:api|api.default.default.dc1", [row(f"10.0.1.{i}", 21000, "passing")])
    await asyncio.sleep(0.2)
    assert s.cell.version == v + 1 and s.builds >= 2
    assert s.snapshot.upstreams[0].targets[0].endpoints[0].address == "10.0.1.4"  # type: ignore[union-attr]
    # the same inputs again: no new snapshot
    s.handle_update("health:api|api.default.default.dc1", [row("10.0.1.4", 21000, "passing")])
    await asyncio.sleep(0.1)
    assert s.cell.version == v + 1
    s.stop()
    await cache.close()


def test_endpoints_from_health_leave_critical_out_and_weight_warning() -> None:
    eps = endpoints_from_health([
        row("10.0.0.1", 1, "passing", weights={"Passing": 5, "Warning": 1}),
        row("10.0.0.2", 1, "passing", "warning", weights={"Passing": 5, "Warning": 2}),
        row("10.0.0.3", 1, "passing", "critical"),
        row("10.0.0.4", 1, "maintenance"),
    ])
    assert [(e.address, e.weight) for e in eps] == [("10.0.0.1", 5), ("10.0.0.2", 2)]
    only = endpoints_from_health([row("10.0.0.2", 1, "warning")], only_passing=True)
    assert only == ()


def test_routes_from_a_router_and_splitter_chain() -> None:
    c = {"StartNode": "router:api", "Nodes": {
        "router:api": {"Type": "router", "Routes": [
            {"Definition": {"Match": {"HTTP": {"PathPrefix": "/admin", "Methods": ["POST"]}},
                            "Destination": {"RequestTimeout": "3s"}}, "NextNode": "resolver:v2"},
            {"Definition": {"Match": {"HTTP": {"PathPrefix": "/"}}}, "NextNode": "splitter:api"}]},
        "splitter:api": {"Type": "splitter", "Splits": [{"Weight": 90, "NextNode": "resolver:v1"},
                                                        {"Weight": 10, "NextNode": "resolver:v2"}]},
        "resolver:v1": {"Type": "resolver", "Resolver": {"Target": "v1"}},
        "resolver:v2": {"Type": "resolver", "Resolver": {"Target": "v2"}}}}
    routes = routes_from_chain(c, {"v1": "c1", "v2": "c2"})
    assert json.loads(routes[0].match_json) == {"PathPrefix": "/admin", "Methods": ["POST"]}
    assert routes[0].clusters == (("c2", 10000),)
    assert routes[0].timeout == 3.0
    assert routes[1].clusters == (("c1", 9000), ("c2", 1000))


async def test_snapshot_fields_from_config_entries_and_proxy_config() -> None:
    from lictor.agent.proxycfg.state import (INTENTIONS, JWT_PROVIDERS, LEAF, MESH, PROXY_DEFAULTS, ROOTS,
                                             SERVICE_CHAIN, SERVICE_DEFAULTS)

    rpc = FakeRPC()
    cache = AgentCache(rpc)
    reg = registration(1)
    reg["proxy"]["Config"] = {"local_connect_timeout_ms": 250, "envoy_prometheus_bind_addr": "0.0.0.0:20200"}
    reg["proxy"]["Upstreams"][0]["Config"] = {"connect_timeout_ms": 1500}
    s = ProxyState(registration=reg, cache=cache, leafcerts=FakeLeaves(), datacenter="dc1",
                   default_allow=lambda mesh: not (mesh or {}).get("deny"))
    s.handle_update(ROOTS, {"TrustDomain": TD, "Roots": [{"RootCert": "R1"}, {"RootCert": "R2"}]})
    s.handle_update(LEAF, {"CertPEM": "C", "PrivateKeyPEM": "K"})
    s.handle_update(INTENTIONS, {"web1": [{"SourceName": "x", "DestinationName": "web1", "Action": "deny"}]})
    s.handle_update(MESH, {"deny": True})
    s.handle_update(SERVICE_DEFAULTS, {"MutualTLSMode": "permissive"})
    s.handle_update(PROXY_DEFAULTS, {"AccessLogs": {"Enabled": True, "Type": "file", "Path": "/a.log",
                                                    "JSONFormat": '{"b": "%START_TIME%", "a": "%PROTOCOL%"}'}})
    s.handle_update(JWT_PROVIDERS, [{"Kind": "jwt-provider", "Name": "z", "Issuer": "i"},
                                    {"Kind": "jwt-provider", "Name": "a"}])
    s.handle_update(SERVICE_CHAIN, {"Protocol": "http"})
    assert s.build() is None and s.missing() == ["chain:api"]  # not complete: no snapshot
    s.handle_update("chain:api", chain("api"))
    assert s.missing() == ["health:api|api.default.default.dc1"]
    s.handle_update("health:api|api.default.default.dc1", [row("10.0.0.1", 21000, "passing")])
    snap = s.build()
    assert snap is not None
    assert snap.protocol == "http" and snap.mutual_tls_mode == "permissive" and snap.default_allow is False
    assert snap.roots_pem == ("R1", "R2") and snap.leaf.cert_pem == "C"
    assert snap.local_connect_timeout == 0.25 and snap.prometheus_bind_addr == "0.0.0.0:20200"
    assert snap.upstreams[0].targets[0].connect_timeout == 1.5
    assert [(ix.source_name, ix.action) for ix in snap.intentions] == [("x", "deny")]
    assert snap.access_logs is not None and snap.access_logs.type == "file" and snap.access_logs.path == "/a.log"
    assert snap.access_logs.json_format == '{"a": "%PROTOCOL%", "b": "%START_TIME%"}'  # canonical
    assert [n for n, _ in snap.jwt_providers] == ["a", "z"] and '"Issuer": "i"' in snap.jwt_providers[1][1]
    s.stop()
    await cache.close()


def test_routes_carry_actions_split_headers_and_mirrors() -> None:
    c = {"StartNode": "router:api", "Targets": {"v1": {"RequestTimeout": "4s"}}, "Nodes": {
        "router:api": {"Type": "router", "Routes": [
            {"Definition": {"Match": {"HTTP": {"PathPrefix": "/"}},
                            "Destination": {"NumRetries": 2, "Service": "api", "PrefixRewrite": "/x"}},
             "RequestMirrorPolicies": [{"Target": "sh", "Percent": 10.0}], "NextNode": "splitter:api"},
            {"Definition": {"Match": {"HTTP": {"PathPrefix": "/"}}}, "NextNode": "resolver:v1"}]},
        "splitter:api": {"Type": "splitter", "Splits": [
            {"Weight": 50, "NextNode": "resolver:v1", "RequestHeaders": {"Set": {"a": "1"}}},
            {"Weight": 50, "NextNode": "resolver:v2"}]},
        "resolver:v1": {"Type": "resolver", "Resolver": {"Target": "v1"}},
        "resolver:v2": {"Type": "resolver", "Resolver": {"Target": "v2"}}}}
    routes = routes_from_chain(c, {"v1": "c1", "v2": "c2", "sh": "cs"})
    assert json.loads(routes[0].action_json) == {"NumRetries": 2, "PrefixRewrite": "/x"}  # not Service
    assert routes[0].split_headers == (("c1", '{"RequestHeaders": {"Set": {"a": "1"}}}'),)
    assert routes[0].mirrors == (("cs", 10.0),)
    assert routes[0].timeout == 15.0  # a split: no single resolver's timeout
    assert routes[1].timeout == 4.0  # the resolver's RequestTimeout


def test_upstream_config_layers() -> None:
    from lictor.agent.proxycfg.state import merged_upstream_config

    pd = {"UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 5}, "ConnectTimeoutMs": 100}}}
    sd = {"UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 7}},
                             "Overrides": [{"Name": "api", "RetryBudget": {"BudgetPercent": 10.0}},
                                           {"Name": "other", "Limits": {"MaxConnections": 1}}]}}
    assert merged_upstream_config("api", pd, sd) == {"Limits": {"MaxConnections": 7}, "ConnectTimeoutMs": 100,
                                                     "RetryBudget": {"BudgetPercent": 10.0}}
    assert merged_upstream_config("x", pd, None) == {"Limits": {"MaxConnections": 5}, "ConnectTimeoutMs": 100}


def test_proxy_defaults_overrides_apply_to_every_caller_below_service_defaults() -> None:
    """An Istio DestinationRule's limits land in proxy-defaults UpstreamConfig.Overrides: every
    caller of the named upstream gets them; a caller's own service-defaults still wins."""
    from lictor.agent.proxycfg.state import merged_upstream_config

    pd = {"UpstreamConfig": {"Defaults": {"Limits": {"MaxConnections": 5}},
                             "Overrides": [{"Name": "inventory", "Limits": {"MaxConnections": 10},
                                            "PassiveHealthCheck": {"MaxFailures": 3}}]}}
    assert merged_upstream_config("inventory", pd, None) == {"Limits": {"MaxConnections": 10},
                                                             "PassiveHealthCheck": {"MaxFailures": 3}}
    assert merged_upstream_config("other", pd, None) == {"Limits": {"MaxConnections": 5}}
    sd = {"UpstreamConfig": {"Overrides": [{"Name": "inventory", "Limits": {"MaxConnections": 2}}]}}
    assert merged_upstream_config("inventory", pd, sd)["Limits"] == {"MaxConnections": 2}
async def test_a_tracing_collector_service_is_watched_as_an_upstream_without_a_listener() -> None:
    from lictor.agent.proxycfg.state import (INTENTIONS, JWT_PROVIDERS, LEAF, MESH, PROXY_DEFAULTS, ROOTS,
                                             SERVICE_CHAIN, SERVICE_DEFAULTS)

    cache = AgentCache(FakeRPC())
    s = ProxyState(registration=registration(1), cache=cache, leafcerts=FakeLeaves(), datacenter="dc1")
    s.start()
    for cid, value in ((ROOTS, {"TrustDomain": TD, "Roots": [{"RootCert": "R"}]}), (LEAF, {"CertPEM": "C", "PrivateKeyPEM": "K"}),
                       (INTENTIONS, {}), (MESH, None), (SERVICE_CHAIN, {"Protocol": "http"}), (JWT_PROVIDERS, []),
                       (PROXY_DEFAULTS, {"Tracing": {"Provider": "zipkin", "Collector": {"Service": "zipkin"},
                                                     "SamplingPercent": 5, "CustomTags": [{"Tag": "t", "Literal": "v"}]}}),
                       (SERVICE_DEFAULTS, None), ("chain:api", chain("api")),
                       ("health:api|api.default.default.dc1", [row("10.0.0.1", 21000, "passing")])):
        s.handle_update(cid, value)
    assert "chain:zipkin" in s.missing()  # the collector's chain is now needed
    s.handle_update("chain:zipkin", chain("zipkin"))
    s.handle_update("health:zipkin|zipkin.default.default.dc1", [row("10.0.0.9", 21001, "passing")])
    snap = s.build()
    assert snap is not None and snap.tracing is not None
    assert snap.tracing.collector_service == "zipkin" and snap.tracing.sampling_percent == 5.0
    assert snap.tracing.custom_tags == (("t", "literal", "v"),)
    col = next(u for u in snap.upstreams if u.name == "zipkin")
    assert col.local_bind_port == 0 and col.targets[0].endpoints[0].address == "10.0.0.9"
    # service-defaults' block replaces proxy-defaults'
    s.handle_update(SERVICE_DEFAULTS, {"Tracing": {"Provider": "opentelemetry", "Collector": {"Address": "h:4317"}}})
    snap2 = s.build()
    assert snap2 is not None and snap2.tracing is not None and snap2.tracing.provider == "opentelemetry"
    assert snap2.tracing.collector_address == "h:4317" and snap2.tracing.sampling_percent == 100.0
    s.stop()
    await cache.close()
