"""TCP checks: passing if a connection (and, with ``tcp_use_tls``, a TLS handshake) succeeds."""

from __future__ import annotations

import asyncio
import random
import ssl

from lictor.common.clock import Clock
from lictor.common.types import HealthStatus

from .base import (
    DEFAULT_TIMEOUT,
    IntervalCheck,
    StatusHandler,
    describe_error,
    format_seconds,
    split_host_port,
)
from .tls import client_context

__all__ = ["TCPCheck"]


class TCPCheck(IntervalCheck):
    """``tcp = "host:port"``: connect, then close at once. Nothing is sent."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        tcp: str,
        interval: float,
        timeout: float = DEFAULT_TIMEOUT,
        tcp_use_tls: bool = False,
        tls_skip_verify: bool = False,
        tls_server_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        self._address = tcp
        self._host, self._port = split_host_port(tcp, what="tcp address")
        self._ssl = (
            client_context(skip_verify=tls_skip_verify, base=ssl_context) if tcp_use_tls else None
        )
        self._server_name = (tls_server_name or self._host) if tcp_use_tls else None

    def _timeout_output(self) -> str:
        return f"TCP connect {self._address}: timed out after {format_seconds(self._timeout)}"

    async def run_once(self) -> tuple[HealthStatus, str]:
        try:
            _, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, server_hostname=self._server_name
            )
        except OSError as exc:  # includes ssl.SSLError and ConnectionRefusedError
            return HealthStatus.CRITICAL, f"TCP connect {self._address}: {describe_error(exc)}"
        # The connect (and handshake) is the answer. abort() rather than a graceful close:
        # over TLS a graceful close waits for the peer's close_notify, which may never come.
        writer.transport.abort()
        return HealthStatus.PASSING, f"TCP connect {self._address}: Success"
