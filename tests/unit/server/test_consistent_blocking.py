"""``?consistent`` blocking queries confirm leadership on every pass of the blocking loop and
refresh KnownLeader/LastContact (issue 16, defect 4: leadership was confirmed once, before a
park of up to ten minutes)."""

from __future__ import annotations

import asyncio

import pytest

from lictor.common.commands import MessageType
from lictor.common.errors import NotLeaderError
from lictor.server import endpoints
from lictor.server.fsm import FSM
from lictor.server.replication import LocalLog
from lictor.server.server import Server, ServerConfig


class CountingLog(LocalLog):
    """The dev-mode log, with leadership checks counted and a leader that can be deposed."""

    def __init__(self) -> None:
        super().__init__(FSM(), address="127.0.0.1:8300")
        self.verifies = 0
        self.deposed = False
        self.contact = 0.0

    async def verify_leader(self) -> None:
        self.verifies += 1
        if self.deposed:
            raise NotLeaderError("127.0.0.1:8301")

    def last_contact(self) -> float:
        return self.contact


async def _setup() -> tuple[Server, CountingLog, int]:
    log = CountingLog()
    s = Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"), replicator=log)
    await s.apply(MessageType.KVS, {"op": "set", "key": "k", "value": b"1"})
    await s.apply(MessageType.KVS, {"op": "set", "key": "other", "value": b"1"})
    first = await endpoints.call(s, "KVS.List", {"key": "k"})
    return s, log, first["index"]


async def _wake_other_key(s: Server, times: int) -> None:
    # writes that fire the query's watches but leave its index unchanged: each wakes one pass
    for i in range(times):
        await asyncio.sleep(0.01)
        await s.apply(MessageType.KVS, {"op": "set", "key": "other", "value": b"x%d" % i})


async def test_consistent_blocking_query_verifies_leadership_on_every_pass() -> None:
    s, log, idx = await _setup()
    call = asyncio.ensure_future(endpoints.call(s, "KVS.List", {"key": "k", "min_index": idx,
                                                                "wait": 0.5, "consistent": True}))
    await _wake_other_key(s, 3)
    log.contact = 0.25
    await s.apply(MessageType.KVS, {"op": "set", "key": "k", "value": b"2"})
    out = await call
    assert log.verifies >= 4, f"leadership confirmed {log.verifies} times over 4+ passes"
    assert out["consistency"] == "consistent"
    assert out["last_contact"] == 0.25, "LastContact not refreshed on the last pass"
    await s.close()


async def test_consistent_blocking_query_ends_when_leadership_is_lost_while_parked() -> None:
    s, log, idx = await _setup()
    call = asyncio.ensure_future(endpoints.call(s, "KVS.List", {"key": "k", "min_index": idx,
                                                                "wait": 5, "consistent": True}))
    await asyncio.sleep(0.02)
    log.deposed = True
    await s.apply(MessageType.KVS, {"op": "set", "key": "k", "value": b"2"})
    with pytest.raises(NotLeaderError):
        await asyncio.wait_for(call, 2)
    await s.close()


async def test_default_blocking_query_does_not_verify_but_refreshes_last_contact() -> None:
    s, log, idx = await _setup()
    call = asyncio.ensure_future(endpoints.call(s, "KVS.List", {"key": "k", "min_index": idx, "wait": 5}))
    await asyncio.sleep(0.02)
    log.contact = 0.5
    await s.apply(MessageType.KVS, {"op": "set", "key": "k", "value": b"2"})
    out = await asyncio.wait_for(call, 2)
    assert log.verifies == 0
    assert out["last_contact"] == 0.5
    await s.close()


async def test_blocking_wait_and_its_jitter_run_on_the_servers_clock() -> None:
    """The wait (plus up to wait/16 of jitter) is measured on Server.clock: on a ManualClock a
    10 s blocking query is still parked after 9.9 s and has answered by 10.7 s."""
    from lictor.common.clock import ManualClock

    clock = ManualClock()
    s = Server(ServerConfig(datacenter="dc1", node_name="s", rpc_address="127.0.0.1:8300"), clock=clock)
    await s.apply(MessageType.KVS, {"op": "set", "key": "k", "value": b"1"})
    idx = (await endpoints.call(s, "KVS.List", {"key": "k"}))["index"]
    call = asyncio.ensure_future(endpoints.call(s, "KVS.List", {"key": "k", "min_index": idx, "wait": 10}))
    await clock.advance(9.9)
    assert not call.done()
    await clock.advance(10 / 16 + 0.2)
    assert call.done() and call.result()["index"] == idx
    await s.close()
