"""Operator.* and Snapshot.* endpoints: Raft configuration, peer removal, leadership transfer,
autopilot health/configuration, usage, and operator snapshots.

In server mode they read membership from ``server.cluster`` (:mod:`lictor.server.cluster`); in
-dev mode (no cluster, the single in-memory log) they describe the one server. Every argument is
validated here: these endpoints are reachable on the server RPC port, not only through HTTP.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import NoLeaderError, NotFound, NotLeaderError, ValidationError
from lictor.server.autopilot_config import parse_autopilot_config, stored_autopilot
from lictor.server.endpoints import endpoint
from lictor.server.server import Server
from lictor.server.snapshot_archive import MAX_STATE_BYTES, build_archive, read_archive

__all__: list[str] = []


def _str_arg(a: dict[str, Any], key: str) -> str:
    v = a.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ValidationError(f"{key} must be a string")
    return v


def _servers(server: Server) -> list[dict[str, Any]]:
    """Consul's RaftServer rows."""
    c = server.cluster
    if c is None:
        addr = server.log.leader() or server.config.rpc_address
        return [{"ID": "", "Node": server.config.node_name, "Address": addr, "Leader": True,
                 "ProtocolVersion": "3", "Voter": True,
                 "LastIndex": int(getattr(server.log, "last_index", 0))}]
    raft = c.raft
    voters, learners = raft.members()
    leader = raft.leader_id()
    progress = raft.progress() if raft.is_leader() else {}
    rows = []
    for pid in sorted(voters | learners):
        name, nid = c.name_of(pid)
        rows.append({"ID": nid, "Node": name, "Address": raft.transport.peer_address(pid) or "",
                     "Leader": pid == leader, "ProtocolVersion": "3", "Voter": pid in voters,
                     "LastIndex": progress.get(pid, raft.last_index() if pid == c.id else 0)})
    return rows


async def _read_check(server: Server, a: dict[str, Any]) -> None:
    await server.check_read(stale=bool(a.get("stale")), consistent=bool(a.get("consistent")))


@endpoint("Operator.RaftGetConfiguration")
async def raft_configuration(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    await _read_check(server, a)
    # Consul's "Index" comes from hashicorp/raft's GetConfiguration future, which carries the
    # latest configuration without its index: it is always 0, and clients compare it as such.
    return {"result": {"Servers": _servers(server), "Index": 0}}


def _find_peer(server: Server, a: dict[str, Any]) -> int:
    c = server.cluster
    pid_s, addr = _str_arg(a, "id"), _str_arg(a, "address")
    if bool(pid_s) == bool(addr):
        raise ValidationError("Must specify either ?id with the server's ID or ?address with "
                              "IP:port of peer to remove")
    if c is None:
        raise ValidationError("this server runs without Raft peers (-dev): nothing to remove")
    for row in _servers(server):
        if (pid_s and row["ID"] == pid_s) or (addr and row["Address"] == addr):
            for p in c.raft.members()[0] | c.raft.members()[1]:
                if c.name_of(p)[1] == row["ID"]:
                    return int(p)
    what = f"id {pid_s!r}" if pid_s else f"address {addr!r}"
    raise NotFound(f"{what} was not found in the Raft configuration")


@endpoint("Operator.RaftRemovePeer", write=True)
async def raft_remove_peer(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    pid = _find_peer(server, a)
    c = server.cluster
    if pid == c.id:
        raise ValidationError("cannot remove the leader itself: transfer leadership first")
    await c.raft.remove_server(pid)
    return {"result": True}


@endpoint("Operator.RaftTransferLeader", write=True)
async def raft_transfer_leader(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    c = server.cluster
    if c is None:
        raise ValidationError("cannot transfer leadership: this is the only server")
    target_s = _str_arg(a, "id")
    target = None
    if target_s:
        for p in c.raft.members()[0]:
            if c.name_of(p)[1] == target_s:
                target = p
        if target is None:
            raise NotFound(f"id {target_s!r} is not a voter in the Raft configuration")
        if target == c.id:
            raise ValidationError("this server is already the leader")
    try:
        new = await c.raft.transfer_leadership(target)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return {"result": {"Success": True, "NewLeader": c.name_of(new)[1]}}


def _own_autopilot(server: Server) -> Any:
    from lictor.server.cluster import AutopilotConfig

    c = server.cluster
    return c.config.autopilot if c is not None else AutopilotConfig()


@endpoint("Operator.AutopilotGetConfiguration")
async def autopilot_configuration(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """The configuration an operator stored through Raft, else this server's own (its agent
    configuration's ``autopilot`` block)."""
    await _read_check(server, a)
    stored = stored_autopilot(server.store)
    return {"result": stored if stored is not None else _own_autopilot(server).to_api()}


@endpoint("Operator.ApplyAutopilotConfiguration", write=True)
async def autopilot_set_configuration(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """Args: ``config`` (the API body), optional ``cas`` (the ModifyIndex it must replace).
    Stores the configuration through Raft; the result is Consul's bool (false: CAS lost)."""
    cas = a.get("cas")
    if cas is not None and (isinstance(cas, bool) or not isinstance(cas, int) or cas < 0):
        raise ValidationError(f"cas must be an unsigned integer, got {cas!r}")
    if not server.log.is_leader():
        leader = server.log.leader()
        raise NotLeaderError(leader) if leader else NoLeaderError()
    current = stored_autopilot(server.store) or _own_autopilot(server).to_api()
    config = parse_autopilot_config(a.get("config"), current=current)
    ok = await server.apply(MessageType.SYSTEM_METADATA, {"op": "autopilot-set", "config": config, "cas": cas})
    return {"result": bool(ok)}


def _rfc3339(monotonic_ts: float) -> str:
    import datetime
    import time

    wall = time.time() - (time.monotonic() - monotonic_ts)
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


@endpoint("Operator.ServerHealth")
async def server_health(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    await _read_check(server, a)
    c = server.cluster
    if c is None:
        import time

        row = {"ID": "", "Name": server.config.node_name, "Address": server.config.rpc_address,
               "SerfStatus": "alive", "Version": "", "Leader": True, "LastContact": "0s",
               "LastTerm": 1, "LastIndex": int(getattr(server.log, "last_index", 0)),
               "Healthy": True, "Voter": True, "StableSince": _rfc3339(time.monotonic())}
        return {"result": {"Healthy": True, "FailureTolerance": 0, "Servers": [row]}}
    from lictor.server.cluster import failure_tolerance

    health = c.health()
    rows = [{"ID": h.node_id, "Name": h.name, "Address": h.address, "SerfStatus": "alive",
             "Version": "", "Leader": h.leader, "LastContact": f"{h.last_contact * 1000:.3f}ms",
             "LastTerm": h.last_term, "LastIndex": h.last_index, "Healthy": h.healthy,
             "Voter": h.voter, "StableSince": _rfc3339(h.stable_since)} for h in health]
    return {"result": {"Healthy": all(h.healthy for h in health),
                       "FailureTolerance": failure_tolerance(health), "Servers": rows}}


@endpoint("Operator.Usage")
async def usage(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    meta = await server.check_read(stale=bool(a.get("stale")), consistent=bool(a.get("consistent")))
    st = server.store
    names: set[str] = set()
    instances = connect = servers = 0
    for row in st.services.values():
        kind = getattr(row, "kind", "") or ""
        names.add(row.service)
        instances += 1
        if kind == "connect-proxy" or (getattr(row, "connect", None) or {}).get("native"):
            connect += 1
        elif row.id == "consul" and row.service == "consul":
            servers += 1
    billable = instances - connect - servers  # Consul bills neither Connect instances nor its servers
    dc = server.config.datacenter
    return {"index": max(st.latest_index, 1), "known_leader": meta.known_leader,
            "last_contact": meta.last_contact, "consistency": meta.consistency,
            "result": {"Usage": {dc: {
                "Nodes": len(st.nodes), "Services": len(names), "ServiceInstances": instances,
                "ConnectServiceInstances": {"connect-proxy": connect, "connect-native": 0,
                                            "ingress-gateway": 0, "mesh-gateway": 0,
                                            "terminating-gateway": 0, "api-gateway": 0},
                "BillableServiceInstances": billable, "KVCount": len(st.kvs),
                "Sessions": len(st.sessions)}}}}


@endpoint("Snapshot.Save")
async def snapshot_save(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    """A consistent snapshot (leader, after ReadIndex) unless ``stale``."""
    if not a.get("stale"):
        await server.log.verify_leader()
    snap = server.fsm.snapshot()
    c = server.cluster
    term = c.raft.term() if c is not None else 1
    servers = [{"ID": r["ID"], "Address": r["Address"], "Voter": r["Voter"]}
               for r in _servers(server)]

    def build() -> bytes:
        buf = io.BytesIO()
        snap.persist(buf)
        return build_archive(buf.getvalue(), index=snap.index, term=term, servers=servers)

    data = await asyncio.get_running_loop().run_in_executor(None, build)
    return {"result": data, "index": max(snap.index, 1)}


@endpoint("Snapshot.Restore", write=True, args={"archive": bytes})
async def snapshot_restore(server: Server, a: dict[str, Any]) -> dict[str, Any]:
    data = a.get("archive")
    if not isinstance(data, bytes):
        raise ValidationError("archive must be the snapshot file's bytes")
    try:
        archive = await asyncio.get_running_loop().run_in_executor(None, read_archive, data)
    except ValueError as exc:
        raise ValidationError(f"invalid snapshot: {exc}") from None
    if len(archive.state) > MAX_STATE_BYTES:
        raise ValidationError(f"snapshot state is too large to restore ({len(archive.state)} bytes)",
                              status=413)
    hook = getattr(server.log, "restore_user_snapshot", None)
    if hook is None:  # -dev: the in-memory log applies at once
        server.fsm.restore(io.BytesIO(archive.state))
    else:
        await hook(io.BytesIO(archive.state))
    return {"result": True}
