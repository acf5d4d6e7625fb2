"""Forwarding follows leadership (issue 17): a forwarded call whose leader stops answering (SIGSTOP,
isolation: the connection stays up, nothing comes back) is not left to wait out a timeout. The
moment Raft on this server names another leader, or none, a read (or a write that never left)
moves to the new leader, and a write that left is answered at once with the retryable
"leadership lost while committing log". "No cluster leader" only when none is known within the
hold time. All on a ManualClock: no real waiting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from lictor.common.clock import ManualClock
from lictor.common.errors import LeadershipLostError, NoLeaderError
from lictor.server.cluster import Forwarder
LEADERSHIP_LOST = "leadership lost while committing log"  # hashicorp/raft ErrLeadershipLost

OLD, NEW, ME = "10.0.0.2:8300", "10.0.0.3:8300", "10.0.0.1:8300"


@dataclass
class _RaftConfig:
    tick_seconds: float = 0.1
    election_timeout: float = 2.0


class FollowerRaft:
    def __init__(self, leader: str | None) -> None:
        self.config = _RaftConfig()
        self.leader_addr = leader

    def is_leader(self) -> bool:
        return False

    def leader(self) -> str | None:
        return self.leader_addr

    def last_contact(self) -> float:
        return 0.0


class StalledRPC:
    """Calls to an address in `stalled` never answer (a stopped or cut-off process whose TCP
    connection is still up); connects to an address in `unreachable` never finish."""

    def __init__(self, stalled: set[str], unreachable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.stalled = stalled
        self.unreachable = unreachable
        self.calls: list[tuple[str, str]] = []
        self.cancelled: list[str] = []

    async def connect(self, addr: str) -> None:
        if addr in self.unreachable:
            await asyncio.Event().wait()

    async def call(self, addr: str, name: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        self.calls.append((addr, name))
        if addr in self.stalled:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(addr)
                raise
        return {"from": addr}


async def _no_local(name: str, args: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("a follower runs nothing locally here")


def _fwd(raft: FollowerRaft, rpc: StalledRPC, clock: ManualClock) -> Forwarder:
    return Forwarder(raft, rpc, rpc_addr=ME, hold=7.0, local=_no_local, clock=clock)  # type: ignore[arg-type]


async def test_a_read_to_a_stalled_leader_moves_to_the_new_leader_when_one_is_known() -> None:
    clock, raft, rpc = ManualClock(), FollowerRaft(OLD), StalledRPC({OLD})
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("KVS.Get", {"key": "k"}))
    await clock.advance(1.0)
    assert not call.done() and rpc.calls == [("10.0.0.2:8300", "KVS.Get")]
    raft.leader_addr = NEW  # the followers elected a new leader
    await clock.advance(0.1)  # one watcher step, not a timeout
    assert call.done() and call.result() == {"from": NEW}
    assert rpc.calls == [(OLD, "KVS.Get"), (NEW, "KVS.Get")]
    assert rpc.cancelled == [OLD]


async def test_a_read_waits_through_the_election_and_goes_to_the_winner() -> None:
    clock, raft, rpc = ManualClock(), FollowerRaft(OLD), StalledRPC({OLD})
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("Catalog.ListNodes", {}))
    await clock.advance(0.5)
    raft.leader_addr = None  # election timer ran out: campaigning, no leader known
    await clock.advance(0.6)
    assert not call.done()  # held, not failed: an election is under way
    raft.leader_addr = NEW
    await clock.advance(0.1)
    assert call.done() and call.result() == {"from": NEW}


async def test_a_write_in_flight_to_a_deposed_leader_fails_at_once_with_a_retryable_error() -> None:
    clock, raft, rpc = ManualClock(), FollowerRaft(OLD), StalledRPC({OLD})
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("KVS.Apply", {"op": "set", "key": "k"}))
    await clock.advance(1.5)
    assert not call.done()
    raft.leader_addr = None  # this follower's election timer fired: the old leader is gone
    await clock.advance(0.05)
    assert call.done()
    with pytest.raises(LeadershipLostError, match=LEADERSHIP_LOST):
        call.result()
    # the write left once and is never repeated (its outcome is unknown)
    assert rpc.calls == [(OLD, "KVS.Apply")]
    assert rpc.cancelled == [OLD]


async def test_a_write_that_never_left_goes_to_the_new_leader() -> None:
    """Connecting to an isolated leader hangs; the write never left, so it is safe to send it
    to the new leader once one is known."""
    clock, raft = ManualClock(), FollowerRaft(OLD)
    rpc = StalledRPC(set(), unreachable={OLD})
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("KVS.Apply", {"op": "set", "key": "k"}))
    await clock.advance(0.5)
    raft.leader_addr = NEW
    await clock.advance(0.1)
    assert call.done() and call.result() == {"from": NEW}
    assert rpc.calls == [(NEW, "KVS.Apply")]


async def test_no_cluster_leader_only_when_none_appears_within_the_hold_time() -> None:
    clock, raft, rpc = ManualClock(), FollowerRaft(OLD), StalledRPC({OLD})
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("KVS.Get", {"key": "k"}))
    await clock.advance(0.2)
    raft.leader_addr = None
    await clock.advance(6.0)
    assert not call.done()
    await clock.advance(1.2)
    assert call.done()
    with pytest.raises(NoLeaderError, match="No cluster leader"):
        call.result()


async def test_a_healthy_leader_is_not_abandoned() -> None:
    """Slow answers from a leader that stays the leader are waited for (no watcher false alarm)."""
    clock, raft = ManualClock(), FollowerRaft(OLD)
    gate = asyncio.Event()

    class SlowRPC(StalledRPC):
        async def call(self, addr: str, name: str, args: dict[str, Any], timeout: float | None = None) -> Any:
            self.calls.append((addr, name))
            await gate.wait()
            return {"from": addr}
    rpc = SlowRPC(set())
    call = asyncio.ensure_future(_fwd(raft, rpc, clock).call("KVS.Apply", {"op": "set", "key": "k"}))
    await clock.advance(5.0)
    assert not call.done()
    gate.set()
    await clock.advance(0.05)
    assert call.result() == {"from": OLD} and rpc.calls == [(OLD, "KVS.Apply")]
