"""Forwarding: run an endpoint where it must run.

``Agent.rpc(name, args)`` on a server is :meth:`Forwarder.call`: stale reads and the local
endpoints (Status.*) answer here; everything else runs on the leader (here, or forwarded whole
over the RPC client), retried when the leader changed or could not be reached, within
``hold`` seconds (Consul's rpc_hold_timeout). Whether a call writes is the endpoint's own
declaration (``@endpoint(..., write=True)``): a write whose connection broke after it left is
reported, never repeated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import NoLeaderError, NotLeaderError, TransportError
from lictor.common.rpc import RPCClient
from lictor.server.endpoints import is_write
from lictor.server.raft.driver import RaftNode

__all__ = ["LOCAL_ENDPOINTS", "Forwarder"]

#: Endpoints every server answers from its own state (Consul's Status.* are local too).
LOCAL_ENDPOINTS = frozenset({"Status.Leader", "Status.Peers"})

LocalCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Forwarder:
    def __init__(self, raft: RaftNode, rpc: RPCClient, *, rpc_addr: str, hold: float,
                 local: LocalCall, clock: Clock | None = None) -> None:
        self.raft = raft
        self.rpc = rpc
        self.rpc_addr = rpc_addr
        self.hold = hold
        self._local = local
        self.clock: Clock = clock or SystemClock()

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
            connected = False
            try:
                await self.rpc.connect(leader)
                connected = True
                return await self.rpc.call(leader, name, args)
            except (NotLeaderError, NoLeaderError):
                if last or self.clock.monotonic() >= deadline:
                    raise
            except TransportError:
                # Not connected: the call never left, so retrying is safe. Connected: a read
                # may be retried; a write's outcome is unknown, so it is reported, not repeated.
                if last or self.clock.monotonic() >= deadline or (connected and is_write(name)):
                    raise
            failed = leader

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
