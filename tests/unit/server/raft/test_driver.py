"""RaftNode on a MemoryNetwork (and file stores in tmp_path): 10 ms ticks of a shared ManualClock
that the helpers move one tick per turn of the event loop (test_driver_helpers.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from lictor.common.errors import (
    LeadershipLostError,
    NoLeaderError,
    NotLeaderError,
    ShutdownError,
)
from lictor.server.raft.filestore import FileLogStore
from lictor.server.raft.logstore import LogRecord, MemoryLogStore, MemoryStableStore
from lictor.server.raft.messages import Message, MessageType
from lictor.server.raft.transport import MemoryTransport

from .test_driver_helpers import Cluster, eventually, fsm_state, kv_set


@pytest.fixture
async def cluster():
    c = await Cluster().start()
    yield c
    await c.close()


async def test_three_nodes_elect_apply_and_converge(cluster: Cluster) -> None:
    leader = await cluster.leader()
    results = [await leader.apply(kv_set(f"k{i}", f"v{i}")) for i in range(5)]
    assert [r[1] for r in results] == [True] * 5
    assert [r[0] for r in results] == sorted({r[0] for r in results})
    await cluster.converge()
    for n in cluster.nodes.values():
        assert fsm_state(n.fsm)["k4"][0] == b"v4"
    st = leader.stats()
    assert st["role"] == "leader" and st["applied_index"] == st["commit_index"]
    assert sorted(leader.peers()) == sorted(cluster.addr(i) for i in cluster.ids)
    conf = leader.configuration()
    assert [(m["id"], m["voter"], m["leader"]) for m in conf] == [
        (i, True, i == leader.id) for i in cluster.ids
    ]


async def test_apply_on_follower_raises_not_leader_with_address(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.apply(kv_set("a", "1"))  # followers have heard from this leader by now
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    await eventually(lambda: follower.leader() is not None)
    with pytest.raises(NotLeaderError) as ei:
        await follower.apply(kv_set("b", "2"))
    assert ei.value.leader == cluster.addr(leader.id)
    assert follower.leader() == cluster.addr(leader.id)
    assert follower.last_contact() < 1.0
    assert leader.last_contact() == 0.0


async def test_leadership_events(cluster: Cluster) -> None:
    events: dict[int, list[bool]] = {i: [] for i in cluster.ids}
    for i, n in cluster.nodes.items():
        n.add_leadership_listener(events[i].append)
    leader = await cluster.leader()
    it = leader.leadership_changes()
    assert await it.__anext__() is True
    await leader.close()
    assert await it.__anext__() is False
    await it.aclose()
    assert events[leader.id][-1] is False and True in events[leader.id]


class CountingFsync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fsync(fd)


async def test_group_commit_200_applies_cost_few_syncs(tmp_path: Path) -> None:
    c = Cluster()
    fsyncs = {i: CountingFsync() for i in c.ids}
    for i in c.ids:
        await c.make(i, stores={"log_store": FileLogStore(tmp_path / f"log{i}", fsync=fsyncs[i])}).start()
    try:
        leader = await c.leader()
        await leader.apply(kv_set("warm", "up"))
        before = fsyncs[leader.id].calls
        appends_before = leader.metrics["appends"]
        results = await asyncio.gather(*(leader.apply(kv_set(f"k{i}", "v")) for i in range(200)))
        syncs = fsyncs[leader.id].calls - before
        assert len({r[0] for r in results}) == 200
        assert syncs < 40, syncs  # far fewer than one per apply
        assert leader.metrics["appends"] - appends_before < 40
        await c.converge()
    finally:
        await c.close()


class DurabilityCheckingLogStore(MemoryLogStore):
    """Acknowledges appends a little later, and remembers which (index, term) are durable."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: dict[int, int] = {}

    def append_async(self, records: Sequence[LogRecord]) -> asyncio.Future[None]:
        self.append(records)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            for r in records:
                self.durable[r.index] = r.term
            fut.set_result(None)

        loop.call_later(0.002, done)
        return fut


class CheckingTransport(MemoryTransport):
    """Asserts persist-before-send: entries and votes are durable before any message leaves."""

    log_store: DurabilityCheckingLogStore
    stable: MemoryStableStore
    checked = 0

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            for e in m.entries:
                assert self.log_store.durable.get(e.index) == e.term, (m, e)
                type(self).checked += 1
            if m.type is MessageType.VOTE_RESP and not m.reject:
                hs = self.stable.load()
                assert hs.vote == m.dst and hs.term == m.term, (m, hs)
        super().send(messages)


async def test_handle_ready_persists_before_sending() -> None:
    c = Cluster()
    for i in c.ids:
        t = CheckingTransport(c.net, i, c.addr(i))
        t.log_store = DurabilityCheckingLogStore()
        t.stable = MemoryStableStore()
        await c.make(i, transport=t,
                     stores={"log_store": t.log_store, "stable_store": t.stable}).start()
    try:
        leader = await c.leader()
        await asyncio.gather(*(leader.apply(kv_set(f"k{i}", "v")) for i in range(30)))
        await c.converge()
        assert CheckingTransport.checked > 30
        for n in c.nodes.values():
            assert n.failed is None
    finally:
        await c.close()


async def test_leader_crash_new_leader_keeps_acked_writes(cluster: Cluster) -> None:
    leader = await cluster.leader()
    acked = [await leader.apply(kv_set(f"acked{i}", "v")) for i in range(10)]
    inflight = [asyncio.ensure_future(leader.apply(kv_set(f"late{i}", "v"))) for i in range(20)]
    await asyncio.sleep(0)
    await leader.close()
    outcomes = await asyncio.wait_for(asyncio.gather(*inflight, return_exceptions=True), 2.0)
    for o in outcomes:
        assert isinstance(o, (tuple, ShutdownError, LeadershipLostError)), o
    with pytest.raises(ShutdownError):
        await leader.apply(kv_set("x", "y"))
    survivors = [i for i in cluster.ids if i != leader.id]
    new = await cluster.leader(among=survivors)
    assert new is not leader
    await new.apply(kv_set("after", "crash"))
    await cluster.converge(survivors)
    state = fsm_state(new.fsm)
    for i in range(len(acked)):
        assert f"acked{i}" in state


async def test_restart_from_file_stores(tmp_path: Path) -> None:
    c = await Cluster(data_root=tmp_path).start()
    leader = await c.leader()
    for i in range(20):
        await leader.apply(kv_set(f"k{i}", f"v{i}"))
    await c.converge()
    before = fsm_state(leader.fsm)
    await c.close()

    c2 = await Cluster(data_root=tmp_path).start()
    try:
        leader2 = await c2.leader()
        await leader2.apply(kv_set("post", "restart"))
        await c2.converge()
        for n in c2.nodes.values():
            state = fsm_state(n.fsm)
            assert {k: v for k, v in state.items() if k != "post"} == before
        assert leader2.stats()["term"] > 1
    finally:
        await c2.close()


async def test_snapshot_compaction_and_chunked_install(tmp_path: Path) -> None:
    c = Cluster(data_root=tmp_path, snapshot_threshold=20, trailing_logs=5,
                snapshot_chunk_size=512)
    await c.start()
    chunks: list[Message] = []
    c.net.drop = lambda m: chunks.append(m) if m.type is MessageType.SNAPSHOT else False
    try:
        leader = await c.leader()
        lagging = next(i for i in c.ids if i != leader.id)
        c.net.isolate(lagging)
        for i in range(120):
            await leader.apply(kv_set(f"key-{i:04d}", "x" * 40))
        await eventually(lambda: leader.stats()["last_snapshot_index"] >= 100)
        assert leader.storage.log_store.first_index() > 50
        assert leader.storage.mem.first_index() > 50
        assert len(leader.storage.snapshot_store.list()) >= 1
        c.net.heal()
        await c.converge()
        node = c.nodes[lagging]
        assert node.metrics["snapshots_installed"] >= 1
        assert len(chunks) > 2  # the snapshot went out in several chunks
        assert fsm_state(node.fsm) == fsm_state(leader.fsm)
        await leader.apply(kv_set("after-snapshot", "y"))
        await c.converge()
    finally:
        await c.close()

    # Restart everything: the FSMs come back from snapshot + trailing log.
    c2 = await Cluster(data_root=tmp_path, snapshot_threshold=20, trailing_logs=5).start()
    try:
        await c2.leader()
        await c2.converge()
        assert fsm_state(c2.nodes[lagging].fsm)["after-snapshot"][0] == b"y"
        assert len(fsm_state(c2.nodes[lagging].fsm)) == 121
    finally:
        await c2.close()


async def test_snapshot_now(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.apply(kv_set("a", "1"))
    idx = await leader.snapshot_now()
    assert idx == leader.applied_index
    assert leader.stats()["last_snapshot_index"] == idx
    meta = leader.storage.snapshot_store.list()[0]
    assert meta.index == idx and sorted(meta.conf_state["voters"]) == cluster.ids


async def test_membership_add_promote_remove_while_writing(cluster: Cluster) -> None:
    leader = await cluster.leader()
    stop = asyncio.Event()
    written: list[int] = []

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            ldr = next((x for x in cluster.nodes.values() if x.is_leader()), None)
            if ldr is None:
                await cluster.clock.sleep(0.01)
                continue
            try:
                idx, _ = await ldr.apply(kv_set(f"w{n}", "v"))
                written.append(idx)
                n += 1
            except (NotLeaderError, LeadershipLostError, ShutdownError):
                await cluster.clock.sleep(0.01)

    task = asyncio.ensure_future(writer())
    try:
        new = cluster.make(4, bootstrap=False)
        await new.start()
        await leader.add_nonvoter(4, cluster.addr(4))
        assert {m["id"]: m["voter"] for m in leader.configuration()}[4] is False
        await eventually(lambda: leader.progress().get(4, 0) >= leader.stats()["commit_index"] - 5)
        await leader.promote(4)
        assert {m["id"]: m["voter"] for m in leader.configuration()}[4] is True
        victim = next(i for i in cluster.ids if i != leader.id)
        await leader.remove_server(victim)
        assert victim not in {m["id"] for m in leader.configuration()}
        await cluster.nodes[victim].close()
        n_before = len(written)
        await eventually(lambda: len(written) > n_before + 5, what="writes after removal")
    finally:
        stop.set()
        await task
    remaining = [i for i in cluster.nodes if cluster.nodes[i].core is not None
                 and not cluster.nodes[i]._closed]
    await cluster.converge(remaining)
    assert len(written) > 10
    expected = sorted(cluster.addr(i) for i in [*cluster.ids, 4] if i != victim)
    ldr = await cluster.leader(among=remaining)
    assert sorted(ldr.peers()) == expected
    # The new node learnt the leader's address from its messages (others come from gossip).
    assert new.leader() == cluster.addr(ldr.id)


async def test_verify_leader_partitioned_old_leader_fails(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.apply(kv_set("a", "1"))
    await leader.verify_leader()  # healthy: confirmed by a quorum
    cluster.net.isolate(leader.id)
    with pytest.raises((NotLeaderError, NoLeaderError)):
        await leader.verify_leader()
    others = [i for i in cluster.ids if i != leader.id]
    new = await cluster.leader(among=others)
    await new.verify_leader()
    cluster.net.heal()
    await eventually(lambda: not leader.is_leader())


async def test_transfer_leadership(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.apply(kv_set("a", "1"))
    new_id = await leader.transfer_leadership()
    assert new_id != leader.id
    new = await cluster.leader()
    assert new.id == new_id
    await new.apply(kv_set("b", "2"))


async def test_fsm_failure_is_fatal_and_fails_waiters(cluster: Cluster) -> None:
    leader = await cluster.leader()
    with pytest.raises(ShutdownError):
        await leader.apply(b"\xc1not msgpack")  # every FSM refuses to decode it
    assert leader.failed is not None
    assert not leader.is_leader()
    with pytest.raises(ShutdownError):
        await leader.apply(kv_set("a", "1"))


async def test_single_node_bootstrap_in_memory() -> None:
    c = await Cluster(ids=[7]).start()
    try:
        leader = await c.leader()
        idx, ok = await leader.apply(kv_set("solo", "1"))
        assert ok is True and idx >= 2
        await leader.verify_leader()
        assert leader.peers() == [c.addr(7)]
    finally:
        await c.close()


async def test_a_node_not_started_yet_answers_no_cluster_leader() -> None:
    """A server waiting for bootstrap_expect has no Raft core yet: callers get Consul's
    "No cluster leader" (which they hold and retry on), not a shutdown error."""
    from lictor.common.errors import NoLeaderError
    c = Cluster(ids=[1])
    node = c.make(1)
    with pytest.raises(NoLeaderError, match="No cluster leader"):
        await node.apply(kv_set("a", "1"))
    await node.close()
    with pytest.raises(ShutdownError):
        await node.apply(kv_set("a", "1"))
