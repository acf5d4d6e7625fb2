"""SimNetwork: N RaftCores, a lossy, reordering, duplicating network, crashes and restarts.

Everything is driven by one `random.Random(seed)`; the same seed replays the same run. Each
node's durable state is exactly what its `MemoryStorage` received while the network carried out
a Ready (persist -> send -> apply -> advance); a crash throws away the core (unstable entries,
volatile state) and the FSM, and a restart rebuilds both from storage.

The FSM is a CRC chain over applied entries, so two nodes that applied the same prefix have the
same digest; snapshots carry the digest (padded, so they span several chunks).
"""

from __future__ import annotations

import heapq
import random
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from lictor.server.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    EntryKind,
    MemoryStorage,
    Message,
    RaftCore,
    ReadState,
    Ready,
    Role,
    Snapshot,
)

from .safety import SafetyChecker, SafetyViolation

__all__ = ["SimNode", "SimNetwork", "SafetyViolation"]

_SNAP = struct.Struct(">QI")
SNAPSHOT_PADDING = 150


@dataclass(slots=True)
class SimNode:
    id: int
    storage: MemoryStorage
    core: RaftCore | None = None
    incarnation: int = 0
    fsm_index: int = 0
    fsm_crc: int = 0
    fsm_count: int = 0  # NORMAL entries applied (since last restore)
    read_states: list[ReadState] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.core is not None

    def restore_fsm(self, snap: Snapshot) -> None:
        if snap.is_empty:
            self.fsm_index, self.fsm_crc = 0, 0
        else:
            self.fsm_index, self.fsm_crc = _SNAP.unpack_from(snap.data)
        self.fsm_count = 0

    def snapshot_data(self) -> bytes:
        return _SNAP.pack(self.fsm_index, self.fsm_crc) + b"s" * SNAPSHOT_PADDING


class SimNetwork:
    """A seeded cluster of RaftCores. `tick()` advances everyone; messages take 1..max_delay ticks."""

    def __init__(
        self,
        seed: int,
        n: int = 3,
        *,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        max_delay: int = 2,
        dup_p: float = 0.0,
        compact_every: int = 0,
        snapshot_chunk_size: int = 64,
        max_size_per_msg: int = 256,
        max_inflight_msgs: int = 4,
        pre_vote: bool = True,
        check_quorum: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.max_delay = max_delay
        self.dup_p = dup_p
        self.compact_every = compact_every
        self._core_opts = dict(
            election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks,
            snapshot_chunk_size=snapshot_chunk_size,
            max_size_per_msg=max_size_per_msg,
            max_inflight_msgs=max_inflight_msgs,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
        )
        self.checker = SafetyChecker()
        self.nodes: dict[int, SimNode] = {}
        self._queue: list[tuple[int, int, Message]] = []
        self._seq = 0
        self._cut: set[tuple[int, int]] = set()
        self._drop: dict[tuple[int, int], float] = {}
        self.delivered = 0
        voters = tuple(range(1, n + 1))
        for i in voters:
            self._start(SimNode(i, MemoryStorage()), voters=voters)

    # ------------------------------------------------------------------ nodes

    def _start(self, node: SimNode, voters: tuple[int, ...] = ()) -> None:
        self.nodes[node.id] = node
        node.incarnation += 1
        node.restore_fsm(node.storage.snapshot())
        node.core = RaftCore(
            Config(
                id=node.id,
                rng=random.Random(self.rng.getrandbits(64)),
                voters=voters,
                **self._core_opts,  # type: ignore[arg-type]
            ),
            node.storage,
        )
        self._process(node)

    def add_node(self, node_id: int) -> SimNode:
        """Start a brand-new, empty node (it joins once a leader adds it as a learner)."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id} exists")
        node = SimNode(node_id, MemoryStorage())
        self._start(node)
        return node

    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.core = None
        node.read_states.clear()

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.core is None:
            self._start(node)

    def core(self, node_id: int) -> RaftCore:
        c = self.nodes[node_id].core
        if c is None:
            raise LookupError(f"node {node_id} is down")
        return c

    def alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leaders(self) -> list[RaftCore]:
        return [n.core for n in self.alive() if n.core is not None and n.core.role is Role.LEADER]

    def leader(self) -> RaftCore | None:
        """The alive leader with the highest term, if any."""
        ls = self.leaders()
        return max(ls, key=lambda c: c.term) if ls else None

    # ------------------------------------------------------------------ faults

    def drop(self, src: int, dst: int, p: float) -> None:
        self._drop[(src, dst)] = p

    def cut(self, a: int, b: int) -> None:
        self._cut.add((a, b))
        self._cut.add((b, a))

    def isolate(self, n: int) -> None:
        for other in self.nodes:
            if other != n:
                self.cut(n, other)

    def heal(self) -> None:
        self._cut.clear()
        self._drop.clear()

    def connected(self, a: int, b: int) -> bool:
        return (a, b) not in self._cut

    # ------------------------------------------------------------------ time and delivery

    def tick(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now += 1
            for node in list(self.nodes.values()):
                if node.core is not None:
                    node.core.tick()
                    self._process(node)
            self._deliver_due()

    def _deliver_due(self) -> None:
        q = self._queue
        while q and q[0][0] <= self.now:
            _, _, m = heapq.heappop(q)
            self._deliver(m)

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.dst)
        if node is None or node.core is None or (m.src, m.dst) in self._cut:
            return
        self.delivered += 1
        node.core.step(m)
        self._process(node)

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Deliver every queued message (and the ones they cause) without ticking."""
        rounds = 0
        while self._queue:
            rounds += 1
            if rounds > max_rounds:
                raise AssertionError("stabilize did not converge")
            _, _, m = heapq.heappop(self._queue)
            self._deliver(m)

    def _send(self, m: Message) -> None:
        link = (m.src, m.dst)
        if link in self._cut:
            return
        p = self._drop.get(link)
        rng = self.rng
        if p is not None and rng.random() < p:
            return
        copies = 2 if self.dup_p and rng.random() < self.dup_p else 1
        for _ in range(copies):
            self._seq += 1
            at = self.now + (rng.randint(1, self.max_delay) if self.max_delay > 1 else 1)
            heapq.heappush(self._queue, (at, self._seq, m))

    # ------------------------------------------------------------------ the Ready loop

    def _process(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        while core.has_ready():
            rd = core.ready()
            self._persist(node, rd)
            for m in rd.messages:
                self._send(m)
            self._apply(node, core, rd)
            core.advance(rd)
            if rd.read_states:
                node.read_states.extend(rd.read_states)
            self._maybe_compact(node, core)
        self.checker.after_step(node.id, node.incarnation, core)

    def _persist(self, node: SimNode, rd: Ready) -> None:
        st = node.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
            node.restore_fsm(rd.snapshot)
            self.checker.on_snapshot(node.id, rd.snapshot, node.fsm_crc)
        if rd.entries:
            st.append(rd.entries)
            first = rd.entries[0]
            prev = [st.term(first.index - 1)]
            prev.extend(e.term for e in rd.entries[:-1])
            self.checker.on_persisted(node.id, rd.entries, prev)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)

    def _apply(self, node: SimNode, core: RaftCore, rd: Ready) -> None:
        for e in rd.committed_entries:
            if e.index != node.fsm_index + 1:
                raise SafetyViolation(
                    f"node {node.id} asked to apply {e.index} after {node.fsm_index}"
                )
            crc = zlib.crc32(e.data, zlib.crc32(struct.pack(">QQB", e.index, e.term, e.kind), node.fsm_crc))
            node.fsm_index, node.fsm_crc = e.index, crc
            if e.kind is EntryKind.NORMAL:
                node.fsm_count += 1
            self.checker.on_applied(node.id, e.index, e.term, crc, core.term)

    def _maybe_compact(self, node: SimNode, core: RaftCore) -> None:
        """The driver's compaction policy: snapshot + compact every `compact_every` applied."""
        if not self.compact_every:
            return
        st = node.storage
        applied = core.log.applied
        if applied - st.first_index() + 1 < self.compact_every:
            return
        if applied <= st.snapshot().metadata.index or applied > st.last_index():
            return
        st.create_snapshot(applied, core.conf_state(), node.snapshot_data())
        st.compact(applied)

    # ------------------------------------------------------------------ helpers for tests

    def propose(self, data: bytes) -> int | None:
        """Propose on the current leader; None if there is none or it refuses."""
        leader = self.leader()
        if leader is None:
            return None
        try:
            index = leader.propose(data)
        except Exception:  # NotLeaderError / ProposalDroppedError
            return None
        self._process(self.nodes[leader.id])
        return index

    def conf_change(self, cc_type: ConfChangeType, node_id: int) -> int | None:
        leader = self.leader()
        if leader is None:
            return None
        try:
            index = leader.propose_conf_change(ConfChange(cc_type, node_id))
        except Exception:
            return None
        self._process(self.nodes[leader.id])
        return index

    def run_until(self, pred: object, max_ticks: int) -> int:
        """Tick until `pred()` holds; returns the ticks taken. Raises if it never does."""
        assert callable(pred)
        for t in range(max_ticks + 1):
            if pred():
                return t
            self.tick()
        raise AssertionError(f"condition not reached within {max_ticks} ticks (seed {self.seed})")

    def members(self) -> set[int]:
        """The membership according to the current leader (voters and learners)."""
        leader = self.leader()
        if leader is None:
            return set()
        return set(leader.voters) | set(leader.learners)

    def check_logs(self, ids: Iterable[int] | None = None) -> None:
        cores = [n.core for n in self.alive() if n.core is not None and (ids is None or n.id in ids)]
        SafetyChecker.check_logs_match(cores)
