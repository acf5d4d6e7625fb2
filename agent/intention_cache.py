"""The agent's view of the intentions for each destination it authorizes (Consul's IntentionMatch
cache), so that ``/v1/agent/connect/authorize`` decides the same way on every agent.

::

    get(destination, token) --first use--> watch task (clean context, the caller's token passed
                                           explicitly): Intention.DestinationView blocking RPC,
                                           min_index = last index -> view (+ change future)
                            --later uses--> the cached view, at once

The view holds the service-intentions entries that apply to the destination and the servers'
default policy; :func:`authorize` decides from it with the same pure function the servers use
(:func:`lictor.server.configentry.intentions.intention_decision`). Views are keyed by
(destination, token), as Consul's cache keys its entries, so one token's read right never serves
another; a view nobody asked for in ``idle_ttl`` stops watching and is dropped.

While no server answers, a cached view keeps being served (Consul's cache does the same); a first
use waits up to ``first_fetch_timeout`` and then fails with the RPC's error.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import ACLNotFoundError, LictorError, PermissionDeniedError, ValidationError
from lictor.server.configentry.entries import DEFAULT_NS, DictView
from lictor.server.configentry.intentions import intention_decision

__all__ = ["AuthorizeResult", "DestinationView", "IntentionCache", "authorize"]

log = logging.getLogger("lictor.intentions")

RPC = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

WATCH_WAIT = 300.0
FIRST_FETCH_TIMEOUT = 30.0
IDLE_TTL = 3 * 24 * 3600.0  # as Consul's cache entries
BACKOFF_MIN = 0.1
BACKOFF_MAX = 30.0

#: Consul's reasons (agent/connect_auth.go).
REASON_ACLS_DISABLED = "ACLs disabled, access is allowed by default"
REASON_DEFAULT = "Default behavior configured by ACLs"
REASON_DEFAULT_DENY = "Default intention policy is deny"


@dataclass(frozen=True, slots=True)
class DestinationView:
    """The intentions that apply to one destination, and the default for pairs none matches."""

    index: int
    entries: tuple[dict[str, Any], ...]
    default_allow: bool
    acls_enabled: bool

    @classmethod
    def from_result(cls, index: int, result: dict[str, Any]) -> DestinationView:
        entries = result.get("Entries") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValidationError("Intention.DestinationView: Entries must be a list of config entries")
        return cls(index=index, entries=tuple(entries), default_allow=bool(result.get("DefaultAllow", True)),
                   acls_enabled=bool(result.get("ACLsEnabled", False)))


@dataclass(frozen=True, slots=True)
class AuthorizeResult:
    authorized: bool
    reason: str


def authorize(view: DestinationView, source: str, destination: str, *, source_ns: str = DEFAULT_NS,
              destination_ns: str = DEFAULT_NS) -> AuthorizeResult:
    """Consul's L4 decision for ``source -> destination`` from ``view`` (pure): the matching
    intention of highest precedence decides (one with L7 permissions denies), else the default."""
    d = intention_decision(DictView(view.entries), source, destination, source_ns=source_ns,
                           destination_ns=destination_ns, default=view.default_allow)
    ix = d.intention
    if ix is not None and not d.default:
        label = f"{ix.source_ns}/{ix.source_name} => {ix.destination_ns}/{ix.destination_name}"
        if ix.permissions:
            return AuthorizeResult(False, f"Matched L7 intention: {label} (Precedence: {ix.precedence})")
        return AuthorizeResult(d.allowed, f"Matched L4 intention: {label} (Precedence: {ix.precedence})")
    if view.acls_enabled:
        return AuthorizeResult(view.default_allow, REASON_DEFAULT)
    if view.default_allow:
        return AuthorizeResult(True, REASON_ACLS_DISABLED)
    # ACLs off, but the mesh entry (or the servers' default_intention_policy) says deny
    return AuthorizeResult(False, REASON_DEFAULT_DENY)


@dataclass
class _Watch:
    destination: str
    token: str
    view: DestinationView | None = None
    error: LictorError | None = None
    last_used: float = 0.0
    changed: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None
    failures: int = field(default=0)


class IntentionCache:
    """Views per (destination, token), each kept current by one blocking watch."""

    def __init__(self, rpc: RPC, *, clock: Clock | None = None, rng: random.Random | None = None,
                 idle_ttl: float = IDLE_TTL, first_fetch_timeout: float = FIRST_FETCH_TIMEOUT) -> None:
        self._rpc = rpc
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.idle_ttl = idle_ttl
        self.first_fetch_timeout = first_fetch_timeout
        self._watches: dict[tuple[str, str], _Watch] = {}
        self.fetches = 0  # RPC answers received (tests: a cached view costs no RPC)

    async def get(self, destination: str, token: str) -> DestinationView:
        """The current view for ``destination`` as ``token`` may read it; the first call for a
        key waits for the first answer."""
        w = self._watches.get((destination, token))
        if w is None:
            w = self._watches[(destination, token)] = _Watch(destination, token)
        w.last_used = self.clock.monotonic()
        if w.task is None or w.task.done():
            # a fresh context: the watch outlives this request and must not carry its ContextVars
            w.task = asyncio.get_running_loop().create_task(self._run(w), name=f"intentions-{destination}",
                                                            context=contextvars.Context())
        if w.view is None:
            try:
                await asyncio.wait_for(asyncio.shield(self._future(w)), self.first_fetch_timeout)
            except TimeoutError:
                pass
        if w.view is None:
            err = w.error or LictorError(f"intentions for {destination!r} are not available yet")
            if isinstance(err, (PermissionDeniedError, ACLNotFoundError)):
                self._drop(w)
            raise err
        return w.view

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        self._watches.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _future(self, w: _Watch) -> asyncio.Future[None]:
        if w.changed is None or w.changed.done():
            w.changed = asyncio.get_running_loop().create_future()
        return w.changed

    def _wake(self, w: _Watch) -> None:
        fut, w.changed = w.changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _drop(self, w: _Watch) -> None:
        if self._watches.get((w.destination, w.token)) is w:
            del self._watches[(w.destination, w.token)]
        if w.task is not None and w.task is not asyncio.current_task():
            w.task.cancel()

    async def _run(self, w: _Watch) -> None:
        while self.clock.monotonic() - w.last_used < self.idle_ttl:
            index = w.view.index if w.view is not None else 0
            try:
                out = await self._rpc("Intention.DestinationView", {
                    "destination": w.destination, "token": w.token, "min_index": index, "wait": WATCH_WAIT})
                view = DestinationView.from_result(max(int(out.get("index") or 0), 1), out.get("result") or {})
            except asyncio.CancelledError:
                raise
            except LictorError as exc:
                w.error, w.failures = exc, w.failures + 1
                self._wake(w)
                if isinstance(exc, (PermissionDeniedError, ACLNotFoundError)):
                    break  # the token may not read these intentions: ask again only when asked again
                delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(w.failures, 10)) * (0.5 + self.rng.random() / 2)
                log.warning("watching intentions for %s failed (retry in %.1fs): %s", w.destination, delay, exc)
                await self.clock.sleep(delay)
                continue
            self.fetches += 1
            w.error, w.failures = None, 0
            if w.view is None or view != w.view:
                w.view = view
                self._wake(w)
        self._drop(w)
