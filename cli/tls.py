"""``lictor tls ca create`` and ``lictor tls cert create``: the operator's TLS CA and agent
certificates, in the current directory, with **Consul's file names** so Consul's guides and
tooling work unchanged:

==============================  =====================================================
``tls ca create``               ``<domain>-agent-ca.pem``, ``<domain>-agent-ca-key.pem``
``tls cert create -server``     ``<dc>-server-<domain>-<n>.pem``, ``...-<n>-key.pem``
``tls cert create -client``     ``<dc>-client-<domain>-<n>.pem``, ``...-<n>-key.pem``
``tls cert create -cli``        ``<dc>-cli-<domain>-<n>.pem``, ``...-<n>-key.pem``
==============================  =====================================================

``<n>`` is the first index whose files do not exist yet; nothing is ever overwritten. Keys are EC
P-256 (PKCS#8 PEM) written with mode 0600. Names in the certificates:

* server: DNS ``server.<dc>.<domain>`` (what ``verify_server_hostname`` checks; with ``-node``
  also ``<node>.server.<dc>.<domain>``), ``localhost``, IP ``127.0.0.1``; serverAuth+clientAuth.
* client: DNS ``client.<dc>.<domain>``, ``localhost``, ``127.0.0.1``; serverAuth+clientAuth
  (client agents serve HTTPS too), so it *cannot* pass as a server under verify_server_hostname.
* cli: DNS ``cli.<dc>.<domain>``, ``localhost``; clientAuth only.

The library functions (:func:`create_ca`, :func:`create_cert`) are used by the tests too, e.g. to
make an expired certificate (``not_before``/``not_after``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lictor.cli.base import err, fail, out, parse
from lictor.cli.flags import FlagSet

__all__ = ["CA_SUBCOMMANDS", "CERT_SUBCOMMANDS", "create_ca", "create_cert", "write_pair"]

KINDS = ("server", "client", "cli")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(*, days: int = 1825, domain: str = "consul", name_constraint: bool = False,
              additional_constraints: list[str] | None = None, common_name: str = "",
              not_before: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    start = not_before or (_now() - dt.timedelta(minutes=1))
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lictor"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"Lictor Agent CA {serial}"[:64])])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(serial).not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                      crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    if name_constraint:
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in
                                             [domain, "localhost", *(additional_constraints or [])]]
        b = b.add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
                            critical=True)
    cert = b.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def create_cert(kind: str, *, ca_cert: bytes, ca_key: bytes, datacenter: str = "dc1", domain: str = "consul",
                days: int = 365, dns_names: list[str] | None = None, ip_addresses: list[str] | None = None,
                node: str = "", not_before: dt.datetime | None = None,
                not_after: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A certificate of ``kind`` (server, client, cli) signed by the CA: (cert PEM, key PEM)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    issuer = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    domain = domain.strip(".")
    names = [f"{kind}.{datacenter}.{domain}"]
    if kind == "server" and node:
        names.append(f"{node}.server.{datacenter}.{domain}")
    names.append("localhost")
    for d in dns_names or []:
        if d not in names:
            names.append(d)
    ips = [] if kind == "cli" else ["127.0.0.1"]
    for ip in ip_addresses or []:
        if ip not in ips:
            ips.append(ip)
    start = not_before or (_now() - dt.timedelta(minutes=1))
    end = not_after or (start + dt.timedelta(days=days))
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH] if kind == "cli" else \
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
         .issuer_name(issuer.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
                        critical=False)
         .add_extension(x509.SubjectAlternativeName(sans), critical=False))
    cert = b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_pair(cert_path: Path, key_path: Path, cert: bytes, key: bytes) -> None:
    """Write both files, refusing to overwrite; the key is created 0600 from the start."""
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"{p} already exists")
    cert_path.write_bytes(cert)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


# ============================================================================ commands


def ca_create(argv: list[str]) -> int:
    fs = FlagSet("lictor tls ca create [options]",
                 "Creates a self-signed CA for agent TLS: <domain>-agent-ca.pem and <domain>-agent-ca-key.pem\n"
                 "in the current directory.")
    fs.int("days", "Number of days the CA is valid for.", default=1825)
    fs.string("domain", "Domain of the cluster (file name prefix; name constraint with -name-constraint).",
              default="consul")
    fs.bool("name-constraint", "Only allow certificates for localhost and -domain (and "
                               "-additional-name-constraint).")
    fs.list("additional-name-constraint", "Another DNS name permitted with -name-constraint.")
    fs.string("common-name", "Common name of the CA (default: Lictor Agent CA <serial>).")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    if p["days"] <= 0:
        err("==> -days must be a positive number of days")
        return 1
    domain = p["domain"].strip(".") or "consul"
    cert_path, key_path = Path(f"{domain}-agent-ca.pem"), Path(f"{domain}-agent-ca-key.pem")
    cert, key = create_ca(days=p["days"], domain=domain, name_constraint=p["name-constraint"],
                          additional_constraints=p["additional-name-constraint"], common_name=p["common-name"])
    try:
        write_pair(cert_path, key_path, cert, key)
    except (FileExistsError, OSError) as exc:
        raise fail("==> ", exc) from None
    out(f"==> Saved {cert_path}")
    out(f"==> Saved {key_path}")
    return 0


def cert_create(argv: list[str]) -> int:
    fs = FlagSet("lictor tls cert create [options]",
                 "Creates a server, client or cli certificate signed by the agent CA, named as Consul names\n"
                 "them: <dc>-<kind>-<domain>-<n>.pem and <dc>-<kind>-<domain>-<n>-key.pem.")
    fs.bool("server", "Generate a server certificate (server.<dc>.<domain>).")
    fs.bool("client", "Generate a client certificate (client.<dc>.<domain>).")
    fs.bool("cli", "Generate a cli certificate (cli.<dc>.<domain>).")
    fs.string("ca", "Path to the CA certificate (default <domain>-agent-ca.pem).", metavar="path")
    fs.string("key", "Path to the CA key (default <domain>-agent-ca-key.pem).", metavar="path")
    fs.string("dc", "Datacenter.", default="dc1")
    fs.string("domain", "Domain.", default="consul")
    fs.string("node", "Server node name: adds <node>.server.<dc>.<domain>.")
    fs.int("days", "Number of days the certificate is valid for.", default=365)
    fs.list("additional-dnsname", "An additional DNS name (localhost is always included).")
    fs.list("additional-ipaddress", "An additional IP address (127.0.0.1 is always included).")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    kinds = [k for k in KINDS if p[k]]
    if len(kinds) != 1:
        err("==> Please provide exactly one of -server, -client or -cli")
        return 1
    kind = kinds[0]
    if p["days"] <= 0:
        err("==> -days must be a positive number of days")
        return 1
    for ip in p["additional-ipaddress"]:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            err(f"==> -additional-ipaddress: {ip!r} is not an IP address")
            return 1
    domain = p["domain"].strip(".") or "consul"
    ca_path = Path(p["ca"] or f"{domain}-agent-ca.pem")
    key_path = Path(p["key"] or f"{domain}-agent-ca-key.pem")
    try:
        ca_cert, ca_key = ca_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        err(f"==> cannot read the CA: {exc.filename}: {exc.strerror}")
        return 1
    try:
        cert, key = create_cert(kind, ca_cert=ca_cert, ca_key=ca_key, datacenter=p["dc"], domain=domain,
                                days=p["days"], dns_names=p["additional-dnsname"],
                                ip_addresses=p["additional-ipaddress"], node=p["node"])
    except ValueError as exc:
        err(f"==> cannot use the CA in {ca_path} / {key_path}: {exc.__class__.__name__}")
        return 1
    if kind == "server":
        out("==> WARNING: Server Certificates grants authority to become a\n"
            "    server and access all state in the cluster including root keys\n"
            "    and all ACL tokens. Do not distribute them to production hosts\n"
            "    that are not server nodes. Store them as securely as CA keys.")
    out(f"==> Using {ca_path} and {key_path}")
    n = 0
    while True:
        base = f"{p['dc']}-{kind}-{domain}-{n}"
        cp, kp = Path(f"{base}.pem"), Path(f"{base}-key.pem")
        if not cp.exists() and not kp.exists():
            break
        n += 1
    try:
        write_pair(cp, kp, cert, key)
    except (FileExistsError, OSError) as exc:
        raise fail("==> ", exc) from None
    out(f"==> Saved {cp}")
    out(f"==> Saved {kp}")
    return 0


CA_SUBCOMMANDS = {"create": (ca_create, "Create a new agent CA")}
CERT_SUBCOMMANDS = {"create": (cert_create, "Create a new certificate")}
