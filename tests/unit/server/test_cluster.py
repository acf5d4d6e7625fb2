"""Pure parts of server/cluster/ (bootstrap decision, join addresses, Hello validation,
autopilot decisions), the snapshot archive, the FSM's refusal of malformed commands, and the
driver's user-snapshot restore on an in-memory Raft node. No timing: clocks are values."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass

import pytest

from lictor.common.commands import MessageType, encode_command
from lictor.common.errors import ValidationError
from lictor.server.cluster import (
    AutopilotConfig,
    AutopilotView,
    ServerInfo,
    ServerView,
    bootstrap_voters,
    decide_autopilot,
    failure_tolerance,
    parse_join_address,
)
from lictor.server.fsm import FSM, HandlerBug
from lictor.server.members import left_servers
from lictor.server.raft.transport import raft_id
from lictor.server.snapshot_archive import build_archive, read_archive, state_summary


def info(name: str, *, expect: int = 3, dc: str = "dc1", state: bool = False,
         leader: str = "") -> ServerInfo:
    return ServerInfo(node_name=name, node_id=f"id-{name}", rpc_addr=f"10.0.0.{name[-1]}:8300",
                      datacenter=dc, bootstrap_expect=expect, has_state=state, leader=leader)


# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_waits_until_exactly_expect_servers_are_known() -> None:
    me = info("s1")
    voters, why = bootstrap_voters(me, {"id-s2": info("s2")}, 3)
    assert voters is None and "found 2 of 3" in why
    known = {"id-s2": info("s2"), "id-s3": info("s3")}
    voters, why = bootstrap_voters(me, known, 3)
    assert voters == {raft_id("id-s1"): "10.0.0.1:8300", raft_id("id-s2"): "10.0.0.2:8300",
                      raft_id("id-s3"): "10.0.0.3:8300"}
    assert why.startswith("bootstrapping with 3 voters: s1, s2, s3")


def test_every_server_computes_the_identical_voter_set() -> None:
    servers = {n: info(n) for n in ("s1", "s2", "s3")}
    results = []
    for n, me in servers.items():
        known = {s.node_id: s for k, s in servers.items() if k != n}
        results.append(bootstrap_voters(me, known, 3)[0])
    assert results[0] is not None and results[0] == results[1] == results[2]


def test_bootstrap_ignores_other_datacenters_and_reports_expect_mismatch() -> None:
    me = info("s1")
    known = {"id-s2": info("s2", dc="dc2"), "id-s3": info("s3", expect=5)}
    voters, why = bootstrap_voters(me, known, 3)
    assert voters is None
    assert "datacenter 'dc2'" in why and "bootstrap_expect=5" in why


def test_bootstrap_refuses_more_servers_than_expected() -> None:
    known = {f"id-s{i}": info(f"s{i}") for i in range(2, 5)}
    voters, why = bootstrap_voters(info("s1"), known, 3)
    assert voters is None and why.startswith("refusing to bootstrap: found 4 servers")


def test_joining_servers_without_expect_are_not_first_voters() -> None:
    known = {"id-s2": info("s2"), "id-s3": info("s3"), "id-s4": info("s4", expect=0)}
    voters, _ = bootstrap_voters(info("s1"), known, 3)
    assert voters is not None and raft_id("id-s4") not in voters


# ------------------------------------------------------------------------- addresses


# retry_join entries are LAN gossip addresses: the port defaults to 8301 (Consul's serf_lan)
@pytest.mark.parametrize("text,want", [
    ("10.0.0.1", ("10.0.0.1", 8301)),
    ("10.0.0.1:9301", ("10.0.0.1", 9301)),
    ("consul.service.internal", ("consul.service.internal", 8301)),
    ("servers.local:18401", ("servers.local", 18401)),
    ("[::1]:8301", ("::1", 8301)),
    ("[fe80::1]", ("fe80::1", 8301)),
    ("fe80::1", ("fe80::1", 8301)),
])
def test_parse_join_address(text: str, want: tuple[str, int]) -> None:
    assert parse_join_address(text) == want


@pytest.mark.parametrize("text", ["", "host:", "host:abc", "host:70000", "[::1", "a b:1", ":8300"])
def test_parse_join_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_join_address(text)


def test_server_info_from_wire_validates_each_field() -> None:
    good = info("s1").to_wire()
    assert ServerInfo.from_wire(good) == info("s1")
    for key, bad in (("node_name", 5), ("rpc_addr", "nope"), ("bootstrap_expect", "3"),
                     ("has_state", 1), ("datacenter", ""), ("node_id", None)):
        with pytest.raises(ValidationError) as exc:
            ServerInfo.from_wire({**good, key: bad})
        assert key in str(exc.value)
    with pytest.raises(ValidationError):
        ServerInfo.from_wire(["not", "a", "map"])


# ------------------------------------------------------------------------- autopilot


def sv(i: int, *, voter: bool = True, leader: bool = False, match: int = 100,
       contact: float | None = 0.05) -> ServerView:
    return ServerView(id=i, name=f"s{i}", node_id=f"id-{i}", address=f"a{i}", voter=voter,
                      leader=leader, match_index=match, last_contact=0.0 if leader else contact)


def view(*servers: ServerView, now: float = 100.0, since: dict[int, float] | None = None,
         expected: int = 3, leader_since: float = 0.0, left: tuple[int, ...] = ()) -> AutopilotView:
    return AutopilotView(now=now, term=4, last_index=100, commit_index=100, servers=servers,
                         leader_since=leader_since, healthy_since=since or {},
                         expected_servers=expected, heartbeat_interval=0.05,
                         left=frozenset(left))


CFG = AutopilotConfig(server_stabilization_time=10.0, dead_server_last_contact_threshold=30.0)


def test_new_non_voter_is_promoted_only_after_stabilisation() -> None:
    servers = (sv(1, leader=True), sv(2), sv(3), sv(4, voter=False))
    first = decide_autopilot(view(*servers, now=100.0), CFG)
    assert first.promote == () and first.healthy_since[4] == 100.0
    later = decide_autopilot(view(*servers, now=109.9, since=dict(first.healthy_since)), CFG)
    assert later.promote == ()
    ready = decide_autopilot(view(*servers, now=110.0, since=dict(first.healthy_since)), CFG)
    assert ready.promote == (4,) and "promoting s4" in ready.sentence


def test_lagging_or_silent_non_voter_is_not_promoted_and_its_clock_resets() -> None:
    lagging = (sv(1, leader=True), sv(2), sv(3), sv(4, voter=False, match=10))
    strict = AutopilotConfig(server_stabilization_time=10.0, max_trailing_logs=50)
    d = decide_autopilot(view(*lagging, since={4: 0.0}), strict)
    assert d.promote == () and 4 not in d.healthy_since
    silent = (sv(1, leader=True), sv(2), sv(3), sv(4, voter=False, contact=5.0))
    assert decide_autopilot(view(*silent, since={4: 0.0}), CFG).promote == ()


def test_dead_voter_removed_only_when_above_expected_size_with_quorum() -> None:
    four = (sv(1, leader=True), sv(2), sv(3), sv(4, contact=60.0))
    d = decide_autopilot(view(*four), CFG)
    assert d.remove == (4,) and "removing dead server s4" in d.sentence
    three = (sv(1, leader=True), sv(2), sv(3, contact=60.0))
    d = decide_autopilot(view(*three), CFG)
    assert d.remove == () and "fewer than the minimum 3" in d.sentence
    assert decide_autopilot(view(*four), AutopilotConfig(cleanup_dead_servers=False)).remove == ()


def test_dead_voter_not_removed_when_the_rest_would_lack_quorum() -> None:
    five = (sv(1, leader=True), sv(2, contact=60.0), sv(3, contact=60.0), sv(4, contact=60.0), sv(5))
    d = decide_autopilot(view(*five, expected=0), CFG)
    assert d.remove == () and "not be a quorum" in d.sentence


def test_never_heard_counts_from_leadership_start() -> None:
    servers = (sv(1, leader=True), sv(2), sv(3), sv(4, contact=None))
    assert decide_autopilot(view(*servers, now=20.0, leader_since=0.0), CFG).remove == ()
    assert decide_autopilot(view(*servers, now=31.0, leader_since=0.0), CFG).remove == (4,)


def test_health_and_failure_tolerance() -> None:
    d = decide_autopilot(view(sv(1, leader=True), sv(2), sv(3, contact=9.0)), CFG)
    healthy = {h.name: h.healthy for h in d.health}
    assert healthy == {"s1": True, "s2": True, "s3": False}
    assert failure_tolerance(d.health) == 0
    d = decide_autopilot(view(sv(1, leader=True), sv(2), sv(3)), CFG)
    assert failure_tolerance(d.health) == 1


# ------------------------------------------------------------------------- left servers


def test_a_server_that_left_is_removed_at_once_and_the_quorum_shrinks() -> None:
    servers = (sv(1, leader=True), sv(2), sv(3))
    d = decide_autopilot(view(*servers, left=(3,)), CFG)
    assert d.remove == (3,) and "removing server s3: it left the cluster (2 voters remain)" in d.sentence
    # neither min_quorum/bootstrap_expect nor cleanup_dead_servers holds back a server that left
    strict = AutopilotConfig(cleanup_dead_servers=False, min_quorum=3)
    assert decide_autopilot(view(*servers, left=(3,), expected=3), strict).remove == (3,)
    # without gossip saying "left" nothing happens to a healthy server
    assert decide_autopilot(view(*servers), CFG).remove == ()


def test_two_voters_shrink_to_one_while_the_leaver_still_acknowledges() -> None:
    d = decide_autopilot(view(sv(1, leader=True), sv(2), left=(2,), expected=2), CFG)
    assert d.remove == (2,)
    # once it is gone its vote is missing: the change could not commit, so it is not proposed
    d = decide_autopilot(view(sv(1, leader=True), sv(2, contact=5.0), left=(2,), expected=2), CFG)
    assert d.remove == () and "could not commit" in d.sentence


def test_a_left_voter_is_kept_when_the_voters_left_would_lack_a_healthy_quorum() -> None:
    servers = (sv(1, leader=True), sv(2, contact=5.0), sv(3))  # s2 failed (not dead yet), s3 left
    d = decide_autopilot(view(*servers, left=(3,)), CFG)
    assert d.remove == () and "would not be a quorum of 2" in d.sentence


def test_failed_servers_and_the_leader_are_never_removed_as_left() -> None:
    # s3 failed 10 s ago: below the dead-server threshold, and gossip does not say it left
    d = decide_autopilot(view(sv(1, leader=True), sv(2), sv(3, contact=10.0), sv(4)), CFG)
    assert d.remove == ()
    # the leader leaving hands leadership over first; autopilot never removes the leader
    assert decide_autopilot(view(sv(1, leader=True), sv(2), sv(3), left=(1,)), CFG).remove == ()


def test_a_left_non_voter_is_removed_and_never_promoted() -> None:
    servers = (sv(1, leader=True), sv(2), sv(3), sv(4, voter=False))
    d = decide_autopilot(view(*servers, now=200.0, since={4: 0.0}, left=(4,)), CFG)
    assert d.promote == () and d.remove == (4,) and "removing non-voter s4" in d.sentence


def test_left_servers_come_from_gossip_status_role_and_datacenter() -> None:
    @dataclass
    class Rec:
        name: str
        status: str
        tags: dict[str, str]
        host: str = "10.0.0.1"

    recs = [Rec("s1", "alive", {"role": "consul", "dc": "dc1", "id": "id-1"}),
            Rec("s2", "left", {"role": "consul", "dc": "dc1", "id": "id-2"}),
            Rec("s3", "failed", {"role": "consul", "dc": "dc1", "id": "id-3"}),
            Rec("s4", "left", {"role": "consul", "dc": "dc2", "id": "id-4"}),
            Rec("c1", "left", {"role": "node", "dc": "dc1", "id": "id-5"})]
    assert left_servers(recs, datacenter="dc1") == {"id-2"}


# ------------------------------------------------------------------------- snapshots, FSM


def _state_with(key: str, value: bytes) -> bytes:
    fsm = FSM()
    fsm.apply(1, encode_command(MessageType.KVS, {"op": "set", "key": key, "value": value}, 0.0))
    buf = io.BytesIO()
    fsm.snapshot().persist(buf)
    return buf.getvalue()


def test_archive_round_trip_and_refusals() -> None:
    state = _state_with("k", b"v")
    data = build_archive(state, index=7, term=2)
    a = read_archive(data)
    assert a.state == state and a.meta["Index"] == 7 and a.meta["Term"] == 2
    assert state_summary(a.state)["kv"] == 1
    with pytest.raises(ValueError, match="not gzip"):
        read_archive(b"plain bytes")
    with pytest.raises(ValueError, match="broken tar"):
        read_archive(gzip.compress(b"x" * 1000))
    pos = 0
    tampered_state = build_archive(_state_with("k", b"w"), index=7, term=2)
    inner = bytearray(gzip.decompress(tampered_state))
    at = inner.rfind(b"\xc4\x01w")  # the msgpack bin value b"w" inside state.bin
    assert at > 0 and pos >= 0
    inner[at + 2] = ord("z")
    with pytest.raises(ValueError, match="checksum mismatch for state.bin"):
        read_archive(gzip.compress(bytes(inner)))
    bad_state = build_archive(b"\x93garbage", index=1, term=1)
    with pytest.raises(ValueError, match="state.bin cannot be loaded"):
        read_archive(bad_state)


def test_fsm_reports_a_handler_bug_without_changing_state() -> None:
    fsm = FSM()
    out = fsm.apply(1, encode_command(MessageType.KVS, {"key": "k", "value": b"v"}, 0.0))
    assert isinstance(out, HandlerBug) and "KeyError('op')" in out.error and "apply_kvs" in out.traceback
    assert fsm.store.kvs == {}


def test_fsm_restore_command_replaces_the_store() -> None:
    fsm = FSM()
    fsm.apply(1, encode_command(MessageType.KVS, {"op": "set", "key": "old", "value": b"1"}, 0.0))
    fsm.apply(2, encode_command(MessageType.RESTORE, {"state": _state_with("new", b"2")}, 0.0))
    assert set(fsm.store.kvs) == {"new"} and fsm.last_applied == 2


async def test_restore_user_snapshot_replicates_through_the_log() -> None:
    from lictor.server.raft.driver import RaftNode, RaftNodeConfig
    from lictor.server.raft.transport import MemoryNetwork

    from lictor.common.clock import ManualClock

    net = MemoryNetwork()
    clock = ManualClock()
    node = RaftNode(RaftNodeConfig(node_id=1, address="n1", bootstrap={1: "n1"}, tick_interval=0.01),
                    FSM(), net.transport(1, "n1"), clock=clock)
    await node.start()
    try:
        for _ in range(200):  # 2 simulated seconds: a single voter elects itself in 0.1-0.2 s
            if node.is_leader():
                break
            await clock.advance(0.01)
        assert node.is_leader()
        await node.apply(encode_command(MessageType.KVS, {"op": "set", "key": "old", "value": b"1"}, 0.0))
        with pytest.raises(ValueError):
            await node.restore_user_snapshot(io.BytesIO(b"\x93not a state"))
        assert set(node.fsm.store.kvs) == {"old"}
        index = await node.restore_user_snapshot(io.BytesIO(_state_with("new", b"2")))
        assert set(node.fsm.store.kvs) == {"new"} and node.applied_index == index
    finally:
        await node.close()
