"""The DNS interface's view of the catalog: RPC reads with stale reads allowed, behind a cache that
blocking queries keep fresh, so a DNS storm is answered from memory and never becomes a Raft storm.

::

    get(Fetch) --hit, fresh--> the cached rows
               --miss--------> one RPC per key (concurrent askers share it), stale=allow_stale;
                               result staler than max_stale: asked again without stale
                               then a background refresher: blocking query (min_index = what we have)
                               -> new rows replace the entry the moment the catalog changes

An entry nobody asked for in ``idle`` seconds stops refreshing and is dropped; at most
``max_entries`` entries are kept (the least recently used goes first), so random names cannot
grow memory or parked queries without bound. Errors are remembered for ``error_ttl`` seconds.
Prepared queries are not blocking reads: with ``cache_max_age > 0`` their results are reused for
that long, otherwise every question executes the query.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lictor.agent.dns.config import DNSConfig
from lictor.agent.dns.resolver import Fetch
from lictor.common.errors import NotFound
from lictor.common.tasks import cancel_and_wait

__all__ = ["CatalogCache", "rpc_for"]

log = logging.getLogger("lictor.dns")

RPC = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
BLOCKING_WAIT = 60.0


def rpc_for(f: Fetch, *, agent_node: str = "") -> tuple[str, dict[str, Any], bool]:
    """(endpoint, args, blocking-capable) for a Fetch."""
    if f.kind in ("service", "servers"):
        if f.ingress:
            return "Health.IngressServiceNodes", {"service": f.name}, True
        args: dict[str, Any] = {"service": f.name}
        if f.tag:
            args["tags"] = [f.tag]
        if f.connect:
            args["connect"] = True
        return "Health.ServiceNodes", args, True
    if f.kind == "node":
        return "Catalog.NodeServices", {"node": f.name}, True
    if f.kind == "nodes":
        return "Catalog.ListNodes", {}, True
    if f.kind == "service_addr":
        return "Catalog.ServicesByAddress", {"address": f.name}, True
    if f.kind == "coords":
        return "Coordinate.ListNodes", {}, True
    if f.kind == "query":
        return "PreparedQuery.Execute", {"query": f.name, "agent_node": agent_node}, False
    raise ValueError(f"unknown fetch kind {f.kind!r}")


@dataclass(slots=True)
class _Entry:
    value: Any
    index: int
    fetched: float
    last_used: float
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None


class CatalogCache:
    def __init__(self, rpc: RPC, cfg: DNSConfig, token: Callable[[], str | None], *,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 4096, idle: float = 120.0,
                 error_ttl: float = 1.0) -> None:
        self._rpc = rpc
        self.cfg = cfg
        self._token = token
        self._clock = clock
        self._rng = random.Random()
        self.max_entries = max_entries
        self.idle = idle
        self.error_ttl = error_ttl
        self._entries: OrderedDict[tuple[Fetch, str | None], _Entry] = OrderedDict()
        self._inflight: dict[tuple[Fetch, str | None], asyncio.Future[Any]] = {}
        self.rpcs = 0  # RPCs made for answers (not counting refreshers): what a storm would cost
        self.hits = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, f: Fetch) -> tuple[bool, Any]:
        """(True, rows) when a fresh cached answer exists (errors included, as the exception), without
        waiting: the server's synchronous fast path. (False, None) otherwise."""
        if not self.cfg.use_cache or (f.dc and f.dc != self.cfg.datacenter):
            return False, None
        ent = self._entries.get((f, self._token()))
        now = self._clock()
        if ent is None or not self._fresh(ent, f, now):
            return False, None
        ent.last_used = now
        self.hits += 1
        return True, (ent.error if ent.error is not None else ent.value)

    async def get(self, f: Fetch) -> Any:
        if f.dc and f.dc != self.cfg.datacenter:
            # one datacenter: Consul answers "no path to datacenter" with NXDOMAIN
            raise NotFound(f"No path to datacenter {f.dc!r}")
        token = self._token()
        key = (f, token)
        now = self._clock()
        if self.cfg.use_cache:
            ent = self._entries.get(key)
            if ent is not None and self._fresh(ent, f, now):
                ent.last_used = now
                self._entries.move_to_end(key)
                self.hits += 1
                if ent.error is not None:
                    raise ent.error
                return ent.value
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            value = await self._load(f, token, key)
            fut.set_result(value)
            return value
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(key, None)

    def _fresh(self, ent: _Entry, f: Fetch, now: float) -> bool:
        if ent.error is not None:
            return now - ent.fetched < self.error_ttl
        if ent.task is not None and not ent.task.done():
            # kept fresh by its blocking query; cache_max_age bounds it further if set
            return not self.cfg.cache_max_age or now - ent.fetched <= self.cfg.cache_max_age
        return bool(self.cfg.cache_max_age) and now - ent.fetched <= self.cfg.cache_max_age

    def _args(self, args: dict[str, Any], token: str | None, stale: bool) -> dict[str, Any]:
        out = dict(args, stale=stale)
        if token is not None:
            out["token"] = token
        return out

    async def _call(self, name: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        self.rpcs += 1
        out = await self._rpc(name, self._args(args, token, self.cfg.allow_stale))
        if self.cfg.allow_stale and float(out.get("last_contact") or 0.0) > self.cfg.max_stale:
            log.warning("DNS: %s result too stale, asking again for a consistent one", name)
            out = await self._rpc(name, self._args(args, token, False))
        return out

    async def _load(self, f: Fetch, token: str | None, key: tuple[Fetch, str | None]) -> Any:
        name, args, blocking = rpc_for(f, agent_node=self.cfg.node_name)
        now = self._clock()
        try:
            out = await self._call(name, args, token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.cfg.use_cache:
                self._store(key, _Entry(None, 0, now, now, error=exc))
            raise
        value = out.get("result")
        if self.cfg.use_cache:
            ent = _Entry(value, int(out.get("index") or 0), now, now)
            self._store(key, ent)
            if blocking and not self.closed:
                # a fresh Context: the refresher must not inherit a request's ContextVars
                ent.task = asyncio.get_running_loop().create_task(
                    self._refresh(key, ent, name, args, token), name=f"dns-cache {name}",
                    context=contextvars.Context())
        return value

    def _store(self, key: tuple[Fetch, str | None], ent: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        self._entries[key] = ent
        while len(self._entries) > self.max_entries:
            _, evicted = self._entries.popitem(last=False)
            if evicted.task is not None:
                evicted.task.cancel()

    async def _refresh(self, key: tuple[Fetch, str | None], ent: _Entry, name: str, args: dict[str, Any],
                       token: str | None) -> None:
        backoff = 0.5
        while not self.closed:
            if self._clock() - ent.last_used > self.idle:
                break
            try:
                # jittered, so entries made together do not all time out (and ask again) together
                wait = min(BLOCKING_WAIT, self.idle) * (0.5 + 0.5 * self._rng.random())
                out = await self._rpc(name, dict(self._args(args, token, self.cfg.allow_stale),
                                                 min_index=max(ent.index, 1), wait=wait))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving what we have; try again later
                log.debug("DNS cache refresh of %s failed: %s", name, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            idx = int(out.get("index") or 0)
            if idx < ent.index:  # the index went backwards (a restore): start again from 0
                idx = 0
            ent.value, ent.index, ent.fetched = out.get("result"), idx, self._clock()
        if self._entries.get(key) is ent:
            del self._entries[key]

    async def close(self) -> None:
        self.closed = True
        await cancel_and_wait(e.task for e in self._entries.values() if e.task is not None)
        self._entries.clear()
