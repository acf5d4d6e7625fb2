"""``SimNetwork``: many ``SwimCore`` members in one process on a simulated network (a test kit).

A discrete-event simulation: a heap of timed deliveries and wake-ups, a simulated clock, one
seeded ``random.Random`` for the network and one per member. UDP packets are lost with
probability ``loss`` and delayed uniformly in ``delay``; TCP streams (push-pull, fallback ping)
are reliable but delayed, and both are blocked by crashes and partitions. Packets go through the
real codec (bytes in, bytes out). The same seed replays the same run exactly.

Used by ``tests/sim`` and ``bench/gossip``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lictor.common.gossip.keyring import DecryptError, Keyring
from lictor.common.gossip.members import Member, MemberState
from lictor.common.gossip.messages import Address, GossipCodecError
from lictor.common.gossip.swim import MemberEvent, StreamKind, SwimConfig, SwimCore

__all__ = ["SimEvent", "SimMember", "SimNetwork"]


@dataclass(frozen=True, slots=True)
class SimEvent:
    time: float
    observer: str
    event: MemberEvent


@dataclass(slots=True)
class SimMember:
    name: str
    addr: Address
    core: SwimCore
    crashed: bool = False
    crashed_at: float | None = None
    scheduled: float | None = None
    group: int = 0
    keyring: Keyring | None = None
    """Seals what this member sends and opens what it receives (as the driver does); None:
    plaintext."""


@dataclass(slots=True)
class _Stats:
    packets: int = 0
    lost: int = 0
    blocked: int = 0
    streams: int = 0
    decode_errors: int = 0
    decrypt_errors: int = 0
    max_packet: int = 0
    by_member: dict[str, int] = field(default_factory=dict)


class SimNetwork:
    def __init__(self, *, seed: int, loss: float = 0.0,
                 delay: tuple[float, float] = (0.0005, 0.005),
                 config: Callable[[str], SwimConfig] = SwimConfig.lan,
                 record_events: bool = True) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.loss = loss
        self.delay = delay
        self.config_factory = config
        self.now = 0.0
        self.members: dict[str, SimMember] = {}
        self.events: list[SimEvent] = []
        self.record_events = record_events
        self.on_event: Callable[[SimEvent], None] | None = None
        self.stats = _Stats()
        self._by_addr: dict[Address, str] = {}
        self._cuts: set[frozenset[str]] = set()
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self._counter = itertools.count()

    # -- building the cluster -------------------------------------------------------------------

    def add(self, name: str, *, tags: Mapping[str, str] | None = None,
            config: SwimConfig | None = None, incarnation: int = 0,
            keyring: Keyring | None = None) -> SimMember:
        """Add (or restart, with a fresh core at incarnation 0) a member called ``name``."""
        old = self.members.get(name)
        if old is not None:
            addr = old.addr
        else:
            i = len(self.members) + 1
            addr = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 7946)
        cfg = config or self.config_factory(name)
        if incarnation:
            cfg = replace(cfg, initial_incarnation=incarnation)
        core = SwimCore(config=cfg, addr=addr, rng=random.Random(self.rng.getrandbits(64)),
                        now=self.now, tags=tags)
        m = SimMember(name=name, addr=addr, core=core, group=old.group if old else 0,
                      keyring=keyring if keyring is not None else (old.keyring if old else None))
        self.members[name] = m
        self._by_addr[addr] = name
        self._schedule(m)
        return m

    def add_cluster(self, n: int, *, prefix: str = "node", join_via: int = 1,
                    stagger: float = 0.0) -> list[SimMember]:
        """Add ``n`` members; each joins through one earlier random member."""
        out: list[SimMember] = []
        for i in range(n):
            m = self.add(f"{prefix}{i:04d}")
            if out:
                seeds = self.rng.sample(out, min(join_via, len(out)))
                self.join(m.name, [s.name for s in seeds])
            out.append(m)
            if stagger:
                self.run_for(stagger)
        return out

    def add_settled_cluster(self, n: int, *, prefix: str = "node") -> list[SimMember]:
        """Add ``n`` members that already know each other (as after a full push-pull), with
        empty broadcast queues: skips the O(n^2) join storm when only steady state matters."""
        from lictor.common.gossip.broadcast import BroadcastQueue
        from lictor.common.gossip.messages import PushNodeState, PushPull, WireState

        out = [self.add(f"{prefix}{i:04d}") for i in range(n)]
        states = tuple(PushNodeState(name=m.name, addr=m.addr, tags={}, incarnation=0,
                                     state=WireState.ALIVE) for m in out)
        for m in out:
            m.core.receive(m.addr, [PushPull(join=False, states=states)], self.now)
            m.core.ready()
            cfg = m.core.config
            m.core._broadcasts = BroadcastQueue(retransmit_mult=cfg.retransmit_mult,
                                                max_depth=cfg.max_broadcast_queue)
            self._schedule(m)
        return out

    def join(self, name: str, others: Iterable[str]) -> None:
        m = self.members[name]
        m.core.join([self.members[o].addr for o in others], self.now)
        self._flush(m)

    def leave(self, name: str) -> None:
        m = self.members[name]
        m.core.leave(self.now)
        self._flush(m)

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        m = self.members[name]
        m.core.set_tags(tags, self.now)
        self._flush(m)

    def crash(self, name: str) -> None:
        m = self.members[name]
        m.crashed = True
        m.crashed_at = self.now
        m.scheduled = None

    def partition(self, *groups: Iterable[str]) -> None:
        """Members in different groups cannot talk; members in no group form group 0."""
        for m in self.members.values():
            m.group = 0
        for gid, names in enumerate(groups, start=1):
            for n in names:
                self.members[n].group = gid

    def cut(self, a: str, b: str) -> None:
        """Block the link between ``a`` and ``b`` only (both ways)."""
        self._cuts.add(frozenset((a, b)))

    def heal(self) -> None:
        """Undo every partition and cut."""
        self._cuts.clear()
        for m in self.members.values():
            m.group = 0

    # -- running ------------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, t: float, *, stop: Callable[[], bool] | None = None,
                  check_every: float = 0.05) -> bool:
        """Process everything due up to ``t``; with ``stop``, return True once it holds
        (checked at most every ``check_every`` simulated seconds, so ``now`` may overshoot
        by that much)."""
        heap = self._heap
        next_check = self.now
        while heap and heap[0][0] <= t:
            when, _, item = heapq.heappop(heap)
            self.now = when
            self._dispatch(item)
            if stop is not None and when >= next_check:
                if stop():
                    return True
                next_check = when + check_every
        self.now = t
        return stop() if stop is not None else False

    def live(self) -> list[SimMember]:
        return [m for m in self.members.values() if not m.crashed]

    def view(self, observer: str, name: str) -> Member | None:
        return self.members[observer].core.member(name)

    def converged(self) -> bool:
        """Every live member sees every live member alive (and nothing else alive)."""
        live = {m.name for m in self.live()}
        for m in self.live():
            states = m.core.member_states()
            if len(states) < len(live) or any(
                    (states.get(n) is MemberState.ALIVE) != (n in live) for n in states):
                return False
            if not live.issubset(states):
                return False
        return True

    def messages_sent(self) -> int:
        return sum(m.core.counters["packets_sent"] + m.core.counters["streams_sent"]
                   for m in self.members.values())

    # -- internals ----------------------------------------------------------------------------

    def _push(self, when: float, item: tuple[Any, ...]) -> None:
        heapq.heappush(self._heap, (when, next(self._counter), item))

    def _schedule(self, m: SimMember) -> None:
        if m.crashed:
            return
        d = max(self.now, m.core.next_deadline())
        if m.scheduled is None or d < m.scheduled:
            m.scheduled = d
            self._push(d, ("wake", m.name, d, m.core))

    def _dispatch(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "wake":
            _, name, when, core = item
            woken = self.members[name]
            if woken.crashed or woken.core is not core or woken.scheduled != when:
                return
            woken.scheduled = None
            woken.core.tick(self.now)
            self._flush(woken)
            return
        _, src, dst, sealed = item
        m = self._deliverable(src, dst)
        if m is None:
            return
        payload = self._open(m, sealed)
        if payload is None:
            return
        if kind == "packet":
            try:
                m.core.receive(src, payload, self.now)
            except GossipCodecError:
                self.stats.decode_errors += 1
            self._flush(m)
        elif kind == "stream":
            reply = m.core.receive_stream(src, payload, self.now)
            self._flush(m)
            if reply is not None:
                self._push(self.now + self._delay(), ("reply", dst, src, self._seal(m, reply)))
        elif kind == "reply":
            m.core.receive(src, payload, self.now, stream_reply=True)
            self._flush(m)

    def _deliverable(self, src: Address, dst: Address) -> SimMember | None:
        dname = self._by_addr.get(dst)
        sname = self._by_addr.get(src)
        if dname is None or sname is None:
            return None
        d, s = self.members[dname], self.members[sname]
        if d.crashed:  # packets already in flight from a crashed sender still arrive
            return None
        if d.group != s.group or (self._cuts and frozenset((dname, sname)) in self._cuts):
            self.stats.blocked += 1
            return None
        return d

    @staticmethod
    def _seal(m: SimMember, body: bytes) -> bytes:
        return m.keyring.encrypt(body) if m.keyring is not None else body

    def _open(self, m: SimMember, frame: bytes) -> bytes | None:
        if m.keyring is None:
            return frame
        try:
            return m.keyring.decrypt(frame)[0]
        except DecryptError:
            self.stats.decrypt_errors += 1
            return None

    def _delay(self) -> float:
        lo, hi = self.delay
        return self.rng.uniform(lo, hi)

    def _flush(self, m: SimMember) -> None:
        r = m.core.ready()
        for p in r.packets:
            self.stats.packets += 1
            if len(p.payload) > self.stats.max_packet:
                self.stats.max_packet = len(p.payload)
            if self.loss and self.rng.random() < self.loss:
                self.stats.lost += 1
                continue
            self._push(self.now + self._delay(), ("packet", m.addr, p.addr, self._seal(m, p.payload)))
        for s in r.streams:
            self.stats.streams += 1
            if s.kind is StreamKind.PING and not m.core.config.tcp_fallback:
                continue
            self._push(self.now + self._delay(), ("stream", m.addr, s.addr, self._seal(m, s.payload)))
        if r.events:
            for e in r.events:
                se = SimEvent(self.now, m.name, e)
                if self.record_events:
                    self.events.append(se)
                if self.on_event is not None:
                    self.on_event(se)
        self._schedule(m)
