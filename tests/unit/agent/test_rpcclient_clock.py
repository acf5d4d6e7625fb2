"""The client agents' server pool measures its hold time on an injected clock: the retry
behaviour is checked on a ManualClock, with no real waiting and no elapsed-time margins."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from lictor.agent.rpcclient import ServerPool
from lictor.common.clock import ManualClock
from lictor.common.errors import NoLeaderError


class NoLeaderYet:
    """Every server answers "No cluster leader" until `elect()`; then the call succeeds."""

    def __init__(self) -> None:
        self.calls = 0
        self.leader = False
        self._endpoints: dict[str, Any] = {}

    async def connect(self, addr: str) -> None:
        return None

    async def call(self, addr: str, name: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        self.calls += 1
        if not self.leader:
            raise NoLeaderError()
        return {"result": addr}

    async def close(self) -> None:
        return None


def pool(clock: ManualClock, rpc: NoLeaderYet) -> ServerPool:
    p = ServerPool(lambda: ["s1:8300", "s2:8300"], hold=7.0, rng=random.Random(1), clock=clock)
    p.rpc = rpc  # type: ignore[assignment]
    return p


async def test_no_leader_is_retried_for_exactly_the_hold_time() -> None:
    clock, rpc = ManualClock(), NoLeaderYet()
    call = asyncio.ensure_future(pool(clock, rpc).call("KVS.Get", {"key": "k"}))
    await clock.advance(6.9)
    assert not call.done(), "gave up before the hold time"
    tries = rpc.calls
    assert tries >= 30  # one try every 0.2 s of waiting
    await clock.advance(0.4)
    assert call.done()
    with pytest.raises(NoLeaderError):
        call.result()


async def test_a_leader_elected_within_the_hold_time_answers_the_call() -> None:
    clock, rpc = ManualClock(), NoLeaderYet()
    call = asyncio.ensure_future(pool(clock, rpc).call("KVS.Get", {"key": "k"}))
    await clock.advance(3.0)
    rpc.leader = True
    await clock.advance(0.3)
    assert call.done() and call.result()["result"] in ("s1:8300", "s2:8300")
