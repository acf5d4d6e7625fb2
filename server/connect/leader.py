"""Leader duties of the CA, and the leader-only signing state (rate limiter, serial blocks).

* :func:`ca_leader_duties` runs in each leader-loop iteration once leadership is established:
  initialize the CA if this cluster has none (cluster ID, first root), then prune retired roots
  whose leaves have all expired. It returns a sentence saying what it did (or "").
* :func:`rotate` makes a new root active, cross-signed by the old one.
* :class:`CAManager` (one per server, :func:`manager_for`) holds what only the leader needs to
  sign: the parsed signing key (provider.Signer), the CSR rate limiter and the current block of
  serial numbers. Serials are reserved from the replicated state ``SERIAL_BLOCK`` at a time, so a
  leaf costs no Raft write yet serials stay unique across leader changes: a new leader reserves
  a fresh block after the committed high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lictor.common.commands import MessageType
from lictor.common.errors import Conflict, ValidationError
from lictor.server.connect import provider, state
from lictor.server.connect.state import CAConfig, config_to_payload

if TYPE_CHECKING:
    from lictor.server.server import Server

__all__ = ["CAManager", "RateLimitedError", "RATE_LIMITED_MESSAGE", "ca_initialize", "ca_leader_duties",
           "is_rate_limited", "manager_for", "rotate"]

log = logging.getLogger("lictor.connect.ca")

SERIAL_BLOCK = 1000
#: Consul's text for a refused CSR (structs.ErrRateLimited); agents match on it across the wire.
RATE_LIMITED_MESSAGE = "Rate limit reached, try again later"


class RateLimitedError(ValidationError):
    """The leader refused a CSR because of CSRMaxPerSecond / CSRMaxConcurrent (HTTP 429)."""

    status = 429
    error_code = "RateLimited"  # stable across RPC (lictor.common.rpc.errmap)

    def __init__(self) -> None:
        super().__init__(RATE_LIMITED_MESSAGE)


def is_rate_limited(exc: BaseException) -> bool:
    """True for a rate-limit refusal, local or rebuilt from an RPC error reply (which keeps only
    the message)."""
    return RATE_LIMITED_MESSAGE in str(exc)


class TokenBucket:
    """``rate`` tokens per second, burst ``rate`` (as Consul's limiter); ``rate <= 0`` is off."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate = rate
        self._tokens = max(rate, 1.0)
        self._last = clock()

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            was_off, self.rate = self.rate <= 0, rate
            self._tokens = max(rate, 1.0) if was_off else min(self._tokens, max(rate, 1.0))
            self._last = self._clock()

    def try_take(self) -> bool:
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(max(self.rate, 1.0), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class CAManager:
    """The leader-only signing state of one server."""

    def __init__(self, server: Server, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._server = weakref.ref(server)
        self.signer = provider.Signer()
        self.bucket = TokenBucket(0.0, clock=clock)
        self.in_flight = 0
        self._serials: list[int] = []  # [next, end) of the reserved block, empty when none
        self._reserving: asyncio.Lock = asyncio.Lock()
        self._epoch: object = None  # the store a block was reserved against (a restore resets it)

    def admit(self, cfg: CAConfig) -> None:
        """Rate limiting on the leader, before any work: CSRMaxPerSecond when set, else
        CSRMaxConcurrent; a refusal is :class:`RateLimitedError`."""
        self.bucket.set_rate(cfg.csr_max_per_second)
        if cfg.csr_max_per_second > 0:
            if not self.bucket.try_take():
                raise RateLimitedError()
        elif cfg.csr_max_concurrent > 0 and self.in_flight >= cfg.csr_max_concurrent:
            raise RateLimitedError()

    async def next_serials(self, n: int = 1) -> list[int]:
        """``n`` fresh serial numbers, reserving a new block through Raft when this one runs out."""
        server = self._server()
        assert server is not None
        out: list[int] = []
        while len(out) < n:
            if server.store is not self._epoch:
                self._serials = []
            if self._serials and self._serials[0] < self._serials[1]:
                out.append(self._serials[0])
                self._serials[0] += 1
                continue
            async with self._reserving:
                if self._serials and self._serials[0] < self._serials[1] and server.store is self._epoch:
                    continue
                epoch = server.store
                first = await server.apply(MessageType.CONNECT_CA, {"op": "reserve_serials", "count": SERIAL_BLOCK})
                self._serials, self._epoch = [int(first), int(first) + SERIAL_BLOCK], epoch
        return out

    def drop_serials(self) -> None:
        """Forget the reserved block (leadership lost: the next leader reserves its own)."""
        self._serials = []


_MANAGERS: weakref.WeakKeyDictionary[Any, CAManager] = weakref.WeakKeyDictionary()


def manager_for(server: Server) -> CAManager:
    m = _MANAGERS.get(server)
    if m is None:
        m = _MANAGERS[server] = CAManager(server)
    return m


async def ca_initialize(server: Server, *, config: CAConfig | None = None) -> bool:
    """Create the CA if this cluster has none: a cluster ID (kept if one exists) and the first
    root. Idempotent; returns True when this call initialized it."""
    store = server.store
    if store.ext["ca_config"].get("config") is not None:
        return False
    cfg = config or CAConfig()
    cluster_id = store.ext["system_metadata"].get("cluster_id") or provider.new_cluster_id()
    now = time.time()
    row, key_pem, _k, _c = provider.new_root(cfg, cluster_id=cluster_id, serial=1, now=now)
    done = await server.apply(MessageType.CONNECT_CA, {
        "op": "initialize", "cluster_id": cluster_id, "config": config_to_payload(cfg), "root": row,
        "private_key_pem": key_pem, "serial_next": 2})
    if done:
        log.info("CA initialized: trust domain %s.consul, root %s", cluster_id, row["id"])
    return bool(done)


async def rotate(server: Server, config: CAConfig | None = None) -> str:
    """Make a new root active (of ``config``'s key type, default: the current config), cross-signed
    by the current root; returns the new root's ID. Raises Conflict if a racing rotation won."""
    store = server.store
    cur: CAConfig | None = store.ext["ca_config"].get("config")
    old = state.active_root(store)
    if cur is None or old is None:
        raise Conflict("CA is not initialized yet")
    cfg = config or cur
    serials = await manager_for(server).next_serials(2)
    payload = provider.rotation_payload(server.store, old, cfg, serials=(serials[0], serials[1]), now=time.time())
    await server.apply(MessageType.CONNECT_CA, payload)
    log.info("CA root rotated: %s -> %s (%s %d)", old.id, payload["root"]["id"], cfg.private_key_type,
             cfg.private_key_bits)
    return str(payload["root"]["id"])


async def ca_leader_duties(server: Server) -> str:
    """One leader-loop step for the CA; never raises (a failure is logged and retried next time)."""
    try:
        said = []
        if await ca_initialize(server):
            said.append("initialized the CA")
        old = state.prunable_roots(server.store, time.time())
        if old:
            n = await server.apply(MessageType.CONNECT_CA, {"op": "prune", "root_ids": old})
            said.append(f"pruned {n} expired CA roots")
        return "; ".join(said)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a leader routine must not die
        log.warning("CA leader duties failed: %s", exc)
        return ""
