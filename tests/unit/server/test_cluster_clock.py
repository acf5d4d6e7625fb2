"""The cluster's loops run on an injected clock: forwarding's hold time and the autopilot
cadence are checked on a ManualClock (no real waiting, no elapsed-time margins)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from lictor.common.clock import ManualClock
from lictor.common.errors import NoLeaderError
from lictor.server.cluster import Autopilot, AutopilotConfig, Forwarder


@dataclass
class _RaftConfig:
    tick_seconds: float = 0.1
    election_timeout: float = 2.0


class LeaderlessRaft:
    """A Raft node that never learns of a leader (until told)."""

    def __init__(self) -> None:
        self.config = _RaftConfig()
        self.leader_addr: str | None = None
        self.id = 1

    def is_leader(self) -> bool:
        return False

    def leader(self) -> str | None:
        return self.leader_addr

    def last_contact(self) -> float:
        return 0.0


class FakeRPC:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def connect(self, addr: str) -> None:
        return None

    async def call(self, addr: str, name: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        self.calls.append((addr, name))
        return {"result": "ok"}


async def _no_local(name: str, args: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("not the leader: nothing runs here")


async def test_forwarding_waits_for_a_leader_exactly_the_hold_time() -> None:
    clock = ManualClock()
    fwd = Forwarder(LeaderlessRaft(), FakeRPC(), rpc_addr="10.0.0.1:8300", hold=7.0,  # type: ignore[arg-type]
                    local=_no_local, clock=clock)
    call = asyncio.ensure_future(fwd.call("KVS.Get", {"key": "k"}))
    await clock.advance(6.9)
    assert not call.done()
    await clock.advance(0.3)
    assert call.done()
    with pytest.raises(NoLeaderError):
        call.result()


async def test_forwarding_goes_to_a_leader_that_appears_within_the_hold_time() -> None:
    clock, raft, rpc = ManualClock(), LeaderlessRaft(), FakeRPC()
    fwd = Forwarder(raft, rpc, rpc_addr="10.0.0.1:8300", hold=7.0, local=_no_local, clock=clock)  # type: ignore[arg-type]
    call = asyncio.ensure_future(fwd.call("KVS.Apply", {"op": "set", "key": "k"}))
    await clock.advance(5.0)
    raft.leader_addr = "10.0.0.2:8300"
    await clock.advance(0.2)
    assert call.done() and call.result() == {"result": "ok"}
    assert rpc.calls == [("10.0.0.2:8300", "KVS.Apply")]


async def test_autopilot_runs_once_per_interval_of_its_clock() -> None:
    clock = ManualClock()
    ap = Autopilot(LeaderlessRaft(), AutopilotConfig(server_stabilization_time=2.0),  # type: ignore[arg-type]
                   expected_servers=3, name_of=lambda pid: ("", str(pid)), left_servers=lambda: [],
                   note=lambda key, sentence: None, clock=clock)
    runs = 0
    real_once = ap.once

    async def counted() -> Any:
        nonlocal runs
        runs += 1
        return await real_once()
    ap.once = counted  # type: ignore[method-assign]
    assert ap.interval() == pytest.approx(0.5)  # stabilization / 4, capped at 1 s
    closed = False
    task = asyncio.ensure_future(ap.run(lambda: closed))
    await clock.advance(0.49)
    assert runs == 0
    await clock.advance(0.02)
    assert runs == 1
    await clock.advance(2.0)
    assert runs == 5
    ap.wake.set()  # a gossip change: an iteration now, not at the next interval
    await clock.advance(0)
    assert runs == 6
    closed = True
    task.cancel()
