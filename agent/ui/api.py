"""The web UI's HTTP API, in Consul's shape: ``/v1/internal/ui/services``, ``/v1/internal/ui/nodes``
and ``/v1/internal/ui/service-topology/:service``.

The server returns rows the caller's token may read (``Internal.*``, server/endpoints/internal.py);
this module turns them into Consul's summaries (one per service: instance count, tags, nodes and
the passing/warning/critical count of the checks that decide its health). All three are blocking
queries (``?index=&wait=``), which is how the UI shows a health change within a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, json_response, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["summarize"]

_TYPICAL = ("", "ingress-gateway")


def _empty(name: str, dc: str) -> dict[str, Any]:
    return {"Kind": "", "Name": name, "Datacenter": dc, "Tags": [], "Nodes": [], "ExternalSources": [],
            "InstanceCount": 0, "ChecksPassing": 0, "ChecksWarning": 0, "ChecksCritical": 0, "GatewayConfig": {},
            "TransparentProxy": False, "ConnectNative": False}


def summarize(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Health rows ({Node, Service, Checks}) -> one summary per service name, and the names that
    have a sidecar proxy. A proxy's checks count towards the service it fronts (as Consul does)."""
    acc: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[tuple[str, str], str]] = {}
    has_proxy: set[str] = set()

    def get(name: str) -> dict[str, Any]:
        s = acc.get(name)
        if s is None:
            s = acc[name] = _empty(name, "") | {"Tags": set(), "Nodes": set(), "ExternalSources": set()}
            checks[name] = {}
        return s

    for row in rows:
        node, svc = row.get("Node") or {}, row.get("Service") or {}
        name = svc.get("Service", "")
        s = get(name)
        s["Nodes"].add(node.get("Node", ""))
        s["Kind"] = svc.get("Kind", "")
        s["Datacenter"] = node.get("Datacenter", "")
        s["InstanceCount"] += 1
        s["Tags"].update(svc.get("Tags") or ())
        if (svc.get("Connect") or {}).get("Native"):
            s["ConnectNative"] = True
        source = (svc.get("Meta") or {}).get("external-source")
        if source:
            s["ExternalSources"].add(source)
        mine = checks[name]
        for c in row.get("Checks") or ():
            mine[(c.get("Node", ""), c.get("CheckID", ""))] = c.get("Status", "")
        if svc.get("Kind") == "connect-proxy":
            dest = (svc.get("Proxy") or {}).get("DestinationServiceName") or ""
            if dest:
                has_proxy.add(dest)
                d = get(dest)
                for c in row.get("Checks") or ():
                    checks[dest][(c.get("Node", ""), c.get("CheckID", ""))] = c.get("Status", "")
                d["TransparentProxy"] = (svc.get("Proxy") or {}).get("Mode") == "transparent"
    for name, s in acc.items():
        for status in checks[name].values():
            if status == "passing":
                s["ChecksPassing"] += 1
            elif status == "warning":
                s["ChecksWarning"] += 1
            elif status == "critical":
                s["ChecksCritical"] += 1
        for k in ("Tags", "Nodes", "ExternalSources"):
            s[k] = sorted(s[k])
    return acc, has_proxy


@route("GET", "/v1/internal/ui/services", acl=ACL("service", "list"))
async def ui_services(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Internal.ServiceDump", blocking_args(opts, summary=True))
    summaries, has_proxy = summarize(out["result"])
    result = [s | {"ConnectedWithProxy": name in has_proxy, "ConnectedWithGateway": False}
              for name, s in sorted(summaries.items())]
    return json_response(req, result, meta=out)


@route("GET", "/v1/internal/ui/nodes", acl=ACL("node", "list"))
async def ui_nodes(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Internal.NodeDump", blocking_args(opts))
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/internal/ui/service-topology/{service}", acl=ACL("service", "read", "service"))
async def ui_service_topology(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    kind = req.query.get("kind")
    if kind is None:
        raise ValidationError("Missing service kind")
    if kind not in _TYPICAL:
        raise ValidationError(f"Unsupported service kind {kind!r}")
    service = req.match_info["service"]
    out = await agent.rpc("Internal.ServiceTopology", blocking_args(opts, service=service))
    topo = out["result"]
    result: dict[str, Any] = {"Protocol": topo.get("MetricsProtocol", "tcp"),
                              "TransparentProxy": bool(topo.get("TransparentProxy")),
                              "FilteredByACLs": bool(topo.get("FilteredByACLs"))}
    for side in ("Upstream", "Downstream"):
        summaries, _ = summarize(topo.get(side + "s") or [])
        listed = []
        for name in topo.get(side + "Names") or []:
            s = summaries.get(name) or _empty(name, agent.datacenter)  # listed, no instance registered
            if s.get("Kind") not in _TYPICAL:
                continue
            decision = (topo.get(side + "Decisions") or {}).get(name) or {}
            listed.append(s | {"Source": "proxy-registration", "Intention": decision})
        result[side + "s"] = listed
    return json_response(req, result, meta=out)
