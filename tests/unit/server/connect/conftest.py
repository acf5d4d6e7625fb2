"""Helpers for the Connect CA tests: an in-process dev server, CSRs and chain verification."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from lictor.server import endpoints
from lictor.server.connect import ca, leader
from lictor.server.server import Server, ServerConfig


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def csr_pem(key: Any, uris: list[str], dns: list[str] = ()) -> str:  # type: ignore[assignment]
    return ca.create_csr(key, uris, list(dns)).public_bytes(serialization.Encoding.PEM).decode()


def certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def verify(leaf_chain_pem: str, trusted_pems: list[str], *, at: dt.datetime | None = None) -> list[x509.Certificate]:
    """Verify a leaf (+ the intermediates after it in the PEM) against ``trusted_pems`` as a
    TLS client certificate; returns the chain built. Raises VerificationError."""
    leaf, *inters = certs(leaf_chain_pem)
    v = PolicyBuilder().store(Store([ca.load_cert(p) for p in trusted_pems])).time(at or now_utc()) \
        .build_client_verifier()
    return list(v.verify(leaf, inters).chain)


def make_server(dc: str = "dc1") -> Server:
    return Server(ServerConfig(datacenter=dc, node_name="s1", rpc_address="127.0.0.1:8300"))


async def ready_server(**config: Any) -> Server:
    s = make_server()
    assert await leader.ca_initialize(s)
    if config:
        await endpoints.call(s, "ConnectCA.ApplyConfiguration", {"config": {"Config": config}})
    return s


async def roots_of(s: Server) -> dict[str, Any]:
    return (await endpoints.call(s, "ConnectCA.Roots", {}))["result"]


async def sign(s: Server, service: str, *, key: Any = None, uri: str | None = None) -> tuple[dict[str, Any], Any]:
    roots = await roots_of(s)
    key = key or ca.generate_private_key()
    uri = uri or ca.spiffe_service_uri(roots["TrustDomain"], s.config.datacenter, service)
    out = await endpoints.call(s, "ConnectCA.Sign", {"csr": csr_pem(key, [uri]), "service": service})
    return out["result"], key


@pytest.fixture
async def server() -> Server:
    return await ready_server(CSRMaxPerSecond=0)
