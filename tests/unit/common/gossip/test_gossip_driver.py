"""GossipNode over real UDP/TCP on 127.0.0.1, with fast timings.

These wait for conditions (polling with a generous deadline); they never assert on speed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from lictor.common.gossip.driver import GossipJoinError, GossipNode, parse_address
from lictor.common.gossip.keyring import Keyring, generate_key
from lictor.common.gossip.members import MemberState
from lictor.common.gossip.messages import Ack, Ping, encode_message, encode_packet
from lictor.common.gossip.swim import EventKind, SwimConfig

DEADLINE = 15.0


async def wait_for(cond: Callable[[], bool], timeout: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def addr(node: GossipNode) -> str:
    return f"{node.address[0]}:{node.address[1]}"


def states(node: GossipNode) -> dict[str, MemberState]:
    return {m.name: m.state for m in node.members()}


def converged(nodes: list[GossipNode]) -> bool:
    names = {n.name for n in nodes}
    for n in nodes:
        s = states(n)
        if {k for k, v in s.items() if v is MemberState.ALIVE} != names:
            return False
    return True


class Cluster:
    def __init__(self) -> None:
        self.nodes: list[GossipNode] = []

    async def add(self, name: str, keyring: Keyring | None = None, **cfg: object) -> GossipNode:
        node = GossipNode(config=SwimConfig.fast(name, **cfg), keyring=keyring,
                          tags={"role": "client"})
        self.nodes.append(node)
        await node.start()
        return node

    async def stop(self) -> None:
        for n in self.nodes:
            await n.stop()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        await c.stop()


async def five(cluster: Cluster, keyring: Callable[[], Keyring | None] = lambda: None
               ) -> list[GossipNode]:
    nodes = [await cluster.add(f"n{i}", keyring()) for i in range(5)]
    for n in nodes[1:]:
        assert await n.join([addr(nodes[0])]) == 1
    await wait_for(lambda: converged(nodes))
    return nodes


def test_parse_address() -> None:
    assert parse_address("10.0.0.1:8301") == ("10.0.0.1", 8301)
    assert parse_address("consul.service") == ("consul.service", 8301)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_address("host:0")


async def test_five_members_converge_and_a_stopped_one_is_seen_failed(cluster: Cluster) -> None:
    nodes = await five(cluster)
    failed: list[str] = []

    def record(node: GossipNode) -> None:
        async def consume() -> None:
            async for ev in node.events():
                if ev.kind is EventKind.FAILED:
                    failed.append(f"{node.name}:{ev.member.name}")
        task = asyncio.get_running_loop().create_task(consume())
        cluster_tasks.append(task)

    cluster_tasks: list[asyncio.Task[None]] = []
    for n in nodes[:4]:
        record(n)
    await asyncio.sleep(0)
    await nodes[4].stop()
    await wait_for(lambda: all(states(n)["n4"] is MemberState.DEAD for n in nodes[:4]))
    assert all(states(n)[o] is MemberState.ALIVE for n in nodes[:4] for o in ("n0", "n1"))
    for n in nodes[:4]:
        await n.stop()
    await asyncio.gather(*cluster_tasks)
    assert sorted(failed) == [f"n{i}:n4" for i in range(4)]


async def test_join_resolves_dns_names_and_fails_cleanly_without_anyone(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    assert await b.join([f"localhost:{a.address[1]}"]) == 1
    await wait_for(lambda: converged([a, b]))
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with pytest.raises(GossipJoinError):
        await b.join([f"127.0.0.1:{dead_port}"], attempts=2, retry_interval=0.05)


async def test_graceful_leave_is_seen_as_leave(cluster: Cluster) -> None:
    nodes = await five(cluster)
    assert await nodes[2].leave(timeout=5.0)
    await nodes[2].stop()
    await wait_for(lambda: all(states(n)["n2"] is MemberState.LEFT for n in nodes if n.name != "n2"))


async def test_tags_update_reaches_everyone(cluster: Cluster) -> None:
    nodes = await five(cluster)
    nodes[1].update_tags({"role": "server", "dc": "dc1"})
    await wait_for(lambda: all(
        dict(next(m for m in n.members() if m.name == "n1").tags).get("role") == "server"
        for n in nodes))


async def test_members_with_the_same_key_converge(cluster: Cluster) -> None:
    key = generate_key()
    nodes = await five(cluster, lambda: Keyring([key]))
    assert all(n.dropped == {} for n in nodes)


async def test_a_member_with_a_wrong_key_cannot_join(cluster: Cluster) -> None:
    key = generate_key()
    a = await cluster.add("a", Keyring([key]))
    b = await cluster.add("b", Keyring([key]))
    assert await b.join([addr(a)]) == 1
    intruder = await cluster.add("intruder", Keyring([generate_key()]))
    with pytest.raises(GossipJoinError):
        await intruder.join([addr(a)], attempts=2, retry_interval=0.05)
    assert a.dropped.get("decrypt", 0) >= 1
    # and its UDP packets are dropped as decrypt failures too
    sock = intruder._udp
    assert sock is not None
    for _ in range(3):
        sock.sendto(intruder._seal(encode_packet([encode_message(
            Ping(seq=1, target="a", source="intruder", source_addr=intruder.address))])),
            a.address)
    await wait_for(lambda: a.dropped.get("decrypt", 0) >= 4)
    await asyncio.sleep(0.3)
    assert "intruder" not in states(a) and "intruder" not in states(b)
    assert states(intruder).keys() == {"intruder"}


async def test_bad_packets_are_dropped_and_counted_never_crash(cluster: Cluster) -> None:
    key = generate_key()
    a = await cluster.add("a", Keyring([key]))
    b = await cluster.add("b", Keyring([key]))
    await b.join([addr(a)])
    await wait_for(lambda: converged([a, b]))
    good = b._seal(encode_packet([encode_message(Ack(seq=12345))]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00garbage\xff", a.address)            # unknown version
        s.sendto(b"\x01" + b"\x93\x01", a.address)          # plaintext to an encrypting member
        s.sendto(good[:10], a.address)                      # truncated
        s.sendto(good[:-3], a.address)                      # truncated tag
        s.sendto(b"\x81" + bytes(5000), a.address)          # too large
        s.sendto(good, a.address)
        s.sendto(good, a.address)                           # exact replay
        s.sendto(Keyring([key]).encrypt(b"\xc1not msgpack"), a.address)  # authentic garbage
    await wait_for(lambda: sum(a.dropped.values()) >= 7)
    assert a.dropped == {"version": 1, "unencrypted": 1, "truncated": 1, "decrypt": 1,
                         "too_large": 1, "replay": 1, "decode": 1}
    # a TCP stream with garbage and one with an absurd length
    for payload in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff"):
        r, w = await asyncio.open_connection(*a.address)
        w.write(payload)
        await w.drain()
        await r.read()
        w.close()
        await w.wait_closed()
    await wait_for(lambda: a.dropped.get("too_large", 0) == 2)
    assert a.dropped["version"] == 2
    # still healthy
    await asyncio.sleep(0.5)
    assert converged([a, b])


async def test_plaintext_cluster_drops_garbage(cluster: Cluster) -> None:
    a = await cluster.add("a")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x01\xc1\xc1", a.address)
        s.sendto(b"\x01", a.address)
        s.sendto(b"\x81" + bytes(40), a.address)
    await wait_for(lambda: sum(a.dropped.values()) >= 3)
    assert a.dropped == {"decode": 1, "truncated": 1, "decrypt": 1}
