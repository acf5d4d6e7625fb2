"""A server's place in its cluster: formation, the server RPC dispatcher, forwarding, autopilot,
graceful leave.

::

    LAN gossip (agent/membership.py: retry_join is a gossip join list, default port 8301)
      | alive servers of our dc, from member tags (role=consul, dc, port, expect, id)
      v
    gossip_servers() + known --Cluster.Hello--> peers    peers --Cluster.Hello/Join/Info--> RPCServer
           |  (every retry_interval; replies carry          |      (port 8300)           |
           |   the peer's view of every server)              |     Raft.Msgs notes -------+--> TCPRaftTransport
           v                                                 |     ENDPOINTS names -------+--> endpoints.call (local)
    known servers --decide()--> start RaftNode               |
        has raft state      -> start as-is (bootstrap ignored)
        -bootstrap / expect 1 -> bootstrap {self}
        a peer knows a leader -> start empty, Cluster.Join at the leader (-> add_nonvoter)
        exactly `expect` stateless servers with the same expect and datacenter
                            -> every one bootstraps with the identical voter set

    Agent.rpc(name, args) -> Cluster.call: stale reads and Status.* answer locally; everything
        else runs on the leader (here, or forwarded whole over RPCClient; retried once when the
        leader changes or cannot be reached, within `forward_hold` seconds)

    leader only, every autopilot_interval (and at once on a gossip change of a server):
        view (configuration, progress, contacts, servers gossip reports as left) ->
        decide_autopilot(view, config) -> AutopilotDecision (promote / remove + a sentence)

Formation protocol (servers find each other through gossip; Hello checks what tags cannot say):

* ``Cluster.Hello`` args and reply are a :class:`ServerInfo` as a map (``node_name``,
  ``node_id``, ``rpc_addr``, ``serf_addr``, ``datacenter``, ``bootstrap_expect``, ``has_state``,
  ``leader``) plus ``servers`` (the sender's known servers, same shape) and, in the reply from a
  leader, ``members`` (node ids of the Raft configuration). Each side records the other. The
  targets are the servers LAN gossip reports alive (their ``port`` tag) and the servers already
  known; ``retry_join`` entries are never dialled on this port (see :func:`probe_rpc_port` for
  the one exception: telling a wrong-port entry apart).
* A datacenter mismatch is refused (``ValidationError``) and logged on both sides. A
  bootstrap_expect mismatch between two stateless servers is logged and the peer is left out of
  the bootstrap count, so nobody bootstraps with a configuration others would not compute.
* ``Cluster.Join`` {node_id, node_name, rpc_addr, datacenter} on the leader adds the server as a
  non-voter (idempotent); autopilot promotes it once it is caught up and stable for
  ``server_stabilization_time``. A follower answers ``NotLeaderError(leader)``.
* A server that is running Raft but is not in the configuration (its own, or the one the
  leader's last Hello reply listed: new, or removed while it was away or when it left) and knows
  a leader sends ``Cluster.Join`` again, as Consul's leader re-adds alive servers it finds in
  Serf.
* ``Cluster.Info`` (read-only, any caller): this server's name, datacenter, RPC and gossip
  addresses. It answers :func:`probe_rpc_port`.

Leaving (Consul's ``Server.Leave`` and the leader's ``handleLeftMember``):

* The leaving server stops formation (it must not ask to be re-added), hands leadership to the
  most caught-up voter if it leads (falling back to removing itself, as Consul's leader does),
  leaves gossip, then waits up to ``leave_drain_time`` until the leader's configuration no
  longer lists it: it keeps acknowledging Raft meanwhile, so the removal can commit even when
  its vote is needed (a 2-server cluster shrinking to 1).
* The leader removes servers that gossip reports as *left* (graceful leave, or an operator's
  force-leave) from the Raft configuration in :func:`decide_autopilot`, so the quorum shrinks.
  A server that merely *failed* is never removed there: that is the dead-server cleanup, with its
  own thresholds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import ssl as _ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lictor.common.errors import (
    LeadershipLostError,
    LictorError,
    NoLeaderError,
    NotLeaderError,
    PermissionDeniedError,
    RemoteProtocolError,
    TLSError,
    TransportError,
    ValidationError,
)
from lictor.common.rpc import PeerInfo, RPCClient, RPCServer
from lictor.common.tls import TLSManager
from lictor.common.rpc.conn import format_addr
from lictor.server import endpoints
from lictor.server.endpoints import is_write
from lictor.server.fsm import FSM
from lictor.server.raft.driver import RaftNode, RaftNodeConfig
from lictor.server.raft.messages import NodeID
from lictor.server.raft.transport import RAFT_METHOD, TCPRaftTransport, raft_id

__all__ = [
    "AutopilotConfig",
    "AutopilotDecision",
    "AutopilotView",
    "Cluster",
    "ClusterConfig",
    "DEFAULT_SERF_LAN_PORT",
    "LEAVE_DRAIN_TIME",
    "ProbeVerdict",
    "RPCProbe",
    "ServerHealth",
    "ServerInfo",
    "bootstrap_voters",
    "decide_autopilot",
    "parse_join_address",
    "probe_rpc_port",
    "server_health",
]

log = logging.getLogger("lictor.cluster")

DEFAULT_SERF_LAN_PORT = 8301
"""The port of a ``retry_join`` entry that names none (a LAN gossip address, as Consul's)."""
LEAVE_DRAIN_TIME = 5.0
"""How long a leaving voter waits to be out of the Raft configuration (Consul's leave_drain_time)."""
#: Endpoints every server answers from its own state (Consul's Status.* are local too).
LOCAL_ENDPOINTS = frozenset({"Status.Leader", "Status.Peers", "Operator.AutopilotGetConfiguration"})


# ============================================================================= values


@dataclass(frozen=True, slots=True, kw_only=True)
class AutopilotConfig:
    """Consul's ``autopilot`` block (plus ``dead_server_last_contact_threshold``, ours: without
    gossip, "dead" means the leader has not heard from the server for that long)."""

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2
    """A server is unhealthy when the leader has not heard from it for longer (the effective
    threshold is never below 3 heartbeat intervals, so slow Raft timings do not flap)."""
    max_trailing_logs: int = 250
    min_quorum: int = 0
    server_stabilization_time: float = 10.0
    dead_server_last_contact_threshold: float = 30.0

    def to_api(self) -> dict[str, Any]:
        return {
            "CleanupDeadServers": self.cleanup_dead_servers,
            "LastContactThreshold": _go_duration(self.last_contact_threshold),
            "MaxTrailingLogs": self.max_trailing_logs,
            "MinQuorum": self.min_quorum,
            "ServerStabilizationTime": _go_duration(self.server_stabilization_time),
            "RedundancyZoneTag": "",
            "DisableUpgradeMigration": False,
            "UpgradeVersionTag": "",
            "CreateIndex": 0,
            "ModifyIndex": 0,
        }


def _go_duration(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    ms = seconds * 1000
    return f"{ms:g}ms" if ms < 1000 else f"{seconds:g}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    node_name: str
    node_id: str
    datacenter: str
    rpc_addr: str
    """Advertised ``host:port`` of this server's RPC port (what peers dial)."""
    bind: tuple[str, int]
    data_dir: str
    serf_addr: str = ""
    """Advertised ``host:port`` of this server's LAN gossip port (told by ``Cluster.Info``)."""
    bootstrap: bool = False
    bootstrap_expect: int = 0
    retry_interval: float = 30.0
    """Formation round cadence (Hello to the servers gossip and earlier replies named)."""
    tick_interval: float = 0.1
    raft_multiplier: int = 1
    autopilot: AutopilotConfig = field(default_factory=AutopilotConfig)
    forward_hold: float = 7.0
    """How long a forwarded call may wait for a (new) leader: Consul's rpc_hold_timeout."""
    rpc_frame_timeout: float = 30.0
    settled_hello_interval: float = 5.0
    """Hello cadence once Raft runs and this server is a member (keeps addresses fresh)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """What one server says about itself in ``Cluster.Hello``."""

    node_name: str
    node_id: str
    rpc_addr: str
    datacenter: str
    bootstrap_expect: int = 0
    has_state: bool = False
    leader: str = ""
    serf_addr: str = ""
    """The server's LAN gossip address ("" from servers that do not say)."""

    @property
    def raft_id(self) -> NodeID:
        return raft_id(self.node_id)

    def to_wire(self) -> dict[str, Any]:
        return {"node_name": self.node_name, "node_id": self.node_id, "rpc_addr": self.rpc_addr,
                "datacenter": self.datacenter, "bootstrap_expect": self.bootstrap_expect,
                "has_state": self.has_state, "leader": self.leader, "serf_addr": self.serf_addr}

    @classmethod
    def from_wire(cls, v: Any, what: str = "server info") -> ServerInfo:
        """Validate a map from the network; ``ValidationError`` names the bad field."""
        if not isinstance(v, dict):
            raise ValidationError(f"{what}: expected a map, got {type(v).__name__}")

        def text(key: str, *, required: bool = True, limit: int = 256) -> str:
            x = v.get(key, "")
            if not isinstance(x, str):
                raise ValidationError(f"{what}: {key} must be a string, got {type(x).__name__}")
            if required and not x:
                raise ValidationError(f"{what}: {key} is required")
            if len(x) > limit:
                raise ValidationError(f"{what}: {key} is longer than {limit} characters")
            return x

        expect = v.get("bootstrap_expect", 0)
        if type(expect) is not int or not 0 <= expect <= 1000:
            raise ValidationError(f"{what}: bootstrap_expect must be an integer 0-1000")
        has_state = v.get("has_state", False)
        if type(has_state) is not bool:
            raise ValidationError(f"{what}: has_state must be a boolean")
        addr = text("rpc_addr")
        try:
            _split_hostport(addr)
        except ValueError as exc:
            raise ValidationError(f"{what}: rpc_addr: {exc}") from None
        leader = text("leader", required=False)
        serf = text("serf_addr", required=False)
        if serf:
            try:
                _split_hostport(serf)
            except ValueError as exc:
                raise ValidationError(f"{what}: serf_addr: {exc}") from None
        return cls(node_name=text("node_name"), node_id=text("node_id"), rpc_addr=addr,
                   datacenter=text("datacenter"), bootstrap_expect=expect, has_state=has_state,
                   leader=leader, serf_addr=serf)


def _split_hostport(addr: str) -> tuple[str, int]:
    host, sep, port_s = addr.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"invalid address {addr!r}: expected host:port")
    return host.strip("[]"), int(port_s)


def parse_join_address(text: str, default_port: int = DEFAULT_SERF_LAN_PORT) -> tuple[str, int]:
    """A retry_join entry, i.e. a LAN gossip address: ``host``, ``host:port``, ``[v6]``,
    ``[v6]:port`` or a bare IPv6 address; host may be a DNS name; the port defaults to 8301.
    ``ValueError`` with a readable message otherwise."""
    t = text.strip()
    if not t:
        raise ValueError("empty retry_join address")
    port_s = ""
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid retry_join address {text!r}")
        port_s = rest[1:]
        if rest and not port_s:
            raise ValueError(f"invalid retry_join address {text!r}: missing port after ':'")
    elif t.count(":") > 1:
        host = t  # bare IPv6
    else:
        host, sep, port_s = t.partition(":")
        if sep and not port_s:
            raise ValueError(f"invalid retry_join address {text!r}: missing port after ':'")
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"invalid retry_join address {text!r}: bad host")
    if not port_s:
        return host, default_port
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"invalid retry_join address {text!r}: port must be 1-65535")
    return host, int(port_s)


class ProbeVerdict(enum.Enum):
    UNREACHABLE = "unreachable"
    """Nothing accepted a connection: ask again later (the peer may still be starting)."""
    NOT_RPC = "not-rpc"
    """A connection was accepted but the server RPC protocol was not spoken: never ask again."""
    SERVER_RPC = "server-rpc"
    """A Lictor server's RPC port answered (``info`` is set when it said who it is)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RPCProbe:
    verdict: ProbeVerdict
    info: ServerInfo | None = None
    detail: str = ""


async def probe_rpc_port(addr: str, *, ssl: _ssl.SSLContext | None = None,
                         server_hostname: str | None = None, timeout: float = 2.0) -> RPCProbe:
    """Is `addr` (``host:port``) a server RPC port? One read-only ``Cluster.Info`` call on a
    connection of its own, closed afterwards (no background reconnects).

    Only for a ``retry_join`` entry that a gossip join could not reach: it tells a legacy
    entry naming a server's RPC port (the answer carries that server's gossip address) from a
    peer that is down. The connection is opened first, so an address nobody listens on gets no
    bytes at all; a gossip port that accepted the connection drops the frame silently."""
    client = RPCClient(connect_timeout=timeout, request_timeout=timeout, reconnect_linger=0.0,
                       ssl=ssl, server_hostname=server_hostname)
    try:
        try:
            await client.connect(addr)
        except TLSError as exc:
            return RPCProbe(verdict=ProbeVerdict.NOT_RPC, detail=f"TLS handshake failed: {exc}")
        except TransportError as exc:
            return RPCProbe(verdict=ProbeVerdict.UNREACHABLE, detail=str(exc))
        try:
            reply = await client.call(addr, "Cluster.Info", {}, timeout=timeout)
        except (TransportError, RemoteProtocolError) as exc:
            return RPCProbe(verdict=ProbeVerdict.NOT_RPC, detail=str(exc))
        except LictorError as exc:  # an error reply: it speaks the protocol (older, or refused us)
            return RPCProbe(verdict=ProbeVerdict.SERVER_RPC, detail=str(exc))
        try:
            info = ServerInfo.from_wire(reply, f"Cluster.Info reply from {addr}")
        except ValidationError as exc:
            return RPCProbe(verdict=ProbeVerdict.SERVER_RPC, detail=str(exc))
        return RPCProbe(verdict=ProbeVerdict.SERVER_RPC, info=info)
    finally:
        await client.close()


def bootstrap_voters(me: ServerInfo, known: Mapping[str, ServerInfo],
                     expect: int) -> tuple[dict[NodeID, str] | None, str]:
    """Decide whether the stateless server `me` may bootstrap now (pure).

    Returns (voters, sentence): voters is the identical {raft id: address} map every server of
    the expected set computes, or None with the reason to wait. Servers with another datacenter
    or bootstrap_expect do not count (they are reported); servers without bootstrap_expect
    (joining ones) are not voters of the first configuration."""
    if expect <= 0:
        return None, "not bootstrapping: bootstrap_expect is not set"
    cands = {me.node_id: me}
    problems: list[str] = []
    for nid, s in sorted(known.items()):
        if nid == me.node_id:
            continue
        if s.datacenter != me.datacenter:
            problems.append(f"{s.node_name} is in datacenter {s.datacenter!r}")
            continue
        if s.bootstrap_expect == 0:
            continue  # a server that will join, not bootstrap
        # A peer with Raft state but no leader is counted: it most likely bootstrapped a moment
        # ago with this same set (it saw the same servers first). A peer whose cluster has a
        # leader never gets here: the caller joins that leader instead.
        if s.bootstrap_expect != expect:
            problems.append(f"{s.node_name} has bootstrap_expect={s.bootstrap_expect}, "
                            f"we have {expect}: all servers must expect the same number")
            continue
        cands[nid] = s
    suffix = ("; ignored: " + "; ".join(problems)) if problems else ""
    if len(cands) < expect:
        return None, f"waiting for servers: found {len(cands)} of {expect}{suffix}"
    if len(cands) > expect:
        return None, (f"refusing to bootstrap: found {len(cands)} servers expecting {expect} "
                      f"({', '.join(sorted(s.node_name for s in cands.values()))}){suffix}")
    voters = {s.raft_id: s.rpc_addr for s in cands.values()}
    names = ", ".join(sorted(s.node_name for s in cands.values()))
    return voters, f"bootstrapping with {expect} voters: {names}{suffix}"


# ============================================================================ autopilot


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerView:
    id: NodeID
    name: str
    node_id: str
    address: str
    voter: bool
    leader: bool
    match_index: int
    last_contact: float | None
    """Seconds since the leader heard from it (0 for the leader; None: not since leadership)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AutopilotView:
    """One immutable look at the cluster, taken on the leader (STYLE P15)."""

    now: float
    term: int
    last_index: int
    commit_index: int
    servers: tuple[ServerView, ...]
    leader_since: float
    healthy_since: Mapping[NodeID, float]
    """When each server was first seen healthy without interruption (from earlier iterations)."""
    expected_servers: int = 0
    heartbeat_interval: float = 0.1
    left: frozenset[NodeID] = frozenset()
    """Servers LAN gossip reports as *left* (graceful leave or force-leave; never failed ones)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHealth:
    id: NodeID
    name: str
    node_id: str
    address: str
    voter: bool
    leader: bool
    healthy: bool
    last_contact: float
    last_index: int
    last_term: int
    stable_since: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AutopilotDecision:
    promote: tuple[NodeID, ...] = ()
    remove: tuple[NodeID, ...] = ()
    health: tuple[ServerHealth, ...] = ()
    healthy_since: Mapping[NodeID, float] = field(default_factory=dict)
    sentence: str = ""


def _contact_threshold(view: AutopilotView, cfg: AutopilotConfig) -> float:
    return max(cfg.last_contact_threshold, 3 * view.heartbeat_interval)


def server_health(view: AutopilotView, cfg: AutopilotConfig) -> tuple[tuple[ServerHealth, ...],
                                                                      dict[NodeID, float]]:
    """Each server's health (Consul's rules: recent contact and not too far behind)."""
    threshold = _contact_threshold(view, cfg)
    out: list[ServerHealth] = []
    since: dict[NodeID, float] = {}
    for s in view.servers:
        contact = s.last_contact
        if s.leader:
            healthy = True
        else:
            healthy = (contact is not None and contact <= threshold
                       and view.last_index - s.match_index <= cfg.max_trailing_logs)
        if healthy:
            since[s.id] = view.healthy_since.get(s.id, view.now)
        seen = contact if contact is not None else view.now - view.leader_since
        out.append(ServerHealth(id=s.id, name=s.name, node_id=s.node_id, address=s.address,
                                voter=s.voter, leader=s.leader, healthy=healthy,
                                last_contact=max(0.0, seen), last_index=s.match_index,
                                last_term=view.term if s.match_index else 0,
                                stable_since=since.get(s.id, view.now)))
    return tuple(out), since


def decide_autopilot(view: AutopilotView, cfg: AutopilotConfig) -> AutopilotDecision:
    """One autopilot iteration on the leader (pure): at most one promotion and one removal.

    * promote a non-voter that is healthy and has been for ``server_stabilization_time``;
    * remove a server that gossip reports as *left* (Consul's leader removes left servers at
      once, whatever ``cleanup_dead_servers`` says): a non-voter always; a voter only if the
      change can commit (the healthy voters, the leaver counted while it still answers, are a
      quorum of the current voters) and the healthy voters left are a quorum of the voters
      left. The leader itself is never removed here (a leaving leader hands leadership over
      first); ``min_quorum`` does not hold back a server that left on purpose;
    * otherwise, with ``cleanup_dead_servers``: remove a server the leader has not heard from for
      ``dead_server_last_contact_threshold`` (counting from when this leadership began),
      non-voters always, a voter only if the voters left stay >= max(min_quorum,
      bootstrap_expect) and the healthy voters left still form a quorum of them.
    """
    health, since = server_health(view, cfg)
    said: list[str] = []
    promote: list[NodeID] = []
    for h in sorted(health, key=lambda h: h.id):
        if h.voter or not h.healthy or h.id in view.left:
            continue
        stable = view.now - since[h.id]
        if stable >= cfg.server_stabilization_time:
            promote.append(h.id)
            said.append(f"promoting {h.name or h.id} (caught up, stable {stable:.1f}s)")
            break
    voters = [h for h in health if h.voter]
    remove: list[NodeID] = []
    for h in sorted(health, key=lambda h: h.id):
        if h.id not in view.left or h.leader:
            continue
        name = h.name or str(h.id)
        if not h.voter:
            remove.append(h.id)
            said.append(f"removing non-voter {name}: it left the cluster")
            break
        healthy_now = sum(1 for v in voters if v.healthy)
        if healthy_now < len(voters) // 2 + 1:
            said.append(f"not removing {name} (left): only {healthy_now} of {len(voters)} voters "
                        f"are healthy, the change could not commit")
            continue
        rest = [v for v in voters if v.id != h.id]
        healthy_rest = sum(1 for v in rest if v.healthy)
        if healthy_rest < len(rest) // 2 + 1:
            said.append(f"not removing {name} (left): the {healthy_rest} healthy voters left "
                        f"would not be a quorum of {len(rest)}")
            continue
        remove.append(h.id)
        said.append(f"removing server {name}: it left the cluster ({len(rest)} "
                    f"{'voter remains' if len(rest) == 1 else 'voters remain'})")
        break
    if cfg.cleanup_dead_servers and not remove:
        floor = max(cfg.min_quorum, view.expected_servers)
        for s in sorted(view.servers, key=lambda s: s.id):
            if s.leader:
                continue
            silent = s.last_contact if s.last_contact is not None else view.now - view.leader_since
            if silent < cfg.dead_server_last_contact_threshold:
                continue
            name = s.name or str(s.id)
            if not s.voter:
                remove.append(s.id)
                said.append(f"removing dead non-voter {name} (silent {silent:.0f}s)")
                break
            left = [h for h in voters if h.id != s.id]
            healthy_left = sum(1 for h in left if h.healthy)
            if len(left) < floor:
                said.append(f"not removing dead server {name}: {len(left)} voters would be "
                            f"fewer than the minimum {floor}")
                continue
            if healthy_left < len(left) // 2 + 1:
                said.append(f"not removing dead server {name}: the {healthy_left} healthy "
                            f"voters left would not be a quorum of {len(left)}")
                continue
            remove.append(s.id)
            said.append(f"removing dead server {name} (silent {silent:.0f}s)")
            break
    return AutopilotDecision(promote=tuple(promote), remove=tuple(remove), health=health,
                             healthy_since=since, sentence="; ".join(said) or "nothing to do")


def failure_tolerance(health: tuple[ServerHealth, ...]) -> int:
    voters = [h for h in health if h.voter]
    healthy = sum(1 for h in voters if h.healthy)
    return max(0, healthy - (len(voters) // 2 + 1))


# ============================================================================== Cluster


class Cluster:
    """The server side of `lictor agent -server`: owns the RPC server and client, the Raft node,
    formation, forwarding and autopilot. Create it, hand `raft` to the `Server`, `attach` the
    server, then `start`."""

    def __init__(self, config: ClusterConfig, *, tls: TLSManager | None = None) -> None:
        self.config = config
        self.id: NodeID = raft_id(config.node_id)
        # TLS (issue 7): one live context per direction, shared by every connection and reloaded
        # in place on SIGHUP (lictor.common.tls); None = plaintext RPC.
        self.tls = tls
        self.peer_policy = tls.rpc_policy() if tls is not None else None
        client_ssl = tls.rpc_client_context if tls is not None else None
        hostname = tls.rpc_server_name if client_ssl is not None else None
        self.rpc = RPCClient(connect_timeout=2.0, request_timeout=30.0, backoff_base=0.05,
                             backoff_max=1.0, ssl=client_ssl, server_hostname=hostname)
        self._raft_client = RPCClient(connect_timeout=2.0, backoff_base=0.02, backoff_max=0.5,
                                      reconnect_linger=3600.0, ssl=client_ssl, server_hostname=hostname)
        self.transport = TCPRaftTransport(local_id=self.id, local_address=config.rpc_addr,
                                          client=self._raft_client)
        self.raft = RaftNode(
            RaftNodeConfig(node_id=self.id, address=config.rpc_addr, data_dir=config.data_dir,
                           tick_interval=config.tick_interval,
                           raft_multiplier=config.raft_multiplier),
            FSM(), self.transport)
        self.server: Any = None
        self.rpc_server = RPCServer(_Dispatcher(self), host=config.bind[0], port=config.bind[1],
                                    frame_timeout=config.rpc_frame_timeout,
                                    ssl=tls.rpc_server_context if tls is not None else None)
        self.known: dict[str, ServerInfo] = {}
        self.members_of_leader: frozenset[str] = frozenset()
        """Node ids (or Raft ids as strings) of the configuration, as the leader's last Hello
        reply listed them (empty: not heard from a leader)."""
        self._had_state = self.raft.has_state()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.leaving = False
        """Set by :meth:`prepare_leave`: formation no longer asks to be (re-)added."""
        self._said: dict[str, str] = {}
        self._healthy_since: dict[NodeID, float] = {}
        self._leader_since = time.monotonic()
        self.last_decision: AutopilotDecision | None = None
        self.bootstrapped_with: dict[NodeID, str] | None = None
        self.raft.add_leadership_listener(self._on_leadership)
        # LAN gossip (lictor.agent.membership) is how servers find each other: the RPC
        # addresses of the alive servers it knows are the Hello targets (a new one wakes
        # formation), and the node ids of the servers it reports as left are taken out of the
        # Raft configuration by the leader (decide_autopilot).
        self.gossip_servers: Callable[[], Iterable[str]] = lambda: []
        self.left_servers: Callable[[], Iterable[str]] = lambda: []
        self._wake = asyncio.Event()
        self._autopilot_wake = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    def attach(self, server: Any) -> None:
        self.server = server
        server.cluster = self

    async def start(self) -> None:
        """Listen on the RPC port, then start Raft now (it has state, or -bootstrap) or leave
        that to the formation loop."""
        await self.rpc_server.start()
        cfg = self.config
        if self._had_state:
            if cfg.bootstrap or cfg.bootstrap_expect:
                log.info("raft state found in %s: ignoring bootstrap settings", cfg.data_dir)
            await self._start_raft({})
        elif cfg.bootstrap or cfg.bootstrap_expect == 1:
            await self._start_raft({self.id: cfg.rpc_addr})
            log.info("bootstrapped a single-server cluster")
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._formation_loop(), name="cluster-formation"))
        self._tasks.append(loop.create_task(self._autopilot_loop(), name="autopilot"))

    async def _start_raft(self, voters: dict[NodeID, str]) -> None:
        if self.raft.started:
            return
        self.raft.config = replace(self.raft.config, bootstrap=voters)
        if voters:
            self.bootstrapped_with = dict(voters)
        for info in self.known.values():
            self.raft.transport.set_peer(info.raft_id, info.rpc_addr)
        await self.raft.start()
        if len(voters) > 1 and self.raft.id == min(voters):
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._kick_election(), name="raft-first-election"))

    async def _kick_election(self) -> None:
        """A fresh bootstrap: every voter would wait a whole election timeout (5-10 s with
        raft_multiplier 5) before anyone campaigns. All voters computed the same voter set, so
        the one with the lowest Raft id campaigns at once, again every 0.25 s while the others
        are still starting Raft (campaigning is always safe in Raft; only liveness is at stake).
        Stops for good as soon as any leader is known (watched every tick, so a leadership
        transfer moments later is not mistaken for "no leader yet"), on leave, after 5 s, or
        on close."""
        def done() -> bool:
            return (self._closed or self.leaving or not self.raft.started
                    or self.raft.leader_id() is not None)

        loop = asyncio.get_running_loop()
        step = max(0.005, self.raft.config.tick_seconds)
        for _ in range(20):
            if done():
                return
            try:
                self.raft.campaign()
            except Exception:  # noqa: BLE001 - shut down meanwhile
                return
            until = loop.time() + 0.25
            while loop.time() < until:
                await asyncio.sleep(step)
                if done():
                    return

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.rpc_server.close()
        await self.raft.close()
        await self.rpc.close()
        await self._raft_client.close()

    # ---------------------------------------------------------------- who we are

    def info(self) -> ServerInfo:
        c = self.config
        return ServerInfo(node_name=c.node_name, node_id=c.node_id, rpc_addr=c.rpc_addr,
                          datacenter=c.datacenter, bootstrap_expect=c.bootstrap_expect,
                          has_state=self.raft.started or self._had_state,
                          leader=self.raft.leader() or "", serf_addr=c.serf_addr)

    def name_of(self, pid: NodeID) -> tuple[str, str]:
        """(node name, node id string) of a Raft id, when known."""
        if pid == self.id:
            return self.config.node_name, self.config.node_id
        for s in self.known.values():
            if s.raft_id == pid:
                return s.node_name, s.node_id
        return "", str(pid)

    def _note(self, key: str, sentence: str, level: int = logging.INFO) -> None:
        """Log a formation sentence once per change (the loop runs every retry_interval)."""
        if self._said.get(key) != sentence:
            self._said[key] = sentence
            log.log(level, sentence)

    def _learn(self, info: ServerInfo) -> None:
        if info.node_id == self.config.node_id:
            return
        old = self.known.get(info.node_id)
        self.known[info.node_id] = info
        if old is None or old.rpc_addr != info.rpc_addr:
            log.info("learned server %s (%s) at %s", info.node_name, info.node_id, info.rpc_addr)
            if not self.raft.started:
                self._wake.set()  # maybe enough servers for bootstrap_expect now: decide at once
        if self.raft.started:
            self.raft.set_peer(info.raft_id, info.rpc_addr)

    # ---------------------------------------------------------------- Cluster.* handlers

    def handle_hello(self, args: Any, peer: PeerInfo | None) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise ValidationError("Cluster.Hello: expected a map")
        other = ServerInfo.from_wire(args, "Cluster.Hello")
        if other.datacenter != self.config.datacenter:
            msg = (f"refusing server {other.node_name} at {other.rpc_addr}: it is in datacenter "
                   f"{other.datacenter!r}, this server is in {self.config.datacenter!r}")
            self._note(f"dc:{other.node_id}", msg, logging.ERROR)
            raise ValidationError(msg)
        if other.node_id == self.config.node_id and other.rpc_addr != self.config.rpc_addr:
            msg = (f"refusing server {other.node_name} at {other.rpc_addr}: it has this server's "
                   f"node id {other.node_id}")
            self._note(f"dup:{other.rpc_addr}", msg, logging.ERROR)
            raise ValidationError(msg)
        self._learn(other)
        servers = args.get("servers", [])
        if isinstance(servers, list):
            for item in servers[:64]:
                try:
                    s = ServerInfo.from_wire(item, "Cluster.Hello servers")
                except ValidationError:
                    continue
                if s.datacenter == self.config.datacenter and s.node_id not in self.known:
                    self._learn(s)
        return self._hello_payload()

    def _hello_payload(self) -> dict[str, Any]:
        out = self.info().to_wire()
        out["servers"] = [s.to_wire() for s in self.known.values()]
        if self.raft.is_leader():
            voters, learners = self.raft.members()
            out["members"] = [self.name_of(p)[1] for p in voters | learners]
        return out

    async def handle_join(self, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise ValidationError("Cluster.Join: expected a map")
        other = ServerInfo.from_wire(args, "Cluster.Join")
        if other.datacenter != self.config.datacenter:
            raise ValidationError(f"Cluster.Join: server {other.node_name} is in datacenter "
                                  f"{other.datacenter!r}, not {self.config.datacenter!r}")
        if not self.raft.is_leader():
            leader = self.raft.leader()
            if leader is None:
                raise NoLeaderError()
            raise NotLeaderError(leader)
        self._learn(other)
        voters, learners = self.raft.members()
        if other.raft_id not in voters and other.raft_id not in learners:
            log.info("adding server %s (%s) at %s as a non-voter", other.node_name,
                     other.node_id, other.rpc_addr)
            await self.raft.add_nonvoter(other.raft_id, other.rpc_addr)
        return {"ok": True}

    # ---------------------------------------------------------------- formation

    def _targets(self) -> list[str]:
        """Hello targets: servers already known (unless gossip reports them left) and the alive
        servers gossip reports (never a retry_join entry: those are gossip addresses, joined by
        lictor.agent.membership)."""
        out: list[str] = []
        gone = set(self.left_servers())  # left for good: no more Hellos to them
        for s in self.known.values():
            if s.rpc_addr not in out and s.node_id not in gone:
                out.append(s.rpc_addr)
        for a in self.gossip_servers():
            if a not in out:
                out.append(a)
        return [a for a in out if a != self.config.rpc_addr]

    def wake(self) -> None:
        """Gossip saw a server change: run a formation round and an autopilot iteration now."""
        self._wake.set()
        self._autopilot_wake.set()

    async def _resolve(self, addr: str) -> list[str]:
        host, port = _split_hostport(addr)
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            return [addr]
        except OSError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._note(f"dns:{host}", f"formation: cannot resolve {host!r}: {exc}", logging.WARNING)
            return []
        seen: list[str] = []
        for _fam, _, _, _, sa in infos:
            a = format_addr(sa[0], sa[1])
            if a not in seen:
                seen.append(a)
        return seen

    async def _hello(self, addr: str) -> ServerInfo | None:
        payload = self._hello_payload()
        try:
            reply = await self.rpc.call(addr, "Cluster.Hello", payload, timeout=2.0)
        except ValidationError as exc:
            self._note(f"refused:{addr}", f"server at {addr} refused us: {exc}", logging.ERROR)
            return None
        except Exception as exc:  # noqa: BLE001 - unreachable peers are the normal case here
            self._note(f"hello:{addr}", f"cannot reach server at {addr}: {exc}", logging.DEBUG)
            return None
        self._said.pop(f"hello:{addr}", None)
        try:
            info = ServerInfo.from_wire(reply, f"Cluster.Hello reply from {addr}")
        except ValidationError as exc:
            self._note(f"badreply:{addr}", str(exc), logging.WARNING)
            return None
        if info.datacenter != self.config.datacenter:
            self._note(f"dc:{info.node_id}", f"ignoring server {info.node_name} at {addr}: it is in "
                       f"datacenter {info.datacenter!r}, not {self.config.datacenter!r}",
                       logging.ERROR)
            return None
        self._learn(info)
        for item in (reply.get("servers") or [])[:64] if isinstance(reply.get("servers"), list) else []:
            try:
                s = ServerInfo.from_wire(item)
            except ValidationError:
                continue
            if s.datacenter == self.config.datacenter and s.node_id not in self.known:
                self._learn(s)
        members = reply.get("members")
        if isinstance(members, list) and info.leader == info.rpc_addr:
            self.members_of_leader = frozenset(m for m in members if isinstance(m, str))
        return info

    async def _formation_loop(self) -> None:
        cfg = self.config
        while not self._closed:
            try:
                if self.leaving:
                    return
                targets = self._targets()
                resolved: list[str] = []
                for t in targets:
                    for a in await self._resolve(t):
                        if a != cfg.rpc_addr and a not in resolved:
                            resolved.append(a)
                replies = await asyncio.gather(*(self._hello(a) for a in resolved))
                ok = [r for r in replies if r is not None]
                await self._decide(ok)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive a bad round
                log.exception("cluster formation round failed")
            settled = self._settled()
            delay = max(cfg.retry_interval, cfg.settled_hello_interval) if settled else cfg.retry_interval
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay * random.uniform(0.9, 1.1))
            except TimeoutError:
                pass

    def _settled(self) -> bool:
        """Raft runs and this server is in the configuration: its own, and the one the leader's
        last Hello reply listed (a server removed while it was away, or when it left, may
        still find itself in its own log: it was never sent the entry that removed it)."""
        if not self.raft.started:
            return False
        voters, learners = self.raft.members()
        if self.id not in voters and self.id not in learners:
            return False
        ml = self.members_of_leader
        return not ml or self.config.node_id in ml or str(self.id) in ml

    def _leader_hint(self, replies: list[ServerInfo]) -> str | None:
        own = self.raft.leader()
        if own:
            return own
        for r in replies:
            if r.leader:
                return r.leader
        for s in self.known.values():
            if s.leader:
                return s.leader
        return None

    async def _decide(self, replies: list[ServerInfo]) -> None:
        cfg = self.config
        if self.leaving:
            return
        if not self.raft.started:
            leader = self._leader_hint(replies)
            if leader:
                self._note("form", f"found the cluster's leader at {leader}: joining it")
                await self._start_raft({})
            elif cfg.bootstrap_expect > 1:
                voters, sentence = bootstrap_voters(self.info(), self.known, cfg.bootstrap_expect)
                level = logging.ERROR if "refusing" in sentence or "ignored" in sentence else logging.INFO
                self._note("form", sentence, level)
                if voters is not None:
                    await self._start_raft(voters)
                return
            else:
                self._note("form", "no bootstrap settings and no cluster leader found yet: waiting "
                                   "(set bootstrap_expect, or retry_join a member of a running "
                                   "cluster)")
                return
        if self._settled() or self.raft.is_leader():
            return
        leader = self._leader_hint(replies)
        if not leader or leader == cfg.rpc_addr:
            return
        try:
            await self.rpc.call(leader, "Cluster.Join", self.info().to_wire(), timeout=5.0)
            self._note("join", f"asked the leader at {leader} to add this server")
        except NotLeaderError as exc:
            if exc.leader and exc.leader != leader:
                try:
                    await self.rpc.call(exc.leader, "Cluster.Join", self.info().to_wire(), timeout=5.0)
                except Exception as exc2:  # noqa: BLE001
                    self._note("join", f"join via {exc.leader} failed: {exc2}", logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - retried next round
            self._note("join", f"join via {leader} failed: {exc}", logging.WARNING)

    # ---------------------------------------------------------------- leaving

    async def prepare_leave(self) -> str:
        """First step of a graceful leave (before gossip's): stop formation, and if this server
        leads others, hand leadership to the most caught-up voter so the next leader removes
        it once gossip reports it left. Should that fail, remove this server itself, as
        Consul's leader does (it steps down once the change applies). Returns a sentence."""
        self.leaving = True
        self._wake.set()
        raft = self.raft
        if not raft.started or not raft.is_leader():
            return "not the leader: nothing to hand over"
        voters, _ = raft.members()
        if not voters - {self.id}:
            return "the only voter: nothing to hand over"
        try:
            new = await raft.transfer_leadership()
        except (LeadershipLostError, NotLeaderError, ValueError) as exc:
            if not raft.is_leader():
                return f"lost leadership meanwhile ({exc})"
            log.warning("leave: leadership transfer failed (%s): removing this server from the "
                        "raft configuration itself", exc)
            try:
                await raft.remove_server(self.id)
            except Exception as exc2:  # noqa: BLE001 - leaving goes on; the drain reports it
                log.warning("leave: could not remove this server: %s", exc2)
                return f"leadership transfer failed: {exc}"
            return "removed itself from the raft configuration"
        return f"handed leadership to {self.name_of(new)[0] or new}"

    async def wait_removed(self, timeout: float = LEAVE_DRAIN_TIME) -> bool:
        """Last step of a graceful leave (after gossip's): until the leader's configuration no
        longer lists this server, at most `timeout` seconds (Consul's leave drain). Raft keeps
        running meanwhile, so this server still acknowledges the entry that removes it. True
        at once for a non-voter (its removal needs nothing from it), the only voter, or
        without Raft."""
        raft = self.raft
        if not raft.started:
            return True
        voters, learners = raft.members()
        if self.id in learners or voters == {self.id}:
            return True  # a non-voter, or the last voter (nobody could remove it)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._closed:
            voters, learners = raft.members()
            out = self.id not in voters and self.id not in learners  # applied here already
            if not out:
                members = await self._leader_members()
                out = (members is not None and self.config.node_id not in members
                       and str(self.id) not in members)
            if out:
                log.info("leave: removed from the raft configuration")
                return True
            await asyncio.sleep(0.1)
        log.warning("leave: still in the raft configuration after %.0fs: shutting down anyway "
                    "(the leader removes this server once gossip reports it left)", timeout)
        return False

    async def _leader_members(self) -> frozenset[str] | None:
        """The configuration as the leader lists it in its Hello reply (None: no leader known
        or it did not answer; this server when it leads)."""
        leader = self.raft.leader()
        if not leader or leader == self.config.rpc_addr:
            return None
        try:
            reply = await self.rpc.call(leader, "Cluster.Hello", self._hello_payload(), timeout=1.0)
        except Exception:  # noqa: BLE001 - asked again on the next round
            return None
        members = reply.get("members") if isinstance(reply, dict) else None
        if not isinstance(members, list):
            return None  # it is not the leader any more
        return frozenset(m for m in members if isinstance(m, str))

    # ---------------------------------------------------------------- forwarding

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run endpoint `name` where it must run: here for stale reads and Status.*, else on
        the leader (forwarded whole). When the leader changed or could not be reached the call
        is retried (at most twice, within `forward_hold`) once a leader is known; a write
        whose outcome is unknown (the connection broke after sending) is never repeated."""
        server = self.server
        if name in LOCAL_ENDPOINTS or args.get("stale"):
            return await endpoints.call(server, name, args)
        deadline = time.monotonic() + self.config.forward_hold
        failed: str | None = None
        attempts = 0
        while True:
            attempts += 1
            last = attempts >= 3
            if self.raft.is_leader():
                try:
                    return await endpoints.call(server, name, args)
                except NotLeaderError:
                    if last:
                        raise
                    failed = self.config.rpc_addr
                    continue
            leader = await self._wait_leader(deadline, failed)
            if leader is None:
                raise NoLeaderError()
            if leader == self.config.rpc_addr:
                continue
            connected = False
            try:
                await self.rpc.connect(leader)
                connected = True
                return await self.rpc.call(leader, name, args)
            except (NotLeaderError, NoLeaderError):
                if last or time.monotonic() >= deadline:
                    raise
            except TransportError:
                # Not connected: the call never left, so retrying is safe. Connected: a read
                # may be retried; a write's outcome is unknown, so it is reported, not repeated.
                if last or time.monotonic() >= deadline or (connected and is_write(name)):
                    raise
            failed = leader

    async def _wait_leader(self, deadline: float, failed: str | None) -> str | None:
        """The leader's address, waiting until `deadline` while none is known. After a failure
        at `failed`: wait for another leader, or for `failed` to prove alive (this server heard
        from it recently, at least half an election timeout after the failure)."""
        raft = self.raft
        step = max(0.01, raft.config.tick_seconds)
        patience = raft.config.election_timeout / 2
        since = time.monotonic()
        while True:
            leader = raft.leader()
            now = time.monotonic()
            if leader is not None:
                if leader != failed:
                    return leader
                if now - since >= patience and raft.last_contact() < patience:
                    return leader
            if now >= deadline:
                return None
            await asyncio.sleep(step)

    # ---------------------------------------------------------------- autopilot

    def _on_leadership(self, is_leader: bool) -> None:
        self._healthy_since = {}
        self._leader_since = time.monotonic()

    def autopilot_view(self) -> AutopilotView:
        raft = self.raft
        voters, learners = raft.members()
        progress = raft.progress() if raft.is_leader() else {}
        leader_id = raft.leader_id()
        servers = []
        for pid in sorted(voters | learners):
            name, nid = self.name_of(pid)
            if pid == self.id:
                contact: float | None = 0.0 if raft.is_leader() else raft.last_contact()
            else:
                contact = raft.peer_last_contact(pid)
                if contact is not None and contact > time.monotonic() - self._leader_since:
                    contact = None  # heard only before this leadership began
            servers.append(ServerView(
                id=pid, name=name, node_id=nid, address=raft.transport.peer_address(pid) or "",
                voter=pid in voters, leader=pid == leader_id,
                match_index=progress.get(pid, raft.last_index() if pid == self.id else 0),
                last_contact=contact))
        return AutopilotView(
            now=time.monotonic(), term=raft.term(), last_index=raft.last_index(),
            commit_index=raft.commit_index(), servers=tuple(servers),
            leader_since=self._leader_since, healthy_since=dict(self._healthy_since),
            expected_servers=self.config.bootstrap_expect,
            heartbeat_interval=raft.config.tick_seconds * raft.config.heartbeat_ticks,
            left=frozenset(raft_id(nid) for nid in self.left_servers() if nid))

    def autopilot_interval(self) -> float:
        ap = self.config.autopilot
        return max(0.05, min(1.0, ap.server_stabilization_time / 4, 10 * self.raft.config.tick_seconds))

    async def autopilot_once(self) -> AutopilotDecision | None:
        if not self.raft.is_leader():
            return None
        decision = decide_autopilot(self.autopilot_view(), self.config.autopilot)
        self._healthy_since = dict(decision.healthy_since)
        self.last_decision = decision
        for pid in decision.promote:
            await self.raft.promote(pid)
        for pid in decision.remove:
            await self.raft.remove_server(pid)
        if decision.promote or decision.remove:
            log.info("autopilot: %s", decision.sentence)
        elif decision.sentence != "nothing to do":
            self._note("autopilot", f"autopilot: {decision.sentence}")
        return decision

    async def _autopilot_loop(self) -> None:
        while not self._closed:
            self._autopilot_wake.clear()
            try:
                await asyncio.wait_for(self._autopilot_wake.wait(), self.autopilot_interval())
            except TimeoutError:
                pass
            try:
                await self.autopilot_once()
            except asyncio.CancelledError:
                raise
            except (NotLeaderError, LeadershipLostError, NoLeaderError) as exc:
                log.info("autopilot: stopped by a leadership change: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must survive
                log.exception("autopilot iteration failed")

    def health(self) -> tuple[ServerHealth, ...]:
        if self.raft.is_leader():
            return server_health(self.autopilot_view(), self.config.autopilot)[0]
        return ()


# ============================================================================ dispatcher

class _Dispatcher:
    """The server RPC port's handler: Raft notes, Cluster.* and the endpoints (run locally)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any:
        c = self.cluster
        if c.peer_policy is not None:
            why = c.peer_policy.denial(method, peer_tls=peer.tls, cert=peer.cert)
            if why is not None:
                log.warning("refused %s from %s: %s", method, peer.addr, why)
                raise PermissionDeniedError(f"Permission denied: {why}")
        if method == "Cluster.Hello":
            return c.handle_hello(args, peer)
        if method == "Cluster.Join":
            return await c.handle_join(args)
        if method == "Cluster.Info":
            return c.info().to_wire()
        if method in endpoints.ENDPOINTS:
            if c.server is None:
                raise NoLeaderError("server is starting")
            # The request's shape is checked against the endpoint's declaration inside
            # endpoints.call (a 400 naming the argument); anything else an endpoint raises
            # that is not a LictorError is a bug: the RPC server logs it and answers
            # InternalError (a 500), it is never passed off as the caller's mistake.
            return await endpoints.call(c.server, method, args)
        raise ValidationError(f"unknown RPC method {method!r}")

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None:
        policy = self.cluster.peer_policy
        if policy is not None:
            why = policy.denial(method, peer_tls=peer.tls, cert=peer.cert)
            if why is not None:
                raise RemoteProtocolError(f"refused {method} from {peer.addr}: {why}")  # drops it
        if method == RAFT_METHOD:
            self.cluster.transport.notify(method, args, peer)
        else:
            log.debug("ignoring note %r from %s", method, peer.addr)


def read_raft_timing_env(env: Mapping[str, str]) -> float | None:
    """``LICTOR_RAFT_TICK_INTERVAL`` (seconds, 0.005-1): a hidden knob for tests and benchmarks
    that shortens every Raft timeout (election = 10-20 ticks x raft_multiplier)."""
    raw = env.get("LICTOR_RAFT_TICK_INTERVAL")
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"LICTOR_RAFT_TICK_INTERVAL={raw!r}: expected seconds, e.g. 0.05") from None
    if not 0.005 <= v <= 1.0:
        raise ValueError(f"LICTOR_RAFT_TICK_INTERVAL={raw!r}: must be between 0.005 and 1")
    return v
