"""Pure certificate maths for the Connect CA: keys, roots, cross-signing, CSR checks, leaf signing.

Nothing here reads a clock, draws randomness it was not given, or does I/O, except key
generation (:func:`generate_private_key`), which callers run on the leader (or on the agent for
leaf keys) before anything is proposed. Every time is passed in as a ``datetime`` (UTC) and every
serial number as an int, so the same inputs give the same certificate bytes up to the signature
(EC signatures are randomised by the signer; that is fine, they are never replayed through Raft).

SPIFFE IDs: ``spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/<service>`` for
services; the roots carry ``spiffe://<trust-domain>`` as their URI SAN (as Consul's do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CSRError",
    "PrivateKey",
    "PublicKey",
    "SpiffeService",
    "LEAF_BACKDATE",
    "build_leaf",
    "cert_pem",
    "colon_hex",
    "create_csr",
    "create_root",
    "cross_sign",
    "fingerprint",
    "generate_private_key",
    "key_id",
    "key_spec",
    "load_cert",
    "load_csr",
    "load_private_key",
    "parse_spiffe_service",
    "private_key_pem",
    "serial_hex",
    "sign_leaf",
    "spiffe_service_uri",
    "validate_csr",
    "validate_key_spec",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]

#: Leaves are valid from a minute before they were signed, so a peer whose clock is a little
#: behind the leader's does not reject a fresh certificate (Consul backdates by one minute).
LEAF_BACKDATE = dt.timedelta(minutes=1)

_CURVES: dict[int, ec.EllipticCurve] = {256: ec.SECP256R1(), 384: ec.SECP384R1()}
_CURVE_BITS = {"secp256r1": 256, "secp384r1": 384}
VALID_KEY_SPECS = {"ec": (256, 384), "rsa": (2048, 4096)}
MIN_RSA_BITS = 2048


class CSRError(ValueError):
    """A certificate signing request is refused; the message says exactly why."""


# ----------------------------------------------------------------------------- keys
def validate_key_spec(key_type: str, bits: int) -> None:
    allowed = VALID_KEY_SPECS.get(key_type)
    if allowed is None:
        raise ValueError(f"PrivateKeyType: must be 'ec' or 'rsa', got {key_type!r}")
    if bits not in allowed:
        raise ValueError(f"PrivateKeyBits: {bits} is not valid for {key_type!r} keys "
                         f"(allowed: {', '.join(map(str, allowed))})")


def generate_private_key(key_type: str = "ec", bits: int = 256) -> PrivateKey:
    validate_key_spec(key_type, bits)
    if key_type == "ec":
        return ec.generate_private_key(_CURVES[bits])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_spec(key: PrivateKey | PublicKey) -> tuple[str, int]:
    """(``"ec"``|``"rsa"``|other, bits) of a key."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec", _CURVE_BITS.get(key.curve.name, key.curve.key_size)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa", key.key_size
    return type(key).__name__, 0


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_private_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def key_id(public_key: PublicKey) -> str:
    """The colon-hex subject key identifier of a public key (SHA-1 of the key bits, RFC 5280)."""
    return colon_hex(x509.SubjectKeyIdentifier.from_public_key(public_key).digest)


def fingerprint(cert: x509.Certificate) -> str:
    """A root's ID as Consul computes it: colon-hex SHA-1 of the DER certificate."""
    return colon_hex(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())  # noqa: S324


def serial_hex(serial: int) -> str:
    """A leaf's SerialNumber as Consul shows it: colon-hex of the serial's big-endian bytes."""
    return colon_hex(serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big"))


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _sig_hash(key: PrivateKey) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


# ----------------------------------------------------------------------------- SPIFFE
@dataclass(frozen=True, slots=True)
class SpiffeService:
    trust_domain: str
    namespace: str
    datacenter: str
    service: str

    @property
    def uri(self) -> str:
        return spiffe_service_uri(self.trust_domain, self.datacenter, self.service, self.namespace)


_SPIFFE_SVC = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/dc/([^/]+)/svc/([^/]+)$")


def spiffe_service_uri(trust_domain: str, datacenter: str, service: str, namespace: str = "default") -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/dc/{datacenter}/svc/{service}"


def parse_spiffe_service(uri: str) -> SpiffeService | None:
    m = _SPIFFE_SVC.match(uri)
    if m is None:
        return None
    td, ns, dc, svc = m.groups()
    return SpiffeService(trust_domain=td.lower(), namespace=ns, datacenter=dc, service=svc)


# ----------------------------------------------------------------------------- roots
def _ca_extensions(builder: x509.CertificateBuilder, public_key: PublicKey, trust_domain: str,
                   authority: PublicKey) -> x509.CertificateBuilder:
    # No path length on roots: a rotated-in root, cross-signed by the old one, sits between the
    # old root and the leaves, and must be allowed to sign them.
    return (builder
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False))


def create_root(key: PrivateKey, *, trust_domain: str, serial: int, not_before: dt.datetime,
                ttl: dt.timedelta, common_name: str) -> x509.Certificate:
    """A self-signed CA root for ``trust_domain``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(serial).not_valid_before(not_before).not_valid_after(not_before + ttl))
    b = _ca_extensions(b, key.public_key(), trust_domain, key.public_key())
    return b.sign(key, _sig_hash(key))


def cross_sign(new_root: x509.Certificate, *, signer_key: PrivateKey, signer_cert: x509.Certificate,
               serial: int, trust_domain: str) -> x509.Certificate:
    """``new_root``'s subject and public key, issued by the old root: the intermediate that lets a
    peer trusting only the old root validate leaves of the new one. Its validity is clamped to the
    signer's (a certificate must not outlive its issuer)."""
    not_after = min(new_root.not_valid_after_utc, signer_cert.not_valid_after_utc)
    b = (x509.CertificateBuilder().subject_name(new_root.subject).issuer_name(signer_cert.subject)
         .public_key(new_root.public_key()).serial_number(serial)
         .not_valid_before(new_root.not_valid_before_utc).not_valid_after(not_after))
    b = _ca_extensions(b, new_root.public_key(), trust_domain, signer_key.public_key())
    return b.sign(signer_key, _sig_hash(signer_key))


# ----------------------------------------------------------------------------- CSRs and leaves
def create_csr(key: PrivateKey, uris: list[str], dns_names: list[str] = ()) -> x509.CertificateSigningRequest:  # type: ignore[assignment]
    """A CSR as the agent sends it: no subject, the SPIFFE URI (and any DNS names) as SANs."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns_names]
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, _sig_hash(key))


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise CSRError(f"CSR: not a PEM certificate request ({exc})") from None


def validate_csr(csr: x509.CertificateSigningRequest, *, trust_domain: str, datacenter: str,
                 service: str) -> tuple[SpiffeService, list[str]]:
    """Check a CSR before signing; returns its SPIFFE service ID and DNS names, or raises
    :class:`CSRError`. The rules: the self-signature is valid; the public key is EC P-256/P-384 or
    RSA >= 2048; there is exactly one URI SAN and it is the SPIFFE ID of ``service`` in this trust
    domain and datacenter (namespace "default")."""
    try:
        ok = csr.is_signature_valid
    except (InvalidSignature, ValueError):
        ok = False
    if not ok:
        raise CSRError("CSR: signature is not valid")
    try:
        pub = csr.public_key()
    except ValueError as exc:
        raise CSRError(f"CSR: unreadable public key ({exc})") from None
    kind, bits = key_spec(pub)  # type: ignore[arg-type]
    if kind == "ec":
        if bits not in VALID_KEY_SPECS["ec"]:
            raise CSRError(f"CSR: EC key on curve {pub.curve.name} is not allowed (P-256 or P-384 only)")  # type: ignore[union-attr]
    elif kind == "rsa":
        if bits < MIN_RSA_BITS:
            raise CSRError(f"CSR: RSA key of {bits} bits is too weak (minimum {MIN_RSA_BITS})")
    else:
        raise CSRError(f"CSR: key type {kind} is not allowed (EC or RSA only)")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CSRError("CSR: no SubjectAlternativeName extension (a SPIFFE URI SAN is required)") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise CSRError(f"CSR: must contain exactly one URI SAN, found {len(uris)}")
    sid = parse_spiffe_service(uris[0])
    if sid is None:
        raise CSRError(f"CSR: URI SAN {uris[0]!r} is not a SPIFFE service ID")
    if sid.trust_domain != trust_domain.lower():
        raise CSRError(f"CSR: SPIFFE ID trust domain {sid.trust_domain!r} is not this cluster's "
                       f"{trust_domain!r}")
    if sid.datacenter != datacenter:
        raise CSRError(f"CSR: SPIFFE ID datacenter {sid.datacenter!r} is not {datacenter!r}")
    if sid.namespace != "default":
        raise CSRError(f"CSR: SPIFFE ID namespace {sid.namespace!r} is not 'default'")
    if sid.service != service:
        raise CSRError(f"CSR: SPIFFE ID names service {sid.service!r}, but the request is for {service!r}")
    return sid, list(san.get_values_for_type(x509.DNSName))


def build_leaf(pub: PublicKey, *, signer_key: PrivateKey, signer_cert: x509.Certificate, serial: int,
               common_name: str, sans: Sequence[x509.GeneralName], now: dt.datetime,
               ttl: dt.timedelta) -> x509.Certificate:
    """The one leaf-certificate builder (Connect leaves and auto-encrypt agent certificates):
    valid from ``now - LEAF_BACKDATE`` for ``ttl`` (clamped to the signer's own validity), the
    given SANs, digitalSignature plus keyEncipherment (RSA) or keyAgreement (EC),
    serverAuth+clientAuth, not a CA, with subject and authority key identifiers."""
    is_rsa = isinstance(pub, rsa.RSAPublicKey)
    not_before = now - LEAF_BACKDATE
    not_after = min(now + ttl, signer_cert.not_valid_after_utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(signer_cert.subject).public_key(pub)
         .serial_number(serial).not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                                      data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
         .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False))
    return b.sign(signer_key, _sig_hash(signer_key))


def sign_leaf(csr: x509.CertificateSigningRequest, *, signer_key: PrivateKey, signer_cert: x509.Certificate,
              serial: int, uri: str, dns_names: list[str], now: dt.datetime,
              ttl: dt.timedelta) -> x509.Certificate:
    """Sign a validated CSR for a Connect service: SPIFFE URI (+ DNS) SANs (:func:`build_leaf`)."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)] + [x509.DNSName(d) for d in dns_names]
    return build_leaf(csr.public_key(), signer_key=signer_key, signer_cert=signer_cert,  # type: ignore[arg-type]
                      serial=serial, common_name=uri.rsplit("/", 1)[-1], sans=sans, now=now, ttl=ttl)
