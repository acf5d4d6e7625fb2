"""UDPCheck against real loopback UDP sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.udp import PROBE_PAYLOAD, UDPCheck
from lictor.common.types import HealthStatus


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self.transport.sendto(b"pong", addr)  # type: ignore[attr-defined]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, Echo]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], proto
    transport.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A bound UDP socket that never answers (and never reads)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def test_a_reply_is_passing(handler: StatusHandler, echo: tuple[int, Echo]) -> None:
    port, proto = echo
    c = UDPCheck(handler=handler, udp=f"127.0.0.1:{port}", interval=10, timeout=2)
    assert await c.check_once() == (
        HealthStatus.PASSING,
        f"UDP connect 127.0.0.1:{port}: Success",
    )
    assert proto.received == [PROBE_PAYLOAD]


async def test_silence_for_the_whole_timeout_is_passing(
    handler: StatusHandler, silent_port: int
) -> None:
    c = UDPCheck(handler=handler, udp=f"127.0.0.1:{silent_port}", interval=10, timeout=0.1)
    assert (await c.check_once())[0] == HealthStatus.PASSING


async def test_icmp_port_unreachable_is_critical(
    handler: StatusHandler, closed_udp_port: int
) -> None:
    c = UDPCheck(handler=handler, udp=f"127.0.0.1:{closed_udp_port}", interval=10, timeout=2)
    status, output = await c.check_once()
    assert status == HealthStatus.CRITICAL
    assert output.startswith(f"UDP 127.0.0.1:{closed_udp_port}: ")
    assert "refused" in output.lower()
