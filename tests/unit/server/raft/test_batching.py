"""Write-path batching: `RaftCore.propose_many` and the transport's `coalesce` must give the
same logs, commits and applied entries as one-at-a-time proposals and uncoalesced delivery."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from lictor.server.raft import Message, MessageType
from lictor.server.raft.transport import coalesce

from .cluster import Cluster


class CoalescingCluster(Cluster):
    """Delivers each round's messages grouped per (src, dst) and coalesced, as the transports do."""

    def deliver_round(self) -> int:
        self.flush()
        msgs, self.pending = self.pending, []
        groups: dict[tuple[int, int], list[Message]] = defaultdict(list)
        for m in msgs:
            groups[(m.src, m.dst)].append(m)
        self.pending = []
        n = 0
        for g in groups.values():
            for m in coalesce(g):
                self.sent.append(m)
                if (m.src, m.dst) in self._cut or any(f(m) for f in self.filters):
                    continue
                if m.dst in self.cores:
                    self.cores[m.dst].step(m)
                    n += 1
        self.flush()
        return n


def _logs(c: Cluster) -> dict[int, list[tuple[int, int, bytes]]]:
    out = {}
    for i, core in c.cores.items():
        rl = core.log
        out[i] = [(e.index, e.term, e.data) for e in rl.entries(rl.first_index(), rl.last_index() + 1)]
    return out


def _one_by_one(c: Cluster, leader: int, datas: list[bytes]) -> None:
    for d in datas:
        c.cores[leader].propose(d)
    c.stabilize()


def test_propose_many_same_log_fewer_messages() -> None:
    datas = [b"v%d" % i for i in range(50)]
    a, b = Cluster(3), Cluster(3)
    a.elect(1)
    b.elect(1)
    a.sent.clear()
    b.sent.clear()
    _one_by_one(a, 1, datas)
    first = b.cores[1].propose_many(datas)
    b.stabilize()
    assert first == a.cores[1].log.last_index() - len(datas) + 1
    assert _logs(a) == _logs(b)
    assert [c.log.committed for c in a.cores.values()] == [c.log.committed for c in b.cores.values()]
    assert a.normal_applied(2) == b.normal_applied(2) == datas
    assert len(b.sent_of(MessageType.APPEND, src=1)) < len(a.sent_of(MessageType.APPEND, src=1)) / 5


def test_propose_many_refused_on_follower() -> None:
    from lictor.server.raft import NotLeaderError

    c = Cluster(3)
    c.elect(1)
    with pytest.raises(NotLeaderError):
        c.cores[2].propose_many([b"x"])
    with pytest.raises(ValueError):
        c.cores[1].propose_many([])


@pytest.mark.parametrize("seed", range(20))
def test_coalesced_delivery_same_outcome(seed: int) -> None:
    rng = random.Random(seed)
    plain, merged = Cluster(3, seed=seed), CoalescingCluster(3, seed=seed)
    for c in (plain, merged):
        c.elect(1)
        c.sent.clear()
    for rnd in range(30):
        batch = [b"r%d-%d" % (rnd, k) for k in range(rng.randint(1, 20))]
        one_at_a_time = rng.random() < 0.5
        for c in (plain, merged):
            if one_at_a_time:
                for d in batch:
                    c.cores[1].propose(d)
            else:
                c.cores[1].propose_many(batch)
            c.deliver_round()
            if rnd % 5 == 4:
                c.stabilize()
    for c in (plain, merged):
        c.tick_all(2)
        c.stabilize()
    assert _logs(plain) == _logs(merged)
    for i in plain.cores:
        assert plain.normal_applied(i) == merged.normal_applied(i)
        assert plain.cores[i].log.committed == merged.cores[i].log.committed
    assert len(merged.sent) < len(plain.sent)


def test_coalesce_rules() -> None:
    from lictor.server.raft import Entry

    A, R = MessageType.APPEND, MessageType.APPEND_RESP
    m1 = Message(type=A, src=1, dst=2, term=3, index=5, log_term=3,
                 entries=[Entry(3, 6, b"a")], commit=4)
    m2 = Message(type=A, src=1, dst=2, term=3, index=6, log_term=3,
                 entries=[Entry(3, 7, b"b")], commit=5)
    empty = Message(type=A, src=1, dst=2, term=3, index=7, log_term=3, commit=7)
    gap = Message(type=A, src=1, dst=2, term=3, index=9, log_term=3,
                  entries=[Entry(3, 10, b"c")], commit=7)
    out = coalesce([m1, m2, empty, gap])
    assert len(out) == 2
    assert out[0].index == 5 and [e.index for e in out[0].entries] == [6, 7]
    assert out[0].commit == 7 and out[1] is gap
    r1 = Message(type=R, src=2, dst=1, term=3, index=6)
    r2 = Message(type=R, src=2, dst=1, term=3, index=7)
    rej = Message(type=R, src=2, dst=1, term=3, index=7, reject=True, reject_hint=4)
    hb = Message(type=MessageType.HEARTBEAT_RESP, src=2, dst=1, term=3, context=b"x")
    assert coalesce([r1, r2, hb, r1]) == [r2, hb, r1]
    assert coalesce([r1, rej, r2]) == [r1, rej, r2]
    assert coalesce([r2, r1]) == [r2, r1]
