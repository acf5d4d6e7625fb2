"""Raft transport: the `RaftTransportProtocol` seam, a compact wire codec, an in-process twin
(`MemoryTransport` on a `MemoryNetwork`) and `TCPRaftTransport` over `lictor.common.rpc`.

::

    RaftNode._handle_ready --send(msgs)--> transport --batch per peer--> peer transport
                                                                             | handler(msgs)
    RaftNode <--on_unreachable(peer, snapshot_failed)-- (delivery failed)    v
                                                                        RaftNode inbox

Rules every implementation keeps:

- `send()` never blocks and never raises because of the network. Messages are grouped per
  destination; a failed or impossible delivery is reported through the `on_unreachable`
  callback (the driver turns it into `core.report_unreachable` / `report_snapshot(peer, False)`).
  Raft tolerates loss, so dropping is always allowed; reordering *within* one peer's stream is
  not done (one sender task per peer).
- The inbound handler is called with a list of already-validated `Message`s, from the event
  loop, never re-entrantly from inside `send()`.

Node ids. The core uses positive ints. A server's id is a string (Consul's node ID, a UUID);
`raft_id(server_id)` maps it to a stable 63-bit positive int (blake2b), so every server computes
the same Raft id for a peer it learnt about through gossip, without coordination. Addresses
(`host:port` of the server RPC port) live in the transport's peer book (`set_peer`); they are
not replicated through the Raft log (the ConfChange entry only carries the id), so the server
layer feeds the book from gossip, `RaftNode` persists it in its data dir, and a TCP frame's
header carries the sender's address so a receiver learns unknown peers (e.g. the leader).

Wire encoding (msgpack, positional tuples, no maps on the hot path). One one-way "note" per batch:

    method "Raft.Msgs", args = [1, src_id, src_addr, [msg, msg, ...]]
    msg     = [type, src, dst, term, log_term, index, entries, commit, reject, reject_hint,
               context, snap_meta, offset, data, done]
    entries = [[index, term, kind, data], ...]
    snap_meta = None | [index, term, [voter ids], [learner ids]]

Inbound frames are validated strictly (`decode_batch`): any wrong type, length, enum value,
negative number or a message whose `src` differs from the frame's sender drops the whole frame
and bumps `stats["dropped_frames"]`; the node never crashes on input.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .messages import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    NodeID,
    SnapshotMetadata,
)

__all__ = [
    "WIRE_VERSION",
    "RAFT_METHOD",
    "InboundHandler",
    "UnreachableHandler",
    "RaftTransportProtocol",
    "FrameError",
    "raft_id",
    "encode_message",
    "decode_message",
    "encode_batch",
    "decode_batch",
    "coalesce",
    "MemoryNetwork",
    "MemoryTransport",
    "TCPRaftTransport",
]

log = logging.getLogger("lictor.raft.transport")

WIRE_VERSION = 1
RAFT_METHOD = "Raft.Msgs"
_MAX_U64 = (1 << 64) - 1

InboundHandler = Callable[[list[Message]], None]
UnreachableHandler = Callable[[NodeID, bool], None]
"""Called with (peer, snapshot_failed): a batch to `peer` could not be delivered; the second
argument is True when that batch held InstallSnapshot chunks."""


def raft_id(server_id: str) -> NodeID:
    """The Raft node id of a server id string: a stable positive 63-bit int."""
    h = int.from_bytes(hashlib.blake2b(server_id.encode(), digest_size=8).digest(), "big")
    return (h >> 1) or 1


class RaftTransportProtocol(Protocol):
    """What the driver needs from a transport (see the module rules)."""

    local_id: NodeID
    local_address: str

    def set_handler(self, handler: InboundHandler) -> None:
        """Install the callback for inbound messages (before `start`)."""
        ...

    def set_unreachable_handler(self, handler: UnreachableHandler) -> None:
        """Install the callback for failed deliveries."""
        ...

    def set_peer(self, peer: NodeID, address: str) -> None:
        """Add or replace a peer's address. Idempotent."""
        ...

    def remove_peer(self, peer: NodeID) -> None: ...

    def peer_address(self, peer: NodeID) -> str | None: ...

    def peers(self) -> dict[NodeID, str]:
        """A copy of the address book (without this node)."""
        ...

    def send(self, messages: Sequence[Message]) -> None:
        """Queue messages for delivery; never blocks, never raises for network trouble."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop sending and receiving. Idempotent; queued messages may be dropped."""
        ...


# ============================================================================== codec


class FrameError(ValueError):
    """An inbound Raft frame failed validation (it is dropped and counted)."""


def _enc_meta(m: SnapshotMetadata | None) -> list[Any] | None:
    if m is None:
        return None
    cs = m.conf_state
    return [m.index, m.term, sorted(cs.voters), sorted(cs.learners)]


def encode_message(m: Message) -> list[Any]:
    """A Message as a positional list (see the module docstring for the layout)."""
    return [
        int(m.type), m.src, m.dst, m.term, m.log_term, m.index,
        [[e.index, e.term, int(e.kind), e.data] for e in m.entries],
        m.commit, m.reject, m.reject_hint, m.context, _enc_meta(m.snapshot_meta),
        m.offset, m.data, m.done,
    ]


def _uint(v: Any, what: str) -> int:
    # bool is an int subclass: refuse it where a number is expected.
    if type(v) is not int or v < 0 or v > _MAX_U64:
        raise FrameError(f"{what}: expected unsigned int, got {type(v).__name__}")
    return v


def _node(v: Any, what: str) -> int:
    n = _uint(v, what)
    if n == 0:
        raise FrameError(f"{what}: node id 0")
    return n


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise FrameError(f"{what}: expected bool, got {type(v).__name__}")
    return v


def _bytes(v: Any, what: str) -> bytes:
    if type(v) is not bytes:
        raise FrameError(f"{what}: expected bytes, got {type(v).__name__}")
    return v


def _list(v: Any, what: str, n: int | None = None) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise FrameError(f"{what}: expected array, got {type(v).__name__}")
    if n is not None and len(v) != n:
        raise FrameError(f"{what}: expected {n} items, got {len(v)}")
    return list(v)


_MT_VALUES = {int(t): t for t in MessageType}
_EK_VALUES = {int(k): k for k in EntryKind}


def _dec_meta(v: Any) -> SnapshotMetadata | None:
    if v is None:
        return None
    index, term, voters, learners = _list(v, "snap_meta", 4)
    return SnapshotMetadata(
        index=_uint(index, "snap_meta.index"),
        term=_uint(term, "snap_meta.term"),
        conf_state=ConfState(
            voters=frozenset(_node(x, "voter") for x in _list(voters, "voters")),
            learners=frozenset(_node(x, "learner") for x in _list(learners, "learners")),
        ),
    )


def decode_message(v: Any) -> Message:
    """Validate and rebuild one Message; raises FrameError on anything unexpected."""
    (t, src, dst, term, log_term, index, ents, commit, reject, hint, ctx, meta, offset, data,
     done) = _list(v, "message", 15)
    mt = _MT_VALUES.get(t) if type(t) is int else None
    if mt is None:
        raise FrameError(f"unknown message type {t!r}")
    entries: list[Entry] = []
    for raw in _list(ents, "entries"):
        ei, et, ek, ed = _list(raw, "entry", 4)
        kind = _EK_VALUES.get(ek) if type(ek) is int else None
        if kind is None:
            raise FrameError(f"unknown entry kind {ek!r}")
        entries.append(Entry(_uint(et, "entry.term"), _uint(ei, "entry.index"),
                             _bytes(ed, "entry.data"), kind))
    for a, b in zip(entries, entries[1:]):
        if b.index != a.index + 1:
            raise FrameError("entries are not contiguous")
    return Message(
        type=mt, src=_node(src, "src"), dst=_node(dst, "dst"), term=_uint(term, "term"),
        log_term=_uint(log_term, "log_term"), index=_uint(index, "index"), entries=entries,
        commit=_uint(commit, "commit"), reject=_bool(reject, "reject"),
        reject_hint=_uint(hint, "reject_hint"), context=_bytes(ctx, "context"),
        snapshot_meta=_dec_meta(meta), offset=_uint(offset, "offset"),
        data=_bytes(data, "data"), done=_bool(done, "done"),
    )


def encode_batch(src: NodeID, src_addr: str, msgs: Iterable[Message]) -> list[Any]:
    """The args of one `Raft.Msgs` note."""
    return [WIRE_VERSION, src, src_addr, [encode_message(m) for m in msgs]]


def decode_batch(args: Any, *, local_id: NodeID | None = None) -> tuple[NodeID, str, list[Message]]:
    """Validate a `Raft.Msgs` note: (sender id, sender address, messages). All or nothing."""
    version, src, addr, raw = _list(args, "frame", 4)
    if version != WIRE_VERSION or type(version) is not int:
        raise FrameError(f"unsupported wire version {version!r}")
    src = _node(src, "frame.src")
    if type(addr) is not str or len(addr) > 1024:
        raise FrameError("frame.addr: expected str")
    msgs = [decode_message(m) for m in _list(raw, "messages")]
    for m in msgs:
        if m.src != src:
            raise FrameError(f"message from {m.src} inside a frame from {src}")
        if local_id is not None and m.dst != local_id:
            raise FrameError(f"message for {m.dst} delivered to {local_id}")
    return src, addr, msgs


def _group(messages: Sequence[Message]) -> dict[NodeID, list[Message]]:
    by_dst: dict[NodeID, list[Message]] = defaultdict(list)
    for m in messages:
        by_dst[m.dst].append(m)
    return by_dst


_APPEND = MessageType.APPEND
_APPEND_RESP = MessageType.APPEND_RESP
_COALESCE_MAX_BYTES = 1 << 20


def coalesce(msgs: list[Message]) -> list[Message]:
    """Merge adjacent messages to one destination that say no more than their combination.

    `msgs` are in the order the core produced them, all for one destination (as `_group`
    returns them). Two rules, each applied only to *adjacent* messages, so the order of
    everything else is untouched:

    - APPEND a then APPEND b of the same term, where b's `index`/`log_term` name exactly the
      last entry of a (or a's own `index`/`log_term` when a carries no entries): one APPEND
      with a's `index`/`log_term`, a's entries followed by b's, and b's commit (max of both).
      A follower applying that one message ends with the same log and commit as applying a
      then b (`maybe_append` is a prefix-match-then-append; commit = min(commit, last new)),
      and answers once for the last index, which frees the leader's inflights up to it.
      Not merged past `_COALESCE_MAX_BYTES` of entry data.
    - accepted APPEND_RESP a then accepted APPEND_RESP b of the same term with b.index >=
      a.index: b alone (the leader's `maybe_update(b.index)` subsumes a).

    The leader proposes one entry at a time and broadcasts each commit advance, so under load
    one Ready holds hundreds of such messages per peer; this turns them into one or two.
    """
    if len(msgs) < 2:
        return msgs
    out: list[Message] = []
    prev: Message | None = None
    size = 0
    for m in msgs:
        if prev is not None and m.type is prev.type and m.term == prev.term:
            t = m.type
            if t is _APPEND:
                pents = prev.entries
                if pents:
                    last = pents[-1]
                    tail_index, tail_term = last.index, last.term
                else:
                    tail_index, tail_term = prev.index, prev.log_term
                if m.index == tail_index and m.log_term == tail_term:
                    add = sum(len(e.data) for e in m.entries)
                    if size + add <= _COALESCE_MAX_BYTES:
                        ents = m.entries
                        if ents:
                            ents = [*pents, *ents] if pents else ents
                        else:
                            ents = pents
                        prev = Message(
                            type=_APPEND, src=prev.src, dst=prev.dst, term=prev.term,
                            log_term=prev.log_term, index=prev.index, entries=ents,
                            commit=max(prev.commit, m.commit),
                        )
                        out[-1] = prev
                        size += add
                        continue
            elif (t is _APPEND_RESP and not m.reject and not prev.reject
                  and m.index >= prev.index):
                out[-1] = prev = m
                continue
        out.append(m)
        prev = m
        size = sum(len(e.data) for e in m.entries) if m.type is _APPEND else 0
    return out


def _has_snapshot(msgs: Iterable[Message]) -> bool:
    return any(m.type is MessageType.SNAPSHOT for m in msgs)


# ============================================================================ in-memory


class MemoryNetwork:
    """An in-process network of `MemoryTransport`s, with partitions for tests.

    Delivery is asynchronous (`loop.call_soon`), FIFO per link. `cut(a, b)` drops messages
    between two nodes in both directions silently (like a black-holed link), `isolate(n)` cuts
    `n` from everyone, `heal()` restores every link. Sending to an unknown or closed node is
    reported as unreachable. `drop` is an optional predicate (True = drop) for fault injection.
    Like a TCP frame header, a delivery teaches the receiver the sender's address if unknown.
    """

    def __init__(self) -> None:
        self.nodes: dict[NodeID, MemoryTransport] = {}
        self._cut: set[frozenset[NodeID]] = set()
        self._isolated: set[NodeID] = set()
        self.drop: Callable[[Message], bool] | None = None
        self.delivered = 0

    def transport(self, node: NodeID, address: str | None = None) -> MemoryTransport:
        return MemoryTransport(self, node, address or f"mem-{node}")

    def cut(self, a: NodeID, b: NodeID) -> None:
        self._cut.add(frozenset((a, b)))

    def isolate(self, n: NodeID) -> None:
        self._isolated.add(n)

    def partition(self, side: Iterable[NodeID]) -> None:
        """Cut every link between `side` and the other registered nodes."""
        side = set(side)
        for a in side:
            for b in self.nodes:
                if b not in side:
                    self.cut(a, b)

    def heal(self) -> None:
        self._cut.clear()
        self._isolated.clear()

    def connected(self, a: NodeID, b: NodeID) -> bool:
        return (a not in self._isolated and b not in self._isolated
                and frozenset((a, b)) not in self._cut)

    def _deliver(self, src: NodeID, dst: NodeID, msgs: list[Message]) -> None:
        target = self.nodes.get(dst)
        if target is None or target.closed or not self.connected(src, dst):
            return
        if self.drop is not None:
            msgs = [m for m in msgs if not self.drop(m)]
        sender = self.nodes.get(src)
        if sender is not None and src not in target._peers:
            target._peers[src] = sender.local_address  # as a TCP frame header teaches it
        if msgs and target.handler is not None:
            self.delivered += len(msgs)
            target.handler(msgs)


class _AddressBook:
    """The peer address book both transports keep (node id -> "host:port")."""

    local_id: NodeID
    local_address: str
    _peers: dict[NodeID, str]

    def set_peer(self, peer: NodeID, address: str) -> None:
        if peer != self.local_id:
            self._peers[peer] = address

    def remove_peer(self, peer: NodeID) -> None:
        self._peers.pop(peer, None)

    def peer_address(self, peer: NodeID) -> str | None:
        if peer == self.local_id:
            return self.local_address
        return self._peers.get(peer)

    def peers(self) -> dict[NodeID, str]:
        return dict(self._peers)


class MemoryTransport(_AddressBook):
    """`RaftTransportProtocol` on a `MemoryNetwork` (shipped, not test-only)."""

    def __init__(self, network: MemoryNetwork, node: NodeID, address: str) -> None:
        self.network = network
        self.local_id = node
        self.local_address = address
        self.handler: InboundHandler | None = None
        self.on_unreachable: UnreachableHandler | None = None
        self._peers: dict[NodeID, str] = {}
        self.closed = False
        self.sent = 0

    def set_handler(self, handler: InboundHandler) -> None:
        self.handler = handler

    def set_unreachable_handler(self, handler: UnreachableHandler) -> None:
        self.on_unreachable = handler

    def send(self, messages: Sequence[Message]) -> None:
        if self.closed or not messages:
            return
        loop = asyncio.get_running_loop()
        for dst, msgs in _group(messages).items():
            self.sent += len(msgs)
            target = self.network.nodes.get(dst)
            if target is None or target.closed:
                if self.on_unreachable is not None:
                    loop.call_soon(self.on_unreachable, dst, _has_snapshot(msgs))
                continue
            loop.call_soon(self.network._deliver, self.local_id, dst, coalesce(msgs))

    async def start(self) -> None:
        self.closed = False
        self.network.nodes[self.local_id] = self

    async def close(self) -> None:
        self.closed = True
        if self.network.nodes.get(self.local_id) is self:
            del self.network.nodes[self.local_id]


# ================================================================================== TCP


class TCPRaftTransport(_AddressBook):
    """`RaftTransportProtocol` over `lictor.common.rpc`: one-way `Raft.Msgs` notes.

    `send()` groups messages per destination and hands each group to `RPCClient.notify` as one
    note (`{"b": encode_batch(...)}`); a group larger than `max_batch_bytes` of payload is split.
    `notify` is synchronous and drops the note when the peer has no live connection (starting a
    background reconnect) or its write buffer is full: we then report the peer unreachable,
    which makes the leader fall back to probing (Raft retransmits).

    Inbound: `notify(method, args, peer)` implements the `RPCHandlerProtocol` side, so the
    transport can sit behind its own `RPCServer` (`listen=(host, port)`), or the server's RPC
    dispatcher can route `Raft.Msgs` notes to it. Invalid frames are dropped and counted in
    `stats["dropped_frames"]`; they never raise into the RPC layer (which would drop the
    connection: a single bad frame should not cut a peer off).
    """

    def __init__(
        self,
        *,
        local_id: NodeID,
        local_address: str,
        client: Any,
        listen: tuple[str, int] | None = None,
        server_options: dict[str, Any] | None = None,
        max_batch_bytes: int = 4 << 20,
    ) -> None:
        self.local_id = local_id
        self.local_address = local_address
        self._client = client
        self._listen = listen
        self._server_options = server_options or {}
        self.server: Any = None
        self._max_batch_bytes = max_batch_bytes
        self._handler: InboundHandler | None = None
        self._on_unreachable: UnreachableHandler | None = None
        self._peers: dict[NodeID, str] = {}
        self._closed = False
        self._warming: set[asyncio.Task[None]] = set()
        self.stats: dict[str, int] = defaultdict(int)

    # ---- address book
    def set_peer(self, peer: NodeID, address: str) -> None:
        super().set_peer(peer, address)
        if peer != self.local_id and not self._closed:
            self._warm(address)

    def _warm(self, address: str) -> None:
        """Open the connection to a peer now, not when the first message for it is due. Only
        the leader talks to followers in steady state, so without this the first message
        between two followers is the pre-vote after the leader failed, and a note to an
        unconnected peer is dropped (it starts a reconnect): the election would wait a whole
        extra timeout. The client keeps the connection up (reconnect_linger) once made."""
        connect = getattr(self._client, "connect", None)
        connected = getattr(self._client, "is_connected", None)
        if connect is None or (connected is not None and connected(address)):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not started yet: start() warms every known peer
        task = loop.create_task(self._warm_one(connect, address))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _warm_one(self, connect: Any, address: str) -> None:
        try:
            await connect(address)
        except Exception as exc:  # noqa: BLE001 - TransportError: the first send reconnects
            log.debug("raft transport: connecting to %s failed: %s", address, exc)

    def set_handler(self, handler: InboundHandler) -> None:
        self._handler = handler

    def set_unreachable_handler(self, handler: UnreachableHandler) -> None:
        self._on_unreachable = handler

    # ---- lifecycle
    async def start(self) -> None:
        if self._listen is not None and self.server is None:
            from lictor.common.rpc import RPCServer

            host, port = self._listen
            self.server = RPCServer(self, host=host, port=port, **self._server_options)
            await self.server.start()
            if port == 0:
                self.local_address = self.server.addr
        for address in self._peers.values():
            self._warm(address)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._warming):
            task.cancel()
        if self.server is not None:
            await self.server.close()

    # ---- outbound
    def send(self, messages: Sequence[Message]) -> None:
        if self._closed or not messages:
            return
        for dst, msgs in _group(messages).items():
            addr = self._peers.get(dst)
            if addr is None:
                self.stats["no_address"] += len(msgs)
                self._report(dst, msgs)
                continue
            for chunk in self._split(coalesce(msgs)):
                self._send_one(dst, addr, chunk)

    def _split(self, msgs: list[Message]) -> Iterable[list[Message]]:
        cur: list[Message] = []
        size = 0
        for m in msgs:
            n = 64 + len(m.data) + len(m.context) + sum(len(e.data) + 24 for e in m.entries)
            if cur and size + n > self._max_batch_bytes:
                yield cur
                cur, size = [], 0
            cur.append(m)
            size += n
        if cur:
            yield cur

    def _send_one(self, dst: NodeID, addr: str, msgs: list[Message]) -> None:
        try:
            ok = self._client.notify(
                addr, RAFT_METHOD, {"b": encode_batch(self.local_id, self.local_address, msgs)}
            )
        except Exception as exc:  # noqa: BLE001 - TransportError, LocalProtocolError (too big)
            self.stats["send_errors"] += 1
            log.debug("raft send to %s (%s) failed: %s", dst, addr, exc)
            ok = False
        if ok:
            self.stats["sent_frames"] += 1
            self.stats["sent_messages"] += len(msgs)
        else:
            self.stats["dropped_outbound"] += len(msgs)
            self._report(dst, msgs)

    def _report(self, dst: NodeID, msgs: Iterable[Message]) -> None:
        if self._on_unreachable is not None:
            try:
                self._on_unreachable(dst, _has_snapshot(msgs))
            except Exception:  # noqa: BLE001 - a callback bug must not kill sending
                log.exception("unreachable handler failed")

    # ---- inbound (RPCHandlerProtocol)
    async def handle(self, method: str, args: dict[str, Any], peer: Any) -> Any:
        from lictor.common.errors import ValidationError

        raise ValidationError(f"unknown method {method!r} on the raft port")

    def notify(self, method: str, args: Any, peer: Any = None) -> None:
        """Entry point for an inbound note. Invalid frames are dropped and counted."""
        if self._closed:
            return
        if method != RAFT_METHOD:
            self.stats["unknown_method"] += 1
            return
        try:
            if type(args) is not dict or set(args) != {"b"}:
                raise FrameError("args must be {'b': batch}")
            src, addr, msgs = decode_batch(args["b"], local_id=self.local_id)
        except (FrameError, ValueError, TypeError) as exc:
            self.stats["dropped_frames"] += 1
            log.warning("dropped invalid raft frame from %s: %s", getattr(peer, "addr", peer), exc)
            return
        self.stats["received_frames"] += 1
        if addr and src not in self._peers:
            self._peers[src] = addr  # learn the sender (e.g. a leader we had no address for)
        if msgs and self._handler is not None:
            self._handler(msgs)
