"""Asyncio drivers for the server RPC protocol: :class:`RPCServer` and :class:`RPCClient`.

Both are thin shells around :mod:`lictor.common.rpc.framing` (bytes <-> messages) and
:mod:`lictor.common.rpc.errmap` (errors <-> ``err`` replies). They use ``asyncio.Protocol``
callbacks rather than streams: ``data_received`` decodes and dispatches in place, which keeps the
per-message cost to one msgpack decode and a dict lookup (Raft pushes tens of thousands of
AppendEntries a second through here).

Server, per connection::

    data_received -> FrameDecoder.feed -> parse_message
        note -> handler.notify(method, args, peer)            sync, in order, no task
        req  -> task: await handler.handle(...) -> write res/err   (at most max_inflight at once;
                beyond that requests wait in a backlog and reading is paused = backpressure)
        anything else / garbage / oversize -> drop THIS connection (counted in server.stats)
    connection_made: the client IP already holds max_conns_per_client -> drop (refused_per_client)
    incomplete frames of all connections past max_partial_bytes -> drop (dropped_partial_budget)
    timer (every min(frame_timeout, idle_timeout, handshake_timeout)/4):
        a first frame started > handshake_timeout ago, incomplete -> drop (dropped_handshake)
        a frame in progress got no byte for handshake_timeout     -> drop (dropped_stalled)
        a frame started > frame_timeout ago and still incomplete -> drop (dropped_stalled)
        the peer stopped reading our replies for > frame_timeout -> drop (dropped_stalled)
        no bytes and nothing in flight for > idle_timeout          -> close (dropped_idle)

Client, per address: up to ``max_conns_per_addr`` multiplexed connections. ``call()`` tags each
request with a fresh id; the connection's ``data_received`` matches replies to futures by id (so
replies may arrive in any order). When a connection dies every pending call fails with
:class:`TransportError`; if the address was used within ``reconnect_linger`` seconds a background
task reconnects with exponential backoff and jitter. ``notify()`` is synchronous and never waits:
with no live connection (or a write buffer above ``notify_buffer_limit``) the message is dropped,
counted, and a reconnect is started; Raft retransmits on its own.

Writes are corked: frames written in one loop iteration leave in one ``transport.write`` (one
syscall), flushed by ``call_soon``. A writer only awaits when the transport has paused us
(buffer above the 1 MiB high-water mark) and resumes below the low-water mark.

Errors: nothing below ``LictorError`` escapes a public method. Socket errors pass through one
``map_exceptions(DEFAULT_IO_ERRORS)`` (OSError -> TransportError, ssl.SSLError -> TLSError),
timeouts become ``TransportError`` naming what timed out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as _ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from lictor.common.clock import Clock, SystemClock
from lictor.common.hostport import format_host_port, parse_host_port
from lictor.common.errors import (
    DEFAULT_IO_ERRORS,
    LictorError,
    RemoteProtocolError,
    TLSError,
    TransportError,
    map_exceptions,
)
from lictor.common.rpc.errmap import error_reply, exception_from_reply
from lictor.common.rpc.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    ErrorReply,
    FrameDecoder,
    FrameTooLarge,
    Notification,
    Request,
    Response,
    encode_frame,
    encode_notification,
    encode_request,
    encode_response,
    parse_message,
)

__all__ = [
    "ClientStats",
    "PeerInfo",
    "RPCClient",
    "RPCHandlerProtocol",
    "RPCServer",
    "ServerStats",
    "format_addr",
    "parse_addr",
]

log = logging.getLogger("lictor.rpc")

DEFAULT_MAX_INFLIGHT: Final = 256
DEFAULT_IDLE_TIMEOUT: Final = 300.0
DEFAULT_FRAME_TIMEOUT: Final = 30.0
#: Consul's limits.rpc_max_conns_per_client: connections one client IP may hold open (0: no cap).
DEFAULT_MAX_CONNS_PER_CLIENT: Final = 100
#: Consul's limits.rpc_handshake_timeout: a connection's first frame must be complete this long
#: after it started, and any frame in progress must not go this long without a byte.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
#: Bytes of incomplete frames all connections together may hold; the one that would pass it is
#: dropped (each may announce up to max_frame_size, 16 MiB, so 100 peers could pin 1.6 GiB).
DEFAULT_MAX_PARTIAL_BYTES: Final = 128 * 1024 * 1024
#: asyncio's default high-water mark is 64 KiB; Raft batches are bigger than that.
WRITE_HIGH_WATER: Final = 1024 * 1024
WRITE_LOW_WATER: Final = 256 * 1024
#: Corked bytes that force an immediate flush (keeps one loop iteration's batch bounded).
CORK_LIMIT: Final = 256 * 1024


# --------------------------------------------------------------------------------------------
# Shared values


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    """Who is on the other end of a server connection (handed to every handler call)."""

    addr: str
    """Remote ``host:port`` as seen by the socket."""
    conn_id: int
    """Server-unique id of the connection (stable for its lifetime; useful in logs)."""
    tls: bool
    """Whether the connection is TLS."""
    cert: Mapping[str, Any] | None = None
    """The verified client certificate (``SSLObject.getpeercert()``), when one was required."""


class RPCHandlerProtocol(Protocol):
    """What an :class:`RPCServer` dispatches to.

    ``handle`` runs as its own task per request; several run at once on one connection. A
    ``LictorError`` it raises reaches the caller as that error; anything else is logged here and
    reaches the caller as ``RemoteError("InternalError: ...")``.

    ``notify`` is called synchronously from the read path, in arrival order, for one-way
    messages. It must not block (hand work to a queue). Raising ``RemoteProtocolError`` drops
    the connection; other exceptions are logged and the connection stays up.
    """

    async def handle(self, method: str, args: dict[str, Any], peer: PeerInfo) -> Any: ...

    def notify(self, method: str, args: dict[str, Any], peer: PeerInfo) -> None: ...


@dataclass(slots=True)
class ServerStats:
    """Counters of an :class:`RPCServer` (monotonic except ``active``)."""

    accepted: int = 0
    active: int = 0
    requests: int = 0
    notifications: int = 0
    internal_errors: int = 0
    closed_by_peer: int = 0
    dropped_bad_frame: int = 0
    """Undecodable body, trailing garbage, a message breaking the schema, a duplicate id."""
    dropped_oversize: int = 0
    """A frame header announcing more than ``max_frame_size``."""
    dropped_stalled: int = 0
    """A frame left incomplete, or our replies left unread, for longer than ``frame_timeout``."""
    dropped_idle: int = 0
    """No traffic and nothing in flight for ``idle_timeout``."""
    dropped_handshake: int = 0
    """No complete first frame within ``handshake_timeout`` of the connection."""
    dropped_partial_budget: int = 0
    """A partial frame that would pass the server-wide ``max_partial_bytes``."""
    refused_per_client: int = 0
    """Connections closed on accept: the client IP already held ``max_conns_per_client``."""


@dataclass(slots=True)
class ClientStats:
    """Counters of an :class:`RPCClient`."""

    connects: int = 0
    connect_failures: int = 0
    connections_lost: int = 0
    calls: int = 0
    notifications_sent: int = 0
    notifications_dropped: int = 0


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``; ``ValueError`` if malformed
    (lictor.common.hostport)."""
    return parse_host_port(addr)


format_addr = format_host_port


class _Writer:
    """The write side of one connection, shared by both connection kinds.

    *Corking*: frames written during one event-loop iteration are joined and handed to the
    transport in one ``write`` (one ``send`` syscall) by a ``call_soon`` callback, instead of
    one syscall per frame; the send-side cost is what dominates small Raft messages. Order is
    kept. Past ``CORK_LIMIT`` pending bytes it flushes at once.

    *Flow control*: the asyncio drain pattern. The transport calls ``pause()``/``resume()``
    around its high/low-water marks; writers that must respect it ``await wait()`` while
    ``paused``.
    """

    __slots__ = ("_chunks", "_loop", "_paused_since", "_pending", "_transport", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.WriteTransport | None = None
        self._chunks: list[bytes] = []
        self._pending = 0
        self._paused_since: float | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def attach(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    def detach(self) -> None:
        self._transport = None
        self._chunks = []
        self._pending = 0

    def write(self, frame: bytes) -> None:
        chunks = self._chunks
        chunks.append(frame)
        self._pending += len(frame)
        if len(chunks) == 1:
            self._loop.call_soon(self.flush)
        elif self._pending >= CORK_LIMIT:
            self.flush()

    def flush(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        self._pending = 0
        t = self._transport
        if t is not None and not t.is_closing():
            t.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def buffered(self) -> int:
        """Bytes written but not yet sent (corked + in the transport's buffer)."""
        t = self._transport
        return self._pending + (t.get_write_buffer_size() if t is not None else 0)

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def pause(self) -> None:
        self._paused_since = self._loop.time()

    def resume(self, exc: BaseException | None = None) -> None:
        self._paused_since = None
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                if exc is None:
                    w.set_result(None)
                else:
                    w.set_exception(exc)

    async def wait(self) -> None:
        fut = self._loop.create_future()
        self._waiters.append(fut)
        await fut


# --------------------------------------------------------------------------------------------
# Server


class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: RPCServer, conn_id: int) -> None:
        self._server = server
        self._stats = server.stats
        self._handler = server._handler
        self._loop = server._loop
        self._conn_id = conn_id
        self._max_inflight = server._max_inflight
        self._max_frame_size = server._max_frame_size
        self._decoder = FrameDecoder(max_frame_size=server._max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._peer = PeerInfo(addr="?", conn_id=conn_id, tls=False)
        self._writer = _Writer(self._loop)
        self._ids: dict[int, asyncio.Task[None] | None] = {}  # in flight (task) or backlogged (None)
        self._running = 0
        self._backlog: deque[Request] = deque()
        self._reading_paused = False
        self._closed = False
        self._partial_since: float | None = None
        self._last_activity = self._loop.time()
        self._handshaken = False  # a first complete frame arrived
        self._held = 0  # bytes of an incomplete frame counted in the server's partial budget
        self._ip: str | None = None  # counted against max_conns_per_client
        self._timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (not an isinstance check: uvloop's transports are not asyncio.Transport subclasses)
        self._transport = transport = cast(asyncio.Transport, transport)
        self._writer.attach(transport)
        peername = transport.get_extra_info("peername")
        addr = format_addr(peername[0], peername[1]) if isinstance(peername, tuple) else str(peername)
        sslobj = transport.get_extra_info("ssl_object")
        cert = sslobj.getpeercert() if sslobj is not None else None
        self._peer = PeerInfo(addr=addr, conn_id=self._conn_id, tls=sslobj is not None,
                              cert=cert or None)
        self._stats.accepted += 1
        self._stats.active += 1
        self._server._conns.add(self)
        self._timer = self._loop.call_later(self._server._tick, self._on_timer)
        ip = str(peername[0]) if isinstance(peername, tuple) else None
        if ip is not None:
            if not self._server._acquire(ip):
                self._stats.refused_per_client += 1
                self._drop(TransportError(f"{self._server._max_conns_per_client} connections from {ip} already "
                                          "open (limits.rpc_max_conns_per_client)"))
                return
            self._ip = ip

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        now = self._loop.time()
        self._last_activity = now
        try:
            frames = self._decoder.feed(data)
            for obj in frames:
                msg = parse_message(obj)
                if type(msg) is Notification:
                    self._notify(msg)
                elif type(msg) is Request:
                    self._submit(msg)
                else:
                    raise RemoteProtocolError(
                        f"invalid message: a server does not accept {obj['t']!r} frames")
                if self._closed:  # a notify handler asked us to drop the peer
                    return
        except FrameTooLarge as exc:
            self._stats.dropped_oversize += 1
            self._drop(exc)
            return
        except RemoteProtocolError as exc:
            self._stats.dropped_bad_frame += 1
            self._drop(exc)
            return
        # A frame is "in progress" from the chunk that started it; only a completed frame
        # moves the start forward (a busy stream nearly always ends a chunk mid-frame).
        if frames:
            self._handshaken = True
            self._partial_since = now if self._decoder.buffered else None
        elif self._partial_since is None and self._decoder.buffered:
            self._partial_since = now
        if not self._hold(self._decoder.buffered):
            self._stats.dropped_partial_budget += 1
            self._drop(RemoteProtocolError(
                f"incomplete frames across connections would pass {self._server._max_partial_bytes} bytes"))

    def eof_received(self) -> bool | None:
        return None  # close our side too; in-flight replies are abandoned

    def pause_writing(self) -> None:
        self._writer.pause()

    def resume_writing(self) -> None:
        self._writer.resume()

    def _hold(self, buffered: int) -> bool:
        """Account this connection's partial frame in the server-wide budget; False: over it."""
        srv = self._server
        delta = buffered - self._held
        if delta > 0 and srv._partial_bytes + delta > srv._max_partial_bytes:
            return False
        srv._partial_bytes += delta
        self._held = buffered
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._stats.closed_by_peer += 1
        self._closed = True
        self._stats.active -= 1
        self._server._conns.discard(self)
        self._server._partial_bytes -= self._held
        self._held = 0
        if self._ip is not None:
            self._server._release(self._ip)
            self._ip = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._ids.values():
            if task is not None:
                task.cancel()
        self._backlog.clear()
        self._writer.detach()
        self._writer.resume(TransportError("connection lost"))
        self._transport = None
        if not self.lost.done():
            self.lost.set_result(None)

    # -- dispatch

    def _notify(self, msg: Notification) -> None:
        self._stats.notifications += 1
        try:
            self._handler.notify(msg.method, msg.args, self._peer)
        except RemoteProtocolError as exc:
            self._stats.dropped_bad_frame += 1
            self._drop(exc)
        except LictorError as exc:
            log.warning("rpc notification %s from %s refused: %s", msg.method, self._peer.addr, exc)
        except Exception:
            log.exception("rpc notification handler failed for %s from %s", msg.method,
                          self._peer.addr)

    def _submit(self, req: Request) -> None:
        if req.id in self._ids:
            raise RemoteProtocolError(f"invalid message: request id {req.id} is already in flight")
        self._stats.requests += 1
        if self._running < self._max_inflight:
            self._start(req)
        else:
            self._ids[req.id] = None
            self._backlog.append(req)
        if self._running >= self._max_inflight and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def _start(self, req: Request) -> None:
        self._running += 1
        self._ids[req.id] = self._loop.create_task(self._run(req))

    async def _run(self, req: Request) -> None:
        try:
            try:
                result = await self._handler.handle(req.method, req.args, self._peer)
                frame = encode_response(req.id, result, max_frame_size=self._max_frame_size)
            except asyncio.CancelledError:
                raise
            except LictorError as exc:
                frame = encode_frame(error_reply(req.id, exc).to_wire())
            except Exception as exc:
                self._stats.internal_errors += 1
                log.exception("rpc handler failed: %s from %s", req.method, self._peer.addr)
                frame = encode_frame(error_reply(req.id, exc).to_wire())
            if self._closed or self._transport is None:
                return
            self._writer.write(frame)
            if self._writer.paused:
                await self._writer.wait()
        finally:
            self._finish(req.id)

    def _finish(self, mid: int) -> None:
        self._ids.pop(mid, None)
        self._running -= 1
        if self._closed:
            return
        while self._backlog and self._running < self._max_inflight:
            self._start(self._backlog.popleft())
        if self._reading_paused and self._running < self._max_inflight:
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
            if self._decoder.buffered:  # the stall clock did not run while we were not reading
                self._partial_since = self._loop.time()
        if self._running == 0:
            self._last_activity = self._loop.time()

    # -- dropping

    def _drop(self, exc: Exception, *, graceful: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        log.warning("dropping rpc connection from %s: %s", self._peer.addr, exc)
        if self._transport is not None:
            if graceful:
                self._transport.close()
            else:
                self._transport.abort()

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        srv = self._server
        if (not self._handshaken and self._partial_since is not None
                and now - self._partial_since >= srv._handshake_timeout):
            # a peer that has not yet sent one whole frame may not hold a big partial one long
            # (a silent connection costs only a socket: idle_timeout and the per-IP cap bound it)
            self._stats.dropped_handshake += 1
            self._drop(RemoteProtocolError(f"first frame incomplete after {srv._handshake_timeout}s "
                                           "(limits.rpc_handshake_timeout)"))
            return
        if (self._partial_since is not None and not self._reading_paused
                and now - self._last_activity >= srv._handshake_timeout):
            self._stats.dropped_stalled += 1
            self._drop(RemoteProtocolError(
                f"frame in progress received nothing for {srv._handshake_timeout}s ({self._decoder.buffered} bytes)"))
            return
        if (self._partial_since is not None and not self._reading_paused
                and now - self._partial_since >= srv._frame_timeout):
            self._stats.dropped_stalled += 1
            self._drop(RemoteProtocolError(
                f"frame incomplete after {srv._frame_timeout}s ({self._decoder.buffered} bytes)"))
            return
        paused_since = self._writer._paused_since
        if paused_since is not None and now - paused_since >= srv._frame_timeout:
            self._stats.dropped_stalled += 1
            self._drop(RemoteProtocolError(f"peer read no replies for {srv._frame_timeout}s"))
            return
        if (self._running == 0 and not self._decoder.buffered
                and now - self._last_activity >= srv._idle_timeout):
            self._stats.dropped_idle += 1
            self._drop(TransportError(f"idle for {srv._idle_timeout}s"), graceful=True)
            return
        self._timer = self._loop.call_later(srv._tick, self._on_timer)

    def _close(self) -> list[asyncio.Task[None]]:
        """Server shutdown: stop, cancel in-flight handlers, return them for awaiting."""
        tasks = [t for t in self._ids.values() if t is not None]
        for t in tasks:
            t.cancel()
        if not self._closed:
            self._closed = True
            if self._transport is not None:
                self._transport.close()
        return tasks


class RPCServer:
    """Accepts RPC connections and dispatches requests/notifications to ``handler``.

    ``await start()`` binds (``port=0`` picks a free port, see :attr:`bound_port`);
    ``await close()`` stops accepting, cancels in-flight handlers, closes every connection and
    waits for all of it. Also usable as ``async with RPCServer(...) as srv``.
    """

    def __init__(self, handler: RPCHandlerProtocol, *, host: str = "127.0.0.1", port: int = 8300,
                 ssl: _ssl.SSLContext | None = None,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT,
                 max_conns_per_client: int = DEFAULT_MAX_CONNS_PER_CLIENT,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 max_partial_bytes: int = DEFAULT_MAX_PARTIAL_BYTES) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self._handler = handler
        self._host = host
        self._port = port
        self._ssl = ssl
        self._max_frame_size = max_frame_size
        self._idle_timeout = idle_timeout
        self._frame_timeout = frame_timeout
        self._max_inflight = max_inflight
        self._max_partial_bytes = max_partial_bytes
        self._partial_bytes = 0
        self._per_ip: dict[str, int] = {}
        self._max_conns_per_client = max_conns_per_client
        self._handshake_timeout = handshake_timeout
        self._tick = 0.0
        self.set_limits(max_conns_per_client=max_conns_per_client, handshake_timeout=handshake_timeout)
        self._server: asyncio.Server | None = None
        self._conns: set[_ServerConnection] = set()
        self._conn_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set in start()
        self.stats = ServerStats()

    def set_limits(self, *, max_conns_per_client: int, handshake_timeout: float) -> None:
        """Consul's ``limits.rpc_max_conns_per_client`` (0: no cap) and ``rpc_handshake_timeout``
        (0: the frame timeout); before :meth:`start` (the agent sets them from its config)."""
        if handshake_timeout <= 0:
            handshake_timeout = self._frame_timeout
        self._max_conns_per_client = max(0, int(max_conns_per_client))
        self._handshake_timeout = float(handshake_timeout)
        self._tick = max(0.01, min(self._frame_timeout, self._idle_timeout, self._handshake_timeout) / 4)

    def _acquire(self, ip: str) -> bool:
        n = self._per_ip.get(ip, 0)
        if self._max_conns_per_client and n >= self._max_conns_per_client:
            return False
        self._per_ip[ip] = n + 1
        return True

    def _release(self, ip: str) -> None:
        n = self._per_ip.get(ip, 0) - 1
        if n > 0:
            self._per_ip[ip] = n
        else:
            self._per_ip.pop(ip, None)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("RPCServer already started")
        self._loop = asyncio.get_running_loop()
        with map_exceptions(DEFAULT_IO_ERRORS):
            self._server = await self._loop.create_server(
                lambda: _ServerConnection(self, next(self._conn_ids)), self._host, self._port,
                ssl=self._ssl, reuse_address=True,
                ssl_handshake_timeout=self._handshake_timeout if self._ssl else None)

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("RPCServer is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def addr(self) -> str:
        return format_addr(self._host, self.bound_port)

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        conns = list(self._conns)
        tasks = [t for c in conns for t in c._close()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        pending = [c.lost for c in conns if not c.lost.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=1.0)
            for c in conns:
                if not c.lost.done() and c._transport is not None:
                    c._transport.abort()
        await server.wait_closed()

    async def __aenter__(self) -> RPCServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# --------------------------------------------------------------------------------------------
# Client


class _ClientConnection(asyncio.Protocol):
    def __init__(self, client: RPCClient, ep: _Endpoint) -> None:
        self._client = client
        self._ep = ep
        self._loop = client._loop
        self._decoder = FrameDecoder(max_frame_size=client._max_frame_size)
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count()
        self.writer = _Writer(self._loop)
        self.alive = False
        self.lost: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: see server
        self.writer.attach(transport)
        self.alive = True

    def data_received(self, data: bytes) -> None:
        pending = self.pending
        try:
            for obj in self._decoder.feed(data):
                msg = parse_message(obj)
                if not isinstance(msg, (Response, ErrorReply)):
                    raise RemoteProtocolError(
                        f"invalid message: a client does not accept {obj['t']!r} frames")
                fut = pending.pop(msg.id, None)
                if fut is None or fut.done():
                    continue  # the caller gave up (timeout, cancellation) before the reply came
                if type(msg) is Response:
                    fut.set_result(msg.result)
                else:
                    assert isinstance(msg, ErrorReply)
                    fut.set_exception(exception_from_reply(msg))
        except RemoteProtocolError as exc:
            log.warning("dropping rpc connection to %s: %s", self._ep.addr, exc)
            self._fail_pending(TransportError(f"protocol error from {self._ep.addr}: {exc}"))
            self.alive = False
            assert self.transport is not None
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.writer.pause()

    def resume_writing(self) -> None:
        self.writer.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        why = f"connection to {self._ep.addr} lost: {exc}" if exc else \
            f"connection to {self._ep.addr} closed"
        err = (TLSError if isinstance(exc, _ssl.SSLError) else TransportError)(why)
        if exc is not None:
            err.__cause__ = exc
        self._fail_pending(err)
        self.writer.detach()
        self.writer.resume(err)
        if not self.lost.done():
            self.lost.set_result(None)
        self._client._on_lost(self)

    def _fail_pending(self, err: TransportError) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)


async def _join(task: asyncio.Task[_ClientConnection]) -> _ClientConnection:
    """Await a shared connect attempt without letting one waiter's cancellation cancel it for
    all; if the attempt itself is cancelled (client closing), waiters get TransportError."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and not (current is not None and current.cancelling()):
            raise TransportError("connect attempt cancelled: RPC client is closing") from None
        raise


class _Endpoint:
    """Pool state for one address."""

    __slots__ = ("addr", "conns", "connecting", "host", "last_used", "port", "reconnecting")

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.host, self.port = parse_addr(addr)
        self.conns: list[_ClientConnection] = []
        self.connecting: asyncio.Task[_ClientConnection] | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.last_used = 0.0


class RPCClient:
    """Pooled, multiplexed RPC client: ``await call(addr, method, args)``, ``notify(...)``.

    One connection per address by default (``max_conns_per_addr`` allows more; calls then go
    to the least-loaded one and a new one is opened while all are busy). Notifications always
    use the first connection so they stay in order.
    """

    def __init__(self, *, ssl: _ssl.SSLContext | None = None, server_hostname: str | None = None,
                 connect_timeout: float = 5.0, request_timeout: float = 30.0,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, max_conns_per_addr: int = 1,
                 backoff_base: float = 0.05, backoff_max: float = 5.0,
                 reconnect_linger: float = 30.0, notify_buffer_limit: int = 8 * WRITE_HIGH_WATER,
                 rng: random.Random | None = None, clock: Clock | None = None) -> None:
        if max_conns_per_addr < 1:
            raise ValueError("max_conns_per_addr must be >= 1")
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._max_frame_size = max_frame_size
        self._max_conns = max_conns_per_addr
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._linger = reconnect_linger
        self._notify_limit = notify_buffer_limit
        self._rng = rng if rng is not None else random.Random()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # first use
        self.stats = ClientStats()

    # -- public API

    async def call(self, addr: str, method: str, args: dict[str, Any], *,
                   timeout: float | None = None) -> Any:
        """Send one request to ``addr`` and return its result.

        Raises the rebuilt remote error (``NotLeaderError`` with ``.leader``, ``NotFound``, ...,
        else ``RemoteError``), ``TransportError`` if the connection fails or ``timeout`` (default
        ``request_timeout``; includes connecting) expires, ``LocalProtocolError`` if ``args``
        cannot be encoded. A timed-out request may still have been executed by the server.
        """
        t = self._request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(t):
                ep = self._endpoint(addr)
                ep.last_used = self._clock.monotonic()
                conn = await self._conn_for_call(ep)
                if not conn.alive:  # lost between being picked and now
                    raise TransportError(f"connection to {addr} lost")
                mid = next(conn.ids)
                frame = encode_request(mid, method, args, max_frame_size=self._max_frame_size)
                fut: asyncio.Future[Any] = self._loop.create_future()
                conn.pending[mid] = fut
                self.stats.calls += 1
                try:
                    conn.writer.write(frame)
                    if conn.writer.paused:
                        await conn.writer.wait()
                    return await fut
                finally:
                    conn.pending.pop(mid, None)
        except TimeoutError:
            raise TransportError(f"{method} to {addr} timed out after {t}s") from None

    def notify(self, addr: str, method: str, args: dict[str, Any]) -> bool:
        """Send a one-way message without waiting. Returns whether it was handed to a socket.

        Dropped (returns ``False``, counted in ``stats.notifications_dropped``) when ``addr``
        has no live connection, which also starts a background reconnect, or when the
        connection's write buffer is above ``notify_buffer_limit``. Messages that are sent on
        one connection arrive in order. ``LocalProtocolError`` if ``args`` cannot be encoded.
        """
        ep = self._endpoints.get(addr)
        if ep is None:
            ep = self._endpoint(addr)
        ep.last_used = self._clock.monotonic()
        if ep.conns:
            conn = ep.conns[0]
            if conn.writer.buffered() <= self._notify_limit:
                conn.writer.write(encode_notification(method, args,
                                                      max_frame_size=self._max_frame_size))
                self.stats.notifications_sent += 1
                return True
        else:
            self._ensure_reconnect(ep)
        self.stats.notifications_dropped += 1
        return False

    async def connect(self, addr: str) -> None:
        """Open (or reuse) a connection to ``addr`` now; ``TransportError`` if that fails."""
        ep = self._endpoint(addr)
        ep.last_used = self._clock.monotonic()
        await self._conn_for_call(ep)

    def is_connected(self, addr: str) -> bool:
        ep = self._endpoints.get(addr)
        return bool(ep and ep.conns)

    async def forget(self, addr: str) -> None:
        """Close every connection to ``addr`` and stop reconnecting to it (a removed peer)."""
        ep = self._endpoints.pop(addr, None)
        if ep is not None:
            await self._close_endpoint(ep)

    async def close(self) -> None:
        """Close every connection; pending calls fail with ``TransportError``."""
        self._closed = True
        eps, self._endpoints = list(self._endpoints.values()), {}
        for ep in eps:
            await self._close_endpoint(ep)

    async def __aenter__(self) -> RPCClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- pool

    def _endpoint(self, addr: str) -> _Endpoint:
        if self._closed:
            raise TransportError("RPC client is closed")
        ep = self._endpoints.get(addr)
        if ep is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            try:
                ep = _Endpoint(addr)
            except ValueError as exc:
                raise TransportError(str(exc)) from None
            self._endpoints[addr] = ep
        return ep

    async def _conn_for_call(self, ep: _Endpoint) -> _ClientConnection:
        conns = ep.conns
        if conns:
            if self._max_conns == 1:
                return conns[0]
            best = min(conns, key=lambda c: len(c.pending))
            if not best.pending or len(conns) + (ep.connecting is not None) >= self._max_conns:
                return best
            if ep.connecting is None:
                ep.connecting = self._loop.create_task(self._open(ep))
            return best  # use the least-loaded one while another opens
        if ep.connecting is None:
            ep.connecting = self._loop.create_task(self._open(ep))
        return await _join(ep.connecting)

    async def _open(self, ep: _Endpoint) -> _ClientConnection:
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    with map_exceptions(DEFAULT_IO_ERRORS):
                        _, conn = await self._loop.create_connection(
                            lambda: _ClientConnection(self, ep), ep.host, ep.port, ssl=self._ssl,
                            server_hostname=(self._server_hostname or ep.host) if self._ssl else None,
                            ssl_handshake_timeout=self._connect_timeout if self._ssl else None)
            except TimeoutError:
                raise TransportError(
                    f"connecting to {ep.addr} timed out after {self._connect_timeout}s") from None
        except LictorError:
            self.stats.connect_failures += 1
            raise
        finally:
            ep.connecting = None
        if self._closed or self._endpoints.get(ep.addr) is not ep:
            assert conn.transport is not None
            conn.transport.abort()
            raise TransportError("RPC client is closed")
        if not conn.alive:
            raise TransportError(f"connection to {ep.addr} lost while connecting")
        self.stats.connects += 1
        ep.conns.append(conn)
        return conn

    def _on_lost(self, conn: _ClientConnection) -> None:
        ep = conn._ep
        if conn in ep.conns:
            ep.conns.remove(conn)
            self.stats.connections_lost += 1
        if not self._closed and self._endpoints.get(ep.addr) is ep:
            self._ensure_reconnect(ep)

    def _ensure_reconnect(self, ep: _Endpoint) -> None:
        if self._closed or ep.reconnecting is not None:
            return
        if self._clock.monotonic() - ep.last_used >= self._linger:
            return  # nobody has used this address lately: reconnect on next use instead
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        ep.reconnecting = self._loop.create_task(self._reconnect_loop(ep))

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (0 = now): capped exponential, jittered
        into ``[d/2, d]`` so that peers restarted together do not reconnect in lockstep."""
        if attempt <= 0:
            return 0.0
        d: float = min(self._backoff_max, self._backoff_base * (2 ** (attempt - 1)))
        return d / 2 + self._rng.random() * d / 2

    async def _reconnect_loop(self, ep: _Endpoint) -> None:
        attempt = 0
        try:
            while not self._closed and not ep.conns:
                if self._clock.monotonic() - ep.last_used >= self._linger:
                    return
                delay = self.backoff(attempt)
                if delay:
                    await self._clock.sleep(delay)
                attempt += 1
                if ep.conns or self._closed:
                    return
                try:
                    if ep.connecting is None:
                        ep.connecting = self._loop.create_task(self._open(ep))
                    await _join(ep.connecting)
                except LictorError as exc:
                    log.debug("reconnect to %s failed (attempt %d): %s", ep.addr, attempt, exc)
        finally:
            ep.reconnecting = None

    async def _close_endpoint(self, ep: _Endpoint) -> None:
        tasks: list[asyncio.Task[Any]] = [t for t in (ep.reconnecting, ep.connecting) if t]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        conns, ep.conns = list(ep.conns), []
        for c in conns:
            c._fail_pending(TransportError(f"RPC client closed its connection to {ep.addr}"))
            c.writer.flush()  # queued notifications still go out
            if c.transport is not None:
                c.transport.close()
        waits = [c.lost for c in conns if not c.lost.done()]
        if waits:
            await asyncio.wait(waits, timeout=1.0)
            for c in conns:
                if not c.lost.done() and c.transport is not None:
                    c.transport.abort()

