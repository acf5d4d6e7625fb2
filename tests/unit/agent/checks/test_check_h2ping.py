"""H2PingCheck: a hand-written HTTP/2 PING against a real gRPC (HTTP/2) server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.h2ping import (
    FLAG_ACK,
    FRAME_PING,
    FRAME_SETTINGS,
    H2Frame,
    H2FrameReader,
    H2PingCheck,
    encode_frame,
)
from lictor.common.errors import RemoteProtocolError
from lictor.common.types import HealthStatus


def test_frame_reader_reassembles_split_frames() -> None:
    wire = encode_frame(FRAME_SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64") + encode_frame(
        FRAME_PING, FLAG_ACK, 0, b"12345678"
    )
    reader = H2FrameReader()
    frames = []
    for i in range(len(wire)):  # one byte at a time
        frames += reader.feed(wire[i : i + 1])
    assert frames == [
        H2Frame(type=FRAME_SETTINGS, flags=0, stream_id=0, payload=b"\x00\x03\x00\x00\x00\x64"),
        H2Frame(type=FRAME_PING, flags=FLAG_ACK, stream_id=0, payload=b"12345678"),
    ]


def test_frame_reader_rejects_non_http2_bytes() -> None:
    with pytest.raises(RemoteProtocolError):
        H2FrameReader().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


async def test_h2c_ping_is_passing(handler: StatusHandler, grpc_health_server: Any) -> None:
    async with grpc_health_server() as port:
        c = H2PingCheck(
            handler=handler,
            h2ping=f"127.0.0.1:{port}",
            interval=10,
            timeout=2,
            h2ping_use_tls=False,
        )
        assert await c.check_once() == (
            HealthStatus.PASSING,
            f"HTTP2 ping 127.0.0.1:{port}: success",
        )


async def test_tls_ping_with_alpn_h2(
    handler: StatusHandler, self_signed: Any, grpc_health_server: Any
) -> None:
    async with grpc_health_server(tls=(self_signed.key_pem, self_signed.cert_pem)) as port:
        addr = f"127.0.0.1:{port}"
        skipping = H2PingCheck(
            handler=handler, h2ping=addr, interval=10, timeout=2, tls_skip_verify=True
        )
        result = await skipping.check_once()
        assert result[0] == HealthStatus.PASSING, result
        verifying = H2PingCheck(handler=handler, h2ping=addr, interval=10, timeout=2)
        status, output = await verifying.check_once()
        assert status == HealthStatus.CRITICAL and "certificate" in output.lower()


@pytest.fixture
async def http1_port() -> AsyncIterator[int]:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def test_an_http1_server_is_critical(handler: StatusHandler, http1_port: int) -> None:
    c = H2PingCheck(
        handler=handler, h2ping=f"127.0.0.1:{http1_port}", interval=10, timeout=2,
        h2ping_use_tls=False,
    )
    status, output = await c.check_once()
    assert status == HealthStatus.CRITICAL
    assert "HTTP/2" in output


async def test_tls_without_h2_alpn_is_critical(
    handler: StatusHandler, self_signed: Any
) -> None:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(
        on_client, "127.0.0.1", 0, ssl=self_signed.server_context()
    )
    port = server.sockets[0].getsockname()[1]
    try:
        c = H2PingCheck(
            handler=handler, h2ping=f"127.0.0.1:{port}", interval=10, timeout=2,
            tls_skip_verify=True,
        )
        status, output = await c.check_once()
    finally:
        server.close()
        await server.wait_closed()
    assert status == HealthStatus.CRITICAL
    assert "did not negotiate h2" in output


async def test_closed_port_is_critical(handler: StatusHandler, closed_tcp_port: int) -> None:
    c = H2PingCheck(
        handler=handler, h2ping=f"127.0.0.1:{closed_tcp_port}", interval=10, timeout=2,
        h2ping_use_tls=False,
    )
    assert await c.check_once() == (
        HealthStatus.CRITICAL,
        f"HTTP2 ping 127.0.0.1:{closed_tcp_port}: failed: connection refused",
    )
