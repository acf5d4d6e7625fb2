"""The agent's shared cache of blocking queries (Consul's agent cache, reduced to what proxycfg
needs): every distinct (RPC name, arguments) is watched by ONE background loop, however many
proxies subscribe, so 100 proxies with the same upstream cost one watch on the servers.

::

    cache.notify(name, args, cid, fn) --first subscriber--> loop: rpc(name, {**args, min_index, wait})
                                                              | index moved -> fn(cid, result) for each
                                                              | error -> capped exponential backoff
    handle.cancel() --last subscriber gone--> loop cancelled

A new subscriber to a key that already has a result gets it at once (on the next loop turn).
Callbacks run on the event loop and must not block.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
from lictor.common.tasks import cancel_and_wait
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentCache", "Subscription"]

log = logging.getLogger("lictor.proxycfg")

RPC = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Callback = Callable[[str, Any], None]

WAIT = 300.0
BACKOFF_MIN = 0.05
BACKOFF_MAX = 10.0


@dataclass(slots=True, eq=False)
class _Entry:
    name: str
    args: dict[str, Any]
    subscribers: dict[int, tuple[str, Callback]] = field(default_factory=dict)
    index: int = 0
    result: Any = None
    has_result: bool = False
    task: asyncio.Task[None] | None = None


class Subscription:
    __slots__ = ("_cache", "_key", "_sid")

    def __init__(self, cache: AgentCache, key: str, sid: int) -> None:
        self._cache, self._key, self._sid = cache, key, sid

    def cancel(self) -> None:
        self._cache._unsubscribe(self._key, self._sid)


class AgentCache:
    def __init__(self, rpc: RPC, *, rng: random.Random | None = None, wait: float = WAIT) -> None:
        self._rpc = rpc
        self._rng = rng or random.Random()
        self._wait = wait
        self._entries: dict[str, _Entry] = {}
        self._next = 0
        self.fetches = 0  # RPCs made (tests and benchmarks read it)

    @property
    def watches(self) -> int:
        return len(self._entries)

    def notify(self, name: str, args: dict[str, Any], correlation_id: str, fn: Callback) -> Subscription:
        key = name + "\x00" + json.dumps(args, sort_keys=True, default=str)
        ent = self._entries.get(key)
        if ent is None:
            ent = self._entries[key] = _Entry(name=name, args=dict(args))
            # a fresh context: the loop must not inherit a request's ContextVars (its token)
            ent.task = asyncio.get_running_loop().create_task(self._run(ent), name=f"cache:{name}",
                                                              context=contextvars.Context())
        self._next += 1
        ent.subscribers[self._next] = (correlation_id, fn)
        if ent.has_result:
            result = ent.result
            asyncio.get_running_loop().call_soon(self._deliver_one, ent, self._next, result)
        return Subscription(self, key, self._next)

    def _deliver_one(self, ent: _Entry, sid: int, result: Any) -> None:
        sub = ent.subscribers.get(sid)
        if sub is not None and result is ent.result:
            sub[1](sub[0], result)

    def _unsubscribe(self, key: str, sid: int) -> None:
        ent = self._entries.get(key)
        if ent is None:
            return
        ent.subscribers.pop(sid, None)
        if not ent.subscribers:
            del self._entries[key]
            if ent.task is not None:
                ent.task.cancel()

    async def close(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        self._entries.clear()
        await cancel_and_wait(tasks)

    async def _run(self, ent: _Entry) -> None:
        failures = 0
        while True:
            try:
                self.fetches += 1
                out = await self._rpc(ent.name, {**ent.args, "min_index": ent.index, "wait": self._wait})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - servers come back; keep the last result
                failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(failures - 1, 16)) * self._rng.uniform(0.5, 1.0)
                log.warning("watch %s failed (retry in %.2fs): %s", ent.name, delay, exc)
                await asyncio.sleep(delay)
                continue
            failures = 0
            # never 0: a table nobody wrote yet answers index 0, and min_index 0 would not block
            # (Consul's rule: an index is at least 1)
            idx = max(1, int(out.get("index") or 0))
            result = out.get("result")
            changed = not ent.has_result or idx != ent.index or result != ent.result
            ent.index = idx if idx >= ent.index else 1  # backwards (a restored snapshot): start over
            if changed:
                ent.result, ent.has_result = result, True
                for cid, fn in list(ent.subscribers.values()):
                    try:
                        fn(cid, result)
                    except Exception:  # noqa: BLE001 - one subscriber must not stop the others
                        log.exception("cache subscriber %s failed", cid)
