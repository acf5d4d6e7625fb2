"""Targeted behaviours of RaftCore, each on a small synchronous Cluster."""

from __future__ import annotations

import random

import pytest

from lictor.server.raft import (
    Config,
    ConfChange,
    ConfChangeType,
    EntryKind,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    RaftCore,
    Role,
)

from .cluster import Cluster, make_storage

MT = MessageType


# ------------------------------------------------------------------------------ elections


def test_single_campaign_elects_leader_and_commits_noop() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    assert leader.role is Role.LEADER
    assert leader.term == 2  # bootstrap is term 1
    assert c[2].lead == 1 and c[3].lead == 1
    noop = c.applied[2][-1]
    assert noop.kind is EntryKind.NOOP and noop.term == 2
    assert all(core.log.committed == leader.log.last_index() for core in c.cores.values())


def test_election_by_ticks_uses_randomised_timeout() -> None:
    c = Cluster(3, seed=7)
    for _ in range(40):
        c.tick_all()
        if any(core.role is Role.LEADER for core in c.cores.values()):
            break
    leaders = [core for core in c.cores.values() if core.role is Role.LEADER]
    assert len(leaders) == 1
    timeouts = {core.randomized_election_timeout for core in c.cores.values()}
    assert all(10 <= t < 20 for t in timeouts)


def test_transition_phrases_are_recorded() -> None:
    c = Cluster(3)
    c.elect(1)
    ev = c[1].events
    assert ev is not None
    assert "node 1 became pre-candidate at term 1" in ev
    assert "node 1 became candidate at term 2" in ev
    assert ev[-1] == "node 1 became leader at term 2"


def test_illegal_transition_raises_naming_it() -> None:
    c = Cluster(3)
    with pytest.raises(AssertionError, match=r"follower -> leader"):
        c[1]._become_leader()
    c.elect(1)
    with pytest.raises(AssertionError, match=r"leader -> candidate"):
        c[1]._become_candidate()


def test_prevote_rejoining_node_does_not_disrupt_leader() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    term = leader.term
    c.isolate(3)
    c.tick(3, 200)  # many election timeouts while partitioned
    c.stabilize()
    assert c[3].term == term, "pre-vote must not bump the isolated node's term"
    assert c[3].role is Role.PRE_CANDIDATE
    c.heal()
    c.tick_all(30)
    assert leader.role is Role.LEADER and leader.term == term
    assert c[3].lead == 1 and c[3].role is Role.FOLLOWER


def test_without_prevote_rejoining_node_disrupts_leader() -> None:
    """Control for the test above: the same script without pre-vote/check-quorum does disrupt."""
    c = Cluster(3, pre_vote=False, check_quorum=False)
    leader = c.elect(1)
    term = leader.term
    c.isolate(3)
    c.tick(3, 200)
    c.stabilize()
    assert c[3].term > term
    c.heal()
    c.tick_all(25)
    assert leader.term > term  # the rejoining node's term forced the leader out


def test_follower_in_lease_ignores_vote_from_higher_term() -> None:
    c = Cluster(3)
    c.elect(1)
    c[2].step(Message(type=MT.VOTE, src=3, dst=2, term=99, index=100, log_term=99))
    assert c[2].term == 2
    assert c[2].lead == 1
    assert not [m for m in c[2].msgs if m.type is MT.VOTE_RESP]


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(1)
    for _ in range(2 * 10 + 1):
        c.tick(1)
        c.deliver_round()
    assert leader.role is Role.FOLLOWER
    assert leader.lead is None


def test_check_quorum_leader_stays_with_quorum() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)
    c.tick_all(50)
    assert leader.role is Role.LEADER


def test_learner_never_campaigns_and_does_not_count() -> None:
    c = Cluster([1, 2, 3], seed=1)
    c.elect(1)
    c.add(4)
    c[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    c.stabilize()
    c.tick_all(5)
    assert 4 in c[1].learners and c[4].learners == {4}
    # The learner is isolated from the leader for a long time: it never campaigns.
    c.isolate(4)
    c.tick(4, 300)
    assert not [m for m in c[4].msgs if m.type in (MT.VOTE, MT.PRE_VOTE)]
    assert c[4].role is Role.FOLLOWER
    c.heal()
    # With voters 2 and 3 cut off, the learner's acks must not commit anything.
    c.isolate(2)
    c.cut(1, 3)
    before = c[1].log.committed
    idx = c.propose(1, b"x")
    c.tick(1, 3)
    c.stabilize()
    assert c[1].status().progress[4].match >= idx
    assert c[1].log.committed == before


def test_campaign_rejected_for_stale_log() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.propose(1, b"a")
    c.heal()
    c[3].campaign()  # pre-vote: 1 and 2 have longer logs (and a live leader)
    c.stabilize()
    assert c[1].role is Role.LEADER and c[3].role is not Role.LEADER


# ------------------------------------------------------------------------------ replication


def test_replication_batches_and_pipelines() -> None:
    c = Cluster(3, max_size_per_msg=100, max_inflight_msgs=4)
    c.elect(1)
    c.sent.clear()
    for i in range(40):
        c[1].propose(b"%03d" % i)
    c.stabilize()
    assert all(c.normal_applied(i) == [b"%03d" % k for k in range(40)] for i in (1, 2, 3))
    appends = c.sent_of(MT.APPEND, src=1, dst=2)
    assert max(len(m.entries) for m in appends) > 1  # batching
    assert max(sum(len(e.data) + 16 for e in m.entries) for m in appends) <= 100


def test_inflight_window_limits_unacked_appends() -> None:
    c = Cluster(3, max_inflight_msgs=2, max_size_per_msg=1)
    c.elect(1)
    c.isolate(2)  # messages to 2 vanish: the window must fill and stop
    c.sent.clear()
    for _ in range(10):
        c[1].propose(b"x")
        c.deliver_round()
    to2 = [m for m in c.sent_of(MT.APPEND, src=1, dst=2) if m.entries]
    assert len(to2) == 2


def test_fast_backtracking_takes_round_trips_per_term_not_per_entry() -> None:
    # Leader-to-be 1 and node 3: [t1 x 10, t3 x 50]. Follower 2: [t1 x 10, t2 x 100].
    good = [1] * 10 + [3] * 50
    bad = [1] * 10 + [2] * 100
    storages = {
        1: make_storage([1, 2, 3], good, term=3),
        2: make_storage([1, 2, 3], bad, term=3),
        3: make_storage([1, 2, 3], good, term=3),
    }
    c = Cluster([1, 2, 3], storages=storages)
    c.elect(1)
    c.stabilize()
    rejects = [m for m in c.sent_of(MT.APPEND_RESP, src=2) if m.reject]
    assert len(rejects) in (1, 2, 3), len(rejects)  # one per conflicting term, not per entry
    assert c[2].log.last_index() == c[1].log.last_index()
    assert [e.term for e in c[2].log.all_entries()] == [e.term for e in c[1].log.all_entries()]


def test_commit_rule_previous_term_entry_not_committed_by_counting_replicas() -> None:
    """Raft Figure 8: a leader may not commit an entry of an earlier term by replica count."""
    # Node 1 holds an uncommitted entry at index 2 from term 2; it becomes leader of term 3.
    storages = {
        1: make_storage([1, 2, 3], [2], term=2),
        2: make_storage([1, 2, 3], [], term=2),
        3: make_storage([1, 2, 3], [], term=2),
    }
    c = Cluster([1, 2, 3], storages=storages)
    c.filters.append(lambda m: m.type is MT.APPEND)  # hold back replication
    c.elect(1)
    leader = c[1]
    assert leader.role is Role.LEADER and leader.term == 3
    assert leader.log.last_index() == 3  # index 3 is the term-3 no-op
    # Followers acknowledge index 2 only (as if the no-op were lost): a majority holds it...
    for f in (2, 3):
        leader.step(Message(type=MT.APPEND_RESP, src=f, dst=1, term=3, index=2))
    assert leader.log.committed == 1, "entry of term 2 must not be committed by counting"
    # ...and it commits only through the current-term entry.
    leader.step(Message(type=MT.APPEND_RESP, src=2, dst=1, term=3, index=3))
    assert leader.log.committed == 3


def test_stale_leader_learns_higher_term_from_append_response() -> None:
    c = Cluster(3, check_quorum=False)  # so the isolated leader does not step down by itself
    c.elect(1)
    c.isolate(1)
    c.elect(2)
    assert c[2].role is Role.LEADER
    c.heal()
    c[1].propose(b"lost")  # old leader (check-quorum not yet fired) still accepts
    c.stabilize()
    assert c[1].role is Role.FOLLOWER and c[1].term == c[2].term
    assert b"lost" not in c.normal_applied(2)


# ------------------------------------------------------------------------------ snapshots


def _compact(c: Cluster, i: int) -> None:
    core, st = c[i], c.storages[i]
    st.create_snapshot(core.log.applied, core.conf_state(), b"S" * 1000)
    st.compact(core.log.applied)


def test_chunked_snapshot_install() -> None:
    c = Cluster(3, snapshot_chunk_size=100)
    c.elect(1)
    c.isolate(3)
    for i in range(20):
        c.propose(1, b"v%d" % i)
    _compact(c, 1)
    c.heal()
    c.sent.clear()
    c.tick_all(3)
    chunks = c.sent_of(MT.SNAPSHOT, src=1, dst=3)
    assert len(chunks) == 10
    assert [m.offset for m in chunks] == list(range(0, 1000, 100))
    assert chunks[-1].done and not any(m.done for m in chunks[:-1])
    assert c.storages[3].snapshot().data == b"S" * 1000
    assert c[3].log.committed == c[1].log.committed
    c.propose(1, b"after")
    assert c.normal_applied(3)[-1] == b"after"
    assert c[1].status().progress[3].state.value == "replicate"


def test_lost_snapshot_chunk_is_retransmitted() -> None:
    c = Cluster(3, snapshot_chunk_size=100)
    c.elect(1)
    c.isolate(3)
    for i in range(5):
        c.propose(1, b"v%d" % i)
    _compact(c, 1)
    c.heal()
    dropped: list[Message] = []

    def drop_third_chunk(m: Message) -> bool:
        if m.type is MT.SNAPSHOT and m.offset == 300 and not dropped:
            dropped.append(m)
            return True
        return False

    c.filters.append(drop_third_chunk)
    c.tick_all(5)
    assert dropped
    assert c.storages[3].snapshot().metadata.index == c.storages[1].snapshot().metadata.index
    assert c.storages[3].snapshot().data == b"S" * 1000


# ------------------------------------------------------------------------------ membership


def test_one_conf_change_at_a_time() -> None:
    c = Cluster(3)
    c.elect(1)
    c.add(4)
    c.add(5)
    c.filters.append(lambda m: m.type is MT.APPEND)  # keep the first change uncommitted
    c[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    with pytest.raises(ProposalDroppedError):
        c[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 5))
    c.heal()
    c.tick_all(2)
    assert c[1].learners == {4}
    c[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 5))
    c.stabilize()
    assert c[1].learners == {4, 5}


def test_conf_change_validation() -> None:
    c = Cluster(3)
    c.elect(1)
    with pytest.raises(ValueError):
        c[1].propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 2))
    with pytest.raises(ValueError):
        c[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE, 9))
    with pytest.raises(NotLeaderError) as ei:
        c[2].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    assert ei.value.leader == 1


def test_add_learner_promote_then_new_voter_counts() -> None:
    c = Cluster(3)
    c.elect(1)
    c.add(4)
    c[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    c.stabilize()
    c.tick_all(2)
    assert c[1].status().progress[4].match == c[1].log.last_index()
    c[1].propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 4))
    c.stabilize()
    assert c[1].voters == {1, 2, 3, 4} and not c[1].learners
    assert c[4].voters == {1, 2, 3, 4}
    # 4 voters: quorum is 3, so leader + 4 alone cannot commit, leader + 2 + 4 can.
    c.isolate(2)
    c.cut(1, 3)
    before = c[1].log.committed
    c.propose(1, b"x")
    assert c[1].log.committed == before
    c.heal()
    c.isolate(3)
    c.tick_all(1)
    assert c[1].log.committed > before


def test_removed_leader_steps_down() -> None:
    c = Cluster(3)
    c.elect(1)
    c[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE, 1))
    c.stabilize()
    assert c[1].role is Role.FOLLOWER
    assert c[2].voters == {2, 3}
    for _ in range(60):
        c.tick_all(1)
        if any(c[i].role is Role.LEADER for i in (2, 3)):
            break
    assert any(c[i].role is Role.LEADER for i in (2, 3))


# ------------------------------------------------------------------------------ transfer


def test_transfer_leadership_to_caught_up_follower() -> None:
    c = Cluster(3)
    c.elect(1)
    c[1].transfer_leadership(2)
    c.stabilize()
    assert c[2].role is Role.LEADER and c[1].role is Role.FOLLOWER
    assert c.sent_of(MT.TIMEOUT_NOW, src=1, dst=2)


def test_transfer_waits_for_catch_up_and_drops_proposals() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.propose(1, b"a")
    c[1].transfer_leadership(3)
    with pytest.raises(ProposalDroppedError):
        c[1].propose(b"b")
    assert not c.sent_of(MT.TIMEOUT_NOW)
    c.heal()
    c.tick_all(2)
    assert c[3].role is Role.LEADER
    assert c.normal_applied(3) == [b"a"]


def test_transfer_aborts_after_election_timeout() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c[1].transfer_leadership(3)
    assert c[1].lead_transferee == 3
    c.tick_all(10)
    assert c[1].lead_transferee is None and c[1].role is Role.LEADER
    c.propose(1, b"ok")
    assert c.normal_applied(2) == [b"ok"]


# ------------------------------------------------------------------------------ ReadIndex


def test_read_index_waits_for_current_term_commit_and_quorum() -> None:
    c = Cluster(3)
    c.filters.append(lambda m: m.type is MT.APPEND)  # the no-op cannot commit yet
    leader = c.elect(1)
    assert leader.log.committed < leader.log.last_index()
    leader.read_index(b"r1")
    c.tick_all(3)
    assert c.reads[1] == []
    assert not [m for m in c.sent_of(MT.HEARTBEAT, src=1) if m.context == b"r1"]
    c.heal()
    c.tick_all(2)  # the no-op commits; the read turns into a heartbeat round; a quorum acks
    assert [m for m in c.sent_of(MT.HEARTBEAT, src=1) if m.context == b"r1"]
    assert [(rs.request_ctx, rs.index) for rs in c.reads[1]] == [(b"r1", leader.log.committed)]


def test_read_index_needs_quorum_confirmation() -> None:
    c = Cluster(3, check_quorum=False)
    leader = c.elect(1)
    c.isolate(1)
    leader.read_index(b"r2")
    c.tick_all(5)
    assert c.reads[1] == []
    c.heal()
    c.tick_all(1)
    assert [rs.request_ctx for rs in c.reads[1]] == [b"r2"]


def test_follower_read_index_is_forwarded() -> None:
    c = Cluster(3)
    c.elect(1)
    c.propose(1, b"w")
    c[2].read_index(b"f1")
    c.stabilize()
    assert [(rs.request_ctx, rs.index) for rs in c.reads[2]] == [(b"f1", c[1].log.committed)]
    assert c.reads[1] == []


def test_read_index_without_leader_raises() -> None:
    c = Cluster(3)
    with pytest.raises(NotLeaderError) as ei:
        c[1].read_index(b"x")
    assert ei.value.leader is None


# ------------------------------------------------------------------------------ Ready contract


def test_ready_contract() -> None:
    st = MemoryStorage()
    core = RaftCore(Config(id=1, rng=random.Random(0), voters=(1,)), st)
    assert core.has_ready()
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert [e.index for e in rd.entries] == [1] and rd.must_sync
    with pytest.raises(AssertionError):
        core.ready()
    st.append(rd.entries)
    st.set_hard_state(rd.hard_state)
    core.advance(rd)
    core.campaign()  # single voter: immediate leader
    rd = core.ready()
    assert rd.soft_state is not None and rd.soft_state.role is Role.LEADER
    st.append(rd.entries)
    core.advance(rd)
    rd = core.ready() if core.has_ready() else None
    if rd is not None:
        core.advance(rd)
    assert not core.has_ready()
    idx = core.propose(b"x")
    rd = core.ready()
    # the leader counts its own copy only once it is durable: not committed in this Ready ...
    assert [e.index for e in rd.entries] == [idx] and rd.must_sync
    assert rd.committed_entries == [] and (rd.hard_state is None or rd.hard_state.commit < idx)
    assert rd.soft_state is None
    st.append(rd.entries)
    core.advance(rd)
    # ... but in the next one, after advance() reported it persisted
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == idx
    assert [e.data for e in rd.committed_entries if e.kind is EntryKind.NORMAL] == [b"x"]


def test_not_leader_error_names_leader() -> None:
    c = Cluster(3)
    c.elect(2)
    with pytest.raises(NotLeaderError) as ei:
        c[1].propose(b"x")
    assert ei.value.leader == 2


def test_restart_recovers_from_storage() -> None:
    c = Cluster(3)
    c.elect(1)
    for i in range(5):
        c.propose(1, b"%d" % i)
    st = c.storages[2]
    core = RaftCore(Config(id=2, rng=random.Random(5)), st)
    assert core.term == c[2].term and core.log.committed == c[2].log.committed
    assert core.voters == set()  # membership arrives by re-applying the log
    rd = core.ready()
    assert [e.data for e in rd.committed_entries if e.kind is EntryKind.NORMAL] == [
        b"%d" % i for i in range(5)
    ]
    core.advance(rd)
    assert core.voters == {1, 2, 3}
