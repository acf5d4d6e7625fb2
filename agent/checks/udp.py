"""UDP checks: send one datagram; a reply, or silence for the whole timeout, is passing.

UDP has no handshake, so, as in Consul, the only negative signal is an error on the socket:
an ICMP "port unreachable" surfaces on a connected UDP socket as ``ConnectionRefusedError``.
So: a reply -> passing; no reply and no error within ``timeout`` -> passing (nothing said the
port is closed); a socket error (ICMP unreachable, no route, resolution failure) -> critical.
"""

from __future__ import annotations

import asyncio
import random

from lictor.common.clock import Clock
from lictor.common.types import HealthStatus

from .base import DEFAULT_TIMEOUT, IntervalCheck, StatusHandler, describe_error, split_host_port

__all__ = ["PROBE_PAYLOAD", "UDPCheck"]

#: What is sent. Any payload will do: only the reaction of the remote host matters.
PROBE_PAYLOAD = b"lictor health check\n"
# Extra time beyond ``timeout`` the outer deadline allows (name resolution, socket setup).
_GRACE = 1.0


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, outcome: asyncio.Future[bytes]) -> None:
        self._outcome = outcome

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self._outcome.done():
            self._outcome.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._outcome.done():
            self._outcome.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._outcome.done():
            self._outcome.set_exception(exc)


class UDPCheck(IntervalCheck):
    """``udp = "host:port"``."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        udp: str,
        interval: float,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        self._address = udp
        self._host, self._port = split_host_port(udp, what="udp address")

    def _deadline(self) -> float | None:
        return self._timeout + _GRACE  # run_once waits ``timeout`` for a reply by itself

    async def run_once(self) -> tuple[HealthStatus, str]:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Probe(outcome), remote_addr=(self._host, self._port)
            )
        except OSError as exc:
            return HealthStatus.CRITICAL, f"UDP {self._address}: {describe_error(exc)}"
        try:
            transport.sendto(PROBE_PAYLOAD)
            try:
                await asyncio.wait_for(outcome, self._timeout)
            except TimeoutError:
                pass  # silence is not failure for UDP
            except OSError as exc:
                return HealthStatus.CRITICAL, f"UDP {self._address}: {describe_error(exc)}"
        finally:
            transport.close()
            if not outcome.done():
                outcome.cancel()
        return HealthStatus.PASSING, f"UDP connect {self._address}: Success"
