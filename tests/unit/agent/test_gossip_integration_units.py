"""Pure pieces of the gossip integration (issue 4): Vivaldi, ack payload codec, user event
filters, the Lamport clock, leader-side member mapping, the core's new inputs, the RPC pool's
server choice."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from lictor.agent.coordinates import (Coordinate, VivaldiClient, decode_coordinate, encode_coordinate,
                                      sort_by_distance)
from lictor.agent.events import UserEvent
from lictor.agent.rpcclient import ServerPool, is_write
from lictor.agent.user_events import LamportClock, SeenIds, decode_intent, encode_intent, event_matches
from lictor.common.gossip.members import MemberState
from lictor.common.gossip.messages import MAX_ACK_PAYLOAD, User, decode_packet, encode_message, encode_packet
from lictor.common.gossip.swim import EventKind, SwimConfig, SwimCore
from lictor.server.members import members_for_reconcile
from lictor.server.state.store import Store


def test_vivaldi_converges_to_a_line_of_true_rtts() -> None:
    """Four nodes on a line 10 ms apart: estimated RTTs come within 25% of the truth."""
    rng = random.Random(1)
    pos = {"a": 0.0, "b": 0.010, "c": 0.020, "d": 0.030}
    clients = {n: VivaldiClient(rng=random.Random(i)) for i, n in enumerate(pos)}
    for _ in range(400):
        x, y = rng.sample(sorted(pos), 2)
        rtt = abs(pos[x] - pos[y]) * (1 + rng.uniform(-0.02, 0.02))
        clients[x].update(y, clients[y].coord, rtt)
    for x in pos:
        for y in pos:
            if x < y:
                est = clients[x].coord.distance(clients[y].coord)
                assert est == pytest.approx(abs(pos[x] - pos[y]), rel=0.25), (x, y, est)
    assert all(c.coord.error < 1.0 for c in clients.values())


def test_vivaldi_rejects_bad_samples() -> None:
    c = VivaldiClient(rng=random.Random(0))
    before = c.coord
    c.update("x", Coordinate(), -1.0)
    c.update("x", Coordinate(), 11.0)
    c.update("x", Coordinate(vec=(float("nan"),) * 8), 0.01)
    assert c.coord == before and c.rejected == 3


def test_coordinate_payload_fits_an_ack_and_round_trips() -> None:
    c = Coordinate(vec=tuple(i / 1000 for i in range(8)), error=0.3, adjustment=-0.0001, height=0.00002)
    data = encode_coordinate(c)
    assert len(data) <= MAX_ACK_PAYLOAD
    back = decode_coordinate(data)
    assert back is not None and back.vec == pytest.approx(c.vec, abs=1e-6)
    assert (back.error, back.adjustment, back.height) == pytest.approx((0.3, -0.0001, 0.00002), rel=1e-5)
    assert decode_coordinate(b"") is None and decode_coordinate(b"\xc1junk") is None
    assert decode_coordinate(encode_coordinate(c)[:-3]) is None


def test_sort_by_distance_puts_unknown_nodes_last() -> None:
    near = Coordinate().to_api()
    far = Coordinate(vec=(0.1,) + (0.0,) * 7).to_api()
    mid = Coordinate(vec=(0.01,) + (0.0,) * 7).to_api()
    rows = [{"Node": "far"}, {"Node": "nocoord"}, {"Node": "mid"}]
    out = sort_by_distance(rows, near, {"far": far, "mid": mid}, lambda r: r["Node"])
    assert [r["Node"] for r in out] == ["mid", "far", "nocoord"]


def _ev(**kw: str) -> UserEvent:
    return UserEvent(id="1", name="n", payload=None, node_filter=kw.get("node", ""),
                     service_filter=kw.get("service", ""), tag_filter=kw.get("tag", ""), ltime=1)


def test_event_filters_are_consul_regexps() -> None:
    svcs = [("web", ["v1", "blue"]), ("db", [])]
    assert event_matches(_ev(), node="n1", services=svcs)
    assert event_matches(_ev(node="^n"), node="n1", services=svcs)
    assert not event_matches(_ev(node="^x"), node="n1", services=svcs)
    assert event_matches(_ev(service="we"), node="n1", services=svcs)  # unanchored, as Go's MatchString
    assert not event_matches(_ev(service="^api$"), node="n1", services=svcs)
    assert event_matches(_ev(service="web", tag="blu"), node="n1", services=svcs)
    assert not event_matches(_ev(service="db", tag="blue"), node="n1", services=svcs)
    assert not event_matches(_ev(node="("), node="n1", services=svcs)  # a bad regexp never matches


def test_lamport_clock_and_dedup() -> None:
    c = LamportClock()
    assert c.increment() == 1
    c.witness(10)
    assert c.increment() == 12
    seen = SeenIds(size=2)
    assert seen.first_time("a") and not seen.first_time("a")
    seen.first_time("b")
    seen.first_time("c")
    assert seen.first_time("a")  # evicted
    assert decode_intent(encode_intent({"k": "ev", "id": "x"})) == {"k": "ev", "id": "x"}
    assert decode_intent(b"\x93\x01\x02\x03") is None and decode_intent(b"junk") is None


@dataclass
class _Rec:
    name: str
    host: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)


def test_members_for_reconcile_maps_statuses_and_keeps_catalog_meta() -> None:
    store = Store()
    recs = [_Rec("a", "10.0.0.1", "alive", {"id": "id-a"}), _Rec("b", "10.0.0.2", "failed"),
            _Rec("c", "10.0.0.3", "left")]
    out = members_for_reconcile(store, recs, ["gone"], local_name="a", local_meta={"rack": "1"})
    by = {m.name: m for m in out}
    assert by["a"].status == "alive" and by["a"].meta == {"rack": "1"} and by["a"].node_id == "id-a"
    assert by["b"].status == "failed" and by["c"].status == "left" and by["gone"].status == "left"


def _core(name: str) -> SwimCore:
    return SwimCore(config=SwimConfig.fast(name), addr=("127.0.0.1", hash(name) % 1000 + 1000),
                    rng=random.Random(name), now=0.0)


def test_core_user_messages_ack_payload_and_force_leave() -> None:
    a, b = _core("a"), _core("b")
    # b learns about a and fails it
    b.receive(a.addr, a.push_pull_payload(join=True), 0.0)
    a.receive(b.addr, b.push_pull_payload(join=True), 0.0)
    a.ack_payload = b"coord"
    # a user message arrives in Ready.user
    a.receive(b.addr, encode_packet([encode_message(User(payload=b"hello"))]), 0.1)
    assert a.ready().user == (b"hello",)
    assert decode_packet(encode_packet([encode_message(User(payload=b"x" * 10))]))[0] == User(payload=b"x" * 10)
    # a broadcast user message is piggy-backed on gossip
    b.broadcast_user("k1", b"event!", 0.2)
    b.tick(1.0)
    pkts = b.ready().packets
    assert any(User(payload=b"event!") in decode_packet(p.payload) for p in pkts)
    # a probe of a by b is acked with a's payload and yields a ProbeAck with an RTT
    b.tick(5.0)
    probe = [p for p in b.ready().packets if p.addr == a.addr]
    for p in probe:
        a.receive(b.addr, p.payload, 5.0)
    for p in a.ready().packets:
        if p.addr == b.addr:
            b.receive(a.addr, p.payload, 5.01)
    acks = b.ready().acks
    assert acks and acks[0].node == "a" and acks[0].payload == b"coord" and acks[0].rtt == pytest.approx(0.01)
    # force-leave applies to suspect/failed members only, never to us or unknown names
    assert not b.force_leave("b", 6.0) and not b.force_leave("nobody", 6.0)
    assert b.member("a").state in (MemberState.SUSPECT, MemberState.DEAD)  # type: ignore[union-attr]
    assert b.force_leave("a", 6.0)
    assert b.member("a").state is MemberState.LEFT  # type: ignore[union-attr]
    assert any(e.kind is EventKind.LEAVE for e in b.ready().events)
    assert not b.force_leave("a", 6.1)  # already left


async def test_server_pool_orders_and_demotes() -> None:
    servers = ["s1:8300", "s2:8300", "s3:8300"]
    pool = ServerPool(lambda: servers, rng=random.Random(3))
    order = pool.order()
    assert sorted(order) == servers
    pool._demote(order[0])
    assert pool.order()[-1] == order[0]
    servers.append("s4:8300")
    assert "s4:8300" in pool.order()
    assert is_write("Catalog.Register") and not is_write("Health.ServiceNodes")
    await pool.close()
