"""The agent's leaf-certificate manager: one fresh certificate per local service, kept current.

::

    roots loop:  ConnectCA.Roots (blocking RPC, min_index = last index) -> self.roots (+ change future)
    per service: key (EC P-256, generated here, never sent) -> CSR -> ConnectCA.Sign (leader)
                 -> publish (index += 1, wakes blocking GETs)
                 -> wait until renew_at (a random point in 60-90% of the lifetime)
                    or until the active root changes (then wait a random 0..root_change_jitter)
                 -> sign again.  Rate-limited or failed: retry with capped exponential backoff.

Time and randomness are injected: ``clock`` (a :class:`~lictor.common.clock.Clock`) schedules
renewals and backoffs, ``wall`` gives the wall-clock time certificates are compared with, and
``rng`` draws the renewal point, jitter and backoff. Tests pass a ManualClock and a seeded
Random. Blocking HTTP reads (``get(..., wait=)``) use real time, as every blocking query does.

A service's entry is dropped when nobody asked for it for ``idle_ttl`` (72h, as Consul's cache).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from lictor.common.clock import Clock, SystemClock
from lictor.common.errors import LictorError, ValidationError
from lictor.common.tasks import cancel_and_wait, spawn
from lictor.server.connect import ca
from lictor.server.connect.leader import is_rate_limited

__all__ = ["LeafCertManager", "renew_delay"]

log = logging.getLogger("lictor.leafcert")

RPC = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

#: Consul spreads re-signing after a root change over 30 s so that a rotation does not send
#: every agent's every CSR to the leader at once (caChangeJitterWindow).
DEFAULT_ROOT_CHANGE_JITTER = 30.0
BACKOFF_MIN = 0.1
BACKOFF_MAX = 30.0
ROOTS_WAIT = 300.0
FIRST_FETCH_TIMEOUT = 60.0
IDLE_TTL = 72 * 3600.0
MIN_RENEW_DELAY = 1.0


def renew_delay(valid_after: float, valid_before: float, now: float, rng: random.Random) -> float:
    """Seconds from ``now`` until renewal: a uniformly random point between 60% and 90% of the
    certificate's lifetime (never negative)."""
    lifetime = max(0.0, valid_before - valid_after)
    at = valid_after + lifetime * rng.uniform(0.6, 0.9)
    return max(0.0, at - now)


def _env_jitter() -> float | None:
    raw = os.environ.get("LICTOR_LEAF_ROOT_CHANGE_JITTER")
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ValidationError(f"LICTOR_LEAF_ROOT_CHANGE_JITTER={raw!r}: expected seconds") from None
    return max(0.0, min(v, 600.0))


def _ts(s: str) -> float:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


@dataclass(slots=True, eq=False)
class _Leaf:
    service: str
    token: str = ""
    cert: dict[str, Any] | None = None  # the API shape, PrivateKeyPEM included
    root_id: str = ""
    roots_index: int = 0  # the agent's roots index when this cert was signed
    index: int = 0
    error: BaseException | None = None
    last_used: float = 0.0
    changed: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None
    renewals: int = field(default=0)


class LeafCertManager:
    """Leaf certificates and the CA roots, cached on the agent. Create one per agent."""

    def __init__(self, agent: Any = None, *, rpc: RPC | None = None, datacenter: str | None = None,
                 clock: Clock | None = None, wall: Callable[[], float] = time.time,
                 rng: random.Random | None = None, root_change_jitter: float | None = None,
                 key_type: str = "ec", key_bits: int = 256, idle_ttl: float = IDLE_TTL) -> None:
        self._rpc: RPC = rpc or agent.rpc
        self.datacenter: str = datacenter or agent.datacenter
        self.clock: Clock = clock or SystemClock()
        self.wall = wall
        self.rng = rng or random.Random()
        env = _env_jitter()
        self.root_change_jitter = (root_change_jitter if root_change_jitter is not None
                                   else env if env is not None else DEFAULT_ROOT_CHANGE_JITTER)
        ca.validate_key_spec(key_type, key_bits)
        self.key_type, self.key_bits = key_type, key_bits
        self.idle_ttl = idle_ttl
        self.roots: dict[str, Any] | None = None
        self.roots_index = 0
        self._roots_changed: asyncio.Future[None] | None = None
        self._roots_task: asyncio.Task[None] | None = None
        self._leaves: dict[str, _Leaf] = {}
        self._index = 0
        self.signed = 0  # certificates received (for metrics and benchmarks)

    # ----- public API --------------------------------------------------------------------------
    async def get_roots(self, *, min_index: int = 0, wait: float = ROOTS_WAIT) -> tuple[int, dict[str, Any]]:
        """The roots as this agent knows them; blocks while ``min_index`` equals the index."""
        self._start_roots()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait if min_index else FIRST_FETCH_TIMEOUT)
        while self.roots is None or (min_index and self.roots_index == min_index):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await _wait(self._roots_future(), remaining)
        if self.roots is None:
            raise LictorError("CA roots are not available yet")
        return max(self.roots_index, 1), self.roots

    async def get(self, service: str, *, min_index: int = 0, wait: float = ROOTS_WAIT,
                  token: str = "") -> tuple[int, dict[str, Any]]:
        """The current leaf of ``service`` (signing one if this is the first request); blocks
        while ``min_index`` equals its index, up to ``wait`` seconds."""
        if not service:
            raise ValidationError("service name is required")
        leaf = self._ensure(service, token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait if min_index and leaf.cert is not None else FIRST_FETCH_TIMEOUT)
        while leaf.cert is None or (min_index and leaf.index == min_index):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await _wait(self._leaf_future(leaf), remaining)
            leaf.last_used = self.wall()
        if leaf.cert is None:
            err = leaf.error
            if err is not None and is_rate_limited(err):
                raise ValidationError(str(err), status=429)
            raise LictorError(f"no certificate for {service!r} yet" + (f": {err}" if err else ""))
        return leaf.index, leaf.cert

    def cached(self, service: str) -> dict[str, Any] | None:
        leaf = self._leaves.get(service)
        return leaf.cert if leaf else None

    @property
    def active_root_id(self) -> str:
        return str(self.roots.get("ActiveRootID") or "") if self.roots else ""

    async def close(self) -> None:
        await cancel_and_wait(t for t in [self._roots_task, *(lf.task for lf in self._leaves.values())]
                              if t is not None)
        self._leaves.clear()
        self._roots_task = None

    # ----- roots -------------------------------------------------------------------------------
    def _start_roots(self) -> None:
        if self._roots_task is None or self._roots_task.done():
            self._roots_task = spawn(self._watch_roots(), name="leafcert-roots")

    def _roots_future(self) -> asyncio.Future[None]:
        if self._roots_changed is None or self._roots_changed.done():
            self._roots_changed = asyncio.get_running_loop().create_future()
        return self._roots_changed

    async def _watch_roots(self) -> None:
        failures = 0
        while True:
            try:
                out = await self._rpc("ConnectCA.Roots", {"min_index": self.roots_index, "wait": ROOTS_WAIT})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep watching; a server may come back
                failures += 1
                delay = self._backoff(failures)
                log.warning("watching CA roots failed (retry in %.1fs): %s", delay, exc)
                await self.clock.sleep(delay)
                continue
            failures = 0
            result = out.get("result")
            idx = int(out.get("index") or 0)
            if result and result.get("ActiveRootID") and (idx != self.roots_index or result != self.roots):
                self.roots, self.roots_index = result, idx
                fut, self._roots_changed = self._roots_changed, None
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif not (result and result.get("ActiveRootID")):
                # the CA is not initialized yet: the index may not move when it is, so poll
                self.roots_index = 0
                await self.clock.sleep(0.2)

    async def _wait_roots(self) -> dict[str, Any]:
        self._start_roots()
        while self.roots is None:
            await self._roots_future()
        return self.roots

    # ----- leaves ------------------------------------------------------------------------------
    def _ensure(self, service: str, token: str) -> _Leaf:
        leaf = self._leaves.get(service)
        if leaf is None:
            leaf = self._leaves[service] = _Leaf(service=service)
        if token:
            leaf.token = token
        leaf.last_used = self.wall()
        if leaf.task is None or leaf.task.done():
            leaf.task = spawn(self._run(leaf), name=f"leafcert-{service}")
        return leaf

    def _leaf_future(self, leaf: _Leaf) -> asyncio.Future[None]:
        if leaf.changed is None or leaf.changed.done():
            leaf.changed = asyncio.get_running_loop().create_future()
        return leaf.changed

    def _publish(self, leaf: _Leaf) -> None:
        fut, leaf.changed = leaf.changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _backoff(self, failures: int) -> float:
        base = min(BACKOFF_MAX, BACKOFF_MIN * (2 ** min(failures - 1, 20)))
        return base * self.rng.uniform(0.5, 1.0)

    async def _run(self, leaf: _Leaf) -> None:
        failures = 0
        while True:
            roots = await self._wait_roots()
            try:
                roots_index = self.roots_index
                cert, root_id = await self._sign(leaf, roots)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                failures += 1
                leaf.error = exc
                self._publish(leaf)  # a first-time waiter may want the error
                delay = self._backoff(failures)
                if not is_rate_limited(exc):
                    log.warning("signing a leaf for %s failed (retry in %.1fs): %s", leaf.service, delay, exc)
                await self.clock.sleep(delay)
                continue
            failures = 0
            self._index += 1
            leaf.cert, leaf.root_id, leaf.error = {**cert, "CreateIndex": self._index, "ModifyIndex": self._index}, \
                root_id, None
            leaf.roots_index = roots_index
            leaf.index = self._index
            self.signed += 1
            self._publish(leaf)
            why = await self._until_renewal(leaf)
            if why == "idle":
                log.info("dropping the leaf of %s: unused for %s s", leaf.service, self.idle_ttl)
                self._leaves.pop(leaf.service, None)
                return
            if why == "root" and self.root_change_jitter > 0:
                await self.clock.sleep(self.rng.uniform(0, self.root_change_jitter))
            leaf.renewals += 1

    async def _sign(self, leaf: _Leaf, roots: dict[str, Any]) -> tuple[dict[str, Any], str]:
        key = ca.generate_private_key(self.key_type, self.key_bits)
        uri = ca.spiffe_service_uri(roots["TrustDomain"], self.datacenter, leaf.service)
        csr = ca.create_csr(key, [uri]).public_bytes(serialization.Encoding.PEM).decode()
        out = await self._rpc("ConnectCA.Sign", {"csr": csr, "service": leaf.service, "token": leaf.token})
        r = out["result"]
        cert = {"SerialNumber": r["SerialNumber"], "CertPEM": r["CertPEM"], "PrivateKeyPEM": ca.private_key_pem(key),
                "Service": r["Service"], "ServiceURI": r["ServiceURI"], "ValidAfter": r["ValidAfter"],
                "ValidBefore": r["ValidBefore"]}
        return cert, str(r.get("RootID") or roots.get("ActiveRootID") or "")

    async def _until_renewal(self, leaf: _Leaf) -> str:
        """Wait until the renewal point ("expiry"), an active-root change ("root"), or idleness."""
        assert leaf.cert is not None
        after, before = _ts(leaf.cert["ValidAfter"]), _ts(leaf.cert["ValidBefore"])
        # at least MIN_RENEW_DELAY: a leader whose clock is far ahead of ours must not make us
        # re-sign in a tight loop
        renew_at = self.wall() + max(MIN_RENEW_DELAY, renew_delay(after, before, self.wall(), self.rng))
        while True:
            # a root change this agent saw after signing (a leaf signed by a root newer than the
            # agent's view is left alone until the roots watch catches up)
            if self.roots_index != leaf.roots_index and self.active_root_id != leaf.root_id:
                return "root"
            now = self.wall()
            if now - leaf.last_used > self.idle_ttl:
                return "idle"
            if now >= renew_at:
                return "expiry"
            sleeper = asyncio.ensure_future(self.clock.sleep(renew_at - now))
            roots_changed = self._roots_future()
            try:
                await asyncio.wait({sleeper, roots_changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()


async def _wait(fut: asyncio.Future[None], timeout: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except TimeoutError:
        pass
