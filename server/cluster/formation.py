"""Formation: how servers find each other and agree on a first Raft configuration; leaving.

::

    LAN gossip (agent/membership.py: retry_join is a gossip join list, default port 8301)
      | alive servers of our dc, from member tags (role=consul, dc, port, expect, id)
      v
    gossip_servers() + known --Cluster.Hello--> peers (every retry_interval; replies carry
                                                       the peer's view of every server)
    known servers --decide()--> start RaftNode
        has raft state      -> start as-is (bootstrap ignored)
        -bootstrap / expect 1 -> bootstrap {self}
        a peer knows a leader -> start empty, Cluster.Join at the leader (-> add_nonvoter)
        exactly `expect` stateless servers with the same expect and datacenter
                            -> every one bootstraps with the identical voter set

The protocol (``Cluster.Hello``/``Join``/``Info``) and the leave sequence are described in
:mod:`lictor.server.cluster`. :func:`bootstrap_voters` is the pure decision;
:class:`FormationMixin` is the part of :class:`~lictor.server.cluster.node.Cluster` that runs it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import ssl as _ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lictor.common.clock import Clock
from lictor.common.errors import (
    LeadershipLostError,
    LictorError,
    NoLeaderError,
    NotLeaderError,
    RemoteProtocolError,
    TLSError,
    TransportError,
    ValidationError,
)
from lictor.common.rpc import PeerInfo, RPCClient
from lictor.common.hostport import parse_host_port
from lictor.common.rpc.conn import format_addr
from lictor.server.cluster.autopilot import wait_event
from lictor.server.raft.driver import RaftNode
from lictor.server.raft.messages import NodeID
from lictor.server.raft.transport import raft_id

__all__ = ["DEFAULT_SERF_LAN_PORT", "LEAVE_DRAIN_TIME", "FormationMixin", "ProbeVerdict", "RPCProbe",
           "ServerInfo", "bootstrap_voters", "parse_join_address", "probe_rpc_port"]

log = logging.getLogger("lictor.cluster")

DEFAULT_SERF_LAN_PORT = 8301
"""The port of a ``retry_join`` entry that names none (a LAN gossip address, as Consul's)."""
LEAVE_DRAIN_TIME = 5.0
"""How long a leaving voter waits to be out of the Raft configuration (Consul's leave_drain_time)."""


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
    return parse_host_port(addr)


def parse_join_address(text: str, default_port: int = DEFAULT_SERF_LAN_PORT) -> tuple[str, int]:
    """A retry_join entry, i.e. a LAN gossip address: ``host``, ``host:port``, ``[v6]``,
    ``[v6]:port`` or a bare IPv6 address; host may be a DNS name; the port defaults to 8301.
    ``ValueError`` with a readable message otherwise (lictor.common.hostport)."""
    return parse_host_port(text, default_port=default_port, what="retry_join address")


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


class FormationMixin:
    """Formation and leaving, as part of :class:`~lictor.server.cluster.node.Cluster` (which
    owns the state named below)."""

    config: Any
    clock: Clock
    _rng: random.Random
    id: NodeID
    raft: RaftNode
    rpc: RPCClient
    known: dict[str, ServerInfo]
    members_of_leader: frozenset[str]
    leaving: bool
    _closed: bool
    _said: dict[str, str]
    _wake: asyncio.Event
    gossip_servers: Callable[[], Iterable[str]]
    left_servers: Callable[[], Iterable[str]]

    def info(self) -> ServerInfo:
        raise NotImplementedError

    def name_of(self, pid: NodeID) -> tuple[str, str]:
        raise NotImplementedError

    async def _start_raft(self, voters: dict[NodeID, str]) -> None:
        raise NotImplementedError

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
            await wait_event(self._wake, delay * self._rng.uniform(0.9, 1.1), self.clock)

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
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline and not self._closed:
            voters, learners = raft.members()
            out = self.id not in voters and self.id not in learners  # applied here already
            if not out:
                members = await self._leader_members()
                out = (members is not None and self.config.node_id not in members
                       and str(self.id) not in members)
            if out:
                log.info("leave: removed from the raft configuration")
                return True
            await self.clock.sleep(0.1)
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
