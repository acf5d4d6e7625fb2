"""TCPCheck against real loopback listeners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.tcp import TCPCheck
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


async def _serve(ssl_context: Any = None) -> AsyncIterator[int]:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def open_port() -> AsyncIterator[int]:
    async for p in _serve():
        yield p


@pytest.fixture
async def tls_port(self_signed: Any) -> AsyncIterator[int]:
    async for p in _serve(self_signed.server_context()):
        yield p


async def test_open_port_is_passing(handler: StatusHandler, open_port: int) -> None:
    c = TCPCheck(handler=handler, tcp=f"127.0.0.1:{open_port}", interval=10)
    assert await c.check_once() == (
        HealthStatus.PASSING,
        f"TCP connect 127.0.0.1:{open_port}: Success",
    )


async def test_closed_port_is_critical(handler: StatusHandler, closed_tcp_port: int) -> None:
    c = TCPCheck(handler=handler, tcp=f"127.0.0.1:{closed_tcp_port}", interval=10)
    status, output = await c.check_once()
    assert status == HealthStatus.CRITICAL
    assert output.startswith(f"TCP connect 127.0.0.1:{closed_tcp_port}: ")
    assert "refused" in output.lower()


async def test_tls_handshake(handler: StatusHandler, tls_port: int) -> None:
    addr = f"127.0.0.1:{tls_port}"
    verified = TCPCheck(handler=handler, tcp=addr, interval=10, tcp_use_tls=True)
    assert (await verified.check_once())[0] == HealthStatus.CRITICAL  # self-signed
    skipping = TCPCheck(
        handler=handler, tcp=addr, interval=10, tcp_use_tls=True, tls_skip_verify=True
    )
    assert (await skipping.check_once())[0] == HealthStatus.PASSING


@pytest.mark.parametrize("addr", ["localhost", "host:port", "[::1]80", "h:0", "a:b:1"])
def test_invalid_address(handler: StatusHandler, addr: str) -> None:
    with pytest.raises(ConfigError):
        TCPCheck(handler=handler, tcp=addr, interval=10)


def test_ipv6_address_is_accepted(handler: StatusHandler) -> None:
    TCPCheck(handler=handler, tcp="[::1]:8080", interval=10)
