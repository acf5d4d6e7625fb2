"""Sans-I/O frame codec and message schema for the server RPC protocol (port 8300).

No asyncio and no sockets here: bytes go in, Python values come out (and back). The asyncio
drivers in :mod:`lictor.common.rpc.conn` are thin shells around these functions, so a second
driver (a simulator, a trio port) needs nothing from them.

Frame::

    +--------------------+---------------------------------------+
    | length: uint32 BE  | body: one msgpack value (length bytes)|
    +--------------------+---------------------------------------+

Rules the decoder enforces (each breach raises :class:`RemoteProtocolError`; the caller drops
that connection and only that connection):

* ``length > max_frame_size`` is refused as soon as the 4-byte header has arrived, before a
  single body byte is buffered (:class:`FrameTooLarge`, a ``RemoteProtocolError``).
* The body must be exactly one msgpack value: undecodable bytes, a value that ends early and
  bytes left over after the value ("trailing garbage") are all errors.
* Once it has raised, a decoder stays failed: the stream position is unknown, so there is no
  way back in sync.

Messages (maps, str keys; unknown extra keys are ignored for forward compatibility)::

    request       {"t": "req",  "id": int>=0, "m": str, "a": map}     expects one reply with the same id
    response      {"t": "res",  "id": int>=0, "r": any}
    error reply   {"t": "err",  "id": int>=0, "e": {"type": str, "msg": str, "leader": str|None}}
    notification  {"t": "note", "m": str, "a": map}                   one-way, no reply (Raft traffic)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from lictor.common.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "ErrorReply",
    "FrameDecoder",
    "FrameTooLarge",
    "Message",
    "Notification",
    "Request",
    "Response",
    "encode_error",
    "encode_frame",
    "encode_notification",
    "encode_request",
    "encode_response",
    "parse_message",
    "validate_notification",
    "validate_reply",
    "validate_request",
]

#: 16 MiB: room for a Raft InstallSnapshot chunk or a large catalog dump, small enough that one
#: bad peer cannot make us buffer much.
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
HEADER_SIZE: Final = 4
_MAX_LENGTH: Final = 0xFFFF_FFFF
_HEADER = struct.Struct(">I")
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack


class FrameTooLarge(RemoteProtocolError):
    """A frame header announced more bytes than ``max_frame_size`` allows."""


# --------------------------------------------------------------------------------------------
# Frames


def encode_frame(obj: Any, *, max_frame_size: int | None = None) -> bytes:
    """Serialise ``obj`` as one frame: 4-byte big-endian length, then its msgpack body.

    Raises :class:`LocalProtocolError` if ``obj`` is not msgpack-serialisable or the body is
    larger than ``max_frame_size`` (or than 4 GiB - 1, the header's limit).
    """
    try:
        body: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode frame: {exc}") from exc
    n = len(body)
    limit = _MAX_LENGTH if max_frame_size is None else min(max_frame_size, _MAX_LENGTH)
    if n > limit:
        raise LocalProtocolError(f"frame of {n} bytes exceeds the limit of {limit} bytes")
    return _pack_header(n) + body


class FrameDecoder:
    """Incremental frame decoder: ``feed(bytes) -> [decoded values]``.

    Handles frames split across any number of feeds and many frames in one feed. Partial data
    lives in one ``bytearray`` that is only appended to while a frame is incomplete and trimmed
    once per feed, so a large frame arriving in small pieces costs O(size), not O(size^2). When
    nothing is buffered, complete frames are decoded straight out of the caller's bytes.
    """

    __slots__ = ("_buf", "_failed", "max_frame_size")

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size <= 0:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._failed: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held from an incomplete frame (0 means we sit on a frame boundary)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add bytes from the stream; return every frame they complete, decoded, in order.

        Raises :class:`RemoteProtocolError` (or :class:`FrameTooLarge`) on a broken stream; the
        decoder then refuses any further input.
        """
        if self._failed is not None:
            raise RemoteProtocolError(f"decoder already failed: {self._failed}")
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray | memoryview = buf
        else:
            view = data
        end = len(view)
        pos = 0
        out: list[Any] = []
        max_size = self.max_frame_size
        try:
            while end - pos >= HEADER_SIZE:
                (length,) = _unpack_header(view, pos)
                if length > max_size:
                    raise FrameTooLarge(
                        f"frame header announces {length} bytes, limit is {max_size}")
                start = pos + HEADER_SIZE
                stop = start + length
                if stop > end:
                    break
                out.append(_decode_body(view, start, stop))
                pos = stop
        except RemoteProtocolError as exc:
            self._failed = exc
            buf.clear()
            raise
        if view is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += memoryview(view)[pos:]
        return out


def _decode_body(view: bytes | bytearray | memoryview, start: int, stop: int) -> Any:
    if start == stop:
        raise RemoteProtocolError("empty frame body (a frame carries exactly one msgpack value)")
    # Decode from a memoryview slice (no copy) and release it at once: a live export of the
    # decoder's bytearray would forbid the trim at the end of feed().
    part = memoryview(view)[start:stop]
    try:
        return msgpack.unpackb(part, raw=False, use_list=True, strict_map_key=False)
    except msgpack.ExtraData as exc:
        raise RemoteProtocolError(
            f"trailing garbage in frame: {stop - start - len(exc.extra)} bytes of msgpack "
            f"followed by {len(exc.extra)} stray bytes") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers FormatError, StackError, "Unpack failed: incomplete input" and
        # invalid UTF-8; TypeError covers unhashable map keys.
        raise RemoteProtocolError(f"undecodable msgpack frame body: {exc}") from None
    finally:
        part.release()


# --------------------------------------------------------------------------------------------
# Message schema


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A call: the peer answers with exactly one :class:`Response` or :class:`ErrorReply`."""

    id: int
    method: str
    args: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"t": "req", "id": self.id, "m": self.method, "a": self.args}


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The successful result of the request with the same ``id``."""

    id: int
    result: Any

    def to_wire(self) -> dict[str, Any]:
        return {"t": "res", "id": self.id, "r": self.result}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    """The request with the same ``id`` failed; ``type`` is a Lictor error class name.

    ``code`` (a stable error code), ``base`` (the nearest class both sides know) and ``status``
    (the HTTP status the error answers with) let the caller rebuild an error that answers its
    own HTTP client exactly as the server would (see :mod:`lictor.common.rpc.errmap`). They are
    optional: a peer that does not send them is still understood.
    """

    id: int
    type: str
    msg: str
    leader: str | None = None
    code: str | None = None
    base: str | None = None
    status: int | None = None

    def to_wire(self) -> dict[str, Any]:
        e: dict[str, Any] = {"type": self.type, "msg": self.msg, "leader": self.leader}
        if self.code is not None:
            e["code"] = self.code
        if self.base is not None:
            e["base"] = self.base
        if self.status is not None:
            e["status"] = self.status
        return {"t": "err", "id": self.id, "e": e}


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A one-way message: no reply, delivered in order on one connection."""

    method: str
    args: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"t": "note", "m": self.method, "a": self.args}


Message = Request | Response | ErrorReply | Notification


def _bad(msg: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"invalid message: {msg}")


def _id(obj: dict[Any, Any], kind: str) -> int:
    if "id" not in obj:
        raise _bad(f"{kind} is missing 'id'")
    mid = obj["id"]
    if type(mid) is not int:  # bool is an int subclass: refuse it too
        raise _bad(f"{kind} 'id' must be an integer, got {type(mid).__name__}")
    if mid < 0:
        raise _bad(f"{kind} 'id' must be >= 0, got {mid}")
    return mid


def _method_and_args(obj: dict[Any, Any], kind: str) -> tuple[str, dict[str, Any]]:
    if "m" not in obj:
        raise _bad(f"{kind} is missing 'm' (method)")
    method = obj["m"]
    if type(method) is not str:
        raise _bad(f"{kind} 'm' (method) must be a string, got {type(method).__name__}")
    if not method:
        raise _bad(f"{kind} 'm' (method) must not be empty")
    if "a" not in obj:
        raise _bad(f"{kind} is missing 'a' (args)")
    args = obj["a"]
    if type(args) is not dict:
        raise _bad(f"{kind} 'a' (args) must be a map, got {type(args).__name__}")
    return method, args


def _parse_request(obj: dict[Any, Any]) -> Request:
    mid = _id(obj, "request")
    method, args = _method_and_args(obj, "request")
    return Request(id=mid, method=method, args=args)


def _parse_note(obj: dict[Any, Any]) -> Notification:
    method, args = _method_and_args(obj, "notification")
    return Notification(method=method, args=args)


def _parse_response(obj: dict[Any, Any]) -> Response:
    mid = _id(obj, "response")
    if "r" not in obj:
        raise _bad("response is missing 'r' (result)")
    return Response(id=mid, result=obj["r"])


def _parse_error(obj: dict[Any, Any]) -> ErrorReply:
    mid = _id(obj, "error reply")
    if "e" not in obj:
        raise _bad("error reply is missing 'e'")
    e = obj["e"]
    if type(e) is not dict:
        raise _bad(f"error reply 'e' must be a map, got {type(e).__name__}")
    etype, msg, leader = e.get("type"), e.get("msg"), e.get("leader")
    if type(etype) is not str or not etype:
        raise _bad("error reply 'e.type' must be a non-empty string")
    if type(msg) is not str:
        raise _bad("error reply 'e.msg' must be a string")
    if leader is not None and type(leader) is not str:
        raise _bad("error reply 'e.leader' must be a string or nil")
    code, base, status = e.get("code"), e.get("base"), e.get("status")
    for name, val in (("code", code), ("base", base)):
        if val is not None and (type(val) is not str or not val):
            raise _bad(f"error reply 'e.{name}' must be a non-empty string or nil")
    if status is not None and (type(status) is not int or not 100 <= status <= 599):
        raise _bad("error reply 'e.status' must be an HTTP status code (100-599) or nil")
    return ErrorReply(id=mid, type=etype, msg=msg, leader=leader, code=code, base=base, status=status)


_PARSERS: dict[str, Callable[[dict[Any, Any]], Message]] = {"req": _parse_request, "note": _parse_note, "res": _parse_response,
            "err": _parse_error}


def parse_message(obj: Any) -> Message:
    """Check a decoded frame against the schema and return it as a typed message.

    Raises :class:`RemoteProtocolError` naming the first thing wrong (not a map, unknown or
    missing ``t``, a missing field, a field of the wrong type).
    """
    if type(obj) is not dict:
        raise _bad(f"expected a map, got {type(obj).__name__}")
    kind = obj.get("t")
    parser = _PARSERS.get(kind) if type(kind) is str else None
    if parser is None:
        if "t" not in obj:
            raise _bad("missing 't' (message type)")
        raise _bad(f"unknown message type 't'={kind!r}; expected one of req, res, err, note")
    return parser(obj)


def validate_request(obj: Any) -> Request:
    """Like :func:`parse_message`, but only a request is acceptable."""
    msg = parse_message(obj)
    if not isinstance(msg, Request):
        raise _bad(f"expected a request, got {obj['t']!r}")
    return msg


def validate_notification(obj: Any) -> Notification:
    """Like :func:`parse_message`, but only a notification is acceptable."""
    msg = parse_message(obj)
    if not isinstance(msg, Notification):
        raise _bad(f"expected a notification, got {obj['t']!r}")
    return msg


def validate_reply(obj: Any) -> Response | ErrorReply:
    """Like :func:`parse_message`, but only a response or an error reply is acceptable."""
    msg = parse_message(obj)
    if not isinstance(msg, (Response, ErrorReply)):
        raise _bad(f"expected a response or error reply, got {obj['t']!r}")
    return msg


# Encoders for the hot paths: build the wire map directly (no dataclass in between).


def encode_request(mid: int, method: str, args: dict[str, Any], *,
                   max_frame_size: int | None = None) -> bytes:
    return encode_frame({"t": "req", "id": mid, "m": method, "a": args},
                        max_frame_size=max_frame_size)


def encode_response(mid: int, result: Any, *, max_frame_size: int | None = None) -> bytes:
    return encode_frame({"t": "res", "id": mid, "r": result}, max_frame_size=max_frame_size)


def encode_error(mid: int, etype: str, msg: str, leader: str | None = None) -> bytes:
    return encode_frame({"t": "err", "id": mid,
                         "e": {"type": etype, "msg": msg, "leader": leader}})


def encode_notification(method: str, args: dict[str, Any], *,
                        max_frame_size: int | None = None) -> bytes:
    return encode_frame({"t": "note", "m": method, "a": args}, max_frame_size=max_frame_size)
