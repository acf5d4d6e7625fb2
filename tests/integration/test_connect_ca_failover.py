"""The CA's key lives in Raft: after the leader dies, the new leader has the same root, keeps
signing with it, and leaves issued before the failover still validate (issue 5)."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from cryptography import x509

from lictor.server.connect import ca
from .conftest import eventually

pytestmark = pytest.mark.integration


def verify(chain_pem: str, trusted: list[str]) -> None:
    leaf, *inters = x509.load_pem_x509_certificates(chain_pem.encode())
    store = x509.verification.Store([x509.load_pem_x509_certificate(p.encode()) for p in trusted])
    v = x509.verification.PolicyBuilder().store(store).build_client_verifier()
    v.verify(leaf, inters)


def test_ca_survives_leader_failover(cluster_factory: Any) -> None:
    c = cluster_factory(3)
    leader = c.wait_leader()
    roots = eventually(lambda: (r := leader.json("GET", "/v1/connect/ca/roots")) and r["Roots"] and r,
                       timeout=20, what="CA initialised by the leader")
    follower = next(s for s in c.running() if s is not leader)
    status, raw = follower.request("GET", "/v1/agent/connect/ca/leaf/web", timeout=20)
    assert status == 200, raw
    before = json.loads(raw)
    verify(before["CertPEM"], [r["RootCert"] for r in roots["Roots"]])

    leader.kill(signal.SIGKILL)
    survivors = [s for s in c.servers if s is not leader]
    new_leader = c.wait_leader(among=survivors)
    assert new_leader is not leader
    roots_after = new_leader.json("GET", "/v1/connect/ca/roots")
    assert roots_after["ActiveRootID"] == roots["ActiveRootID"]
    assert roots_after["TrustDomain"] == roots["TrustDomain"]
    # the old leaf still validates against the bundle served after failover
    verify(before["CertPEM"], [r["RootCert"] for r in roots_after["Roots"]])
    # the new leader signs with the same root: a CSR for another service through a survivor
    other = next(s for s in survivors if s is not new_leader)
    status, raw = other.request("GET", "/v1/agent/connect/ca/leaf/api", timeout=20)
    assert status == 200, raw
    leaf = json.loads(raw)
    verify(leaf["CertPEM"], [roots["Roots"][0]["RootCert"]])
    assert ca.load_cert(leaf["CertPEM"]).serial_number != ca.load_cert(before["CertPEM"]).serial_number
