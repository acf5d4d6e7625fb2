"""Autopilot: the leader's periodic look at the servers (Consul's autopilot).

Every ``interval()`` (and at once on a gossip change of a server) the leader takes one
immutable :class:`AutopilotView` (configuration, replication progress, last contacts, the
servers gossip reports as left) and :func:`decide_autopilot` returns an
:class:`AutopilotDecision` (promote / remove, with a sentence saying why). The view and the
decision are pure values; :class:`Autopilot` only gathers the view and carries out the decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import LeadershipLostError, NoLeaderError, NotLeaderError
from lictor.server.raft.driver import RaftNode
from lictor.server.raft.messages import NodeID
from lictor.server.raft.transport import raft_id

__all__ = ["Autopilot", "AutopilotConfig", "AutopilotDecision", "AutopilotView", "ServerHealth",
           "ServerView", "decide_autopilot", "failure_tolerance", "server_health"]

log = logging.getLogger("lictor.cluster")



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



async def wait_event(event: asyncio.Event, timeout: float, clock: Clock) -> bool:
    """Wait until `event` is set (True) or `timeout` seconds of `clock` pass (False)."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        timer.cancel()
    return event.is_set()


class Autopilot:
    """Runs :func:`decide_autopilot` on the leader and carries out what it decides, on an
    injected ``clock`` (a test's ManualClock can drive it)."""

    def __init__(self, raft: RaftNode, config: AutopilotConfig, *, expected_servers: int,
                 name_of: Callable[[NodeID], tuple[str, str]],
                 left_servers: Callable[[], Iterable[str]],
                 note: Callable[[str, str], None],
                 clock: Clock | None = None,
                 stored: Callable[[AutopilotConfig], AutopilotConfig] | None = None) -> None:
        self.raft = raft
        self.config = config
        # the configuration an operator stored through Raft overrides the agent's own block
        # (server/autopilot_config.py); read on every use, so a PUT takes effect at the next pass
        self._stored = stored
        self.expected_servers = expected_servers
        self._name_of = name_of
        self._left_servers = left_servers
        self._note = note
        self._clock: Clock = clock or SystemClock()
        self.healthy_since: dict[NodeID, float] = {}
        self.leader_since = 0.0
        """When this server's current leadership began (set by :meth:`on_leadership`)."""
        self.last_decision: AutopilotDecision | None = None
        self.wake = asyncio.Event()

    def on_leadership(self, is_leader: bool) -> None:
        self.healthy_since = {}
        self.leader_since = self._clock.monotonic()

    def view(self) -> AutopilotView:
        raft = self.raft
        voters, learners = raft.members()
        progress = raft.progress() if raft.is_leader() else {}
        leader_id = raft.leader_id()
        now = self._clock.monotonic()
        servers = []
        for pid in sorted(voters | learners):
            name, nid = self._name_of(pid)
            if pid == raft.id:
                contact: float | None = 0.0 if raft.is_leader() else raft.last_contact()
            else:
                contact = raft.peer_last_contact(pid)
                if contact is not None and contact > now - self.leader_since:
                    contact = None  # heard only before this leadership began
            servers.append(ServerView(
                id=pid, name=name, node_id=nid, address=raft.transport.peer_address(pid) or "",
                voter=pid in voters, leader=pid == leader_id,
                match_index=progress.get(pid, raft.last_index() if pid == raft.id else 0),
                last_contact=contact))
        return AutopilotView(
            now=now, term=raft.term(), last_index=raft.last_index(),
            commit_index=raft.commit_index(), servers=tuple(servers),
            leader_since=self.leader_since, healthy_since=dict(self.healthy_since),
            expected_servers=self.expected_servers,
            heartbeat_interval=raft.config.tick_seconds * raft.config.heartbeat_ticks,
            left=frozenset(raft_id(nid) for nid in self._left_servers() if nid))

    def interval(self) -> float:
        ap = self.effective_config()
        return max(0.05, min(1.0, ap.server_stabilization_time / 4, 10 * self.raft.config.tick_seconds))

    async def once(self) -> AutopilotDecision | None:
        if not self.raft.is_leader():
            return None
        decision = decide_autopilot(self.view(), self.effective_config())
        self.healthy_since = dict(decision.healthy_since)
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

    async def run(self, closed: Callable[[], bool]) -> None:
        """The leader's loop: one iteration every ``interval()`` or when woken, until closed."""
        while not closed():
            self.wake.clear()
            await wait_event(self.wake, self.interval(), self._clock)
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except (NotLeaderError, LeadershipLostError, NoLeaderError) as exc:
                log.info("autopilot: stopped by a leadership change: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must survive
                log.exception("autopilot iteration failed")

    def effective_config(self) -> AutopilotConfig:
        """The agent's ``autopilot`` block, overridden by the one an operator stored through Raft."""
        return self._stored(self.config) if self._stored is not None else self.config

    def health(self) -> tuple[ServerHealth, ...]:
        if self.raft.is_leader():
            return server_health(self.view(), self.effective_config())[0]
        return ()
