"""The gossip message codec: round-trips, and nothing but GossipCodecError on bad input."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.common.gossip.messages import (
    Ack,
    Alive,
    Dead,
    GossipCodecError,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    WireState,
    decode_packet,
    encode_message,
    encode_packet,
    validate_tags,
)

names = st.text(min_size=1, max_size=40)
u64 = st.integers(0, 2**64 - 1)
addrs = st.tuples(st.text(min_size=1, max_size=40), st.integers(1, 65535))
tags = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=6)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, seq=u64, target=st.text(max_size=20), source=names, source_addr=addrs),
    st.builds(IndirectPing, seq=u64, target=names, target_addr=addrs, nack=st.booleans(),
              source=names, source_addr=addrs),
    st.builds(Ack, seq=u64, payload=st.binary(max_size=64)),
    st.builds(Nack, seq=u64),
    st.builds(Suspect, incarnation=u64, node=names, sender=names),
    st.builds(Alive, incarnation=u64, node=names, addr=addrs, tags=tags),
    st.builds(Dead, incarnation=u64, node=names, sender=names),
    st.builds(PushPull, join=st.booleans(), states=st.lists(
        st.builds(PushNodeState, name=names, addr=addrs, tags=tags, incarnation=u64,
                  state=st.sampled_from(WireState)), max_size=5).map(tuple)),
)


@given(st.lists(messages, min_size=1, max_size=8))
def test_round_trip(msgs: list[Message]) -> None:
    body = encode_packet([encode_message(m) for m in msgs])
    assert decode_packet(body, max_size=1 << 20) == tuple(msgs)


@given(st.binary(max_size=300))
def test_garbage_raises_codec_error_or_decodes(data: bytes) -> None:
    try:
        decode_packet(data)
    except GossipCodecError:
        pass


@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_truncated_packets_raise_codec_error(msgs: list[Message], data: st.DataObject) -> None:
    body = encode_packet([encode_message(m) for m in msgs])
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(GossipCodecError):
        decode_packet(body[:cut], max_size=1 << 20)


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=5)
                    | st.binary(max_size=5) | st.floats(allow_nan=False),
                    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=3), c,
                                                                       max_size=3),
                    max_leaves=20))
def test_arbitrary_msgpack_values_raise_codec_error_or_decode(value: object) -> None:
    try:
        decode_packet(msgpack.packb(value, use_bin_type=True))
    except GossipCodecError:
        pass


def _packet(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize("bad", [
    [0, True, "t", "s", "h", 1],             # bool is not a seq number
    [0, -1, "t", "s", "h", 1],               # negative
    [0, 1.0, "t", "s", "h", 1],               # float
    [0, 1, "t", "s", "h", 0],                # port 0
    [0, 1, "t", "s", "h", 70000],            # port too big
    [0, 1, "t", "", "h", 1],                 # empty source
    [0, 1, "t", "s", "h"],                   # missing field
    [0, 1, "t", "s", "h", 1, "extra"],       # extra field
    [2, 1, "not bytes"],                     # ack payload must be bin
    [2, 1, b"x" * 300],                      # ack payload too large
    [4, 1, "n" * 200, "f"],                  # name too long
    [5, 1, "n", "h", 1, {"k": 1}],           # tag value not a string
    [5, 1, "n", "h", 1, {"": "v"}],          # empty tag key
    [5, 1, "n", "h", 1, {f"k{i}": "v" * 20 for i in range(30)}],  # tags too large
    [5, 1, "n", "h", 1, ["not", "a", "map"]],
    [7, True, [["n", "h", 1, {}, 1, 9]]],     # unknown state
    [7, 1, []],                              # join must be bool
    [99, 1],                                 # unknown type
    ["ping", 1],                             # type must be an int
    [],                                      # empty message
])
def test_wrong_types_raise_codec_error(bad: list[object]) -> None:
    with pytest.raises(GossipCodecError):
        decode_packet(_packet(bad))


@pytest.mark.parametrize("data", [
    b"", b"\x90", msgpack.packb({"a": 1}), msgpack.packb(7),
    msgpack.packb([[3, 1]]) + b"trailing", b"\xd4\x01\x02",  # ext type
    msgpack.packb([msgpack.ExtType(1, b"x")]),
])
def test_malformed_packets_raise_codec_error(data: bytes) -> None:
    with pytest.raises(GossipCodecError):
        decode_packet(data)


def test_oversized_packet_is_refused_before_decoding() -> None:
    body = encode_packet([encode_message(Ack(seq=1, payload=b"x" * 200))] * 10)
    assert len(decode_packet(body)) == 10
    with pytest.raises(GossipCodecError):
        decode_packet(body, max_size=len(body) - 1)


def test_non_bytes_input_is_a_codec_error() -> None:
    with pytest.raises(GossipCodecError):
        decode_packet("text")  # type: ignore[arg-type]


def test_validate_tags_limits_size_and_types() -> None:
    assert validate_tags({"role": "server", "dc": "dc1"}) == {"role": "server", "dc": "dc1"}
    with pytest.raises(ValueError):
        validate_tags({"k": "v" * 600})
    with pytest.raises(ValueError):
        validate_tags({"k": 1})  # type: ignore[dict-item]
