"""KV tombstones are reaped by their own age, measured on the leader's clock carried in the
delete's command (issue 16, defect 3: every tombstone was dated to the server's start, so after
``tombstone_ttl`` of uptime each delete was reaped at the next leader pass)."""

from __future__ import annotations

import io

from lictor.common.commands import MessageType
from lictor.server.fsm import FSM
from lictor.server.server import Server, ServerConfig

TTL = 900.0


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def server(clock: WallClock) -> Server:
    return Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300",
                               tombstone_ttl=TTL), wall=clock)


async def _put_delete(s: Server, key: str) -> None:
    await s.apply(MessageType.KVS, {"op": "set", "key": key, "value": b"v"})
    await s.apply(MessageType.KVS, {"op": "delete", "key": key})


async def test_a_fresh_tombstone_survives_on_a_server_older_than_the_ttl() -> None:
    clock = WallClock(1_000_000.0)
    s = server(clock)
    clock.now += 2 * TTL  # the server has been up for twice the TTL
    await _put_delete(s, "a/x")
    assert s.store.tombstone_times == {"a/x": clock.now}
    await s._reap_tombstones(0)
    assert "a/x" in s.store.tombstones, "a tombstone written a moment ago was reaped"
    clock.now += TTL - 1
    await s._reap_tombstones(0)
    assert "a/x" in s.store.tombstones
    clock.now += 2
    await s._reap_tombstones(0)
    assert "a/x" not in s.store.tombstones and not s.store.tombstone_times
    await s.close()


async def test_reap_stops_at_the_first_young_tombstone() -> None:
    clock = WallClock(5_000.0)
    s = server(clock)
    await _put_delete(s, "old/1")
    clock.now += TTL / 2
    await _put_delete(s, "young/1")
    clock.now -= TTL  # a later leader whose clock is behind: its tombstone looks older
    await _put_delete(s, "skewed/1")
    clock.now += TTL + TTL / 2 + 1  # old/1 and skewed/1 are past the TTL, young/1 is not
    await s._reap_tombstones(0)
    assert set(s.store.tombstones) == {"young/1", "skewed/1"}
    await s.close()


async def test_tombstone_times_survive_a_snapshot() -> None:
    clock = WallClock(42.0)
    s = server(clock)
    await _put_delete(s, "k")
    buf = io.BytesIO()
    s.fsm.snapshot().persist(buf)
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert other.store.tombstone_times == {"k": 42.0}
    await s.close()


async def test_undated_tombstones_from_an_old_snapshot_wait_a_full_ttl() -> None:
    clock = WallClock(100.0)
    s = server(clock)
    await _put_delete(s, "k")
    s.store.tombstone_times.clear()  # as restored from a snapshot written before times existed
    clock.now += 10 * TTL
    await s._reap_tombstones(0)
    assert "k" in s.store.tombstones
    clock.now += TTL + 1
    await s._reap_tombstones(0)
    assert "k" not in s.store.tombstones
    await s.close()
