"""RPCServer and RPCClient over real sockets on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from lictor.common.errors import (
    CASFailed,
    Conflict,
    LictorError,
    LocalProtocolError,
    NoLeaderError,
    NotFound,
    NotLeaderError,
    RemoteError,
    TransportError,
    ValidationError,
)
from lictor.common.rpc.conn import RPCClient, RPCServer, parse_addr
from lictor.common.rpc.framing import encode_frame, encode_request

from lictor_test_rpc_support import ScriptedHandler, ZeroRandom, read_until_closed, wait_for


async def raw_conn(srv: RPCServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.bound_port)


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# -- calls


async def test_concurrent_calls_share_one_connection_and_may_complete_out_of_order(
        server: RPCServer, client: RPCClient, handler: ScriptedHandler) -> None:
    n = 100
    # the first call sleeps longest, so replies come back in reverse order
    calls = [client.call(server.addr, "sleep", {"i": i, "s": (n - i) * 0.0002}) for i in range(n)]
    results = await asyncio.gather(*calls)
    assert [r["i"] for r in results] == list(range(n))
    assert handler.completed != sorted(handler.completed)  # really out of order on the wire
    assert handler.max_running > 1  # really concurrent on the server
    assert server.stats.accepted == 1
    assert client.stats.connects == 1
    assert server.stats.requests == n


async def test_call_round_trips_msgpack_values(server: RPCServer, client: RPCClient) -> None:
    args = {"b": b"\x00\xff", "s": "é", "l": [1, [2, None]], "f": 1.5, "big": 2**63}
    assert await client.call(server.addr, "echo", args) == args


async def test_peer_info_reaches_the_handler(server: RPCServer, client: RPCClient,
                                             handler: ScriptedHandler) -> None:
    assert await client.call(server.addr, "peer", {}) == {"tls": False, "has_cert": False}
    peer = handler.peers[0]
    assert parse_addr(peer.addr)[0] == "127.0.0.1"
    assert peer.conn_id >= 1


@pytest.mark.parametrize(("name", "cls"), [
    ("NotLeaderNone", NotLeaderError),
    ("NoLeaderError", NoLeaderError),
    ("NotFound", NotFound),
    ("CASFailed", CASFailed),
    ("Conflict", Conflict),
    ("ValidationError", ValidationError),
])
async def test_handler_errors_come_back_as_the_same_class(
        server: RPCServer, client: RPCClient, name: str, cls: type[Exception]) -> None:
    with pytest.raises(cls):
        await client.call(server.addr, "raise", {"name": name})


async def test_not_leader_error_carries_the_leader(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(NotLeaderError) as info:
        await client.call(server.addr, "raise", {"name": "NotLeaderError"})
    assert info.value.leader == "10.0.0.2:8300"


async def test_unexpected_handler_exception_is_an_internal_error(
        server: RPCServer, client: RPCClient, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RemoteError, match="^InternalError: ") as info:
        await client.call(server.addr, "raise", {"name": "KeyError"})
    assert "secret" not in str(info.value)
    assert "secret-internal-detail" in caplog.text  # the traceback stays in the server log
    assert server.stats.internal_errors == 1
    assert await client.call(server.addr, "echo", {"ok": 1}) == {"ok": 1}  # connection is fine


async def test_unmapped_lictor_error_is_a_remote_error(server: RPCServer,
                                                       client: RPCClient) -> None:
    with pytest.raises(RemoteError, match="^RemoteProtocolError: odd args$"):
        await client.call(server.addr, "raise", {"name": "RemoteProtocolError"})
    assert server.stats.dropped_bad_frame == 0


async def test_unencodable_args_fail_locally(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(LocalProtocolError):
        await client.call(server.addr, "echo", {"x": object()})
    assert await client.call(server.addr, "echo", {}) == {}


async def test_call_timeout_is_a_transport_error_and_the_late_reply_is_ignored(
        server: RPCServer, client: RPCClient, handler: ScriptedHandler) -> None:
    with pytest.raises(TransportError, match="timed out after 0.05s"):
        await client.call(server.addr, "sleep", {"i": 0, "s": 0.15}, timeout=0.05)
    await wait_for(lambda: handler.completed == [0])
    assert await client.call(server.addr, "echo", {"after": 1}) == {"after": 1}
    assert client.stats.connects == 1


async def test_backpressure_bounds_requests_in_flight_per_connection(
        handler: ScriptedHandler, client: RPCClient) -> None:
    async with RPCServer(handler, port=0, max_inflight=4) as srv:
        tasks = [asyncio.create_task(client.call(srv.addr, "gate", {})) for _ in range(20)]
        await wait_for(lambda: handler.started == 4)
        await asyncio.sleep(0.02)
        assert handler.started == 4  # the other 16 wait unread / in the backlog
        handler.gate.set()
        assert await asyncio.gather(*tasks) == ["opened"] * 20
        assert handler.max_running == 4


async def test_two_connections_per_address_when_allowed(server: RPCServer,
                                                        handler: ScriptedHandler) -> None:
    async with RPCClient(max_conns_per_addr=2) as c:
        await c.connect(server.addr)
        # the first connection is busy, so a second one is opened (and no third)
        for _ in range(2):
            calls = [asyncio.create_task(c.call(server.addr, "sleep", {"i": i, "s": 0.02}))
                     for i in range(10)]
            await asyncio.gather(*calls)
        assert c.stats.connects == 2
        assert {p.conn_id for p in handler.peers} == {1, 2}  # both carried calls


# -- notifications


async def test_notifications_arrive_in_order(server: RPCServer, client: RPCClient,
                                             handler: ScriptedHandler) -> None:
    await client.connect(server.addr)
    for i in range(2000):
        assert client.notify(server.addr, "Raft.AppendEntries", {"i": i})
    await client.call(server.addr, "echo", {})  # a barrier: sent after them on the same socket
    assert [a["i"] for _, a in handler.notes] == list(range(2000))
    assert server.stats.notifications == 2000
    assert client.stats.notifications_sent == 2000


async def test_notify_without_a_connection_drops_and_reconnects_in_background(
        server: RPCServer, client: RPCClient, handler: ScriptedHandler) -> None:
    assert client.notify(server.addr, "n", {"i": 0}) is False
    assert client.stats.notifications_dropped == 1
    await wait_for(lambda: client.is_connected(server.addr))
    assert client.notify(server.addr, "n", {"i": 1}) is True
    await wait_for(lambda: len(handler.notes) == 1)
    assert handler.notes == [("n", {"i": 1})]


async def test_notification_handler_can_drop_the_connection(
        server: RPCServer, client: RPCClient, handler: ScriptedHandler) -> None:
    await client.connect(server.addr)
    client.notify(server.addr, "bad", {})
    await wait_for(lambda: server.stats.dropped_bad_frame == 1)
    await wait_for(lambda: client.stats.connections_lost == 1)


# -- bad peers: only their own connection goes


BAD_INPUTS = {
    "garbage": (raw_frame(b"\xc1\xc1\xc1"), "dropped_bad_frame"),
    "random_bytes": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "dropped_oversize"),
    "oversize_header_only": (struct.pack(">I", 64 * 1024 * 1024), "dropped_oversize"),
    "trailing_garbage": (raw_frame(msgpack.packb({"t": "note", "m": "x", "a": {}}) + b"!"),
                         "dropped_bad_frame"),
    "id_is_a_string": (encode_frame({"t": "req", "id": "x", "m": "echo", "a": {}}),
                       "dropped_bad_frame"),
    "args_not_a_map": (encode_frame({"t": "req", "id": 1, "m": "echo", "a": [1]}),
                       "dropped_bad_frame"),
    "not_a_map": (encode_frame([1, 2, 3]), "dropped_bad_frame"),
    "response_sent_to_server": (encode_frame({"t": "res", "id": 1, "r": 1}),
                                "dropped_bad_frame"),
    "duplicate_id_in_flight": (encode_request(1, "gate", {}) + encode_request(1, "gate", {}),
                               "dropped_bad_frame"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
async def test_bad_input_drops_only_that_connection(
        server: RPCServer, client: RPCClient, kind: str) -> None:
    payload, counter = BAD_INPUTS[kind]
    assert await client.call(server.addr, "echo", {"before": 1}) == {"before": 1}
    reader, writer = await raw_conn(server)
    writer.write(payload)
    # while the bad peer is being dropped, the good client keeps working
    good = asyncio.create_task(client.call(server.addr, "echo", {"during": 1}))
    assert await read_until_closed(reader) == b""  # closed without a reply
    writer.close()
    assert await good == {"during": 1}
    assert getattr(server.stats, counter) == 1
    assert await client.call(server.addr, "echo", {"after": 1}) == {"after": 1}
    assert client.stats.connects == 1 and client.stats.connections_lost == 0
    assert server.connections == 1


async def test_oversize_header_is_refused_before_any_body_is_sent(server: RPCServer) -> None:
    reader, writer = await raw_conn(server)
    writer.write(struct.pack(">I", server._max_frame_size + 1))  # and nothing else
    await read_until_closed(reader, timeout=0.15)  # well before frame_timeout (0.2 s) could act
    writer.close()
    assert server.stats.dropped_oversize == 1
    assert server.stats.dropped_stalled == 0


async def test_peer_stalling_mid_header_is_dropped_after_frame_timeout(
        server: RPCServer, client: RPCClient) -> None:
    reader, writer = await raw_conn(server)
    loop = asyncio.get_running_loop()
    start = loop.time()
    writer.write(b"\x00\x00")  # two bytes of a header, then silence
    await read_until_closed(reader, timeout=30)  # a liveness guard, not a speed bound
    elapsed = loop.time() - start
    writer.close()
    assert elapsed >= 0.2  # never before frame_timeout
    # dropped as a stall (frame_timeout 0.2 s), not as an idle connection (idle_timeout 5 s)
    assert server.stats.dropped_stalled == 1 and server.stats.dropped_idle == 0
    assert await client.call(server.addr, "echo", {}) == {}


async def test_peer_stalling_mid_body_is_dropped(server: RPCServer) -> None:
    reader, writer = await raw_conn(server)
    frame = encode_frame({"t": "note", "m": "x", "a": {"pad": "y" * 100}})
    writer.write(frame[:50])
    await read_until_closed(reader)
    writer.close()
    assert server.stats.dropped_stalled == 1


async def test_a_busy_stream_is_not_mistaken_for_a_stall(
        server: RPCServer, handler: ScriptedHandler) -> None:
    """Every chunk ends mid-frame, for longer than frame_timeout overall: frames keep
    completing, so the connection must stay."""
    reader, writer = await raw_conn(server)
    stream = b"".join(encode_frame({"t": "note", "m": "n", "a": {"i": i}}) for i in range(40))
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.4
    step = 17
    for i in range(0, len(stream), step):
        writer.write(stream[i:i + step])
        await writer.drain()
        await asyncio.sleep(0.4 / (len(stream) / step))
    assert loop.time() >= end - 0.05
    await wait_for(lambda: len(handler.notes) == 40)
    assert server.stats.dropped_stalled == 0
    writer.close()


async def test_idle_connection_is_closed_but_one_with_a_call_in_flight_is_not(
        handler: ScriptedHandler) -> None:
    async with RPCServer(handler, port=0, idle_timeout=0.1, frame_timeout=5.0) as srv, \
            RPCClient() as c:
        # a call that takes 3x the idle timeout
        assert (await c.call(srv.addr, "sleep", {"i": 1, "s": 0.3}))["i"] == 1
        assert srv.stats.dropped_idle == 0
        reader, writer = await raw_conn(srv)
        await read_until_closed(reader)
        writer.close()
        await wait_for(lambda: srv.stats.dropped_idle >= 2)  # the raw one, and c's after its call
        # (a call racing the server's idle close can fail: the client must see the close first)
        await wait_for(lambda: c.stats.connections_lost >= 1)
        assert await c.call(srv.addr, "echo", {"again": 1}) == {"again": 1}  # reconnects


async def test_server_replying_garbage_fails_the_pending_call() -> None:
    async def bad_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(raw_frame(b"\xc1"))
        await writer.drain()
        await reader.read(100)
        writer.close()

    srv = await asyncio.start_server(bad_server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with RPCClient() as c:
        with pytest.raises(TransportError, match="protocol error"):
            await c.call(f"127.0.0.1:{port}", "echo", {})
    srv.close()
    await srv.wait_closed()


# -- servers going away


async def test_pending_calls_fail_with_transport_error_when_the_server_dies(
        handler: ScriptedHandler) -> None:
    srv = RPCServer(handler, port=0)
    await srv.start()
    # an hour-long request timeout: a call that fails now fails because the server went away,
    # not by timing out (the 30 s below only guards the test run)
    async with RPCClient(request_timeout=3600.0) as c:
        calls = [asyncio.create_task(c.call(srv.addr, "gate", {})) for _ in range(5)]
        await wait_for(lambda: handler.started == 5)
        await srv.close()
        for t in calls:
            with pytest.raises(TransportError) as exc:
                await asyncio.wait_for(t, 30)
            assert "timed out" not in str(exc.value)


async def test_client_reconnects_after_the_server_restarts_on_the_same_port(
        handler: ScriptedHandler) -> None:
    srv = RPCServer(handler, port=0)
    await srv.start()
    port = srv.bound_port
    addr = srv.addr
    async with RPCClient(rng=ZeroRandom(), backoff_base=0.01, backoff_max=0.05) as c:
        assert await c.call(addr, "echo", {"n": 1}) == {"n": 1}
        await srv.close()
        with pytest.raises(TransportError):
            await c.call(addr, "echo", {"n": 2})
        srv2 = RPCServer(handler, port=port)
        await srv2.start()
        try:
            await wait_for(lambda: c.is_connected(addr))  # the background reconnect got there
            assert await c.call(addr, "echo", {"n": 3}) == {"n": 3}
            assert c.stats.connects == 2
        finally:
            await srv2.close()


async def test_connection_refused_is_a_transport_error(handler: ScriptedHandler) -> None:
    srv = RPCServer(handler, port=0)
    await srv.start()
    addr = srv.addr
    await srv.close()
    async with RPCClient() as c:
        with pytest.raises(TransportError) as info:
            await c.call(addr, "echo", {})
        assert isinstance(info.value.__cause__, OSError)
        assert not isinstance(info.value, OSError)


async def test_background_reconnect_backs_off_then_succeeds(handler: ScriptedHandler) -> None:
    srv = RPCServer(handler, port=0)
    await srv.start()
    port, addr = srv.bound_port, srv.addr
    await srv.close()
    async with RPCClient(rng=ZeroRandom(), backoff_base=0.01, backoff_max=0.04) as c:
        assert c.notify(addr, "n", {}) is False
        await wait_for(lambda: c.stats.connect_failures >= 3)
        srv2 = RPCServer(handler, port=port)
        await srv2.start()
        try:
            await wait_for(lambda: c.is_connected(addr))
            assert c.notify(addr, "n", {"i": 1}) is True
        finally:
            await srv2.close()


def test_backoff_is_capped_exponential_with_jitter_from_the_injected_rng() -> None:
    low = RPCClient(rng=ZeroRandom(), backoff_base=0.1, backoff_max=1.0)
    assert [low.backoff(a) for a in range(7)] == [0.0, 0.05, 0.1, 0.2, 0.4, 0.5, 0.5]

    class One(ZeroRandom):
        def random(self) -> float:
            return 1.0

    high = RPCClient(rng=One(), backoff_base=0.1, backoff_max=1.0)
    assert [high.backoff(a) for a in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


async def test_client_close_fails_pending_calls(server: RPCServer,
                                                handler: ScriptedHandler) -> None:
    c = RPCClient()
    call = asyncio.create_task(c.call(server.addr, "gate", {}))
    await wait_for(lambda: handler.started == 1)
    await c.close()
    with pytest.raises(TransportError):
        await call
    with pytest.raises(TransportError, match="closed"):
        await c.call(server.addr, "echo", {})


async def test_forget_closes_an_address(server: RPCServer, client: RPCClient) -> None:
    await client.connect(server.addr)
    await client.forget(server.addr)
    assert not client.is_connected(server.addr)
    await wait_for(lambda: server.connections == 0)


@pytest.mark.parametrize("addr", ["nohostport", "host:", ":80", "h:99999"])
async def test_bad_address_is_a_transport_error(client: RPCClient, addr: str) -> None:
    with pytest.raises(TransportError, match="invalid address"):
        await client.call(addr, "echo", {})


async def test_nothing_below_lictor_error_escapes_a_call(client: RPCClient) -> None:
    # port 1 on loopback: refused (no DNS here: a resolver may hang in a sandbox)
    with pytest.raises(LictorError):
        await client.call("127.0.0.1:1", "echo", {}, timeout=2.0)


async def test_server_close_is_idempotent_and_start_twice_is_refused(
        handler: ScriptedHandler) -> None:
    srv = RPCServer(handler, port=0)
    await srv.start()
    with pytest.raises(RuntimeError):
        await srv.start()
    await srv.close()
    await srv.close()


def test_works_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport subclasses; nothing may assume they are."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        handler = ScriptedHandler()
        async with RPCServer(handler, port=0) as srv, RPCClient() as c:
            calls = [c.call(srv.addr, "echo", {"i": i}) for i in range(50)]
            assert [r["i"] for r in await asyncio.gather(*calls)] == list(range(50))
            for i in range(100):
                c.notify(srv.addr, "n", {"i": i})
            with pytest.raises(NotLeaderError):
                await c.call(srv.addr, "raise", {"name": "NotLeaderError"})
            assert [a["i"] for _, a in handler.notes] == list(range(100))
            assert srv.stats.accepted == 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
