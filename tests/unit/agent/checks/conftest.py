"""Shared fixtures for the check tests: a recording notifier, a self-signed cert, free ports."""

from __future__ import annotations

import datetime
import random
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.testing import RecordingNotifier


class ZeroRandom(random.Random):
    """A randomness source that always staggers by 0 (the only thing tests patch)."""

    def random(self) -> float:
        return 0.0


@pytest.fixture
def zero_rng() -> random.Random:
    return ZeroRandom()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def handler(notifier: RecordingNotifier) -> StatusHandler:
    return StatusHandler("chk", notifier)


@dataclass(frozen=True)
class SelfSigned:
    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this certificate."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    """A self-signed certificate for DNS name ``localhost`` only (no IP SAN on purpose)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert_pem)
    (d / "key.pem").write_bytes(key_pem)
    return SelfSigned(cert_pem, key_pem, d / "cert.pem", d / "key.pem")


def _unused_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_tcp_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    return _unused_port(socket.SOCK_STREAM)


@pytest.fixture
def closed_udp_port() -> int:
    return _unused_port(socket.SOCK_DGRAM)




@asynccontextmanager
async def _health_server(*, tls: tuple[bytes, bytes] | None = None) -> AsyncIterator[int]:
    """Serve ``grpc.health.v1`` on 127.0.0.1; ``""`` and ``web`` are SERVING, ``db`` is NOT_SERVING.

    ``tls`` is ``(key_pem, cert_pem)``; the port is yielded.
    """
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("web", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        creds = grpc.ssl_server_credentials([tls])
        port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture
def grpc_health_server() -> Callable[..., AbstractAsyncContextManager[int]]:
    """``async with grpc_health_server(tls=None) as port``: see ``_health_server``."""
    return _health_server
