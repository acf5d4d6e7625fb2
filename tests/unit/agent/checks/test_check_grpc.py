"""GRPCCheck against a real grpc.aio server running the standard health service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.grpc import GRPCCheck
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


@pytest.fixture
async def port(grpc_health_server: Any) -> AsyncIterator[int]:
    async with grpc_health_server() as p:
        yield p


@pytest.mark.parametrize(
    ("service", "status", "suffix"),
    [
        ("", HealthStatus.PASSING, "success"),
        ("/web", HealthStatus.PASSING, "success"),
        ("/db", HealthStatus.CRITICAL, "serving status NOT_SERVING"),
        ("/nope", HealthStatus.CRITICAL, "failed: NOT_FOUND"),
    ],
)
async def test_serving_status(
    handler: StatusHandler, port: int, service: str, status: HealthStatus, suffix: str
) -> None:
    target = f"127.0.0.1:{port}{service}"
    c = GRPCCheck(handler=handler, grpc_target=target, interval=10, timeout=2)
    try:
        assert await c.check_once() == (status, f"gRPC check {target}: {suffix}")
    finally:
        await c.stop()


async def test_server_down_is_critical(handler: StatusHandler, closed_tcp_port: int) -> None:
    target = f"127.0.0.1:{closed_tcp_port}"
    c = GRPCCheck(handler=handler, grpc_target=target, interval=10, timeout=2)
    try:
        status, output = await c.check_once()
    finally:
        await c.stop()
    assert status == HealthStatus.CRITICAL
    assert output.startswith(f"gRPC check {target}: failed: UNAVAILABLE")


async def test_one_channel_is_reused_and_closed_on_stop(handler: StatusHandler, port: int) -> None:
    c = GRPCCheck(handler=handler, grpc_target=f"127.0.0.1:{port}", interval=10, timeout=2)
    await c.check_once()
    channel = c._channel
    await c.check_once()
    assert channel is not None and c._channel is channel
    await c.stop()
    assert c._channel is None


async def test_tls_with_the_agent_ca(
    handler: StatusHandler, self_signed: Any, grpc_health_server: Any
) -> None:
    async with grpc_health_server(tls=(self_signed.key_pem, self_signed.cert_pem)) as p:
        c = GRPCCheck(
            handler=handler,
            grpc_target=f"127.0.0.1:{p}/web",
            interval=10,
            timeout=2,
            grpc_use_tls=True,
            root_certificates=self_signed.cert_pem,
            tls_server_name="localhost",
        )
        try:
            assert (await c.check_once())[0] == HealthStatus.PASSING
        finally:
            await c.stop()


def test_tls_skip_verify_is_refused(handler: StatusHandler) -> None:
    with pytest.raises(ConfigError):
        GRPCCheck(
            handler=handler,
            grpc_target="127.0.0.1:1",
            interval=10,
            grpc_use_tls=True,
            tls_skip_verify=True,
        )
