"""Pure certificate maths: roots, leaves, cross-signing and CSR validation (server/connect/ca.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import VerificationError

from lictor.server.connect import ca

from .conftest import now_utc, verify

TD = "11111111-2222-3333-4444-555555555555.consul"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def root(key_type: str = "ec", bits: int = 256, serial: int = 1) -> tuple[ca.PrivateKey, x509.Certificate]:
    k = ca.generate_private_key(key_type, bits)
    return k, ca.create_root(k, trust_domain=TD, serial=serial, not_before=NOW - dt.timedelta(minutes=1),
                             ttl=dt.timedelta(days=3650), common_name=f"root {serial}")


def leaf_for(rk: ca.PrivateKey, rc: x509.Certificate, service: str = "web", *, key: ca.PrivateKey | None = None,
             serial: int = 7, ttl: float = 72 * 3600) -> x509.Certificate:
    key = key or ca.generate_private_key()
    uri = ca.spiffe_service_uri(TD, "dc1", service)
    csr = ca.create_csr(key, [uri], ["web.service.consul"])
    sid, dns = ca.validate_csr(csr, trust_domain=TD, datacenter="dc1", service=service)
    return ca.sign_leaf(csr, signer_key=rk, signer_cert=rc, serial=serial, uri=sid.uri, dns_names=dns, now=NOW,
                        ttl=dt.timedelta(seconds=ttl))


def pem(*cs: x509.Certificate) -> str:
    return "".join(ca.cert_pem(c) for c in cs)


@pytest.mark.parametrize("key_type,bits", [("ec", 256), ("ec", 384), ("rsa", 2048)])
def test_root_is_a_self_signed_ca_for_the_trust_domain(key_type: str, bits: int) -> None:
    k, c = root(key_type, bits)
    assert c.issuer == c.subject
    c.verify_directly_issued_by(c)
    assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    assert ca.key_spec(k) == (key_type, bits)
    assert len(ca.fingerprint(c).split(":")) == 20


def test_leaf_chains_to_root_with_spiffe_san_usages_and_validity() -> None:
    rk, rc = root()
    leaf = leaf_for(rk, rc)
    chain = verify(pem(leaf), [pem(rc)], at=NOW)
    assert chain[-1] == rc
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}/ns/default/dc/dc1/svc/web"]
    assert san.get_values_for_type(x509.DNSName) == ["web.service.consul"]
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and not ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_before_utc == NOW - ca.LEAF_BACKDATE
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(hours=72)
    assert leaf.serial_number == 7
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"
    # outside the validity window the chain no longer verifies
    with pytest.raises(VerificationError):
        verify(pem(leaf), [pem(rc)], at=NOW + dt.timedelta(hours=73))
    with pytest.raises(VerificationError):
        verify(pem(leaf), [pem(rc)], at=NOW - dt.timedelta(minutes=2))


def test_rsa_leaf_gets_key_encipherment_and_rsa_root_signs_with_sha256() -> None:
    rk, rc = root("rsa", 2048)
    leaf = leaf_for(rk, rc, key=ca.generate_private_key("rsa", 2048))
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_agreement
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    verify(pem(leaf), [pem(rc)], at=NOW)


def test_leaf_never_outlives_its_signer() -> None:
    k = ca.generate_private_key()
    rc = ca.create_root(k, trust_domain=TD, serial=1, not_before=NOW, ttl=dt.timedelta(hours=10), common_name="short")
    leaf = leaf_for(k, rc, ttl=72 * 3600)
    assert leaf.not_valid_after_utc == rc.not_valid_after_utc


def test_cross_signed_new_root_lets_old_root_trusters_validate_new_leaves() -> None:
    ok, oc = root(serial=1)
    nk, nc = root("rsa", 2048, serial=2)
    xc = ca.cross_sign(nc, signer_key=ok, signer_cert=oc, serial=3, trust_domain=TD)
    assert xc.subject == nc.subject and xc.issuer == oc.subject and xc.public_key() == nc.public_key()
    new_leaf = leaf_for(nk, nc)
    # a peer that trusts only the old root: leaf -> cross-signed intermediate -> old root
    chain = verify(pem(new_leaf, xc), [pem(oc)], at=NOW)
    assert [c.subject for c in chain] == [new_leaf.subject, nc.subject, oc.subject]
    # a peer that trusts only the new root, and one with the whole bundle
    verify(pem(new_leaf, xc), [pem(nc)], at=NOW)
    verify(pem(new_leaf), [pem(oc), pem(nc)], at=NOW)
    # without the intermediate, the old root alone does not trust the new leaf
    with pytest.raises(VerificationError):
        verify(pem(new_leaf), [pem(oc)], at=NOW)
    # an old leaf stays valid against the bundle after rotation
    verify(pem(leaf_for(ok, oc)), [pem(oc), pem(nc)], at=NOW)


# ----------------------------------------------------------------------------- CSR abuse
def _csr(uris: list[str], key: ca.PrivateKey | None = None) -> x509.CertificateSigningRequest:
    return ca.create_csr(key or ca.generate_private_key(), uris)


def _uri(td: str = TD, dc: str = "dc1", svc: str = "web", ns: str = "default") -> str:
    return f"spiffe://{td}/ns/{ns}/dc/{dc}/svc/{svc}"


def _tampered() -> x509.CertificateSigningRequest:
    good = _csr([_uri()])
    der = bytearray(good.public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                                  fromlist=["Encoding"]).Encoding.DER))
    der[-5] ^= 0xFF  # flip bits inside the signature
    return x509.load_der_x509_csr(bytes(der))


@pytest.mark.parametrize("make,message", [
    (lambda: _csr([_uri(svc="db")]), "names service 'db', but the request is for 'web'"),
    (lambda: _csr([_uri(td="evil.consul")]), "trust domain 'evil.consul' is not this cluster's"),
    (lambda: _csr([_uri(dc="dc2")]), "datacenter 'dc2' is not 'dc1'"),
    (lambda: _csr([_uri(ns="other")]), "namespace 'other' is not 'default'"),
    (lambda: _csr([_uri(), _uri(svc="db")]), "exactly one URI SAN, found 2"),
    (lambda: _csr([]), "no SubjectAlternativeName"),
    (lambda: _csr(["https://example.com/web"]), "is not a SPIFFE service ID"),
    (lambda: _csr([_uri()], rsa.generate_private_key(public_exponent=65537, key_size=1024)),
     "RSA key of 1024 bits is too weak"),
    (lambda: _csr([_uri()], ec.generate_private_key(ec.SECP521R1())), "not allowed (P-256 or P-384 only)"),
    (_tampered, "signature is not valid"),
])
def test_abusive_csrs_are_refused_with_the_reason(make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ca.CSRError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ca.validate_csr(make(), trust_domain=TD, datacenter="dc1", service="web")


def test_garbage_is_not_a_csr() -> None:
    with pytest.raises(ca.CSRError, match="not a PEM certificate request"):
        ca.load_csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


@pytest.mark.parametrize("key_type,bits,msg", [("dsa", 1024, "PrivateKeyType"), ("ec", 521, "PrivateKeyBits"),
                                               ("rsa", 1024, "PrivateKeyBits")])
def test_key_specs_are_checked(key_type: str, bits: int, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        ca.generate_private_key(key_type, bits)


def test_spiffe_ids_parse_and_serial_formats() -> None:
    sid = ca.parse_spiffe_service(_uri(svc="api"))
    assert sid is not None and sid.service == "api" and sid.uri == _uri(svc="api")
    assert ca.parse_spiffe_service("spiffe://td/agent/client/dc/dc1/id/x") is None
    assert ca.serial_hex(8) == "08" and ca.serial_hex(0x1234) == "12:34"
    assert now_utc().tzinfo is not None
