"""The DNS server: thin asyncio UDP and TCP listeners around the pure resolver.

::

    datagram / TCP frame --parse (dnspython)--> plan() --fetches--> CatalogCache --> respond() --> wire
                          malformed: dropped, counted (never answered, never fatal)
                          outside the domain: forwarded to the recursors (sequential or random)

What is dropped and counted (``stats["malformed"]``): anything dnspython cannot parse (garbage,
truncated messages, compression loops, bad label lengths), messages larger than
``MAX_QUERY_SIZE`` and messages that are responses. A parseable query without exactly one
question gets FORMERR; an opcode other than QUERY gets NOTIMP.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from lictor.agent.dns.cache import RPC, CatalogCache
from lictor.agent.dns.config import DNSConfig
from lictor.agent.dns.resolver import Fetch, Plan, external_hosts, plan, respond

__all__ = ["MAX_QUERY_SIZE", "DNSServer"]

log = logging.getLogger("lictor.dns")

# A question with EDNS options fits easily; anything bigger is not a query we answer.
MAX_QUERY_SIZE = 4096
TCP_IDLE_TIMEOUT = 10.0
MAX_TCP_CONNECTIONS = 512
UDP_BATCH = 64
RENDER_VARIANTS = 8
MAX_RENDERED = 4096


def _same(a: dict[Fetch, Any], b: dict[Fetch, Any]) -> bool:
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


class _UDP:
    """One UDP socket read in batches: every wake-up drains up to ``UDP_BATCH`` datagrams, and the
    answers that need no catalog read (most of them, from the cache) go out at once. A reply the
    socket cannot take right now is dropped, as UDP may drop it anyway; the client asks again."""

    def __init__(self, server: DNSServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed = True
        loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _send(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.server.stats["udp_send_dropped"] += 1
        except OSError:  # the client's port is gone (ICMP unreachable) or similar: nothing to do
            pass

    def _readable(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: read on
                continue
            first = self.server.prepare(data, tcp=False)
            if isinstance(first, bytes):
                if first:
                    self._send(first, addr)
                continue
            self.server.spawn(self._answer(first[0], first[1], addr))

    async def _answer(self, msg: dns.message.Message, p: Plan, addr: Any) -> None:
        out = await self.server.complete(msg, p, tcp=False)
        if out and not self.closed:
            self._send(out, addr)


class DNSServer:
    """Serve ``cfg`` on UDP and TCP. ``rpc`` is the agent's RPC (in-process on servers),
    ``token`` returns the DNS token to use (``acl.tokens.dns``, else ``default``; None when ACLs
    are off)."""

    def __init__(self, cfg: DNSConfig, rpc: RPC, token: Callable[[], str | None], *,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.cache = CatalogCache(rpc, cfg, token)
        self.rng = rng or random.Random()
        self.stats: dict[str, int] = {"queries": 0, "malformed": 0, "formerr": 0, "recursed": 0,
                                      "recurse_failed": 0, "servfail": 0, "truncated": 0,
                                      "udp_send_dropped": 0}
        self._udp: list[_UDP] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tcp_conns = 0
        # rendered answers for unchanged cached rows: key -> (rows, variants)
        self._rendered: dict[tuple[Any, ...], tuple[dict[Fetch, Any], list[bytes | None]]] = {}
        # the same by exact query bytes (without the ID): (fetches, rows, the variants above)
        self._raw: dict[tuple[bytes, bool], tuple[tuple[Fetch, ...], tuple[Any, ...], list[bytes | None]]] = {}
        self.addresses: list[tuple[str, int]] = []

    # ----- lifecycle -------------------------------------------------------------------------
    async def start(self, hosts: tuple[str, ...] | list[str], port: int) -> None:
        loop = asyncio.get_running_loop()
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            udp = _UDP(self, sock)
            udp.start(loop)
            self._udp.append(udp)
            bound = sock.getsockname()
            srv = await asyncio.start_server(self._tcp_client, host, bound[1], reuse_address=True)
            self._servers.append(srv)
            self.addresses.append((host, bound[1]))
        log.info("DNS server listening on %s (domain %s)", ", ".join(f"{h}:{p}" for h, p in self.addresses),
                 self.cfg.domain)

    def reload(self, cfg: DNSConfig) -> None:
        """New settings (SIGHUP, /v1/agent/reload); the listeners stay where they are (Consul too
        keeps its ports). Rendered answers are forgotten; cached catalog rows stay valid."""
        self.cfg = cfg
        self.cache.cfg = cfg
        self._rendered.clear()
        self._raw.clear()

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for u in self._udp:
            u.close(loop)
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        for s in self._servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 1.0)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        await self.cache.close()

    def spawn(self, coro: Awaitable[Any]) -> None:
        # a fresh Context: nothing of whoever started the listener leaks into answers
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- TCP --------------------------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_conns >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_conns += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (length,) = struct.unpack("!H", head)
                    if length > MAX_QUERY_SIZE or length < 12:
                        self.stats["malformed"] += 1
                        return  # an oversized or impossible frame: close, never read it
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, asyncio.TimeoutError, ConnectionError):
                    return
                out = await self.handle(data, tcp=True)
                if out:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tcp_conns -= 1
            writer.close()

    # ----- answering --------------------------------------------------------------------------
    def _parse(self, data: bytes) -> dns.message.Message | None:
        if len(data) > MAX_QUERY_SIZE or len(data) < 12:
            self.stats["malformed"] += 1
            return None
        try:
            msg = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - any parse failure is a malformed packet: drop, count
            self.stats["malformed"] += 1
            return None
        if msg.flags & dns.flags.QR:
            self.stats["malformed"] += 1
            return None
        return msg

    def _error(self, msg: dns.message.Message, rcode: int) -> bytes:
        resp = dns.message.make_response(msg) if msg.question else dns.message.Message(id=msg.id)
        resp.flags |= dns.flags.QR
        if msg.flags & dns.flags.RD:
            resp.flags |= dns.flags.RD
        resp.set_rcode(rcode)
        return resp.to_wire()

    def prepare(self, data: bytes, *, tcp: bool) -> bytes | tuple[dns.message.Message, Plan]:
        """Parse and classify, synchronously. Bytes are the whole reply (b"" = drop it); a
        (message, plan) pair needs catalog reads or a recursor: finish it with :meth:`complete`."""
        fast = self._repeat(data, tcp)
        if fast is not None:
            return fast
        msg = self._parse(data)
        if msg is None:
            return b""
        self.stats["queries"] += 1
        if msg.opcode() != dns.opcode.QUERY:
            return self._error(msg, dns.rcode.NOTIMP)
        if len(msg.question) != 1:
            self.stats["formerr"] += 1
            return self._error(msg, dns.rcode.FORMERR)
        q = msg.question[0]
        p = plan(q.name.to_text(), q.rdtype, self.cfg)
        if p.form == "recurse":
            return msg, p
        if not p.fetches:
            return self._render(msg, p, {}, tcp)
        results: dict[Fetch, Any] = {}
        for f in p.fetches:
            hit, value = self.cache.peek(f)
            if not hit:
                return msg, p
            results[f] = value
        if external_hosts(p, results, self.cfg):
            return msg, p  # names to look up with the recursors first: the asynchronous path
        return self._render_cached(msg, p, results, tcp, data)

    def _repeat(self, data: bytes, tcp: bool) -> bytes | None:
        """The same query bytes (but the ID) as one answered before from rows that are still the
        cache's current ones: that answer again, with this ID, without parsing. Only bytes that
        parsed and were answered once get here, so nothing malformed takes this path."""
        ent = self._raw.get((data[2:], tcp))
        if ent is None:
            return None
        fetches, rows, variants = ent
        for f, r in zip(fetches, rows):
            hit, value = self.cache.peek(f)
            if not hit or value is not r:
                del self._raw[(data[2:], tcp)]
                return None
        wire = variants[self.rng.randrange(RENDER_VARIANTS)]
        if wire is None:
            return None
        self.stats["queries"] += 1
        return data[:2] + wire[2:]

    def _render_cached(self, msg: dns.message.Message, p: Plan, results: dict[Fetch, Any], tcp: bool,
                       data: bytes) -> bytes:
        """Answers from unchanged cached rows are rendered once per variant and reused with the
        question's ID: RENDER_VARIANTS shuffled orders per question, one picked at random, so the
        order still varies between answers. A new catalog result (a new object) renders afresh."""
        q = msg.question[0]
        key = (q.name.to_text().lower(), q.rdtype, msg.flags & (dns.flags.RD | dns.flags.CD), msg.edns,
               msg.payload if msg.edns >= 0 else 0, tcp)
        slot = self.rng.randrange(RENDER_VARIANTS)
        ent = self._rendered.get(key)
        if ent is None or not _same(ent[0], results):  # rows kept in the entry: ids cannot be reused
            ent = (results, [None] * RENDER_VARIANTS)
            self._rendered[key] = ent
            if len(self._rendered) > MAX_RENDERED:
                self._rendered.pop(next(iter(self._rendered)))
        raw_key = (data[2:], tcp)
        if raw_key not in self._raw:
            self._raw[raw_key] = (tuple(results), tuple(results.values()), ent[1])
            if len(self._raw) > MAX_RENDERED:
                self._raw.pop(next(iter(self._raw)))
        wire = ent[1][slot]
        if wire is None:
            wire = self._render(msg, p, results, tcp)
            ent[1][slot] = wire
            return wire
        return struct.pack("!H", msg.id) + wire[2:]

    def _render(self, msg: dns.message.Message, p: Plan, results: dict[Fetch, Any], tcp: bool,
                resolved: dict[str, list[str]] | None = None) -> bytes:
        try:
            resp = respond(msg, p, results, self.cfg, rng=self.rng, now=time.time(), tcp=tcp, resolved=resolved)
        except Exception:  # noqa: BLE001 - a bug must not take the listener down: SERVFAIL, logged
            log.exception("DNS: answering %s failed", msg.question[0].name if msg.question else "?")
            self.stats["servfail"] += 1
            return self._error(msg, dns.rcode.SERVFAIL)
        if resp.flags & dns.flags.TC:
            self.stats["truncated"] += 1
        if resp.rcode() == dns.rcode.SERVFAIL:
            self.stats["servfail"] += 1
        return resp.to_wire(max_size=65535, want_shuffle=False)  # the order is ours (shuffled or Near)

    async def handle(self, data: bytes, *, tcp: bool) -> bytes:
        """The reply to one query (b"": none, the packet is dropped)."""
        first = self.prepare(data, tcp=tcp)
        if isinstance(first, bytes):
            return first
        return await self.complete(*first, tcp=tcp)

    async def complete(self, msg: dns.message.Message, p: Plan, *, tcp: bool) -> bytes:
        if p.form == "recurse":
            return await self._recurse(msg, tcp)
        results: dict[Fetch, Any] = {}
        for f in p.fetches:
            try:
                results[f] = await self.cache.get(f)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the resolver maps errors to rcodes
                results[f] = exc
            if f.kind == "query" and isinstance(results[f], dict) and results[f].get("Near"):
                results[f] = await self._near(results[f])
        hosts = external_hosts(p, results, self.cfg)
        resolved = dict(zip(hosts, await asyncio.gather(*(self._lookup_a(h) for h in hosts)))) if hosts else None
        return self._render(msg, p, results, tcp, resolved)

    async def _lookup_a(self, host: str) -> list[str]:
        """The A records of a name an answer points at (Consul's resolveCNAME): a name in our domain
        from our own answer (one level: its own host names are not followed), others from the
        recursors."""
        q = dns.message.make_query(host, "A")
        inner = plan(host, dns.rdatatype.A, self.cfg)
        if inner.form not in ("recurse", "refused"):
            results: dict[Fetch, Any] = {}
            for f in inner.fetches:
                try:
                    results[f] = await self.cache.get(f)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an error is just no address
                    results[f] = exc
            r = respond(q, inner, results, self.cfg, rng=self.rng, now=time.time(), tcp=True)
            return [rd.to_text() for rrs in r.answer if rrs.rdtype == dns.rdatatype.A for rd in rrs]
        for i in self._recursor_order():
            addr, port = self.cfg.recursors[i]
            try:
                r = await dns.asyncquery.udp(q, addr, port=port, timeout=self.cfg.recursor_timeout,
                                             ignore_unexpected=True)
            except (dns.exception.DNSException, OSError, EOFError):
                continue
            return [rd.to_text() for rrs in r.answer if rrs.rdtype == dns.rdatatype.A for rd in rrs]
        return []

    def _recursor_order(self) -> list[int]:
        order = list(range(len(self.cfg.recursors)))
        if self.cfg.recursor_strategy == "random":
            self.rng.shuffle(order)
        return order

    async def _near(self, result: dict[str, Any]) -> dict[str, Any]:
        """A prepared query's ``Near``: its instances closest first by network coordinates
        (``_agent`` is this agent's node, as Consul's DNS interface passes it)."""
        from lictor.agent.coordinates import sort_by_distance

        try:
            rows = await self.cache.get(Fetch("coords", dc=self.cfg.datacenter))
        except Exception:  # noqa: BLE001 - without coordinates the server's order stands
            return result
        coords = {r["Node"]: r["Coord"] for r in rows or () if not r.get("Segment")}
        near = result["Near"]
        mine = coords.get(self.cfg.node_name if near == "_agent" else near)
        nodes = sort_by_distance(list(result.get("Nodes") or ()), mine, coords,
                                 lambda r: (r.get("Node") or {}).get("Node"))
        return {**result, "Nodes": nodes}

    async def _recurse(self, msg: dns.message.Message, tcp: bool) -> bytes:
        for i in self._recursor_order():
            host, port = self.cfg.recursors[i]
            try:
                if tcp:
                    r = await dns.asyncquery.tcp(msg, host, port=port, timeout=self.cfg.recursor_timeout)
                else:
                    r = await dns.asyncquery.udp(msg, host, port=port, timeout=self.cfg.recursor_timeout,
                                                 ignore_unexpected=True)
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                log.debug("DNS: recursor %s:%d failed: %s", host, port, type(exc).__name__)
                continue
            if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                continue
            self.stats["recursed"] += 1
            r.id = msg.id
            return r.to_wire(max_size=65535, want_shuffle=False)
        self.stats["recurse_failed"] += 1
        resp = dns.message.make_response(msg, recursion_available=True)
        if msg.edns < 0:
            resp.use_edns(False)
        resp.set_rcode(dns.rcode.SERVFAIL)
        return resp.to_wire()
