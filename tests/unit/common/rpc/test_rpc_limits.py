"""Issue 18 item 13 on the RPC port: Consul's limits.rpc_max_conns_per_client and
rpc_handshake_timeout, and a server-wide bound on bytes held in incomplete frames.
Real sockets on 127.0.0.0/8 (several source addresses stand for several clients)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from lictor.common.rpc.conn import RPCClient, RPCServer
from lictor_test_rpc_support import ScriptedHandler, ZeroRandom, read_until_closed, wait_for


@pytest.fixture
async def limited(handler: ScriptedHandler) -> AsyncIterator[RPCServer]:
    srv = RPCServer(handler, host="127.0.0.1", port=0, frame_timeout=5.0, idle_timeout=30.0,
                    max_conns_per_client=3, handshake_timeout=0.3, max_partial_bytes=200_000)
    await srv.start()
    yield srv
    await srv.close()


async def conn_from(srv: RPCServer, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.bound_port, local_addr=(source, 0))


async def closed_soon(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except (asyncio.TimeoutError, TimeoutError):
        return False
    except ConnectionResetError:
        return True


async def test_connections_per_client_ip_are_capped(limited: RPCServer) -> None:
    held = [await conn_from(limited, "127.0.0.1") for _ in range(3)]
    await wait_for(lambda: limited.connections == 3)
    reader, writer = await conn_from(limited, "127.0.0.1")
    assert await closed_soon(reader, 1.0), "a 4th connection from one IP was kept"
    writer.close()
    assert limited.stats.refused_per_client == 1
    # another client address is not affected, and a real client still gets answers
    c = RPCClient(connect_timeout=2.0, request_timeout=5.0, rng=ZeroRandom())
    try:
        other = await conn_from(limited, "127.0.0.2")
        assert not await closed_soon(other[0], 0.1)
        other[1].close()
        held[0][1].close()  # freeing a slot lets the same IP in again
        await wait_for(lambda: limited._per_ip.get("127.0.0.1", 0) == 2)
        assert await c.call(limited.addr, "echo", {"x": 1}) == {"x": 1}
    finally:
        await c.close()
        for _, w in held:
            w.close()


async def test_a_first_frame_must_complete_within_the_handshake_timeout(limited: RPCServer) -> None:
    reader, writer = await conn_from(limited, "127.0.0.3")
    # announce 100 kB, send 1 kB, then keep trickling so the frame is never "stalled"
    writer.write(struct.pack(">I", 100_000) + b"\x00" * 1000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    closed = False
    while loop.time() - start < 2.0 and not closed:
        try:
            writer.write(b"\x00")
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        closed = await closed_soon(reader, 0.05)
    writer.close()
    assert closed and loop.time() - start < 1.5
    assert limited.stats.dropped_handshake == 1


async def test_incomplete_frames_share_a_server_wide_byte_budget(limited: RPCServer) -> None:
    a = await conn_from(limited, "127.0.0.4")
    b = await conn_from(limited, "127.0.0.5")
    a[1].write(struct.pack(">I", 1_000_000) + b"\x00" * 150_000)
    await a[1].drain()
    await wait_for(lambda: limited._partial_bytes >= 150_000)
    b[1].write(struct.pack(">I", 1_000_000) + b"\x00" * 100_000)
    assert await read_until_closed(b[0]) == b""
    assert limited.stats.dropped_partial_budget == 1
    a[1].close()
    b[1].close()
    await wait_for(lambda: limited._partial_bytes == 0)
