"""Raft transport: codec round trips and strict validation, MemoryNetwork, and a 3-node cluster
over TCPRaftTransport on 127.0.0.1 (with garbage frames that must be dropped and counted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lictor.common.rpc import RPCClient
from lictor.server.fsm import FSM
from lictor.server.raft.driver import RaftNode, RaftNodeConfig
from lictor.server.raft.messages import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    SnapshotMetadata,
)
from lictor.server.raft.transport import (
    RAFT_METHOD,
    FrameError,
    MemoryNetwork,
    TCPRaftTransport,
    decode_batch,
    decode_message,
    encode_batch,
    encode_message,
    raft_id,
)

from .test_driver_helpers import TICK, eventually, fsm_state, kv_set

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
nid = st.integers(min_value=1, max_value=(1 << 63) - 1)


@st.composite
def messages(draw: Any) -> Message:
    start = draw(st.integers(min_value=1, max_value=1 << 40))
    ents = [
        Entry(draw(u64), start + k, draw(st.binary(max_size=20)), draw(st.sampled_from(EntryKind)))
        for k in range(draw(st.integers(min_value=0, max_value=4)))
    ]
    meta = draw(st.none() | st.builds(
        lambda i, t, v, lr: SnapshotMetadata(index=i, term=t, conf_state=ConfState(
            voters=frozenset(v), learners=frozenset(lr))),
        u64, u64, st.sets(nid, max_size=3), st.sets(nid, max_size=2)))
    return Message(
        type=draw(st.sampled_from(MessageType)), src=draw(nid), dst=draw(nid), term=draw(u64),
        log_term=draw(u64), index=draw(u64), entries=ents, commit=draw(u64),
        reject=draw(st.booleans()), reject_hint=draw(u64), context=draw(st.binary(max_size=8)),
        snapshot_meta=meta, offset=draw(u64), data=draw(st.binary(max_size=30)),
        done=draw(st.booleans()),
    )


@given(messages())
@settings(max_examples=50, deadline=None)
def test_message_round_trip(m: Message) -> None:
    import msgpack

    wire = msgpack.unpackb(msgpack.packb(encode_message(m), use_bin_type=True), raw=False)
    back = decode_message(wire)
    assert back == Message(**{**{f: getattr(m, f) for f in m.__slots__}, "entries": list(m.entries)})


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda kids: st.lists(kids, max_size=16) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=40,
))
@settings(max_examples=60, deadline=None)
def test_garbage_never_escapes_as_anything_but_frame_error(garbage: Any) -> None:
    try:
        decode_batch(garbage)
    except FrameError:
        pass
    try:
        decode_message(garbage)
    except FrameError:
        pass


def _msg(**kw: Any) -> Message:
    base: dict[str, Any] = dict(type=MessageType.APPEND, src=1, dst=2, term=3, index=4,
                                entries=[Entry(3, 5, b"x")])
    base.update(kw)
    return Message(**base)


@pytest.mark.parametrize("mutate", [
    lambda w: w.__setitem__(0, 99),                 # unknown message type
    lambda w: w.__setitem__(3, True),               # bool where an int is expected
    lambda w: w.__setitem__(3, -1),                 # negative term
    lambda w: w.__setitem__(8, 1),                  # int where a bool is expected
    lambda w: w.__setitem__(10, "ctx"),             # str where bytes are expected
    lambda w: w.__setitem__(6, [[5, 3, 7, b""]]),   # unknown entry kind
    lambda w: w.__setitem__(6, [[5, 3, 0, b""], [7, 3, 0, b""]]),  # gap between entries
    lambda w: w.__setitem__(1, 0),                  # node id 0
    lambda w: w.pop(),                              # wrong arity
])
def test_invalid_messages_are_rejected(mutate: Any) -> None:
    wire = encode_message(_msg())
    mutate(wire)
    with pytest.raises(FrameError):
        decode_message(wire)


def test_batch_checks_sender_and_destination() -> None:
    good = encode_batch(1, "a:1", [_msg()])
    assert decode_batch(good, local_id=2)[2] == [_msg(entries=[Entry(3, 5, b"x")])]
    with pytest.raises(FrameError):
        decode_batch(encode_batch(9, "a:1", [_msg()]))  # message src 1 in a frame from 9
    with pytest.raises(FrameError):
        decode_batch(good, local_id=3)  # not for us
    with pytest.raises(FrameError):
        decode_batch([2, 1, "a:1", []])  # unknown wire version


def test_raft_id_is_stable_and_positive() -> None:
    a = raft_id("0b9a3c1e-5d2f-4a8b-9c7d-112233445566")
    assert a == raft_id("0b9a3c1e-5d2f-4a8b-9c7d-112233445566")
    assert 0 < a < 1 << 63 and a != raft_id("other")


async def test_memory_network_partition_and_unreachable() -> None:
    net = MemoryNetwork()
    got: dict[int, list[Message]] = {1: [], 2: []}
    unreachable: list[tuple[int, bool]] = []
    t1, t2 = net.transport(1), net.transport(2)
    for t in (t1, t2):
        t.set_handler(got[t.local_id].extend)
        t.set_unreachable_handler(lambda p, s: unreachable.append((p, s)))
        await t.start()
    t1.send([_msg(), _msg(type=MessageType.HEARTBEAT, entries=())])
    await asyncio.sleep(0)
    assert len(got[2]) == 2
    assert t2.peer_address(1) == "mem-1"  # learnt from the delivery
    net.cut(1, 2)
    t1.send([_msg()])
    await asyncio.sleep(0)
    assert len(got[2]) == 2
    net.heal()
    t1.send([_msg(dst=3, type=MessageType.SNAPSHOT, entries=())])
    await asyncio.sleep(0)
    assert unreachable == [(3, True)]
    await t1.close()
    await t2.close()


# ---------------------------------------------------------------------------------- TCP


async def test_tcp_cluster_commits_and_survives_garbage() -> None:
    ids = [1, 2, 3]
    clients = {i: RPCClient(connect_timeout=1.0, backoff_base=0.01, backoff_max=0.05) for i in ids}
    transports = {
        i: TCPRaftTransport(local_id=i, local_address="", client=clients[i],
                            listen=("127.0.0.1", 0))
        for i in ids
    }
    for t in transports.values():
        await t.start()
    book = {i: t.local_address for i, t in transports.items()}
    nodes = {
        i: RaftNode(RaftNodeConfig(node_id=i, address=book[i], bootstrap=book,
                                   tick_interval=TICK * 2), FSM(), transports[i])
        for i in ids
    }
    try:
        for n in nodes.values():
            await n.start()

        def one_leader() -> RaftNode | None:
            ls = [n for n in nodes.values() if n.is_leader()]
            return ls[0] if len(ls) == 1 else None

        leader = await eventually(one_leader, 10.0, "a TCP leader")
        for k in range(20):
            await leader.apply(kv_set(f"tcp{k}", "v"))
        follower = next(n for n in nodes.values() if n is not leader)
        ft = transports[follower.id]

        # Garbage frames to the follower's Raft port: each is dropped and counted.
        attacker = RPCClient(connect_timeout=1.0)
        try:
            await attacker.connect(ft.local_address)
            bad = [
                {"b": [1, 1, "x", [["garbage"]]]},
                {"nope": 1},
                {"b": [1, leader.id, "x", [encode_message(_msg(src=leader.id, dst=follower.id,
                                                               term=True))]]},
                {"b": [1, 5, "x", [encode_message(_msg(src=5, dst=999))]]},  # not for us
                {"b": "not a list"},
            ]
            for args in bad:
                assert attacker.notify(ft.local_address, RAFT_METHOD, args)
            await eventually(lambda: ft.stats["dropped_frames"] >= len(bad), 5.0, "drops")
        finally:
            await attacker.close()

        for k in range(20, 30):
            await leader.apply(kv_set(f"tcp{k}", "v"))

        def converged() -> bool:
            states = [fsm_state(n.fsm) for n in nodes.values()]
            return len(states[0]) == 30 and all(s == states[0] for s in states)

        await eventually(converged, 10.0, "TCP convergence")
        assert follower.failed is None and follower.leader() == book[leader.id]
        assert transports[leader.id].stats["sent_frames"] > 0
    finally:
        for n in nodes.values():
            await n.close()
        for c in clients.values():
            await c.close()
