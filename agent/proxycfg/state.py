"""One local proxy's watches -> a builder -> coalesced, frozen ConfigSnapshots.

Every input arrives as ``handle_update(correlation_id, result)`` (Consul's shape); the ids are
the constants below (``chain:<upstream>``, ``health:<upstream>:<target id>``). After an update
the snapshot is rebuilt once after ``coalesce`` seconds, so a burst of changes costs one build;
a build that equals the last snapshot publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lictor.agent.proxycfg.cache import AgentCache, Subscription
from lictor.agent.proxycfg.snapshot import (HTTP_PROTOCOLS, ConfigSnapshot, Endpoint, GatewayListener, Leaf,
                                            Route, Target, Upstream)
from lictor.common.duration import parse_duration
from lictor.server.configentry.intentions import Intention

__all__ = ["ProxyState", "ROOTS", "LEAF", "INTENTIONS", "MESH", "SERVICE_CHAIN", "SERVICE_DEFAULTS",
           "PROXY_DEFAULTS", "ProxyGone", "merged_upstream_config", "SnapshotCell", "endpoints_from_health", "routes_from_chain", "intention_from_api"]

log = logging.getLogger("lictor.proxycfg")

ROOTS = "roots"
LEAF = "leaf"
INTENTIONS = "intentions"
MESH = "mesh"
SERVICE_CHAIN = "service-chain"
SERVICE_DEFAULTS = "service-defaults"
PROXY_DEFAULTS = "proxy-defaults"
CHAIN_PREFIX = "chain:"
HEALTH_PREFIX = "health:"
INGRESS_GATEWAY = "ingress-gateway"

DEFAULT_COALESCE = 0.01


def _seconds(value: Any, default: float) -> float:
    if value in (None, "", 0):
        return default
    try:
        return parse_duration(value)
    except Exception:  # noqa: BLE001 - a bad value in a proxy config: keep the default
        return default


def _ms(value: Any, default: float) -> float:
    """Seconds from a proxy Config ``*_ms`` value (Consul's keys are milliseconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value) / 1000.0
    return default


def intention_from_api(d: dict[str, Any]) -> Intention:
    return Intention(source_ns=d.get("SourceNS") or "default", source_name=d.get("SourceName") or "",
                     destination_ns=d.get("DestinationNS") or "default",
                     destination_name=d.get("DestinationName") or "", action=d.get("Action") or "",
                     permissions=tuple(d.get("Permissions") or ()))


_HEALTH_MEMO: list[Any] = [None, None, None]  # (rows object, only_passing, result): the last conversion


def endpoints_from_health(rows: list[dict[str, Any]], *, only_passing: bool = False) -> tuple[Endpoint, ...]:
    """Endpoints from Health.ServiceNodes rows of sidecar proxies: critical ones are left out,
    warning ones are healthy with the warning weight (unless only passing ones are wanted).

    The cache hands every proxy the same result object, so the last conversion is remembered
    (by identity: results are never mutated) and 100 proxies convert it once."""
    memo = _HEALTH_MEMO
    if memo[0] is rows and memo[1] == only_passing and rows is not None:
        return memo[2]  # type: ignore[no-any-return]
    result = _endpoints_from_health(rows, only_passing)
    memo[0], memo[1], memo[2] = rows, only_passing, result
    return result


def _endpoints_from_health(rows: list[dict[str, Any]], only_passing: bool) -> tuple[Endpoint, ...]:
    out = []
    for row in rows or []:
        svc, node = row.get("Service") or {}, row.get("Node") or {}
        statuses = {c.get("Status") for c in row.get("Checks") or []}
        if "critical" in statuses or "maintenance" in statuses:
            continue
        weights = svc.get("Weights") or {}
        warning = "warning" in statuses
        if warning and only_passing:
            continue
        weight = int(weights.get("Warning", 1) if warning else weights.get("Passing", 1) or 1)
        if weight <= 0:
            continue
        addr = svc.get("Address") or node.get("Address") or ""
        port = int(svc.get("Port") or 0)
        if not addr or not port:
            continue
        out.append(Endpoint(address=addr, port=port, weight=weight, node=str(node.get("Node") or "")))
    return tuple(sorted(out, key=lambda e: (e.address, e.port, e.node)))


def _node_targets(chain: dict[str, Any], node_name: str) -> list[tuple[str, float]]:
    """(target id, weight %) pairs a chain node leads to (splitters flattened)."""
    node = (chain.get("Nodes") or {}).get(node_name) or {}
    if node.get("Type") == "resolver":
        return [(node["Resolver"]["Target"], 100.0)]
    if node.get("Type") == "splitter":
        out: list[tuple[str, float]] = []
        for s in node.get("Splits") or []:
            for tid, w in _node_targets(chain, s["NextNode"]):
                out.append((tid, float(s.get("Weight", 0)) * w / 100.0))
        return out
    return []


def _clusters(pairs: list[tuple[str, float]], names: dict[str, str]) -> tuple[tuple[str, int], ...]:
    merged: dict[str, int] = {}
    for tid, w in pairs:
        if tid in names:
            merged[names[tid]] = merged.get(names[tid], 0) + int(round(w * 100))
    return tuple((c, w) for c, w in merged.items() if w > 0)


def _node_headers(chain: dict[str, Any], node_name: str, names: dict[str, str]) -> dict[str, str]:
    """cluster name -> sorted JSON of the header changes of the split that leads to it."""
    node = (chain.get("Nodes") or {}).get(node_name) or {}
    out: dict[str, str] = {}
    if node.get("Type") != "splitter":
        return out
    for s in node.get("Splits") or []:
        mods = {k: s[k] for k in ("RequestHeaders", "ResponseHeaders") if s.get(k)}
        if not mods:
            continue
        for tid, _ in _node_targets(chain, s["NextNode"]):
            if tid in names:
                out.setdefault(names[tid], json.dumps(mods, sort_keys=True))
    return out


#: the Destination fields the xDS route generator reads (the rest pick the chain's next node)
_ACTION_FIELDS = ("PrefixRewrite", "IdleTimeout", "NumRetries", "RetryOnConnectFailure", "RetryOn",
                  "RetryOnStatusCodes", "PerTryTimeout", "RequestHeaders", "ResponseHeaders", "FaultInjection",
                  "RateLimit")


def _mirrors(chain: dict[str, Any], route: dict[str, Any], node_name: str, names: dict[str, str]
             ) -> tuple[tuple[str, float], ...]:
    """A route's RequestMirrorPolicies, then the Mirrors of the splitter it leads to."""
    node = (chain.get("Nodes") or {}).get(node_name) or {}
    out = []
    for m in [*(route.get("RequestMirrorPolicies") or []), *(node.get("Mirrors") or [])]:
        if m.get("Target") in names:
            out.append((names[m["Target"]], float(m.get("Percent", 100.0))))
    return tuple(out)


def routes_from_chain(chain: dict[str, Any], names: dict[str, str], default_timeout: float = 15.0
                      ) -> tuple[Route, ...]:
    """HTTP routes from a compiled chain: a router's routes in order (the compiler appends the
    catch-all), or one catch-all to the start node's splitter/resolver."""
    start = chain.get("StartNode") or ""
    node = (chain.get("Nodes") or {}).get(start) or {}
    targets = chain.get("Targets") or {}
    if node.get("Type") != "router":
        cl = _clusters(_node_targets(chain, start), names)
        resolver_timeout = _route_timeout(chain, start, targets, default_timeout)
        return (Route(clusters=cl, timeout=resolver_timeout, mirrors=_mirrors(chain, {}, start, names),
                      split_headers=tuple(sorted(_node_headers(chain, start, names).items()))),) if cl else ()
    routes = []
    for r in node.get("Routes") or []:
        definition = r.get("Definition") or {}
        http = (definition.get("Match") or {}).get("HTTP") or {}
        dest = definition.get("Destination") or {}
        nxt = r.get("NextNode") or ""
        cl = _clusters(_node_targets(chain, nxt), names)
        if not cl:
            continue
        action = {k: dest[k] for k in _ACTION_FIELDS if dest.get(k) not in (None, "", [], {}, 0, False)}
        mirrors = _mirrors(chain, r, nxt, names)
        routes.append(Route(match=(), match_json=json.dumps(http or {"PathPrefix": "/"}, sort_keys=True),
                            action_json=json.dumps(action, sort_keys=True) if action else "",
                            clusters=cl, split_headers=tuple(sorted(_node_headers(chain, nxt, names).items())),
                            mirrors=mirrors,
                            timeout=_seconds(dest.get("RequestTimeout"),
                                             _route_timeout(chain, nxt, targets, default_timeout))))
    return tuple(routes)


def _route_timeout(chain: dict[str, Any], node_name: str, targets: dict[str, Any], default: float) -> float:
    """A resolver's RequestTimeout when the node leads to one target only (Consul's rule)."""
    pairs = _node_targets(chain, node_name)
    if len(pairs) == 1:
        t = targets.get(pairs[0][0]) or {}
        return _seconds(t.get("RequestTimeout"), default)
    return default


def _rate_limits(sd: dict[str, Any]) -> str:
    rl = (sd.get("RateLimits") or {}).get("InstanceLevel") or {}
    return json.dumps(rl, sort_keys=True) if rl.get("RequestsPerSecond") or rl.get("Routes") else ""


def merged_upstream_config(name: str, proxy_defaults: dict[str, Any] | None,
                           service_defaults: dict[str, Any] | None) -> dict[str, Any]:
    """proxy-defaults ``UpstreamConfig.Defaults`` < service-defaults ``UpstreamConfig.Defaults`` <
    the service-defaults override whose ``Name`` is the upstream: later ones replace whole keys."""
    out: dict[str, Any] = {}
    for layer in (((proxy_defaults or {}).get("UpstreamConfig") or {}).get("Defaults"),
                  ((service_defaults or {}).get("UpstreamConfig") or {}).get("Defaults"),
                  *[o for o in ((service_defaults or {}).get("UpstreamConfig") or {}).get("Overrides") or []
                    if o.get("Name") == name]):
        for k in ("Limits", "PassiveHealthCheck", "RetryBudget", "ConnectTimeoutMs"):
            if (layer or {}).get(k) not in (None, {}, 0):
                out[k] = layer[k]  # type: ignore[index]
    return out


class ProxyGone(Exception):
    """The proxy was deregistered from this agent."""


class SnapshotCell:
    """The latest snapshot of one proxy id, with a version; outlives a ProxyState that is
    replaced when the registration changes, so xDS streams keep waiting on the same cell."""

    def __init__(self) -> None:
        self.snapshot: ConfigSnapshot | None = None
        self.version = 0
        self.closed = False
        self._changed: asyncio.Future[None] | None = None

    def publish(self, snap: ConfigSnapshot) -> bool:
        if snap == self.snapshot:
            return False
        self.snapshot, self.version = snap, self.version + 1
        self._wake()
        return True

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        fut, self._changed = self._changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_newer(self, version: int) -> tuple[int, ConfigSnapshot]:
        """The current snapshot once its version is above ``version``; ProxyGone once closed."""
        while True:
            if self.closed:
                raise ProxyGone()
            if self.snapshot is not None and self.version > version:
                return self.version, self.snapshot
            if self._changed is None or self._changed.done():
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)


@dataclass(slots=True)
class _UpstreamState:
    spec: dict[str, Any]
    chain: dict[str, Any] | None = None
    health: dict[str, Any] = field(default_factory=dict)  # target id -> rows
    subs: dict[str, Subscription] = field(default_factory=dict)  # target id -> health watch
    chain_sub: Subscription | None = None  # a gateway service's chain watch (sidecars: in ProxyState._subs)


class ProxyState:
    """Watches for one connect-proxy registration; publishes ConfigSnapshots."""

    def __init__(self, *, registration: dict[str, Any], cache: AgentCache, leafcerts: Any, datacenter: str,
                 token: str = "", default_allow: Callable[[dict[str, Any] | None], bool] = lambda mesh: True,
                 node_address: str = "127.0.0.1", coalesce: float = DEFAULT_COALESCE,
                 cell: SnapshotCell | None = None) -> None:
        self.registration = registration
        self.proxy_id = str(registration["id"])
        self.cache = cache
        self.leafcerts = leafcerts
        self.datacenter = datacenter
        self.token = token
        self._default_allow = default_allow
        self.node_address = node_address
        self.coalesce = coalesce
        proxy = registration.get("proxy") or {}
        self.kind = str(registration.get("kind") or "connect-proxy")
        self.service = str(proxy.get("DestinationServiceName") or "")
        if self.kind == INGRESS_GATEWAY:  # the gateway is its own service (its leaf, its identity)
            self.service = str(registration.get("service") or "")
        self.inputs: dict[str, Any] = {}
        self.upstreams: dict[str, _UpstreamState] = {}
        for up in proxy.get("Upstreams") or []:
            if up.get("DestinationType", "service") == "service" and up.get("DestinationName"):
                self.upstreams[up["DestinationName"]] = _UpstreamState(spec=up)
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.cell = cell or SnapshotCell()
        self.builds = 0
        self.error = ""

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        tok = {"token": self.token} if self.token else {}
        self._watch("Intention.Match", {"by": "destination", "names": [self.service], **tok}, INTENTIONS)
        self._watch("ConfigEntry.Get", {"kind": "mesh", "name": "mesh", **tok}, MESH)
        self._watch("ConfigEntry.Get", {"kind": "service-defaults", "name": self.service, **tok}, SERVICE_DEFAULTS)
        self._watch("ConfigEntry.Get", {"kind": "proxy-defaults", "name": "global", **tok}, PROXY_DEFAULTS)
        self._watch("DiscoveryChain.Get", {"name": self.service, **tok}, SERVICE_CHAIN)
        if self.kind == INGRESS_GATEWAY:
            self._watch("ConfigEntry.Get", {"kind": INGRESS_GATEWAY, "name": self.service, **tok}, INGRESS_GATEWAY)
        for name in self.upstreams:
            self._watch("DiscoveryChain.Get", {"name": name, **tok}, CHAIN_PREFIX + name)
        loop = asyncio.get_running_loop()
        ctx = contextvars.Context()
        self._tasks.append(loop.create_task(self._watch_roots(), name=f"proxycfg-roots:{self.proxy_id}", context=ctx))
        self._tasks.append(loop.create_task(self._watch_leaf(), name=f"proxycfg-leaf:{self.proxy_id}",
                                            context=contextvars.Context()))

    def stop(self) -> None:
        for s in self._subs:
            s.cancel()
        for up in self.upstreams.values():
            for s in up.subs.values():
                s.cancel()
            up.subs.clear()
            if up.chain_sub is not None:
                up.chain_sub.cancel()
        self._subs.clear()
        for t in self._tasks:
            t.cancel()
        if self._timer is not None:
            self._timer.cancel()

    @property
    def snapshot(self) -> ConfigSnapshot | None:
        return self.cell.snapshot

    def _watch(self, name: str, args: dict[str, Any], cid: str) -> None:
        self._subs.append(self.cache.notify(name, args, cid, self.handle_update))

    async def _watch_roots(self) -> None:
        idx = 0
        while True:
            try:
                idx, roots = await self.leafcerts.get_roots(min_index=idx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("proxy %s: CA roots unavailable: %s", self.proxy_id, exc)
                await asyncio.sleep(0.5)
                continue
            self.handle_update(ROOTS, roots)

    async def _watch_leaf(self) -> None:
        idx = 0
        while True:
            try:
                idx, leaf = await self.leafcerts.get(self.service, min_index=idx, token=self.token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("proxy %s: no leaf certificate for %s yet: %s", self.proxy_id, self.service, exc)
                await asyncio.sleep(0.5)
                continue
            self.handle_update(LEAF, leaf)

    # ----- updates -----------------------------------------------------------------------------
    def handle_update(self, cid: str, result: Any) -> None:
        if cid.startswith(CHAIN_PREFIX):
            up = self.upstreams.get(cid[len(CHAIN_PREFIX):])
            if up is None:
                return
            up.chain = result
            self._sync_targets(cid[len(CHAIN_PREFIX):], up)
        elif cid.startswith(HEALTH_PREFIX):
            name, _, tid = cid[len(HEALTH_PREFIX):].partition("|")
            up = self.upstreams.get(name)
            if up is None or tid not in up.subs:
                return
            up.health[tid] = result
        else:
            self.inputs[cid] = result
            if cid == INGRESS_GATEWAY:
                self._sync_gateway_services(result)
        self._schedule()

    def _sync_gateway_services(self, entry: dict[str, Any] | None) -> None:
        """The ingress-gateway entry's services become upstreams (a chain watch each)."""
        wanted = set()
        for lst in (entry or {}).get("Listeners") or []:
            for s in lst.get("Services") or []:
                if s.get("Name") and s["Name"] != "*":
                    wanted.add(s["Name"])
        for name in list(self.upstreams):
            if name not in wanted:
                up = self.upstreams.pop(name)
                for sub in [*up.subs.values(), *([up.chain_sub] if up.chain_sub else [])]:
                    sub.cancel()
        tok = {"token": self.token} if self.token else {}
        for name in sorted(wanted - set(self.upstreams)):
            up = self.upstreams[name] = _UpstreamState(spec={"DestinationName": name})
            up.chain_sub = self.cache.notify("DiscoveryChain.Get", {"name": name, **tok}, CHAIN_PREFIX + name,
                                             self.handle_update)

    def _sync_targets(self, name: str, up: _UpstreamState) -> None:
        targets = (up.chain or {}).get("Targets") or {}
        for tid in list(up.subs):
            if tid not in targets:
                up.subs.pop(tid).cancel()
                up.health.pop(tid, None)
        tok = {"token": self.token} if self.token else {}
        for tid, t in targets.items():
            if tid not in up.subs:
                args = {"service": t["Service"], "connect": True, **tok}
                subset_filter = (t.get("Subset") or {}).get("Filter")
                if subset_filter:  # a service-resolver subset: the servers filter the instances
                    args["filter"] = subset_filter
                if t.get("Datacenter") and t["Datacenter"] != self.datacenter:
                    args["datacenter"] = t["Datacenter"]
                up.subs[tid] = self.cache.notify("Health.ServiceNodes", args, f"{HEALTH_PREFIX}{name}|{tid}",
                                                 self.handle_update)

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.coalesce, self._build_and_publish)

    def _build_and_publish(self) -> None:
        self._timer = None
        try:
            snap = self.build()
        except Exception as exc:  # noqa: BLE001 - keep the last good snapshot
            self.error = str(exc)
            log.warning("proxy %s: cannot build a snapshot: %s", self.proxy_id, exc)
            return
        if snap is None:
            return
        self.builds += 1
        self.cell.publish(snap)

    # ----- the builder -------------------------------------------------------------------------
    def missing(self) -> list[str]:
        need = [ROOTS, LEAF, INTENTIONS, MESH, SERVICE_CHAIN, SERVICE_DEFAULTS, PROXY_DEFAULTS]
        if self.kind == INGRESS_GATEWAY:
            need.append(INGRESS_GATEWAY)
        out = [n for n in need if n not in self.inputs]
        for name, up in self.upstreams.items():
            if up.chain is None:
                out.append(CHAIN_PREFIX + name)
                continue
            out += [f"{HEALTH_PREFIX}{name}|{tid}" for tid in up.subs if tid not in up.health]
        return out

    def build(self) -> ConfigSnapshot | None:
        if self.missing():
            return None
        reg = self.registration
        proxy = reg.get("proxy") or {}
        config = proxy.get("Config") or {}
        roots, leaf = self.inputs[ROOTS], self.inputs[LEAF]
        td = str(roots.get("TrustDomain") or "")
        pems = []
        for r in roots.get("Roots") or []:
            pems.append(r["RootCert"])
        sd = (self.inputs[SERVICE_DEFAULTS] or {})
        pd = (self.inputs[PROXY_DEFAULTS] or {})
        protocol = str((self.inputs[SERVICE_CHAIN] or {}).get("Protocol") or "tcp").lower()
        mtls = str(sd.get("MutualTLSMode") or pd.get("MutualTLSMode") or "strict").lower() or "strict"
        ix_map = self.inputs[INTENTIONS] or {}
        intentions = tuple(intention_from_api(d) for d in (ix_map.get(self.service) or []))
        upstreams = []
        for name, up in self.upstreams.items():
            upstreams.append(self._upstream(name, up, td, merged_upstream_config(name, pd, sd)))
        return ConfigSnapshot(
            proxy_id=self.proxy_id, proxy_name=str(reg.get("service") or ""), service=self.service,
            datacenter=self.datacenter, trust_domain=td,
            bind_address=str(config.get("bind_address")
                             or (reg.get("address") if self.kind == INGRESS_GATEWAY else "") or "0.0.0.0"),
            port=int(reg.get("port") or 0),
            local_app_address=str(proxy.get("LocalServiceAddress") or "127.0.0.1"),
            local_app_port=int(proxy.get("LocalServicePort") or 0),
            protocol=protocol if protocol in HTTP_PROTOCOLS else "tcp", mutual_tls_mode=mtls,
            local_connect_timeout=_ms(config.get("local_connect_timeout_ms"), 5.0),
            local_request_timeout=_ms(config.get("local_request_timeout_ms"), 15.0),
            leaf=Leaf(cert_pem=leaf["CertPEM"], key_pem=leaf["PrivateKeyPEM"]),
            roots_pem=tuple(pems), intentions=intentions,
            default_allow=self._default_allow(self.inputs[MESH]),
            upstreams=tuple(upstreams),
            prometheus_bind_addr=str(config.get("envoy_prometheus_bind_addr") or ""),
            local_cluster_json=self._escape_hatch(config.get("envoy_local_cluster_json")),
            rate_limits_json=_rate_limits(sd), kind=self.kind,
            gateway_listeners=self._gateway_listeners(),
            fault_json=json.dumps(sd["FaultInjection"], sort_keys=True) if sd.get("FaultInjection") else "")

    def _gateway_listeners(self) -> tuple[GatewayListener, ...]:
        if self.kind != INGRESS_GATEWAY:
            return ()
        out = []
        for lst in (self.inputs.get(INGRESS_GATEWAY) or {}).get("Listeners") or []:
            services = []
            for s in lst.get("Services") or []:
                if s.get("Name") in self.upstreams:
                    mods = {k: s[k] for k in ("RequestHeaders", "ResponseHeaders") if s.get(k)}
                    services.append((s["Name"], tuple(s.get("Hosts") or ()),
                                     json.dumps(mods, sort_keys=True) if mods else ""))
            out.append(GatewayListener(port=int(lst["Port"]), protocol=str(lst.get("Protocol") or "tcp"),
                                       services=tuple(services)))
        return tuple(out)

    def _escape_hatch(self, raw: Any) -> str:
        if not raw:
            return ""
        from envoy.config.cluster.v3 import cluster_pb2
        from google.protobuf import json_format

        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
            json_format.ParseDict(data, cluster_pb2.Cluster())
            if not isinstance(data, dict) or data.get("name") != "local_app":
                raise ValueError('the cluster must be named "local_app"')
        except Exception as exc:  # noqa: BLE001 - ignored with a warning, as Consul does
            log.warning("proxy %s: ignoring envoy_local_cluster_json: %s", self.proxy_id, exc)
            return ""
        return json.dumps(data, sort_keys=True)

    def _upstream(self, name: str, up: _UpstreamState, td: str, ucfg: dict[str, Any]) -> Upstream:
        chain = up.chain or {}
        spec = up.spec
        cfg = spec.get("Config") or {}
        protocol = str(cfg.get("protocol") or chain.get("Protocol") or "tcp").lower()
        targets = []
        names: dict[str, str] = {}
        lbs = {n["Resolver"]["Target"]: json.dumps(n["LoadBalancer"], sort_keys=True)
               for n in (chain.get("Nodes") or {}).values() if n.get("Type") == "resolver" and n.get("LoadBalancer")}
        connect_default = _ms(ucfg.get("ConnectTimeoutMs"), 0.0)
        for tid, t in (chain.get("Targets") or {}).items():
            subset = t.get("Subset") or {}
            sni = str(t.get("SNI") or "")
            names[tid] = sni
            targets.append(Target(
                id=tid, service=t["Service"], datacenter=t["Datacenter"], cluster_name=sni, sni=sni,
                spiffe_id=f"spiffe://{td}/ns/{t.get('Namespace') or 'default'}/dc/{t['Datacenter']}/svc/{t['Service']}",
                connect_timeout=_ms(cfg.get("connect_timeout_ms"),
                                    connect_default or _seconds(t.get("ConnectTimeout"), 5.0)),
                load_balancer=lbs.get(tid, ""),
                endpoints=endpoints_from_health(up.health.get(tid) or [], only_passing=bool(subset.get("OnlyPassing")))))
        # the start node's target first: it is the one a tcp upstream proxies to
        start_targets = [tid for tid, _ in _node_targets(chain, chain.get("StartNode") or "")]
        targets.sort(key=lambda t: (t.id not in start_targets[:1], t.id))
        routes = routes_from_chain(chain, names) if protocol in HTTP_PROTOCOLS else ()
        return Upstream(name=name, destination_name=str(spec.get("DestinationName") or name),
                        local_bind_address=str(spec.get("LocalBindAddress") or "127.0.0.1"),
                        local_bind_port=int(spec.get("LocalBindPort") or 0),
                        protocol=protocol if protocol in HTTP_PROTOCOLS else "tcp",
                        targets=tuple(targets), routes=routes,
                        config_json=json.dumps(ucfg, sort_keys=True) if ucfg else "")

