"""Client agents' RPC to the servers: ``ServerPool.call(name, args)`` is ``Agent.rpc`` when
the agent has no server of its own, so a client agent's HTTP API is the server's API.

::

    servers() (alive role=consul members from gossip)  ->  pool order (shuffled once per
        rebalance_interval, Consul's manager.RebalanceServers; a failed server goes to the back)
    call: [leader hint first, for reads that need the leader and for writes]
          -> RPCClient.call(addr)  (one multiplexed connection per server, common/rpc)
             NotLeaderError(leader) -> remember the hint, retry there
             NoLeaderError          -> wait a little, retry (within `hold`)
             TransportError before the request left (connect failed) -> next server
             TransportError after   -> reads: next server; writes: raised (outcome unknown)
                (which calls write: ``@endpoint(..., write=True)`` in lictor.server.endpoints)

Blocking queries pass through unchanged (``min_index``/``wait`` in args); their request timeout
is the wait plus Consul's jitter (wait/16) plus a margin.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import NoLeaderError, NotLeaderError, TransportError
from lictor.common.rpc import RPCClient
from lictor.server.endpoints import is_write

__all__ = ["ServerPool", "is_write"]

log = logging.getLogger("lictor.rpc.pool")

class ServerPool:
    def __init__(self, servers: Callable[[], list[str]], *, ssl: Any = None, server_hostname: str | None = None,
                 hold: float = 7.0, rebalance_interval: float = 120.0, rng: random.Random | None = None,
                 request_timeout: float = 30.0, clock: Clock | None = None) -> None:
        self._servers = servers
        self.clock: Clock = clock or SystemClock()
        """Measures `hold` and the rebalance interval and paces retries (a test's ManualClock)."""
        self.rpc = RPCClient(connect_timeout=2.0, request_timeout=request_timeout, backoff_base=0.05,
                             backoff_max=1.0, ssl=ssl, server_hostname=server_hostname,
                             reconnect_linger=60.0)
        self.hold = hold
        self.rebalance_interval = rebalance_interval
        self._rng = rng or random.Random()
        self._order: list[str] = []
        self._rebalanced = 0.0
        self.leader_hint: str | None = None
        self.stats = {"calls": 0, "retries": 0, "failovers": 0, "leader_redirects": 0}

    # ---------------------------------------------------------------- server selection

    def order(self) -> list[str]:
        """Known servers in the order calls try them."""
        known = self._servers()
        now = self.clock.monotonic()
        if set(known) != set(self._order) or now - self._rebalanced > self.rebalance_interval:
            keep = [s for s in self._order if s in known]
            new = [s for s in known if s not in keep]
            if now - self._rebalanced > self.rebalance_interval:
                keep += new
                self._rng.shuffle(keep)
                self._rebalanced = now
            else:
                self._rng.shuffle(new)
                keep += new
            self._order = keep
            if self.leader_hint not in known:
                self.leader_hint = None
        return list(self._order)

    def _demote(self, addr: str) -> None:
        if addr in self._order:
            self._order.remove(addr)
            self._order.append(addr)
        if self.leader_hint == addr:
            self.leader_hint = None

    # ---------------------------------------------------------------- calls

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.stats["calls"] += 1
        wait = float(args.get("wait") or 0) if args.get("min_index") else 0.0
        timeout = wait + wait / 16 + 10.0 if wait else None
        deadline = self.clock.monotonic() + self.hold
        needs_leader = not args.get("stale")
        write = is_write(name)
        tried: list[str] = []
        redirect: str | None = None
        while True:
            servers = self.order()
            if not servers:
                if self.clock.monotonic() >= deadline:
                    raise NoLeaderError("No known Consul servers")
                await self.clock.sleep(0.1)
                continue
            if redirect is not None:
                addr, redirect = redirect, None
            elif needs_leader and self.leader_hint in servers and self.leader_hint not in tried:
                addr = self.leader_hint  # type: ignore[assignment]
            else:
                fresh = [s for s in servers if s not in tried]
                addr = fresh[0] if fresh else servers[0]
            tried.append(addr)
            connected = False
            try:
                await self.rpc.connect(addr)
                connected = True
                out = await self.rpc.call(addr, name, args, timeout=timeout)
                if needs_leader:
                    self.leader_hint = addr
                return out  # type: ignore[no-any-return]
            except NotLeaderError as exc:
                self.stats["leader_redirects"] += 1
                if exc.leader and exc.leader != addr:
                    redirect = self.leader_hint = exc.leader
                elif self.clock.monotonic() >= deadline:
                    raise
                else:
                    await self.clock.sleep(0.1)
            except NoLeaderError:
                if self.clock.monotonic() >= deadline:
                    raise
                await self.clock.sleep(0.2)
            except TransportError:
                self.stats["failovers"] += 1
                self._demote(addr)
                if (connected and write) or self.clock.monotonic() >= deadline:
                    raise
                if len(tried) >= 2 * max(1, len(servers)):
                    await self.clock.sleep(0.1)
            self.stats["retries"] += 1

    async def reconnect_all(self) -> None:
        """Drop every open connection so the next calls make new TLS handshakes (after a new
        client certificate arrived, e.g. from auto-encrypt); callers reconnect on demand."""
        for addr in list(self.rpc._endpoints):
            await self.rpc.forget(addr)

    async def close(self) -> None:
        await self.rpc.close()
