"""Forwarding: run an endpoint where it must run.

``Agent.rpc(name, args)`` on a server is :meth:`Forwarder.call`: stale reads and the local
endpoints (Status.*) answer here; everything else runs on the leader (here, or forwarded whole
over the RPC client), retried when the leader changed or could not be reached, within
``hold`` seconds (Consul's rpc_hold_timeout). Whether a call writes is the endpoint's own
declaration (``@endpoint(..., write=True)``): a write whose connection broke after it left is
reported, never repeated.

Forwarding follows leadership. A forwarded call is raced against this server's view of the
leader: the moment Raft here names another leader than the one the call went to (or none: the
election timer ran out), the call stops waiting for the old one. A read, or a write that never
left, then goes to the new leader as soon as one is known; a write that did leave has an unknown
outcome (the old leader may have replicated it before it stopped), so it is answered at once
with hashicorp/raft's retryable "leadership lost while committing log" rather than after any
timeout, and never repeated here. "No cluster leader" is answered only when no leader became
known within ``hold``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import LeadershipLostError, NoLeaderError, NotLeaderError, TransportError
from lictor.common.rpc import RPCClient
from lictor.server.endpoints import is_write
from lictor.server.raft.driver import RaftNode

__all__ = ["LOCAL_ENDPOINTS", "Forwarder"]

#: Endpoints every server answers from its own state (Consul's Status.* are local too).
LOCAL_ENDPOINTS = frozenset({"Status.Leader", "Status.Peers"})

LocalCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

#: hashicorp/raft's ErrLeadershipLost text, which Consul returns for the same situation.
LEADERSHIP_LOST = "leadership lost while committing log"


class _Moved(Exception):
    """The leader a call was forwarded to is no longer this server's leader."""


class Forwarder:
    def __init__(self, raft: RaftNode, rpc: RPCClient, *, rpc_addr: str, hold: float,
                 local: LocalCall, clock: Clock | None = None) -> None:
        self.raft = raft
        self.rpc = rpc
        self.rpc_addr = rpc_addr
        self.hold = hold
        self._local = local
        self.clock: Clock = clock or SystemClock()
        # leader address -> [future resolved when Raft here names another leader, users]
        self._watch: dict[str, list[Any]] = {}
        self._watcher: asyncio.Task[None] | None = None

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run endpoint `name` where it must run: here for stale reads and Status.*, else on
        the leader (forwarded whole). When the leader changed or could not be reached the call
        is retried (at most twice, within `forward_hold`) once a leader is known; a write
        whose outcome is unknown (the connection broke after sending) is never repeated."""
        if name in LOCAL_ENDPOINTS or args.get("stale"):
            return await self._local(name, args)
        deadline = self.clock.monotonic() + self.hold
        failed: str | None = None
        attempts = 0
        while True:
            attempts += 1
            last = attempts >= 3
            if self.raft.is_leader():
                try:
                    return await self._local(name, args)
                except NotLeaderError:
                    if last:
                        raise
                    failed = self.rpc_addr
                    continue
            leader = await self._wait_leader(deadline, failed)
            if leader is None:
                raise NoLeaderError()
            if leader == self.rpc_addr:
                continue
            sent = [False]
            try:
                return await self._forward(leader, name, args, sent)
            except _Moved:
                # The leader we forwarded to is no longer ours. A write that left may have
                # been replicated before it stopped: report it at once, never repeat it.
                if sent[0] and is_write(name):
                    raise LeadershipLostError(LEADERSHIP_LOST) from None
                if last or self.clock.monotonic() >= deadline:
                    raise NoLeaderError() if self.raft.leader() is None else LeadershipLostError(LEADERSHIP_LOST) \
                        from None
            except (NotLeaderError, NoLeaderError):
                if last or self.clock.monotonic() >= deadline:
                    raise
            except TransportError:
                # Not connected: the call never left, so retrying is safe. Connected: a read
                # may be retried; a write's outcome is unknown, so it is reported, not repeated.
                if last or self.clock.monotonic() >= deadline or (sent[0] and is_write(name)):
                    raise
            failed = leader

    async def _forward(self, leader: str, name: str, args: dict[str, Any], sent: list[bool]) -> dict[str, Any]:
        """Connect and call `leader`, abandoned with `_Moved` as soon as Raft here names another
        leader (or none). `sent[0]` becomes True once the request may have left."""
        async def go() -> dict[str, Any]:
            await self.rpc.connect(leader)
            sent[0] = True
            result: dict[str, Any] = await self.rpc.call(leader, name, args)
            return result
        task = asyncio.ensure_future(go())
        moved = self._moved_from(leader)
        try:
            await asyncio.wait((task, moved), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            self._release(leader)
        if task.done():
            return task.result()
        task.cancel()
        raise _Moved(leader)

    def _moved_from(self, leader: str) -> asyncio.Future[None]:
        entry = self._watch.get(leader)
        if entry is None:
            entry = self._watch[leader] = [asyncio.get_running_loop().create_future(), 0]
        elif entry[0].done():
            # it moved away and is the leader again: watch afresh (earlier callers keep theirs)
            entry[0] = asyncio.get_running_loop().create_future()
        entry[1] += 1
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_leader())
        fut: asyncio.Future[None] = entry[0]
        return fut

    def _release(self, leader: str) -> None:
        entry = self._watch.get(leader)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._watch[leader]

    async def _watch_leader(self) -> None:
        """One poller for all forwarded calls in flight (a tick, at most 50 ms): resolves each
        watched leader's future once Raft here names another leader or none."""
        step = min(0.05, max(0.005, self.raft.config.tick_seconds))
        while self._watch:
            now = self.raft.leader()
            for addr, entry in list(self._watch.items()):
                if addr != now and not entry[0].done():
                    entry[0].set_result(None)
            await self.clock.sleep(step)

    async def _wait_leader(self, deadline: float, failed: str | None) -> str | None:
        """The leader's address, waiting until `deadline` while none is known. After a failure
        at `failed`: wait for another leader, or for `failed` to prove alive (this server heard
        from it recently, at least half an election timeout after the failure)."""
        raft = self.raft
        step = max(0.01, raft.config.tick_seconds)
        patience = raft.config.election_timeout / 2
        since = self.clock.monotonic()
        while True:
            leader = raft.leader()
            now = self.clock.monotonic()
            if leader is not None:
                if leader != failed:
                    return leader
                if now - since >= patience and raft.last_contact() < patience:
                    return leader
            if now >= deadline:
                return None
            await self.clock.sleep(step)
