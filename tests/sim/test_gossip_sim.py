"""Gossip simulations: many SwimCore members on a lossy, delayed in-memory network.

Default run: 50 members, 1% loss. ``-m slow`` adds larger clusters up to 1,000 members.
Each run is one seed; a failing seed replays exactly.
"""

from __future__ import annotations

import pytest

from lictor.common.gossip.members import MemberState
from lictor.common.gossip.sim import SimEvent, SimNetwork
from lictor.common.gossip.swim import EventKind, SwimConfig


def detect_crash(n: int, loss: float, seed: int,
                 crashes: int = 1) -> tuple[list[float], list[SimEvent], SimNetwork]:
    net = SimNetwork(seed=seed, loss=loss, record_events=False)
    failed: list[SimEvent] = []
    net.on_event = lambda e: failed.append(e) if e.event.kind is EventKind.FAILED else None
    if n > 200:  # simulating 1,000 simultaneous joins is O(n^2) decodes: start settled
        net.add_settled_cluster(n)
    else:
        net.add_cluster(n)
    assert net.run_until(net.now + 120 + n * 0.1, stop=net.converged, check_every=0.5)
    net.run_for(20)
    assert not failed, "false positives while idle"
    times: list[float] = []
    for _ in range(crashes):
        victim = net.rng.choice([m.name for m in net.live()])
        observers = [m.name for m in net.live() if m.name != victim]
        net.crash(victim)
        t0 = net.now
        assert net.run_until(t0 + 120, check_every=0.25, stop=lambda: all(
            net.members[o].core.member(victim).state is MemberState.DEAD for o in observers)), \
            f"{victim} not detected by everyone (seed {net.seed})"
        times.append(net.now - t0)
        net.run_for(5)
    return times, failed, net


def bound(n: int) -> float:
    """Worst case: a probe round, the maximum suspicion timeout, and gossip slack."""
    from lictor.common.gossip.suspicion import suspicion_timeout
    cfg = SwimConfig.lan("x")
    return (3 * cfg.probe_interval
            + cfg.suspicion_max_timeout_mult * suspicion_timeout(cfg.suspicion_mult, n,
                                                                 cfg.probe_interval) + 5)


@pytest.mark.parametrize("seed", [1, 2])
def test_50_members_detect_a_crash_within_bound_and_no_false_positives(seed: int) -> None:
    times, failed, net = detect_crash(50, 0.01, seed, crashes=2)
    assert all(t <= bound(50) for t in times), times
    crashed = {m.name for m in net.members.values() if m.crashed}
    assert {e.event.member.name for e in failed} == crashed
    # every live member heard about each crash exactly once
    assert len(failed) == sum(49 - i for i in range(2))
    assert net.stats.lost > 0, "the network really dropped packets"


def test_messages_per_member_stay_flat_from_10_to_100() -> None:
    rates = []
    for n in (10, 100):
        net = SimNetwork(seed=3, loss=0.01, record_events=False)
        net.add_cluster(n)
        assert net.run_until(net.now + 120, stop=net.converged, check_every=0.5)
        net.run_for(5)
        before, t0 = net.messages_sent(), net.now
        net.run_for(10)
        rates.append((net.messages_sent() - before) / n / (net.now - t0))
    assert rates[1] < 1.5 * rates[0], rates


@pytest.mark.slow
@pytest.mark.parametrize("n,loss", [(200, 0.05), (1000, 0.01)])
def test_large_clusters_detect_crashes_without_false_positives(n: int, loss: float) -> None:
    times, failed, net = detect_crash(n, loss, seed=5, crashes=1)
    assert all(t <= bound(n) for t in times), times
    crashed = {m.name for m in net.members.values() if m.crashed}
    assert {e.event.member.name for e in failed} == crashed
