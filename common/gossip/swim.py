"""The sans-I/O SWIM core, with Lifeguard's refinements (as hashicorp/memberlist).

Inputs are plain method calls that each take ``now`` (seconds, any monotonic origin)::

    tick(now)                         run every timer that is due
    receive(addr, packet, now)        a UDP packet body (bytes) or decoded messages
    receive_stream(addr, data, now)   a TCP request (push-pull, fallback ping) -> reply bytes | None
    join(addrs, now)                  push-pull with these addresses (StreamRequest outputs)
    leave(now)                        broadcast our graceful leave; then watch ``leave_done``
    set_tags(tags, now)               new metadata: higher incarnation, re-announced
    broadcast_user(key, payload, now) gossip an application message (``Ready.user`` elsewhere)
    force_leave(name, now)            a failed member is to be treated as left (agent's force-leave)

Hooks for the agent (left for the agent integration, now used by it): ``ack_payload`` is put on
every ack we send (Serf's coordinates ride there); each direct probe that gets its ack yields
a ``ProbeAck(node, rtt, payload)`` in ``Ready.acks``.

Outputs accumulate until ``ready()`` drains them as one ``Ready`` batch (as Raft's Ready):
packets to send over UDP, stream requests to carry over TCP, member events. ``next_deadline()``
says when ``tick`` must next run. No sockets, no clock reads, no global random: the ``rng`` is
injected, so a seeded simulation replays exactly.

The protocol, per member::

    every probe_interval * (awareness+1):
        ping the next member of a shuffled round-robin order (a SUSPECT target also gets the
        suspicion, so it can refute at once)
        no ack within probe_timeout * (awareness+1):
            ping-req through indirect_checks random members (they NACK if the target is silent)
            + a TCP fallback ping (StreamRequest, kind PING) for the driver
        still no ack at the end of the interval: suspect it; awareness += missed nacks (or 1)
    every gossip_interval: piggy-backed broadcasts to gossip_nodes random members
    every push_pull_interval (scaled for n > 32): full state exchange with one random member
    every reconnect_interval: push-pull with one random *failed* member (heals partitions)
    suspicion timeouts (suspicion.py) turn SUSPECT into DEAD; dead/left members are forgotten
    after gossip_to_the_dead_time.

Every outgoing packet (ping, ack, gossip) is filled with queued broadcasts up to
``udp_buffer_size`` bytes (broadcast.py).
"""

from __future__ import annotations

import enum
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random  # only the type of the injected rng: no module-level randomness here

from lictor.common.gossip.awareness import Awareness
from lictor.common.gossip.broadcast import BroadcastQueue
from lictor.common.gossip.members import (
    Member,
    MemberState,
    NodeState,
    Verdict,
    judge_alive,
    judge_dead,
    judge_suspect,
)
from lictor.common.gossip.messages import (
    MAX_PACKET_SIZE,
    MAX_STREAM_SIZE,
    Ack,
    Address,
    Alive,
    Dead,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
    WireState,
    array_header,
    decode_packet,
    encode_message,
    encode_packet,
    validate_tags,
)
from lictor.common.gossip.suspicion import Suspicion, suspicion_timeout

__all__ = [
    "EventKind",
    "MemberEvent",
    "OutPacket",
    "ProbeAck",
    "Ready",
    "StreamKind",
    "StreamRequest",
    "SwimConfig",
    "SwimCore",
]

_PACKET_OVERHEAD = 3  # the msgpack array header of a compound packet
MAX_USER_REPLAY = 64  # application messages kept for push-pull replay (SwimConfig.user_replay_time)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwimConfig:
    """Timings and limits; defaults are memberlist's ``DefaultLANConfig``."""

    name: str
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    retransmit_mult: int = 4
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead_time: float = 30.0
    push_pull_interval: float = 30.0
    awareness_max_multiplier: int = 8
    dead_node_reclaim_time: float = 0.0
    reconnect_interval: float = 30.0  # Serf's: retry failed members (heals partitions)
    reconnect_timeout: float = 72 * 3600.0
    udp_buffer_size: int = 1400
    tcp_fallback: bool = True
    initial_incarnation: int = 0
    max_broadcast_queue: int = 4096
    # Serf carries recent user events in push-pull, so a member that missed a broadcast (its
    # retransmits ran out while it was restarting) still gets it: application messages broadcast
    # within this many seconds (at most MAX_USER_REPLAY of them), and after the peer became alive,
    # ride along on the periodic push-pulls we start. Joins and replies carry none.
    user_replay_time: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout <= self.probe_interval:
            raise ValueError("need 0 < probe_timeout <= probe_interval")
        if self.gossip_interval <= 0 or self.push_pull_interval <= 0:
            raise ValueError("intervals must be positive")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion multipliers must be at least 1")
        if self.udp_buffer_size < 512:
            raise ValueError("udp_buffer_size must be at least 512")

    @classmethod
    def lan(cls, name: str, **overrides: object) -> SwimConfig:
        return cls(name=name, **overrides)  # type: ignore[arg-type]

    @classmethod
    def wan(cls, name: str, **overrides: object) -> SwimConfig:
        base: dict[str, object] = dict(probe_interval=5.0, probe_timeout=3.0, suspicion_mult=6,
                                       gossip_interval=0.5, gossip_nodes=4,
                                       gossip_to_the_dead_time=60.0, push_pull_interval=60.0)
        base.update(overrides)
        return cls(name=name, **base)  # type: ignore[arg-type]

    @classmethod
    def fast(cls, name: str, **overrides: object) -> SwimConfig:
        """For tests over real loopback sockets: failures are detected in about 1-2 s."""
        base: dict[str, object] = dict(probe_interval=0.2, probe_timeout=0.1, suspicion_mult=3,
                                       suspicion_max_timeout_mult=3, gossip_interval=0.05,
                                       gossip_to_the_dead_time=3.0, push_pull_interval=2.0,
                                       reconnect_interval=1.0, user_replay_time=10.0)
        base.update(overrides)
        return cls(name=name, **base)  # type: ignore[arg-type]


class EventKind(enum.Enum):
    JOIN = "join"        # a member we did not know
    UPDATE = "update"    # an alive member changed tags or address
    SUSPECT = "suspect"
    FAILED = "failed"
    LEAVE = "leave"      # graceful
    ALIVE = "alive"      # a suspect, failed or left member is alive again (refuted or rejoined)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEvent:
    kind: EventKind
    member: Member


@dataclass(frozen=True, slots=True, kw_only=True)
class OutPacket:
    """Send ``payload`` (a packet body; the driver adds the envelope/encryption) over UDP."""

    addr: Address
    payload: bytes


class StreamKind(enum.Enum):
    PUSH_PULL = "push-pull"  # send payload, read the peer's state, feed it to receive()
    PING = "ping"            # TCP fallback probe: send payload, feed the reply (an ack) to receive()


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRequest:
    kind: StreamKind
    addr: Address
    payload: bytes
    join: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeAck:
    """A direct probe of ``node`` was acked after ``rtt`` seconds with ``payload``."""

    node: str
    rtt: float
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the driver; carry it out in order, fields are independent.

    ``packets``: send each over UDP (best effort: losing some is normal).
    ``streams``: open a TCP connection per request, send ``payload``, read one reply and pass
    it to ``receive(addr, reply, now)``; on failure just drop it (the core times out alone).
    ``events``: hand to the application in order.
    """

    packets: tuple[OutPacket, ...] = ()
    streams: tuple[StreamRequest, ...] = ()
    events: tuple[MemberEvent, ...] = ()
    user: tuple[bytes, ...] = ()    # application messages received (each once per packet)
    acks: tuple[ProbeAck, ...] = ()  # RTT samples of direct probes


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    incarnation: int
    direct_deadline: float
    end: float
    start: float = 0.0
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    orig_seq: int
    reply_to: Address
    nack: bool
    deadline: float


@dataclass(slots=True)
class _Counters:
    packets_sent: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    streams_sent: int = 0
    stale_acks: int = 0
    wrong_target: int = 0
    conflicts: int = 0
    refutations: int = 0
    probes: int = 0
    probes_failed: int = 0
    extra: Counter[str] = field(default_factory=Counter)


class SwimCore:
    """One member's SWIM state machine. Not thread-safe; one driver calls it."""

    def __init__(self, *, config: SwimConfig, addr: Address, rng: random.Random, now: float,
                 tags: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._rng = rng
        self._local = NodeState(name=config.name, addr=addr, tags=validate_tags(tags or {}),
                                incarnation=config.initial_incarnation, state_change=now)
        self._members: dict[str, NodeState] = {config.name: self._local}
        self._nodes: list[str] = []  # every member but us: probe order and random picks
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._gone: set[str] = set()  # dead or left, awaiting reaping
        self._failed: dict[str, tuple[Address, float]] = {}  # for reconnects
        self._seq = rng.randrange(1 << 32)
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._broadcasts = BroadcastQueue(retransmit_mult=config.retransmit_mult,
                                          max_depth=config.max_broadcast_queue)
        self._leaving = False
        self._counters = _Counters()
        self._out_packets: list[OutPacket] = []
        self._out_streams: list[StreamRequest] = []
        self._out_events: list[MemberEvent] = []
        self._out_user: list[bytes] = []
        self._recent_user: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._out_acks: list[ProbeAck] = []
        self.ack_payload = b""  # put on every ack we send (at most MAX_ACK_PAYLOAD bytes)
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull = now + rng.uniform(0, config.push_pull_interval)
        self._next_reconnect = now + rng.uniform(0, config.reconnect_interval)
        self._now = now
        self._announce_self()

    # -- queries ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._local.name

    @property
    def addr(self) -> Address:
        return self._local.addr

    @property
    def incarnation(self) -> int:
        return self._local.incarnation

    @property
    def awareness(self) -> int:
        return self._awareness.score

    @property
    def leave_done(self) -> bool:
        """True once our leave broadcast has been fully gossiped (or nobody was there to tell)."""
        if not self._leaving:
            return False
        return "leave" in self._broadcasts.finished or self.num_alive() <= 1

    @property
    def counters(self) -> dict[str, int]:
        c = self._counters
        out = {k: getattr(c, k) for k in c.__dataclass_fields__ if k != "extra"}
        out.update(c.extra)
        out["awareness"] = self._awareness.score
        out["broadcast_queue"] = len(self._broadcasts)
        return out

    def members(self) -> list[Member]:
        """Every member we know (us included), in name order, with its state."""
        return [self._members[n].snapshot() for n in sorted(self._members)]

    def member_states(self) -> dict[str, MemberState]:
        """Name -> state of every member we know (us included); cheaper than ``members()``."""
        return {n: st.state for n, st in self._members.items()}

    def member(self, name: str) -> Member | None:
        st = self._members.get(name)
        return None if st is None else st.snapshot()

    def num_members(self) -> int:
        return len(self._members)

    def num_alive(self) -> int:
        return sum(1 for m in self._members.values() if not m.state.gone)

    def suspicion_of(self, name: str) -> Suspicion | None:
        return self._suspicions.get(name)

    def next_deadline(self) -> float:
        """The earliest time at which ``tick`` has work to do."""
        t = min(self._next_gossip, self._next_push_pull, self._next_reconnect)
        if self._probe is not None:
            t = min(t, self._probe.end)
            if not self._probe.indirect_sent:
                t = min(t, self._probe.direct_deadline)
        elif not self._leaving:
            t = min(t, self._next_probe)
        for r in self._relays.values():
            t = min(t, r.deadline)
        for s in self._suspicions.values():
            t = min(t, s.deadline())
        dead_time = self.config.gossip_to_the_dead_time
        for name in self._gone:
            t = min(t, self._members[name].state_change + dead_time)
        return t

    def has_ready(self) -> bool:
        return bool(self._out_packets or self._out_streams or self._out_events or self._out_user
                    or self._out_acks)

    def ready(self) -> Ready:
        r = Ready(packets=tuple(self._out_packets), streams=tuple(self._out_streams),
                  events=tuple(self._out_events), user=tuple(self._out_user),
                  acks=tuple(self._out_acks))
        self._out_packets.clear()
        self._out_streams.clear()
        self._out_events.clear()
        self._out_user.clear()
        self._out_acks.clear()
        return r

    # -- inputs -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._now = now
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.direct_deadline:
                self._probe_indirect(probe)
            if now >= probe.end:
                self._probe_failed(probe)
        if self._probe is None and not self._leaving and now >= self._next_probe:
            self._start_probe()
        for seq in [s for s, r in self._relays.items() if r.deadline <= now]:
            r = self._relays.pop(seq)
            if r.nack:
                self._send(r.reply_to, [Nack(seq=r.orig_seq)])
        for name in [n for n, s in self._suspicions.items() if s.deadline() <= now]:
            st = self._members[name]
            self._on_dead(Dead(incarnation=st.incarnation, node=name, sender=self.name))
        if now >= self._next_gossip:
            self._gossip()
            self._next_gossip += self.config.gossip_interval
            if self._next_gossip <= now:  # we were not ticked for a while: do not catch up
                self._next_gossip = now + self.config.gossip_interval
        if now >= self._next_push_pull:
            self._periodic_push_pull()
            self._next_push_pull = now + self._push_pull_interval()
        if now >= self._next_reconnect:
            self._reconnect()
            self._next_reconnect = now + self.config.reconnect_interval
        if self._gone:
            self._reap()

    def receive(self, addr: Address, packet: bytes | Sequence[Message], now: float, *,
                stream_reply: bool = False) -> None:
        """Handle a UDP packet from ``addr`` (or, with ``stream_reply``, the TCP reply to one of
        our stream requests, which may be as large as a stream). Bytes are decoded first and may
        raise ``GossipCodecError`` (nothing is changed then); the caller counts and drops it."""
        self._now = now
        msgs = decode_packet(packet, max_size=MAX_STREAM_SIZE if stream_reply else MAX_PACKET_SIZE) \
            if isinstance(packet, (bytes, bytearray, memoryview)) else packet
        for msg in msgs:
            self._handle(addr, msg)

    def receive_stream(self, addr: Address, data: bytes | Sequence[Message],
                       now: float) -> bytes | None:
        """Handle a request received over TCP; return the reply to write back, if any."""
        self._now = now
        msgs = decode_packet(data, max_size=MAX_STREAM_SIZE) \
            if isinstance(data, (bytes, bytearray, memoryview)) else data
        reply: bytes | None = None
        for msg in msgs:
            if isinstance(msg, PushPull):
                reply = self.push_pull_payload(join=False)
                self._merge_remote_state(msg.states)
            elif isinstance(msg, Ping):
                if msg.target and msg.target != self.name:
                    self._counters.wrong_target += 1
                else:
                    reply = encode_packet([encode_message(Ack(seq=msg.seq,
                                                              payload=self.ack_payload))])
            else:
                self._handle(addr, msg)
        return reply

    def join(self, addrs: Iterable[Address], now: float) -> None:
        """Ask for a push-pull (join) with each address; the driver reports results through
        ``receive``."""
        self._now = now
        payload = self.push_pull_payload(join=True)
        for a in addrs:
            self._stream(StreamRequest(kind=StreamKind.PUSH_PULL, addr=a, payload=payload,
                                       join=True))

    def leave(self, now: float) -> None:
        """Start a graceful leave: broadcast DEAD(from=us). Probing stops; gossip goes on until
        the driver stops us (after ``leave_done`` or a timeout)."""
        self._now = now
        if self._leaving:
            return
        self._leaving = True
        self._probe = None
        msg = Dead(incarnation=self._local.incarnation, node=self.name, sender=self.name)
        self._local.state = MemberState.LEFT
        self._local.state_change = now
        self._broadcasts.queue(self.name, encode_message(msg), notify="leave")

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace our tags (validated: ValueError if too large) and re-announce ourselves."""
        self._now = now
        self._local.tags = validate_tags(tags)
        self._local.incarnation += 1
        self._announce_self()

    def broadcast_user(self, key: str, payload: bytes, now: float) -> None:
        """Gossip an application message to every member (best effort, retransmit-limited).
        ``key`` identifies it in the queue: a newer message with the same key replaces it."""
        self._now = now
        self._broadcasts.queue("user:" + key, encode_message(User(payload=bytes(payload))))
        self._recent_user.pop(key, None)
        self._recent_user[key] = (now, bytes(payload))
        while len(self._recent_user) > MAX_USER_REPLAY:
            self._recent_user.popitem(last=False)

    def force_leave(self, name: str, now: float) -> bool:
        """Treat a failed (or suspect) member as left: no more reconnect attempts, a LEAVE
        event. False if it is unknown, alive, already left, or us. The agent spreads the
        intent itself (a user message), since others may already have forgotten the member."""
        self._now = now
        st = self._members.get(name)
        self._failed.pop(name, None)
        if st is None or name == self.name or st.state in (MemberState.ALIVE, MemberState.LEFT):
            return False
        self._suspicions.pop(name, None)
        st.state = MemberState.LEFT
        st.state_change = now
        self._gone.add(name)
        self._event(EventKind.LEAVE, st)
        return True

    def push_pull_payload(self, *, join: bool, replay_to: NodeState | None = None) -> bytes:
        """Our full state. With ``replay_to`` (a periodic push-pull we start with that member)
        also the application messages broadcast within ``user_replay_time`` *after* it became
        alive, as User messages after the PushPull: it may have missed them while restarting,
        and it must not get ones from before it was here (Consul joins ignore old events)."""
        states = tuple(
            PushNodeState(name=m.name, addr=m.addr, tags=m.tags, incarnation=m.incarnation,
                          state=m.state.wire)
            for m in self._members.values())
        parts = [encode_message(PushPull(join=join, states=states))]
        if replay_to is not None and not join:
            since = max(self._now - self.config.user_replay_time, replay_to.state_change)
            parts += [encode_message(User(payload=p)) for t, p in self._recent_user.values()
                      if t >= since]
        return encode_packet(parts)

    # -- message handling ---------------------------------------------------------------------

    def _handle(self, addr: Address, msg: Message) -> None:
        match msg:
            case Ping():
                if msg.target and msg.target != self.name:
                    self._counters.wrong_target += 1
                    return
                self._send(addr, [Ack(seq=msg.seq, payload=self.ack_payload)])
            case IndirectPing():
                self._relay(addr, msg)
            case Ack():
                self._on_ack(msg)
            case Nack():
                if self._probe is not None and self._probe.seq == msg.seq:
                    self._probe.nacks += 1
                else:
                    self._counters.stale_acks += 1
            case Alive():
                self._on_alive(msg)
            case Suspect():
                self._on_suspect(msg)
            case Dead():
                self._on_dead(msg)
            case PushPull():
                # a push-pull reply to one of our stream requests
                self._merge_remote_state(msg.states)
            case User():
                self._out_user.append(msg.payload)

    def _on_ack(self, msg: Ack) -> None:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            if not probe.indirect_sent:
                self._awareness.apply_delta(-1)
                self._out_acks.append(ProbeAck(node=probe.target, rtt=self._now - probe.start,
                                               payload=msg.payload))
            self._probe = None
            return
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._send(relay.reply_to, [Ack(seq=relay.orig_seq)])
            return
        self._counters.stale_acks += 1

    def _relay(self, addr: Address, msg: IndirectPing) -> None:
        seq = self._next_seq()
        self._relays[seq] = _Relay(orig_seq=msg.seq, reply_to=addr, nack=msg.nack,
                                   deadline=self._now + self.config.probe_timeout)
        self._send(msg.target_addr, [Ping(seq=seq, target=msg.target, source=self.name,
                                          source_addr=self.addr)])

    def _on_alive(self, msg: Alive) -> None:
        is_self = msg.node == self.name
        current = self._members.get(msg.node)
        verdict = judge_alive(current, msg, is_self=is_self, now=self._now,
                              reclaim_time=self.config.dead_node_reclaim_time)
        if verdict is Verdict.IGNORE:
            return
        if verdict is Verdict.CONFLICT:
            self._counters.conflicts += 1
            return
        if verdict is Verdict.REFUTE:
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        tags = dict(msg.tags)
        if current is None:
            st = NodeState(name=msg.node, addr=msg.addr, tags=tags, incarnation=msg.incarnation,
                           state_change=self._now)
            self._members[msg.node] = st
            self._insert_node(msg.node)
            self._failed.pop(msg.node, None)
            self._broadcast(msg.node, msg)
            self._event(EventKind.JOIN, st)
            return
        old_state, changed = current.state, (current.addr != msg.addr or current.tags != tags)
        current.incarnation = msg.incarnation
        current.addr = msg.addr
        current.tags = tags
        current.state = MemberState.ALIVE
        if old_state is not MemberState.ALIVE:
            current.state_change = self._now
        self._suspicions.pop(msg.node, None)
        self._gone.discard(msg.node)
        self._failed.pop(msg.node, None)
        self._broadcast(msg.node, msg)
        if old_state is not MemberState.ALIVE:
            self._event(EventKind.ALIVE, current)
        elif changed:
            self._event(EventKind.UPDATE, current)

    def _on_suspect(self, msg: Suspect) -> None:
        current = self._members.get(msg.node)
        is_self = msg.node == self.name
        timer = self._suspicions.get(msg.node)
        verdict = judge_suspect(current, msg, is_self=is_self, timer_running=timer is not None)
        if verdict is Verdict.CONFIRM:
            assert timer is not None
            if timer.confirm(msg.sender):
                self._broadcast(msg.node, msg)
            return
        if verdict is Verdict.REFUTE:
            if not self._leaving:
                self._refute(msg.incarnation)
            return
        if verdict is not Verdict.APPLY:
            return
        assert current is not None
        current.incarnation = msg.incarnation
        current.state = MemberState.SUSPECT
        current.state_change = self._now
        self._broadcast(msg.node, msg)
        cfg = self.config
        n = len(self._members)
        k = cfg.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        self._suspicions[msg.node] = Suspicion(
            sender=msg.sender, k=k, min_timeout=min_t,
            max_timeout=cfg.suspicion_max_timeout_mult * min_t, start=self._now)
        self._event(EventKind.SUSPECT, current)

    def _on_dead(self, msg: Dead) -> None:
        current = self._members.get(msg.node)
        is_self = msg.node == self.name
        verdict = judge_dead(current, msg, is_self=is_self, leaving=self._leaving)
        if verdict is Verdict.REFUTE:
            self._refute(msg.incarnation)
            return
        if verdict is not Verdict.APPLY:
            return
        assert current is not None
        left = msg.sender == msg.node
        if not left and current.state is MemberState.ALIVE and not is_self:
            # Someone else's verdict about a member we still believe alive (normally a Suspect
            # precedes it, so our timer would be running). Stale DEADs arrive when a partition
            # heals: the isolated side declared everybody dead. Take it as a suspicion the
            # member can refute rather than kill a healthy member (agent integration, issue 4).
            self._counters.extra["dead_as_suspect"] += 1
            self._on_suspect(Suspect(incarnation=msg.incarnation, node=msg.node, sender=msg.sender))
            if (fresh := self._suspicions.get(msg.node)) is not None:
                fresh.verdict_heard()
            return
        timer = self._suspicions.get(msg.node)
        if not left and not is_self and timer is not None and current.state is MemberState.SUSPECT:
            # Someone else's timer ran out before ours. If our suspicion has run for
            # min_timeout the member had its chance to refute: apply the verdict. If it is
            # younger (a healed partition delivers the isolated side's stale Suspect and Dead
            # back to back) let it run to min_timeout first, so a refutation can still arrive.
            timer.confirm(msg.sender)
            timer.verdict_heard()
            if timer.deadline() > self._now:
                self._counters.extra["dead_deferred"] += 1
                return
        self._suspicions.pop(msg.node, None)
        current.incarnation = msg.incarnation
        current.state = MemberState.LEFT if left else MemberState.DEAD
        current.state_change = self._now
        self._broadcast(msg.node, msg)
        if is_self:
            return
        self._gone.add(msg.node)
        if not left:
            self._failed[msg.node] = (current.addr, self._now)
        self._event(EventKind.LEAVE if left else EventKind.FAILED, current)

    def _merge_remote_state(self, states: Iterable[PushNodeState]) -> None:
        for s in states:
            if s.state is WireState.ALIVE:
                self._on_alive(Alive(incarnation=s.incarnation, node=s.name, addr=s.addr,
                                     tags=s.tags))
            elif s.state is WireState.LEFT:
                self._on_dead(Dead(incarnation=s.incarnation, node=s.name, sender=s.name))
            else:
                # memberlist: a remote DEAD is only a suspicion here; let the member refute.
                self._on_suspect(Suspect(incarnation=s.incarnation, node=s.name,
                                         sender=self.name))

    def _refute(self, accused_incarnation: int) -> None:
        self._counters.refutations += 1
        self._local.incarnation = max(self._local.incarnation, accused_incarnation) + 1
        self._awareness.apply_delta(1)
        self._announce_self()

    def _announce_self(self) -> None:
        loc = self._local
        self._broadcast(loc.name, Alive(incarnation=loc.incarnation, node=loc.name,
                                        addr=loc.addr, tags=dict(loc.tags)))

    # -- probing ------------------------------------------------------------------------------

    def _start_probe(self) -> None:
        cfg = self.config
        target = self._next_probe_target()
        self._next_probe = self._now + self._awareness.scale(cfg.probe_interval)
        if target is None:
            return
        self._counters.probes += 1
        seq = self._next_seq()
        self._probe = _Probe(
            seq=seq, target=target.name, incarnation=target.incarnation,
            direct_deadline=self._now + self._awareness.scale(cfg.probe_timeout),
            end=self._next_probe, start=self._now)
        msgs: list[Message] = [Ping(seq=seq, target=target.name, source=self.name,
                                    source_addr=self.addr)]
        if target.state is MemberState.SUSPECT:
            msgs.append(Suspect(incarnation=target.incarnation, node=target.name,
                                sender=self.name))
        self._send(target.addr, msgs)

    def _next_probe_target(self) -> NodeState | None:
        checked = 0
        while checked < len(self._nodes):
            if self._probe_index >= len(self._nodes):
                self._probe_index = 0
                self._rng.shuffle(self._nodes)
            name = self._nodes[self._probe_index]
            self._probe_index += 1
            checked += 1
            st = self._members.get(name)
            if st is not None and not st.state.gone:
                return st
        return None

    def _probe_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        target = self._members.get(probe.target)
        if target is None:
            return
        peers = self._random_members(self.config.indirect_checks,
                                     lambda m: m.state is MemberState.ALIVE
                                     and m.name != probe.target)
        req = IndirectPing(seq=probe.seq, target=target.name, target_addr=target.addr, nack=True,
                           source=self.name, source_addr=self.addr)
        for p in peers:
            self._send(p.addr, [req])
        probe.expected_nacks = len(peers)
        if self.config.tcp_fallback:
            ping = Ping(seq=probe.seq, target=target.name, source=self.name, source_addr=self.addr)
            self._stream(StreamRequest(kind=StreamKind.PING, addr=target.addr,
                                       payload=encode_packet([encode_message(ping)])))

    def _probe_failed(self, probe: _Probe) -> None:
        self._probe = None
        self._counters.probes_failed += 1
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply_delta(1)
        self._on_suspect(Suspect(incarnation=probe.incarnation, node=probe.target,
                                 sender=self.name))

    # -- gossip, push-pull, reconnect, reaping --------------------------------------------------

    def _gossip(self) -> None:
        dead_time = self.config.gossip_to_the_dead_time
        now = self._now

        def ok(m: NodeState) -> bool:
            if m.state is MemberState.LEFT:
                return False
            return m.state is not MemberState.DEAD or now - m.state_change < dead_time

        if not self._broadcasts:
            return
        for m in self._random_members(self.config.gossip_nodes, ok):
            parts = self._broadcasts.get_broadcasts(overhead=_PACKET_OVERHEAD,
                                                    limit=self.config.udp_buffer_size,
                                                    num_nodes=len(self._members))
            if not parts:
                return
            self._emit(m.addr, parts)

    def _push_pull_interval(self) -> float:
        n = len(self._members)
        base = self.config.push_pull_interval
        if n <= 32:
            return base
        return base * (math.ceil(math.log2(n) - math.log2(32)) + 1)

    def _periodic_push_pull(self) -> None:
        if self._leaving:
            return
        peers = self._random_members(1, lambda m: m.state is MemberState.ALIVE)
        if peers:
            self._stream(StreamRequest(kind=StreamKind.PUSH_PULL, addr=peers[0].addr,
                                       payload=self.push_pull_payload(join=False, replay_to=peers[0])))

    def _reconnect(self) -> None:
        if self._leaving or not self._failed:
            return
        horizon = self._now - self.config.reconnect_timeout
        for name in [n for n, (_, t) in self._failed.items() if t < horizon]:
            del self._failed[name]
        if not self._failed:
            return
        name = self._rng.choice(sorted(self._failed))
        addr, _ = self._failed[name]
        self._stream(StreamRequest(kind=StreamKind.PUSH_PULL, addr=addr,
                                   payload=self.push_pull_payload(join=True), join=True))

    def _reap(self) -> None:
        dead_time = self.config.gossip_to_the_dead_time
        reaped = [n for n in self._gone
                  if self._members[n].state_change + dead_time <= self._now]
        if not reaped:
            return
        for name in reaped:
            self._gone.discard(name)
            del self._members[name]
        gone = set(reaped)
        cur = self._nodes[self._probe_index] if self._probe_index < len(self._nodes) else None
        self._nodes = [n for n in self._nodes if n not in gone]
        self._probe_index = self._nodes.index(cur) if cur in self._nodes else len(self._nodes)

    # -- helpers ------------------------------------------------------------------------------

    def _insert_node(self, name: str) -> None:
        """Add at a random position of the probe order, so new members get probed soon."""
        self._nodes.append(name)
        i = self._rng.randrange(len(self._nodes))
        self._nodes[i], self._nodes[-1] = self._nodes[-1], self._nodes[i]

    def _random_members(self, k: int,
                        accept: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to ``k`` distinct random members (never us) for which ``accept(member)``."""
        nodes = self._nodes
        n = len(nodes)
        out: list[NodeState] = []
        if n == 0 or k <= 0:
            return out
        seen: set[str] = set()
        for _ in range(3 * n):
            if len(out) >= k:
                break
            name = nodes[self._rng.randrange(n)]
            if name in seen:
                continue
            seen.add(name)
            st = self._members.get(name)
            if st is not None and accept(st):
                out.append(st)
        return out

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _broadcast(self, node: str, msg: Message) -> None:
        self._broadcasts.queue(node, encode_message(msg))

    def _send(self, addr: Address, msgs: Sequence[Message]) -> None:
        parts = [encode_message(m) for m in msgs]
        used = sum(len(p) for p in parts)
        parts += self._broadcasts.get_broadcasts(
            overhead=_PACKET_OVERHEAD + used, limit=self.config.udp_buffer_size,
            num_nodes=len(self._members))
        self._emit(addr, parts)

    def _emit(self, addr: Address, parts: list[bytes]) -> None:
        payload = array_header(len(parts)) + b"".join(parts)
        c = self._counters
        c.packets_sent += 1
        c.messages_sent += len(parts)
        c.bytes_sent += len(payload)
        self._out_packets.append(OutPacket(addr=addr, payload=payload))

    def _stream(self, req: StreamRequest) -> None:
        self._counters.streams_sent += 1
        self._out_streams.append(req)

    def _event(self, kind: EventKind, st: NodeState) -> None:
        self._out_events.append(MemberEvent(kind=kind, member=st.snapshot()))

