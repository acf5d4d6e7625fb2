"""Connect CA against a real `lictor agent -dev`: roots, configuration, leaves, authorize, and a
blocking leaf fetch that returns the re-issued certificate after a root rotation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from lictor.server.connect import ca

from .conftest import AgentProcess


@pytest.fixture(scope="module")
def ca_agent(tmp_path_factory: pytest.TempPathFactory) -> Any:
    a = AgentProcess(tmp_path_factory.mktemp("ca"), env={"LICTOR_LEAF_ROOT_CHANGE_JITTER": "0.2"}).start()
    yield a
    a.stop()


def verify(chain_pem: str, trusted: list[str]) -> list[x509.Certificate]:
    leaf, *inters = x509.load_pem_x509_certificates(chain_pem.encode())
    v = PolicyBuilder().store(Store([ca.load_cert(p) for p in trusted])).build_client_verifier()
    return list(v.verify(leaf, inters).chain)


def test_roots_and_configuration(ca_agent: AgentProcess) -> None:
    status, raw = ca_agent.request("GET", "/v1/connect/ca/roots")
    assert status == 200
    roots = json.loads(raw)
    assert roots["TrustDomain"].endswith(".consul") and len(roots["Roots"]) == 1
    assert roots["Roots"][0]["ID"] == roots["ActiveRootID"] and roots["Roots"][0]["Active"] is True
    status, pem = ca_agent.request("GET", "/v1/connect/ca/roots?pem=true")
    assert status == 200 and pem.decode().count("BEGIN CERTIFICATE") == 1
    cfg = ca_agent.json("GET", "/v1/connect/ca/configuration")
    assert cfg["Provider"] == "consul" and cfg["Config"]["PrivateKeyType"] == "ec"
    status, raw = ca_agent.request("PUT", "/v1/connect/ca/configuration", {"Config": {"PrivateKeyBits": 1024}})
    assert status == 400 and b"Config.PrivateKeyBits" in raw
    assert ca_agent.json("PUT", "/v1/connect/ca/configuration", {"Config": {"LeafCertTTL": "48h"}}) is True
    assert ca_agent.json("GET", "/v1/connect/ca/configuration")["Config"]["LeafCertTTL"] == "48h"  # as last written
    agent_roots = ca_agent.json("GET", "/v1/agent/connect/ca/roots")
    assert agent_roots["ActiveRootID"] == roots["ActiveRootID"]


def test_py_consul_reads_roots_and_configuration(ca_agent: AgentProcess) -> None:
    import consul

    c = consul.Consul(host="127.0.0.1", port=ca_agent.http_port)
    assert c.connect.ca.roots()["ActiveRootID"]
    assert c.connect.ca.configuration()["Provider"] == "consul"


def test_leaf_authorize_and_blocking_renewal_after_rotation(ca_agent: AgentProcess) -> None:
    status, raw = ca_agent.request("GET", "/v1/agent/connect/ca/leaf/web")
    assert status == 200
    leaf = json.loads(raw)
    import urllib.request

    with urllib.request.urlopen(ca_agent.url + "/v1/agent/connect/ca/leaf/web") as resp:
        index = int(resp.headers["X-Consul-Index"])
    roots = ca_agent.json("GET", "/v1/connect/ca/roots")
    assert leaf["ServiceURI"] == f"spiffe://{roots['TrustDomain']}/ns/default/dc/dc1/svc/web"
    assert set(leaf) >= {"SerialNumber", "CertPEM", "PrivateKeyPEM", "Service", "ServiceURI", "ValidAfter",
                         "ValidBefore", "CreateIndex", "ModifyIndex"}
    assert ca.load_private_key(leaf["PrivateKeyPEM"]).public_key() == ca.load_cert(leaf["CertPEM"]).public_key()
    verify(leaf["CertPEM"], [r["RootCert"] for r in roots["Roots"]])

    ok = ca_agent.json("POST", "/v1/agent/connect/authorize",
                       {"Target": "db", "ClientCertURI": leaf["ServiceURI"], "ClientCertSerial": leaf["SerialNumber"]})
    assert ok["Authorized"] is True and ok["Reason"]
    foreign = ca_agent.json("POST", "/v1/agent/connect/authorize",
                            {"Target": "db", "ClientCertURI": "spiffe://evil.consul/ns/default/dc/dc1/svc/web",
                             "ClientCertSerial": "01"})
    assert foreign["Authorized"] is False and "external trust domain" in foreign["Reason"]
    status, raw = ca_agent.request("POST", "/v1/agent/connect/authorize", {"Target": "db", "ClientCertURI": "x"})
    assert status == 400

    # rotate to an RSA root; a blocking fetch returns the re-issued leaf from the new root
    assert ca_agent.json("PUT", "/v1/connect/ca/configuration",
                         {"Config": {"PrivateKeyType": "rsa", "PrivateKeyBits": 2048}}) is True
    status, raw = ca_agent.request("GET", f"/v1/agent/connect/ca/leaf/web?index={index}&wait=20s", timeout=30)
    assert status == 200
    new_leaf = json.loads(raw)
    assert new_leaf["SerialNumber"] != leaf["SerialNumber"] and new_leaf["ModifyIndex"] > index
    after = ca_agent.json("GET", "/v1/connect/ca/roots")
    assert after["ActiveRootID"] != roots["ActiveRootID"] and len(after["Roots"]) == 2
    new_pem = next(r["RootCert"] for r in after["Roots"] if r["Active"])
    old_pem = next(r["RootCert"] for r in after["Roots"] if not r["Active"])
    assert verify(new_leaf["CertPEM"], [new_pem])[-1] == ca.load_cert(new_pem)
    verify(new_leaf["CertPEM"], [old_pem])  # cross-signed intermediate
    verify(leaf["CertPEM"], [r["RootCert"] for r in after["Roots"]])  # the old leaf is still valid
