"""Seeded simulations of 3- and 5-node clusters under chaos, with safety checked every step.

Seeds: the default run covers `LICTOR_SIM_SEEDS` seeds (500); `-m slow` covers many more and
longer runs. `LICTOR_SIM_SEED=<n>` replays exactly one seed in every test below.
"""

from __future__ import annotations

import os

import pytest

from lictor.server.raft import ConfChangeType, Role
from lictor.server.raft.log import RaftLog

from .network import SafetyViolation, SimNetwork
from .scenario import replay_hint, run_scenario

DEFAULT_SEEDS = int(os.environ.get("LICTOR_SIM_SEEDS", "500"))
SLOW_SEEDS = int(os.environ.get("LICTOR_SIM_SLOW_SEEDS", "5000"))
_ONE = os.environ.get("LICTOR_SIM_SEED")


def _seeds(lo: int, n: int) -> list[int]:
    return [int(_ONE)] if _ONE is not None else list(range(lo, lo + n))


def _run(seed: int, test: str, **kw: object) -> None:
    try:
        run_scenario(seed, **kw)  # type: ignore[arg-type]
    except AssertionError as e:
        pytest.fail(f"seed {seed} failed: {e}\n{replay_hint(seed, test)}", pytrace=True)


@pytest.mark.parametrize("seed", _seeds(0, DEFAULT_SEEDS))
def test_random_cluster(seed: int) -> None:
    _run(seed, "test_random_cluster")


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(100_000, SLOW_SEEDS))
def test_random_cluster_long(seed: int) -> None:
    _run(seed, "test_random_cluster_long", chaos_ticks=500)


def test_same_seed_replays_identically() -> None:
    a = run_scenario(4242)
    b = run_scenario(4242)
    assert a == b
    assert a.actions  # the scenario did something
    c = run_scenario(4243)
    assert c.actions != a.actions


def test_checker_catches_a_broken_vote_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker must be able to fail: grant votes regardless of log freshness."""
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, i, t: True)
    caught = 0
    for seed in range(40):
        try:
            run_scenario(seed)
        except SafetyViolation:
            caught += 1
    assert caught > 0


@pytest.mark.parametrize("n", [3, 5])
def test_partitioned_leader_is_replaced_and_cluster_recovers(n: int) -> None:
    """Liveness: after a partition heals, one leader remains and a proposal commits everywhere."""
    net = SimNetwork(7, n, max_delay=2)
    net.run_until(lambda: net.leader() is not None, 200)
    old = net.leader()
    assert old is not None
    net.isolate(old.id)
    net.run_until(lambda: any(c.term > old.term and c.role is Role.LEADER for c in net.leaders()), 200)
    net.heal()
    net.run_until(lambda: len(net.leaders()) == 1, 100)
    idx = net.propose(b"after-heal")
    assert idx is not None
    net.run_until(lambda: all(node.fsm_index >= idx for node in net.alive()), 100)
    assert old.role is Role.FOLLOWER


def test_crash_restart_with_compaction_catches_up_by_snapshot() -> None:
    net = SimNetwork(11, 3, compact_every=5, snapshot_chunk_size=32)
    net.run_until(lambda: net.leader() is not None, 200)
    leader = net.leader()
    assert leader is not None
    victim = next(i for i in net.nodes if i != leader.id)
    net.crash(victim)
    for i in range(30):
        net.propose(b"w%d" % i)
        net.tick()
    net.restart(victim)
    last = net.core(leader.id).log.last_index()
    net.run_until(lambda: net.nodes[victim].fsm_index >= last, 200)
    assert net.nodes[victim].storage.snapshot().metadata.index > 0


def test_membership_grow_and_shrink() -> None:
    net = SimNetwork(3, 3)
    net.run_until(lambda: net.leader() is not None, 200)
    net.add_node(4)
    assert net.conf_change(ConfChangeType.ADD_LEARNER, 4) is not None
    net.run_until(lambda: 4 in net.members() and net.nodes[4].fsm_index == net.leader().log.committed, 200)  # type: ignore[union-attr]
    assert net.conf_change(ConfChangeType.PROMOTE, 4) is not None
    net.run_until(lambda: net.leader() is not None and 4 in net.leader().voters, 200)
    victim = net.leader().id  # type: ignore[union-attr]
    assert net.conf_change(ConfChangeType.REMOVE, victim) is not None
    net.run_until(
        lambda: net.leader() is not None and net.leader().id != victim and victim not in net.leader().voters,  # type: ignore[union-attr]
        300,
    )
    assert len(net.leader().voters) == 3  # type: ignore[union-attr]
