"""The sans-I/O frame codec, message schema and error table: no event loop, no sockets."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lictor.common.errors import (
    CASFailed,
    Conflict,
    LocalProtocolError,
    NoLeaderError,
    NotFound,
    NotLeaderError,
    RemoteError,
    RemoteProtocolError,
    ValidationError,
)
from lictor.common.rpc.errmap import REMOTE_ERRORS, error_reply, exception_from_reply
from lictor.common.rpc.framing import (
    ErrorReply,
    FrameDecoder,
    FrameTooLarge,
    Notification,
    Request,
    Response,
    encode_error,
    encode_frame,
    encode_notification,
    encode_request,
    encode_response,
    parse_message,
    validate_notification,
    validate_reply,
    validate_request,
)


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# Everything msgpack can carry and give back equal (lists, not tuples; no NaN, which != itself).
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats(allow_nan=False) | st.text() | st.binary())
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=5),
    max_leaves=30,
)


# -- round trips


@given(values)
def test_any_value_round_trips(value: Any) -> None:
    assert FrameDecoder().feed(encode_frame(value)) == [value]


@given(st.lists(values, min_size=1, max_size=8), st.data())
@settings(max_examples=100)
def test_arbitrary_feed_splits_give_the_same_frames(frames: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(v) for v in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    dec = FrameDecoder()
    got: list[Any] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += dec.feed(stream[prev:cut])
        prev = cut
    assert got == frames
    assert dec.buffered == 0


def test_many_frames_in_one_feed_and_partial_tail_kept() -> None:
    stream = b"".join(encode_frame({"n": i}) for i in range(1000))
    tail = encode_frame("tail")
    dec = FrameDecoder()
    assert dec.feed(stream + tail[:3]) == [{"n": i} for i in range(1000)]
    assert dec.buffered == 3
    assert dec.feed(tail[3:]) == ["tail"]
    assert dec.buffered == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    f = encode_frame([1, 2, 3])
    dec = FrameDecoder()
    assert dec.feed(bytearray(f[:2])) == []
    assert dec.feed(memoryview(f)[2:]) == [[1, 2, 3]]


class _CountingBuffer(bytearray):
    """The decoder's partial-frame buffer, counting the bytes each operation moves."""

    moved = 0

    def __iadd__(self, data: Any) -> _CountingBuffer:  # type: ignore[override]
        _CountingBuffer.moved += len(data)
        super().__iadd__(data)
        return self

    def __delitem__(self, key: Any) -> None:
        before = len(self)
        super().__delitem__(key)
        _CountingBuffer.moved += len(self)  # what remains shifts to the front
        assert before >= len(self)


def test_large_frame_in_small_pieces_is_linear() -> None:
    """8 MiB in 1 KiB feeds: the bytes the decoder moves stay proportional to the frame
    (quadratic re-buffering would move ~32 GiB). Counted, not timed."""
    payload = b"x" * (8 * 1024 * 1024)
    f = encode_frame(payload)
    dec = FrameDecoder()
    buf = dec._buf = _CountingBuffer()
    _CountingBuffer.moved = 0
    out: list[Any] = []
    for i in range(0, len(f), 1024):
        out += dec.feed(f[i:i + 1024])
    assert out == [payload]
    assert dec._buf is buf, "the decoder replaced its buffer: update this test"
    assert _CountingBuffer.moved <= 2 * len(f)


def test_frame_of_exactly_max_size_is_accepted() -> None:
    body = msgpack.packb(b"a" * 95)
    dec = FrameDecoder(max_frame_size=len(body))
    assert dec.feed(raw_frame(body)) == [b"a" * 95]


# -- refusals


def test_oversize_header_is_refused_before_the_body_arrives() -> None:
    dec = FrameDecoder(max_frame_size=1024)
    assert dec.feed(b"\x00\x00") == []  # half a header: nothing to judge yet
    with pytest.raises(FrameTooLarge, match="announces 1025 bytes, limit is 1024"):
        dec.feed(b"\x04\x01")
    assert dec.buffered == 0
    with pytest.raises(RemoteProtocolError, match="already failed"):
        dec.feed(encode_frame(1))


def test_frame_too_large_is_a_remote_protocol_error() -> None:
    assert issubclass(FrameTooLarge, RemoteProtocolError)


@pytest.mark.parametrize(("body", "match"), [
    (b"\xc1", "undecodable"),                       # 0xc1 is never used in msgpack
    (b"\x92\x01", "undecodable"),                   # array of 2 with only 1 element
    (msgpack.packb(1) + b"zz", "trailing garbage"),  # a value, then stray bytes
    (b"", "empty frame body"),
    (b"\xa2\xff\xfe", "undecodable"),               # str that is not UTF-8
    (b"\x81\x90\x01", "undecodable"),               # map keyed by an (unhashable) array
])
def test_broken_bodies_are_refused(body: bytes, match: str) -> None:
    dec = FrameDecoder()
    with pytest.raises(RemoteProtocolError, match=match):
        dec.feed(raw_frame(body))


def test_deep_nesting_is_refused_not_crashing() -> None:
    body = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(raw_frame(body))


def test_encode_refuses_what_it_cannot_send() -> None:
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        encode_frame({"x": object()})
    with pytest.raises(LocalProtocolError, match="exceeds the limit of 10 bytes"):
        encode_frame(b"y" * 20, max_frame_size=10)


def test_zero_max_frame_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=0)


# -- schema


def test_encoders_produce_what_the_parser_accepts() -> None:
    dec = FrameDecoder()
    frames = dec.feed(encode_request(7, "KVS.Get", {"Key": "a"}) + encode_response(7, [1])
                      + encode_error(8, "NotLeaderError", "x", "10.0.0.1:8300")
                      + encode_notification("Raft.AppendEntries", {"term": 3}))
    assert [parse_message(f) for f in frames] == [
        Request(id=7, method="KVS.Get", args={"Key": "a"}),
        Response(id=7, result=[1]),
        ErrorReply(id=8, type="NotLeaderError", msg="x", leader="10.0.0.1:8300"),
        Notification(method="Raft.AppendEntries", args={"term": 3}),
    ]


@pytest.mark.parametrize("msg", [
    Request(id=0, method="m", args={}),
    Response(id=2**64 - 1, result=None),
    ErrorReply(id=1, type="NotFound", msg=""),
    Notification(method="n", args={"a": [1]}),
])
def test_to_wire_round_trips(msg: Any) -> None:
    [obj] = FrameDecoder().feed(encode_frame(msg.to_wire()))
    assert parse_message(obj) == msg


def test_unknown_extra_keys_are_ignored() -> None:
    assert parse_message({"t": "req", "id": 1, "m": "x", "a": {}, "trace": "abc"}) == \
        Request(id=1, method="x", args={})


def test_error_leader_may_be_absent() -> None:
    assert parse_message({"t": "err", "id": 1, "e": {"type": "NoLeaderError", "msg": "m"}}) == \
        ErrorReply(id=1, type="NoLeaderError", msg="m", leader=None)


@pytest.mark.parametrize(("obj", "match"), [
    ([1, 2], "expected a map, got list"),
    ({"id": 1}, "missing 't'"),
    ({"t": "bogus"}, "unknown message type 't'='bogus'"),
    ({"t": 5}, "unknown message type"),
    ({"t": "req", "m": "x", "a": {}}, "request is missing 'id'"),
    ({"t": "req", "id": "x", "m": "x", "a": {}}, "'id' must be an integer, got str"),
    ({"t": "req", "id": True, "m": "x", "a": {}}, "'id' must be an integer, got bool"),
    ({"t": "req", "id": -1, "m": "x", "a": {}}, "'id' must be >= 0"),
    ({"t": "req", "id": 1.0, "m": "x", "a": {}}, "got float"),
    ({"t": "req", "id": 1, "a": {}}, "missing 'm'"),
    ({"t": "req", "id": 1, "m": b"x", "a": {}}, "'m' .method. must be a string, got bytes"),
    ({"t": "req", "id": 1, "m": "", "a": {}}, "must not be empty"),
    ({"t": "req", "id": 1, "m": "x"}, "missing 'a'"),
    ({"t": "req", "id": 1, "m": "x", "a": [1]}, "'a' .args. must be a map, got list"),
    ({"t": "note", "m": "x", "a": None}, "notification 'a' .args. must be a map"),
    ({"t": "res", "id": 1}, "missing 'r'"),
    ({"t": "err", "id": 1}, "missing 'e'"),
    ({"t": "err", "id": 1, "e": "boom"}, "'e' must be a map"),
    ({"t": "err", "id": 1, "e": {"msg": "x"}}, "'e.type' must be a non-empty string"),
    ({"t": "err", "id": 1, "e": {"type": "X", "msg": 3}}, "'e.msg' must be a string"),
    ({"t": "err", "id": 1, "e": {"type": "X", "msg": "", "leader": 5}}, "'e.leader'"),
])
def test_schema_violations_name_what_is_wrong(obj: Any, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_message(obj)


def test_role_specific_validators() -> None:
    req = {"t": "req", "id": 1, "m": "x", "a": {}}
    res = {"t": "res", "id": 1, "r": 2}
    note = {"t": "note", "m": "x", "a": {}}
    assert validate_request(req) == Request(id=1, method="x", args={})
    assert validate_reply(res) == Response(id=1, result=2)
    assert validate_notification(note) == Notification(method="x", args={})
    with pytest.raises(RemoteProtocolError, match="expected a request, got 'res'"):
        validate_request(res)
    with pytest.raises(RemoteProtocolError, match="expected a response or error reply"):
        validate_reply(note)
    with pytest.raises(RemoteProtocolError, match="expected a notification, got 'req'"):
        validate_notification(req)


# -- error table


@pytest.mark.parametrize("exc", [
    NotLeaderError("10.0.0.9:8300"), NotLeaderError(None), NoLeaderError(), NoLeaderError("lost"),
    NotFound("no key"), CASFailed("stale"), Conflict("bad session"), ValidationError("bad name"),
])
def test_known_errors_come_back_as_themselves(exc: Exception) -> None:
    back = exception_from_reply(error_reply(3, exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    if isinstance(exc, NotLeaderError):
        assert isinstance(back, NotLeaderError) and back.leader == exc.leader


def test_every_table_entry_rebuilds_its_own_class() -> None:
    for name, build in REMOTE_ERRORS.items():
        assert type(build("m", None)).__name__ == name


def test_unknown_lictor_error_becomes_remote_error() -> None:
    back = exception_from_reply(ErrorReply(id=1, type="ShinyNewError", msg="what"))
    assert type(back) is RemoteError
    assert str(back) == "ShinyNewError: what"
    assert back.remote_type == "ShinyNewError"  # type: ignore[attr-defined]


def test_non_lictor_errors_do_not_leak_details() -> None:
    reply = error_reply(4, KeyError("secret-internal-detail"))
    assert reply.type == "InternalError"
    assert "secret" not in reply.msg
    assert isinstance(exception_from_reply(reply), RemoteError)


def test_a_peer_cannot_name_an_arbitrary_class() -> None:
    for name in ("SystemExit", "KeyboardInterrupt", "TransportError", "os.system"):
        assert type(exception_from_reply(ErrorReply(id=1, type=name, msg="x"))) is RemoteError
