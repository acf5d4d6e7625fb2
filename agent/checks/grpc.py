"""gRPC checks: the standard ``grpc.health.v1.Health/Check`` call; SERVING is passing.

``grpc = "host:port"`` checks the server as a whole (empty service name), ``"host:port/svc"``
checks service ``svc``. One channel per check is kept across runs (created lazily inside the
event loop, closed by ``stop()``), so a run does not pay for a new HTTP/2 connection.

grpcio is imported when the first gRPC check is built, not with this module: it adds ~20 MB to
the RSS of every agent, and most agents run no gRPC check.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from lictor.common.clock import Clock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus

from .base import DEFAULT_TIMEOUT, IntervalCheck, StatusHandler, format_seconds, split_host_port

if TYPE_CHECKING:
    import grpc

__all__ = ["GRPCCheck"]


def _grpc() -> tuple[Any, Any, Any]:
    """``(grpc, health_pb2, health_pb2_grpc)``, imported on first use."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    return grpc, health_pb2, health_pb2_grpc

# Keep reconnect backoff short: grpc's default (up to 120 s) would keep a recovered server
# critical long after it came back.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.enable_retries", 0),
]


class GRPCCheck(IntervalCheck):
    """``grpc = "host:port[/service]"``, optionally over TLS (``grpc_use_tls``)."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        grpc_target: str,
        interval: float,
        timeout: float = DEFAULT_TIMEOUT,
        grpc_use_tls: bool = False,
        tls_skip_verify: bool = False,
        tls_server_name: str | None = None,
        root_certificates: bytes | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``root_certificates`` (PEM) is the agent's CA bundle; None means system roots.

        grpcio offers no way to skip certificate verification, so ``tls_skip_verify`` with
        ``grpc_use_tls`` is refused rather than silently verifying anyway.
        """
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        address, _, service = grpc_target.partition("/")
        split_host_port(address, what="grpc address")  # validate early
        if grpc_use_tls and tls_skip_verify:
            raise ConfigError(
                "tls_skip_verify is not supported for gRPC checks over TLS (grpcio cannot "
                "skip verification); configure the CA instead",
                path="tls_skip_verify",
            )
        self._target = grpc_target
        self._address = address
        self._service = service
        self._use_tls = grpc_use_tls
        self._server_name = tls_server_name or None
        self._root_certificates = root_certificates
        self._channel: grpc.aio.Channel | None = None
        self._grpc, self._pb, self._pb_grpc = _grpc()

    def _channel_for_run(self) -> grpc.aio.Channel:
        grpc = self._grpc
        if self._channel is None:
            if self._use_tls:
                creds = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
                options = list(_CHANNEL_OPTIONS)
                if self._server_name:
                    options.append(("grpc.ssl_target_name_override", self._server_name))
                self._channel = grpc.aio.secure_channel(self._address, creds, options=options)
            else:
                self._channel = grpc.aio.insecure_channel(self._address, options=_CHANNEL_OPTIONS)
        return self._channel

    def _timeout_output(self) -> str:
        return f"gRPC check {self._target}: timed out after {format_seconds(self._timeout)}"

    async def run_once(self) -> tuple[HealthStatus, str]:
        grpc, health_pb2 = self._grpc, self._pb
        stub = self._pb_grpc.HealthStub(self._channel_for_run())
        try:
            resp = await stub.Check(
                health_pb2.HealthCheckRequest(service=self._service), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            detail = exc.details()
            reason = f"{exc.code().name}: {detail}" if detail else exc.code().name
            return HealthStatus.CRITICAL, f"gRPC check {self._target}: failed: {reason}"
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        if resp.status == health_pb2.HealthCheckResponse.SERVING:
            return HealthStatus.PASSING, f"gRPC check {self._target}: success"
        return HealthStatus.CRITICAL, f"gRPC check {self._target}: serving status {name}"

    async def _aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
