"""Gossip wire messages: frozen values and a strict msgpack codec.

Rules of this module:

* Every message is a frozen, slotted dataclass. ``encode_message(msg)`` gives its msgpack bytes
  (an array whose first item is the ``MessageType``); a *packet body* is a msgpack array of
  messages (``encode_packet``), so a compound packet costs only an array header.
* ``decode_packet(data)`` accepts only exactly-typed, bounded values and raises
  ``GossipCodecError`` for anything else - never another exception - whatever the bytes are.
  Booleans are not integers here, ext types and trailing bytes are refused.

Message layouts (msgpack arrays; ``addr`` is two items, host string and port)::

    PING          [0, seq, target, source, host, port]         target "" = whoever receives it
    INDIRECT_PING [1, seq, target, host, port, nack, source, shost, sport]
    ACK           [2, seq, payload]                            payload: bin, reserved (coordinates)
    NACK          [3, seq]
    SUSPECT       [4, incarnation, node, from]
    ALIVE         [5, incarnation, node, host, port, tags]
    DEAD          [6, incarnation, node, from]                 from == node: a graceful leave
    PUSH_PULL     [7, join, [[name, host, port, tags, incarnation, state], ...]]
    USER          [8, payload]                                 payload: bin (agent's: events, intents)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgpack

from lictor.common.errors import RemoteProtocolError

__all__ = [
    "MAX_NAME_LEN",
    "MAX_PACKET_SIZE",
    "MAX_STREAM_SIZE",
    "MAX_TAGS_SIZE",
    "Ack",
    "Address",
    "Alive",
    "Dead",
    "GossipCodecError",
    "IndirectPing",
    "Message",
    "MessageType",
    "Nack",
    "Ping",
    "PushNodeState",
    "PushPull",
    "Suspect",
    "User",
    "WireState",
    "array_header",
    "decode_packet",
    "encode_message",
    "encode_packet",
    "encode_tags",
    "validate_tags",
]

Address: TypeAlias = tuple[str, int]
"""A gossip address: (host, port). Hosts are IP literals once resolved by the driver."""

MAX_NAME_LEN = 128
MAX_HOST_LEN = 255
MAX_TAGS_SIZE = 512  # memberlist's MetaMaxSize: encoded size of the tags map
MAX_TAGS = 32
MAX_ACK_PAYLOAD = 256
MAX_USER_PAYLOAD = 1024  # user events are at most 512 bytes of name+payload, plus their envelope
MAX_PACKET_SIZE = 65_507  # the largest UDP payload; anything bigger is refused before decoding
MAX_STREAM_SIZE = 8 * 1024 * 1024  # push-pull frames over TCP
MAX_MESSAGES_PER_PACKET = 255
MAX_PUSH_STATES = 100_000
_U64 = 2**64


class GossipCodecError(RemoteProtocolError):
    """A gossip packet or message is malformed; the packet is dropped and counted."""


class MessageType(enum.IntEnum):
    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    NACK = 3
    SUSPECT = 4
    ALIVE = 5
    DEAD = 6
    PUSH_PULL = 7
    USER = 8


class WireState(enum.IntEnum):
    """Member state as carried in push-pull (the order is memberlist's)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    seq: int
    target: str  # the node we think we are pinging; "" when unknown (fallback/bootstrap)
    source: str
    source_addr: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class IndirectPing:
    seq: int
    target: str
    target_addr: Address
    nack: bool  # ask the relay to answer NACK if the target does not ack in time
    source: str
    source_addr: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    seq: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspect:
    incarnation: int
    node: str
    sender: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Alive:
    incarnation: int
    node: str
    addr: Address
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dead:
    incarnation: int
    node: str
    sender: str  # == node for a graceful leave


@dataclass(frozen=True, slots=True, kw_only=True)
class PushNodeState:
    name: str
    addr: Address
    tags: Mapping[str, str]
    incarnation: int
    state: WireState


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPull:
    join: bool
    states: tuple[PushNodeState, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """An application broadcast (the agent's user events and intents); opaque to SWIM."""

    payload: bytes


Message: TypeAlias = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | PushPull | User


# -- encoding ---------------------------------------------------------------------------------


def _tags_list(tags: Mapping[str, str]) -> dict[str, str]:
    return dict(tags)


def encode_message(msg: Message) -> bytes:
    """msgpack bytes of one message (no validation: we only build valid messages)."""
    out: bytes = msgpack.packb(_to_wire(msg), use_bin_type=True)
    return out


def _to_wire(msg: Message) -> list[Any]:
    match msg:
        case Ping():
            return [0, msg.seq, msg.target, msg.source, msg.source_addr[0], msg.source_addr[1]]
        case IndirectPing():
            return [1, msg.seq, msg.target, msg.target_addr[0], msg.target_addr[1], msg.nack,
                    msg.source, msg.source_addr[0], msg.source_addr[1]]
        case Ack():
            return [2, msg.seq, bytes(msg.payload)]
        case Nack():
            return [3, msg.seq]
        case Suspect():
            return [4, msg.incarnation, msg.node, msg.sender]
        case Alive():
            return [5, msg.incarnation, msg.node, msg.addr[0], msg.addr[1], _tags_list(msg.tags)]
        case Dead():
            return [6, msg.incarnation, msg.node, msg.sender]
        case PushPull():
            return [7, msg.join, [[s.name, s.addr[0], s.addr[1], _tags_list(s.tags), s.incarnation,
                                   int(s.state)] for s in msg.states]]
        case User():
            return [8, bytes(msg.payload)]
    raise TypeError(f"not a gossip message: {msg!r}")  # pragma: no cover - typing guards it


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (1 or 3 bytes for n < 65536)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_packet(encoded_messages: Sequence[bytes]) -> bytes:
    """A packet body: a msgpack array holding the already-encoded messages."""
    return array_header(len(encoded_messages)) + b"".join(encoded_messages)


def encode_tags(tags: Mapping[str, str]) -> bytes:
    out: bytes = msgpack.packb(dict(tags), use_bin_type=True)
    return out


def validate_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Check a local tags dict (str -> str, at most MAX_TAGS entries and MAX_TAGS_SIZE bytes)."""
    out: dict[str, str] = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise ValueError(f"tags must map non-empty strings to strings, got {k!r}: {v!r}")
        out[k] = v
    if len(out) > MAX_TAGS:
        raise ValueError(f"too many tags ({len(out)} > {MAX_TAGS})")
    size = len(encode_tags(out))
    if size > MAX_TAGS_SIZE:
        raise ValueError(f"encoded tags are {size} bytes, the limit is {MAX_TAGS_SIZE}")
    return out


# -- decoding ---------------------------------------------------------------------------------


def _fail(why: str) -> GossipCodecError:
    return GossipCodecError(why)


def _ext_hook(code: int, data: bytes) -> Any:
    raise _fail(f"ext type {code} not allowed")


def decode_packet(data: bytes | bytearray | memoryview, *, max_size: int = MAX_PACKET_SIZE) -> tuple[Message, ...]:
    """Decode and validate a packet body (a msgpack array of messages).

    Raises ``GossipCodecError`` and nothing else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _fail("packet is not bytes")
    if len(data) > max_size:
        raise _fail(f"packet of {len(data)} bytes exceeds {max_size}")
    try:
        obj = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_ext_hook,
            max_str_len=max_size, max_bin_len=max_size,
            max_array_len=max(MAX_PUSH_STATES, MAX_MESSAGES_PER_PACKET),
            max_map_len=MAX_TAGS * 2,
        )
    except GossipCodecError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises a zoo of types on bad input
        raise _fail(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, list) or not obj:
        raise _fail("packet must be a non-empty array of messages")
    if len(obj) > MAX_MESSAGES_PER_PACKET:
        raise _fail("too many messages in one packet")
    return tuple(_from_wire(item) for item in obj)


def _int(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v < _U64:
        raise _fail(f"{what} must be an unsigned 64-bit integer")
    return v


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise _fail(f"{what} must be a boolean")
    return v


def _name(v: Any, what: str, *, allow_empty: bool = False) -> str:
    if type(v) is not str or len(v) > MAX_NAME_LEN or (not v and not allow_empty):
        raise _fail(f"{what} must be a string of 1..{MAX_NAME_LEN} characters")
    return v


def _addr(host: Any, port: Any) -> Address:
    if type(host) is not str or not host or len(host) > MAX_HOST_LEN:
        raise _fail("host must be a non-empty string")
    if type(port) is not int or not 0 < port < 65536:
        raise _fail("port must be in 1..65535")
    return (host, port)


def _tags(v: Any) -> dict[str, str]:
    if type(v) is not dict or len(v) > MAX_TAGS:
        raise _fail("tags must be a map of at most 32 entries")
    size = 1
    for k, val in v.items():
        if type(k) is not str or type(val) is not str or not k:
            raise _fail("tags must map non-empty strings to strings")
        size += len(k) + len(val) + 2
    if size > MAX_TAGS_SIZE and len(encode_tags(v)) > MAX_TAGS_SIZE:
        raise _fail("tags exceed the size limit")
    return v


def _arity(obj: list[Any], n: int, what: str) -> None:
    if len(obj) != n:
        raise _fail(f"{what} must have {n} fields, got {len(obj)}")


def _from_wire(obj: Any) -> Message:
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise _fail("message must be an array starting with its type")
    t = obj[0]
    if t == MessageType.PING:
        _arity(obj, 6, "ping")
        return Ping(seq=_int(obj[1], "seq"), target=_name(obj[2], "target", allow_empty=True),
                    source=_name(obj[3], "source"), source_addr=_addr(obj[4], obj[5]))
    if t == MessageType.INDIRECT_PING:
        _arity(obj, 9, "indirect ping")
        return IndirectPing(seq=_int(obj[1], "seq"), target=_name(obj[2], "target"),
                            target_addr=_addr(obj[3], obj[4]), nack=_bool(obj[5], "nack"),
                            source=_name(obj[6], "source"), source_addr=_addr(obj[7], obj[8]))
    if t == MessageType.ACK:
        _arity(obj, 3, "ack")
        if type(obj[2]) is not bytes or len(obj[2]) > MAX_ACK_PAYLOAD:
            raise _fail("ack payload must be bytes of at most 256")
        return Ack(seq=_int(obj[1], "seq"), payload=obj[2])
    if t == MessageType.NACK:
        _arity(obj, 2, "nack")
        return Nack(seq=_int(obj[1], "seq"))
    if t == MessageType.SUSPECT:
        _arity(obj, 4, "suspect")
        return Suspect(incarnation=_int(obj[1], "incarnation"), node=_name(obj[2], "node"),
                       sender=_name(obj[3], "from"))
    if t == MessageType.ALIVE:
        _arity(obj, 6, "alive")
        return Alive(incarnation=_int(obj[1], "incarnation"), node=_name(obj[2], "node"),
                     addr=_addr(obj[3], obj[4]), tags=_tags(obj[5]))
    if t == MessageType.DEAD:
        _arity(obj, 4, "dead")
        return Dead(incarnation=_int(obj[1], "incarnation"), node=_name(obj[2], "node"),
                    sender=_name(obj[3], "from"))
    if t == MessageType.PUSH_PULL:
        _arity(obj, 3, "push-pull")
        if type(obj[2]) is not list:
            raise _fail("push-pull states must be an array")
        return PushPull(join=_bool(obj[1], "join"), states=tuple(_push_state(s) for s in obj[2]))
    if t == MessageType.USER:
        _arity(obj, 2, "user")
        if type(obj[1]) is not bytes or len(obj[1]) > MAX_USER_PAYLOAD:
            raise _fail("user payload must be bytes of at most 1024")
        return User(payload=obj[1])
    raise _fail(f"unknown message type {t}")


def _push_state(s: Any) -> PushNodeState:
    if type(s) is not list or len(s) != 6:
        raise _fail("push-pull state must be an array of 6 fields")
    state = s[5]
    if type(state) is not int or state not in WireState._value2member_map_:
        raise _fail("unknown member state")
    return PushNodeState(name=_name(s[0], "name"), addr=_addr(s[1], s[2]), tags=_tags(s[3]),
                         incarnation=_int(s[4], "incarnation"), state=WireState(state))

