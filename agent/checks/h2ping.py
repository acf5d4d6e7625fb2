"""H2PING checks: open an HTTP/2 connection, send a PING, wait for its ACK.

The exchange is small enough to write by hand (RFC 9113):

    client                                  server
      | preface "PRI * HTTP/2.0..." + SETTINGS  |
      | PING(payload)                     ----> |
      |                  <---- SETTINGS (first frame the server must send)
      | SETTINGS(ACK)                     ----> |
      |                  <---- ... PING(ACK, same payload)  => passing
      | GOAWAY(NO_ERROR), close           ----> |

``h2ping_use_tls`` (the default, as in Consul) negotiates ALPN ``h2`` over TLS; without it the
connection is cleartext HTTP/2 with prior knowledge (h2c). ``H2FrameReader`` is sans-I/O so the
framing is tested without sockets.
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass

from lictor.common.clock import Clock
from lictor.common.errors import RemoteProtocolError
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

__all__ = ["H2Frame", "H2FrameReader", "H2PingCheck", "encode_frame"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_SETTINGS = 0x4
FRAME_PING = 0x6
FRAME_GOAWAY = 0x7
FLAG_ACK = 0x1
# Largest frame the peer may send before we advertise more (SETTINGS_MAX_FRAME_SIZE default).
MAX_FRAME_SIZE = 16_384


@dataclass(frozen=True, slots=True, kw_only=True)
class H2Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes


def encode_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    header = struct.pack(">I", len(payload))[1:] + struct.pack(
        ">BBI", frame_type, flags, stream_id & 0x7FFF_FFFF
    )
    return header + payload


class H2FrameReader:
    """Sans-I/O frame splitter: ``feed(bytes)`` returns the complete frames received so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[H2Frame]:
        self._buf += data
        frames: list[H2Frame] = []
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[0:3], "big")
            if length > MAX_FRAME_SIZE:
                raise RemoteProtocolError(
                    f"frame length {length} exceeds {MAX_FRAME_SIZE}: is the peer speaking HTTP/2?"
                )
            if len(self._buf) < 9 + length:
                break
            frame_type, flags, stream_id = struct.unpack(">BBI", self._buf[3:9])
            frames.append(
                H2Frame(
                    type=frame_type,
                    flags=flags,
                    stream_id=stream_id & 0x7FFF_FFFF,
                    payload=bytes(self._buf[9 : 9 + length]),
                )
            )
            del self._buf[: 9 + length]
        return frames


class H2PingCheck(IntervalCheck):
    """``h2ping = "host:port"``."""

    def __init__(
        self,
        *,
        handler: StatusHandler,
        h2ping: str,
        interval: float,
        timeout: float = DEFAULT_TIMEOUT,
        h2ping_use_tls: bool = True,
        tls_skip_verify: bool = False,
        tls_server_name: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(handler=handler, interval=interval, timeout=timeout, clock=clock, rng=rng)
        self._address = h2ping
        self._host, self._port = split_host_port(h2ping, what="h2ping address")
        self._use_tls = h2ping_use_tls
        self._ssl = (
            client_context(skip_verify=tls_skip_verify, alpn=["h2"]) if h2ping_use_tls else None
        )
        self._server_name = (tls_server_name or self._host) if h2ping_use_tls else None

    def _timeout_output(self) -> str:
        return f"HTTP2 ping {self._address}: timed out after {format_seconds(self._timeout)}"

    async def run_once(self) -> tuple[HealthStatus, str]:
        try:
            await self._ping()
        except (OSError, RemoteProtocolError, asyncio.IncompleteReadError) as exc:
            return (
                HealthStatus.CRITICAL,
                f"HTTP2 ping {self._address}: failed: {describe_error(exc)}",
            )
        return HealthStatus.PASSING, f"HTTP2 ping {self._address}: success"

    async def _ping(self) -> None:
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl, server_hostname=self._server_name
        )
        try:
            if self._use_tls:
                ssl_object = writer.get_extra_info("ssl_object")
                protocol = ssl_object.selected_alpn_protocol() if ssl_object else None
                if protocol != "h2":
                    raise RemoteProtocolError(f"server did not negotiate h2 (ALPN: {protocol})")
            opaque = self._rng.randbytes(8)
            writer.write(
                PREFACE
                + encode_frame(FRAME_SETTINGS, 0, 0)
                + encode_frame(FRAME_PING, 0, 0, opaque)
            )
            await writer.drain()
            await self._await_ack(reader, writer, opaque)
            writer.write(encode_frame(FRAME_GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
            await writer.drain()
        finally:
            # Not close() + wait_closed(): over TLS that waits for the peer's close_notify,
            # which some servers (grpc) never send. The answer is in; drop the connection.
            writer.transport.abort()

    async def _await_ack(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opaque: bytes
    ) -> None:
        frames = H2FrameReader()
        first = True
        while True:
            data = await reader.read(65_536)
            if not data:
                raise RemoteProtocolError("connection closed before PING ACK")
            for frame in frames.feed(data):
                if first and frame.type != FRAME_SETTINGS:
                    raise RemoteProtocolError("server did not start with SETTINGS (not HTTP/2?)")
                first = False
                if frame.type == FRAME_SETTINGS and not frame.flags & FLAG_ACK:
                    writer.write(encode_frame(FRAME_SETTINGS, FLAG_ACK, 0))
                elif frame.type == FRAME_GOAWAY:
                    code = int.from_bytes(frame.payload[4:8], "big")
                    raise RemoteProtocolError(f"server sent GOAWAY (error code {code})")
                elif frame.type == FRAME_PING and frame.flags & FLAG_ACK:
                    if frame.payload == opaque:
                        return
                    raise RemoteProtocolError("PING ACK with an unexpected payload")
