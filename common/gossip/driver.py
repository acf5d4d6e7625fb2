"""``GossipNode``: the asyncio driver of ``SwimCore`` over UDP (probes, gossip) and TCP
(push-pull, fallback ping), with the real clock (``loop.time()``).

    datagram -> size check -> open envelope (keyring / replay filter) -> core.receive -> flush
    TCP conn -> 4-byte length + envelope frame -> core.receive_stream -> reply frame -> close
    timer (loop.call_at(core.next_deadline())) -> core.tick -> flush
    flush: Ready.packets -> seal -> sendto; Ready.streams -> TCP tasks; Ready.events -> callback
           and subscribers; Ready.user -> on_user(payload); Ready.acks -> on_ack(ProbeAck)

Everything that arrives from the network is checked before the core sees it; a bad packet is
dropped and counted under ``dropped[reason]`` (``too_large``, ``truncated``, ``version``,
``decrypt``, ``unencrypted``, ``replay``, ``decode``, ``too_many_streams``), never raised.
The UDP and TCP listeners share one port (as Consul's 8301).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from lictor.common.hostport import parse_host_port
from lictor.common.errors import TransportError
from lictor.common.gossip.keyring import (
    ENCRYPTED_VERSION,
    PLAIN_VERSION,
    DecryptError,
    Keyring,
    ReplayFilter,
)
from lictor.common.gossip.members import Member
from lictor.common.gossip.messages import MAX_STREAM_SIZE, Address, GossipCodecError
from lictor.common.gossip.swim import (
    MemberEvent,
    ProbeAck,
    Ready,
    StreamKind,
    StreamRequest,
    SwimConfig,
    SwimCore,
)

__all__ = ["DEFAULT_PORT", "GossipJoinError", "GossipNode", "parse_address"]

DEFAULT_PORT = 8301
_LEN = 4


class GossipJoinError(TransportError):
    """No address given to ``join`` could be contacted."""


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port). ValueError if malformed
    (lictor.common.hostport)."""
    return parse_host_port(text, default_port=default_port, what="gossip address")


class _Drop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, node: GossipNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.node._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.node._counts["udp_errors"] += 1


class GossipNode:
    """One gossip member on real sockets. Use ``async with`` or ``start()`` / ``stop()``."""

    def __init__(self, *, config: SwimConfig, bind: Address = ("127.0.0.1", 0),
                 advertise: Address | None = None, tags: Mapping[str, str] | None = None,
                 keyring: Keyring | None = None, rng: random.Random | None = None,
                 on_event: Callable[[MemberEvent], None] | None = None,
                 on_user: Callable[[bytes], None] | None = None,
                 on_ack: Callable[[ProbeAck], None] | None = None,
                 tcp_timeout: float = 10.0, max_packet_size: int | None = None,
                 max_inbound_streams: int = 64, replay_window: float = 120.0) -> None:
        self.config = config
        self._bind = bind
        self._advertise = advertise
        self._tags = dict(tags or {})
        self.keyring = keyring
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._on_user = on_user
        self._on_ack = on_ack
        self._tcp_timeout = tcp_timeout
        self._max_packet = max_packet_size or max(4096, config.udp_buffer_size + 256)
        self._max_inbound = max_inbound_streams
        self._replay = ReplayFilter(window=replay_window)
        self._counts: collections.Counter[str] = collections.Counter()
        self._dropped: collections.Counter[str] = collections.Counter()
        self._subscribers: set[asyncio.Queue[MemberEvent | None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._core: SwimCore | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._inbound = 0
        self._left = asyncio.Event()
        self._stopped = False
        self.address: Address = bind

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> GossipNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._bind
        last: OSError | None = None
        for _ in range(10):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), local_addr=(host, port))
            bound = udp.get_extra_info("sockname")[:2]
            try:
                self._server = await asyncio.start_server(self._on_conn, host, bound[1],
                                                          reuse_address=True)
            except OSError as exc:  # the TCP side of that port is taken: try another port
                udp.close()
                last = exc
                if port:
                    break
                continue
            self._udp = udp
            break
        if self._udp is None:
            raise TransportError(f"cannot bind gossip on {host}:{port}: {last}")
        self.address = (bound[0], bound[1])
        advertise = self._advertise or self.address
        self._core = SwimCore(config=self.config, addr=advertise, rng=self._rng,
                              now=loop.time(), tags=self._tags)
        self._flush()

    async def stop(self) -> None:
        """Close sockets and stop every task this node started. Idempotent. No leave message:
        to the others this looks like a crash unless ``leave()`` ran first."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        for q in self._subscribers:
            q.put_nowait(None)

    # -- public API ---------------------------------------------------------------------------

    @property
    def core(self) -> SwimCore:
        if self._core is None:
            raise RuntimeError("gossip node not started")
        return self._core

    @property
    def name(self) -> str:
        return self.config.name

    def members(self) -> list[Member]:
        return self.core.members()

    @property
    def counters(self) -> dict[str, int]:
        """Driver counters, ``dropped.<reason>`` and the core's (prefixed ``core.``)."""
        out = dict(self._counts)
        for k, v in self._dropped.items():
            out[f"dropped.{k}"] = v
        if self._core is not None:
            for k, v in self._core.counters.items():
                out[f"core.{k}"] = v
        return out

    @property
    def dropped(self) -> dict[str, int]:
        return dict(self._dropped)

    async def events(self) -> AsyncIterator[MemberEvent]:
        """Member events from now on, until ``stop()``."""
        q: asyncio.Queue[MemberEvent | None] = asyncio.Queue()
        self._subscribers.add(q)
        try:
            while (ev := await q.get()) is not None:
                yield ev
        finally:
            self._subscribers.discard(q)

    async def join(self, addrs: Sequence[str], *, attempts: int = 3,
                   retry_interval: float = 1.0) -> int:
        """Push-pull with each ``host[:port]`` (DNS names resolved); retried ``attempts`` times
        while none succeeds. Returns how many answered; GossipJoinError if none did."""
        if not addrs:
            return 0
        errors: list[str] = []
        for attempt in range(attempts):
            ok = 0
            errors.clear()
            for text in addrs:
                try:
                    addr = await self._resolve(text)
                except (OSError, ValueError) as exc:
                    errors.append(f"{text}: {exc}")
                    continue
                if await self._exchange(addr, self.core.push_pull_payload(join=True)):
                    ok += 1
                else:
                    errors.append(f"{text}: no answer")
            if ok:
                return ok
            if attempt + 1 < attempts:
                await asyncio.sleep(retry_interval)
        raise GossipJoinError("could not join: " + "; ".join(errors))

    async def leave(self, timeout: float = 5.0) -> bool:
        """Broadcast our leave and wait until it has been gossiped (True) or ``timeout``."""
        loop = asyncio.get_running_loop()
        self.core.leave(loop.time())
        self._flush()
        if self.core.leave_done:
            return True
        try:
            await asyncio.wait_for(self._left.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def broadcast_user(self, key: str, payload: bytes) -> None:
        """Gossip an application message (``on_user`` is called on the others, not here)."""
        self.core.broadcast_user(key, payload, asyncio.get_running_loop().time())
        self._flush()

    def force_leave(self, name: str) -> bool:
        ok = self.core.force_leave(name, asyncio.get_running_loop().time())
        self._flush()
        return ok

    def set_ack_payload(self, payload: bytes) -> None:
        """Bytes put on every ack this node sends (at most 256; Serf's coordinate)."""
        self.core.ack_payload = bytes(payload)

    def update_tags(self, tags: Mapping[str, str]) -> None:
        """New tags for this member (ValueError if too large); gossiped to everyone."""
        self.core.set_tags(tags, asyncio.get_running_loop().time())
        self._flush()

    # -- inbound ------------------------------------------------------------------------------

    def _open(self, frame: bytes) -> bytes:
        if not frame:
            raise _Drop("truncated")
        version = frame[0]
        if self.keyring is not None:
            if version == PLAIN_VERSION:
                raise _Drop("unencrypted")
            try:
                body, nonce = self.keyring.decrypt(frame)
            except DecryptError as exc:
                raise _Drop(exc.reason) from None
            if self._replay.seen(nonce, asyncio.get_running_loop().time()):
                raise _Drop("replay")
            return body
        if version == ENCRYPTED_VERSION:
            raise _Drop("decrypt")  # encrypted, and we have no keys
        if version != PLAIN_VERSION:
            raise _Drop("version")
        if len(frame) < 2:
            raise _Drop("truncated")
        return frame[1:]

    def _seal(self, body: bytes) -> bytes:
        if self.keyring is not None:
            return self.keyring.encrypt(body)
        return bytes((PLAIN_VERSION,)) + body

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if self._stopped or self._core is None:
            return
        self._counts["packets_in"] += 1
        self._counts["bytes_in"] += len(data)
        if len(data) > self._max_packet:
            self._dropped["too_large"] += 1
            return
        try:
            body = self._open(data)
            self._core.receive(addr, body, asyncio.get_running_loop().time())
        except _Drop as d:
            self._dropped[d.reason] += 1
            return
        except GossipCodecError:
            self._dropped["decode"] += 1
            return
        self._flush()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readexactly(_LEN)
        n = int.from_bytes(head, "big")
        if n > MAX_STREAM_SIZE + 64:
            raise _Drop("too_large")
        return await reader.readexactly(n)

    def _frame(self, body: bytes) -> bytes:
        sealed = self._seal(body)
        return len(sealed).to_bytes(_LEN, "big") + sealed

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._inbound >= self._max_inbound or self._core is None or self._stopped:
                self._dropped["too_many_streams"] += 1
                return
            self._inbound += 1
            self._counts["streams_in"] += 1
            peer = writer.get_extra_info("peername")
            addr = (peer[0], peer[1]) if peer else ("0.0.0.0", 1)
            try:
                frame = await asyncio.wait_for(self._read_frame(reader), self._tcp_timeout)
                body = self._open(frame)
                reply = self._core.receive_stream(addr, body, asyncio.get_running_loop().time())
                self._flush()
                if reply is not None:
                    writer.write(self._frame(reply))
                    await asyncio.wait_for(writer.drain(), self._tcp_timeout)
            except _Drop as d:
                self._dropped[d.reason] += 1
            except GossipCodecError:
                self._dropped["decode"] += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                self._counts["stream_errors"] += 1
            except asyncio.CancelledError:
                pass  # stop(): end quietly (the stream server's done-callback reads our result)
            finally:
                self._inbound -= 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    # -- outbound -----------------------------------------------------------------------------

    async def _resolve(self, text: str) -> Address:
        host, port = parse_address(text)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        sa = infos[0][4]
        return (str(sa[0]), int(sa[1]))

    async def _exchange(self, addr: Address, payload: bytes) -> bool:
        """Send one stream request and feed the reply to the core; False on any failure."""
        writer: asyncio.StreamWriter | None = None
        self._counts["streams_out"] += 1
        try:
            async with asyncio.timeout(self._tcp_timeout):
                reader, writer = await asyncio.open_connection(addr[0], addr[1])
                writer.write(self._frame(payload))
                await writer.drain()
                frame = await self._read_frame(reader)
            body = self._open(frame)
            if self._core is None or self._stopped:
                return False
            self._core.receive(addr, body, asyncio.get_running_loop().time(), stream_reply=True)
            self._flush()
            return True
        except _Drop as d:
            self._dropped[d.reason] += 1
        except GossipCodecError:
            self._dropped["decode"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            self._counts["stream_errors"] += 1
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return False

    def _spawn_stream(self, req: StreamRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._exchange(req.addr, req.payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flush(self) -> None:
        core = self._core
        if core is None or self._stopped:
            return
        ready: Ready = core.ready()
        udp = self._udp
        for p in ready.packets:
            data = self._seal(p.payload)
            try:
                if udp is not None:
                    udp.sendto(data, p.addr)
                self._counts["packets_out"] += 1
                self._counts["bytes_out"] += len(data)
            except OSError:
                self._counts["send_errors"] += 1
        for s in ready.streams:
            if s.kind is StreamKind.PING and not self.config.tcp_fallback:
                continue
            self._spawn_stream(s)
        for ev in ready.events:
            if self._on_event is not None:
                self._on_event(ev)
            for q in self._subscribers:
                q.put_nowait(ev)
        for payload in ready.user:
            if self._on_user is not None:
                try:
                    self._on_user(payload)
                except Exception:  # noqa: BLE001 - an application bug must not stop gossip
                    self._counts["user_errors"] += 1
        for ack in ready.acks:
            if self._on_ack is not None:
                try:
                    self._on_ack(ack)
                except Exception:  # noqa: BLE001
                    self._counts["ack_errors"] += 1
        if core.leave_done:
            self._left.set()
        self._reschedule()

    def _reschedule(self) -> None:
        loop = asyncio.get_running_loop()
        when = self.core.next_deadline()
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped or self._core is None:
            return
        now = max(asyncio.get_running_loop().time(), self._timer_when)
        self._core.tick(now)
        self._flush()
