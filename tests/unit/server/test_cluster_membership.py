"""A real single-server `Cluster` on loopback (Raft with 10 ms ticks, in a temp data dir):
``Cluster.Info`` and ``probe_rpc_port``, "settled" as the leader's configuration sees it, and the
leave steps of the only voter."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from lictor.common.commands import MessageType, encode_command
from lictor.common.errors import ValidationError
from lictor.common.gossip.driver import GossipNode
from lictor.common.gossip.swim import SwimConfig
from lictor.common.rpc import PeerInfo, RPCServer
from lictor.server.cluster import Cluster, ClusterConfig, ProbeVerdict, probe_rpc_port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def single(tmp_path: Path) -> AsyncIterator[Cluster]:
    port = free_port()
    c = Cluster(ClusterConfig(node_name="s1", node_id="id-s1", datacenter="dc1",
                              rpc_addr=f"127.0.0.1:{port}", bind=("127.0.0.1", port),
                              serf_addr="127.0.0.1:18301", data_dir=str(tmp_path), bootstrap=True,
                              tick_interval=0.01))
    await c.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while not c.raft.is_leader():
            assert loop.time() < end, "single server did not become leader"
            await asyncio.sleep(0.01)
        yield c
    finally:
        await c.close()


async def test_cluster_info_says_who_answers_and_where_its_gossip_is(single: Cluster) -> None:
    probe = await probe_rpc_port(single.config.rpc_addr)
    assert probe.verdict is ProbeVerdict.SERVER_RPC and probe.info is not None
    assert (probe.info.node_name, probe.info.serf_addr, probe.info.datacenter) == \
        ("s1", "127.0.0.1:18301", "dc1")
    assert single.known == {}  # a probe is read-only: nobody was learned as a server


async def test_probe_sends_nothing_where_nobody_listens_and_gossip_drops_it_quietly() -> None:
    assert (await probe_rpc_port(f"127.0.0.1:{free_port()}")).verdict is ProbeVerdict.UNREACHABLE
    node = GossipNode(config=SwimConfig.fast("g"), tags={"role": "node"})
    await node.start()
    try:
        probe = await probe_rpc_port(f"127.0.0.1:{node.address[1]}", timeout=1.0)
        assert probe.verdict is ProbeVerdict.NOT_RPC
    finally:
        await node.stop()


async def test_an_older_server_without_cluster_info_still_counts_as_an_rpc_port() -> None:
    class Old:
        async def handle(self, method: str, args: dict, peer: PeerInfo) -> object:
            raise ValidationError(f"unknown RPC method {method!r}")

        def notify(self, method: str, args: dict, peer: PeerInfo) -> None:
            pass

    async with RPCServer(Old(), port=0) as srv:
        probe = await probe_rpc_port(srv.addr)
    assert probe.verdict is ProbeVerdict.SERVER_RPC and probe.info is None
    assert "unknown RPC method" in probe.detail


async def test_settled_follows_the_leaders_view_of_the_configuration(single: Cluster) -> None:
    assert single._settled()
    # the leader's last Hello reply did not list this server: it was removed while away (or
    # when it left) and its own log never got the entry that removed it -> not settled: Join
    single.members_of_leader = frozenset({"id-s2", "id-s3"})
    assert not single._settled()
    single.members_of_leader = frozenset({"id-s1", "id-s2"})
    assert single._settled()


async def test_the_only_voter_leaves_without_waiting_and_stops_formation(single: Cluster) -> None:
    assert await single.prepare_leave() == "the only voter: nothing to hand over"
    assert single.leaving
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await single.wait_removed(timeout=5.0)
    assert loop.time() - t0 < 1.0
    assert single.raft.is_leader()  # nothing could take over; it still serves until stopped


# ----------------------------------------------------------------------------- three servers


class Gossip:
    """Stands in for LAN gossip: which servers are alive (Hello targets) and which left (what
    the leader takes out of the Raft configuration)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.left: set[str] = set()

    def alive_except(self, me: int) -> list[str]:
        return [f"127.0.0.1:{p}" for j, p in enumerate(self.ports)
                if j != me and f"id-s{j + 1}" not in self.left]


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[tuple[list[Cluster], Gossip]]:
    """Three in-process servers forming by bootstrap_expect."""
    gossip = Gossip([free_port() for _ in range(3)])
    cs: list[Cluster] = []
    for i, port in enumerate(gossip.ports):
        c = Cluster(ClusterConfig(node_name=f"s{i + 1}", node_id=f"id-s{i + 1}", datacenter="dc1",
                                  rpc_addr=f"127.0.0.1:{port}", bind=("127.0.0.1", port),
                                  data_dir=str(tmp_path / f"s{i + 1}"), bootstrap_expect=3,
                                  retry_interval=0.05, tick_interval=0.01))
        c.gossip_servers = lambda me=i: gossip.alive_except(me)
        c.left_servers = lambda: set(gossip.left)
        cs.append(c)
    for c in cs:
        await c.start()
    try:
        await until(lambda: leader_of(cs) is not None and all(len(c.raft.members()[0]) == 3 for c in cs))
        yield cs, gossip
    finally:
        for c in cs:
            await c.close()


async def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def leader_of(cs: list[Cluster]) -> Cluster | None:
    return next((c for c in cs if not c._closed and c.raft.is_leader()), None)


async def leave(c: Cluster, everyone: list[Cluster], gossip: Gossip) -> bool:
    """What Agent.leave does, with gossip's part simulated: hand over, "left", drain."""
    await c.prepare_leave()
    gossip.left.add(c.config.node_id)
    for other in everyone:  # the member event wakes formation and autopilot
        other.wake()
    return await c.wait_removed(timeout=10.0)


def kv_set(key: str) -> bytes:
    return encode_command(MessageType.KVS, {"op": "set", "key": key, "value": b"v"}, 0.0)


async def test_the_leader_leaves_then_a_follower_and_the_last_server_still_commits(
        three: tuple[list[Cluster], Gossip]) -> None:
    cs, gossip = three
    first = leader_of(cs)
    assert first is not None
    assert await leave(first, cs, gossip)
    rest = [c for c in cs if c is not first]
    await first.close()
    await until(lambda: leader_of(rest) is not None)
    new = leader_of(rest)
    assert new is not None
    await until(lambda: all(c.raft.members()[0] == {r.id for r in rest} for c in rest))
    assert sorted(new.raft.peers()) == sorted(c.config.rpc_addr for c in rest)
    await new.raft.apply(kv_set("after-first-leave"))
    # a 2-voter cluster: the follower's own vote is needed to commit its removal; it waits
    follower = next(c for c in rest if c is not new)
    assert await leave(follower, rest, gossip)
    await follower.close()
    await until(lambda: new.raft.members()[0] == {new.id})
    assert new.raft.is_leader()
    await new.raft.apply(kv_set("alone"))  # the last server commits alone: the quorum is 1
    assert "alone" in new.raft.fsm.store.kvs


async def test_a_failed_server_stays_in_the_configuration(three: tuple[list[Cluster], Gossip]) -> None:
    cs, gossip = three
    victim = next(c for c in cs if not c.raft.is_leader())
    await victim.close()  # crashed: gossip would say failed, never left
    leader = leader_of(cs)
    assert leader is not None
    for _ in range(10):
        assert await leader.autopilot_once() is not None
    assert victim.id in leader.raft.members()[0]
