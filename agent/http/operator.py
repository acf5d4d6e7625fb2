"""/v1/operator/*: Raft configuration, peer removal, leadership transfer, autopilot, usage.

Each route forwards to a server endpoint in :mod:`lictor.server.endpoints.operator` (through
``agent.rpc``: on a follower the call runs on the leader unless ``?stale``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, decode_json_body, json_response, route
from lictor.common.errors import ValidationError

if TYPE_CHECKING:
    from lictor.agent.agent import Agent


def _read_args(opts: QueryOptions) -> dict[str, object]:
    return {"stale": opts.stale, "consistent": opts.consistent}


@route("GET", "/v1/operator/raft/configuration", acl=ACL("operator", "read"))
async def raft_configuration(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Operator.RaftGetConfiguration", _read_args(opts))
    return json_response(req, out["result"])


@route("DELETE", "/v1/operator/raft/peer", acl=ACL("operator", "write"))
async def raft_remove_peer(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    pid, addr = req.query.get("id", ""), req.query.get("address", "")
    if bool(pid) == bool(addr):
        raise ValidationError("Must specify either ?id with the server's ID or ?address with IP:port "
                              "of peer to remove")
    await agent.rpc("Operator.RaftRemovePeer", {"id": pid, "address": addr})
    return web.Response(status=200)


@route("POST", "/v1/operator/raft/transfer-leader", acl=ACL("operator", "write"))
async def raft_transfer_leader(req: web.Request, agent: Agent) -> web.StreamResponse:
    QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Operator.RaftTransferLeader", {"id": req.query.get("id", "")})
    return json_response(req, out["result"])


@route("GET", "/v1/operator/autopilot/health", acl=ACL("operator", "read"))
async def autopilot_health(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Operator.ServerHealth", _read_args(opts))
    health = out["result"]
    # Consul answers 429 when the cluster is unhealthy, so load balancers can use this URL.
    return json_response(req, health, status=200 if health["Healthy"] else 429)


@route("GET", "/v1/operator/autopilot/configuration", acl=ACL("operator", "read"))
async def autopilot_configuration(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Operator.AutopilotGetConfiguration", _read_args(opts))
    return json_response(req, out["result"])


@route("PUT", "/v1/operator/autopilot/configuration", acl=ACL("operator", "write"))
async def autopilot_set_configuration(req: web.Request, agent: Agent) -> web.StreamResponse:
    """Consul's: the body is an AutopilotConfiguration, ``?cas=<ModifyIndex>`` makes it a
    check-and-set; stored through Raft; answers true, or false when the CAS lost."""
    QueryOptions.parse(req, local_dc=agent.datacenter)
    body = await decode_json_body(req)
    args: dict[str, object] = {"config": body}
    if "cas" in req.query:
        raw = req.query.get("cas", "")
        if not raw.isdigit():
            raise ValidationError(f"Invalid cas {raw!r}: expected an unsigned integer")
        args["cas"] = int(raw)
    out = await agent.rpc("Operator.ApplyAutopilotConfiguration", args)
    return json_response(req, bool(out["result"]))


@route("GET", "/v1/operator/usage", acl=ACL("operator", "read"))
async def usage(req: web.Request, agent: Agent) -> web.StreamResponse:
    opts = QueryOptions.parse(req, local_dc=agent.datacenter)
    out = await agent.rpc("Operator.Usage", _read_args(opts))
    # Consul's OperatorUsageResponse embeds its QueryMeta in the body as well as the headers
    body = {**out["result"], **query_meta_body(out)}
    return json_response(req, body, meta=out)


def query_meta_body(meta: dict[str, object]) -> dict[str, object]:
    """Consul's QueryMeta as body fields (for responses that embed it)."""
    return {"Index": int(meta.get("index", 0) or 0),  # type: ignore[call-overload]
            "LastContact": int(float(meta.get("last_contact", 0) or 0) * 1e9),  # type: ignore[arg-type]
            "KnownLeader": bool(meta.get("known_leader", False)),
            "ConsistencyLevel": str(meta.get("consistency", "leader")),
            "NotModified": False, "Backend": 0,
            "ResultsFilteredByACLs": bool(meta.get("results_filtered_by_acls", False))}
