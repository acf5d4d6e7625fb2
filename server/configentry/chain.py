"""The discovery chain: router -> splitter -> resolver for one service, compiled into one checked
graph (Consul's ``CompiledDiscoveryChain``), as ``/v1/discovery-chain/:service`` serves it and the
data plane reads it.

::

    StartNode ─> router:web.default.default          (service-router; only for http/http2/grpc)
                   Routes[i].NextNode ─┐             (a catch-all "/" route to web is appended)
                                       v
                 splitter:web.default.default        (service-splitter; splits to another service's
                   Splits[j].NextNode ─┐              splitter are flattened, weights multiplied)
                                       v
                 resolver:v1.web.default.default.dc1 (service-resolver: default subset, redirect,
                   Resolver.Target, Failover.Targets  subsets, failover, timeouts, load balancer)
                                       v
                 Targets["v1.web.default.default.dc1"] = service/subset/namespace/dc + filter + SNI

Rules: compilation is a pure function of an :class:`EntryView` (no clock, no store writes); the
same entries always give the same chain (dict order included). Protocol comes from
service-defaults ``Protocol``, else proxy-defaults ``Config.protocol``, else ``tcp``. For a
protocol that is not http, http2 or grpc, routers and splitters are ignored (as Consul does at
run time; writing one for such a service is refused by validation). A redirect loop, a subset
that a resolver does not define, a splitter loop, or services of different protocols in one
chain are :class:`ChainError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import (DEFAULT_NS, PROXY_DEFAULTS, SERVICE_DEFAULTS, SERVICE_RESOLVER,
                                               SERVICE_ROUTER, SERVICE_SPLITTER, EntryView, as_view)

__all__ = ["HTTP_PROTOCOLS", "ChainError", "compile_chain", "service_protocol", "target_id"]

HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})
DEFAULT_CONNECT_TIMEOUT = "5s"
PARTITION = "default"


class ChainError(ValidationError):
    """The entries do not compile into a chain (the message names the entry and field)."""

    error_code = "ChainInvalid"  # stable across RPC (lictor.common.rpc.errmap)


def service_protocol(view: EntryView, service: str, namespace: str = DEFAULT_NS) -> str:
    sd = view.get(SERVICE_DEFAULTS, service, namespace)
    if sd and sd.get("Protocol"):
        return str(sd["Protocol"]).lower()
    pd = view.get(PROXY_DEFAULTS, "global")
    if pd:
        p = (pd.get("Config") or {}).get("protocol")
        if isinstance(p, str) and p:
            return p.lower()
    return "tcp"


def target_id(service: str, subset: str, namespace: str, datacenter: str) -> str:
    base = f"{service}.{namespace}.{PARTITION}.{datacenter}"
    return f"{subset}.{base}" if subset else base


@dataclass(frozen=True, slots=True)
class _Ref:
    service: str
    subset: str
    namespace: str
    datacenter: str


class _Compiler:
    def __init__(self, view: EntryView, service: str, namespace: str, datacenter: str, trust_domain: str,
                 protocol: str, connect_timeout: str | None, check_protocols: bool) -> None:
        self.view = view
        self.service = service
        self.namespace = namespace
        self.dc = datacenter
        self.trust_domain = trust_domain
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self.check_protocols = check_protocols
        self.advanced = protocol in HTTP_PROTOCOLS
        self.nodes: dict[str, dict[str, Any]] = {}
        self.targets: dict[str, dict[str, Any]] = {}
        self.customized = False

    # ----- entry points --------------------------------------------------------------------
    def compile(self) -> dict[str, Any]:
        router = self.view.get(SERVICE_ROUTER, self.service, self.namespace) if self.advanced else None
        if router is not None:
            self.customized = True
            start = self._router_node(router)
        else:
            start = self._splitter_or_resolver(
                _Ref(self.service, "", self.namespace, self.dc), f'discovery chain for "{self.service}"', ())
        return {
            "ServiceName": self.service,
            "Namespace": self.namespace,
            "Partition": PARTITION,
            "Datacenter": self.dc,
            "Default": not self.customized,
            "Protocol": self.protocol,
            "StartNode": start,
            "Nodes": dict(sorted(self.nodes.items())),
            "Targets": dict(sorted(self.targets.items())),
        }

    # ----- router ------------------------------------------------------------------------------
    def _router_node(self, router: dict[str, Any]) -> str:
        name = f"router:{self.service}.{self.namespace}.{PARTITION}"
        routes = []
        for i, route in enumerate(router.get("Routes") or []):
            dest = route.get("Destination") or {}
            where = f'service-router "{self.service}" Routes[{i}].Destination'
            ref = _Ref(dest.get("Service") or self.service, dest.get("ServiceSubset") or "",
                       dest.get("Namespace") or self.namespace, dest.get("Datacenter") or self.dc)
            out: dict[str, Any] = {"Definition": route, "NextNode": self._splitter_or_resolver(ref, where, ())}
            mirrors = self._mirrors(dest.get("RequestMirrorPolicies") or [], f"{where}.RequestMirrorPolicies")
            if mirrors:
                out["RequestMirrorPolicies"] = mirrors
            routes.append(out)
        default_route = {"Match": {"HTTP": {"PathPrefix": "/"}},
                         "Destination": {"Service": self.service, "Namespace": self.namespace}}
        routes.append({"Definition": default_route, "NextNode": self._splitter_or_resolver(
            _Ref(self.service, "", self.namespace, self.dc), f'service-router "{self.service}"', ())})
        self.nodes[name] = {"Type": "router", "Name": f"{self.service}.{self.namespace}.{PARTITION}",
                            "Routes": routes}
        return name

    def _mirrors(self, mirrors: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        out = []
        for j, m in enumerate(mirrors):
            ref = _Ref(m.get("Service") or self.service, m.get("ServiceSubset") or "",
                       m.get("Namespace") or self.namespace, self.dc)
            tid = self._target(ref, f"{where}[{j}]")
            self._resolver_node_for(tid)
            out.append({"Target": tid, "Percent": float(m.get("Percent", 100.0))})
        return out

    # ----- splitter ------------------------------------------------------------------------------
    def _splitter_or_resolver(self, ref: _Ref, where: str, stack: tuple[str, ...]) -> str:
        if self.advanced and not ref.subset and ref.datacenter == self.dc:
            splitter = self.view.get(SERVICE_SPLITTER, ref.service, ref.namespace)
            if splitter is not None:
                return self._splitter_node(ref, splitter, stack)
        return self._resolver_node(ref, where)

    def _splits(self, ref: _Ref, splitter: dict[str, Any], stack: tuple[str, ...]
                ) -> list[tuple[float, str, dict[str, Any]]]:
        key = f"{ref.service}.{ref.namespace}"
        if key in stack:
            path = " -> ".join([*stack, key])
            raise ChainError(f'service-splitter "{ref.service}" Splits: detected a splitter loop: {path}')
        stack = (*stack, key)
        out: list[tuple[float, str, dict[str, Any]]] = []
        for i, split in enumerate(splitter.get("Splits") or []):
            weight = float(split.get("Weight", 0.0))
            if weight == 0:
                continue
            where = f'service-splitter "{ref.service}" Splits[{i}]'
            dest = _Ref(split.get("Service") or ref.service, split.get("ServiceSubset") or "",
                        split.get("Namespace") or ref.namespace, ref.datacenter)
            extra = {k: split[k] for k in ("RequestHeaders", "ResponseHeaders") if k in split}
            if dest.service == ref.service and dest.namespace == ref.namespace and not dest.subset:
                out.append((weight, self._resolver_node(dest, where), extra))
                continue
            inner = self.view.get(SERVICE_SPLITTER, dest.service, dest.namespace) if not dest.subset else None
            if inner is not None:
                self._check_protocol(dest.service, dest.namespace, where)
                for w2, node, extra2 in self._splits(dest, inner, stack):
                    out.append((round(weight * w2 / 100.0, 2), node, {**extra2, **extra}))
            else:
                out.append((weight, self._resolver_node(dest, where), extra))
        return out

    def _splitter_node(self, ref: _Ref, splitter: dict[str, Any], stack: tuple[str, ...]) -> str:
        self.customized = True
        name = f"splitter:{ref.service}.{ref.namespace}.{PARTITION}"
        if name in self.nodes:
            return name
        splits = [{"Weight": w, "NextNode": node, **extra} for w, node, extra in self._splits(ref, splitter, stack)]
        node: dict[str, Any] = {"Type": "splitter", "Name": f"{ref.service}.{ref.namespace}.{PARTITION}",
                                "Splits": splits}
        mirrors = self._mirrors(splitter.get("Mirrors") or [], f'service-splitter "{ref.service}" Mirrors')
        if mirrors:
            node["Mirrors"] = mirrors
        self.nodes[name] = node
        return name

    # ----- resolver ------------------------------------------------------------------------------
    def _resolve(self, ref: _Ref, where: str) -> _Ref:
        """Follow redirects, apply the default subset, check the subset exists."""
        seen: list[_Ref] = []
        while True:
            if ref in seen:
                path = " -> ".join(f"{r.service}" + (f"[{r.subset}]" if r.subset else "") for r in [*seen, ref])
                raise ChainError(f'service-resolver "{seen[0].service}" Redirect: detected a circular resolver '
                                 f"redirect: {path}")
            seen.append(ref)
            res = self.view.get(SERVICE_RESOLVER, ref.service, ref.namespace)
            if res is None:
                if ref.subset:
                    raise ChainError(f'{where}.ServiceSubset: service "{ref.service}" has no service-resolver, so '
                                     f'it does not have a subset named "{ref.subset}"')
                return ref
            red = res.get("Redirect")
            if red:
                svc = red.get("Service") or ref.service
                subset = red.get("ServiceSubset") or ("" if svc != ref.service else ref.subset)
                ref = _Ref(svc, subset, red.get("Namespace") or ref.namespace, red.get("Datacenter") or ref.datacenter)
                where = f'service-resolver "{seen[-1].service}" Redirect'
                continue
            subset = ref.subset or res.get("DefaultSubset") or ""
            if subset and subset not in (res.get("Subsets") or {}):
                field = "ServiceSubset" if ref.subset else "DefaultSubset"
                w = where if ref.subset else f'service-resolver "{ref.service}"'
                raise ChainError(f'{w}.{field}: service-resolver "{ref.service}" does not have a subset named '
                                 f'"{subset}"')
            return _Ref(ref.service, subset, ref.namespace, ref.datacenter)

    def _check_protocol(self, service: str, namespace: str, where: str) -> None:
        if not self.check_protocols or service == self.service:
            return
        p = service_protocol(self.view, service, namespace)
        if p != self.protocol:
            raise ChainError(f'{where}: discovery chain "{self.service}" uses inconsistent protocols: service '
                             f'"{service}" has protocol "{p}", not "{self.protocol}"')

    def _target(self, ref: _Ref, where: str) -> str:
        r = self._resolve(ref, where)
        self._check_protocol(r.service, r.namespace, where)
        tid = target_id(r.service, r.subset, r.namespace, r.datacenter)
        if tid in self.targets:
            return tid
        res = self.view.get(SERVICE_RESOLVER, r.service, r.namespace) or {}
        subset_def = (res.get("Subsets") or {}).get(r.subset, {}) if r.subset else {}
        sni_parts = [p for p in (r.subset, r.service, r.namespace, r.datacenter) if p]
        sni = ".".join(sni_parts) + ".internal" + (f".{self.trust_domain}" if self.trust_domain else "")
        t: dict[str, Any] = {
            "ID": tid, "Service": r.service, "ServiceSubset": r.subset, "Namespace": r.namespace,
            "Partition": PARTITION, "Datacenter": r.datacenter,
            "MeshGateway": self._mesh_gateway(r.service, r.namespace),
            "Subset": {k: subset_def[k] for k in ("Filter", "OnlyPassing") if k in subset_def},
            "ConnectTimeout": self.connect_timeout or res.get("ConnectTimeout") or DEFAULT_CONNECT_TIMEOUT,
            "SNI": sni, "Name": sni,
        }
        if res.get("RequestTimeout"):
            t["RequestTimeout"] = res["RequestTimeout"]
        self.targets[tid] = t
        return tid

    def _mesh_gateway(self, service: str, namespace: str) -> dict[str, Any]:
        for entry in (self.view.get(SERVICE_DEFAULTS, service, namespace), self.view.get(PROXY_DEFAULTS, "global")):
            mode = ((entry or {}).get("MeshGateway") or {}).get("Mode")
            if mode:
                return {"Mode": mode}
        return {}

    def _resolver_node(self, ref: _Ref, where: str) -> str:
        tid = self._target(ref, where)
        return self._resolver_node_for(tid)

    def _resolver_node_for(self, tid: str) -> str:
        name = f"resolver:{tid}"
        if name in self.nodes:
            return name
        t = self.targets[tid]
        res = self.view.get(SERVICE_RESOLVER, t["Service"], t["Namespace"])
        if res is not None:
            self.customized = True
        resolver: dict[str, Any] = {
            "ConnectTimeout": self.connect_timeout or (res or {}).get("ConnectTimeout") or DEFAULT_CONNECT_TIMEOUT,
            "Default": res is None, "Target": tid,
        }
        node: dict[str, Any] = {"Type": "resolver", "Name": tid, "Resolver": resolver}
        self.nodes[name] = node  # before failover, which may add more targets
        if res is not None:
            if res.get("RequestTimeout"):
                resolver["RequestTimeout"] = res["RequestTimeout"]
            failover = self._failover(res, t)
            if failover:
                resolver["Failover"] = {"Targets": failover}
            if res.get("LoadBalancer"):
                node["LoadBalancer"] = res["LoadBalancer"]
        return name

    def _failover(self, res: dict[str, Any], t: dict[str, Any]) -> list[str]:
        table = res.get("Failover") or {}
        key = t["ServiceSubset"] if t["ServiceSubset"] in table else "*"
        spec = table.get(key)
        if not spec:
            return []
        where = f'service-resolver "{t["Service"]}" Failover["{key}"]'
        refs: list[_Ref] = []
        if spec.get("Targets"):
            for i, ft in enumerate(spec["Targets"]):
                svc = ft.get("Service") or t["Service"]
                refs.append(_Ref(svc, ft.get("ServiceSubset") or ("" if svc != t["Service"] else t["ServiceSubset"]),
                                 ft.get("Namespace") or t["Namespace"], ft.get("Datacenter") or t["Datacenter"]))
        else:
            svc = spec.get("Service") or t["Service"]
            subset = spec.get("ServiceSubset") or ("" if svc != t["Service"] else t["ServiceSubset"])
            ns = spec.get("Namespace") or t["Namespace"]
            for dc in spec.get("Datacenters") or [t["Datacenter"]]:
                refs.append(_Ref(svc, subset, ns, dc))
        out: list[str] = []
        for i, ref in enumerate(refs):
            tid = self._target(ref, f"{where}.Targets[{i}]" if spec.get("Targets") else where)
            if tid != t["ID"] and tid not in out:
                out.append(tid)
        return out


def compile_chain(source: Any, service: str, *, namespace: str = DEFAULT_NS, datacenter: str,
                  trust_domain: str = "", override_protocol: str = "", override_connect_timeout: str = "",
                  ) -> dict[str, Any]:
    """Compile the chain of ``service`` from the entries of ``source`` (an EntryView or a Store).
    Raises :class:`ChainError` when the entries do not form a valid graph."""
    view = as_view(source)
    protocol = (override_protocol or service_protocol(view, service, namespace)).lower()
    c = _Compiler(view, service, namespace, datacenter, trust_domain, protocol, override_connect_timeout or None,
                  check_protocols=not override_protocol)
    return c.compile()
