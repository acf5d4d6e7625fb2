"""SwimCore scenarios on a small in-memory network (SimNetwork): deterministic and seeded."""

from __future__ import annotations

import random

import pytest

from lictor.common.gossip.members import MemberState
from lictor.common.gossip.messages import Alive, GossipCodecError, Suspect
from lictor.common.gossip.sim import SimEvent, SimNetwork
from lictor.common.gossip.swim import EventKind, StreamKind, SwimConfig, SwimCore


def cluster(n: int, seed: int = 7, **kw: object) -> SimNetwork:
    net = SimNetwork(seed=seed, **kw)  # type: ignore[arg-type]
    net.add_cluster(n)
    assert net.run_until(net.now + 60, stop=net.converged), "cluster did not converge"
    return net


def events(net: SimNetwork, kind: EventKind, about: str | None = None) -> list[SimEvent]:
    return [e for e in net.events if e.event.kind is kind
            and (about is None or e.event.member.name == about)]


def test_join_converges_and_everyone_sees_a_join_event_for_everyone() -> None:
    net = cluster(6)
    for m in net.members.values():
        joined = {e.event.member.name for e in events(net, EventKind.JOIN) if e.observer == m.name}
        assert joined == set(net.members) - {m.name}
    assert not events(net, EventKind.SUSPECT) and not events(net, EventKind.FAILED)


def test_crashed_member_is_suspected_then_failed_within_bounds() -> None:
    net = cluster(6)
    net.crash("node0002")
    t0 = net.now
    observers = [m.name for m in net.live()]

    def all_failed() -> bool:
        return all(net.view(o, "node0002").state is MemberState.DEAD for o in observers)

    assert net.run_until(t0 + 60, stop=all_failed)
    cfg = SwimConfig.lan("x")
    # one probe round + probe + the longest suspicion (k confirmations may not come)
    bound = 6 * cfg.probe_interval + 6 * cfg.suspicion_mult * cfg.suspicion_max_timeout_mult
    assert net.now - t0 <= bound
    first_suspect = min(e.time for e in events(net, EventKind.SUSPECT, "node0002"))
    first_failed = min(e.time for e in events(net, EventKind.FAILED, "node0002"))
    # never declared dead before the minimum suspicion timeout has run
    assert first_failed - first_suspect >= cfg.suspicion_mult * cfg.probe_interval - 1e-9
    assert {e.event.member.name for e in events(net, EventKind.FAILED)} == {"node0002"}


def test_confirmations_shorten_detection_compared_with_a_lone_suspector() -> None:
    """With many observers the timeout shrinks towards the minimum (Lifeguard)."""
    net = cluster(10)
    net.crash("node0005")
    t0 = net.now
    assert net.run_until(t0 + 60, stop=lambda: bool(events(net, EventKind.FAILED, "node0005")))
    first = min(e.time for e in events(net, EventKind.FAILED, "node0005")) - t0
    max_timeout = 4 * 1.0 * 6  # suspicion_mult * probe_interval * max mult, n=10
    assert first < max_timeout


def test_false_suspicion_is_refuted_with_a_higher_incarnation() -> None:
    net = cluster(5)
    victim = net.members["node0003"]
    inc = victim.core.incarnation
    accuser = net.members["node0000"]
    accuser.core.receive(("10.9.9.9", 1), [Suspect(incarnation=inc, node="node0003",
                                                    sender="node0004")], net.now)
    assert accuser.core.member("node0003").state is MemberState.SUSPECT
    net._flush(accuser)
    net.run_for(30)
    assert victim.core.incarnation > inc
    assert victim.core.counters["refutations"] >= 1
    for m in net.members.values():
        seen = m.core.member("node0003")
        assert seen.state is MemberState.ALIVE and seen.incarnation == victim.core.incarnation
    assert not events(net, EventKind.FAILED)
    assert events(net, EventKind.ALIVE, "node0003"), "the accuser saw it alive again"


def test_graceful_leave_propagates_as_leave_not_failed() -> None:
    net = cluster(6)
    net.leave("node0004")
    leaver = net.members["node0004"]
    assert net.run_until(net.now + 10, stop=lambda: leaver.core.leave_done)
    net.crash("node0004")  # the process exits after leave_done
    net.run_for(20)
    for m in net.live():
        assert m.core.member("node0004").state is MemberState.LEFT
    assert len(events(net, EventKind.LEAVE, "node0004")) == 5
    assert not events(net, EventKind.FAILED)
    assert not events(net, EventKind.SUSPECT, "node0004")


def test_rejoin_after_failure_with_a_higher_incarnation() -> None:
    net = cluster(5)
    old_inc = net.members["node0001"].core.incarnation
    net.crash("node0001")
    net.run_until(net.now + 60, stop=lambda: all(
        m.core.member("node0001").state is MemberState.DEAD for m in net.live()))
    failed_inc = net.members["node0000"].core.member("node0001").incarnation
    back = net.add("node0001")  # a fresh process: incarnation starts at 0 again
    assert back.core.incarnation == 0
    net.join("node0001", ["node0002"])
    assert net.run_until(net.now + 30, stop=net.converged)
    assert back.core.incarnation > max(old_inc, failed_inc)
    for m in net.live():
        assert m.core.member("node0001").incarnation == back.core.incarnation
    assert events(net, EventKind.ALIVE, "node0001")


def test_tags_update_propagates_as_update_events() -> None:
    net = cluster(5)
    net.set_tags("node0002", {"role": "server", "dc": "dc2", "port": "8300"})
    net.run_for(10)
    for m in net.members.values():
        assert dict(m.core.member("node0002").tags) == {"role": "server", "dc": "dc2",
                                                       "port": "8300"}
    assert len(events(net, EventKind.UPDATE, "node0002")) == 4
    with pytest.raises(ValueError):
        net.set_tags("node0002", {"big": "x" * 1000})


@pytest.mark.parametrize("split_seconds", [20, 90])  # before and after dead members are reaped
def test_push_pull_heals_a_split(split_seconds: float) -> None:
    net = cluster(8, seed=3)
    names = sorted(net.members)
    left, right = names[:4], names[4:]
    net.partition(left, right)
    net.run_until(net.now + 120, stop=lambda: all(
        (x := m.core.member(o)) is None or x.state is MemberState.DEAD
        for m in net.members.values() for o in (right if m.name in left else left)))
    net.run_for(max(0.0, split_seconds - 60))
    assert not net.converged()
    net.heal()
    assert net.run_until(net.now + 120, stop=net.converged), "push-pull did not heal the split"


def test_indirect_probes_keep_a_member_reachable_through_others() -> None:
    net = cluster(5)
    net.cut("node0000", "node0001")
    net.run_for(60)
    assert not events(net, EventKind.FAILED)
    a = net.members["node0000"].core
    assert a.member("node0001").state is not MemberState.DEAD


def test_the_same_seed_replays_the_same_run() -> None:
    def transcript(seed: int) -> list[tuple[float, str, str, str]]:
        net = cluster(6, seed=seed, loss=0.05)
        net.crash("node0003")
        net.run_for(40)
        return [(e.time, e.observer, e.event.kind.value, e.event.member.name) for e in net.events]

    assert transcript(11) == transcript(11)
    assert transcript(11) != transcript(12)


def test_packets_fit_the_mtu_while_many_members_join() -> None:
    net = SimNetwork(seed=5)
    for i in range(60):
        net.add(f"node{i:04d}", tags={"role": "client", "dc": "dc1", "build": "0.1.0" * 8})
        if i:
            net.join(f"node{i:04d}", ["node0000"])
    assert net.run_until(net.now + 60, stop=net.converged)
    assert 0 < net.stats.max_packet <= 1400


def core_with_peers(n: int = 4, *, seed: int = 1) -> SwimCore:
    cfg = SwimConfig.lan("me")
    core = SwimCore(config=cfg, addr=("10.0.0.1", 7946), rng=random.Random(seed), now=0.0)
    for i in range(n):
        core.receive(("10.0.1.1", 7946), [Alive(incarnation=1, node=f"p{i}",
                                                 addr=(f"10.0.1.{i + 1}", 7946))], 0.0)
    core.ready()
    return core


def test_awareness_rises_when_our_probes_and_nacks_go_unanswered_and_stretches_probing() -> None:
    core = core_with_peers()
    now, probe_starts = 0.0, []
    while now < 60:
        now = core.next_deadline()
        before = core.counters["probes"]
        core.tick(now)
        if core.counters["probes"] > before:
            probe_starts.append(now)
        core.ready()  # nothing is ever delivered: no acks, no nacks
    assert core.awareness == 7  # awareness_max_multiplier - 1
    gaps = [b - a for a, b in zip(probe_starts, probe_starts[1:])]
    assert gaps[0] < 1.5 and gaps[-1] == pytest.approx(8.0)


def test_a_successful_direct_probe_lowers_awareness() -> None:
    core = core_with_peers()
    core._awareness.apply_delta(3)
    now = core.next_deadline()
    while core.counters["probes"] == 0:
        core.tick(now)
        now = core.next_deadline()
    from lictor.common.gossip.messages import Ack, Ping, decode_packet
    pings = [(p, m) for p in core.ready().packets for m in decode_packet(p.payload)
             if isinstance(m, Ping)]
    assert len(pings) == 1
    ping, msg = pings[0]
    core.receive(ping.addr, [Ack(seq=msg.seq)], now)
    assert core.awareness == 2


def test_failed_direct_probe_asks_for_indirect_pings_and_a_tcp_fallback() -> None:
    core = core_with_peers()
    now = core.next_deadline()
    while core.counters["probes"] == 0:
        core.tick(now)
        now = core.next_deadline()
    core.ready()
    start = now
    packets, streams = [], []
    while now <= start + core.config.probe_timeout:  # up to the direct probe timeout
        core.tick(now)
        r = core.ready()
        packets += r.packets
        streams += r.streams
        now = core.next_deadline()
    from lictor.common.gossip.messages import IndirectPing, decode_packet
    reqs = [m for p in packets for m in decode_packet(p.payload) if isinstance(m, IndirectPing)]
    assert len(reqs) == 3 and len({r.seq for r in reqs}) == 1
    assert [s.kind for s in streams] == [StreamKind.PING]


def test_undecodable_bytes_raise_codec_error_and_change_nothing() -> None:
    core = core_with_peers()
    before = core.members()
    with pytest.raises(GossipCodecError):
        core.receive(("10.0.0.9", 1), b"\xc1garbage", 1.0)
    assert core.members() == before and not core.has_ready()


def test_stale_suspect_then_dead_from_a_healed_partition_leaves_time_to_refute() -> None:
    """The isolated side of a partition gossips Suspect(p0) and, right behind it, Dead(p0) when
    the link comes back. The Dead must not kill p0 before p0's refutation (Alive inc+1) arrives;
    it only confirms the suspicion (CI flake of test_gossip_partition, issue 4)."""
    from lictor.common.gossip.messages import Dead
    core = core_with_peers()
    src = ("10.0.1.4", 7946)
    core.receive(src, [Suspect(incarnation=1, node="p0", sender="p3"),
                       Dead(incarnation=1, node="p0", sender="p3")], 1.0)
    assert core.member_states()["p0"] is MemberState.SUSPECT
    core.receive(("10.0.1.1", 7946), [Alive(incarnation=2, node="p0", addr=("10.0.1.1", 7946))], 1.2)
    assert core.member_states()["p0"] is MemberState.ALIVE
    assert not [e for e in core.ready().events if e.kind is EventKind.FAILED]


def test_dead_from_others_while_suspecting_fails_the_member_when_our_timer_runs_out() -> None:
    from lictor.common.gossip.messages import Dead
    core = core_with_peers()
    core.receive(("10.0.1.4", 7946), [Suspect(incarnation=1, node="p0", sender="p3")], 1.0)
    timer = core.suspicion_of("p0")
    assert timer is not None
    before = timer.deadline()
    core.receive(("10.0.1.3", 7946), [Dead(incarnation=1, node="p0", sender="p2")], 1.1)
    assert core.member_states()["p0"] is MemberState.SUSPECT
    assert timer.deadline() <= before  # the Dead counted as a confirmation (or k was 0 already)
    now = 1.1
    while core.member_states()["p0"] is MemberState.SUSPECT:
        now = core.next_deadline()
        assert now <= timer.deadline() + 1e-9
        core.tick(now)
    assert core.member_states()["p0"] is MemberState.DEAD
    # after our own timer ran out, a late Dead is simply ignored
    core.receive(("10.0.1.3", 7946), [Dead(incarnation=1, node="p0", sender="p1")], now + 0.1)
    assert core.member_states()["p0"] is MemberState.DEAD


def test_recent_user_messages_ride_on_periodic_push_pull_to_members_that_were_there() -> None:
    """A member that missed a user broadcast (its retransmits ran out while it restarted) gets
    it on a push-pull we start with it, as Serf carries recent events; a member that became
    alive after the message, a join and a reply carry none."""
    from lictor.common.gossip.messages import MAX_STREAM_SIZE, PushPull, User, decode_packet

    def users(payload: bytes) -> list[bytes]:
        msgs = decode_packet(payload, max_size=MAX_STREAM_SIZE)
        assert isinstance(msgs[0], PushPull)
        return [m.payload for m in msgs if isinstance(m, User)]

    core = core_with_peers()  # p0..p3 alive since t=0
    core.receive(("10.0.1.9", 7946), [Alive(incarnation=1, node="late", addr=("10.0.1.9", 7946))], 5.0)
    core.broadcast_user("ev1", b"payload-1", 3.0)
    p0, late = core._members["p0"], core._members["late"]
    assert users(core.push_pull_payload(join=False, replay_to=p0)) == [b"payload-1"]
    assert users(core.push_pull_payload(join=False, replay_to=late)) == []  # joined after it
    assert users(core.push_pull_payload(join=True, replay_to=p0)) == []
    assert users(core.push_pull_payload(join=False)) == []  # a reply: we do not know to whom
    core.tick(3.0 + core.config.user_replay_time + 1)  # older than user_replay_time: dropped
    assert users(core.push_pull_payload(join=False, replay_to=p0)) == []


def test_a_push_pull_reply_delivers_its_user_messages() -> None:
    a, b = core_with_peers(seed=4), core_with_peers(seed=5)
    a.broadcast_user("k", b"hello", 1.0)
    b.ready()
    b.receive(("10.0.1.1", 7946), a.push_pull_payload(join=False, replay_to=a._members["p0"]), 1.5,
              stream_reply=True)
    assert b.ready().user == (b"hello",)
