"""/v1/agent/*: this agent's services, checks, maintenance, members, self, host, metrics, monitor,
reload and leave. These answer from the agent's local state, not the catalog."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.acl_enforce import (acl_filtered, authorize, check_registration_needs, request_token,
                                             service_registration_needs)
from lictor.agent.http.base import ACL, QueryOptions, decode_json_body, json_response, route
from lictor.agent.http.decode import fields
from lictor.agent.metrics import AgentMetrics
from lictor.common.errors import LictorError, NotFound, ValidationError
from lictor.common.filter import filter_map
from lictor.common.filter_schemas import AGENT_SERVICE_SCHEMA, HEALTH_CHECK_SCHEMA
from lictor.common.logging import LEVELS
from lictor.common.servicedef import parse_check_definition, parse_service_definition
from lictor.common.structs import CheckRow, ServiceRow, check_to_api, service_to_agent_api
from lictor.common.types import HealthStatus, worst_status

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


_PROXY_KINDS = frozenset({"connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway"})


def _service_api(agent: Agent, payload: dict[str, Any]) -> dict[str, Any]:
    """Consul's AgentService: empty TaggedAddresses omitted; ``Proxy`` only for proxies and
    gateways, ``Connect`` only (as ``{"Native": true}``) for Connect-native services."""
    out = service_to_agent_api(ServiceRow(node=agent.node_name, **payload), datacenter=agent.datacenter)
    out.pop("CreateIndex", None)
    out.pop("ModifyIndex", None)
    out.pop("PeerName", None)
    if not out.get("TaggedAddresses"):
        out.pop("TaggedAddresses", None)
    if out.get("Kind") not in _PROXY_KINDS:
        out.pop("Proxy", None)
    connect = out.pop("Connect", None)
    if isinstance(connect, dict) and connect.get("Native"):
        out["Connect"] = {"Native": True}
    return out


def _check_api(agent: Agent, payload: dict[str, Any]) -> dict[str, Any]:
    svc = agent.local.service(payload.get("service_id", "")) if payload.get("service_id") else None
    row = CheckRow(node=agent.node_name, **payload)
    out = check_to_api(row)
    out["ServiceName"] = svc["service"] if svc else ""
    out["ServiceTags"] = list(svc.get("tags") or []) if svc else []
    out["CreateIndex"] = out["ModifyIndex"] = 0
    return out


# ----- services ---------------------------------------------------------------------------------

@route("GET", "/v1/agent/services", acl=ACL("service", "list"))
async def services(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = acl_filtered(req, {sid: _service_api(agent, p) for sid, p in agent.local.live_services().items()})
    return json_response(req, filter_map(opts.filter, out, schema=AGENT_SERVICE_SCHEMA))


@route("GET", "/v1/agent/service/{id}", acl=ACL("service", "read", "id"))
async def service(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    p = agent.local.service(req.match_info["id"])
    if p is None:
        return web.Response(status=404, text=f"unknown service ID: {req.match_info['id']}")
    out = _service_api(agent, p)
    out["ContentHash"] = format(abs(hash(repr(sorted(out.items(), key=lambda kv: kv[0])))), "016x")[:16]
    return json_response(req, out)


@route("PUT", "/v1/agent/service/register", acl=ACL("service", "write"))
async def register_service(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    defn = parse_service_definition(body)
    replace = "replace-existing-checks" in req.query and req.query.get("replace-existing-checks", "").lower() not in (
        "false", "0")
    # decode -> plan (sidecar expanded) -> authorize every service the plan writes -> apply it
    planned = agent.registry.plan_service(defn)
    authorize(req, service_registration_needs(agent.local, agent.node_name, planned))
    await agent.registry.apply_services(planned, token=request_token(req), replace_existing_checks=replace)
    return web.Response(status=200)


@route("PUT", "/v1/agent/service/deregister/{id}", acl=ACL("service", "write", "id"))
async def deregister_service(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    sid = req.match_info["id"]
    if agent.local.service(sid) is None:
        raise NotFound(f"Unknown service ID {sid!r}. Ensure that the service ID is passed, not the service name.")
    await agent.registry.remove_service(sid)
    return web.Response(status=200)


@route("PUT", "/v1/agent/service/maintenance/{id}", acl=ACL("service", "write", "id"))
async def service_maintenance(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    enable = _enable_param(req)
    sid = req.match_info["id"]
    if enable:
        agent.registry.enable_service_maintenance(sid, req.query.get("reason", ""), token=request_token(req))
    else:
        agent.registry.disable_service_maintenance(sid)
    return web.Response(status=200)


def _enable_param(req: web.Request) -> bool:
    raw = req.query.get("enable")
    if raw is None or raw == "":
        raise ValidationError("Missing value for enable")
    if raw.lower() not in ("true", "false"):
        raise ValidationError(f"Invalid value for enable: {raw!r}")
    return raw.lower() == "true"


@route("PUT", "/v1/agent/maintenance", acl=ACL("node", "write"))
async def node_maintenance(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    if _enable_param(req):
        agent.registry.enable_node_maintenance(req.query.get("reason", ""), token=request_token(req))
    else:
        agent.registry.disable_node_maintenance()
    return web.Response(status=200)


# ----- checks -----------------------------------------------------------------------------------

@route("GET", "/v1/agent/checks", acl=ACL("node", "read"))
async def checks(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = acl_filtered(req, {cid: _check_api(agent, p) for cid, p in agent.local.live_checks().items()})
    return json_response(req, filter_map(opts.filter, out, schema=HEALTH_CHECK_SCHEMA))


@route("PUT", "/v1/agent/check/register", acl=ACL("node", "write"))
async def register_check(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    chk = parse_check_definition(body)
    row = agent.registry.plan_check(chk)  # decoded: the ServiceID however it was spelled
    authorize(req, check_registration_needs(agent.local, agent.node_name, row))
    await agent.registry.register_check(chk, token=request_token(req), row=row)
    return web.Response(status=200)


@route("PUT", "/v1/agent/check/deregister/{id}", acl=ACL("node", "write"))
async def deregister_check(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    cid = req.match_info["id"]
    if agent.local.check(cid) is None:
        raise NotFound(f"Unknown check ID {cid!r}. Ensure that the check ID is passed, not the check name.")
    await agent.registry.remove_check(cid)
    return web.Response(status=200)


async def _ttl(req: web.Request, agent: Agent, status: HealthStatus) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    agent.registry.update_ttl(req.match_info["id"], status.value, req.query.get("note", ""))
    return web.Response(status=200)


@route("PUT", "/v1/agent/check/pass/{id}", acl=ACL("node", "write"))
async def check_pass(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _ttl(req, agent, HealthStatus.PASSING)


@route("PUT", "/v1/agent/check/warn/{id}", acl=ACL("node", "write"))
async def check_warn(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _ttl(req, agent, HealthStatus.WARNING)


@route("PUT", "/v1/agent/check/fail/{id}", acl=ACL("node", "write"))
async def check_fail(req: web.Request, agent: Agent) -> web.StreamResponse:
    return await _ttl(req, agent, HealthStatus.CRITICAL)


@route("PUT", "/v1/agent/check/update/{id}", acl=ACL("node", "write"))
async def check_update(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    f = fields(await decode_json_body(req))
    status = f.str("Status")
    if status not in ("passing", "warning", "critical"):
        raise ValidationError(f"Invalid check status: '{status}'")
    agent.registry.update_ttl(req.match_info["id"], status, f.str("Output"))
    return web.Response(status=200)


# ----- local service health ----------------------------------------------------------------------

_HEALTH_CODE = {"passing": 200, "warning": 429, "critical": 503, "maintenance": 503}


def _service_health(agent: Agent, sid: str) -> dict[str, Any]:
    p = agent.local.live_services()[sid]
    checks = [_check_api(agent, c) for c in agent.local.live_checks().values()
              if c.get("service_id") == sid or c.get("check_id") == "_node_maintenance"]
    agg = worst_status([c["Status"] for c in checks]).value
    if any(c["CheckID"].startswith("_service_maintenance:") or c["CheckID"] == "_node_maintenance"
           for c in checks):
        agg = "maintenance"
    return {"AggregatedStatus": agg, "Service": _service_api(agent, p), "Checks": checks}


@route("GET", "/v1/agent/health/service/id/{id}", acl=ACL("service", "read", "id"))
async def health_by_id(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    sid = req.match_info["id"]
    if sid not in agent.local.live_services():
        return web.Response(status=404, text=f"ServiceId {sid} not found")
    h = _service_health(agent, sid)
    status = _HEALTH_CODE[h["AggregatedStatus"]]
    if req.query.get("format") == "text":
        return web.Response(status=status, text=h["AggregatedStatus"])
    return json_response(req, h, status=status)


@route("GET", "/v1/agent/health/service/name/{name}", acl=ACL("service", "read", "name"))
async def health_by_name(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    name = req.match_info["name"]
    ids = [sid for sid, p in agent.local.live_services().items() if p["service"] == name]
    if not ids:
        return web.Response(status=404, text=f"ServiceName {name} Not found")
    rows = [_service_health(agent, sid) for sid in sorted(ids)]
    agg = worst_status(["critical" if r["AggregatedStatus"] == "maintenance" else r["AggregatedStatus"]
                        for r in rows]).value
    if any(r["AggregatedStatus"] == "maintenance" for r in rows):
        agg = "maintenance"
    status = _HEALTH_CODE[agg]
    if req.query.get("format") == "text":
        return web.Response(status=status, text=agg)
    return json_response(req, rows, status=status)


# ----- agent itself ------------------------------------------------------------------------------

#: The Consul HTTP API version Lictor implements: ``/v1/agent/self``'s ``Config.Version``, which
#: clients read to choose their code paths (Lictor's own version is ``Config.LictorVersion``).
CONSUL_API_VERSION = "1.17.0"


async def _consul_stats(agent: Agent) -> dict[str, str]:
    """Consul's ``Stats.consul``: a server's leadership view (``leader_addr`` is what
    ``/v1/status/leader`` answers), a client's count of known servers; ACLs on or off."""
    acl = "enabled" if getattr(agent.acl, "enabled", False) else "disabled"
    if agent.server is None:
        servers = agent.pool.order() if agent.pool is not None else []
        return {"server": "false", "known_servers": str(len(servers)), "acl": acl}
    try:
        leader = str((await agent.rpc("Status.Leader", {}))["result"] or "")
    except LictorError:
        leader = ""
    own = agent.server.config.rpc_address
    return {"server": "true", "leader": "true" if leader and leader == own else "false", "leader_addr": leader,
            "bootstrap": "true" if agent.config.bootstrap or agent.config.dev else "false",
            "known_datacenters": "1", "acl": acl}


@route("GET", "/v1/agent/self", acl=ACL("agent", "read"))
async def self_(req: web.Request, agent: Agent) -> web.StreamResponse:
    c = agent.config
    return json_response(req, {
        "Config": {"Datacenter": c.datacenter, "PrimaryDatacenter": c.primary_datacenter or c.datacenter,
                   "NodeName": c.node_name, "NodeID": c.node_id, "Server": agent.server is not None,
                   "Revision": "lictor", "Version": CONSUL_API_VERSION, "LictorVersion": agent.version,
                   "BuildDate": ""},
        # what the operator set, secrets "hidden" (tokens, encrypt); TLS key *paths* are shown
        "DebugConfig": c.redacted() if hasattr(c, "redacted") else dict(c.raw),
        "Coord": agent.membership.coords.coord.to_api() if agent.membership.node is not None else None,
        "Member": agent.member_info(),
        "Stats": {"consul": await _consul_stats(agent),
                  "agent": {"checks": str(len(agent.local.live_checks())),
                            "services": str(len(agent.local.live_services()))},
                  "runtime": {"arch": platform.machine(), "os": platform.system().lower(),
                              "version": platform.python_version()},
                  "serf_lan": agent.membership.stats()},
        "Meta": dict(c.node_meta),
        "xDS": None,
    })


@route("GET", "/v1/agent/members", acl=ACL("node", "read"))
async def members(req: web.Request, agent: Agent) -> web.StreamResponse:
    from lictor.agent.http.cluster import members_api  # issue 4: every gossip member

    members = members_api(agent)
    if _flag_set(req, "wan"):
        members = wan_members(agent, members)
    return json_response(req, members)


def _flag_set(req: web.Request, name: str) -> bool:
    return name in req.query and req.query.get(name, "").lower() not in ("false", "0")


def wan_members(agent: Agent, lan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consul's WAN pool as a server sees it: every server of the datacenter, named
    ``<node>.<dc>``. Lictor's servers gossip on the LAN pool only, so the WAN view is drawn from
    it (same addresses, ports and status). A client agent has no WAN pool: an empty list."""
    if agent.server is None:
        return []
    out = []
    for m in lan:
        tags = m.get("Tags") or {}
        if tags.get("role") != "consul" or tags.get("dc", agent.datacenter) != agent.datacenter:
            continue
        out.append({**m, "Name": f"{m['Name']}.{agent.datacenter}", "Tags": dict(tags)})
    return out


@route("GET", "/v1/agent/version", acl=ACL("none", "read"))
async def version(req: web.Request, agent: Agent) -> web.StreamResponse:
    return json_response(req, {"SHA": "", "BuildDate": "", "HumanVersion": f"{agent.version}",
                               "FIPS": "", "Revision": "lictor"})


@route("GET", "/v1/agent/host", acl=ACL("operator", "read"))
async def host(req: web.Request, agent: Agent) -> web.StreamResponse:
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, rest = line.partition(":")
                mem[k] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    st = os.statvfs("/")
    boot = 0.0
    try:
        with open("/proc/uptime") as f:
            boot = time.time() - float(f.read().split()[0])
    except OSError:
        pass
    return json_response(req, {
        "Memory": {"total": mem.get("MemTotal", 0), "available": mem.get("MemAvailable", 0),
                   "free": mem.get("MemFree", 0), "used": mem.get("MemTotal", 0) - mem.get("MemAvailable", 0)},
        "CPU": [{"cpu": i, "modelName": platform.processor(), "cores": 1} for i in range(os.cpu_count() or 1)],
        "Host": {"hostname": socket.gethostname(), "os": platform.system().lower(), "platform": platform.platform(),
                 "kernelVersion": platform.release(), "bootTime": int(boot), "uptime": int(time.time() - boot)},
        "Disk": {"path": "/", "total": st.f_blocks * st.f_frsize, "free": st.f_bavail * st.f_frsize},
        "CollectionTime": time.time_ns(),
        "Errors": None,
    })


@route("GET", "/v1/agent/metrics", acl=ACL("agent", "read"))
async def metrics(req: web.Request, agent: Agent) -> web.StreamResponse:
    m = agent.__dict__.setdefault("_metrics", AgentMetrics(agent))
    if req.query.get("format") == "prometheus":
        return web.Response(body=m.prometheus_text(), content_type="text/plain", charset="utf-8")
    return json_response(req, m.consul_json())


@route("GET", "/v1/agent/monitor", acl=ACL("agent", "read"))
async def monitor(req: web.Request, agent: Agent) -> web.StreamResponse:
    level_name = (req.query.get("loglevel") or "info").lower()
    if level_name not in LEVELS:
        raise ValidationError(f"Unknown log level: {level_name}")
    json_format = "logjson" in req.query
    sub = agent.broadcaster.subscribe(LEVELS[level_name], json_format)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(req)
    try:
        await resp.write(b"")
        while True:
            line = await sub.queue.get()
            await resp.write(line.encode() + b"\n")
    except (asyncio.CancelledError, ConnectionResetError):
        pass
    finally:
        agent.broadcaster.unsubscribe(sub)
    return resp


@route("PUT", "/v1/agent/reload", acl=ACL("agent", "write"))
async def reload(req: web.Request, agent: Agent) -> web.StreamResponse:
    await agent.reload()
    return web.Response(status=200)


@route("PUT", "/v1/agent/leave", acl=ACL("agent", "write"))
async def leave(req: web.Request, agent: Agent) -> web.StreamResponse:
    await agent.leave()
    return web.Response(status=200)
