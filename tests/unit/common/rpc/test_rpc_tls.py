"""Mutual TLS on the RPC port, with certificates minted in the test (EC P-256, `cryptography`)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lictor.common.errors import ConfigError, TLSError, TransportError
from lictor.common.rpc.conn import RPCClient, RPCServer
from lictor.common.rpc.tls import client_context, server_context, server_name

from lictor_test_rpc_support import ScriptedHandler

NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class CA:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.dir = workdir
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - datetime.timedelta(minutes=5))
                     .not_valid_after(NOW + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                                  crl_sign=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = workdir / f"{name}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, dns: list[str], server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        if server:
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(minutes=5))
                .not_valid_after(NOW + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                .sign(self.key, hashes.SHA256()))
        out = Issued(self.dir / f"{self.name}-{cn}.crt", self.dir / f"{self.name}-{cn}.key")
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return out


@dataclass(frozen=True)
class PKI:
    ca: CA
    server: Issued
    client: Issued
    other_ca: CA
    other_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA("ca", d), CA("other", d)
    return PKI(ca=ca,
               server=ca.issue("server.dc1.consul", dns=[server_name("dc1")], server=True),
               client=ca.issue("client.dc1.consul", dns=["client.dc1.consul"], server=False),
               other_ca=other,
               other_client=other.issue("intruder", dns=["server.dc1.consul"], server=False))


@pytest.fixture
async def tls_server(pki: PKI, handler: ScriptedHandler) -> AsyncIterator[RPCServer]:
    ctx = server_context(ca_file=pki.ca.path, cert_file=pki.server.cert, key_file=pki.server.key,
                         verify_incoming=True)
    srv = RPCServer(handler, host="127.0.0.1", port=0, ssl=ctx, frame_timeout=2.0)
    await srv.start()
    yield srv
    await srv.close()


def good_client(pki: PKI) -> RPCClient:
    ctx = client_context(ca_file=pki.ca.path, cert_file=pki.client.cert, key_file=pki.client.key,
                         verify_server_hostname=True)
    return RPCClient(ssl=ctx, server_hostname=server_name("dc1"), connect_timeout=2.0,
                     request_timeout=2.0)


async def test_mutual_tls_client_is_accepted(tls_server: RPCServer, pki: PKI,
                                             handler: ScriptedHandler) -> None:
    async with good_client(pki) as c:
        assert await c.call(tls_server.addr, "peer", {}) == {"tls": True, "has_cert": True}
        c.notify(tls_server.addr, "n", {"i": 1})
        assert await c.call(tls_server.addr, "echo", {"x": 1}) == {"x": 1}
    assert handler.notes == [("n", {"i": 1})]
    cert = handler.peers[0].cert
    assert cert is not None
    assert dict(x[0] for x in cert["subject"])["commonName"] == "client.dc1.consul"


async def test_plaintext_client_is_refused(tls_server: RPCServer,
                                           handler: ScriptedHandler) -> None:
    async with RPCClient(connect_timeout=2.0, request_timeout=2.0) as c:
        with pytest.raises(TransportError):
            await c.call(tls_server.addr, "echo", {})
    assert handler.started == 0
    assert tls_server.stats.accepted == 0


async def test_client_with_a_cert_from_another_ca_is_refused(
        tls_server: RPCServer, pki: PKI, handler: ScriptedHandler) -> None:
    ctx = client_context(ca_file=pki.ca.path, cert_file=pki.other_client.cert,
                         key_file=pki.other_client.key, verify_server_hostname=True)
    async with RPCClient(ssl=ctx, server_hostname=server_name("dc1"), connect_timeout=2.0,
                         request_timeout=2.0) as c:
        with pytest.raises(TransportError):  # TLSError on TLS 1.2; TLS 1.3 may report a reset
            await c.call(tls_server.addr, "echo", {})
    assert handler.started == 0


async def test_client_without_a_cert_is_refused(tls_server: RPCServer, pki: PKI,
                                                handler: ScriptedHandler) -> None:
    ctx = client_context(ca_file=pki.ca.path, verify_server_hostname=True)
    async with RPCClient(ssl=ctx, server_hostname=server_name("dc1"), connect_timeout=2.0,
                         request_timeout=2.0) as c:
        with pytest.raises(TransportError):
            await c.call(tls_server.addr, "echo", {})
    assert handler.started == 0


async def test_server_from_another_ca_is_refused_by_the_client(
        tls_server: RPCServer, pki: PKI) -> None:
    ctx = client_context(ca_file=pki.other_ca.path, cert_file=pki.client.cert,
                         key_file=pki.client.key)
    async with RPCClient(ssl=ctx, connect_timeout=2.0, request_timeout=2.0) as c:
        with pytest.raises(TLSError, match="certificate verify failed"):
            await c.call(tls_server.addr, "echo", {})


async def test_server_hostname_is_verified(tls_server: RPCServer, pki: PKI) -> None:
    ctx = client_context(ca_file=pki.ca.path, cert_file=pki.client.cert, key_file=pki.client.key,
                         verify_server_hostname=True)
    async with RPCClient(ssl=ctx, server_hostname=server_name("dc2"), connect_timeout=2.0,
                         request_timeout=2.0) as c:
        with pytest.raises(TLSError, match="server.dc2.consul"):
            await c.call(tls_server.addr, "echo", {})


def test_context_builders_refuse_incomplete_config(tmp_path: Path, pki: PKI) -> None:
    with pytest.raises(ConfigError, match="verify_incoming requires ca_file"):
        server_context(ca_file=None, cert_file=pki.server.cert, key_file=pki.server.key)
    with pytest.raises(ConfigError, match="verify_outgoing requires ca_file"):
        client_context(ca_file=None)
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        client_context(ca_file=tmp_path / "missing.pem")
    assert server_name("dc1", "example.") == "server.dc1.example"
