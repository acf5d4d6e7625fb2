"""Connection limits for the HTTP API: per-client connection caps and a request-header deadline.

Consul's ``limits.http_max_conns_per_client`` (default 200) caps the connections one client IP
may hold open at once; a connection over the cap is closed as soon as it is accepted, so one
client cannot take every file descriptor. A request's headers must arrive within
``header_timeout`` seconds of their first byte (Go's ``ReadHeaderTimeout``), so a client that
sends half a request and stops (slowloris) loses the connection instead of holding it.

aiohttp has neither knob, so :class:`GuardedTCPSite` serves the runner's application through
:class:`_GuardedHandler`, aiohttp's own ``RequestHandler`` with two additions:

    connection_made: count the peer IP; over the cap -> close at once (counted in ``refused``)
    data_received:   idle (no request parsed, none running) and no deadline armed -> arm one
                     a parsed request -> disarm; the deadline firing while still idle -> close
    connection_lost: uncount the peer IP

"Idle" reads attributes of aiohttp's handler (``_messages``, ``_current_request``, ``_waiter``,
``_request_count``); they
have been stable across aiohttp 3.x, and tests/integration/test_connection_limits.py fails if
they change meaning.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["DEFAULT_HEADER_TIMEOUT", "ConnGuard", "GuardedTCPSite"]

log = logging.getLogger("lictor.http")

DEFAULT_HEADER_TIMEOUT = 10.0


@dataclass(slots=True)
class ConnGuard:
    """Shared by every listener of one agent: the per-IP counts and the limits."""

    max_conns_per_client: int = 200  # 0: no limit (as Consul)
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    open: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    header_timeouts: int = 0

    def acquire(self, ip: str) -> bool:
        if self.max_conns_per_client > 0 and self.open[ip] >= self.max_conns_per_client:
            self.refused += 1
            return False
        self.open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        n = self.open[ip] - 1
        if n > 0:
            self.open[ip] = n
        else:
            del self.open[ip]


class _GuardedHandler(RequestHandler):
    def __init__(self, manager: web.Server, guard: ConnGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._peer_ip: str | None = None
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else None
        super().connection_made(transport)
        if ip is None:
            return
        if not self._guard.acquire(ip):
            log.warning("refusing HTTP connection from %s: %d connections open (limits.http_max_conns_per_client)",
                        ip, self._guard.open[ip])
            self.force_close()
            return
        self._peer_ip = ip

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._peer_ip is not None:
            self._guard.release(self._peer_ip)
            self._peer_ip = None
        super().connection_lost(exc)

    def _idle(self) -> bool:
        """Waiting for a request's headers: none parsed and queued, none being handled, and the
        handler loop is waiting for one (or none has arrived on this connection yet)."""
        if self._messages or self._current_request is not None:
            return False
        waiter = self._waiter
        return (waiter is not None and not waiter.done()) or self._request_count == 0

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and self._idle() and self._guard.header_timeout > 0:
            self._header_deadline = self._loop.call_later(self._guard.header_timeout, self._headers_late)
        super().data_received(data)
        if self._header_deadline is not None and not self._idle():
            self._disarm()

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._idle():
            self._guard.header_timeouts += 1
            log.info("closing HTTP connection from %s: request headers incomplete after %gs",
                     self._peer_ip, self._guard.header_timeout)
            self.force_close()


class GuardedTCPSite(web.TCPSite):
    """A ``TCPSite`` whose connections are :class:`_GuardedHandler`\\ s sharing ``guard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnGuard, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        kwargs = dict(getattr(server, "_kwargs", {}))  # what AppRunner hands every RequestHandler
        guard = self._guard

        def factory() -> _GuardedHandler:
            return _GuardedHandler(server, guard, loop=loop, **kwargs)

        self._server = await loop.create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
