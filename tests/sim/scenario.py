"""A randomised chaos scenario on SimNetwork, entirely determined by one seed.

Phase 1 (chaos): proposals, partitions, link drops, crashes/restarts, compaction and chunked
snapshots, membership changes (add learner, promote, remove) and leadership transfers, with
ReadIndex requests checked for linearizability. The SafetyChecker runs after every step.
Phase 2 (liveness): heal everything, restart crashed members, retire removed nodes; a leader
must emerge and a fresh proposal must be applied by every member within a bounded time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lictor.server.raft import ConfChangeType, NotLeaderError

from .network import SimNetwork, SafetyViolation

__all__ = ["ScenarioReport", "run_scenario", "replay_hint"]

LIVENESS_TICKS = 600


def replay_hint(seed: int, test: str = "test_random_cluster") -> str:
    return f"replay with: LICTOR_SIM_SEED={seed} .venv/bin/pytest tests/sim -k {test} -q"


@dataclass(slots=True)
class ScenarioReport:
    seed: int
    nodes: int
    leaders_elected: int = 0
    committed: int = 0
    snapshots_sent: int = 0
    conf_changes: int = 0
    transfers: int = 0
    reads_served: int = 0
    liveness_ticks: int = 0
    actions: list[str] = field(default_factory=list)


class _Chaos:
    def __init__(self, seed: int, n: int | None, chaos_ticks: int) -> None:
        self.rng = random.Random(seed * 7919 + 17)
        rng = self.rng
        self.n = n if n is not None else rng.choice((3, 5))
        self.net = SimNetwork(
            seed,
            self.n,
            compact_every=rng.choice((0, 6, 20)),
            dup_p=rng.choice((0.0, 0.0, 0.03)),
            max_delay=rng.choice((1, 2, 3)),
            snapshot_chunk_size=rng.choice((16, 64, 1000)),
            max_inflight_msgs=rng.choice((1, 4, 64)),
        )
        self.chaos_ticks = chaos_ticks
        self.report = ScenarioReport(seed=seed, nodes=self.n)
        self.next_id = self.n + 1
        self.max_nodes = self.n + 3
        self.counter = 0
        self.reads: dict[bytes, int] = {}  # ctx -> min acceptable read index
        self.removed: set[int] = set()  # nodes we proposed to remove

    def log(self, what: str) -> None:
        self.report.actions.append(f"t={self.net.now} {what}")

    # ---- actions

    def act(self) -> None:
        rng, net = self.rng, self.net
        r = rng.random()
        if r < 0.30:
            self.counter += 1
            net.propose(b"p%d" % self.counter)
        elif r < 0.33:
            victim = rng.choice(sorted(net.nodes))
            net.isolate(victim)
            self.log(f"isolate {victim}")
        elif r < 0.36:
            a, b = rng.sample(sorted(net.nodes), 2)
            net.cut(a, b)
            self.log(f"cut {a} {b}")
        elif r < 0.41:
            net.heal()
            self.log("heal")
        elif r < 0.44:
            a, b = rng.sample(sorted(net.nodes), 2)
            p = rng.choice((0.2, 0.5, 0.9))
            net.drop(a, b, p)
            self.log(f"drop {a}->{b} p={p}")
        elif r < 0.46:
            alive = [n.id for n in net.alive()]
            down = len(net.nodes) - len(alive)
            if alive and down < 2:
                victim = rng.choice(alive)
                net.crash(victim)
                self.log(f"crash {victim}")
        elif r < 0.52:
            down = sorted(i for i, n in net.nodes.items() if not n.alive)
            if down:
                who = rng.choice(down)
                net.restart(who)
                self.log(f"restart {who}")
        elif r < 0.56:
            self.membership()
        elif r < 0.575:
            self.transfer()
        elif r < 0.61:
            self.read()

    def membership(self) -> None:
        rng, net = self.rng, self.net
        leader = net.leader()
        if leader is None:
            return
        choice = rng.random()
        if choice < 0.4 and len(net.nodes) < self.max_nodes:
            nid = self.next_id
            self.next_id += 1
            net.add_node(nid)
            if net.conf_change(ConfChangeType.ADD_LEARNER, nid) is not None:
                self.report.conf_changes += 1
                self.log(f"add learner {nid}")
        elif choice < 0.75:
            prog = leader.status().progress
            ready = sorted(
                lid for lid in leader.learners if lid in prog and prog[lid].match >= leader.log.committed
            )
            if ready and net.conf_change(ConfChangeType.PROMOTE, ready[0]) is not None:
                self.report.conf_changes += 1
                self.log(f"promote {ready[0]}")
        else:
            if len(leader.voters) > 3:
                victim = rng.choice(sorted(leader.voters))
            elif leader.learners:
                victim = rng.choice(sorted(leader.learners))
            else:
                return
            if net.conf_change(ConfChangeType.REMOVE, victim) is not None:
                self.removed.add(victim)
                self.report.conf_changes += 1
                self.log(f"remove {victim}")

    def transfer(self) -> None:
        leader = self.net.leader()
        if leader is None or len(leader.voters) < 2:
            return
        target = self.rng.choice(sorted(v for v in leader.voters if v != leader.id))
        leader.transfer_leadership(target)
        self.net._process(self.net.nodes[leader.id])
        self.report.transfers += 1
        self.log(f"transfer {leader.id} -> {target}")

    def read(self) -> None:
        net = self.net
        alive = net.alive()
        if not alive:
            return
        node = self.rng.choice(alive)
        assert node.core is not None
        self.counter += 1
        ctx = b"r%d" % self.counter
        try:
            node.core.read_index(ctx)
        except NotLeaderError:
            return
        # Everything applied anywhere before the read was issued is committed: a linearizable
        # read must observe at least that.
        self.reads[ctx] = net.checker.max_committed
        net._process(node)

    def check_reads(self) -> None:
        for node in self.net.alive():
            for rs in node.read_states:
                floor = self.reads.pop(rs.request_ctx, None)
                if floor is None:
                    continue
                if rs.index < floor:
                    raise SafetyViolation(
                        f"ReadIndex {rs.request_ctx!r} on node {node.id} returned index {rs.index}"
                        f" but {floor} was already committed when it was issued"
                    )
                self.report.reads_served += 1
            node.read_states.clear()

    # ---- phases

    def chaos(self) -> None:
        net = self.net
        for _ in range(self.chaos_ticks):
            self.act()
            net.tick()
            self.check_reads()

    def liveness(self) -> None:
        net = self.net
        net.heal()
        for nid, node in net.nodes.items():
            if not node.alive and nid not in self.removed:
                net.restart(nid)
        start = net.now
        marker: tuple[int, int, int] | None = None  # (leader id, term, index)
        while net.now - start <= LIVENESS_TICKS:
            self.check_reads()
            leader = net.leader()
            if leader is not None:
                members = set(leader.voters) | set(leader.learners)
                for nid, node in net.nodes.items():
                    if node.alive and nid in self.removed and nid not in members:
                        # Operators shut removed servers down; one that never learned of its
                        # removal would otherwise keep campaigning in its stale configuration.
                        net.crash(nid)
                    elif not node.alive and nid in members:
                        net.restart(nid)
            if leader is not None and (marker is None or marker[1] != leader.term):
                if leader.lead_transferee is None:
                    self.counter += 1
                    idx = net.propose(b"live%d" % self.counter)
                    if idx is not None:
                        marker = (leader.id, leader.term, idx)
            if marker is not None and self._marker_applied(marker):
                self.report.liveness_ticks = net.now - start
                return
            net.tick()
        raise AssertionError(
            f"liveness: no proposal applied by all members within {LIVENESS_TICKS} ticks after"
            f" healing (leader={net.leader() and net.leader().id}, marker={marker})"  # type: ignore[union-attr]
        )

    def _marker_applied(self, marker: tuple[int, int, int]) -> bool:
        net = self.net
        lid, term, idx = marker
        c = net.checker.committed.get(idx)
        if c is None or c.term != term:
            return False
        leader = net.leader()
        if leader is None:
            return False
        for nid in set(leader.voters) | set(leader.learners):
            node = net.nodes.get(nid)
            if node is None or node.core is None or node.fsm_index < idx:
                return False
        return True


def run_scenario(seed: int, *, n: int | None = None, chaos_ticks: int = 150) -> ScenarioReport:
    """Run one seeded scenario; raises SafetyViolation/AssertionError on any failure."""
    ch = _Chaos(seed, n, chaos_ticks)
    ch.chaos()
    ch.liveness()
    net = ch.net
    members = net.members()
    net.check_logs(members)
    rep = ch.report
    rep.leaders_elected = len(net.checker.leaders)
    rep.committed = net.checker.max_committed
    return rep


if __name__ == "__main__":  # pragma: no cover - manual exploration
    import sys

    for s in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        r = run_scenario(s)
        print(s, r.nodes, r.leaders_elected, r.committed, r.conf_changes, r.reads_served, r.liveness_ticks)
