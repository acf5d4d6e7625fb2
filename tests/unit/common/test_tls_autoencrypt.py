"""Auto-encrypt signing (agent/autoencrypt.py): the server picks every name; a client agent can
never obtain a certificate that passes as a server."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lictor.server.endpoints.autoencrypt import sign_agent_csr
from lictor.common.errors import ValidationError
from lictor.common.tls import RPCPeerPolicy, peer_dns_names
from lictor.server.connect import ca

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def signer() -> tuple[ca.PrivateKey, x509.Certificate]:
    key = ca.generate_private_key("ec", 256)
    root = ca.create_root(key, trust_domain="abc.consul", serial=1, not_before=NOW - dt.timedelta(days=1),
                          ttl=dt.timedelta(days=3650), common_name="root")
    return key, root


def csr(dns: list[str] = (), uri: str | None = None) -> str:  # type: ignore[assignment]
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    if uri:
        sans.append(x509.UniformResourceIdentifier(uri))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n")]))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def sign(pem: str, node: str = "node-1") -> x509.Certificate:
    key, root = signer()
    return sign_agent_csr(pem, node=node, datacenter="dc1", domain="consul", trust_domain="abc.consul",
                          signer_key=key, signer_cert=root, serial=7, now=NOW, ttl=dt.timedelta(hours=72))


def test_the_server_picks_the_identity() -> None:
    cert = sign(csr(["node-1.example"], uri="spiffe://evil/ns/default/dc/dc1/svc/web"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://abc.consul/agent/client/dc/dc1/id/node-1"]
    assert san.get_values_for_type(x509.DNSName) == ["client.dc1.consul", "localhost", "node-1.example"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=72, minutes=1)
    # and the RPC policy treats it as an agent: endpoints yes, Raft no
    p = RPCPeerPolicy(tls=True, verify_incoming=True, verify_server_hostname=True,
                      server_name="server.dc1.consul", datacenter="dc1")
    as_peer = {"subjectAltName": tuple([("DNS", d) for d in san.get_values_for_type(x509.DNSName)]
                                       + [("URI", u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)])}
    assert peer_dns_names(as_peer)[0][0] == "client.dc1.consul"
    assert p.denial("Catalog.Register", peer_tls=True, cert=as_peer) is None
    assert p.denial("Raft.Msgs", peer_tls=True, cert=as_peer)


@pytest.mark.parametrize("name", ["server.dc1.consul", "SERVER.dc1.consul.", "*.dc1.consul", "x.server.dc1.consul"])
def test_server_names_and_wildcards_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="not allowed for a client agent"):
        sign(csr([name]))


def test_bad_csr_and_node_are_refused() -> None:
    with pytest.raises(ValidationError, match="CSR"):
        sign("not a csr")
    with pytest.raises(ValidationError, match="node"):
        sign(csr(), node="a/b")


def test_agent_certificates_and_connect_leaves_come_from_one_builder() -> None:
    """Auto-encrypt and the Connect CA share ca.build_leaf: same key usages, extended key
    usages, constraints and key identifiers; only names and SANs differ."""
    key, root = signer()
    agent = sign(csr())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    uri = "spiffe://abc.consul/ns/default/dc/dc1/svc/web"
    leaf = ca.sign_leaf(ca.create_csr(leaf_key, [uri]), signer_key=key, signer_cert=root, serial=8, uri=uri, dns_names=[],
                        now=NOW, ttl=dt.timedelta(hours=72))

    def shape(cert: x509.Certificate) -> dict[str, object]:
        ext = {e.oid.dotted_string: e for e in cert.extensions}
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return {"oids": sorted((o, e.critical) for o, e in ext.items()),
                "ku": (ku.digital_signature, ku.key_encipherment, ku.key_agreement, ku.key_cert_sign),
                "eku": sorted(o.dotted_string for o in eku),
                "ca": cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca,
                "backdate": NOW - cert.not_valid_before_utc, "ttl": cert.not_valid_after_utc - NOW}
    assert shape(agent) == shape(leaf)
