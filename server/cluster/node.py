"""The :class:`Cluster`: a server's place in its cluster. It owns the RPC server and client and
the Raft node, and composes formation (:mod:`.formation`), forwarding (:mod:`.forwarding`),
autopilot (:mod:`.autopilot`) and the RPC port's dispatcher (:mod:`.dispatch`)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.rpc import RPCClient, RPCServer
from lictor.common.tls import TLSManager
from lictor.server import endpoints
from lictor.server.cluster.autopilot import Autopilot, AutopilotConfig, AutopilotDecision, AutopilotView, ServerHealth
from lictor.server.cluster.dispatch import RPCDispatcher
from lictor.server.cluster.formation import FormationMixin, ServerInfo
from lictor.server.cluster.forwarding import Forwarder
from lictor.server.fsm import FSM
from lictor.server.raft.driver import RaftNode, RaftNodeConfig
from lictor.server.raft.messages import NodeID
from lictor.server.raft.transport import TCPRaftTransport, raft_id

__all__ = ["Cluster", "ClusterConfig", "read_raft_timing_env"]

log = logging.getLogger("lictor.cluster")


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


class Cluster(FormationMixin):
    """The server side of `lictor agent -server`: owns the RPC server and client, the Raft node,
    formation, forwarding and autopilot. Create it, hand `raft` to the `Server`, `attach` the
    server, then `start`."""

    def __init__(self, config: ClusterConfig, *, tls: TLSManager | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        """Paces formation, autopilot, forwarding, the leave drain and Raft's ticks."""
        self._rng = rng or random.Random()
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
            FSM(), self.transport, clock=self.clock)
        self.server: Any = None
        self.rpc_server = RPCServer(RPCDispatcher(self), host=config.bind[0], port=config.bind[1],
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
        self.bootstrapped_with: dict[NodeID, str] | None = None
        # LAN gossip (lictor.agent.membership) is how servers find each other: the RPC
        # addresses of the alive servers it knows are the Hello targets (a new one wakes
        # formation), and the node ids of the servers it reports as left are taken out of the
        # Raft configuration by the leader (decide_autopilot).
        self.gossip_servers: Callable[[], Iterable[str]] = lambda: []
        self.left_servers: Callable[[], Iterable[str]] = lambda: []
        self._wake = asyncio.Event()
        self.forwarder = Forwarder(self.raft, self.rpc, rpc_addr=config.rpc_addr,
                                   hold=config.forward_hold, local=self._call_here, clock=self.clock)
        self.autopilot = Autopilot(self.raft, config.autopilot, expected_servers=config.bootstrap_expect,
                                   name_of=self.name_of, left_servers=lambda: self.left_servers(),
                                   note=self._note, clock=self.clock, stored=self._stored_autopilot)
        self.raft.add_leadership_listener(self.autopilot.on_leadership)

    def _stored_autopilot(self, base: AutopilotConfig) -> AutopilotConfig:
        from lictor.server.autopilot_config import effective_autopilot

        return effective_autopilot(getattr(self.server, "store", None), base)  # type: ignore[no-any-return]

    async def _call_here(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return await endpoints.call(self.server, name, args)

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
        self._tasks.append(loop.create_task(self.autopilot.run(lambda: self._closed), name="autopilot"))

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

        clock = self.clock
        step = max(0.005, self.raft.config.tick_seconds)
        for _ in range(20):
            if done():
                return
            try:
                self.raft.campaign()
            except Exception:  # noqa: BLE001 - shut down meanwhile
                return
            until = clock.monotonic() + 0.25
            while clock.monotonic() < until:
                await clock.sleep(step)
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

    def wake(self) -> None:
        """Gossip saw a server change: run a formation round and an autopilot iteration now."""
        self._wake.set()
        self.autopilot.wake.set()

    # ---------------------------------------------------------------- forwarding

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run endpoint `name` where it must run (see :class:`.forwarding.Forwarder`)."""
        return await self.forwarder.call(name, args)

    # ---------------------------------------------------------------- autopilot

    @property
    def last_decision(self) -> AutopilotDecision | None:
        return self.autopilot.last_decision

    def autopilot_view(self) -> AutopilotView:
        return self.autopilot.view()

    def autopilot_interval(self) -> float:
        return self.autopilot.interval()

    async def autopilot_once(self) -> AutopilotDecision | None:
        return await self.autopilot.once()

    def health(self) -> tuple[ServerHealth, ...]:
        return self.autopilot.health()


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
